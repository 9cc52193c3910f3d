/* test_manifest.c — registry and manifest loading over a generated world:
 * the good manifest has no problem and the expected units; a manifest with
 * many problems reports every one at once, each with file, JSON path and
 * reason, and tells run-stopping errors from per-unit data problems. */
#include "sg_pipeline.h"
#include "sg_pipeline_test_util.h"

#include <criterion/criterion.h>

/* Writes text to dir/name as a manifest and loads it (deep), which must be
 * refused as malformed; its diagnostics go to d. */
static void load_refused(const char *dir, const char *name, const char *text, sg_diag *d) {
    char *mp = fxp_path(dir, name);
    fxp_write(mp, text, strlen(text));
    sg_manifest *m;
    cr_assert_eq(sg_manifest_load(mp, 1, &m, d), SG_ERR_FORMAT, "%s was not refused", name);
    dump(d);
    sg_manifest_free(m);
    free(mp);
}

/* load_refused in a fresh default world, with one more file written beside
 * the manifest first (extra_name NULL: none); the world is removed after. */
static void refused_in_world(const char *extra_name, const char *extra_text, const char *name, const char *text,
                             sg_diag *d) {
    fxp_opts o;
    fxp_opts_default(&o);
    char *dir = world(&o);
    if (extra_name) {
        char *ep = fxp_path(dir, extra_name);
        fxp_write(ep, extra_text, strlen(extra_text));
        free(ep);
    }
    load_refused(dir, name, text, d);
    rmrf(dir);
    free(dir);
}

Test(pipeline, manifest_good) {
    fxp_opts o;
    fxp_opts_default(&o);
    char *dir = world(&o);
    char *mp = fxp_path(dir, "manifest.json");
    sg_diag d = {0};
    sg_manifest *m;
    cr_assert_eq(sg_manifest_load(mp, 1, &m, &d), SG_OK);
    dump(&d);
    cr_assert_eq(d.n, 0);
    cr_assert_eq(m->n_tasks, 3);
    cr_assert_eq(m->n_units, 10);
    cr_assert_eq(m->batch, 16);
    cr_assert_eq(m->seed, 5);
    cr_assert_eq(m->support_check, SG_CHECK_AUTO, "the support check is on by default, its method chosen by size");
    const sg_run_task *t = &m->tasks[1];
    cr_assert_str_eq(t->id, "a-vs-ref");
    cr_assert_eq(t->n_classes, 2);
    cr_assert_eq(t->reference, 1);
    cr_assert_eq(t->use_text, 0);
    cr_assert_eq(t->support_norm, SG_SUPPORT_NORM_AUTO, "support_norm defaults to synthesis's choice");
    cr_assert_float_eq(t->threshold, 0.4, 1e-12);
    cr_assert_eq(t->n_map, 2);
    cr_assert_str_eq(sg_task_shard(m, t, 3)->name, "shards/lab-000003.tar");
    const char *sp = sg_task_shard(m, t, 3)->path;
    cr_assert(strstr(sp, dir) == sp, "shard paths resolve against the manifest folder");
    cr_assert_eq(m->n_files, 6, "the two evaluate tasks share their 4 shard files");
    cr_assert_eq(t->shard[3], m->tasks[0].shard[3]);
    cr_assert_str_eq(m->tasks[0].class_ids[2], "ref:normal");
    cr_assert_eq(m->tasks[0].map_class[2], 2);
    int ti;
    size_t si;
    sg_manifest_unit(m, 9, &ti, &si);
    cr_assert(ti == 2 && si == 1);
    sg_manifest_unit(m, 4, &ti, &si);
    cr_assert(ti == 1 && si == 0);
    cr_assert_eq(strlen(m->config_hash), 64);
    cr_assert_str_eq(m->diseases[0].orpha, "ORPHA:1");
    cr_assert(strstr(m->diseases[0].exemplars[1], "exemplars/d0-1.jpg"));
    sg_manifest_free(m);
    sg_diag_free(&d);
    free(mp);
    rmrf(dir);
    free(dir);
}

/* "support_check": true / false, or the method by name ("auto", "exact", "fast"). */
Test(pipeline, manifest_support_check_values) {
    fxp_opts o;
    fxp_opts_default(&o);
    char *dir = world(&o);
    const char *vals[5] = {"true", "false", "\"auto\"", "\"exact\"", "\"fast\""};
    const int want[5] = {SG_CHECK_AUTO, SG_CHECK_OFF, SG_CHECK_AUTO, SG_CHECK_EXACT, SG_CHECK_FAST};
    for (int i = 0; i < 5; i++) {
        char text[1024];
        snprintf(text, sizeof text,
                 "{\"engine\": \"engine.sgpe\", \"registry\": \"registry.json\", \"output\": \"r\", \"support_check\": %s,"
                 " \"tasks\": [{\"id\": \"t\", \"kind\": \"evaluate\", \"classes\": [\"orpha:1\", \"orpha:2\"],"
                 " \"shots\": 2, \"shards\": \"shards/lab-000000.tar\"}]}",
                 vals[i]);
        char *mp = fxp_path(dir, "sc.json");
        fxp_write(mp, text, strlen(text));
        sg_diag d = {0};
        sg_manifest *m;
        cr_assert_eq(sg_manifest_load(mp, 0, &m, &d), SG_OK, "support_check %s refused", vals[i]);
        cr_assert_eq(m->support_check, want[i], "support_check %s: %d", vals[i], m->support_check);
        sg_manifest_free(m);
        sg_diag_free(&d);
        free(mp);
    }
    rmrf(dir);
    free(dir);
}

Test(pipeline, manifest_every_problem_at_once) {
    fxp_opts o;
    fxp_opts_default(&o);
    char *dir = world(&o);
    const char *bad =
        "{\"engine\": \"engine.sgpe\", \"registry\": \"registry.json\", \"output\": \"r\", \"bootstrap\": 10,\n"
        " \"support_check\": 1,\n"
        " \"tasks\": [\n"
        "  {\"id\": \"ok\", \"kind\": \"evaluate\", \"classes\": [\"orpha:1\", \"orpha:2\"], \"shots\": 1,"
        "   \"shards\": \"shards/lab-{000000..000009}.tar\", \"support_norm\": 0.25},\n"
        "  {\"id\": \"ok\", \"kind\": \"screen\", \"classes\": [\"orpha:1\"], \"shots\": 1, \"shards\": \"shards/lab-000000.tar\"},\n"
        "  {\"id\": \"../x\", \"kind\": \"evaluate\", \"classes\": [\"orpha:1\", \"nope\"], \"shots\": 2.5,"
        "   \"shards\": \"shards/lab-{000000,000000}.tar\", \"threshold\": -1, \"text\": \"yes\", \"support_norm\": 2},\n"
        "  {\"id\": \"b\", \"kind\": \"evaluate\", \"classes\": [\"orpha:9\", \"ref:normal\"], \"shots\": 1,"
        "   \"shards\": \"shards/lab-000000.tar\", \"reference\": \"orpha:2\"}\n"
        " ]}\n";
    char *mp = fxp_path(dir, "bad.json");
    fxp_write(mp, bad, strlen(bad));
    sg_diag d = {0};
    sg_manifest *m;
    cr_assert_eq(sg_manifest_load(mp, 1, &m, &d), SG_ERR_FORMAT);
    dump(&d);
    cr_assert(has(&d, "bad.json: $.bootstrap: must be an integer 1000..100000", SG_DIAG_ERROR));
    cr_assert(has(&d, "bad.json: $.support_check: must be true, false, \"auto\", \"exact\" or \"fast\"", SG_DIAG_ERROR));
    cr_assert(has(&d, "shards/lab-000004.tar: No such file or directory", SG_DIAG_DATA), "missing shard files are data problems");
    cr_assert(!has(&d, "lab-000003.tar", SG_DIAG_DATA), "existing shards are not reported");
    cr_assert(has(&d, "bad.json: $.tasks[1].id: duplicate task id 'ok'", SG_DIAG_ERROR));
    cr_assert(has(&d, "bad.json: $.tasks[1].classes: must be an array of 2..1024 registry ids", SG_DIAG_ERROR));
    cr_assert(has(&d, "bad.json: $.tasks[2].id: '../x'", SG_DIAG_ERROR));
    cr_assert(has(&d, "bad.json: $.tasks[2].classes[1]: 'nope' is not in the registry", SG_DIAG_ERROR));
    cr_assert(has(&d, "bad.json: $.tasks[2].shots: must be an integer", SG_DIAG_ERROR));
    cr_assert(has(&d, "bad.json: $.tasks[2].threshold: must be a number in [0, 1]", SG_DIAG_ERROR));
    cr_assert(has(&d, "bad.json: $.tasks[2].text: must be true or false", SG_DIAG_ERROR));
    cr_assert(has(&d, "bad.json: $.tasks[2].support_norm: must be a number in [0, 1]", SG_DIAG_ERROR));
    cr_assert_float_eq(m->tasks[0].support_norm, 0.25f, 1e-7, "a valid support_norm is read");
    cr_assert(has(&d, "bad.json: $.tasks[2].shards: shard 'shards/lab-000000.tar' listed twice", SG_DIAG_ERROR));
    cr_assert(has(&d, "bad.json: $.tasks[3].reference: 'orpha:2' is not among the task's classes", SG_DIAG_ERROR));
    cr_assert(has(&d, "registry.json: $.diseases[3].exemplars[0]: ", SG_DIAG_DATA), "a corrupt exemplar is a data problem");
    cr_assert(has(&d, "(used by task 'b')", SG_DIAG_DATA));
    cr_assert_geq(d.n, 14);
    sg_manifest_free(m);
    sg_diag_free(&d);
    free(mp);
    rmrf(dir);
    free(dir);
}

/* The JSON parser keeps the first of two equal keys: a second one is refused, as an
 * unknown key is, rather than silently ignored. */
Test(pipeline, manifest_duplicate_keys) {
    const char *bad =
        "{\"engine\": \"engine.sgpe\", \"registry\": \"registry.json\", \"output\": \"r\", \"output\": \"r2\",\n"
        " \"tasks\": [\n"
        "  {\"id\": \"a\", \"kind\": \"evaluate\", \"classes\": [\"orpha:1\", \"orpha:2\"], \"shots\": 1,"
        "   \"shards\": \"shards/lab-000000.tar\", \"threshold\": 0.5, \"threshold\": 0.9,"
        "   \"open_set\": {\"threshold\": 0.6, \"threshold\": 0.7}}\n"
        " ]}\n";
    sg_diag d = {0};
    refused_in_world(NULL, NULL, "dup.json", bad, &d);
    cr_assert(has(&d, "dup.json: $.output: key given twice", SG_DIAG_ERROR));
    cr_assert(has(&d, "dup.json: $.tasks[0].threshold: key given twice", SG_DIAG_ERROR));
    cr_assert(has(&d, "dup.json: $.tasks[0].open_set.threshold: key given twice", SG_DIAG_ERROR));
    cr_assert_eq(d.n, 3, "each repeated key once, nothing else");
    sg_diag_free(&d);
}

/* A label mapped twice in a task's labels (or open_set.labels) is reported
 * once, whatever the two values. */
Test(pipeline, manifest_label_given_twice) {
    const char *bad =
        "{\"engine\": \"engine.sgpe\", \"registry\": \"registry.json\", \"output\": \"r\",\n"
        " \"tasks\": [\n"
        "  {\"id\": \"a\", \"kind\": \"evaluate\", \"classes\": [\"orpha:1\", \"orpha:2\"], \"shots\": 1,"
        "   \"shards\": \"shards/lab-000000.tar\", \"labels\": {\"x\": 0, \"y\": 1, \"x\": 1, \"x\": 0}}\n"
        " ]}\n";
    sg_diag d = {0};
    refused_in_world(NULL, NULL, "lab2.json", bad, &d);
    cr_assert(has(&d, "lab2.json: $.tasks[0].labels[\"x\"]: label given twice", SG_DIAG_ERROR));
    cr_assert_eq(d.n, 1, "one message for the repeated label, nothing else");
    sg_diag_free(&d);
}

/* The registry's own keys are checked like the manifest's: a misspelt or
 * repeated top-level key is reported, not ignored. */
Test(pipeline, registry_top_level_keys) {
    const char *reg = "{\"version\": 1, \"disease\": [], \"version\": 2,\n"
                      " \"diseases\": [{\"id\": \"orpha:1\", \"description\": \"x\"}, {\"id\": \"orpha:2\"}]}\n";
    const char *man =
        "{\"engine\": \"engine.sgpe\", \"registry\": \"reg2.json\", \"output\": \"r\",\n"
        " \"tasks\": [{\"id\": \"a\", \"kind\": \"evaluate\", \"classes\": [\"orpha:1\", \"orpha:2\"], \"shots\": 0,"
        "   \"shards\": \"shards/lab-000000.tar\"}]}\n";
    sg_diag d = {0};
    refused_in_world("reg2.json", reg, "m2.json", man, &d);
    cr_assert(has(&d, "reg2.json: $.disease: unknown key", SG_DIAG_ERROR));
    cr_assert(has(&d, "reg2.json: $.version: key given twice", SG_DIAG_ERROR));
    sg_diag_free(&d);
}

/* What runs as written but is likely not what was meant is a warning, and the
 * manifest still loads: labels on a screen task without open_set (nothing reads
 * them), and an open-set reference shard that the task also classifies. */
Test(pipeline, manifest_warnings) {
    fxp_opts o;
    fxp_opts_default(&o);
    char *dir = world(&o);
    const char *man =
        "{\"engine\": \"engine.sgpe\", \"registry\": \"registry.json\", \"output\": \"r\",\n"
        " \"tasks\": [{\"id\": \"s\", \"kind\": \"screen\", \"classes\": [\"orpha:1\", \"orpha:2\"], \"shots\": 1,"
        "   \"shards\": \"shards/cohort-000000.tar.zst\", \"labels\": {\"a\": 0}},\n"
        "  {\"id\": \"o\", \"kind\": \"evaluate\", \"classes\": [\"orpha:1\", \"orpha:2\"], \"shots\": 1,"
        "   \"shards\": \"shards/lab-{000000..000001}.tar\", \"labels\": {\"a\": 0, \"b\": 1, \"n\": null},"
        "   \"open_set\": {\"reference\": \"shards/lab-000001.tar\", \"labels\": {\"a\": 0, \"b\": 1, \"n\": null}}}]}\n";
    char *mp = fxp_path(dir, "warn.json");
    fxp_write(mp, man, strlen(man));
    sg_diag d = {0};
    sg_manifest *m = NULL;
    cr_assert_eq(sg_manifest_load(mp, 1, &m, &d), SG_OK);
    dump(&d);
    cr_assert(has(&d, "warn.json: $.tasks[0].labels: a screen task without open_set reads no labels", SG_DIAG_WARN));
    cr_assert(has(&d, "warn.json: $.tasks[1].open_set.reference: shards/lab-000001.tar is also in the task's shards",
                  SG_DIAG_WARN));
    cr_assert_eq(d.n, 2, "two warnings, nothing else");
    sg_manifest_free(m);
    sg_diag_free(&d);
    free(mp);
    rmrf(dir);
    free(dir);
}

/* A registry of another version (or a version that is not a number) is refused. */
Test(pipeline, registry_version) {
    const char *man =
        "{\"engine\": \"engine.sgpe\", \"registry\": \"reg3.json\", \"output\": \"r\",\n"
        " \"tasks\": [{\"id\": \"a\", \"kind\": \"evaluate\", \"classes\": [\"orpha:1\", \"orpha:2\"], \"shots\": 0,"
        "   \"text\": true, \"shards\": \"shards/lab-000000.tar\"}]}\n";
    const char *regs[] = {"{\"version\": 2, \"diseases\": [{\"id\": \"orpha:1\", \"description\": \"x\"}, "
                          "{\"id\": \"orpha:2\", \"description\": \"y\"}]}\n",
                          "{\"version\": \"banana\", \"diseases\": [{\"id\": \"orpha:1\", \"description\": \"x\"}, "
                          "{\"id\": \"orpha:2\", \"description\": \"y\"}]}\n"};
    for (int i = 0; i < 2; i++) {
        sg_diag d = {0};
        refused_in_world("reg3.json", regs[i], "m3.json", man, &d);
        cr_assert(has(&d, "reg3.json: $.version: this sgps reads registry version 1", SG_DIAG_ERROR), "registry %d", i);
        sg_diag_free(&d);
    }
}

Test(pipeline, manifest_engine_and_registry_problems) {
    fxp_opts o;
    fxp_opts_default(&o);
    char *dir = world(&o);
    /* an engine from the future, a registry with duplicate ids and a bad exemplar list */
    char *ep = fxp_path(dir, "engine.sgpe");
    uint8_t *data;
    size_t len;
    cr_assert_eq(sg_file_read_all(ep, &data, &len, 1 << 30, NULL), SG_OK);
    sg_put_u32le(data + 4, 99);
    sg_put_u32le(data + len - 4, sg_crc32(0, data, len - 4)); /* a future engine, intact */
    fxp_write(ep, data, len);
    free(data);
    const char *reg = "{\"diseases\": [{\"id\": \"x\", \"exemplars\": [\"a.png\", 3]}, {\"id\": \"x\"}, {\"name\": \"no id\"}]}";
    char *rp = fxp_path(dir, "registry.json");
    fxp_write(rp, reg, strlen(reg));
    char *mp = fxp_path(dir, "manifest.json");
    sg_diag d = {0};
    sg_manifest *m;
    cr_assert_eq(sg_manifest_load(mp, 1, &m, &d), SG_ERR_FORMAT);
    dump(&d);
    cr_assert(has(&d, "manifest.json: $.engine: ", SG_DIAG_ERROR));
    cr_assert(has(&d, "version 99", SG_DIAG_ERROR), "the engine's version problem is named");
    cr_assert(has(&d, "registry.json: $.diseases[0].exemplars[1]: must be a non-empty string", SG_DIAG_ERROR));
    cr_assert(has(&d, "registry.json: $.diseases[1].id: duplicate id 'x'", SG_DIAG_ERROR));
    cr_assert(has(&d, "registry.json: $.diseases[2].id: missing", SG_DIAG_ERROR));
    cr_assert(has(&d, "manifest.json: $.tasks[0].classes[0]: 'orpha:1' is not in the registry", SG_DIAG_ERROR));
    sg_manifest_free(m);
    sg_diag_free(&d);
    free(ep);
    free(rp);
    free(mp);
    rmrf(dir);
    free(dir);
}

Test(pipeline, image_to_u8_matches_size) {
    fxp_opts o;
    fxp_opts_default(&o);
    char *dir = world(&o);
    char *p = fxp_path(dir, "exemplars/d0-0.png");
    uint8_t px[3 * 18 * 18];
    sg_err err;
    cr_assert_eq(sg_image_load_u8_planar(p, 18, px, &err), SG_OK);
    /* class 0 is a red blob on grey: the red plane is brighter than the blue one somewhere */
    int redder = 0;
    for (int i = 0; i < 18 * 18; i++) redder |= px[i] > px[2 * 18 * 18 + i] + 40;
    cr_assert(redder);
    char *q = fxp_path(dir, "exemplars/broken.png");
    cr_assert_neq(sg_image_load_u8_planar(q, 18, px, &err), SG_OK);
    cr_assert(strstr(err.msg, "broken.png"));
    free(p);
    free(q);
    rmrf(dir);
    free(dir);
}

/* Text after the JSON document (a second document, a stray word) is refused
 * in the manifest and the registry alike; trailing white space is not. */
Test(pipeline, manifest_trailing_data) {
    const char *man = "{\"engine\": \"engine.sgpe\", \"registry\": \"registry.json\", \"output\": \"r\",\n"
                      " \"tasks\": [{\"id\": \"a\", \"kind\": \"evaluate\", \"classes\": [\"orpha:1\", \"orpha:2\"],"
                      " \"shots\": 1, \"shards\": \"shards/lab-000000.tar\"}]}\n";
    char text[2048];
    snprintf(text, sizeof text, "%s\n  }oops\n", man);
    sg_diag d = {0};
    refused_in_world(NULL, NULL, "trail.json", text, &d);
    cr_assert(has(&d, "trail.json: unexpected data after the JSON value (line 4)", SG_DIAG_ERROR));
    sg_diag_free(&d);
    /* the registry: a second document after the first */
    const char *reg = "{\"diseases\": [{\"id\": \"orpha:1\", \"description\": \"x\"}, {\"id\": \"orpha:2\", \"description\": \"y\"}]}\n"
                      "{\"diseases\": []}\n";
    const char *man0 = "{\"engine\": \"engine.sgpe\", \"registry\": \"reg-t.json\", \"output\": \"r\",\n"
                       " \"tasks\": [{\"id\": \"a\", \"kind\": \"evaluate\", \"classes\": [\"orpha:1\", \"orpha:2\"],"
                       " \"shots\": 0, \"shards\": \"shards/lab-000000.tar\"}]}";
    refused_in_world("reg-t.json", reg, "m0.json", man0, &d);
    cr_assert(has(&d, "reg-t.json: unexpected data after the JSON value (line 2)", SG_DIAG_ERROR));
    sg_diag_free(&d);
    /* white space only after the value: fine */
    fxp_opts o;
    fxp_opts_default(&o);
    char *dir = world(&o);
    char *mp = fxp_path(dir, "ws.json");
    snprintf(text, sizeof text, "%s \n\t\r\n\n", man);
    fxp_write(mp, text, strlen(text));
    sg_manifest *m;
    cr_assert_eq(sg_manifest_load(mp, 0, &m, &d), SG_OK);
    dump(&d);
    sg_manifest_free(m);
    sg_diag_free(&d);
    free(mp);
    rmrf(dir);
    free(dir);
}

/* Ids have at most 200 characters: a longer one is told so, not that its
 * characters are wrong; 200 pass. */
Test(pipeline, manifest_id_too_long) {
    char long_id[202], ok_id[201], reg[2048], man[4096];
    memset(long_id, 'a', 201);
    long_id[201] = 0;
    memset(ok_id, 'b', 200);
    ok_id[200] = 0;
    snprintf(reg, sizeof reg,
             "{\"diseases\": [{\"id\": \"orpha:%s\", \"description\": \"x\"}, {\"id\": \"%s\", \"description\": \"y\"},"
             " {\"id\": \"orpha:2\", \"description\": \"z\"}]}",
             long_id, ok_id);
    snprintf(man, sizeof man,
             "{\"engine\": \"engine.sgpe\", \"registry\": \"reg-l.json\", \"output\": \"r\",\n"
             " \"tasks\": [{\"id\": \"%s\", \"kind\": \"evaluate\", \"classes\": [\"%s\", \"orpha:2\"], \"shots\": 0,"
             " \"shards\": \"shards/lab-000000.tar\"},\n"
             "  {\"id\": \"%s\", \"kind\": \"evaluate\", \"classes\": [\"%s\", \"orpha:2\"], \"shots\": 0,"
             " \"shards\": \"shards/lab-000000.tar\"}]}",
             long_id, ok_id, ok_id, ok_id);
    sg_diag d = {0};
    refused_in_world("reg-l.json", reg, "ml.json", man, &d);
    cr_assert(has(&d, "reg-l.json: $.diseases[0].id: 'orpha:aaaa",
                  SG_DIAG_ERROR));
    cr_assert(has(&d, "...' is longer than 200 characters (207)", SG_DIAG_ERROR));
    cr_assert(has(&d, "ml.json: $.tasks[0].id: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...' is longer than 200 characters (201",
                  SG_DIAG_ERROR));
    cr_assert(!has(&d, "must use only", SG_DIAG_ERROR), "a long id is not said to hold wrong characters");
    cr_assert(!has(&d, "$.diseases[1].id", SG_DIAG_ERROR) && !has(&d, "$.tasks[1].id", SG_DIAG_ERROR),
              "200 characters pass");
    cr_assert_eq(d.n, 2);
    sg_diag_free(&d);
}

/* Each task's configuration hash covers its classes' registry entries, the
 * bytes of the exemplars it uses and its expanded shard list, besides the
 * manifest and engine: a change to one class reaches only the tasks that use
 * it, and a reload of unchanged inputs gives the same hashes (what --resume of
 * an unchanged run relies on). */
Test(pipeline, manifest_task_hashes) {
    fxp_opts o;
    fxp_opts_default(&o);
    char *dir = world(&o);
    char *mp = fxp_path(dir, "manifest.json");
    sg_diag d = {0};
    sg_manifest *m0, *m1;
    cr_assert_eq(sg_manifest_load(mp, 1, &m0, &d), SG_OK);
    cr_assert_eq(sg_manifest_load(mp, 0, &m1, &d), SG_OK);
    for (int t = 0; t < 3; t++) {
        cr_assert_eq(strlen(m0->tasks[t].config_hash), 64);
        cr_assert_str_eq(m0->tasks[t].config_hash, m1->tasks[t].config_hash, "deep or not, unchanged inputs: same hash");
    }
    cr_assert_str_eq(m0->tasks_hash, m1->tasks_hash);
    cr_assert_str_neq(m0->tasks[0].config_hash, m0->tasks[1].config_hash);
    sg_manifest_free(m1);
    /* orpha:2's second exemplar rewritten in place (diff3 uses 2 shots, screen-b 3; a-vs-ref has no orpha:2) */
    char *src = fxp_path(dir, "exemplars/d0-0.png"), *dst = fxp_path(dir, "exemplars/d1-1.jpg");
    uint8_t *data;
    size_t len;
    cr_assert_eq(sg_file_read_all(src, &data, &len, 1 << 20, NULL), SG_OK);
    fxp_write(dst, data, len);
    free(data);
    cr_assert_eq(sg_manifest_load(mp, 0, &m1, &d), SG_OK);
    cr_assert_str_eq(m0->config_hash, m1->config_hash, "the manifest and engine are the same");
    cr_assert_str_neq(m0->tasks[0].config_hash, m1->tasks[0].config_hash, "diff3 uses the exemplar");
    cr_assert_str_eq(m0->tasks[1].config_hash, m1->tasks[1].config_hash, "a-vs-ref does not");
    cr_assert_str_neq(m0->tasks[2].config_hash, m1->tasks[2].config_hash, "screen-b uses the exemplar");
    cr_assert_str_neq(m0->tasks_hash, m1->tasks_hash);
    /* a registry entry's description changed: the tasks of that class */
    char *rp = fxp_path(dir, "registry.json");
    cr_assert_eq(sg_file_read_all(rp, &data, &len, 1 << 20, NULL), SG_OK);
    char *at = strstr((char *)data, "a red round lesion");
    cr_assert(at);
    at[2] = 'R';
    fxp_write(rp, data, len);
    free(data);
    sg_manifest *m2;
    cr_assert_eq(sg_manifest_load(mp, 0, &m2, &d), SG_OK);
    cr_assert_str_neq(m1->tasks[0].config_hash, m2->tasks[0].config_hash, "diff3 has orpha:1");
    cr_assert_str_neq(m1->tasks[1].config_hash, m2->tasks[1].config_hash, "a-vs-ref has orpha:1");
    cr_assert_str_eq(m1->tasks[2].config_hash, m2->tasks[2].config_hash, "screen-b has not");
    sg_manifest_free(m1);
    sg_manifest_free(m2);
    sg_manifest_free(m0);
    /* an index JSON rewritten to list other shards: the task that reads it */
    char *ip = fxp_path(dir, "shards/idx.json");
    const char *idx = "{\"format\": \"sgps-shards\", \"version\": 1, \"shards\": [{\"path\": \"lab-%06d.tar\", \"samples\": 40,"
                      " \"bytes\": 1, \"sha256\": \"%064d\"}]}";
    char text[512];
    snprintf(text, sizeof text, idx, 0, 0);
    fxp_write(ip, text, strlen(text));
    char *mi = fxp_path(dir, "mi.json");
    const char *man = "{\"engine\": \"engine.sgpe\", \"registry\": \"registry.json\", \"output\": \"r\",\n"
                      " \"tasks\": [{\"id\": \"a\", \"kind\": \"evaluate\", \"classes\": [\"orpha:1\", \"orpha:2\"],"
                      " \"shots\": 1, \"shards\": \"shards/idx.json\"}]}";
    fxp_write(mi, man, strlen(man));
    cr_assert_eq(sg_manifest_load(mi, 0, &m0, &d), SG_OK);
    snprintf(text, sizeof text, idx, 1, 0);
    fxp_write(ip, text, strlen(text));
    cr_assert_eq(sg_manifest_load(mi, 0, &m2, &d), SG_OK);
    dump(&d);
    cr_assert_str_eq(m0->config_hash, m2->config_hash, "the manifest bytes did not change");
    cr_assert_str_neq(m0->tasks[0].config_hash, m2->tasks[0].config_hash, "the index lists another shard");
    sg_manifest_free(m0);
    sg_manifest_free(m2);
    sg_diag_free(&d);
    free(src);
    free(dst);
    free(rp);
    free(ip);
    free(mi);
    free(mp);
    rmrf(dir);
    free(dir);
}
