/* sg_cmd_selftest.c — `sgps selftest`: trains a Conv4 network on a generated
 * two-class image task (oriented bars vs round blobs) and reports training
 * accuracy. It exercises the whole model/ stack on any machine, no data needed. */
#include "sg_cli.h"
#include "sg_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One 3×hw×hw image: class 0 a bar at a random angle, class 1 a blob; random
 * position, contrast and noise. */
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

int sg_cmd_selftest(int argc, char **argv) {
    long steps = 150, seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (sg_cli_is_help(argv[i])) {
            printf("usage: sgps selftest [--steps N] [--seed S]\n\n"
                   "Trains a small Conv4 network (batch norm, ReLU, max pool, linear head, AdamW)\n"
                   "on a generated task, oriented bars vs round blobs, and prints the loss and\n"
                   "training accuracy. Exit status 0 when accuracy reaches 95 %%, 1 otherwise.\n");
            return 0;
        } else if (sg_cli_opt(argc, argv, &i, "--steps", &v)) {
            if (!sg_cli_parse_int(v, 1, 1000000, &steps)) return fprintf(stderr, "sgps selftest: bad --steps '%s'\n", v), 2;
        } else if (sg_cli_opt(argc, argv, &i, "--seed", &v)) {
            if (!sg_cli_parse_int(v, 0, 1L << 30, &seed)) return fprintf(stderr, "sgps selftest: bad --seed '%s'\n", v), 2;
        } else return sg_cli_bad_arg("selftest", argv, i, i);
    }
    const int hw = 32, batch = 32;
    sg_arch a;
    sg_arch_conv4(&a, 3, hw, 16, 3, SG_LAYER_BATCHNORM, 2);
    sg_rng r;
    sg_rng_seed(&r, (uint64_t)seed);
    float *p = sg_xalloc_floats(a.n_params), *g = sg_xalloc_floats(a.n_params);
    float *m = sg_xalloc_floats(a.n_params), *v2 = sg_xalloc_floats(a.n_params), *st = sg_xalloc_floats(a.n_state);
    uint8_t *mask = sg_xmalloc(a.n_params);
    sg_arch_init_params(&a, p, &r);
    sg_arch_init_state(&a, st);
    sg_arch_decay_mask(&a, mask);
    sg_ctx *ctx = sg_ctx_create(&a, batch);
    float *x = sg_xalloc_floats((size_t)batch * 3 * hw * hw), *dl = sg_xalloc_floats((size_t)batch * 2);
    int lab[64];
    printf("selftest: Conv4-16 (3 stages), %zu parameters, %ld steps of batch %d\n", a.n_params, steps, batch);
    for (long s = 1; s <= steps; s++) {
        for (int i = 0; i < batch; i++) {
            lab[i] = (int)sg_rng_below(&r, 2);
            draw(&r, lab[i], hw, x + (size_t)i * 3 * hw * hw);
        }
        const float *out = sg_net_forward(&a, ctx, p, st, x, batch, 1);
        float loss = sg_softmax_xent(batch, 2, out, lab, 1.0f, dl, NULL);
        memset(g, 0, sizeof(float) * a.n_params);
        sg_net_backward(&a, ctx, p, st, dl, g, NULL);
        sg_adamw_step(a.n_params, p, g, m, v2, s, 3e-3f, 0.9f, 0.999f, 1e-8f, 1e-4f, mask);
        if (s % 25 == 0 || s == steps) printf("  step %4ld/%ld  loss %.4f\n", s, steps, loss);
    }
    int correct = 0, total = 0;
    for (int b = 0; b < 8; b++) {
        for (int i = 0; i < batch; i++) {
            lab[i] = (int)sg_rng_below(&r, 2);
            draw(&r, lab[i], hw, x + (size_t)i * 3 * hw * hw);
        }
        const float *out = sg_net_forward(&a, ctx, p, st, x, batch, 0);
        for (int i = 0; i < batch; i++, total++) correct += (out[2 * i + 1] > out[2 * i]) == lab[i];
    }
    double acc = (double)correct / total;
    printf("selftest: accuracy on %d fresh images (eval mode): %.1f %%\n", total, 100 * acc);
    sg_ctx_free(ctx);
    free(p); free(g); free(m); free(v2); free(st); free(mask); free(x); free(dl);
    return acc >= 0.95 ? 0 : 1;
}
