/* bench_forward.c — inference throughput of a Conv4-64 classifier
 * (4 × [conv3×3 64, batch norm, ReLU, maxpool 2], GAP, linear 5) at 3×64×64
 * (--img 40: the input side of the real-data engine), batch 256, eval mode,
 * with 1 and 2 OpenBLAS threads. Prints images/s,
 * convolution GFLOP/s, the share of this machine's SGEMM peak (measured in
 * the same run at the same thread count, before and after the timed
 * forwards, the better kept), a per-layer breakdown, and the
 * PyTorch peer (bench/forward_torch.py, same network) when /usr/bin/python3
 * can import torch. Each conv line says which implementation ran (Winograd,
 * direct, or im2col + SGEMM: see model/sg_layers.c and sg_conv_winograd.c;
 * the first two only when OpenBLAS runs on one thread). On one thread it
 * also times the same forwards with the Winograd path off (the direct kernel
 * for every conv), interleaved with the default, and prints the ratio.
 *
 * usage: bench_forward [--batch N] [--reps R] [--threads 1,2] [--img SIDE] [--no-torch] */
#include "sg_model_impl.h"

#include <cblas.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double conv_flops_per_image(const sg_arch *a) {
    double f = 0;
    for (int i = 0; i < a->n_layers; i++) {
        const sg_layer *l = &a->layers[i];
        if (l->kind == SG_LAYER_CONV2D) f += 2.0 * l->cout * l->cin * l->k * l->k * l->out_h * l->out_w;
    }
    return f;
}

/* Best GFLOP/s of C (m×n) = A (m×k) · B (k×n) over a few runs. */
static double sgemm_gflops(int m, int n, int k) {
    float *A = sg_xalloc_floats((size_t)m * k), *B = sg_xalloc_floats((size_t)k * n), *C = sg_xalloc_floats((size_t)m * n);
    sg_rng r;
    sg_rng_seed(&r, 1);
    for (size_t i = 0; i < (size_t)m * k; i++) A[i] = sg_rng_uniform(&r);
    for (size_t i = 0; i < (size_t)k * n; i++) B[i] = sg_rng_uniform(&r);
    double best = 1e30;
    for (int rep = 0; rep < 6; rep++) {
        double t = sg_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, A, k, B, n, 0.0f, C, n);
        t = sg_now() - t;
        if (rep > 0 && t < best) best = t;
    }
    free(A);
    free(B);
    free(C);
    return 2.0 * m * n * k / best * 1e-9;
}

/* images/s of PyTorch for (threads, format) via forward_torch.py; 0 if unavailable. */
static void run_torch(const char *script, int threads, int reps, int side, double *nchw, double *cl) {
    *nchw = *cl = 0;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "OPENBLAS_NUM_THREADS=%d OMP_NUM_THREADS=%d /usr/bin/python3 '%s' %d %d %d 2>/dev/null",
             threads, threads, script, threads, reps, side);
    FILE *f = popen(cmd, "r");
    if (!f) return;
    char line[256], fmt[64];
    int t;
    double v;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "torch %63s %d %lf", fmt, &t, &v) == 3) {
            if (!strcmp(fmt, "nchw")) *nchw = v;
            else if (!strcmp(fmt, "channels_last")) *cl = v;
        }
    pclose(f);
}

int main(int argc, char **argv) {
    int batch = 256, reps = 3, use_torch = 1, nthreads = 2, threads[8] = {1, 2}, hw = 64;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--img") && i + 1 < argc) hw = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-torch")) use_torch = 0;
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            nthreads = 0;
            for (char *s = strtok(argv[++i], ","); s && nthreads < 8; s = strtok(NULL, ",")) threads[nthreads++] = atoi(s);
        } else {
            fprintf(stderr, "usage: bench_forward [--batch N] [--reps R] [--threads 1,2] [--img SIDE] [--no-torch]\n");
            return 2;
        }
    }
    if (batch < 1 || reps < 1 || hw < 16 || hw > 256) return 2;
    const int classes = 5;
    sg_arch a;
    sg_arch_conv4(&a, 3, hw, 64, 4, SG_LAYER_BATCHNORM, classes);
    sg_rng r;
    sg_rng_seed(&r, 7);
    float *p = sg_xalloc_floats(a.n_params), *st = sg_xalloc_floats(a.n_state);
    sg_arch_init_params(&a, p, &r);
    for (size_t i = 0; i < a.n_state; i++) st[i] = 0.5f + sg_rng_uniform(&r);
    size_t in_f = (size_t)3 * hw * hw;
    float *x = sg_xalloc_floats(in_f * batch);
    for (size_t i = 0; i < in_f * batch; i++) x[i] = sg_rng_normal(&r);
    sg_ctx *ctx = sg_ctx_create(&a, batch);
    double cf = conv_flops_per_image(&a);

    char torch_script[1024] = "";
    if (use_torch && system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0) {
        char *src = sg_xstrdup(__FILE__);
        snprintf(torch_script, sizeof torch_script, "%s/forward_torch.py", dirname(src));
        free(src);
    }

    printf("bench_forward: Conv4-64 (4 x [conv3x3 64, batchnorm, relu, maxpool 2], gap, linear %d), 3x%dx%d,\n"
           "  batch %d, eval mode, best of %d; convolutions %.1f MFLOP/image\n\n",
           classes, hw, hw, batch, reps, cf * 1e-6);
    printf("%-8s %10s %10s %11s %11s %10s %11s %13s %8s\n", "threads", "images/s", "conv GF/s", "sgemm1024",
           "sgemm conv", "% peak", "torch nchw", "torch ch_last", "ratio");
    sg_net_profile prof[8];
    int direct[8][SG_MAX_LAYERS] = {{0}}; /* 0 im2col, 1 direct, 2 Winograd */
    double wino_ratio[8] = {0}, wino_on[8] = {0}, wino_off[8] = {0};
    for (int ti = 0; ti < nthreads; ti++) {
        int t = threads[ti];
        openblas_set_num_threads(t);
        for (int i = 0; i < a.n_layers; i++) {
            const sg_layer *l = &a.layers[i];
            sg_conv2d_cfg cc = {l->cin, l->cout, l->k, l->stride, l->pad};
            int pooled = i + 3 < a.n_layers && a.layers[i + 3].kind == SG_LAYER_MAXPOOL;
            direct[ti][i] = l->kind != SG_LAYER_CONV2D                                ? 0
                            : pooled && sg_conv2d_uses_winograd(&cc, l->in_h, l->in_w) ? 2
                                                                                       : sg_conv2d_uses_direct(&cc);
        }
        double peak = sgemm_gflops(1024, 1024, 1024), convpk = sgemm_gflops(64, 4096, 576);
        sg_net_forward(&a, ctx, p, st, x, batch, 0); /* warm-up */
        /* with the Winograd path off too, interleaved, when it would run */
        int any_wino = 0;
        for (int i = 0; i < a.n_layers; i++) any_wino |= direct[ti][i] == 2;
        double best = 1e30, best_off = 1e30;
        for (int rep = 0; rep < reps; rep++)
            for (int off = 0; off <= any_wino; off++) {
                sg_conv2d_set_winograd(!off);
                double t0 = sg_now();
                sg_net_forward(&a, ctx, p, st, x, batch, 0);
                double dt = sg_now() - t0;
                if (off && dt < best_off) best_off = dt;
                if (!off && dt < best) best = dt;
            }
        sg_conv2d_set_winograd(1);
        if (any_wino) {
            wino_on[ti] = batch / best;
            wino_off[ti] = batch / best_off;
            wino_ratio[ti] = best_off / best;
        }
        sg_ctx_set_profile(ctx, &prof[ti]);
        sg_net_forward(&a, ctx, p, st, x, batch, 0);
        sg_ctx_set_profile(ctx, NULL);
        /* The peak again after the timed forwards, keeping the better: on a
         * shared machine one short measurement can land in a slow spell and
         * flatter the conv share. */
        double peak2 = sgemm_gflops(1024, 1024, 1024), convpk2 = sgemm_gflops(64, 4096, 576);
        if (peak2 > peak) peak = peak2;
        if (convpk2 > convpk) convpk = convpk2;
        double conv_s = 0;
        for (int i = 0; i < a.n_layers; i++)
            if (a.layers[i].kind == SG_LAYER_CONV2D) conv_s += prof[ti].secs[i];
        double ips = batch / best, conv_gf = cf * batch / conv_s * 1e-9;
        double tn = 0, tc = 0;
        if (torch_script[0]) run_torch(torch_script, t, reps, hw, &tn, &tc);
        double tbest = tn > tc ? tn : tc;
        printf("%-8d %10.1f %10.1f %11.1f %11.1f %9.1f%% %11.1f %13.1f %7.2fx\n", t, ips, conv_gf, peak, convpk,
               100 * conv_gf / peak, tn, tc, tbest > 0 ? ips / tbest : 0.0);
    }
    printf("\n  conv GF/s: convolution FLOPs / time of the conv layers (incl. their fused norm, ReLU, pool);\n"
           "  %% peak: of the 1024^3 SGEMM at the same thread count (best of runs before and after the\n"
           "  forwards); ratio: sgps / best PyTorch format.\n");
    for (int ti = 0; ti < nthreads; ti++)
        if (wino_ratio[ti] > 0)
            printf("\nWinograd F(2x2,3x3) for the pooled 64-channel units, %d thread: %.1f images/s; the direct\n"
                   "kernel for every conv, interleaved: %.1f images/s; Winograd / direct %.2fx\n",
                   threads[ti], wino_on[ti], wino_off[ti], wino_ratio[ti]);

    for (int ti = 0; ti < nthreads; ti++) {
        double total = 0;
        for (int i = 0; i < a.n_layers; i++) total += prof[ti].secs[i];
        printf("\nper-layer time, %d thread%s (one batch of %d, %.1f ms):\n", threads[ti], threads[ti] > 1 ? "s" : "",
               batch, total * 1e3);
        double bykind[16] = {0};
        for (int i = 0; i < a.n_layers; i++) {
            const sg_layer *l = &a.layers[i];
            if (prof[ti].fused_into[i] >= 0) {
                printf("  %2d %-10s %3dx%-3d  fused into layer %d\n", i, sg_layer_kind_name(l->kind), l->out_h,
                       l->out_w, prof[ti].fused_into[i]);
                continue;
            }
            bykind[l->kind] += prof[ti].secs[i];
            printf("  %2d %-10s %3dx%-3d %8.2f ms %5.1f%%", i, sg_layer_kind_name(l->kind), l->out_h, l->out_w,
                   prof[ti].secs[i] * 1e3, 100 * prof[ti].secs[i] / total);
            if (l->kind == SG_LAYER_CONV2D)
                printf("  %6.1f GFLOP/s  %s", 2.0 * l->cout * l->cin * l->k * l->k * l->out_h * l->out_w * batch /
                                                  prof[ti].secs[i] * 1e-9,
                       direct[ti][i] == 2 ? "winograd" : direct[ti][i] ? "direct" : "im2col");
            printf("\n");
        }
        printf("  by kind:");
        for (int k = 1; k < 16; k++)
            if (bykind[k] > 0) printf("  %s %.1f%%", sg_layer_kind_name((sg_layer_kind)k), 100 * bykind[k] / total);
        printf("\n");
    }
    sg_ctx_free(ctx);
    free(p);
    free(st);
    free(x);
    return 0;
}
