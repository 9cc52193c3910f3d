/* test_conv_direct.c — the direct convolution path of sg_conv2d_forward and
 * sg_conv2d_forward_fused, and the Winograd F(2×2, 3×3) path of the pooled
 * 3×3 units (model/sg_conv_winograd.c; each pooled case runs with it on and
 * off), against the im2col + SGEMM reference
 * (sg_conv2d_forward_im2col, then the affine / ReLU / max-pool ops one by
 * one), on random inputs: odd sizes, channel counts that leave partial
 * register tiles, padding 0/1/2, kernels 2/3/5, batch 1 and many; pooled
 * maps whose widths leave 2 or 4 columns to the 4×4 tiles (odd pooled
 * heights and widths: partial tiles). Stride 2 and 1×1 configurations check
 * that the dispatch falls back correctly.
 * Work buffers are exactly sg_conv2d_work_floats, so the sanitizer build
 * catches any overrun of the padded-input slack. */
#include "sg_model_impl.h"

#include <cblas.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct conv_case {
    int cin, cout, k, stride, pad, h, w, n;
} conv_case;

static const conv_case CASES[] = {
    {3, 64, 3, 1, 1, 64, 64, 2},  /* the RGB layer of Conv4-64 */
    {64, 64, 3, 1, 1, 8, 8, 5},   /* a deep layer on a small map */
    {5, 7, 3, 1, 1, 13, 11, 3},   /* odd sizes, one full and one partial channel block */
    {4, 13, 3, 1, 0, 9, 17, 1},   /* no padding, batch 1 */
    {2, 1, 3, 1, 1, 7, 5, 17},    /* one output channel, short odd rows, many images */
    {3, 6, 5, 1, 2, 12, 10, 2},   /* 5×5 */
    {6, 5, 2, 1, 0, 6, 9, 3},     /* even kernel */
    {3, 8, 3, 1, 1, 3, 3, 4},     /* map smaller than a vector */
    {16, 12, 3, 1, 1, 31, 33, 2}, /* rows of 2 tiles + a partial one */
    {3, 7, 3, 1, 1, 11, 25, 2},   /* a last tile of 9 pixels */
    {2, 3, 3, 1, 1, 5, 1, 3},     /* one column */
    /* Pooled tilings (cend = 2·(ow/2) columns): 2×8 tiles while 8 fit, a
     * last 2 or 4 columns in 4×4 tiles, a last 6 in a 2×8 tile. */
    {3, 64, 3, 1, 1, 40, 40, 1},  /* Conv4-64 at 40 px: 2×8 tiles only */
    {64, 64, 3, 1, 1, 20, 20, 3}, /* 2×8 tiles + 4×4 tiles for the last 4 columns */
    {64, 13, 3, 1, 1, 10, 10, 3}, /* 4×4 tiles for the last 2 columns, ph 5: a half tile at the bottom */
    {64, 64, 3, 1, 1, 5, 5, 1},   /* one 4×4 tile per channel block */
    {3, 13, 3, 1, 1, 5, 10, 3},   /* ph 2, pw 5 */
    {64, 64, 3, 1, 1, 10, 5, 3},  /* ph 5, pw 2: 4×4 tiles only, a half one at the bottom */
    {3, 13, 3, 1, 1, 6, 12, 1},   /* pw 6: 8 + 4 columns, ph 3 */
    {64, 13, 3, 1, 1, 12, 6, 3},  /* pw 3: one 2×8 tile of 6 columns */
    {64, 13, 3, 1, 1, 12, 12, 1}, /* 8 + 4 columns, ph 6 */
    {3, 64, 3, 1, 1, 7, 22, 3},   /* pw 11: 16 + 6 columns, odd conv height */
    {64, 13, 3, 1, 1, 22, 7, 1},  /* pw 3 from an odd width */
    {3, 13, 3, 1, 1, 22, 22, 3},  /* 16 + 6 columns, ph 11 */
    {3, 64, 3, 1, 1, 20, 40, 1},  /* ph 10, pw 20 */
    {3, 13, 3, 1, 1, 40, 20, 3},  /* ph 20, pw 10 */
    {64, 13, 3, 1, 1, 20, 10, 1}, /* pw 5 */
    {3, 7, 5, 1, 2, 10, 12, 2},   /* 5×5, 4×4 tiles reaching past the last plane */
    {6, 5, 2, 1, 0, 7, 11, 3},    /* even kernel: ow 10, ph 3 */
    {64, 13, 3, 1, 0, 7, 7, 3},   /* no padding: a 5×5 map, one 4×4 tile */
    {64, 64, 3, 1, 1, 2, 2, 3},   /* a 2×2 map pooled to 1×1 (a fifth stage at 40 px) */
    {64, 13, 3, 1, 1, 3, 3, 2},   /* 3×3 pooled to 1×1 */
    /* Winograd: chunks of 16 tiles across images, a group of several images */
    {64, 64, 3, 1, 1, 20, 20, 8}, /* unit 2 of Conv4-64 at 40 px, an eval chunk */
    {64, 64, 3, 1, 1, 5, 5, 17},  /* unit 4: 4 tiles per image, 17 images */
    {8, 10, 3, 1, 1, 6, 6, 7},    /* the fewest input channels it takes, 9 tiles per image */
    {7, 5, 3, 1, 1, 8, 8, 2},     /* one channel fewer: the direct kernel */
    {9, 7, 3, 1, 1, 23, 37, 3},   /* odd sizes: 11 × 18 tiles, the last row and column dropped */
    {16, 8, 3, 1, 1, 40, 40, 2},  /* 400 tiles per image: bands of 6 tile rows (6, 6, 6, 2) */
    {9, 7, 3, 1, 1, 39, 41, 2},   /* bands 6, 6, 6, 1 of 20 tiles, odd sizes */
    {8, 6, 3, 1, 1, 6, 300, 1},   /* 150 tiles per row: bands of one row */
    {3, 5, 3, 2, 1, 9, 9, 3},     /* stride 2: im2col path */
    {4, 6, 1, 1, 0, 7, 7, 2},     /* 1×1: im2col path */
};
#define N_CASES (sizeof CASES / sizeof CASES[0])

static void fill(sg_rng *g, float *v, size_t n, float sd) {
    for (size_t i = 0; i < n; i++) v[i] = sd * sg_rng_normal(g);
}

static void expect_close(const float *got, const float *ref, size_t n, const char *what, const conv_case *c) {
    for (size_t i = 0; i < n; i++)
        cr_assert(fabsf(got[i] - ref[i]) <= 1e-4f * (1 + fabsf(ref[i])),
                  "%s (cin %d cout %d k %d s %d p %d %dx%d n %d): element %zu: %g vs %g", what, c->cin, c->cout, c->k,
                  c->stride, c->pad, c->h, c->w, c->n, i, got[i], ref[i]);
}

/* The direct path is compiled into AVX2+FMA builds; there it must be taken. */
static void expect_dispatch(const sg_conv2d_cfg *cc) {
#if defined(__AVX2__) && defined(__FMA__)
    int want = cc->stride == 1 && cc->k > 1;
#else
    int want = 0;
#endif
    cr_assert_eq(sg_conv2d_uses_direct(cc), want, "dispatch for k %d stride %d", cc->k, cc->stride);
}

Test(conv_direct, forward_matches_im2col) {
    openblas_set_num_threads(1);
    sg_rng g;
    sg_rng_seed(&g, 11);
    for (size_t ci = 0; ci < N_CASES; ci++) {
        const conv_case *c = &CASES[ci];
        sg_conv2d_cfg cc = {c->cin, c->cout, c->k, c->stride, c->pad};
        expect_dispatch(&cc);
        int oh = sg_conv2d_out_size(c->h, c->k, c->stride, c->pad), ow = sg_conv2d_out_size(c->w, c->k, c->stride, c->pad);
        size_t nx = (size_t)c->n * c->cin * c->h * c->w, nw = (size_t)c->cout * c->cin * c->k * c->k;
        size_t ny = (size_t)c->n * c->cout * oh * ow, nwork = sg_conv2d_work_floats(&cc, c->n, c->h, c->w);
        float *x = sg_xalloc_floats(nx), *wt = sg_xalloc_floats(nw), *b = sg_xalloc_floats((size_t)c->cout);
        float *y = sg_xalloc_floats(ny), *ref = sg_xalloc_floats(ny), *work = sg_xalloc_floats(nwork);
        fill(&g, x, nx, 1);
        fill(&g, wt, nw, 0.5f);
        fill(&g, b, (size_t)c->cout, 0.5f);
        for (int bias = 0; bias < 2; bias++) {
            sg_conv2d_forward_im2col(&cc, c->n, c->h, c->w, x, wt, bias ? b : NULL, ref, work);
            fill(&g, y, ny, 100); /* stale values must be overwritten */
            sg_conv2d_forward(&cc, c->n, c->h, c->w, x, wt, bias ? b : NULL, y, work);
            expect_close(y, ref, ny, bias ? "forward with bias" : "forward", c);
        }
        free(x); free(wt); free(b); free(y); free(ref); free(work);
    }
}

/* Winograd is compiled into AVX2+FMA builds too; there the pooled 3×3
 * units with at least 8 input channels take it unless it is turned off. */
static void expect_winograd_dispatch(const sg_conv2d_cfg *cc, int h, int w, int on) {
#if defined(__AVX2__) && defined(__FMA__)
    int want = on && cc->k == 3 && cc->stride == 1 && cc->pad == 1 && cc->cin >= 8 && h >= 2 && w >= 2;
#else
    int want = 0;
    (void)on;
#endif
    cr_assert_eq(sg_conv2d_uses_winograd(cc, h, w), want, "Winograd dispatch for cin %d k %d stride %d pad %d %dx%d",
                 cc->cin, cc->k, cc->stride, cc->pad, h, w);
}

/* Fused: pool2(relu(conv · scale + shift)) against the ops one by one,
 * with the Winograd path on (the default) and off. */
static void fused_cases(int wino) {
    openblas_set_num_threads(1);
    sg_conv2d_set_winograd(wino);
    sg_rng g;
    sg_rng_seed(&g, 12);
    int wino_cases = 0;
    for (size_t ci = 0; ci < N_CASES; ci++) {
        const conv_case *c = &CASES[ci];
        sg_conv2d_cfg cc = {c->cin, c->cout, c->k, c->stride, c->pad};
        int oh = sg_conv2d_out_size(c->h, c->k, c->stride, c->pad), ow = sg_conv2d_out_size(c->w, c->k, c->stride, c->pad);
        size_t nx = (size_t)c->n * c->cin * c->h * c->w, nw = (size_t)c->cout * c->cin * c->k * c->k;
        size_t ny = (size_t)c->n * c->cout * oh * ow, nwork = sg_conv2d_work_floats(&cc, c->n, c->h, c->w);
        float *x = sg_xalloc_floats(nx), *wt = sg_xalloc_floats(nw), *sc = sg_xalloc_floats((size_t)c->cout);
        float *sh = sg_xalloc_floats((size_t)c->cout), *conv = sg_xalloc_floats(ny), *aff = sg_xalloc_floats(ny);
        float *act = sg_xalloc_floats(ny), *ref = sg_xalloc_floats(ny), *y = sg_xalloc_floats(ny);
        float *work = sg_xalloc_floats(nwork);
        int32_t *am = sg_xcalloc(ny, sizeof(int32_t));
        expect_winograd_dispatch(&cc, c->h, c->w, wino);
        wino_cases += sg_conv2d_uses_winograd(&cc, c->h, c->w);
        fill(&g, x, nx, 1);
        fill(&g, wt, nw, 0.5f);
        fill(&g, sc, (size_t)c->cout, 1); /* negative scales too */
        fill(&g, sh, (size_t)c->cout, 0.5f);
        sg_conv2d_forward_im2col(&cc, c->n, c->h, c->w, x, wt, NULL, conv, work);
        for (int variant = 0; variant < 6; variant++) {
            int relu = variant & 1, pool2 = (variant >> 1) & 1, no_affine = variant >= 4;
            if (pool2 && (oh < 2 || ow < 2)) continue;
            const float *scale = no_affine ? NULL : sc, *shift = no_affine ? NULL : sh;
            if (no_affine) memcpy(aff, conv, sizeof(float) * ny);
            else sg_affine_forward(c->n, c->cout, oh * ow, conv, sc, sh, aff);
            if (relu) sg_relu_forward(ny, aff, act);
            else memcpy(act, aff, sizeof(float) * ny);
            size_t nout = ny;
            if (pool2) {
                sg_maxpool_forward(c->n * c->cout, oh, ow, 2, 2, act, ref, am);
                nout = (size_t)c->n * c->cout * (oh / 2) * (ow / 2);
            } else {
                memcpy(ref, act, sizeof(float) * ny);
            }
            fill(&g, y, ny, 100);
            for (size_t i = nout; i < ny; i++) y[i] = 12345.0f; /* past the pooled output: never stored */
            sg_conv2d_forward_fused(&cc, c->n, c->h, c->w, x, wt, scale, shift, relu, pool2, y, work);
            char what[64];
            snprintf(what, sizeof what, "fused relu %d pool %d affine %d", relu, pool2, !no_affine);
            expect_close(y, ref, nout, what, c);
            for (size_t i = nout; i < ny; i++) cr_assert(y[i] == 12345.0f, "%s: stored past the output at %zu", what, i);
            fill(&g, y, ny, 100);
            sg_conv2d_forward_fused_im2col(&cc, c->n, c->h, c->w, x, wt, scale, shift, relu, pool2, y, work);
            snprintf(what, sizeof what, "fused im2col relu %d pool %d affine %d", relu, pool2, !no_affine);
            expect_close(y, ref, nout, what, c);
        }
        free(x); free(wt); free(sc); free(sh); free(conv); free(aff); free(act); free(ref); free(y); free(work); free(am);
    }
    sg_conv2d_set_winograd(1);
#if defined(__AVX2__) && defined(__FMA__)
    if (wino) cr_assert(wino_cases >= 15, "only %d cases took the Winograd path", wino_cases);
#endif
}

Test(conv_direct, fused_matches_layer_ops) { fused_cases(1); }
Test(conv_direct, fused_matches_layer_ops_without_winograd) { fused_cases(0); }

/* The direct kernel is single-threaded: with several BLAS threads the
 * forwards go back to im2col + SGEMM, which OpenBLAS parallelizes. */
Test(conv_direct, several_blas_threads_use_im2col) {
    sg_conv2d_cfg cc = {3, 8, 3, 1, 1};
    openblas_set_num_threads(2);
    int multi = openblas_get_num_threads() > 1;
    int uses = sg_conv2d_uses_direct(&cc);
    openblas_set_num_threads(1);
    if (multi) cr_assert_eq(uses, 0);
}

/* The statistics pass (support normalization): the raw output's per-channel
 * sums added to what the sums held, its 2×2 max and min, and, on the direct
 * path, bit for bit the fused convolution once any affine is applied to
 * them; on the im2col path (several BLAS threads) the same within float
 * tolerance. Every case whose output sizes are even. */
static void pool_stats_cases(int threads, int wino) {
    openblas_set_num_threads(threads);
    sg_conv2d_set_winograd(wino);
    sg_rng g;
    sg_rng_seed(&g, 13);
    int tested = 0;
    for (size_t ci = 0; ci < N_CASES; ci++) {
        const conv_case *c = &CASES[ci];
        sg_conv2d_cfg cc = {c->cin, c->cout, c->k, c->stride, c->pad};
        int oh = sg_conv2d_out_size(c->h, c->k, c->stride, c->pad), ow = sg_conv2d_out_size(c->w, c->k, c->stride, c->pad);
        if (oh < 2 || ow < 2 || oh % 2 || ow % 2) continue;
        int direct = sg_conv2d_uses_direct(&cc);
        size_t p = (size_t)oh * ow, op = p / 4;
        size_t nx = (size_t)c->n * c->cin * c->h * c->w, nw = (size_t)c->cout * c->cin * c->k * c->k;
        size_t ny = (size_t)c->n * c->cout * p, half = (size_t)c->n * c->cout * op;
        size_t nwork = sg_conv2d_pool_stats_work_floats(&cc, c->n, c->h, c->w);
        size_t nref = sg_conv2d_work_floats(&cc, c->n, c->h, c->w);
        float *x = sg_xalloc_floats(nx), *wt = sg_xalloc_floats(nw), *conv = sg_xalloc_floats(ny);
        float *y = sg_xalloc_floats(2 * half + 8), *work = sg_xalloc_floats(nwork), *rwork = sg_xalloc_floats(nref);
        float *sc = sg_xalloc_floats((size_t)c->cout), *sh = sg_xalloc_floats((size_t)c->cout);
        float *fused = sg_xalloc_floats(half);
        double *sum = sg_xcalloc((size_t)c->cout, sizeof(double)), *sumsq = sg_xcalloc((size_t)c->cout, sizeof(double));
        fill(&g, x, nx, 1);
        fill(&g, wt, nw, 0.5f);
        fill(&g, sc, (size_t)c->cout, 1); /* negative scales too */
        fill(&g, sh, (size_t)c->cout, 0.5f);
        sg_conv2d_forward_im2col(&cc, c->n, c->h, c->w, x, wt, NULL, conv, rwork);
        for (int o = 0; o < c->cout; o++) sum[o] = sumsq[o] = 1.0; /* added to, not overwritten */
        fill(&g, y, 2 * half, 100);
        for (int i = 0; i < 8; i++) y[2 * half + i] = 12345.0f;
        sg_conv2d_forward_pool_stats(&cc, c->n, c->h, c->w, x, wt, y, sum, sumsq, work);
        for (int i = 0; i < 8; i++) cr_assert(y[2 * half + i] == 12345.0f, "case %zu: stored past the output", ci);
        for (int o = 0; o < c->cout; o++) {
            double s = 1, ss = 1, sa = 0;
            for (int i = 0; i < c->n; i++)
                for (size_t q = 0; q < p; q++) {
                    double v = conv[((size_t)i * c->cout + o) * p + q];
                    s += v;
                    ss += v * v;
                    sa += fabs(v);
                }
            cr_assert(fabs(sum[o] - s) <= 1e-4 * (1 + sa), "case %zu channel %d: sum %g vs %g", ci, o, sum[o], s);
            cr_assert(fabs(sumsq[o] - ss) <= 1e-4 * ss, "case %zu channel %d: sum of squares %g vs %g", ci, o, sumsq[o],
                      ss);
        }
        int pw = ow / 2;
        for (size_t m = 0; m < (size_t)c->n * c->cout; m++)
            for (int r = 0; r < oh / 2; r++)
                for (int j = 0; j < pw; j++) {
                    const float *a = conv + m * p + (size_t)2 * r * ow + 2 * j;
                    float hi = fmaxf(fmaxf(a[0], a[1]), fmaxf(a[ow], a[ow + 1]));
                    float lo = fminf(fminf(a[0], a[1]), fminf(a[ow], a[ow + 1]));
                    size_t k = m * op + (size_t)r * pw + j;
                    cr_assert(fabsf(y[k] - hi) <= 1e-4f * (1 + fabsf(hi)), "case %zu: max %g vs %g", ci, y[k], hi);
                    cr_assert(fabsf(y[half + k] - lo) <= 1e-4f * (1 + fabsf(lo)), "case %zu: min %g vs %g", ci,
                              y[half + k], lo);
                }
        /* relu(fma(max or min, s, t)) is the fused convolution's output */
        sg_conv2d_forward_fused(&cc, c->n, c->h, c->w, x, wt, sc, sh, 1, 1, fused, rwork);
        for (size_t m = 0; m < (size_t)c->n * c->cout; m++) {
            int o = (int)(m % (size_t)c->cout);
            for (size_t q = 0; q < op; q++) {
                float v = fmaf(sc[o] >= 0 ? y[m * op + q] : y[half + m * op + q], sc[o], sh[o]);
                v = v > 0 ? v : 0;
                float f = fused[m * op + q];
                if (direct) cr_assert(v == f, "case %zu: %.9g from the statistics pass, %.9g fused", ci, v, f);
                else cr_assert(fabsf(v - f) <= 1e-4f * (1 + fabsf(f)), "case %zu: %g vs %g fused", ci, v, f);
            }
        }
        tested++;
        free(x); free(wt); free(conv); free(y); free(work); free(rwork); free(sc); free(sh); free(fused); free(sum);
        free(sumsq);
    }
    openblas_set_num_threads(1);
    sg_conv2d_set_winograd(1);
    cr_assert(tested >= 15, "only %d cases with even output sizes", tested);
}

Test(conv_direct, pool_stats_matches_layer_ops) { pool_stats_cases(1, 1); }
Test(conv_direct, pool_stats_without_winograd) { pool_stats_cases(1, 0); }
Test(conv_direct, pool_stats_im2col_path) { pool_stats_cases(2, 1); }
