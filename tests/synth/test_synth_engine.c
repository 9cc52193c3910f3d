/* test_synth_engine.c — synthesis (determinism, every generated parameter
 * block depends on the task, the images / text / text-only modes and the
 * refusal of a class with neither), the text tokenizer, and the engine file:
 * save → load round trip and one refusal per kind of damage. */
#include "sg_synth_fixtures.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <unistd.h>

/* ---- fixtures ---- */

static sg_engine *perturbed_engine(uint64_t seed) {
    sg_engine_config c = fx_tiny_config();
    sg_engine *e = sg_engine_create(&c, seed);
    fx_engine_perturb(e, seed + 1, 0.15f);
    return e;
}

/* A 3-way task of fixture images: shots per class, texts (NULL entries: none). */
typedef struct task_fix {
    sg_task_class cls[8];
    uint8_t *pix;
    sg_task task;
} task_fix;

static void task_build(task_fix *t, const sg_engine_config *c, int n, const int *shots, const char *const *texts,
                       uint64_t seed) {
    static const char *names[8] = {"alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta"};
    size_t ssz = (size_t)3 * c->store * c->store;
    int tot = 0;
    for (int k = 0; k < n; k++) tot += shots[k];
    t->pix = sg_xmalloc(ssz * (size_t)(tot + 1));
    sg_rng r;
    sg_rng_seed(&r, seed);
    uint8_t *p = t->pix;
    for (int k = 0; k < n; k++) {
        t->cls[k].name = names[k];
        t->cls[k].text = texts ? texts[k] : NULL;
        t->cls[k].n_shots = shots[k];
        t->cls[k].images = p;
        for (int i = 0; i < shots[k]; i++, p += ssz) fx_draw(&r, k % FX_N_SHAPES, (k + 2) % FX_N_COLOURS, c->store, p);
    }
    t->task.n_classes = n;
    t->task.classes = t->cls;
}

static sg_classifier *synth_ok(const sg_engine *e, const sg_task *task, const sg_synth_opts *o) {
    sg_classifier *cl = NULL;
    sg_err err = {{0}};
    sg_status s = sg_engine_synthesize(e, task, o, &cl, &err);
    cr_assert(s == SG_OK && cl, "synthesize: %s", err.msg);
    for (size_t i = 0; i < cl->arch.n_params; i++) cr_assert(isfinite(cl->params[i]), "parameter %zu not finite", i);
    return cl;
}

static void serialize(const sg_classifier *c, sg_buf *b) {
    memset(b, 0, sizeof *b);
    sg_classifier_serialize(c, b);
}

/* Runs the classifier on the task's own support images; returns outputs (n, N). */
static float *classify(const sg_classifier *cl, const sg_engine *e, int n, const uint8_t *imgs) {
    const sg_engine_config *c = sg_engine_get_config(e);
    float *x = sg_xalloc_floats((size_t)n * 3 * c->img * c->img);
    sg_engine_prepare_images(e, n, imgs, x);
    sg_ctx *ctx = sg_ctx_create(&cl->arch, n);
    const float *y = sg_net_forward(&cl->arch, ctx, cl->params, cl->state, x, n, 0);
    float *out = sg_xalloc_floats((size_t)n * cl->n_classes);
    memcpy(out, y, sizeof(float) * (size_t)n * cl->n_classes);
    sg_ctx_free(ctx);
    free(x);
    return out;
}

static const int SHOTS3[3] = {2, 1, 3};
static const char *const TEXTS3[3] = {"a red disc", "a green bar on a dark background", "blue ring"};

/* ---- synthesis ---- */

Test(synth, deterministic_byte_identical) {
    sg_engine *e = perturbed_engine(21);
    task_fix t;
    task_build(&t, &e->cfg, 3, SHOTS3, TEXTS3, 1);
    sg_synth_opts o;
    sg_synth_opts_default(&o);
    sg_classifier *a = synth_ok(e, &t.task, &o), *b = synth_ok(e, &t.task, &o);
    sg_buf ba, bb;
    serialize(a, &ba);
    serialize(b, &bb);
    cr_assert(ba.len == bb.len && memcmp(ba.data, bb.data, ba.len) == 0, "two syntheses of one task differ");
    cr_assert(a->n_classes == 3 && strcmp(a->class_names[1], "beta") == 0);
    /* The same again from a second engine created with the same seed (no hidden state). */
    sg_engine *e2 = perturbed_engine(21);
    sg_classifier *c = synth_ok(e2, &t.task, &o);
    sg_buf bc;
    serialize(c, &bc);
    cr_assert(bc.len == ba.len && memcmp(bc.data, ba.data, ba.len) == 0, "a fresh identical engine synthesizes differently");
    sg_buf_free(&ba); sg_buf_free(&bb); sg_buf_free(&bc);
    sg_classifier_free(a); sg_classifier_free(b); sg_classifier_free(c);
    sg_engine_free(e); sg_engine_free(e2);
    free(t.pix);
}

/* Changing one support image changes every parameter block the classifier
 * holds: each stage's kernels (via α), each affine (FiLM), the centre and the
 * head. With the generators at their zero start the kernels are the base's. */
Test(synth, every_layer_depends_on_the_task) {
    sg_engine *e = perturbed_engine(22);
    task_fix t1, t2;
    task_build(&t1, &e->cfg, 3, SHOTS3, TEXTS3, 2);
    task_build(&t2, &e->cfg, 3, SHOTS3, TEXTS3, 2);
    /* one different support image (class 2, shot 1) */
    sg_rng r;
    sg_rng_seed(&r, 77);
    fx_draw(&r, 3, 0, e->cfg.store, (uint8_t *)t2.cls[2].images + (size_t)3 * e->cfg.store * e->cfg.store);
    sg_synth_opts o;
    sg_synth_opts_default(&o);
    sg_classifier *a = synth_ok(e, &t1.task, &o), *b = synth_ok(e, &t2.task, &o);
    cr_assert(a->arch.n_layers == b->arch.n_layers && a->arch.n_params == b->arch.n_params);
    int blocks = 0, convs = 0;
    for (int li = 0; li < a->arch.n_layers; li++) {
        const sg_layer *l = &a->arch.layers[li];
        if (!l->n_params) continue;
        blocks++;
        convs += l->kind == SG_LAYER_CONV2D;
        int differ = memcmp(a->params + l->param_off, b->params + l->param_off, sizeof(float) * l->n_params) != 0;
        cr_assert(differ, "layer %d (%s) is the same for two different tasks", li, sg_layer_kind_name(l->kind));
    }
    cr_assert(convs == e->n_units && blocks >= 2 * e->cfg.stages + 2, "%d blocks, %d convs", blocks, convs);

    /* generators at zero: kernels equal the base backbone's for any task */
    sg_engine_config c = fx_tiny_config();
    sg_engine *z = sg_engine_create(&c, 22);
    sg_classifier *za = synth_ok(z, &t1.task, &o), *zb = synth_ok(z, &t2.task, &o);
    for (int s = 0; s < z->n_units; s++) {
        const sg_layer *l = &za->arch.layers[z->unit_layer[s]];
        cr_assert(l->kind == SG_LAYER_CONV2D);
        cr_assert(memcmp(za->params + l->param_off, zb->params + l->param_off, sizeof(float) * l->n_params) == 0);
        cr_assert(memcmp(za->params + l->param_off, z->params + z->base.layers[z->unit_layer[s]].param_off,
                         sizeof(float) * l->n_params) == 0, "stage %d: zero generators must leave the base kernels", s);
    }
    /* adapt = 0 (the ProtoNet ablation) ignores the generators */
    o.adapt = 0;
    sg_classifier *na = synth_ok(e, &t1.task, &o);
    for (int s = 0; s < e->n_units; s++) {
        const sg_layer *l = &na->arch.layers[e->unit_layer[s]];
        cr_assert(memcmp(na->params + l->param_off, e->params + e->base.layers[e->unit_layer[s]].param_off,
                         sizeof(float) * l->n_params) == 0, "adapt=0: stage %d kernels are not the base's", s);
    }
    sg_classifier_free(a); sg_classifier_free(b); sg_classifier_free(za); sg_classifier_free(zb); sg_classifier_free(na);
    sg_engine_free(e); sg_engine_free(z);
    free(t1.pix); free(t2.pix);
}

Test(synth, modes_images_text_textonly) {
    sg_engine *e = perturbed_engine(23);
    task_fix t;
    task_build(&t, &e->cfg, 3, SHOTS3, TEXTS3, 3);
    sg_synth_opts o;
    sg_synth_opts_default(&o);
    o.use_text = 0;
    sg_classifier *img = synth_ok(e, &t.task, &o);
    o.use_text = 1;
    sg_classifier *both = synth_ok(e, &t.task, &o);
    o.use_images = 0;
    sg_classifier *txt = synth_ok(e, &t.task, &o);
    sg_buf b1, b2, b3;
    serialize(img, &b1);
    serialize(both, &b2);
    serialize(txt, &b3);
    cr_assert(b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) != 0, "text changes nothing");
    cr_assert(b3.len == b2.len && memcmp(b3.data, b2.data, b2.len) != 0, "images change nothing");
    /* every mode classifies (finite, N outputs) */
    sg_classifier *all[3] = {img, both, txt};
    for (int m = 0; m < 3; m++) {
        float *y = classify(all[m], e, 6, t.pix);
        for (int i = 0; i < 18; i++) cr_assert(isfinite(y[i]), "mode %d: output %d not finite", m, i);
        free(y);
    }
    /* text only depends on the words: another description, another classifier */
    const char *texts2[3] = {"a red disc", "a yellow cross", "blue ring"};
    task_fix t2;
    task_build(&t2, &e->cfg, 3, SHOTS3, texts2, 3);
    sg_classifier *txt2 = synth_ok(e, &t2.task, &o);
    sg_buf b4;
    serialize(txt2, &b4);
    cr_assert(b4.len == b3.len && memcmp(b4.data, b3.data, b3.len) != 0);
    /* ... and not on the images (text-only ignores them) */
    task_fix t3;
    task_build(&t3, &e->cfg, 3, SHOTS3, TEXTS3, 99);
    sg_classifier *txt3 = synth_ok(e, &t3.task, &o);
    sg_buf b5;
    serialize(txt3, &b5);
    cr_assert(b5.len == b3.len && memcmp(b5.data, b3.data, b3.len) == 0, "text-only synthesis looked at the images");
    sg_buf_free(&b1); sg_buf_free(&b2); sg_buf_free(&b3); sg_buf_free(&b4); sg_buf_free(&b5);
    sg_classifier_free(img); sg_classifier_free(both); sg_classifier_free(txt); sg_classifier_free(txt2);
    sg_classifier_free(txt3);
    sg_engine_free(e);
    free(t.pix); free(t2.pix); free(t3.pix);
}

Test(synth, refuses_class_with_neither) {
    sg_engine *e = perturbed_engine(24);
    const int shots[3] = {1, 0, 2};
    const char *texts[3] = {"a red disc", NULL, "blue ring"};
    task_fix t;
    task_build(&t, &e->cfg, 3, shots, texts, 4);
    sg_synth_opts o;
    sg_synth_opts_default(&o);
    sg_classifier *cl = (sg_classifier *)1;
    sg_err err = {{0}};
    cr_assert(sg_engine_synthesize(e, &t.task, &o, &cl, &err) == SG_ERR_ARG);
    cr_assert(cl == NULL);
    cr_assert(strstr(err.msg, "beta") && strstr(err.msg, "no support image"), "message: %s", err.msg);
    /* text-only: a class with images but no text is refused by name too */
    const int shots2[3] = {1, 1, 1};
    const char *texts2[3] = {"a red disc", "green bar", NULL};
    task_fix t2;
    task_build(&t2, &e->cfg, 3, shots2, texts2, 5);
    o.use_images = 0;
    cr_assert(sg_engine_synthesize(e, &t2.task, &o, &cl, &err) == SG_ERR_ARG);
    cr_assert(strstr(err.msg, "gamma") && strstr(err.msg, "description"), "message: %s", err.msg);
    /* an empty description counts as none */
    texts2[2] = "";
    cr_assert(sg_engine_synthesize(e, &t2.task, &o, &cl, &err) == SG_ERR_ARG);
    /* a one-class task is refused */
    t2.task.n_classes = 1;
    o.use_images = 1;
    cr_assert(sg_engine_synthesize(e, &t2.task, &o, &cl, &err) == SG_ERR_ARG);
    sg_engine_free(e);
    free(t.pix); free(t2.pix);
}

/* ---- text ---- */

static int hash_of(const char *s, int buckets) { return (int)(sg_fnv1a64(s, strlen(s)) % (uint64_t)buckets); }

Test(synth, tokenize_unigrams_bigrams) {
    int ids[64], B = 1 << 20;
    int n = sg_text_tokenize("Red RING, on a--dark background!", B, ids, 64);
    const char *words[6] = {"red", "ring", "on", "a", "dark", "background"};
    cr_assert_eq(n, 2 * 6 - 1);
    /* order: w0, w1, "w0 w1", w2, "w1 w2", ... */
    cr_assert_eq(ids[0], hash_of("red", B));
    for (int w = 1; w < 6; w++) {
        char bi[64];
        snprintf(bi, sizeof bi, "%s %s", words[w - 1], words[w]);
        cr_assert_eq(ids[2 * w - 1], hash_of(words[w], B), "unigram %d", w);
        cr_assert_eq(ids[2 * w], hash_of(bi, B), "bigram %s", bi);
    }
    /* lowercasing and any non-alphanumeric separator give the same ids */
    int ids2[64];
    int n2 = sg_text_tokenize("  red ring on A dark\tBACKGROUND", B, ids2, 64);
    cr_assert(n2 == n && memcmp(ids, ids2, sizeof(int) * (size_t)n) == 0);
    /* deterministic, in range for a small table */
    int a[64], b[64];
    int na = sg_text_tokenize("a yellow cross 42 on a dark background", 64, a, 64);
    int nb = sg_text_tokenize("a yellow cross 42 on a dark background", 64, b, 64);
    cr_assert(na == 15 && nb == na && memcmp(a, b, sizeof(int) * (size_t)na) == 0);
    for (int i = 0; i < na; i++) cr_assert(a[i] >= 0 && a[i] < 64);
    /* edge cases: nothing, one word, the id budget */
    cr_assert_eq(sg_text_tokenize("", B, ids, 64), 0);
    cr_assert_eq(sg_text_tokenize(" ,.;! ", B, ids, 64), 0);
    cr_assert_eq(sg_text_tokenize("Lesion", B, ids, 64), 1);
    cr_assert_eq(ids[0], hash_of("lesion", B));
    cr_assert_eq(sg_text_tokenize("one two three four", B, ids, 4), 4);
    /* word order matters through the bigrams only */
    n = sg_text_tokenize("red ring", B, ids, 64);
    n2 = sg_text_tokenize("ring red", B, ids2, 64);
    cr_assert(n == 3 && n2 == 3 && ids[0] == ids2[1] && ids[1] == ids2[0] && ids[2] != ids2[2]);
}

/* ---- engine file ---- */

typedef struct tmp_dir {
    char path[256];
} tmp_dir;

static void tmp_make(tmp_dir *d) {
    snprintf(d->path, sizeof d->path, "/tmp/sg_synth_test_XXXXXX");
    cr_assert(mkdtemp(d->path), "mkdtemp: %s", strerror(errno));
}

static void tmp_remove(tmp_dir *d, const char *file) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", d->path, file);
    unlink(p);
    rmdir(d->path);
}

static void write_bytes(const char *path, const uint8_t *data, size_t len) {
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    cr_assert(fwrite(data, 1, len, f) == len);
    fclose(f);
}

/* Engine file bytes with the trailing CRC recomputed. */
static void fix_crc(uint8_t *data, size_t len) { sg_put_u32le(data + len - 4, sg_crc32(0, data, len - 4)); }

/* e and its reloaded copy l: the same bytes, configuration and parameters, and
 * the same classifier for a 3-way task (returned from e; its task images in *pix). */
static sg_classifier *expect_same_engine(const sg_engine *e, const sg_engine *l, uint8_t **pix) {
    sg_buf a = {0}, b = {0};
    sg_engine_serialize(e, &a);
    sg_engine_serialize(l, &b);
    cr_assert(a.len == b.len && memcmp(a.data, b.data, a.len) == 0, "serializations differ after a round trip");
    cr_assert(sg_engine_params_crc(e) == sg_engine_params_crc(l));
    cr_assert(memcmp(sg_engine_get_config(e), sg_engine_get_config(l), sizeof(sg_engine_config)) == 0);
    task_fix t;
    task_build(&t, &e->cfg, 3, SHOTS3, TEXTS3, 6);
    sg_synth_opts o;
    sg_synth_opts_default(&o);
    sg_classifier *ca = synth_ok(e, &t.task, &o), *cb = synth_ok(l, &t.task, &o);
    sg_buf sa, sb;
    serialize(ca, &sa);
    serialize(cb, &sb);
    cr_assert(sa.len == sb.len && memcmp(sa.data, sb.data, sa.len) == 0, "loaded engine synthesizes differently");
    for (int i = 0; i < 3; i++) cr_assert(cb->mean[i] == ca->mean[i] && cb->std[i] == ca->std[i]);
    sg_buf_free(&a); sg_buf_free(&b); sg_buf_free(&sa); sg_buf_free(&sb);
    sg_classifier_free(cb);
    *pix = t.pix;
    return ca;
}

Test(synth, engine_save_load_round_trip) {
    sg_engine *e = perturbed_engine(31);
    const float mean[3] = {0.4f, 0.5f, 0.6f}, sd[3] = {0.2f, 0.25f, 0.3f};
    sg_engine_set_normalization(e, mean, sd);
    tmp_dir d;
    tmp_make(&d);
    char path[512];
    snprintf(path, sizeof path, "%s/e.sgpe", d.path);
    sg_err err = {{0}};
    cr_assert(sg_engine_save(e, path, &err) == SG_OK, "%s", err.msg);
    sg_engine *l = NULL;
    cr_assert(sg_engine_load(path, &l, &err) == SG_OK, "%s", err.msg);
    uint8_t *pix;
    sg_classifier *ca = expect_same_engine(e, l, &pix);
    for (int i = 0; i < 3; i++) cr_assert(ca->mean[i] == mean[i] && ca->std[i] == sd[i]);
    sg_classifier_free(ca);
    sg_engine_free(e); sg_engine_free(l);
    free(pix);
    tmp_remove(&d, "e.sgpe");
}

/* Saves a tiny engine, lets `damage` edit its bytes (len may shrink), writes
 * them back and loads: returns the status; err holds the message. */
typedef size_t (*damage_fn)(uint8_t *data, size_t len, const sg_engine *e);

static sg_status load_damaged(damage_fn damage, sg_err *err, char *path, size_t path_sz) {
    sg_engine *e = perturbed_engine(32);
    sg_buf b = {0};
    sg_engine_serialize(e, &b);
    size_t len = damage(b.data, b.len, e);
    tmp_dir d;
    tmp_make(&d);
    snprintf(path, path_sz, "%s/damaged.sgpe", d.path);
    write_bytes(path, b.data, len);
    sg_engine *l = (sg_engine *)1;
    sg_status s = sg_engine_load(path, &l, err);
    cr_assert(s == SG_OK || l == NULL, "a refused load must not return an engine");
    sg_engine_free(s == SG_OK ? l : NULL);
    tmp_remove(&d, "damaged.sgpe");
    sg_buf_free(&b);
    sg_engine_free(e);
    return s;
}

/* header: magic 4 | version 4 | count 4 | 10 config u32 | mean 3 f32 | std 3 f32 | n_params u64 | params ... */
#define OFF_CONFIG 12
#define OFF_PARAMS (OFF_CONFIG + 40 + 24 + 8)

static size_t dmg_magic(uint8_t *p, size_t n, const sg_engine *e) { (void)e; p[0] = 'X'; return n; }
static size_t dmg_version(uint8_t *p, size_t n, const sg_engine *e) {
    (void)e;
    sg_put_u32le(p + 4, SG_SGPE_VERSION + 1);
    fix_crc(p, n);
    return n;
}
static size_t dmg_truncate(uint8_t *p, size_t n, const sg_engine *e) { (void)p; (void)e; return n / 2; }
static size_t dmg_flip(uint8_t *p, size_t n, const sg_engine *e) {
    (void)e;
    p[OFF_PARAMS + 4 * 100 + 2] ^= 0x10;
    return n;
}
static size_t dmg_nan(uint8_t *p, size_t n, const sg_engine *e) {
    sg_put_f32le(p + OFF_PARAMS + 4 * (e->off_A[0] + 1), NAN);
    fix_crc(p, n);
    return n;
}
static size_t dmg_config(uint8_t *p, size_t n, const sg_engine *e) {
    (void)e;
    sg_put_u32le(p + OFF_CONFIG + 4 * 3, SG_ENGINE_MAX_STAGES + 1); /* stages */
    fix_crc(p, n);
    return n;
}
static size_t dmg_width0(uint8_t *p, size_t n, const sg_engine *e) {
    (void)e;
    sg_put_u32le(p + OFF_CONFIG + 4 * 2, 0); /* width */
    fix_crc(p, n);
    return n;
}
static size_t dmg_mismatch(uint8_t *p, size_t n, const sg_engine *e) {
    (void)e;
    sg_put_u32le(p + OFF_CONFIG + 4 * 4, 1); /* rank 2 → 1: the parameter count no longer matches */
    fix_crc(p, n);
    return n;
}

static size_t dmg_old_version(uint8_t *p, size_t n, const sg_engine *e) {
    (void)e;
    sg_put_u32le(p + 4, SG_SGPE_VERSION - 1);
    fix_crc(p, n);
    return n;
}
static size_t dmg_nan_state(uint8_t *p, size_t n, const sg_engine *e) {
    /* the first running mean: after the parameters and the state count */
    sg_put_f32le(p + OFF_PARAMS + 4 * e->n_params + 8, NAN);
    fix_crc(p, n);
    return n;
}
static size_t dmg_negative_var(uint8_t *p, size_t n, const sg_engine *e) {
    const sg_layer *bn = &e->base.layers[1];
    sg_put_f32le(p + OFF_PARAMS + 4 * e->n_params + 8 + 4 * (bn->state_off + (size_t)bn->cin), -1.0f);
    fix_crc(p, n);
    return n;
}

static void expect_refusal(damage_fn f, sg_status want, const char *reason) {
    sg_err err = {{0}};
    char path[512];
    sg_status s = load_damaged(f, &err, path, sizeof path);
    cr_assert(s == want, "status %d (%s), expected %d: %s", s, sg_status_str(s), want, err.msg);
    cr_assert(strstr(err.msg, path), "message does not name the file: %s", err.msg);
    cr_assert(strstr(err.msg, reason), "message does not say '%s': %s", reason, err.msg);
}

Test(synth_file, refuses_wrong_magic) { expect_refusal(dmg_magic, SG_ERR_FORMAT, "bad magic"); }
Test(synth_file, refuses_newer_version) { expect_refusal(dmg_version, SG_ERR_VERSION, "newer"); }
/* A version field damaged in transit is damage, not a newer format. */
static size_t dmg_version_bit(uint8_t *p, size_t n, const sg_engine *e) {
    (void)e;
    p[4] ^= 0x01;
    return n;
}
Test(synth_file, damaged_version_is_a_checksum_error) { expect_refusal(dmg_version_bit, SG_ERR_CHECKSUM, "checksum"); }
Test(synth_file, refuses_older_layout) { expect_refusal(dmg_old_version, SG_ERR_VERSION, "older generator layout"); }
/* The backbone configuration of an older engine (the header only, version 1
 * included) is read for train-engine --init-backbone's defaults; a damaged
 * file is still refused. */
Test(synth_file, backbone_config_of_an_older_engine) {
    sg_engine *e = perturbed_engine(33);
    sg_buf b = {0};
    sg_engine_serialize(e, &b);
    dmg_old_version(b.data, b.len, e);
    tmp_dir d;
    tmp_make(&d);
    char path[512];
    snprintf(path, sizeof path, "%s/v1.sgpe", d.path);
    write_bytes(path, b.data, b.len);
    sg_engine_config c;
    sg_err err = {{0}};
    cr_assert_eq(sg_engine_read_backbone_config(path, &c, &err), SG_OK, "%s", err.msg);
    const sg_engine_config *ec = sg_engine_get_config(e);
    cr_assert(c.img == ec->img && c.store == ec->store && c.width == ec->width && c.stages == ec->stages);
    cr_assert(memcmp(c.convs, ec->convs, sizeof c.convs) == 0);
    b.data[b.len / 2] ^= 1;
    write_bytes(path, b.data, b.len);
    cr_assert_eq(sg_engine_read_backbone_config(path, &c, &err), SG_ERR_CHECKSUM);
    cr_assert(strstr(err.msg, path), "%s", err.msg);
    tmp_remove(&d, "v1.sgpe");
    sg_buf_free(&b);
    sg_engine_free(e);
}

Test(synth_file, refuses_nonfinite_running_stat) { expect_refusal(dmg_nan_state, SG_ERR_NONFINITE, "not finite"); }
Test(synth_file, refuses_negative_running_variance) { expect_refusal(dmg_negative_var, SG_ERR_FORMAT, "negative"); }
Test(synth_file, refuses_truncated) { expect_refusal(dmg_truncate, SG_ERR_CHECKSUM, "truncated"); }
Test(synth_file, refuses_flipped_byte) { expect_refusal(dmg_flip, SG_ERR_CHECKSUM, "checksum"); }
Test(synth_file, refuses_nan_parameter) { expect_refusal(dmg_nan, SG_ERR_NONFINITE, "not finite"); }
Test(synth_file, refuses_config_out_of_range) {
    expect_refusal(dmg_config, SG_ERR_FORMAT, "out of range");
    expect_refusal(dmg_width0, SG_ERR_FORMAT, "out of range");
}
Test(synth_file, refuses_config_not_matching_parameters) { expect_refusal(dmg_mismatch, SG_ERR_FORMAT, "does not match"); }

/* ---- engines with more than one convolution per stage ---- */

static sg_engine *deep_engine(uint64_t seed) {
    sg_engine_config c = fx_tiny_config();
    c.convs[0] = 2;
    c.convs[1] = 3;
    sg_engine *e = sg_engine_create(&c, seed);
    fx_engine_perturb(e, seed + 1, 0.15f);
    return e;
}

/* A Conv4 engine keeps the 10-value header; a deeper one writes an 11th
 * value (4 bits per stage), reads back to the same bytes and synthesizes a
 * classifier with every convolution. */
Test(synth_file, deeper_engine_round_trip) {
    sg_engine *flat = perturbed_engine(33), *e = deep_engine(34);
    sg_buf a = {0};
    sg_engine_serialize(flat, &a);
    cr_assert(sg_get_u32le(a.data + 8) == 10, "a Conv4 engine must keep the 10-value header");
    sg_buf_free(&a);
    sg_engine_serialize(e, &a);
    cr_assert(sg_get_u32le(a.data + 8) == 11 && sg_get_u32le(a.data + OFF_CONFIG + 40) == 0x32u,
              "count %u, packed %x", sg_get_u32le(a.data + 8), sg_get_u32le(a.data + OFF_CONFIG + 40));
    sg_engine *l = NULL;
    sg_err err = {{0}};
    cr_assert(sg_engine_deserialize(a.data, a.len, "deep.sgpe", &l, &err) == SG_OK, "%s", err.msg);
    uint8_t *pix;
    sg_classifier *ca = expect_same_engine(e, l, &pix);
    int convs = 0;
    for (int i = 0; i < ca->arch.n_layers; i++) convs += ca->arch.layers[i].kind == SG_LAYER_CONV2D;
    cr_assert(convs == 5, "%d convolutions in the classifier, want 2 + 3", convs);
    /* it runs: finite scores, not all classes alike */
    float *y = classify(ca, e, 3, pix);
    for (int i = 0; i < 9; i++) cr_assert(isfinite(y[i]));
    cr_assert(y[0] != y[1] || y[1] != y[2], "every class scores the same");
    free(y);
    sg_buf_free(&a);
    sg_classifier_free(ca);
    sg_engine_free(flat); sg_engine_free(e); sg_engine_free(l);
    free(pix);
}

/* The packed convolution counts are checked: 0 or more than 3 in a stage,
 * a count for a stage the engine does not have, an 11th value of 0. */
Test(synth_file, refuses_bad_convolution_counts) {
    sg_engine *e = deep_engine(35);
    const uint32_t bad[4] = {0x42u, 0x02u, 0x132u, 0};
    for (int k = 0; k < 4; k++) {
        sg_buf a = {0};
        sg_engine_serialize(e, &a);
        sg_put_u32le(a.data + OFF_CONFIG + 40, bad[k]);
        fix_crc(a.data, a.len);
        sg_engine *l = (sg_engine *)1;
        sg_err err = {{0}};
        sg_status s = sg_engine_deserialize(a.data, a.len, "deep.sgpe", &l, &err);
        cr_assert(s == SG_ERR_FORMAT && l == NULL, "packed %x: status %d", bad[k], s);
        cr_assert(strstr(err.msg, "deep.sgpe") && (strstr(err.msg, "out of range") || strstr(err.msg, "malformed")),
                  "packed %x: %s", bad[k], err.msg);
        sg_buf_free(&a);
    }
    sg_engine_free(e);
}

/* A configuration that implies gigabytes of parameters in a small file with a
 * valid CRC is refused before anything is allocated (the fuzzers' case). */
static size_t dmg_huge(uint8_t *p, size_t n, const sg_engine *e) {
    (void)e;
    sg_put_u32le(p + OFF_CONFIG + 4 * 5, 1u << 22); /* text_buckets */
    sg_put_u32le(p + OFF_CONFIG + 4 * 6, SG_TEXT_MAX_DIM); /* text_dim */
    fix_crc(p, n);
    return n;
}
Test(synth_file, refuses_huge_config_before_allocating, .timeout = 10) {
    expect_refusal(dmg_huge, SG_ERR_FORMAT, "truncated");
}

Test(synth_file, refuses_missing_file) {
    sg_engine *l = (sg_engine *)1;
    sg_err err = {{0}};
    const char *path = "/tmp/sg_synth_test_no_such_dir/none.sgpe";
    sg_status s = sg_engine_load(path, &l, &err);
    cr_assert(s == SG_ERR_IO && l == NULL, "status %d", s);
    cr_assert(strstr(err.msg, path) && strstr(err.msg, "cannot open"), "message: %s", err.msg);
}

Test(synth_file, refuses_tiny_files) {
    /* shorter than any header: every length from 0 to 16 bytes */
    sg_engine *e = perturbed_engine(33);
    sg_buf b = {0};
    sg_engine_serialize(e, &b);
    for (size_t n = 0; n <= 16; n++) {
        sg_engine *l = (sg_engine *)1;
        sg_err err = {{0}};
        sg_status s = sg_engine_deserialize(b.data, n, "tiny.sgpe", &l, &err);
        cr_assert(s != SG_OK && l == NULL && strstr(err.msg, "tiny.sgpe"), "length %zu: %d %s", n, s, err.msg);
    }
    sg_buf_free(&b);
    sg_engine_free(e);
}

/* ---- head calibration evaluates exactly what synthesis deploys ---- */

/* sg_engine_head_eval with the engine's own head (a = τ, b = ρ, κ, λ, scale 1)
 * must reproduce the synthesized classifier's query logits: same accuracy and
 * the same NLL, so choosing a head on validation episodes chooses what
 * `sgps synth` then writes. */
Test(synth, head_eval_matches_synthesized_classifier) {
    sg_engine *e = perturbed_engine(31);
    float *p = sg_engine_params(e);
    p[e->off_logtau] = logf(5.0f);
    p[e->off_rho] = 2.0f;
    p[e->off_kappa] = 0.5f;
    p[e->off_loglam] = logf(0.7f);
    static const int shots[3] = {2, 1, 3};
    task_fix t;
    task_build(&t, &e->cfg, 3, shots, NULL, 5);
    /* queries: fresh fixture images of the same three classes */
    enum { QPC = 4 };
    size_t ssz = (size_t)3 * e->cfg.store * e->cfg.store;
    uint8_t *qry = sg_xmalloc(ssz * 3 * QPC);
    int qlab[3 * QPC];
    sg_rng r;
    sg_rng_seed(&r, 77);
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < QPC; i++) {
            fx_draw(&r, k % FX_N_SHAPES, (k + 2) % FX_N_COLOURS, e->cfg.store, qry + (size_t)(k * QPC + i) * ssz);
            qlab[k * QPC + i] = k;
        }
    sg_synth_opts o;
    sg_synth_opts_default(&o);
    sg_classifier *cl = synth_ok(e, &t.task, &o);
    float *y = classify(cl, e, 3 * QPC, qry);
    double want_nll = 0;
    int want_right = 0;
    for (int q = 0; q < 3 * QPC; q++) {
        const float *l = y + (size_t)q * 3;
        double mx = fmax(l[0], fmax(l[1], l[2])), se = 0;
        int best = 0;
        for (int c = 0; c < 3; c++) {
            se += exp(l[c] - mx);
            if (l[c] > l[best]) best = c;
        }
        want_nll += (mx + log(se) - l[qlab[q]]) / (3 * QPC);
        want_right += best == qlab[q];
    }
    const uint8_t *sup[3] = {t.cls[0].images, t.cls[1].images, t.cls[2].images};
    int sh[3] = {shots[0], shots[1], shots[2]};
    sg_episode ep = {0};
    ep.way = 3;
    ep.shots = sh;
    ep.support = sup;
    ep.n_query = 3 * QPC;
    ep.query = qry;
    ep.query_label = qlab;
    sg_head_cand cand[2] = {{5.0f, 2.0f, 0.5f, 0.7f}, {1.0f, 0.0f, 0.0f, 1.0f}};
    float scales[2] = {1.0f, 3.0f};
    double acc[2] = {0, 0}, nll[4] = {0, 0, 0, 0};
    sg_engine_head_eval(e, &ep, 2, cand, 2, scales, acc, nll);
    cr_assert(fabs(acc[0] - (double)want_right / (3 * QPC)) < 1e-9, "accuracy %.4f vs classifier %.4f", acc[0],
              (double)want_right / (3 * QPC));
    cr_assert(fabs(nll[0] - want_nll) <= 1e-4 * fmax(1.0, want_nll), "NLL %.6f vs classifier %.6f", nll[0], want_nll);
    /* a different head scores differently (the candidates are really applied) */
    cr_assert(fabs(nll[2] - nll[0]) > 1e-3 && fabs(nll[1] - nll[0]) > 1e-3, "candidates/scales had no effect");
    sg_classifier_free(cl);
    free(y);
    free(qry);
    free(t.pix);
    sg_engine_free(e);
}

/* When no generator weight reads the image summary, synthesis skips the
 * summary forward; the classifier must be byte-identical to the one computed
 * with the summary (a 1e-30 weight makes synthesis compute it, and its
 * contribution is far below float resolution). */
/* Zeroes every generator weight that reads the image summary (the first C
 * entries of the task code), so that synthesis does not need the summary. */
static void zero_summary_readers(sg_engine *e) {
    int C = e->cfg.width, Z = e->zdim, R = e->cfg.rank;
    float *p = sg_engine_params(e);
    for (int s = 0; s < e->n_units; s++) {
        for (int o = 0; o < C; o++)
            for (int j = 0; j < C; j++) p[e->off_gg[s] + (size_t)o * Z + j] = p[e->off_gb[s] + (size_t)o * Z + j] = 0;
        for (int r = 0; r < R; r++)
            for (int j = 0; j < C; j++) p[e->off_A[s] + (size_t)r * Z + j] = 0;
    }
}

Test(synth, skipping_unused_summary_changes_nothing) {
    sg_engine *e = perturbed_engine(41);
    float *p = sg_engine_params(e);
    zero_summary_readers(e);
    task_fix t;
    task_build(&t, &e->cfg, 3, SHOTS3, TEXTS3, 9);
    sg_synth_opts o;
    sg_synth_opts_default(&o);
    sg_classifier *a = synth_ok(e, &t.task, &o);
    p[e->off_gg[0]] = 1e-30f;
    sg_classifier *b = synth_ok(e, &t.task, &o);
    sg_buf ba, bb;
    serialize(a, &ba);
    serialize(b, &bb);
    cr_assert(ba.len == bb.len && memcmp(ba.data, bb.data, ba.len) == 0, "skipping the unused summary changed the classifier");
    sg_buf_free(&ba);
    sg_buf_free(&bb);
    sg_classifier_free(a);
    sg_classifier_free(b);
    free(t.pix);
    sg_engine_free(e);
}

/* With mirrored support views on, synthesis cannot tell a support set from
 * its mirror image (the task summary aside, which sees the unflipped views:
 * its generator weights are zeroed here); with them off (the default) it can. */
Test(synth, mirrored_views_make_synthesis_mirror_invariant) {
    sg_engine *e = perturbed_engine(43);
    int S = e->cfg.store;
    zero_summary_readers(e);
    task_fix t, m;
    task_build(&t, &e->cfg, 3, SHOTS3, NULL, 13);
    task_build(&m, &e->cfg, 3, SHOTS3, NULL, 13);
    int n = SHOTS3[0] + SHOTS3[1] + SHOTS3[2];
    for (int i = 0; i < n * 3; i++) /* a left-to-right ramp makes every image asymmetric */
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                uint8_t *px = t.pix + ((size_t)i * S + y) * S + x;
                *px = (uint8_t)(*px / 2 + x * 127 / (S - 1));
            }
    for (int i = 0; i < n * 3; i++)
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) m.pix[((size_t)i * S + y) * S + x] = t.pix[((size_t)i * S + y) * S + (S - 1 - x)];
    sg_synth_opts o;
    sg_synth_opts_default(&o);
    cr_assert(o.flip_aug == 0, "mirrored views are off by default");
    double d_off = 0, d_on = 0, mag = 0;
    sg_classifier *a = synth_ok(e, &t.task, &o), *b = synth_ok(e, &m.task, &o);
    for (size_t i = 0; i < a->arch.n_params; i++) d_off = fmax(d_off, fabs(a->params[i] - b->params[i]));
    sg_classifier_free(a);
    sg_classifier_free(b);
    o.flip_aug = 1;
    a = synth_ok(e, &t.task, &o);
    b = synth_ok(e, &m.task, &o);
    for (size_t i = 0; i < a->arch.n_params; i++) {
        d_on = fmax(d_on, fabs(a->params[i] - b->params[i]));
        mag = fmax(mag, fabs(a->params[i]));
    }
    cr_assert(d_on <= 1e-4 * mag, "with mirrored views a mirrored support set changed a parameter by %g (max |p| %g)", d_on, mag);
    cr_assert(d_off > 1e-3 * mag, "without mirrored views a mirrored support set changed nothing (%g)", d_off);
    sg_classifier_free(a);
    sg_classifier_free(b);
    free(t.pix);
    free(m.pix);
    sg_engine_free(e);
}
