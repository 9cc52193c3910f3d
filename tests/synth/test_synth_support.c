/* test_synth_support.c — the support check (synth/sg_support_check.c): each
 * prediction is the one the classifier synthesized without that image makes;
 * a planted exemplar of another class is found and named; classes with one
 * image and text-only synthesis are not checked. */
#include "sg_synth_fixtures.h"

#include <criterion/criterion.h>
#include <limits.h>

static sg_engine *engine(uint64_t seed) {
    sg_engine_config c = fx_tiny_config();
    sg_engine *e = sg_engine_create(&c, seed);
    fx_engine_perturb(e, seed + 1, 0.15f);
    return e;
}

static const char *const NAMES[4] = {"alpha", "beta", "gamma", "delta"};

/* Class k: shots[k] images of shape k, colour `colour[k]`; a planted image
 * (plant_class >= 0) is drawn with the shape and colour of class plant_as and
 * appended to plant_class's images. */
typedef struct fix {
    sg_task_class cls[4];
    uint8_t *pix;
    sg_task task;
} fix;

/* flat: plain images of each class's colour, each pixel's brightness jittered
 * by up to 10 % (no shape, no background), for classes any base features tell apart */
static void build(fix *f, const sg_engine_config *c, int n, const int *shots, const int *colour, int plant_class,
                  int plant_as, uint64_t seed, int flat) {
    size_t ssz = (size_t)3 * c->store * c->store;
    int tot = 1;
    for (int k = 0; k < n; k++) tot += shots[k];
    f->pix = sg_xmalloc(ssz * (size_t)tot);
    sg_rng r;
    sg_rng_seed(&r, seed);
    uint8_t *p = f->pix;
    for (int k = 0; k < n; k++) {
        int m = shots[k] + (k == plant_class);
        f->cls[k].name = NAMES[k];
        f->cls[k].text = "a lesion";
        f->cls[k].n_shots = m;
        f->cls[k].images = p;
        for (int i = 0; i < m; i++, p += ssz) {
            int as = i == shots[k] ? plant_as : k;
            if (!flat) {
                fx_draw(&r, as, colour[as], c->store, p);
                continue;
            }
            size_t plane = (size_t)c->store * c->store;
            for (int ch = 0; ch < 3; ch++)
                for (size_t q = 0; q < plane; q++) {
                    float v = 255 * fx_colour_rgb[colour[as]][ch] * (0.9f + 0.1f * sg_rng_uniform(&r));
                    p[ch * plane + q] = (uint8_t)(v > 255 ? 255 : v);
                }
        }
    }
    f->task.n_classes = n;
    f->task.classes = f->cls;
}

/* The class the classifier synthesized from `task` gives image img (store side). */
static int classify_one(const sg_engine *e, const sg_task *task, const sg_synth_opts *o, const uint8_t *img,
                        float *margin) {
    sg_classifier *m;
    sg_err err = {{0}};
    cr_assert(sg_engine_synthesize(e, task, o, &m, &err) == SG_OK, "%s", err.msg);
    float *x = sg_xalloc_floats((size_t)3 * e->cfg.img * e->cfg.img);
    sg_engine_prepare_image(e, img, 0, x);
    sg_ctx *ctx = sg_ctx_create(&m->arch, 1);
    const float *y = sg_net_forward(&m->arch, ctx, m->params, m->state, x, 1, 0);
    int best = 0;
    for (int k = 1; k < task->n_classes; k++)
        if (y[k] > y[best]) best = k;
    if (margin) {
        float second = -INFINITY;
        for (int k = 0; k < task->n_classes; k++)
            if (k != best && y[k] > second) second = y[k];
        *margin = y[best] - second;
    }
    sg_ctx_free(ctx);
    free(x);
    sg_classifier_free(m);
    return best;
}

/* The task of f without image i of class c, built independently of the check:
 * cls (n_classes entries) and *rest (to free) hold it. */
static sg_task without(const fix *f, size_t ssz, int c, int i, sg_task_class *cls, uint8_t **rest) {
    memcpy(cls, f->cls, sizeof *cls * (size_t)f->task.n_classes);
    *rest = sg_xmalloc(ssz * (size_t)(f->cls[c].n_shots - 1));
    for (int j = 0, k = 0; j < f->cls[c].n_shots; j++)
        if (j != i) memcpy(*rest + ssz * (size_t)k++, f->cls[c].images + ssz * (size_t)j, ssz);
    cls[c].n_shots--;
    cls[c].images = *rest;
    return (sg_task){f->task.n_classes, cls};
}

static void check_ok(const sg_engine *e, const fix *f, const sg_synth_opts *o, sg_support_check *chk) {
    sg_err err = {{0}};
    cr_assert(sg_engine_support_check(e, &f->task, o, INT_MAX, chk, &err) == SG_OK, "%s", err.msg);
}

Test(support_check, each_prediction_is_the_classifier_synthesized_without_the_image) {
    sg_engine *e = engine(41);
    fix f;
    static const int shots[3] = {3, 1, 2}, colour[3] = {0, 2, 1};
    build(&f, &e->cfg, 3, shots, colour, -1, 0, 7, 0);
    sg_synth_opts o;
    sg_synth_opts_default(&o);
    sg_support_check chk;
    check_ok(e, &f, &o, &chk);
    cr_assert_eq(chk.n_images, 6);
    cr_assert_eq(chk.checked, 5, "class beta has one image and is not checked: %d checked", chk.checked);
    cr_assert_eq(chk.pred[3], -1, "the single image of beta was checked");
    size_t ssz = (size_t)3 * e->cfg.store * e->cfg.store;
    int correct = 0;
    for (int c = 0, first = 0; c < 3; first += f.cls[c].n_shots, c++) {
        if (f.cls[c].n_shots < 2) continue;
        for (int i = 0; i < f.cls[c].n_shots; i++) {
            sg_task_class cls[3];
            uint8_t *rest;
            sg_task t = without(&f, ssz, c, i, cls, &rest);
            int want = classify_one(e, &t, &o, f.cls[c].images + ssz * (size_t)i, NULL);
            cr_assert_eq(chk.pred[first + i], want, "class %d image %d: check says %d, synthesis without it %d", c, i,
                         chk.pred[first + i], want);
            correct += want == c;
            free(rest);
        }
    }
    cr_assert_eq(chk.correct, correct);
    /* deterministic */
    sg_support_check again;
    check_ok(e, &f, &o, &again);
    cr_assert(again.checked == chk.checked && memcmp(again.pred, chk.pred, sizeof(int) * 6) == 0);
    sg_support_check_free(&again);
    sg_support_check_free(&chk);
    free(f.pix);
    sg_engine_free(e);
}

/* The planted task: alpha has three red images and one planted blue one
 * (beta's look), beta three blue images; image-only synthesis options. */
static sg_engine *planted(fix *f, sg_synth_opts *o) {
    sg_engine *e = engine(42);
    static const int shots[2] = {3, 3}, colour[2] = {0, 2};
    build(f, &e->cfg, 2, shots, colour, 0, 1, 9, 1);
    sg_synth_opts_default(o);
    o->use_text = 0;
    return e;
}

Test(support_check, finds_and_names_a_planted_exemplar) {
    fix f;
    sg_synth_opts o;
    sg_engine *e = planted(&f, &o);
    sg_support_check chk;
    check_ok(e, &f, &o, &chk);
    cr_assert_eq(chk.checked, 7);
    cr_assert_eq(chk.pred[3], 1, "the planted image was classified as %d, not as beta", chk.pred[3]);
    cr_assert_eq(chk.correct, 6, "%d of 7 correct (only the planted image should be wrong)", chk.correct);
    char *js = sg_support_check_json(&chk, &f.task);
    cr_assert(strstr(js, "\"checked\":7") && strstr(js, "\"correct\":6"), "%s", js);
    cr_assert(strstr(js, "\"misclassified\":[{\"class\":\"alpha\",\"image\":3,\"predicted\":\"beta\",\"own_probability\":"),
              "%s", js);
    cr_assert(strstr(js, "}]}"), "more than the planted image listed: %s", js);
    /* the probabilities: the planted image's own class unlikely, the mean over all seven their definition */
    cr_assert(chk.p_own[3] < 0.5f, "planted image: own-class probability %g", (double)chk.p_own[3]);
    double mean = 0;
    for (int i = 0; i < 7; i++) {
        cr_assert(chk.p_own[i] >= 0 && chk.p_own[i] <= 1);
        cr_assert((chk.p_own[i] > 0.5f) == (chk.pred[i] == (i < 4 ? 0 : 1)), "image %d: p_own %g, pred %d", i,
                  (double)chk.p_own[i], chk.pred[i]);
        mean += chk.p_own[i];
    }
    cr_assert(fabs(chk.mean_p_own - mean / 7) < 1e-6);
    cr_assert(strstr(js, "\"chance\":0.5"), "%s", js);
    free(js);
    /* Every left-out image's class is clear-cut, not a near tie that rounding
       (another instruction set) could flip. */
    size_t ssz = (size_t)3 * e->cfg.store * e->cfg.store;
    for (int ci = 0, first = 0; ci < 2; first += f.cls[ci].n_shots, ci++)
        for (int i = 0; i < f.cls[ci].n_shots; i++) {
            sg_task_class cls[2];
            uint8_t *rest;
            sg_task t = without(&f, ssz, ci, i, cls, &rest);
            float margin;
            cr_assert_eq(classify_one(e, &t, &o, f.cls[ci].images + ssz * (size_t)i, &margin), chk.pred[first + i]);
            cr_assert(margin > 1, "class %d image %d: margin %g", ci, i, (double)margin);
            free(rest);
        }
    sg_support_check_free(&chk);
    free(f.pix);
    sg_engine_free(e);
}

Test(support_check, nothing_to_check) {
    sg_engine *e = engine(43);
    fix f;
    static const int shots[3] = {1, 1, 1}, colour[3] = {0, 1, 2};
    build(&f, &e->cfg, 3, shots, colour, -1, 0, 11, 0);
    sg_synth_opts o;
    sg_synth_opts_default(&o);
    sg_support_check chk;
    check_ok(e, &f, &o, &chk);
    cr_assert(chk.checked == 0 && chk.correct == 0 && chk.n_images == 3);
    for (int i = 0; i < 3; i++) cr_assert_eq(chk.pred[i], -1);
    char *js = sg_support_check_json(&chk, &f.task);
    cr_assert(strstr(js, "\"accuracy\":null") && strstr(js, "\"mean_own_probability\":null") &&
                  strstr(js, "\"misclassified\":[]"),
              "%s", js);
    cr_assert(isnan(chk.p_own[0]) && isnan(chk.mean_p_own));
    free(js);
    sg_support_check_free(&chk);
    free(f.pix);
    /* text-only synthesis: the images are not used, so none is checked */
    static const int shots2[2] = {3, 3}, colour2[2] = {0, 2};
    build(&f, &e->cfg, 2, shots2, colour2, -1, 0, 12, 0);
    o.use_images = 0;
    check_ok(e, &f, &o, &chk);
    cr_assert(chk.checked == 0 && chk.n_images == 6 && chk.pred[0] == -1);
    sg_support_check_free(&chk);
    free(f.pix);
    sg_engine_free(e);
}

/* The fast check keeps the whole task's backbone and rebuilds only the head
 * without the image. When nothing but the head depends on the support images
 * (no support normalization, a generator that does not read the image
 * summary), it must give exactly the exact check's classes and probabilities:
 * the head left out (centre, prototypes, ridge rows) is the same. */
Test(support_check, fast_equals_exact_when_only_the_head_depends_on_the_images) {
    sg_engine *e = engine(44);
    int C = e->cfg.width, Z = e->zdim, R = e->cfg.rank;
    for (int s = 0; s < e->n_units; s++) { /* the image summary (z's first C entries) unread */
        for (int o = 0; o < C; o++)
            for (int j = 0; j < C; j++) e->params[e->off_gg[s] + (size_t)o * Z + j] = e->params[e->off_gb[s] + (size_t)o * Z + j] = 0;
        for (int r = 0; r < R; r++)
            for (int j = 0; j < C; j++) e->params[e->off_A[s] + (size_t)r * Z + j] = 0;
    }
    fix f;
    static const int shots[3] = {4, 1, 3}, colour[3] = {0, 2, 1};
    build(&f, &e->cfg, 3, shots, colour, -1, 0, 17, 0);
    sg_synth_opts o;
    sg_synth_opts_default(&o);
    o.support_norm = 0;
    for (int flip = 0; flip < 2; flip++) {
        o.flip_aug = flip;
        sg_support_check ex, fa;
        sg_err err = {{0}};
        cr_assert(sg_engine_support_check(e, &f.task, &o, INT_MAX, &ex, &err) == SG_OK, "%s", err.msg);
        cr_assert(sg_engine_support_check(e, &f.task, &o, 0, &fa, &err) == SG_OK, "%s", err.msg);
        cr_assert(!ex.fast && fa.fast);
        cr_assert(ex.checked == 7 && fa.checked == 7 && fa.correct == ex.correct, "exact %d/%d, fast %d/%d",
                  ex.correct, ex.checked, fa.correct, fa.checked);
        for (int i = 0; i < 8; i++) {
            cr_assert_eq(fa.pred[i], ex.pred[i], "flip %d image %d: fast %d, exact %d", flip, i, fa.pred[i], ex.pred[i]);
            cr_assert(i == 4 ? isnan(fa.p_own[i]) : fabsf(fa.p_own[i] - ex.p_own[i]) < 1e-5f,
                      "flip %d image %d: own probability fast %g, exact %g", flip, i, (double)fa.p_own[i],
                      (double)ex.p_own[i]);
        }
        sg_support_check_free(&ex);
        sg_support_check_free(&fa);
    }
    free(f.pix);
    sg_engine_free(e);
}

/* With everything on (support normalization, generated FiLM and kernels from
 * the image summary) the fast check is an approximation: on the planted
 * task, whose left-out images are clear-cut, it finds the same image; the
 * threshold picks the method, and the JSON says which one ran. */
Test(support_check, fast_finds_the_planted_exemplar_and_the_threshold_picks_it) {
    fix f;
    sg_synth_opts o;
    sg_engine *e = planted(&f, &o);
    sg_support_check ex, fa;
    sg_err err = {{0}};
    cr_assert(sg_engine_support_check(e, &f.task, &o, 7, &ex, &err) == SG_OK, "%s", err.msg);
    cr_assert(sg_engine_support_check(e, &f.task, &o, 6, &fa, &err) == SG_OK, "%s", err.msg);
    cr_assert(!ex.fast, "7 images, exact_max 7: exact");
    cr_assert(fa.fast, "7 images, exact_max 6: fast");
    cr_assert(fa.checked == 7 && fa.correct == 6 && fa.pred[3] == 1, "fast: %d of %d, planted image -> %d", fa.correct,
              fa.checked, fa.pred[3]);
    for (int i = 0; i < 7; i++) cr_assert_eq(fa.pred[i], ex.pred[i], "image %d", i);
    char *js = sg_support_check_json(&fa, &f.task);
    cr_assert(strstr(js, "\"method\":\"fast\""), "%s", js);
    free(js);
    js = sg_support_check_json(&ex, &f.task);
    cr_assert(strstr(js, "\"method\":\"exact\""), "%s", js);
    free(js);
    sg_support_check_free(&ex);
    sg_support_check_free(&fa);
    free(f.pix);
    sg_engine_free(e);
}
