/* test_open_set.c — open-set ("none of these") tasks: the calibration rules
 * against hand-computed thresholds (accept, balanced, ties, fallbacks),
 * rejection metrics, the manifest's open_set field (good world and every bad
 * field reported with file, JSON path and reason), and the dry-run plan. */
#include "sg_jobs.h"
#include "sg_pipeline.h"
#include "sg_pipeline_test_util.h"

#include <criterion/criterion.h>
#include <math.h>

static sg_open_set reference_os(double accept, sg_open_rule rule) {
    sg_open_set os;
    memset(&os, 0, sizeof os);
    os.enabled = 1;
    os.accept = accept;
    os.rule = rule;
    os.n_ref_shards = 1;
    return os;
}

Test(pipeline, open_set_accept_rule) {
    const float best[] = {0.9f, 0.8f, 0.7f, 0.6f, 0.55f, 0.3f};
    const int label[] = {0, 1, 0, 1, 0, SG_LABEL_UNKNOWN}; /* the unlabelled row is left out */
    sg_open_calibration c;
    sg_open_set os = reference_os(0.8, SG_OPEN_RULE_AUTO);
    sg_open_set_calibrate(&os, 2, 6, best, label, &c);
    cr_assert_str_eq(c.source, "reference");
    cr_assert_eq(c.rule, SG_OPEN_RULE_ACCEPT, "no out-of-set reference image: the accept rule");
    cr_assert_float_eq(c.threshold, 0.6f, 1e-9, "ceil(0.8 * 5) = 4th largest of the in-set scores");
    cr_assert_float_eq(c.ref_accept_rate, 0.8, 1e-12);
    cr_assert(isnan(c.ref_reject_rate));
    cr_assert_eq(c.ref_in_set, 5);
    cr_assert_eq(c.ref_out_of_set, 0);
    os.accept = 1.0;
    sg_open_set_calibrate(&os, 2, 6, best, label, &c);
    cr_assert_float_eq(c.threshold, 0.55f, 1e-9, "accept 1: the lowest in-set score");
    os.accept = 0.5;
    sg_open_set_calibrate(&os, 2, 6, best, label, &c);
    cr_assert_float_eq(c.threshold, 0.7f, 1e-9, "ceil(2.5) = 3rd largest");
    /* ties at the threshold are all accepted */
    const float tb[] = {0.9f, 0.7f, 0.7f, 0.6f};
    const int tl[] = {0, 0, 1, 1};
    os.accept = 0.5;
    sg_open_set_calibrate(&os, 2, 4, tb, tl, &c);
    cr_assert_float_eq(c.threshold, 0.7f, 1e-9);
    cr_assert_float_eq(c.ref_accept_rate, 0.75, 1e-12);
}

Test(pipeline, open_set_balanced_rule) {
    /* in set 0.9 0.8 0.6, out of set 0.7 0.5 0.4: balanced accuracy by candidate
     * 0.4: .5, 0.5: .667, 0.6: .833, 0.7: .667, 0.8: .833, 0.9: .667 → 0.6 (ties: lowest) */
    const float best[] = {0.9f, 0.7f, 0.8f, 0.5f, 0.6f, 0.4f};
    const int label[] = {0, SG_LABEL_NONE, 1, SG_LABEL_NONE, 2, SG_LABEL_NONE};
    sg_open_calibration c;
    sg_open_set os = reference_os(0.95, SG_OPEN_RULE_AUTO);
    sg_open_set_calibrate(&os, 3, 6, best, label, &c);
    cr_assert_eq(c.rule, SG_OPEN_RULE_BALANCED, "out-of-set reference images: the balanced rule");
    cr_assert_float_eq(c.threshold, 0.6f, 1e-9);
    cr_assert_float_eq(c.ref_accept_rate, 1.0, 1e-12);
    cr_assert_float_eq(c.ref_reject_rate, 2.0 / 3.0, 1e-12);
    cr_assert_eq(c.ref_out_of_set, 3);
    cr_assert_str_eq(c.note, "");
    /* the accept rule on the same data when asked */
    os.rule = SG_OPEN_RULE_ACCEPT;
    os.accept = 2.0 / 3.0;
    sg_open_set_calibrate(&os, 3, 6, best, label, &c);
    cr_assert_eq(c.rule, SG_OPEN_RULE_ACCEPT);
    cr_assert_float_eq(c.threshold, 0.8f, 1e-9);
    cr_assert_float_eq(c.ref_reject_rate, 1.0, 1e-12);
    /* balanced asked, but nothing out of set: accept rule, with a note */
    const int only_in[] = {0, 1, 0, 1, 0, 1};
    os.rule = SG_OPEN_RULE_BALANCED;
    os.accept = 1.0;
    sg_open_set_calibrate(&os, 3, 6, best, only_in, &c);
    cr_assert_eq(c.rule, SG_OPEN_RULE_ACCEPT);
    cr_assert_float_eq(c.threshold, 0.4f, 1e-9);
    cr_assert(strstr(c.note, "rule balanced needs reference images labelled out of set"));
}

Test(pipeline, open_set_fixed_and_default) {
    const float best[] = {0.9f, 0.2f};
    const int none[] = {SG_LABEL_NONE, SG_LABEL_NONE};
    sg_open_calibration c;
    sg_open_set os;
    memset(&os, 0, sizeof os);
    os.enabled = 1;
    sg_open_set_calibrate(&os, 4, 0, NULL, NULL, &c);
    cr_assert_str_eq(c.source, "default");
    cr_assert_float_eq(c.threshold, 0.625, 1e-12, "(1 + 1/4) / 2");
    cr_assert_float_eq(sg_open_set_default_threshold(2), 0.75, 1e-12);
    os.fixed = 1;
    os.threshold = 0.42;
    sg_open_set_calibrate(&os, 4, 0, NULL, NULL, &c);
    cr_assert_str_eq(c.source, "fixed");
    cr_assert_float_eq(c.threshold, 0.42, 1e-12);
    /* reference shards that gave no in-set image: the default, with a note */
    sg_open_set r = reference_os(0.95, SG_OPEN_RULE_AUTO);
    sg_open_set_calibrate(&r, 2, 2, best, none, &c);
    cr_assert_str_eq(c.source, "default");
    cr_assert_float_eq(c.threshold, 0.75, 1e-12);
    cr_assert(strstr(c.note, "no image labelled with one of the task's classes"));
}

Test(pipeline, open_set_metrics_hand_values) {
    /* 2 classes; rows: (label, argmax, best) */
    const int label[] = {0, 0, 1, 1, SG_LABEL_NONE, SG_LABEL_NONE, SG_LABEL_NONE, SG_LABEL_UNKNOWN};
    const int pred[] = {0, 1, 1, 1, 0, 1, 0, 0};
    const float best[] = {0.9f, 0.8f, 0.55f, 0.95f, 0.52f, 0.58f, 0.9f, 0.51f};
    uint8_t rej[8];
    sg_open_metrics m;
    sg_open_metrics_compute(8, 2, label, pred, best, 0.6, rej, &m);
    const uint8_t want[] = {0, 0, 1, 0, 1, 1, 0, 1};
    cr_assert_arr_eq(rej, want, 8);
    cr_assert_eq(m.rejected, 4);
    cr_assert_float_eq(m.rejected_fraction, 0.5, 1e-12);
    cr_assert_eq(m.in_set, 4);
    cr_assert_eq(m.in_set_accepted, 3);
    cr_assert_eq(m.in_set_correct, 2, "row 1 is accepted but wrong");
    cr_assert_eq(m.out_of_set, 3);
    cr_assert_eq(m.out_of_set_rejected, 2);
    cr_assert_float_eq(m.true_accept_rate, 0.75, 1e-12);
    cr_assert_float_eq(m.true_reject_rate, 2.0 / 3.0, 1e-12);
    /* confusion rows true 0, 1, none; columns 0, 1, none */
    const int64_t cm[] = {1, 1, 0, 0, 1, 1, 1, 0, 2};
    cr_assert_arr_eq(m.confusion, cm, sizeof cm);
    cr_assert_float_eq(m.open_balanced_accuracy, (0.5 + 0.5 + 2.0 / 3.0) / 3.0, 1e-12);
    /* best score, in set vs out of set: 4 x 3 pairs; in-set scores above out-of-set ones:
     * 0.9 > .52 .58 (=.9 half), .8 > .52 .58, .55 > .52, .95 > all → 2.5 + 2 + 1 + 3 = 8.5 of 12 */
    cr_assert_float_eq(m.auroc, 8.5 / 12.0, 1e-12);
    sg_open_metrics_free(&m);
}

/* ---- the manifest ---- */

static const sg_run_task *task_by_id(const sg_manifest *m, const char *id) {
    for (int t = 0; t < m->n_tasks; t++)
        if (strcmp(m->tasks[t].id, id) == 0) return &m->tasks[t];
    cr_assert_fail("no task %s", id);
    return NULL;
}

Test(pipeline, open_set_manifest_good) {
    fxp_opts o;
    fxp_opts_default(&o);
    o.open_set = 1;
    char *dir = world(&o);
    char *mp = fxp_path(dir, "manifest.json");
    sg_diag d = {0};
    sg_manifest *m;
    cr_assert_eq(sg_manifest_load(mp, 1, &m, &d), SG_OK);
    dump(&d);
    cr_assert_eq(d.n, 0);
    cr_assert_eq(m->n_tasks, 7);
    /* 10 units of the base world, 4 + 2 reference (open-eval), 2 + 1 (open-screen), 4, 2 */
    cr_assert_eq(m->n_units, 25);
    cr_assert_eq(m->n_files, 8, "4 labelled, 2 cohort, 2 reference shards, each kept once");
    const sg_run_task *e = task_by_id(m, "open-eval");
    cr_assert(e->open_set.enabled);
    cr_assert_eq(e->open_set.n_ref_shards, 2);
    cr_assert_eq(e->open_set.rule, SG_OPEN_RULE_AUTO);
    cr_assert_float_eq(e->open_set.accept, 0.95, 1e-12);
    cr_assert_eq(e->open_set.n_map, 3);
    cr_assert_eq(e->open_set.map_class[1], 1);
    cr_assert_eq(e->open_set.map_class[2], SG_LABEL_NONE);
    cr_assert_eq(e->map_class[2], SG_LABEL_NONE, "the task's labels may map to null too");
    cr_assert_eq(sg_task_n_units(e), 6);
    cr_assert_str_eq(sg_task_shard(m, e, 4)->name, "shards/ref-000000.tar");
    int ti;
    size_t si;
    sg_manifest_unit(m, 15, &ti, &si); /* 10 base units, then open-eval's 4 shards and 2 references */
    cr_assert_str_eq(m->tasks[ti].id, "open-eval");
    cr_assert_eq(si, 5);
    const sg_run_task *s = task_by_id(m, "open-screen");
    cr_assert_float_eq(s->open_set.accept, 0.9, 1e-12);
    cr_assert_eq(s->open_set.n_map, 0);
    const sg_run_task *df = task_by_id(m, "open-default");
    cr_assert(df->open_set.enabled && !df->open_set.fixed && df->open_set.n_ref_shards == 0);
    cr_assert_float_eq(df->open_set.threshold, 0.75, 1e-12);
    const sg_run_task *fx = task_by_id(m, "open-fixed");
    cr_assert(fx->open_set.fixed);
    cr_assert_float_eq(fx->open_set.threshold, 0.9, 1e-12);
    cr_assert(!m->tasks[0].open_set.enabled);

    /* the plan: every unit once, for 1 and 3 ranks */
    sg_run_opts ro;
    memset(&ro, 0, sizeof ro);
    sg_run_plan p;
    sg_err err;
    cr_assert_eq(sg_pipeline_plan(m, &ro, 1, &p, &err), SG_OK);
    cr_assert_eq(p.units, 25);
    cr_assert_eq(p.units_reference, 3);
    cr_assert_eq(p.units_to_run, 25);
    cr_assert_eq(p.units_per_rank_max, 25);
    cr_assert_eq(p.syntheses, 7, "one rank: each task synthesized once");
    cr_assert_eq(p.tasks_open_set, 4);
    cr_assert_eq(p.tasks_calibrated, 2);
    cr_assert_eq(sg_pipeline_plan(m, &ro, 3, &p, &err), SG_OK);
    cr_assert_eq(p.units_per_rank_min + p.units_per_rank_max >= 16, 1);
    cr_assert_leq(p.units_per_rank_max - p.units_per_rank_min, 1, "equal costs: balanced to one unit");
    cr_assert_leq(p.syntheses, 7 + 3 * 2, "a task goes to one rank, others join only at the end");
    sg_manifest_free(m);
    sg_diag_free(&d);
    free(mp);
    rmrf(dir);
    free(dir);
}

Test(pipeline, open_set_manifest_bad_fields) {
    fxp_opts o;
    fxp_opts_default(&o);
    o.open_set = 1;
    char *dir = world(&o);
#define T(id, extra)                                                                                                  \
    "  {\"id\": \"" id "\", \"kind\": \"evaluate\", \"classes\": [\"orpha:1\", \"orpha:2\"], \"shots\": 1,"           \
    " \"shards\": \"shards/lab-000000.tar\"" extra "}"
    const char *bad =
        "{\"engine\": \"engine.sgpe\", \"registry\": \"registry.json\", \"output\": \"r\", \"tasks\": [\n"
        T("t0", ", \"open_set\": \"yes\"") ",\n"
        T("t1", ", \"open_set\": {\"threshold\": 2}") ",\n"
        T("t2", ", \"open_set\": {\"reference\": \"shards/ref-000000.tar\", \"threshold\": 0.5}") ",\n"
        T("t3", ", \"open_set\": {\"accept\": 0}") ",\n"
        T("t4", ", \"open_set\": {\"reference\": \"shards/ref-000000.tar\", \"rule\": \"best\", \"colour\": 1}") ",\n"
        T("t5", ", \"open_set\": {\"reference\": \"shards/nope-{0..1}.tar\"}") ",\n"
        T("t6", ", \"open_set\": {\"reference\": \"shards/ref-000000.tar\", \"labels\": {\"0\": 5, \"1\": null}}") ",\n"
        T("t7", ", \"labels\": {\"0\": 0, \"2\": null}") ",\n"
        T("t8", ", \"open_set\": {\"reference\": 3}") ",\n"
        T("t9", ", \"open_set\": {\"reference\": \"shards/ref-{000000,000000}.tar\", \"accept\": 1.5}") "\n"
        "]}\n";
#undef T
    char *mp = fxp_path(dir, "bad.json");
    fxp_write(mp, bad, strlen(bad));
    sg_diag d = {0};
    sg_manifest *m;
    cr_assert_eq(sg_manifest_load(mp, 1, &m, &d), SG_ERR_FORMAT);
    dump(&d);
    cr_assert(has(&d, "bad.json: $.tasks[0].open_set: must be true, false or an object", SG_DIAG_ERROR));
    cr_assert(has(&d, "bad.json: $.tasks[1].open_set.threshold: must be a number in [0, 1]", SG_DIAG_ERROR));
    cr_assert(has(&d, "bad.json: $.tasks[2].open_set.threshold: cannot be combined with reference", SG_DIAG_ERROR));
    cr_assert(has(&d, "bad.json: $.tasks[3].open_set.accept: must be a number in (0, 1]", SG_DIAG_ERROR));
    cr_assert(has(&d, "bad.json: $.tasks[3].open_set.accept: only applies with reference", SG_DIAG_ERROR));
    cr_assert(has(&d, "bad.json: $.tasks[4].open_set.rule: must be \"accept\" or \"balanced\"", SG_DIAG_ERROR));
    cr_assert(has(&d, "bad.json: $.tasks[4].open_set.colour: unknown key", SG_DIAG_ERROR));
    cr_assert(has(&d, "bad.json: $.tasks[5].open_set.reference: 'shards/nope-{0..1}.tar' matches no readable file",
                  SG_DIAG_DATA));
    cr_assert(has(&d, "bad.json: $.tasks[6].open_set.labels[\"0\"]: must be a class index 0..1 or a registry id among "
                      "the task's classes, or null",
                  SG_DIAG_ERROR));
    cr_assert(!has(&d, "$.tasks[6].open_set.labels[\"1\"]", SG_DIAG_ERROR), "null is fine in open_set.labels");
    cr_assert(has(&d, "bad.json: $.tasks[7].labels[\"2\"]: null (none of the task's classes) needs \"open_set\"",
                  SG_DIAG_ERROR));
    cr_assert(has(&d, "bad.json: $.tasks[8].open_set.reference: must be a brace pattern or an index JSON", SG_DIAG_ERROR));
    cr_assert(has(&d, "bad.json: $.tasks[9].open_set.reference: shard 'shards/ref-000000.tar' listed twice", SG_DIAG_ERROR));
    cr_assert(has(&d, "bad.json: $.tasks[9].open_set.accept: must be a number in (0, 1]", SG_DIAG_ERROR));
    cr_assert_eq(sg_diag_count(&d, SG_DIAG_ERROR), 12);
    sg_manifest_free(m);
    sg_diag_free(&d);

    /* "none" names rejected images: an open-set task cannot have a class of that id */
    const char *reg = "{\"diseases\": [{\"id\": \"none\", \"description\": \"x\"}, {\"id\": \"b\", \"description\": \"y\"}]}";
    char *rp = fxp_path(dir, "reg-none.json");
    fxp_write(rp, reg, strlen(reg));
    const char *man = "{\"engine\": \"engine.sgpe\", \"registry\": \"reg-none.json\", \"output\": \"r\", \"tasks\": ["
                      "{\"id\": \"n\", \"kind\": \"screen\", \"classes\": [\"b\", \"none\"], \"shots\": 0,"
                      " \"shards\": \"shards/lab-000000.tar\", \"open_set\": true},"
                      "{\"id\": \"ok\", \"kind\": \"screen\", \"classes\": [\"b\", \"none\"], \"shots\": 0,"
                      " \"shards\": \"shards/lab-000000.tar\"}]}";
    fxp_write(mp, man, strlen(man));
    memset(&d, 0, sizeof d);
    cr_assert_eq(sg_manifest_load(mp, 1, &m, &d), SG_ERR_FORMAT);
    dump(&d);
    cr_assert(has(&d, "bad.json: $.tasks[0].classes[1]: 'none' is reserved for open-set rejection", SG_DIAG_ERROR));
    cr_assert_eq(d.n, 1, "without open_set a class may be called none");
    sg_manifest_free(m);
    sg_diag_free(&d);
    free(rp);
    free(mp);
    rmrf(dir);
    free(dir);
}

/* Many tasks sharing and not sharing shard lists: each file kept once,
 * unit → (task, shard) right at every task boundary (empty tasks included). */
Test(pipeline, manifest_many_tasks_shared_files) {
    fxp_opts o;
    fxp_opts_default(&o);
    char *dir = world(&o);
    sg_buf b = {0};
    sg_buf_printf(&b, "{\"engine\": \"engine.sgpe\", \"registry\": \"registry.json\", \"output\": \"r\", \"tasks\": [\n");
    int T = 300;
    for (int t = 0; t < T; t++)
        sg_buf_printf(&b, "%s{\"id\": \"t%d\", \"kind\": \"screen\", \"classes\": [\"orpha:1\", \"orpha:2\"], \"shots\": 1,"
                          " \"shards\": \"shards/x-{%06d..%06d}.tar\"}\n",
                      t ? "," : "", t, t % 50, t % 50 + t % 7);
    sg_buf_printf(&b, "]}\n");
    char *mp = fxp_path(dir, "many.json");
    fxp_write(mp, b.data, b.len);
    sg_buf_free(&b);
    sg_diag d = {0};
    sg_manifest *m;
    cr_assert_eq(sg_manifest_load(mp, 0, &m, &d), SG_OK);
    dump(&d);
    size_t units = 0, last = 0;
    for (int t = 0; t < T; t++) {
        units += (size_t)(t % 7 + 1);
        if ((size_t)(t % 50 + t % 7) > last) last = (size_t)(t % 50 + t % 7);
    }
    cr_assert_eq(m->n_units, units);
    cr_assert_eq(m->n_files, last + 1, "x-000000 .. the last one listed, each once");
    for (size_t u = 0; u < m->n_units; u++) {
        int ti;
        size_t si;
        sg_manifest_unit(m, u, &ti, &si);
        cr_assert_eq(m->unit_start[ti] + si, u);
        char want[64];
        snprintf(want, sizeof want, "shards/x-%06zu.tar", (size_t)(ti % 50) + si);
        cr_assert_str_eq(sg_task_shard(m, &m->tasks[ti], si)->name, want);
    }
    sg_manifest_free(m);
    sg_diag_free(&d);
    free(mp);
    rmrf(dir);
    free(dir);
}
