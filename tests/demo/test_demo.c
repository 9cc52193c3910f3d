/* test_demo.c — the demo world generator (cli/sg_demo_*.c): planning rules
 * (held-out combinations are new, every attribute value and every word of a
 * held-out description occurs in training, descriptions name every
 * attribute), rendering follows the attributes, the files of a small world
 * (counts, shards read back with io's reader and the right labels, images
 * identical to the ImageFolder), byte-identical output for the same seed, and
 * a manifest that pipeline/ loads without a single problem. */
#include "sg_cli_demo.h"
#include "sg_io.h"
#include "sg_pipeline.h"
#include "sg_synth.h"

#include <criterion/criterion.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *tmpdir(void) {
    char *t = strdup("/tmp/sgdemo-test-XXXXXX");
    cr_assert(mkdtemp(t));
    return t;
}

static void rmrf(const char *dir) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

static char *path2(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", a, b);
    return p;
}

static sg_demo_opts small_opts(uint64_t seed) {
    sg_demo_opts o;
    sg_demo_opts_default(&o);
    o.seed = seed;
    o.n_diseases = 15;
    o.per_class = 6;
    o.size = 32;
    o.progress = 0;
    return o;
}

/* Writes a small world into a new temporary folder. */
static char *make_world(const sg_demo_opts *o, sg_demo_world *w) {
    sg_err err;
    cr_assert_eq(sg_demo_world_plan(o, w, &err), SG_OK, "%s", err.msg);
    char *dir = tmpdir();
    cr_assert_eq(sg_demo_world_write(o, w, dir, &err), SG_OK, "%s", err.msg);
    return dir;
}

static int count_lines(const char *path) {
    FILE *f = fopen(path, "r");
    cr_assert(f, "%s missing", path);
    int n = 0, c;
    while ((c = fgetc(f)) != EOF) n += c == '\n';
    fclose(f);
    return n;
}

Test(demo, plan_rules) {
    sg_demo_opts o;
    sg_demo_opts_default(&o);
    o.seed = 3;
    sg_demo_world w;
    sg_err err;
    cr_assert_eq(sg_demo_world_plan(&o, &w, &err), SG_OK, "%s", err.msg);
    cr_assert_eq(w.n, 60);
    cr_assert_eq(w.n_heldout, 12);
    cr_assert_eq(w.n_train, 48);
    for (int i = 0; i < w.n; i++) cr_assert_eq(w.d[i].heldout, i >= w.n_train);
    /* every value of every attribute occurs in training */
    for (int k = 0; k < SG_DEMO_KINDS; k++)
        for (int v = 0; v < sg_demo_kind_count((sg_demo_kind)k); v++) {
            int seen = 0;
            for (int i = 0; i < w.n_train; i++)
                for (int s = 0; s < SG_DEMO_SLOTS; s++)
                    seen |= sg_demo_slot_kind((sg_demo_slot)s) == (sg_demo_kind)k && w.d[i].a.v[s] == v;
            cr_assert(seen, "%s '%s' never occurs in training", sg_demo_kind_name((sg_demo_kind)k),
                      sg_demo_value_name((sg_demo_kind)k, v));
        }
    /* held-out combinations are new: two slots away from every other disease */
    for (int j = w.n_train; j < w.n; j++)
        for (int i = 0; i < w.n; i++)
            if (i != j)
                cr_assert_geq(sg_demo_attrs_distance(&w.d[i].a, &w.d[j].a), 2, "%s too close to %s", w.d[j].id,
                              w.d[i].id);
    for (int i = 0; i < w.n; i++) {
        const sg_demo_disease *d = &w.d[i];
        cr_assert_neq(d->a.v[SG_DEMO_S_COLOUR1], d->a.v[SG_DEMO_S_COLOUR2]);
        for (int s = 0; s < SG_DEMO_SLOTS; s++) {
            int v = d->a.v[s];
            if (v < 0) continue;
            sg_demo_kind k = sg_demo_slot_kind((sg_demo_slot)s);
            const char *ph = sg_demo_phrase(k, v, d->syn[s]);
            /* the description names the attribute */
            cr_assert(strcasestr(d->description, ph), "%s: '%s' lacks '%s'", d->id, d->description, ph);
            /* and a held-out description uses words training descriptions use */
            if (d->heldout) {
                int found = 0;
                for (int t = 0; t < w.n_train && !found; t++) found = strcasestr(w.d[t].description, ph) != NULL;
                cr_assert(found, "%s: '%s' never appears in a training description", d->id, ph);
            }
        }
        for (int t = 0; t < i; t++) cr_assert_str_neq(w.d[t].name, d->name);
        cr_assert_eq(d->n_exemplars >= 3 && d->n_exemplars <= 5, d->heldout);
    }
    /* tasks: held-out classes only, shots within every class's exemplars */
    int screens = 0, text_only = 0;
    for (int t = 0; t < w.n_tasks; t++) {
        const sg_demo_task *k = &w.tasks[t];
        screens += k->screen;
        text_only += k->shots == 0;
        cr_assert_geq(k->n_classes, k->screen ? 1 : 3);
        for (int c = 0; c < k->n_classes; c++) {
            cr_assert(w.d[k->cls[c]].heldout);
            cr_assert_leq(k->shots, w.d[k->cls[c]].n_exemplars);
        }
    }
    cr_assert_eq(screens, 2);
    cr_assert_eq(text_only, 1);
    sg_demo_world_free(&w);
}

Test(demo, plan_refuses_bad_options) {
    sg_demo_opts o = small_opts(1);
    sg_demo_world w;
    sg_err err;
    o.n_diseases = 11;
    cr_assert_eq(sg_demo_world_plan(&o, &w, &err), SG_ERR_ARG);
    cr_assert(strstr(err.msg, "--diseases"));
    o = small_opts(1);
    o.size = 8;
    cr_assert_eq(sg_demo_world_plan(&o, &w, &err), SG_ERR_ARG);
    cr_assert(strstr(err.msg, "--size"));
}

/* Mean RGB over the pixels within radius rf (fraction of the side) of the centre, or outside it. */
static void region_mean(const uint8_t *rgb, int side, float rf, int inside, float out[3]) {
    double s[3] = {0, 0, 0};
    long n = 0;
    for (int y = 0; y < side; y++)
        for (int x = 0; x < side; x++) {
            float dx = (x + 0.5f) / side - 0.5f, dy = (y + 0.5f) / side - 0.5f;
            int in = dx * dx + dy * dy < rf * rf;
            if (in != inside) continue;
            for (int k = 0; k < 3; k++) s[k] += rgb[((size_t)y * side + x) * 3 + k];
            n++;
        }
    for (int k = 0; k < 3; k++) out[k] = (float)(s[k] / n);
}

Test(demo, render_follows_attributes) {
    enum { S = 64 };
    uint8_t a[S * S * 3], b[S * S * 3];
    /* a large, round, uniform black lesion on pale skin: dark centre, light surround */
    sg_demo_attrs at = {{0, 0, 2, -1, 0, 2, 0}};
    float in[3], out[3];
    for (int rep = 0; rep < 5; rep++) {
        sg_demo_render(&at, 7, (uint64_t)rep, S, a);
        region_mean(a, S, 0.1f, 1, in);
        region_mean(a, S, 0.45f, 0, out);
        cr_assert_lt(in[0] + in[1] + in[2], 150, "lesion centre not dark: %.0f", in[0] + in[1] + in[2]);
        cr_assert_gt(out[0], 120, "pale skin not light: %.0f", out[0]);
    }
    /* a ring leaves the centre skin-coloured */
    at.v[SG_DEMO_S_SHAPE] = 4;
    sg_demo_render(&at, 7, 0, S, a);
    region_mean(a, S, 0.05f, 1, in);
    cr_assert_gt(in[0] + in[1] + in[2], 300, "ring centre should show skin: %.0f", in[0] + in[1] + in[2]);
    /* a red lesion is red; the same draw with another texture differs */
    sg_demo_attrs red = {{0, 0, 3, -1, 0, 2, 0}};
    sg_demo_render(&red, 7, 0, S, a);
    region_mean(a, S, 0.1f, 1, in);
    cr_assert_gt(in[0], in[1] + 60);
    red.v[SG_DEMO_S_TEXTURE] = 3;
    sg_demo_render(&red, 7, 0, S, b);
    cr_assert_neq(memcmp(a, b, sizeof a), 0);
    /* same (seed, stream): the same image */
    sg_demo_render(&red, 7, 0, S, a);
    cr_assert_eq(memcmp(a, b, sizeof a), 0);
    /* PNG round trip through io's decoder */
    sg_buf png = {0};
    sg_err err;
    cr_assert_eq(sg_demo_png_encode(a, S, S, &png, &err), SG_OK);
    sg_image im;
    cr_assert_eq(sg_image_decode(png.data, png.len, "t.png", NULL, &im, &err), SG_OK, "%s", err.msg);
    cr_assert_eq(im.w, S);
    cr_assert_eq(memcmp(im.rgb, a, sizeof a), 0);
    sg_image_free(&im);
    sg_buf_free(&png);
}

/* Reads every sample of a shard list: labels into counts[label + 1] (index 0
 * counts unlabelled), checks that each image decodes at side × side. */
static long read_shards(const char *pattern, int side, long *counts, int n_counts, char ***keys, long *n_keys) {
    char **paths;
    size_t n;
    sg_err err;
    cr_assert_eq(sg_shard_list_resolve(pattern, &paths, &n, &err), SG_OK, "%s", err.msg);
    sg_shard_reader_opts ro;
    sg_shard_reader_opts_default(&ro);
    ro.decode = 1;
    long total = 0;
    for (size_t i = 0; i < n; i++) {
        sg_shard_reader *r = sg_shard_reader_open(paths[i], &ro, &err);
        cr_assert(r, "%s", err.msg);
        sg_sample *s;
        while (sg_shard_reader_next(r, &s) == SG_OK && s) {
            cr_assert_eq(s->img.w, side);
            cr_assert_eq(s->img.h, side);
            cr_assert_str_eq(s->image_ext, "png");
            cr_assert_lt(s->label + 1, n_counts);
            counts[s->label + 1]++;
            if (keys) {
                *keys = realloc(*keys, sizeof(char *) * (size_t)(*n_keys + 1));
                (*keys)[(*n_keys)++] = strdup(s->key);
            }
            total++;
        }
        cr_assert_eq(sg_shard_reader_n_skipped(r), 0);
        cr_assert_eq(sg_shard_reader_status(r, &err), SG_OK);
        sg_shard_reader_free(r);
    }
    sg_strv_free(paths, n);
    return total;
}

Test(demo, small_world_files) {
    sg_demo_opts o = small_opts(5);
    sg_demo_world w;
    char *dir = make_world(&o, &w);
    cr_assert_eq(w.n_heldout, 3);
    cr_assert_eq(w.n_train, 12);
    char *p = path2(dir, "train/labels.csv");
    cr_assert_eq(count_lines(p), 1 + w.n_train * o.per_class);
    free(p);
    p = path2(dir, "heldout/labels.csv");
    cr_assert_eq(count_lines(p), 1 + w.n_heldout * w.per_val);
    free(p);
    p = path2(dir, "screen-truth.csv");
    cr_assert_eq(count_lines(p), 1 + w.n_screen);
    free(p);

    /* training shards: labels index the index's classes, per_class each; images identical to the folder */
    char pat[4096];
    snprintf(pat, sizeof pat, "%s/shards/train-index.json", dir);
    sg_shard_index *ix;
    sg_err err;
    cr_assert_eq(sg_shard_index_load(pat, &ix, &err), SG_OK, "%s", err.msg);
    cr_assert_eq((int)ix->n_classes, w.n_train);
    for (int i = 0; i < w.n_train; i++) cr_assert_str_eq(ix->classes[i], w.d[i].id);
    cr_assert_eq(ix->total_samples, (uint64_t)(w.n_train * o.per_class));
    sg_shard_index_free(ix);
    cr_assert_eq(sg_shard_index_verify(pat, &(size_t){0}, &err), SG_OK, "%s", err.msg);
    long counts[64] = {0};
    cr_assert_eq(read_shards(pat, o.size, counts, 64, NULL, NULL), w.n_train * o.per_class);
    cr_assert_eq(counts[0], 0);
    for (int i = 0; i < w.n_train; i++) cr_assert_eq(counts[i + 1], o.per_class);
    {
        sg_shard_reader *r = sg_shard_reader_open(
            (snprintf(pat, sizeof pat, "%s/shards/train-000000.tar.zst", dir), pat), NULL, &err);
        cr_assert(r);
        sg_sample *s;
        int seen = 0;
        while (sg_shard_reader_next(r, &s) == SG_OK && s) {
            char label[16];
            int j;
            cr_assert_eq(sscanf(s->key, "%15[^/]/%d", label, &j), 2, "key %s", s->key);
            cr_assert_str_eq(label, w.d[s->label].label);
            char rel[256];
            snprintf(rel, sizeof rel, "train/images/%s/%s-%04d.png", label, label, j);
            char *fp = path2(dir, rel);
            uint8_t *data;
            size_t len;
            cr_assert_eq(sg_file_read_all(fp, &data, &len, 1 << 24, &err), SG_OK, "%s", err.msg);
            cr_assert_eq(len, s->image_len);
            cr_assert_eq(memcmp(data, s->image, len), 0, "%s differs from its shard sample", fp);
            free(data);
            free(fp);
            seen++;
        }
        cr_assert_eq(seen, w.n_train * o.per_class); /* one shard at this size */
        sg_shard_reader_free(r);
    }

    /* validation shards: held-out index labels, per_val each */
    snprintf(pat, sizeof pat, "%s/shards/val-index.json", dir);
    cr_assert_eq(sg_shard_index_load(pat, &ix, &err), SG_OK, "%s", err.msg);
    for (int j = 0; j < w.n_heldout; j++) cr_assert_str_eq(ix->classes[j], w.d[w.n_train + j].id);
    sg_shard_index_free(ix);
    memset(counts, 0, sizeof counts);
    snprintf(pat, sizeof pat, "%s/shards/val-{000000..000000}.tar.zst", dir);
    cr_assert_eq(read_shards(pat, o.size, counts, 64, NULL, NULL), w.n_heldout * w.per_val);
    for (int j = 0; j < w.n_heldout; j++) cr_assert_eq(counts[j + 1], w.per_val);

    /* screening shards: unlabelled; keys are exactly those of screen-truth.csv, with the planned positives */
    memset(counts, 0, sizeof counts);
    char **keys = NULL;
    long n_keys = 0;
    snprintf(pat, sizeof pat, "%s/shards/screen-index.json", dir);
    cr_assert_eq(read_shards(pat, o.size, counts, 64, &keys, &n_keys), w.n_screen);
    cr_assert_eq(counts[0], w.n_screen);
    p = path2(dir, "screen-truth.csv");
    FILE *f = fopen(p, "r");
    char line[512];
    cr_assert(fgets(line, sizeof line, f));
    cr_assert_str_eq(line, "key,shard,truth,positive\n");
    long row = 0, pos[3] = {0, 0, 0};
    while (fgets(line, sizeof line, f)) {
        char key[64], shard[128], truth[64];
        int positive;
        cr_assert_eq(sscanf(line, "%63[^,],%127[^,],%63[^,],%d", key, shard, truth, &positive), 4);
        cr_assert_str_eq(key, keys[row]);
        for (int k = 0; k < 3; k++) pos[k] += strcmp(truth, w.d[w.screened[k]].id) == 0;
        cr_assert_eq(positive, strncmp(truth, "heldout/", 8) == 0);
        row++;
    }
    fclose(f);
    free(p);
    for (int k = 0; k < 3; k++) cr_assert_eq(pos[k], w.screen_pos[k]);
    sg_strv_free(keys, (size_t)n_keys);

    /* exemplars decode */
    for (int i = w.n_train; i < w.n; i++)
        for (int e = 0; e < w.d[i].n_exemplars; e++) {
            char rel[128];
            snprintf(rel, sizeof rel, "exemplars/%s-%d.png", w.d[i].label, e + 1);
            char *fp = path2(dir, rel);
            sg_image im;
            cr_assert_eq(sg_image_load_file(fp, NULL, &im, &err), SG_OK, "%s", err.msg);
            cr_assert_eq(im.w, o.size);
            sg_image_free(&im);
            free(fp);
        }
    sg_demo_world_free(&w);
    rmrf(dir);
    free(dir);
}

/* ---- determinism: every file's sha256, by relative path ---- */

static struct {
    char **rel, **sha;
    int n;
    size_t root_len;
} g_files;

static int collect(const char *fpath, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)ftw;
    if (flag != FTW_F) return 0;
    char hex[65];
    sg_err err;
    cr_assert_eq(sg_sha256_file(fpath, hex, &err), SG_OK);
    g_files.rel = realloc(g_files.rel, sizeof(char *) * (size_t)(g_files.n + 1));
    g_files.sha = realloc(g_files.sha, sizeof(char *) * (size_t)(g_files.n + 1));
    g_files.rel[g_files.n] = strdup(fpath + g_files.root_len);
    g_files.sha[g_files.n] = strdup(hex);
    g_files.n++;
    return 0;
}

static void list_files(const char *dir) {
    g_files.n = 0;
    g_files.rel = g_files.sha = NULL;
    g_files.root_len = strlen(dir);
    cr_assert_eq(nftw(dir, collect, 16, FTW_PHYS), 0);
}

static const char *sha_of(char **rel, char **sha, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(rel[i], name) == 0) return sha[i];
    return NULL;
}

Test(demo, same_seed_byte_identical) {
    sg_demo_opts o = small_opts(11);
    sg_demo_world w1, w2, w3;
    char *d1 = make_world(&o, &w1), *d2 = make_world(&o, &w2);
    o.seed = 12;
    char *d3 = make_world(&o, &w3);
    list_files(d1);
    char **rel1 = g_files.rel, **sha1 = g_files.sha;
    int n1 = g_files.n;
    list_files(d2);
    cr_assert_eq(g_files.n, n1);
    cr_assert_gt(n1, 100);
    for (int i = 0; i < g_files.n; i++) {
        const char *s = sha_of(rel1, sha1, n1, g_files.rel[i]);
        cr_assert(s, "%s only in the second world", g_files.rel[i]);
        cr_assert_str_eq(s, g_files.sha[i], "%s differs between two runs with the same seed", g_files.rel[i]);
    }
    for (int i = 0; i < g_files.n; i++) free(g_files.rel[i]), free(g_files.sha[i]);
    free(g_files.rel);
    free(g_files.sha);
    /* another seed: another world */
    list_files(d3);
    const char *r1 = sha_of(rel1, sha1, n1, "/registry.json"), *r3 = sha_of(g_files.rel, g_files.sha, g_files.n, "/registry.json");
    cr_assert(r1 && r3);
    cr_assert_str_neq(r1, r3);
    for (int i = 0; i < g_files.n; i++) free(g_files.rel[i]), free(g_files.sha[i]);
    free(g_files.rel);
    free(g_files.sha);
    for (int i = 0; i < n1; i++) free(rel1[i]), free(sha1[i]);
    free(rel1);
    free(sha1);
    sg_demo_world_free(&w1);
    sg_demo_world_free(&w2);
    sg_demo_world_free(&w3);
    rmrf(d1);
    rmrf(d2);
    rmrf(d3);
    free(d1);
    free(d2);
    free(d3);
}

Test(demo, manifest_loads_in_pipeline) {
    sg_demo_opts o = small_opts(2);
    sg_demo_world w;
    char *dir = make_world(&o, &w);
    /* an untrained engine stands in for the one scripts/demo trains */
    sg_engine_config cfg;
    sg_engine_config_default(&cfg);
    cfg.img = 16;
    cfg.store = 18;
    cfg.width = 4;
    cfg.stages = 2;
    cfg.rank = 2;
    cfg.text_buckets = 64;
    cfg.text_dim = 4;
    cfg.text_hidden = 4;
    cfg.code_dim = 2;
    cfg.n_base_classes = w.n_train;
    sg_engine *e = sg_engine_create(&cfg, 1);
    char *ep = path2(dir, "engine.sgpe");
    sg_err err;
    cr_assert_eq(sg_engine_save(e, ep, &err), SG_OK, "%s", err.msg);
    sg_engine_free(e);
    free(ep);
    char *mp = path2(dir, "manifest.json");
    sg_diag d = {0};
    sg_manifest *m = NULL;
    sg_status st = sg_manifest_load(mp, 1, &m, &d);
    for (size_t i = 0; i < d.n; i++) fprintf(stderr, "  %s\n", d.msgs[i]);
    cr_assert_eq(st, SG_OK);
    cr_assert_eq(d.n, 0, "%zu problems", d.n);
    cr_assert_eq(m->n_tasks, w.n_tasks);
    cr_assert_eq(m->n_diseases, w.n + 1); /* and the reference */
    for (int t = 0; t < m->n_tasks; t++) {
        const sg_run_task *k = &m->tasks[t];
        cr_assert_str_eq(k->id, w.tasks[t].id);
        cr_assert_eq(k->kind, w.tasks[t].screen ? SG_TASK_SCREEN : SG_TASK_EVALUATE);
        cr_assert_eq(k->shots, w.tasks[t].shots);
        cr_assert_geq(k->n_shards, 1);
        if (w.tasks[t].screen) {
            cr_assert_eq(k->n_classes, 2);
            cr_assert_eq(k->reference, 1);
            cr_assert_str_eq(k->class_ids[1], "ref/common");
        } else if (w.tasks[t].open_set) {
            /* every held-out disease mapped: the task's classes, the others to none */
            cr_assert(k->open_set.enabled);
            cr_assert_eq(k->n_map, w.n_heldout);
            int none = 0;
            for (int c = 0; c < k->n_map; c++) none += k->map_class[c] == SG_LABEL_NONE;
            cr_assert_eq(none, w.n_heldout - k->n_classes);
        } else {
            cr_assert_eq(k->n_map, k->n_classes);
            for (int c = 0; c < k->n_map; c++) {
                /* the label key is the class's index among held-out diseases, as written in the val shards */
                int di = w.tasks[t].cls[k->map_class[c]];
                char want[16];
                snprintf(want, sizeof want, "%d", di - w.n_train);
                cr_assert_str_eq(k->map_keys[c], want);
            }
        }
    }
    sg_manifest_free(m);
    sg_diag_free(&d);
    free(mp);
    sg_demo_world_free(&w);
    rmrf(dir);
    free(dir);
}

/* ---- the world teaches: an engine trained on the training diseases reads held-out ones ---- */

/* The images of diseases [first, first + n) at the engine's storage side, as
 * an in-memory dataset (planar uint8), rendered by the demo-world renderer
 * (own streams: these are not the images of the files). */
static void world_dataset(const sg_demo_world *w, uint64_t seed, int first, int n, int per, int side, sg_dataset *d) {
    memset(d, 0, sizeof *d);
    d->n = n * per;
    d->store = side;
    d->pix = sg_xmalloc((size_t)d->n * 3 * side * side);
    d->label = sg_xcalloc((size_t)d->n, sizeof(int));
    d->n_classes = n;
    d->class_names = sg_xcalloc((size_t)n, sizeof(char *));
    d->class_text = sg_xcalloc((size_t)n, sizeof(char *));
    d->class_domain = sg_xcalloc((size_t)n, sizeof(int));
    d->n_domains = 1;
    d->domain_names = sg_xcalloc(1, sizeof(char *));
    d->domain_names[0] = sg_xstrdup("demo");
    uint8_t *rgb = sg_xmalloc((size_t)3 * side * side);
    for (int c = 0; c < n; c++) {
        const sg_demo_disease *dz = &w->d[first + c];
        d->class_names[c] = sg_xstrdup(dz->id);
        d->class_text[c] = sg_xstrdup(dz->description);
        for (int i = 0; i < per; i++) {
            int idx = c * per + i;
            d->label[idx] = c;
            sg_demo_render(&dz->a, seed, ((uint64_t)(first + c) << 20) | (uint64_t)i, side, rgb);
            uint8_t *out = d->pix + (size_t)idx * 3 * side * side;
            for (int p = 0; p < side * side; p++)
                for (int k = 0; k < 3; k++) out[(size_t)k * side * side + p] = rgb[(size_t)p * 3 + k];
        }
    }
    free(rgb);
}

/* Evaluation options (default synthesis) with no method selected yet. */
static sg_fewshot_opts fewshot_opts(int way, int shot, int queries, int episodes, uint64_t seed) {
    sg_fewshot_opts f;
    sg_fewshot_opts_default(&f);
    f.way = way;
    f.shot = shot;
    f.queries = queries;
    f.episodes = episodes;
    f.seed = seed;
    return f;
}

Test(demo, engine_learns_held_out_diseases, .timeout = 300) {
    int inited;
    MPI_Initialized(&inited);
    if (!inited) MPI_Init(NULL, NULL);
    sg_log_set_level(SG_LOG_WARN);
    double t0 = sg_now();
    sg_demo_opts o;
    sg_demo_opts_default(&o);
    o.seed = 21;
    o.n_diseases = 40; /* 32 training, 8 held out */
    sg_demo_world w;
    sg_err err = {{0}};
    cr_assert_eq(sg_demo_world_plan(&o, &w, &err), SG_OK, "%s", err.msg);
    sg_engine_config c;
    sg_engine_config_default(&c);
    c.img = 24;
    c.store = 27;
    c.width = 16;
    c.stages = 3;
    c.rank = 4;
    c.text_buckets = 1024;
    c.text_dim = 16;
    c.text_hidden = 32;
    c.code_dim = 16;
    c.n_base_classes = w.n_train;
    sg_dataset train, held;
    world_dataset(&w, o.seed, 0, w.n_train, 16, c.store, &train);
    world_dataset(&w, o.seed, w.n_train, w.n_heldout, 16, c.store, &held);
    sg_engine *e = sg_engine_create(&c, 3);
    float mean[3], sd[3];
    sg_dataset_stats(&train, mean, sd);
    sg_engine_set_normalization(e, mean, sd);
    {
        /* Untrained, the generators are at zero, so without the support
         * normalization SGPS (images) and the no-adaptation ablation classify
         * every episode alike: the paired difference is exactly 0 ± 0 while
         * each method's own interval is not. */
        sg_fewshot_opts zo = fewshot_opts(4, 1, 4, 12, 4);
        zo.support_norm = 0;
        zo.methods[SG_M_SGPS_IMG] = zo.methods[SG_M_SGPS_NOADAPT] = 1;
        sg_fewshot_result zr;
        cr_assert_eq(sg_fewshot_eval(e, &held, &zo, &zr, MPI_COMM_WORLD, &err), SG_OK, "%s", err.msg);
        cr_assert(zr.has_diff[SG_M_SGPS_NOADAPT] && zr.ci95[SG_M_SGPS_IMG] > 0, "untrained: no difference or a zero CI");
        cr_assert(zr.diff[SG_M_SGPS_NOADAPT] == 0 && zr.diff_ci95[SG_M_SGPS_NOADAPT] == 0,
                  "identical methods: paired difference %g ± %g, not 0 ± 0", zr.diff[SG_M_SGPS_NOADAPT],
                  zr.diff_ci95[SG_M_SGPS_NOADAPT]);
    }
    sg_train_opts to;
    sg_train_opts_default(&to);
    to.stage1_epochs = 10;
    to.batch = 32;
    to.lr1 = 3e-3f;
    to.stage2_episodes = 600;
    to.episodes_per_step = 2;
    to.lr2 = 5e-3f;
    to.way = 4;
    to.max_shot = 3;
    to.queries = 4;
    to.val_episodes = 0;
    to.seed = 5;
    to.log_every = 100000;
    cr_assert_eq(sg_engine_train(e, &train, &to, MPI_COMM_WORLD, &err), SG_OK, "train: %s", err.msg);
    double t_train = sg_now() - t0;
    sg_fewshot_opts fo = fewshot_opts(4, 3, 8, 60, 9);
    fo.methods[SG_M_SGPS_IMG_TEXT] = fo.methods[SG_M_SGPS_TEXT] = fo.methods[SG_M_CHANCE] = 1;
    fo.methods[SG_M_SGPS_IMG] = fo.methods[SG_M_PROTONET] = 1;
    sg_fewshot_result r;
    cr_assert_eq(sg_fewshot_eval(e, &held, &fo, &r, MPI_COMM_WORLD, &err), SG_OK, "%s", err.msg);
    /* paired differences: SGPS (images) minus each other method that ran, per episode */
    cr_assert(!r.has_diff[SG_M_SGPS_IMG] && !r.has_diff[SG_M_LINPROBE], "a difference for a method that did not run");
    for (int m = 0; m < SG_M__COUNT; m++) {
        if (!r.ran[m] || m == SG_M_SGPS_IMG) continue;
        cr_assert(r.has_diff[m], "no paired difference for method %d", m);
        cr_assert_float_eq(r.diff[m], r.mean[SG_M_SGPS_IMG] - r.mean[m], 1e-9, "method %d: mean difference %g", m, r.diff[m]);
    }
    /* chance is the same in every episode, so the paired interval is SGPS's own */
    cr_assert_float_eq(r.diff_ci95[SG_M_CHANCE], r.ci95[SG_M_SGPS_IMG], 1e-9, "paired CI %g vs SGPS CI %g",
                       r.diff_ci95[SG_M_CHANCE], r.ci95[SG_M_SGPS_IMG]);
    /* SGPS and ProtoNet share the backbone and the episodes: the paired interval
     * is narrower than the two separate ones together */
    cr_assert_lt(r.diff_ci95[SG_M_PROTONET], r.ci95[SG_M_SGPS_IMG] + r.ci95[SG_M_PROTONET], "paired CI %g not narrower",
                 r.diff_ci95[SG_M_PROTONET]);
    fprintf(stderr, "demo engine: trained in %.1f s on %d diseases; held-out 4-way 3-shot: images+text %.1f %%, "
                    "text only %.1f %%, chance %.1f %% (%.1f s total)\n",
            t_train, w.n_train, 100 * r.mean[SG_M_SGPS_IMG_TEXT], 100 * r.mean[SG_M_SGPS_TEXT],
            100 * r.mean[SG_M_CHANCE], sg_now() - t0);
    cr_assert_gt(r.mean[SG_M_SGPS_IMG_TEXT], 0.7, "images+text %.3f not well above chance 0.25", r.mean[SG_M_SGPS_IMG_TEXT]);
    cr_assert_gt(r.mean[SG_M_SGPS_TEXT], 0.4, "text only %.3f not above chance 0.25", r.mean[SG_M_SGPS_TEXT]);
    sg_engine_free(e);
    sg_dataset_free(&train);
    sg_dataset_free(&held);
    sg_demo_world_free(&w);
    MPI_Finalize();
}
