/* test_synth_adapt.c — adapting an engine's normalization to unlabelled
 * images of a new domain (sg_engine_adapt_norm): afterwards every batch norm
 * of the base network normalizes those images to zero mean and unit variance
 * per channel; the weights do not move; alpha mixes the statistics; it is
 * idempotent; bad arguments are refused. */
#include "sg_synth_fixtures.h"

#include <criterion/criterion.h>

static sg_engine *engine_at(uint64_t seed) {
    sg_engine_config c = fx_tiny_config();
    c.stages = 3;
    c.img = 12;
    c.store = 14;
    sg_engine *e = sg_engine_create(&c, seed);
    fx_engine_perturb(e, seed + 1, 0.15f);
    return e;
}

/* n images of a "new domain": fixture scenes, brightened and tinted so that
 * their statistics differ from anything the engine's state describes. */
static uint8_t *domain_images(const sg_engine *e, int n, uint64_t seed) {
    int S = sg_engine_get_config(e)->store;
    size_t ssz = (size_t)3 * S * S;
    uint8_t *pix = sg_xmalloc(ssz * (size_t)n);
    sg_rng r;
    sg_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) {
        uint8_t *p = pix + ssz * (size_t)i;
        fx_draw(&r, i % FX_N_SHAPES, (i / 2) % FX_N_COLOURS, S, p);
        for (size_t k = 0; k < (size_t)S * S; k++) p[k] = (uint8_t)(p[k] / 2 + 120); /* red plane */
    }
    return pix;
}

/* Per-channel mean and variance of the output of base layer l (eval mode)
 * over the images, gamma/beta of that norm undone. */
static void norm_output_stats(const sg_engine *e, int l, int n, const uint8_t *pix, double *mean, double *var) {
    const sg_arch *a = &e->base;
    const sg_layer *L = &a->layers[l];
    int C = L->cin, hw = L->out_h * L->out_w;
    size_t isz = (size_t)3 * e->cfg.img * e->cfg.img;
    float *x = sg_xalloc_floats(isz * (size_t)n);
    sg_engine_prepare_images(e, n, pix, x);
    sg_ctx *ctx = sg_ctx_create(a, n);
    sg_net_forward(a, ctx, e->params, e->state, x, n, 0);
    const float *y = sg_net_activation(ctx, l);
    const float *g = e->params + L->param_off, *b = g + C;
    for (int c = 0; c < C; c++) {
        double s = 0, ss = 0;
        for (int i = 0; i < n; i++)
            for (int q = 0; q < hw; q++) {
                double v = (y[((size_t)i * C + c) * hw + q] - b[c]) / g[c];
                s += v;
                ss += v * v;
            }
        double m = (double)n * hw;
        mean[c] = s / m;
        var[c] = ss / m - mean[c] * mean[c];
    }
    sg_ctx_free(ctx);
    free(x);
}

Test(synth_adapt, every_norm_standardizes_the_new_domain) {
    sg_engine *e = engine_at(31);
    int n = 40;
    uint8_t *pix = domain_images(e, n, 5);
    uint32_t wcrc = sg_crc32(0, e->params, e->n_params * sizeof(float));
    int checked = 0;
    double mean[64], var[64];
    /* before: the perturbed statistics are far from these images' */
    double worst_before = 0;
    for (int l = 0; l < e->base.n_layers; l++) {
        if (e->base.layers[l].kind != SG_LAYER_BATCHNORM) continue;
        norm_output_stats(e, l, n, pix, mean, var);
        for (int c = 0; c < e->base.layers[l].cin; c++) worst_before = fmax(worst_before, fabs(mean[c]));
    }
    cr_assert_gt(worst_before, 0.3, "fixture: the images already fit the engine (worst mean %g)", worst_before);
    sg_err err = {{0}};
    cr_assert_eq(sg_engine_adapt_norm(e, n, pix, 1.0f, &err), SG_OK, "%s", err.msg);
    for (int l = 0; l < e->base.n_layers; l++) {
        const sg_layer *L = &e->base.layers[l];
        if (L->kind != SG_LAYER_BATCHNORM) continue;
        norm_output_stats(e, l, n, pix, mean, var);
        double m = (double)n * L->out_h * L->out_w;
        for (int c = 0; c < L->cin; c++) {
            cr_assert(fabs(mean[c]) < 1e-3, "layer %d channel %d: mean %g after adaptation", l, c, mean[c]);
            /* the stored variance is unbiased; eps 1e-5 is inside the norm */
            double want = (m - 1) / m * e->state[L->state_off + L->cin + c] /
                          (e->state[L->state_off + L->cin + c] + e->base.bn_eps);
            cr_assert(fabs(var[c] - want) < 1e-3 * (1 + want), "layer %d channel %d: variance %g, want %g", l, c,
                      var[c], want);
        }
        checked++;
    }
    cr_assert_eq(checked, 3, "three stages, three norms (checked %d)", checked);
    cr_assert_eq(sg_crc32(0, e->params, e->n_params * sizeof(float)), wcrc, "adaptation changed the weights");
    free(pix);
    sg_engine_free(e);
}

Test(synth_adapt, idempotent_and_alpha_mixes_the_first_norm) {
    sg_engine *e = engine_at(32), *h = engine_at(32);
    int n = 30;
    uint8_t *pix = domain_images(e, n, 6);
    const sg_layer *bn = &e->base.layers[1];
    cr_assert_eq(bn->kind, SG_LAYER_BATCHNORM);
    size_t ns = e->base.n_state;
    float *before = sg_xalloc_floats(ns), *once = sg_xalloc_floats(ns);
    memcpy(before, e->state, ns * sizeof(float));
    sg_err err = {{0}};
    cr_assert_eq(sg_engine_adapt_norm(e, n, pix, 1.0f, &err), SG_OK, "%s", err.msg);
    memcpy(once, e->state, ns * sizeof(float));
    cr_assert_eq(sg_engine_adapt_norm(e, n, pix, 1.0f, &err), SG_OK, "%s", err.msg);
    for (size_t i = 0; i < ns; i++)
        cr_assert(fabsf(e->state[i] - once[i]) <= 1e-4f * (1 + fabsf(once[i])), "state %zu: %g then %g", i, once[i],
                  e->state[i]);
    /* the first norm's input does not depend on any norm: alpha 0.25 lands a
     * quarter of the way from the old statistics to the new */
    cr_assert_eq(sg_engine_adapt_norm(h, n, pix, 0.25f, &err), SG_OK, "%s", err.msg);
    int moved = 0;
    for (int i = 0; i < 2 * bn->cin; i++) {
        size_t k = bn->state_off + (size_t)i;
        float want = 0.75f * before[k] + 0.25f * once[k];
        cr_assert(fabsf(h->state[k] - want) <= 1e-5f * (1 + fabsf(want)), "state %zu: %g, want %g", k, h->state[k], want);
        moved += fabsf(once[k] - before[k]) > 1e-3f;
    }
    cr_assert_gt(moved, bn->cin, "fixture: the first norm's statistics barely moved (%d)", moved);
    free(before);
    free(once);
    free(pix);
    sg_engine_free(e);
    sg_engine_free(h);
}

/* The serialized classifier a 2-way 1-shot task of the first two images gives. */
static void synth_bytes(const sg_engine *e, const uint8_t *pix, sg_buf *out) {
    size_t ssz = (size_t)3 * e->cfg.store * e->cfg.store;
    sg_task_class cls[2] = {{"a", NULL, 1, pix}, {"b", NULL, 1, pix + ssz}};
    sg_task task = {2, cls};
    sg_synth_opts o;
    sg_synth_opts_default(&o);
    sg_classifier *c = NULL;
    sg_err err = {{0}};
    cr_assert_eq(sg_engine_synthesize(e, &task, &o, &c, &err), SG_OK, "%s", err.msg);
    memset(out, 0, sizeof *out);
    sg_classifier_serialize(c, out);
    sg_classifier_free(c);
}

Test(synth_adapt, adapted_engine_round_trips_and_changes_synthesis) {
    sg_engine *e = engine_at(33);
    int n = 20;
    uint8_t *pix = domain_images(e, n, 7);
    uint32_t crc0 = sg_engine_params_crc(e);
    sg_buf c0, c1, c2;
    synth_bytes(e, pix, &c0);
    sg_err err = {{0}};
    cr_assert_eq(sg_engine_adapt_norm(e, n, pix, 1.0f, &err), SG_OK, "%s", err.msg);
    cr_assert_neq(sg_engine_params_crc(e), crc0, "the engine's checksum ignores its statistics");
    synth_bytes(e, pix, &c1);
    cr_assert(c0.len != c1.len || memcmp(c0.data, c1.data, c0.len) != 0, "the adapted engine synthesizes the same classifier");
    sg_buf b = {0};
    sg_engine_serialize(e, &b);
    sg_engine *f = NULL;
    cr_assert_eq(sg_engine_deserialize(b.data, b.len, "adapted", &f, &err), SG_OK, "%s", err.msg);
    cr_assert_eq(memcmp(f->state, e->state, e->base.n_state * sizeof(float)), 0, "statistics lost in the file");
    synth_bytes(f, pix, &c2);
    cr_assert(c1.len == c2.len && memcmp(c1.data, c2.data, c1.len) == 0, "the reloaded adapted engine synthesizes differently");
    sg_buf_free(&c0);
    sg_buf_free(&c1);
    sg_buf_free(&c2);
    sg_buf_free(&b);
    sg_engine_free(f);
    free(pix);
    sg_engine_free(e);
}

Test(synth_adapt, refuses_too_few_images_and_bad_alpha) {
    sg_engine *e = engine_at(34);
    uint8_t *pix = domain_images(e, 4, 8);
    float *st = sg_xalloc_floats(e->base.n_state);
    memcpy(st, e->state, e->base.n_state * sizeof(float));
    sg_err err = {{0}};
    cr_assert_eq(sg_engine_adapt_norm(e, 1, pix, 1.0f, &err), SG_ERR_ARG);
    cr_assert(strstr(err.msg, "at least 2"), "%s", err.msg);
    cr_assert_eq(sg_engine_adapt_norm(e, 4, pix, 0.0f, &err), SG_ERR_ARG);
    cr_assert(strstr(err.msg, "outside"), "%s", err.msg);
    cr_assert_eq(sg_engine_adapt_norm(e, 4, pix, 1.5f, &err), SG_ERR_ARG);
    cr_assert_eq(sg_engine_adapt_norm(e, 4, pix, NAN, &err), SG_ERR_ARG);
    cr_assert_eq(memcmp(st, e->state, e->base.n_state * sizeof(float)), 0, "a refused call changed the statistics");
    free(st);
    free(pix);
    sg_engine_free(e);
}

/* ---- the support images' own normalization (sg_synth_opts.support_norm) ---- */

/* A 3-way task of domain images, 2 shots each. */
static sg_task three_way(const sg_engine *e, const uint8_t *pix, sg_task_class cls[3]) {
    size_t ssz = (size_t)3 * e->cfg.store * e->cfg.store;
    static const char *names[3] = {"a", "b", "c"};
    for (int c = 0; c < 3; c++) cls[c] = (sg_task_class){names[c], NULL, 2, pix + (size_t)c * 2 * ssz};
    return (sg_task){3, cls};
}

/* At weight 1 on a fresh engine (FiLM at zero, norms with gamma 1, beta 0)
 * the classifier's norm outputs over its own support must be standardized at
 * every unit, and the support features synthesis built the head from must be
 * the ones the classifier computes (its centre is κ · the mean prototype). At
 * 12 px the last unit's 3×3 map is measured by the general path, at 16 px
 * every unit by the convolution's statistics pass; with two convolutions in
 * stages 2 and 3 the first of each (no pool after it) takes the general path
 * and the second the statistics pass after it. */
static void support_norm_case(int img, int deep) {
    sg_engine_config c = fx_tiny_config();
    c.stages = 3;
    c.img = img;
    c.store = img + 2;
    if (deep) c.convs[1] = c.convs[2] = 2;
    sg_engine *e = sg_engine_create(&c, 41);
    e->params[e->off_kappa] = 1; /* the centre is the mean prototype */
    uint8_t *pix = domain_images(e, 6, 9);
    sg_task_class cls[3];
    sg_task task = three_way(e, pix, cls);
    sg_synth_opts o;
    sg_synth_opts_default(&o);
    o.support_norm = 1;
    sg_classifier *cl = NULL;
    sg_err err = {{0}};
    cr_assert_eq(sg_engine_synthesize(e, &task, &o, &cl, &err), SG_OK, "%s", err.msg);
    size_t isz = (size_t)3 * c.img * c.img;
    float *x = sg_xalloc_floats(isz * 6);
    sg_engine_prepare_images(e, 6, pix, x);
    sg_ctx *ctx = sg_ctx_create(&cl->arch, 6);
    sg_net_forward(&cl->arch, ctx, cl->params, cl->state, x, 6, 0);
    int checked = 0;
    for (int l = 0; l < cl->arch.n_layers; l++) {
        const sg_layer *L = &cl->arch.layers[l];
        if (L->kind == SG_LAYER_L2NORM) {
            /* the support features: the previous layer's output, 2 images per class */
            const float *f = sg_net_activation(ctx, l - 1), *centre = cl->params + L->param_off;
            for (int j = 0; j < L->cin; j++) {
                double m = 0;
                for (int i = 0; i < 6; i++) m += f[(size_t)i * L->cin + j] / 6.0;
                cr_assert(fabs(centre[j] - m) <= 1e-5 * (1 + fabs(m)), "%d px: centre %d is %g, the support's mean feature %g",
                          img, j, centre[j], m);
            }
            continue;
        }
        if (L->kind != SG_LAYER_AFFINE) continue;
        const float *y = sg_net_activation(ctx, l);
        int hw = L->out_h * L->out_w;
        double m = 6.0 * hw;
        for (int ch = 0; ch < L->cin; ch++) {
            double s = 0, ss = 0;
            for (int i = 0; i < 6; i++)
                for (int q = 0; q < hw; q++) {
                    double v = y[((size_t)i * L->cin + ch) * hw + q];
                    s += v;
                    ss += v * v;
                }
            double mean = s / m, var = ss / m - mean * mean;
            cr_assert(fabs(mean) < 1e-3, "%d px, layer %d channel %d: mean %g over the support", img, l, ch, mean);
            /* unbiased variance v inside: (m-1)/m * v/(v+eps), at most 1 */
            cr_assert(var > 0.9 && var < 1.0 + 1e-3, "%d px, layer %d channel %d: variance %g over the support", img, l,
                      ch, var);
        }
        checked++;
    }
    cr_assert_eq(checked, deep ? 5 : 3, "one norm per unit (checked %d)", checked);
    sg_ctx_free(ctx);
    free(x);
    sg_classifier_free(cl);
    free(pix);
    sg_engine_free(e);
}

Test(synth_support_norm, full_weight_standardizes_the_support_at_every_unit) {
    support_norm_case(12, 0);
    support_norm_case(16, 0);
    support_norm_case(16, 1);
}

Test(synth_support_norm, on_by_default_ignored_without_adaptation_and_deterministic) {
    sg_engine *e = engine_at(42);
    uint8_t *pix = domain_images(e, 6, 10);
    sg_task_class cls[3];
    sg_task task = three_way(e, pix, cls);
    sg_synth_opts o;
    sg_synth_opts_default(&o);
    cr_assert_eq(sg_engine_support_norm(e, o.support_norm), SG_SUPPORT_NORM_DEFAULT,
                 "the support's normalization is not the default");
    cr_assert(SG_SUPPORT_NORM_DEFAULT > 0 && SG_SUPPORT_NORM_DEFAULT <= 1);
    sg_buf b[5];
    float w[5] = {0, SG_SUPPORT_NORM_AUTO, SG_SUPPORT_NORM_DEFAULT, 0, SG_SUPPORT_NORM_AUTO};
    int adapt[5] = {1, 1, 1, 0, 0};
    for (int k = 0; k < 5; k++) {
        o.support_norm = w[k];
        o.adapt = adapt[k];
        sg_classifier *cl = NULL;
        sg_err err = {{0}};
        cr_assert_eq(sg_engine_synthesize(e, &task, &o, &cl, &err), SG_OK, "%s", err.msg);
        memset(&b[k], 0, sizeof b[k]);
        sg_classifier_serialize(cl, &b[k]);
        sg_classifier_free(cl);
    }
#define SAME(i, j) (b[i].len == b[j].len && memcmp(b[i].data, b[j].data, b[i].len) == 0)
    cr_assert(!SAME(0, 1), "the default support_norm synthesized the same classifier as 0");
    cr_assert(SAME(1, 2), "support_norm synthesis is not deterministic or the default is not 0.25");
    cr_assert(SAME(3, 4), "the no-adaptation ablation used the support's normalization");
#undef SAME
    for (int k = 0; k < 5; k++) sg_buf_free(&b[k]);
    free(pix);
    sg_engine_free(e);
}

/* adapt-engine marks the engine (the mark survives the file); synthesis's
 * default support normalization is then off, as measured best for adapted
 * engines, while an explicit weight still applies. */
Test(synth_support_norm, off_by_default_for_an_adapted_engine) {
    sg_engine *e = engine_at(44);
    uint8_t *pix = domain_images(e, 6, 11);
    sg_task_class cls[3];
    sg_task task = three_way(e, pix, cls);
    cr_assert_eq(sg_engine_norm_adapted(e), 0);
    cr_assert_eq(sg_engine_support_norm(e, SG_SUPPORT_NORM_AUTO), SG_SUPPORT_NORM_DEFAULT);
    sg_buf plain = {0};
    sg_engine_serialize(e, &plain);
    sg_err err = {{0}};
    cr_assert_eq(sg_engine_adapt_norm(e, 6, pix, 0.5f, &err), SG_OK, "%s", err.msg);
    cr_assert_eq(sg_engine_norm_adapted(e), 1, "adaptation did not mark the engine");
    cr_assert_eq(sg_engine_support_norm(e, SG_SUPPORT_NORM_AUTO), 0.0f);
    cr_assert_eq(sg_engine_support_norm(e, 0.5f), 0.5f, "an explicit weight was overridden");
    sg_buf b = {0};
    sg_engine_serialize(e, &b);
    /* a Conv4 engine: the 11th value written as 0, the 12th holds the mark */
    cr_assert_eq(b.len, plain.len + 8, "the mark is two more configuration values (%zu vs %zu bytes)", b.len, plain.len);
    sg_engine *l = NULL;
    cr_assert_eq(sg_engine_deserialize(b.data, b.len, "adapted.sgpe", &l, &err), SG_OK, "%s", err.msg);
    cr_assert_eq(sg_engine_norm_adapted(l), 1, "the mark did not survive the file");
    sg_buf r = {0};
    sg_engine_serialize(l, &r);
    cr_assert(r.len == b.len && memcmp(r.data, b.data, b.len) == 0, "round trip changed the bytes");
    float w[3] = {SG_SUPPORT_NORM_AUTO, 0, SG_SUPPORT_NORM_DEFAULT};
    sg_buf c[3];
    for (int k = 0; k < 3; k++) {
        sg_synth_opts o;
        sg_synth_opts_default(&o);
        cr_assert_eq(o.support_norm, SG_SUPPORT_NORM_AUTO, "synthesis does not choose its support normalization");
        o.support_norm = w[k];
        sg_classifier *cl = NULL;
        cr_assert_eq(sg_engine_synthesize(l, &task, &o, &cl, &err), SG_OK, "%s", err.msg);
        memset(&c[k], 0, sizeof c[k]);
        sg_classifier_serialize(cl, &c[k]);
        sg_classifier_free(cl);
    }
    cr_assert(c[0].len == c[1].len && memcmp(c[0].data, c[1].data, c[0].len) == 0,
              "an adapted engine's default synthesis used the support normalization");
    cr_assert(c[0].len != c[2].len || memcmp(c[0].data, c[2].data, c[0].len) != 0,
              "an explicit support normalization changed nothing on an adapted engine");
    for (int k = 0; k < 3; k++) sg_buf_free(&c[k]);
    /* a 12th configuration value of 0 is malformed; one with an unknown bit
       came from a newer sgps, and the message says so */
    const uint32_t bad[2] = {0, 4};
    const sg_status want[2] = {SG_ERR_FORMAT, SG_ERR_VERSION};
    for (int k = 0; k < 2; k++) {
        sg_buf d = {0};
        sg_buf_append(&d, b.data, b.len);
        sg_put_u32le(d.data + 12 + 4 * 11, bad[k]); /* after magic, version, count: the 12th value */
        sg_put_u32le(d.data + d.len - 4, sg_crc32(0, d.data, d.len - 4));
        sg_engine *x = (sg_engine *)1;
        cr_assert_eq(sg_engine_deserialize(d.data, d.len, "flags.sgpe", &x, &err), want[k], "flags %u read", bad[k]);
        cr_assert(x == NULL && strstr(err.msg, "flags.sgpe"), "%s", err.msg);
        cr_assert(k == 0 || strstr(err.msg, "upgrade sgps"), "%s", err.msg);
        sg_buf_free(&d);
    }
    sg_buf_free(&plain); sg_buf_free(&b); sg_buf_free(&r);
    sg_engine_free(l);
    sg_engine_free(e);
    free(pix);
}
