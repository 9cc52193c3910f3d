/* bench_synth.c — time to synthesize a classifier for a 5-way 5-shot task
 * (images + text) on one core, image decoding excluded, for the default
 * engine architecture (Conv4-64 at 40 px) or a trained engine given as the
 * first argument. Prints the median over repeats (default synthesis, and
 * without its support normalization, interleaved; with mirrored support
 * views, off by default; with the direct kernel for every convolution
 * instead of Winograd for the pooled 64-channel units, interleaved) and the
 * FLOP floor: the forward passes of
 * the support images (prototypes through the synthesized network; the task
 * summary through the base network when a generator weight reads it)
 * dominate. */
#include "sg_model_impl.h"
#include "sg_synth.h"

#include <cblas.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double run(sg_engine *e, const sg_task *t, const sg_synth_opts *o, int reps) {
    double *ts = malloc(sizeof(double) * (size_t)reps);
    for (int r = 0; r < reps; r++) {
        sg_classifier *c;
        sg_err err;
        double t0 = sg_now();
        if (sg_engine_synthesize(e, t, o, &c, &err) != SG_OK) {
            fprintf(stderr, "synthesis failed: %s\n", err.msg);
            exit(1);
        }
        ts[r] = sg_now() - t0;
        sg_classifier_free(c);
    }
    qsort(ts, (size_t)reps, sizeof(double), cmpd);
    double m = ts[reps / 2];
    free(ts);
    return m;
}

int main(int argc, char **argv) {
    openblas_set_num_threads(1);
    /* One core, and always the same one: left free to migrate, the process
     * lost its caches on every move and the median rose by about a third. */
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    sched_setaffinity(0, sizeof one, &one);
    sg_engine *e;
    sg_err err;
    if (argc > 1) {
        if (sg_engine_load(argv[1], &e, &err) != SG_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
    } else {
        sg_engine_config cfg;
        sg_engine_config_default(&cfg);
        e = sg_engine_create(&cfg, 1);
    }
    const sg_engine_config *cf = sg_engine_get_config(e);
    int N = 5, K = 5, S = cf->store;
    size_t ssz = (size_t)3 * S * S;
    uint8_t *img = malloc(ssz * (size_t)N * K);
    sg_rng r;
    sg_rng_seed(&r, 7);
    for (size_t i = 0; i < ssz * (size_t)N * K; i++) img[i] = (uint8_t)sg_rng_below(&r, 256);
    sg_task_class cls[5];
    static const char *txt = "a brown lesion with an irregular border and a blue-grey veil";
    for (int c = 0; c < N; c++) {
        cls[c].name = "class";
        cls[c].text = txt;
        cls[c].n_shots = K;
        cls[c].images = img + (size_t)c * K * ssz;
    }
    sg_task t = {N, cls};
    sg_synth_opts o;
    sg_synth_opts_default(&o);
    int reps = 15;
    run(e, &t, &o, 2);
    /* the default (one view per support image, the support normalization)
     * and without the normalization, interleaved so that both see the same
     * machine */
    double full = 0, plain = 0, direct = 0;
    for (int k = 0; k < 3; k++) {
        o.support_norm = SG_SUPPORT_NORM_DEFAULT;
        double a = run(e, &t, &o, reps);
        sg_conv2d_set_winograd(0);
        double d = run(e, &t, &o, reps);
        sg_conv2d_set_winograd(1);
        o.support_norm = 0;
        double b = run(e, &t, &o, reps);
        if (k == 0 || a < full) full = a;
        if (k == 0 || b < plain) plain = b;
        if (k == 0 || d < direct) direct = d;
    }
    o.support_norm = SG_SUPPORT_NORM_DEFAULT;
    o.flip_aug = 1;
    double flip = run(e, &t, &o, reps);
    o.flip_aug = 0;
    o.use_images = 0;
    double textonly = run(e, &t, &o, reps);
    double mflop = 0;
    {
        sg_arch a;
        sg_arch_convnet(&a, 3, cf->img, cf->width, cf->stages, cf->convs, SG_LAYER_AFFINE, 0);
        for (int i = 0; i < a.n_layers; i++)
            if (a.layers[i].kind == SG_LAYER_CONV2D) {
                const sg_layer *l = &a.layers[i];
                mflop += 2.0 * l->cout * l->cin * l->k * l->k * l->out_h * l->out_w / 1e6;
            }
    }
    char list[32], convs[64] = "";
    if (sg_engine_convs_str(cf, list, sizeof list)) snprintf(convs, sizeof convs, " (convolutions per stage %s)", list);
    printf("engine: Conv%d-%d at %d px%s, %zu parameters; 5-way 5-shot, images + text, one core\n", cf->stages,
           cf->width, cf->img, convs, sg_engine_n_params(e));
    /* the task summary (25 more forwards) runs only when a generator weight reads it */
    printf("synthesis (default), best of 3 medians of %d: %.1f ms (25 support forwards with the support\n"
           "  normalization's statistics, +25 for the task summary when the generator reads it)\n", reps, 1e3 * full);
    printf("synthesis without the support normalization (--support-norm 0): %.1f ms; default / that: %.2f\n",
           1e3 * plain, full / plain);
    printf("synthesis with the direct kernel for every convolution (no Winograd): %.1f ms; default / that: %.2f\n",
           1e3 * direct, full / direct);
    printf("synthesis with mirrored support views: %.1f ms (50 forwards, +25 for the summary)\n", 1e3 * flip);
    printf("synthesis, text only: %.2f ms\n", 1e3 * textonly);
    printf("FLOP floor: %.0f MFLOP per image forward; 25 forwards = %.2f GFLOP\n", mflop, 25 * mflop / 1e3);
    printf("target <= 20 ms: %s\n", full <= 0.020 ? "met" : "NOT met");
    sg_engine_free(e);
    free(img);
    return 0;
}
