/* test_eval_path.c — the eval-mode inference path of sg_net_forward (chunked,
 * conv fused with norm/ReLU/max pool) against the layer ops one by one, and
 * the lazily recomputed activations after it. */
#include "sg_model.h"
#include "sg_model_impl.h"

#include <cblas.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Runs the public ops layer by layer (eval mode) — the reference. */
static float *reference(const sg_arch *a, const float *p, const float *st, const float *x, int n, float **acts) {
    const float *in = x;
    float *y = NULL;
    for (int i = 0; i < a->n_layers; i++) {
        const sg_layer *l = &a->layers[i];
        size_t of = sg_arch_layer_out_floats(a, i);
        y = sg_xalloc_floats(of * n);
        const float *q = p + l->param_off;
        int hw = l->in_h * l->in_w;
        switch (l->kind) {
        case SG_LAYER_CONV2D: {
            sg_conv2d_cfg c = {l->cin, l->cout, l->k, l->stride, l->pad};
            float *work = sg_xalloc_floats(sg_conv2d_work_floats(&c, n, l->in_h, l->in_w));
            sg_conv2d_forward(&c, n, l->in_h, l->in_w, in, q, l->has_bias ? q + (size_t)l->cout * l->cin * l->k * l->k : NULL,
                              y, work);
            free(work);
            break;
        }
        case SG_LAYER_BATCHNORM:
            sg_batchnorm_forward_eval(n, l->cin, hw, in, q, q + l->cin, st + l->state_off, st + l->state_off + l->cin,
                                      a->bn_eps, y);
            break;
        case SG_LAYER_AFFINE: sg_affine_forward(n, l->cin, hw, in, q, q + l->cin, y); break;
        case SG_LAYER_RELU: sg_relu_forward((size_t)n * l->cin * hw, in, y); break;
        case SG_LAYER_SILU: sg_silu_forward((size_t)n * l->cin * hw, in, y); break;
        case SG_LAYER_MAXPOOL: {
            int32_t *am = sg_xcalloc(of * n, sizeof(int32_t));
            sg_maxpool_forward(n * l->cin, l->in_h, l->in_w, l->k, l->stride, in, y, am);
            free(am);
            break;
        }
        case SG_LAYER_AVGPOOL: sg_avgpool_forward(n * l->cin, l->in_h, l->in_w, l->k, l->stride, in, y); break;
        case SG_LAYER_GAP: sg_gap_forward(n * l->cin, hw, in, y); break;
        case SG_LAYER_LINEAR:
            sg_linear_forward(n, l->cin, l->cout, in, q, l->has_bias ? q + (size_t)l->cout * l->cin : NULL, y);
            break;
        default: cr_assert_fail("layer kind %d not covered", l->kind);
        }
        acts[i] = y;
        in = y;
    }
    return y;
}

static void compare(const sg_arch *a, int n, uint64_t seed) {
    sg_rng g;
    sg_rng_seed(&g, seed);
    float *p = sg_xalloc_floats(a->n_params), *st = sg_xalloc_floats(a->n_state);
    sg_arch_init_params(a, p, &g);
    for (size_t i = 0; i < a->n_params; i++) p[i] += 0.3f * sg_rng_normal(&g); /* negative scales too */
    for (int i = 0; i < a->n_layers; i++)
        if (a->layers[i].kind == SG_LAYER_BATCHNORM)
            for (int c = 0; c < a->layers[i].cin; c++) {
                st[a->layers[i].state_off + c] = sg_rng_normal(&g);
                st[a->layers[i].state_off + a->layers[i].cin + c] = 0.2f + sg_rng_uniform(&g);
            }
    size_t nx = (size_t)n * a->in_c * a->in_h * a->in_w;
    float *x = sg_xalloc_floats(nx);
    for (size_t i = 0; i < nx; i++) x[i] = sg_rng_normal(&g);
    float *acts[SG_MAX_LAYERS];
    reference(a, p, st, x, n, acts);
    sg_ctx *ctx = sg_ctx_create(a, n + 3);
    const float *y = sg_net_forward(a, ctx, p, st, x, n, 0);
    size_t ny = (size_t)n * sg_arch_out_features(a);
    const float *ref = acts[a->n_layers - 1];
    for (size_t i = 0; i < ny; i++)
        cr_assert(fabsf(y[i] - ref[i]) <= 1e-4f * (1 + fabsf(ref[i])), "output %zu: %g vs %g", i, y[i], ref[i]);
    for (int l = 0; l < a->n_layers; l++) {
        const float *act = sg_net_activation(ctx, l);
        size_t m = (size_t)n * sg_arch_layer_out_floats(a, l);
        for (size_t i = 0; i < m; i++)
            cr_assert(fabsf(act[i] - acts[l][i]) <= 1e-4f * (1 + fabsf(acts[l][i])), "layer %d act %zu", l, i);
    }
    for (int l = 0; l < a->n_layers; l++) free(acts[l]);
    sg_ctx_free(ctx);
    free(p); free(st); free(x);
}

Test(eval_path, conv4_batchnorm_matches_layer_ops) {
    sg_arch a;
    sg_arch_conv4(&a, 3, 20, 6, 3, SG_LAYER_BATCHNORM, 4);
    compare(&a, 19, 1); /* several chunks and a partial one */
}

/* Wide enough (16 channels) for the Winograd units: a forward of several
 * chunks transforms each unit's weights once and reuses them (sg_net.c);
 * it must equal bit for bit the same images forwarded a chunk at a time
 * (each call one chunk: the weights transformed in the call), and a second
 * forward with other weights must not reuse the first's transform. */
Test(eval_path, winograd_units_over_several_chunks) {
    openblas_set_num_threads(1);
    sg_arch a;
    sg_arch_conv4(&a, 3, 20, 16, 3, SG_LAYER_BATCHNORM, 4);
#if defined(__AVX2__) && defined(__FMA__)
    sg_conv2d_cfg unit2 = {16, 16, 3, 1, 1};
    cr_assert(sg_conv2d_uses_winograd(&unit2, 10, 10), "the 16-channel units must take the Winograd path here");
#endif
    compare(&a, 19, 4);
    sg_rng g;
    sg_rng_seed(&g, 5);
    float *p = sg_xalloc_floats(a.n_params), *st = sg_xalloc_floats(a.n_state);
    sg_arch_init_params(&a, p, &g);
    sg_arch_init_state(&a, st);
    int n = 19, F = sg_arch_out_features(&a);
    size_t in1 = (size_t)a.in_c * a.in_h * a.in_w;
    float *x = sg_xalloc_floats(n * in1), *one = sg_xalloc_floats((size_t)n * F);
    for (size_t i = 0; i < n * in1; i++) x[i] = sg_rng_normal(&g);
    sg_ctx *ctx = sg_ctx_create(&a, n);
    const int chunk = 8; /* SG_EVAL_CHUNK */
    for (int round = 0; round < 2; round++) {
        if (round) /* other weights in the same context */
            for (size_t i = 0; i < a.n_params; i++) p[i] *= 1.5f;
        for (int i = 0; i < n; i += chunk) {
            int b = n - i < chunk ? n - i : chunk;
            memcpy(one + (size_t)i * F, sg_net_forward(&a, ctx, p, st, x + i * in1, b, 0), sizeof(float) * b * F);
        }
        const float *y = sg_net_forward(&a, ctx, p, st, x, n, 0);
        for (size_t i = 0; i < (size_t)n * F; i++)
            cr_assert(y[i] == one[i], "round %d output %zu: %.9g in one forward, %.9g a chunk at a time", round, i,
                      y[i], one[i]);
    }
    sg_ctx_free(ctx);
    free(p); free(st); free(x); free(one);
}

Test(eval_path, conv4_affine_matches_layer_ops) {
    sg_arch a;
    sg_arch_conv4(&a, 3, 16, 5, 2, SG_LAYER_AFFINE, 3);
    compare(&a, 3, 2);
}

/* Bias, odd sizes, partial fusion (conv→relu, conv alone, conv→norm→maxpool). */
Test(eval_path, mixed_fusion_patterns) {
    sg_arch a;
    sg_arch_init(&a, 2, 15, 13);
    sg_arch_add_conv(&a, 4, 3, 1, 1, 1);
    sg_arch_add_relu(&a);
    sg_arch_add_conv(&a, 5, 3, 2, 1, 1);
    sg_arch_add_conv(&a, 3, 1, 1, 0, 1);
    sg_arch_add_batchnorm(&a);
    sg_arch_add_maxpool(&a, 2, 2);
    sg_arch_add_conv(&a, 4, 1, 1, 0, 0);
    sg_arch_add_affine(&a);
    sg_arch_add_silu(&a);
    sg_arch_add_maxpool(&a, 3, 1);
    sg_arch_add_gap(&a);
    sg_arch_add_linear(&a, 2, 1);
    compare(&a, 11, 3);
}

/* An eval forward, then backward: equals backward after a train-path
 * materialization (activations recomputed lazily). */
Test(eval_path, backward_after_eval_forward) {
    sg_arch a;
    sg_arch_conv4(&a, 3, 8, 4, 2, SG_LAYER_BATCHNORM, 2);
    sg_rng g;
    sg_rng_seed(&g, 5);
    float *p = sg_xalloc_floats(a.n_params), *st = sg_xalloc_floats(a.n_state), x[2 * 3 * 64];
    sg_arch_init_params(&a, p, &g);
    sg_arch_init_state(&a, st);
    for (int i = 0; i < 2 * 3 * 64; i++) x[i] = sg_rng_normal(&g);
    sg_ctx *c1 = sg_ctx_create(&a, 2), *c2 = sg_ctx_create(&a, 2);
    float dout[4] = {1, -1, 0.5f, 2};
    float *g1 = sg_xalloc_floats(a.n_params), *g2 = sg_xalloc_floats(a.n_params);
    sg_net_forward(&a, c1, p, st, x, 2, 0);
    sg_net_backward(&a, c1, p, st, dout, g1, NULL);
    sg_net_forward(&a, c2, p, st, x, 2, 0);
    (void)sg_net_activation(c2, 0);
    sg_net_backward(&a, c2, p, st, dout, g2, NULL);
    double nz = 0;
    for (size_t i = 0; i < a.n_params; i++) {
        cr_assert_eq(g1[i], g2[i]);
        nz += fabsf(g1[i]);
    }
    cr_assert(nz > 0);
    sg_ctx_free(c1);
    sg_ctx_free(c2);
    free(p); free(st); free(g1); free(g2);
}
