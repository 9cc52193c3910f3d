/* test_train.c — optimizers against hand-computed steps, and a small CNN
 * that must learn a generated image task (oriented bars vs round blobs, the
 * generator of `sgps selftest`) within a fixed step budget. */
#include "sg_model.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

Test(optim, sgd_momentum_two_steps) {
    /* p = 1, g = 0.5, lr 0.1, momentum 0.9, wd 0.01; element 1 masked out of decay.
     * step 1: g' = 0.51 (0.5), mom = 0.51 (0.5), p = 0.949 (0.95)
     * step 2: g' = 0.5 + 0.01·0.949 = 0.50949 (0.5), mom = 0.9·0.51 + 0.50949 = 0.96849 (0.95),
     *         p = 0.949 − 0.096849 = 0.852151 (0.95 − 0.095 = 0.855) */
    float p[2] = {1, 1}, g[2] = {0.5f, 0.5f}, m[2] = {0, 0};
    const uint8_t mask[2] = {1, 0};
    sg_sgd_step(2, p, g, m, 0.1f, 0.9f, 0.01f, mask);
    cr_assert(fabsf(p[0] - 0.949f) < 1e-6f && fabsf(p[1] - 0.95f) < 1e-6f, "step 1: %g %g", p[0], p[1]);
    cr_assert(fabsf(m[0] - 0.51f) < 1e-6f && fabsf(m[1] - 0.5f) < 1e-6f);
    sg_sgd_step(2, p, g, m, 0.1f, 0.9f, 0.01f, mask);
    cr_assert(fabsf(m[0] - 0.96849f) < 1e-6f && fabsf(m[1] - 0.95f) < 1e-6f, "mom %g %g", m[0], m[1]);
    cr_assert(fabsf(p[0] - 0.852151f) < 1e-6f && fabsf(p[1] - 0.855f) < 1e-6f, "step 2: %g %g", p[0], p[1]);
    /* NULL mask: every element decays. */
    float q = 2, gq = 0, mq = 0;
    sg_sgd_step(1, &q, &gq, &mq, 0.5f, 0.0f, 0.1f, NULL);
    cr_assert(fabsf(q - 1.9f) < 1e-6f);
}

Test(optim, adamw_matches_reference) {
    /* Reference AdamW (Loshchilov & Hutter, PyTorch order) in double:
     * p ← p·(1 − lr·wd); m ← β1 m + (1−β1) g; v ← β2 v + (1−β2) g²;
     * p ← p − lr·(m/(1−β1^t)) / (sqrt(v/(1−β2^t)) + eps). */
    const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.1;
    const float grads[3][3] = {{0.3f, -2.0f, 1e-3f}, {-0.1f, 1.0f, 2e-3f}, {0.2f, 0.5f, -1e-3f}};
    float p[3] = {1.0f, -0.5f, 0.25f}, m[3] = {0}, v[3] = {0};
    const uint8_t mask[3] = {1, 1, 0};
    double rp[3] = {1.0, -0.5, 0.25}, rm[3] = {0}, rv[3] = {0};
    for (int t = 1; t <= 3; t++) {
        sg_adamw_step(3, p, grads[t - 1], m, v, t, (float)lr, (float)b1, (float)b2, (float)eps, (float)wd, mask);
        for (int i = 0; i < 3; i++) {
            double gi = grads[t - 1][i];
            if (mask[i]) rp[i] *= 1 - lr * wd;
            rm[i] = b1 * rm[i] + (1 - b1) * gi;
            rv[i] = b2 * rv[i] + (1 - b2) * gi * gi;
            rp[i] -= lr * (rm[i] / (1 - pow(b1, t))) / (sqrt(rv[i] / (1 - pow(b2, t))) + eps);
            cr_assert(fabs(p[i] - rp[i]) < 2e-6, "t=%d i=%d: %.8g vs %.8g", t, i, p[i], rp[i]);
        }
    }
}

/* One 3×hw×hw image: class 0 a bar at a random angle, class 1 a blob; random
 * position, contrast and noise (copied from cli/sg_cmd_selftest.c). */
static void draw(sg_rng *r, int cls, int hw, float *img) {
    float cx = hw * (0.3f + 0.4f * sg_rng_uniform(r)), cy = hw * (0.3f + 0.4f * sg_rng_uniform(r));
    float ang = 3.14159265f * sg_rng_uniform(r), ca = cosf(ang), sa = sinf(ang);
    float rad = hw * (0.12f + 0.08f * sg_rng_uniform(r));
    float amp = 0.6f + 0.8f * sg_rng_uniform(r);
    for (int y = 0; y < hw; y++)
        for (int x = 0; x < hw; x++) {
            float dx = x - cx, dy = y - cy, v;
            if (cls == 0) {
                float along = dx * ca + dy * sa, across = -dx * sa + dy * ca;
                v = (fabsf(across) < hw * 0.06f && fabsf(along) < hw * 0.35f) ? amp : 0.0f;
            } else {
                v = (dx * dx + dy * dy < rad * rad) ? amp : 0.0f;
            }
            for (int c = 0; c < 3; c++) img[(size_t)c * hw * hw + (size_t)y * hw + x] = v + 0.2f * sg_rng_normal(r);
        }
}

static double train_bars_vs_blobs(sg_layer_kind norm, int steps, int use_sgd) {
    const int hw = 24, batch = 32, n_train = 256;
    sg_arch a;
    sg_arch_conv4(&a, 3, hw, 12, 3, norm, 2);
    sg_rng r;
    sg_rng_seed(&r, 2024);
    size_t img = (size_t)3 * hw * hw;
    float *data = sg_xalloc_floats(n_train * img);
    int *lab = malloc(sizeof(int) * n_train), blab[32], *order = malloc(sizeof(int) * n_train);
    for (int i = 0; i < n_train; i++) {
        lab[i] = i & 1;
        draw(&r, lab[i], hw, data + (size_t)i * img);
        order[i] = i;
    }
    float *p = sg_xalloc_floats(a.n_params), *g = sg_xalloc_floats(a.n_params);
    float *m = sg_xalloc_floats(a.n_params), *v = sg_xalloc_floats(a.n_params), *st = sg_xalloc_floats(a.n_state);
    uint8_t *mask = sg_xmalloc(a.n_params);
    sg_arch_init_params(&a, p, &r);
    sg_arch_init_state(&a, st);
    sg_arch_decay_mask(&a, mask);
    sg_ctx *ctx = sg_ctx_create(&a, batch);
    float *x = sg_xalloc_floats(batch * img), dl[64];
    int pos = n_train;
    for (int s = 1; s <= steps; s++) {
        if (pos + batch > n_train) {
            sg_rng_shuffle_int(&r, order, n_train);
            pos = 0;
        }
        for (int i = 0; i < batch; i++) {
            int k = order[pos++];
            blab[i] = lab[k];
            memcpy(x + i * img, data + (size_t)k * img, sizeof(float) * img);
        }
        const float *out = sg_net_forward(&a, ctx, p, st, x, batch, 1);
        float loss = sg_softmax_xent(batch, 2, out, blab, 1.0f, dl, NULL);
        cr_assert(isfinite(loss));
        memset(g, 0, sizeof(float) * a.n_params);
        sg_net_backward(&a, ctx, p, st, dl, g, NULL);
        if (use_sgd) sg_sgd_step(a.n_params, p, g, m, 0.05f, 0.9f, 1e-4f, mask);
        else sg_adamw_step(a.n_params, p, g, m, v, s, 3e-3f, 0.9f, 0.999f, 1e-8f, 1e-4f, mask);
    }
    int correct = 0;
    for (int b = 0; b < n_train; b += batch) {
        const float *out = sg_net_forward(&a, ctx, p, st, data + (size_t)b * img, batch, 0);
        for (int i = 0; i < batch; i++) correct += (out[2 * i + 1] > out[2 * i]) == lab[b + i];
    }
    sg_ctx_free(ctx);
    free(data); free(lab); free(order); free(p); free(g); free(m); free(v); free(st); free(mask); free(x);
    return (double)correct / n_train;
}

Test(train, conv_batchnorm_adamw_learns_bars_vs_blobs, .timeout = 300) {
    double acc = train_bars_vs_blobs(SG_LAYER_BATCHNORM, 120, 0);
    cr_assert(acc >= 0.95, "training accuracy %.3f after 120 steps", acc);
}

Test(train, conv_affine_sgd_learns_bars_vs_blobs, .timeout = 300) {
    double acc = train_bars_vs_blobs(SG_LAYER_AFFINE, 200, 1);
    cr_assert(acc >= 0.95, "training accuracy %.3f after 200 steps", acc);
}
