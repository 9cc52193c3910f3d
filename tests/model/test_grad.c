/* test_grad.c — every backward (input and parameter gradients) against
 * central finite differences of a random scalar loss L = Σ r_i·y_i.
 *
 * The forward runs in float; the loss is summed in double and the step is the
 * difference actually representable in float. Ops that are linear in the
 * perturbed tensor (conv, affine, pools, linear) have exact central
 * differences, so a large step keeps rounding away and the tolerance tight;
 * nonlinear ops use a small step. Kinks are kept away from the step: ReLU
 * inputs have |x| > 2·eps, max-pool windows hold values spaced wider than
 * 2·eps; in whole networks an index whose one-sided differences disagree is a
 * kink and is skipped (counted, and the count is bounded).
 *
 * Gradient buffers are pre-filled with random values and the analytic
 * gradient is read as (after − before): an overwriting backward fails. */
#include "sg_model.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- harness ---- */

typedef void (*fwd_fn)(void *s, float *y);

typedef struct fd_cfg {
    float eps;
    double tol;      /* per element: |a − n| ≤ tol·(|n| + 0.05·rms(n)) */
    int max_checks;  /* sample at most this many indices */
    int kink_skip;   /* skip indices where the one-sided slopes disagree */
} fd_cfg;

static double loss_of(fwd_fn f, void *s, float *y, const float *r, size_t ny) {
    f(s, y);
    double l = 0;
    for (size_t i = 0; i < ny; i++) l += (double)r[i] * y[i];
    return l;
}

static void fill_normal(sg_rng *g, float *v, size_t n, float sd) {
    for (size_t i = 0; i < n; i++) v[i] = sd * sg_rng_normal(g);
}

/* Checks `analytic` (nv) = dL/dv by central differences over the live array v. */
static void check_grad(const char *what, fwd_fn f, void *s, float *y, const float *r, size_t ny, float *v, size_t nv,
                       const float *analytic, fd_cfg cfg) {
    size_t nchk = nv < (size_t)cfg.max_checks ? nv : (size_t)cfg.max_checks;
    double *num = malloc(sizeof(double) * nchk);
    size_t *idx = malloc(sizeof(size_t) * nchk);
    int *skip = calloc(nchk, sizeof(int));
    sg_rng g;
    sg_rng_seed(&g, 99);
    double ss = 0;
    int skipped = 0;
    for (size_t j = 0; j < nchk; j++) {
        size_t i = nchk == nv ? j : sg_rng_below(&g, (uint32_t)nv);
        idx[j] = i;
        float orig = v[i];
        if (!cfg.kink_skip) {
            v[i] = orig + cfg.eps;
            float vp = v[i];
            double lp = loss_of(f, s, y, r, ny);
            v[i] = orig - cfg.eps;
            float vm = v[i];
            double lm = loss_of(f, s, y, r, ny);
            v[i] = orig;
            num[j] = (lp - lm) / ((double)vp - vm);
        } else {
            /* Slopes over the four half-steps in [−eps, eps]: on a smooth
             * piece their successive differences agree (curvature); a kink
             * (ReLU crossing, max-pool swap) makes one of them jump. */
            double l[5], at[5];
            for (int q = 0; q < 5; q++) {
                v[i] = orig + cfg.eps * 0.5f * (float)(q - 2);
                at[q] = v[i];
                l[q] = loss_of(f, s, y, r, ny);
            }
            v[i] = orig;
            num[j] = (l[4] - l[0]) / (at[4] - at[0]);
            double sl[4], lo = 1e300, hi = -1e300;
            for (int q = 0; q < 4; q++) sl[q] = (l[q + 1] - l[q]) / (at[q + 1] - at[q]);
            for (int q = 0; q < 3; q++) {
                double d = sl[q + 1] - sl[q];
                lo = d < lo ? d : lo;
                hi = d > hi ? d : hi;
            }
            if (hi - lo > 1e-2 * fabs(num[j]) + 5e-4) {
                skip[j] = 1;
                skipped++;
            }
        }
        ss += num[j] * num[j];
    }
    f(s, y);
    double rms = sqrt(ss / (double)nchk), worst = 0, dd = 0, nn = 0;
    size_t worst_i = 0;
    for (size_t j = 0; j < nchk; j++) {
        if (skip[j]) continue;
        double a = analytic[idx[j]], d = fabs(a - num[j]);
        double e = d / (fabs(num[j]) + 0.05 * rms + 1e-9);
        dd += d * d;
        nn += num[j] * num[j];
        if (e > worst) {
            worst = e;
            worst_i = j;
        }
    }
    cr_log_info("%s: %zu checked, %d at kinks, worst rel err %.3g", what, nchk, skipped, worst);
    cr_assert(rms > 0 || nchk == 0, "%s: all finite differences are zero (test is vacuous)", what);
    cr_assert(worst <= cfg.tol, "%s: index %zu analytic %.7g vs numeric %.7g (rel err %.3g > %.3g)", what,
              idx[worst_i], (double)analytic[idx[worst_i]], num[worst_i], worst, cfg.tol);
    cr_assert(sqrt(dd / (nn + 1e-30)) <= cfg.tol, "%s: norm relative error %.3g", what, sqrt(dd / (nn + 1e-30)));
    cr_assert(skipped * 10 <= (int)nchk * 7 && (int)nchk - skipped >= (nchk < 60 ? (int)nchk : 60),
              "%s: %d of %zu indices at kinks", what, skipped, nchk);
    free(num);
    free(idx);
    free(skip);
}

/* A gradient buffer pre-filled with noise; `grad_of` returns after − before. */
typedef struct acc_buf {
    float *g, *before, *diff;
    size_t n;
} acc_buf;

static acc_buf acc_new(size_t n, sg_rng *r) {
    acc_buf a = {sg_xalloc_floats(n), sg_xalloc_floats(n), sg_xalloc_floats(n), n};
    fill_normal(r, a.before, n, 1.0f);
    memcpy(a.g, a.before, sizeof(float) * n);
    return a;
}
static const float *grad_of(acc_buf *a) {
    for (size_t i = 0; i < a->n; i++) a->diff[i] = a->g[i] - a->before[i];
    return a->diff;
}
static void acc_free(acc_buf *a) {
    free(a->g);
    free(a->before);
    free(a->diff);
}

static const fd_cfg LINEAR = {0.25f, 2e-3, 300, 0};
static const fd_cfg SMOOTH = {2e-3f, 2e-2, 300, 0};

/* ---- convolution ---- */

typedef struct conv_s {
    sg_conv2d_cfg c;
    int n, h, w, bias;
    float *x, *wt, *b, *work;
} conv_s;

static void conv_fwd(void *p, float *y) {
    conv_s *s = p;
    sg_conv2d_forward(&s->c, s->n, s->h, s->w, s->x, s->wt, s->bias ? s->b : NULL, y, s->work);
}

static void conv_case(int cin, int cout, int k, int stride, int pad, int h, int w, int n, int bias) {
    sg_rng g;
    sg_rng_seed(&g, (uint64_t)(cin * 1000 + cout * 100 + k * 10 + stride + h * 7 + n * 13));
    conv_s s = {{cin, cout, k, stride, pad}, n, h, w, bias, NULL, NULL, NULL, NULL};
    int oh = sg_conv2d_out_size(h, k, stride, pad), ow = sg_conv2d_out_size(w, k, stride, pad);
    size_t nx = (size_t)n * cin * h * w, nw = (size_t)cout * cin * k * k, ny = (size_t)n * cout * oh * ow;
    s.x = sg_xalloc_floats(nx);
    s.wt = sg_xalloc_floats(nw);
    s.b = sg_xalloc_floats(cout);
    s.work = sg_xalloc_floats(sg_conv2d_work_floats(&s.c, n, h, w));
    fill_normal(&g, s.x, nx, 1);
    fill_normal(&g, s.wt, nw, 0.5f);
    fill_normal(&g, s.b, cout, 0.5f);
    float *y = sg_xalloc_floats(ny), *r = sg_xalloc_floats(ny);
    fill_normal(&g, r, ny, 1);
    acc_buf dx = acc_new(nx, &g), dw = acc_new(nw, &g), db = acc_new(cout, &g);
    conv_fwd(&s, y);
    sg_conv2d_backward(&s.c, n, h, w, s.x, s.wt, r, dx.g, dw.g, bias ? db.g : NULL, s.work);
    char what[128];
    snprintf(what, sizeof what, "conv %d→%d k%d s%d p%d %dx%d n%d dx", cin, cout, k, stride, pad, h, w, n);
    check_grad(what, conv_fwd, &s, y, r, ny, s.x, nx, grad_of(&dx), LINEAR);
    what[strlen(what) - 1] = 'w';
    check_grad(what, conv_fwd, &s, y, r, ny, s.wt, nw, grad_of(&dw), LINEAR);
    if (bias) {
        what[strlen(what) - 1] = 'b';
        check_grad(what, conv_fwd, &s, y, r, ny, s.b, (size_t)cout, grad_of(&db), LINEAR);
    }
    /* Gradient outputs may be NULL independently. */
    acc_buf dx2 = acc_new(nx, &g);
    sg_conv2d_backward(&s.c, n, h, w, s.x, s.wt, r, dx2.g, NULL, NULL, s.work);
    const float *a1 = grad_of(&dx), *a2 = grad_of(&dx2);
    for (size_t i = 0; i < nx; i++) cr_assert(fabsf(a1[i] - a2[i]) <= 1e-4f * (1 + fabsf(a1[i])), "dx alone differs");
    acc_free(&dx);
    acc_free(&dx2);
    acc_free(&dw);
    acc_free(&db);
    free(s.x);
    free(s.wt);
    free(s.b);
    free(s.work);
    free(y);
    free(r);
}

Test(grad, conv3x3_pad1_single_image) { conv_case(3, 4, 3, 1, 1, 7, 7, 1, 1); }
/* P = 49 → groups of 42 images: n = 3 takes the multi-image GEMM path. */
Test(grad, conv3x3_pad1_grouped) { conv_case(3, 4, 3, 1, 1, 7, 7, 3, 1); }
Test(grad, conv3x3_nopad_grouped) { conv_case(4, 3, 3, 1, 0, 6, 6, 4, 0); }
Test(grad, conv1x1_pointwise_single) { conv_case(5, 3, 1, 1, 0, 5, 5, 1, 1); }
Test(grad, conv1x1_pointwise_grouped) { conv_case(2, 5, 1, 1, 0, 5, 5, 3, 1); }
Test(grad, conv1x1_stride2) { conv_case(3, 2, 1, 2, 0, 9, 9, 2, 0); }
Test(grad, conv3x3_stride2_grouped) { conv_case(3, 4, 3, 2, 1, 9, 9, 3, 0); }
Test(grad, conv5x5_stride2_nonsquare) { conv_case(2, 3, 5, 2, 2, 8, 6, 1, 1); }
/* P = 1024 → groups of 2: n = 3 gives one group of 2 and a trailing single. */
Test(grad, conv3x3_partial_group) { conv_case(2, 3, 3, 1, 1, 32, 32, 3, 1); }
/* P = 2116 ≥ 2048 → one image per GEMM even with n = 2. */
Test(grad, conv3x3_large_plane) { conv_case(2, 2, 3, 1, 1, 46, 46, 2, 1); }

/* ---- batch norm ---- */

typedef struct bn_s {
    int n, c, hw, train;
    float *x, *gamma, *beta, *mean, *invstd, *rm, *rv;
    float eps;
} bn_s;

static void bn_fwd(void *p, float *y) {
    bn_s *s = p;
    if (s->train)
        sg_batchnorm_forward_train(s->n, s->c, s->hw, s->x, s->gamma, s->beta, y, s->mean, s->invstd, NULL, NULL,
                                   0.1f, s->eps);
    else
        sg_batchnorm_forward_eval(s->n, s->c, s->hw, s->x, s->gamma, s->beta, s->rm, s->rv, s->eps, y);
}

static void bn_case(int train) {
    sg_rng g;
    sg_rng_seed(&g, 5 + (uint64_t)train);
    bn_s s = {3, 4, 10, train, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 1e-5f};
    size_t nx = (size_t)s.n * s.c * s.hw;
    s.x = sg_xalloc_floats(nx);
    s.gamma = sg_xalloc_floats(s.c);
    s.beta = sg_xalloc_floats(s.c);
    s.mean = sg_xalloc_floats(s.c);
    s.invstd = sg_xalloc_floats(s.c);
    s.rm = sg_xalloc_floats(s.c);
    s.rv = sg_xalloc_floats(s.c);
    for (size_t i = 0; i < nx; i++) s.x[i] = 0.5f + 1.5f * sg_rng_normal(&g);
    for (int ch = 0; ch < s.c; ch++) {
        s.gamma[ch] = 0.5f + sg_rng_uniform(&g);
        s.beta[ch] = sg_rng_normal(&g);
        s.rm[ch] = 0.3f * sg_rng_normal(&g);
        s.rv[ch] = 0.5f + sg_rng_uniform(&g);
    }
    float *y = sg_xalloc_floats(nx), *r = sg_xalloc_floats(nx);
    fill_normal(&g, r, nx, 1);
    acc_buf dx = acc_new(nx, &g), dg = acc_new(s.c, &g), dbt = acc_new(s.c, &g);
    bn_fwd(&s, y);
    if (train)
        sg_batchnorm_backward_train(s.n, s.c, s.hw, s.x, s.gamma, s.mean, s.invstd, r, dx.g, dg.g, dbt.g);
    else
        sg_batchnorm_backward_eval(s.n, s.c, s.hw, s.gamma, s.rv, s.eps, s.x, s.rm, r, dx.g, dg.g, dbt.g);
    fd_cfg cx = train ? SMOOTH : LINEAR;
    check_grad(train ? "bn train dx" : "bn eval dx", bn_fwd, &s, y, r, nx, s.x, nx, grad_of(&dx), cx);
    check_grad(train ? "bn train dgamma" : "bn eval dgamma", bn_fwd, &s, y, r, nx, s.gamma, s.c, grad_of(&dg), LINEAR);
    check_grad(train ? "bn train dbeta" : "bn eval dbeta", bn_fwd, &s, y, r, nx, s.beta, s.c, grad_of(&dbt), LINEAR);
    acc_free(&dx);
    acc_free(&dg);
    acc_free(&dbt);
    free(s.x); free(s.gamma); free(s.beta); free(s.mean); free(s.invstd); free(s.rm); free(s.rv);
    free(y);
    free(r);
}

Test(grad, batchnorm_train) { bn_case(1); }
Test(grad, batchnorm_eval) { bn_case(0); }

Test(grad, batchnorm_train_statistics) {
    /* Normalized output has zero mean and unit variance per channel; running
     * stats move by `momentum` towards the batch mean and unbiased variance. */
    const int n = 2, c = 2, hw = 5;
    float x[20], y[20], gm[2] = {1, 1}, bt[2] = {0, 0}, mean[2], is[2], rm[2] = {0, 0}, rv[2] = {1, 1};
    for (int i = 0; i < 20; i++) x[i] = (float)(i * i % 7) - 1.0f + (float)i * 0.1f;
    sg_batchnorm_forward_train(n, c, hw, x, gm, bt, y, mean, is, rm, rv, 0.1f, 0.0f);
    for (int ch = 0; ch < c; ch++) {
        double s = 0, ss = 0, xs = 0, xss = 0;
        for (int i = 0; i < n; i++)
            for (int q = 0; q < hw; q++) {
                float v = y[(i * c + ch) * hw + q], u = x[(i * c + ch) * hw + q];
                s += v; ss += v * v; xs += u; xss += u * u;
            }
        cr_assert(fabs(s / 10) < 1e-5 && fabs(ss / 10 - 1) < 1e-4);
        double bm = xs / 10, bv = (xss / 10 - bm * bm) * 10 / 9;
        cr_assert(fabs(rm[ch] - 0.1 * bm) < 1e-5, "running mean %g vs %g", rm[ch], 0.1 * bm);
        cr_assert(fabs(rv[ch] - (0.9 + 0.1 * bv)) < 1e-4, "running var %g vs %g", rv[ch], 0.9 + 0.1 * bv);
    }
}

/* ---- affine, activations ---- */

typedef struct aff_s {
    int n, c, hw;
    float *x, *sc, *sh;
} aff_s;
static void aff_fwd(void *p, float *y) {
    aff_s *s = p;
    sg_affine_forward(s->n, s->c, s->hw, s->x, s->sc, s->sh, y);
}

Test(grad, affine) {
    sg_rng g;
    sg_rng_seed(&g, 11);
    aff_s s = {3, 5, 6, NULL, NULL, NULL};
    size_t nx = 90;
    s.x = sg_xalloc_floats(nx);
    s.sc = sg_xalloc_floats(5);
    s.sh = sg_xalloc_floats(5);
    fill_normal(&g, s.x, nx, 1);
    fill_normal(&g, s.sc, 5, 1);
    fill_normal(&g, s.sh, 5, 1);
    float *y = sg_xalloc_floats(nx), *r = sg_xalloc_floats(nx);
    fill_normal(&g, r, nx, 1);
    acc_buf dx = acc_new(nx, &g), ds = acc_new(5, &g), dh = acc_new(5, &g);
    sg_affine_backward(3, 5, 6, s.x, s.sc, r, dx.g, ds.g, dh.g);
    check_grad("affine dx", aff_fwd, &s, y, r, nx, s.x, nx, grad_of(&dx), LINEAR);
    check_grad("affine dscale", aff_fwd, &s, y, r, nx, s.sc, 5, grad_of(&ds), LINEAR);
    check_grad("affine dshift", aff_fwd, &s, y, r, nx, s.sh, 5, grad_of(&dh), LINEAR);
    acc_free(&dx); acc_free(&ds); acc_free(&dh);
    free(s.x); free(s.sc); free(s.sh); free(y); free(r);
}

typedef struct act_s {
    size_t n;
    float *x;
    int silu;
} act_s;
static void act_fwd(void *p, float *y) {
    act_s *s = p;
    if (s->silu) sg_silu_forward(s->n, s->x, y);
    else sg_relu_forward(s->n, s->x, y);
}

static void act_case(int silu) {
    sg_rng g;
    sg_rng_seed(&g, 13 + (uint64_t)silu);
    act_s s = {200, sg_xalloc_floats(200), silu};
    fd_cfg cfg = silu ? SMOOTH : (fd_cfg){1e-2f, 1e-3, 300, 0};
    /* ReLU: |x| ≥ 0.05 > 2·eps keeps every step on one side of the kink. */
    for (size_t i = 0; i < s.n; i++) {
        float m = 0.05f + 2 * sg_rng_uniform(&g);
        s.x[i] = (sg_rng_u64(&g) & 1) ? m : -m;
    }
    float *y = sg_xalloc_floats(s.n), *r = sg_xalloc_floats(s.n);
    fill_normal(&g, r, s.n, 1);
    acc_buf dx = acc_new(s.n, &g);
    act_fwd(&s, y);
    if (silu) sg_silu_backward(s.n, s.x, r, dx.g);
    else sg_relu_backward(s.n, y, r, dx.g);
    check_grad(silu ? "silu dx" : "relu dx", act_fwd, &s, y, r, s.n, s.x, s.n, grad_of(&dx), cfg);
    acc_free(&dx);
    free(s.x); free(y); free(r);
}
Test(grad, relu) { act_case(0); }
Test(grad, silu) { act_case(1); }

/* ---- pooling ---- */

typedef struct pool_s {
    int nc, h, w, k, stride, avg;
    float *x;
    int32_t *am;
} pool_s;
static void pool_fwd(void *p, float *y) {
    pool_s *s = p;
    if (s->avg) sg_avgpool_forward(s->nc, s->h, s->w, s->k, s->stride, s->x, y);
    else sg_maxpool_forward(s->nc, s->h, s->w, s->k, s->stride, s->x, y, s->am);
}

static void pool_case(int avg, int k, int stride, int h, int w) {
    sg_rng g;
    sg_rng_seed(&g, (uint64_t)(17 + avg * 5 + k * 3 + stride + h));
    pool_s s = {6, h, w, k, stride, avg, NULL, NULL};
    int oh = (h - k) / stride + 1, ow = (w - k) / stride + 1;
    size_t nx = (size_t)s.nc * h * w, ny = (size_t)s.nc * oh * ow;
    s.x = sg_xalloc_floats(nx);
    s.am = sg_xcalloc(ny, sizeof(int32_t));
    /* Distinct values 0.02 apart (> 2·eps): no ties and no swaps in a window. */
    int *perm = malloc(sizeof(int) * nx);
    for (size_t i = 0; i < nx; i++) perm[i] = (int)i;
    sg_rng_shuffle_int(&g, perm, nx);
    for (size_t i = 0; i < nx; i++) s.x[i] = 0.02f * (float)perm[i] - 3.0f;
    free(perm);
    float *y = sg_xalloc_floats(ny), *r = sg_xalloc_floats(ny);
    fill_normal(&g, r, ny, 1);
    acc_buf dx = acc_new(nx, &g);
    pool_fwd(&s, y);
    if (avg) sg_avgpool_backward(s.nc, h, w, k, stride, r, dx.g);
    else sg_maxpool_backward(s.nc, h, w, k, stride, s.am, r, dx.g);
    char what[64];
    snprintf(what, sizeof what, "%s k%d s%d %dx%d dx", avg ? "avgpool" : "maxpool", k, stride, h, w);
    fd_cfg cfg = avg ? LINEAR : (fd_cfg){4e-3f, 1e-3, 400, 0};
    check_grad(what, pool_fwd, &s, y, r, ny, s.x, nx, grad_of(&dx), cfg);
    acc_free(&dx);
    free(s.x); free(s.am); free(y); free(r);
}
Test(grad, maxpool_k2s2) { pool_case(0, 2, 2, 8, 6); }
Test(grad, maxpool_k2s2_odd) { pool_case(0, 2, 2, 7, 5); }
Test(grad, maxpool_k3s2) { pool_case(0, 3, 2, 9, 7); }
Test(grad, avgpool_k2s2) { pool_case(1, 2, 2, 8, 6); }
Test(grad, avgpool_k3s2) { pool_case(1, 3, 2, 9, 7); }
Test(grad, avgpool_k3s1) { pool_case(1, 3, 1, 5, 6); }

typedef struct gap_s {
    int nc, hw;
    float *x;
} gap_s;
static void gap_fwd(void *p, float *y) {
    gap_s *s = p;
    sg_gap_forward(s->nc, s->hw, s->x, y);
}
Test(grad, gap) {
    sg_rng g;
    sg_rng_seed(&g, 23);
    gap_s s = {7, 12, sg_xalloc_floats(84)};
    fill_normal(&g, s.x, 84, 1);
    float y[7], r[7];
    fill_normal(&g, r, 7, 1);
    acc_buf dx = acc_new(84, &g);
    sg_gap_backward(7, 12, r, dx.g);
    check_grad("gap dx", gap_fwd, &s, y, r, 7, s.x, 84, grad_of(&dx), LINEAR);
    acc_free(&dx);
    free(s.x);
}

/* ---- linear, loss ---- */

typedef struct lin_s {
    int n, in, out, bias;
    float *x, *wt, *b;
} lin_s;
static void lin_fwd(void *p, float *y) {
    lin_s *s = p;
    sg_linear_forward(s->n, s->in, s->out, s->x, s->wt, s->bias ? s->b : NULL, y);
}
static void linear_case(int bias) {
    sg_rng g;
    sg_rng_seed(&g, 29 + (uint64_t)bias);
    lin_s s = {4, 9, 5, bias, sg_xalloc_floats(36), sg_xalloc_floats(45), sg_xalloc_floats(5)};
    fill_normal(&g, s.x, 36, 1);
    fill_normal(&g, s.wt, 45, 1);
    fill_normal(&g, s.b, 5, 1);
    float y[20], r[20];
    fill_normal(&g, r, 20, 1);
    acc_buf dx = acc_new(36, &g), dw = acc_new(45, &g), db = acc_new(5, &g);
    sg_linear_backward(4, 9, 5, s.x, s.wt, r, dx.g, dw.g, bias ? db.g : NULL);
    check_grad("linear dx", lin_fwd, &s, y, r, 20, s.x, 36, grad_of(&dx), LINEAR);
    check_grad("linear dw", lin_fwd, &s, y, r, 20, s.wt, 45, grad_of(&dw), LINEAR);
    if (bias) check_grad("linear db", lin_fwd, &s, y, r, 20, s.b, 5, grad_of(&db), LINEAR);
    else
        for (int i = 0; i < 5; i++) cr_assert_eq(db.g[i], db.before[i], "bias gradient touched without a bias");
    acc_free(&dx); acc_free(&dw); acc_free(&db);
    free(s.x); free(s.wt); free(s.b);
}
Test(grad, linear_bias) { linear_case(1); }
Test(grad, linear_nobias) { linear_case(0); }

typedef struct xent_s {
    int n, k;
    float *logits;
    const int *labels;
    float scale;
} xent_s;
static void xent_fwd(void *p, float *y) {
    xent_s *s = p;
    y[0] = s->scale * sg_softmax_xent(s->n, s->k, s->logits, s->labels, 1.0f, NULL, NULL);
}
Test(grad, softmax_xent) {
    sg_rng g;
    sg_rng_seed(&g, 31);
    const int labels[4] = {0, 3, 2, 3};
    float logits[20], dl[20], probs[20], y[1], one[1] = {1};
    fill_normal(&g, logits, 20, 2);
    xent_s s = {4, 5, logits, labels, 2.5f};
    float loss = sg_softmax_xent(4, 5, logits, labels, 2.5f, dl, probs);
    double ref = 0;
    for (int i = 0; i < 4; i++) {
        double m = -1e30, z = 0;
        for (int j = 0; j < 5; j++) m = fmax(m, logits[i * 5 + j]);
        for (int j = 0; j < 5; j++) z += exp(logits[i * 5 + j] - m);
        ref += m + log(z) - logits[i * 5 + labels[i]];
        double ps = 0;
        for (int j = 0; j < 5; j++) ps += probs[i * 5 + j];
        cr_assert(fabs(ps - 1) < 1e-5);
    }
    cr_assert(fabs(loss - ref / 4) < 1e-5, "loss %g vs %g", loss, ref / 4);
    check_grad("softmax xent dlogits", xent_fwd, &s, y, one, 1, logits, 20, dl, (fd_cfg){1e-2f, 2e-3, 100, 0});
    float p2[20];
    sg_softmax(4, 5, logits, p2);
    for (int i = 0; i < 20; i++) cr_assert(fabsf(p2[i] - probs[i]) < 1e-6f);
}

typedef struct kd_s {
    int n, k;
    float *logits;
    const float *target;
    float t, scale;
} kd_s;
static void kd_fwd(void *p, float *y) {
    kd_s *s = p;
    y[0] = s->scale * sg_softmax_distill(s->n, s->k, s->logits, s->target, s->t, 1.0f, NULL);
}
/* T² KL(q || softmax(z / T)) against a direct evaluation; zero at the target's own
 * logits; finite differences of its logit gradient at two temperatures. */
Test(grad, softmax_distill) {
    sg_rng g;
    sg_rng_seed(&g, 37);
    float logits[20], tl[20], q[20], dl[20], y[1], one[1] = {1};
    const float temps[2] = {1.0f, 4.0f};
    for (int ti = 0; ti < 2; ti++) {
        float T = temps[ti];
        fill_normal(&g, logits, 20, 2);
        fill_normal(&g, tl, 20, 2);
        for (int i = 0; i < 20; i++) tl[i] /= T;
        sg_softmax(4, 5, tl, q);
        kd_s s = {4, 5, logits, q, T, 1.5f};
        float loss = sg_softmax_distill(4, 5, logits, q, T, 1.5f, dl);
        double ref = 0;
        for (int i = 0; i < 4; i++) {
            double m = -1e30, z = 0;
            for (int j = 0; j < 5; j++) m = fmax(m, logits[i * 5 + j] / T);
            for (int j = 0; j < 5; j++) z += exp(logits[i * 5 + j] / T - m);
            for (int j = 0; j < 5; j++) ref += q[i * 5 + j] * (log(q[i * 5 + j]) - (logits[i * 5 + j] / T - m - log(z)));
        }
        ref *= (double)T * T / 4;
        cr_assert(ref > 1e-3, "the test's target should differ from the student");
        cr_assert(fabs(loss - ref) < 1e-4 * (1 + ref), "T %g: loss %g vs %g", T, loss, ref);
        check_grad("softmax distill dlogits", kd_fwd, &s, y, one, 1, logits, 20, dl, (fd_cfg){1e-2f, 2e-3, 100, 0});
        /* the student that already equals the teachers: no loss, no gradient */
        for (int i = 0; i < 20; i++) logits[i] = tl[i] * T + 3.0f; /* a shift per row changes nothing */
        float l0 = sg_softmax_distill(4, 5, logits, q, T, 1.0f, dl);
        cr_assert(fabsf(l0) < 1e-5f, "T %g: loss %g at the target", T, l0);
        for (int i = 0; i < 20; i++) cr_assert(fabsf(dl[i]) < 1e-5f);
    }
}

/* ---- whole networks ---- */

typedef struct net_s {
    sg_arch a;
    sg_ctx *ctx;
    float *params, *state, *x;
    int n, train;
} net_s;
static void net_fwd(void *p, float *y) {
    net_s *s = p;
    const float *o = sg_net_forward(&s->a, s->ctx, s->params, s->state, s->x, s->n, s->train);
    memcpy(y, o, sizeof(float) * (size_t)s->n * sg_arch_out_features(&s->a));
}

static void net_case(net_s *s, const char *name, uint64_t seed) {
    sg_rng g;
    sg_rng_seed(&g, seed);
    sg_arch *a = &s->a;
    s->ctx = sg_ctx_create(a, s->n);
    s->params = sg_xalloc_floats(a->n_params);
    s->state = sg_xalloc_floats(a->n_state);
    sg_arch_init_params(a, s->params, &g);
    sg_arch_init_state(a, s->state);
    for (size_t i = 0; i < a->n_params; i++) s->params[i] += 0.2f * sg_rng_normal(&g);
    for (int i = 0; i < a->n_layers; i++)
        if (a->layers[i].kind == SG_LAYER_BATCHNORM)
            for (int c = 0; c < a->layers[i].cin; c++) {
                s->state[a->layers[i].state_off + c] = 0.2f * sg_rng_normal(&g);
                s->state[a->layers[i].state_off + a->layers[i].cin + c] = 0.5f + sg_rng_uniform(&g);
            }
    size_t nx = (size_t)s->n * a->in_c * a->in_h * a->in_w, ny = (size_t)s->n * sg_arch_out_features(a);
    s->x = sg_xalloc_floats(nx);
    fill_normal(&g, s->x, nx, 1);
    float *y = sg_xalloc_floats(ny), *r = sg_xalloc_floats(ny);
    fill_normal(&g, r, ny, 1);
    acc_buf dp = acc_new(a->n_params, &g), dx = acc_new(nx, &g);
    /* Train mode with state: the update of running stats must not change the
     * train-mode output, so FD can run with state too. */
    net_fwd(s, y);
    sg_net_backward(a, s->ctx, s->params, s->state, r, dp.g, dx.g);
    fd_cfg cfg = {1e-2f, 2e-2, 400, 1};
    char what[96];
    snprintf(what, sizeof what, "%s dparams", name);
    check_grad(what, net_fwd, s, y, r, ny, s->params, a->n_params, grad_of(&dp), cfg);
    snprintf(what, sizeof what, "%s dx", name);
    check_grad(what, net_fwd, s, y, r, ny, s->x, nx, grad_of(&dx), cfg);
    acc_free(&dp);
    acc_free(&dx);
    sg_ctx_free(s->ctx);
    free(s->params); free(s->state); free(s->x); free(y); free(r);
}

/* Conv4-like: 2 × [conv3×3, batch norm, ReLU/SiLU, maxpool 2], GAP, linear. */
Test(grad, net_conv4_batchnorm_train) {
    net_s s = {0};
    s.n = 3;
    s.train = 1;
    sg_arch_init(&s.a, 3, 8, 8);
    sg_arch_add_conv(&s.a, 4, 3, 1, 1, 1);
    sg_arch_add_batchnorm(&s.a);
    sg_arch_add_relu(&s.a);
    sg_arch_add_maxpool(&s.a, 2, 2);
    sg_arch_add_conv(&s.a, 4, 3, 1, 1, 0);
    sg_arch_add_batchnorm(&s.a);
    sg_arch_add_silu(&s.a);
    sg_arch_add_maxpool(&s.a, 2, 2);
    sg_arch_add_gap(&s.a);
    sg_arch_add_linear(&s.a, 3, 1);
    net_case(&s, "conv4 bn train", 41);
}

Test(grad, net_conv4_batchnorm_eval) {
    net_s s = {0};
    s.n = 2;
    s.train = 0;
    sg_arch_conv4(&s.a, 3, 8, 4, 2, SG_LAYER_BATCHNORM, 3);
    net_case(&s, "conv4 bn eval", 43);
}

Test(grad, net_conv4_affine) {
    net_s s = {0};
    s.n = 3;
    s.train = 1;
    sg_arch_conv4(&s.a, 3, 8, 4, 2, SG_LAYER_AFFINE, 4);
    net_case(&s, "conv4 affine", 47);
}

Test(grad, net_strided_avgpool) {
    net_s s = {0};
    s.n = 2;
    s.train = 1;
    sg_arch_init(&s.a, 2, 11, 9);
    sg_arch_add_conv(&s.a, 4, 3, 2, 1, 1);
    sg_arch_add_affine(&s.a);
    sg_arch_add_silu(&s.a);
    sg_arch_add_conv(&s.a, 3, 1, 1, 0, 1);
    sg_arch_add_avgpool(&s.a, 3, 2);
    sg_arch_add_linear(&s.a, 2, 0);
    net_case(&s, "strided avgpool net", 53);
}

/* Backward from an inner layer equals the full backward's inner gradient path. */
Test(grad, net_backward_from_inner_layer) {
    sg_arch a;
    sg_arch_conv4(&a, 3, 8, 4, 1, SG_LAYER_AFFINE, 2);
    sg_rng g;
    sg_rng_seed(&g, 3);
    float *p = sg_xalloc_floats(a.n_params), *x = sg_xalloc_floats(2 * 3 * 64);
    sg_arch_init_params(&a, p, &g);
    fill_normal(&g, x, 2 * 3 * 64, 1);
    sg_ctx *ctx = sg_ctx_create(&a, 2);
    sg_net_forward(&a, ctx, p, NULL, x, 2, 1);
    /* GAP is layer 4: dL/d(gap out) for L = Σ r·logits is r·W. */
    float r[4] = {1, -2, 0.5f, 3}, dgap[8] = {0};
    const float *wt = p + a.layers[5].param_off;
    for (int i = 0; i < 2; i++)
        for (int f = 0; f < 4; f++) dgap[i * 4 + f] = r[i * 2] * wt[f] + r[i * 2 + 1] * wt[4 + f];
    float *g1 = sg_xalloc_floats(a.n_params), *g2 = sg_xalloc_floats(a.n_params);
    sg_net_backward(&a, ctx, p, NULL, r, g1, NULL);
    sg_net_backward_from(&a, ctx, p, NULL, 4, dgap, g2, NULL);
    for (size_t i = 0; i < a.layers[5].param_off; i++)
        cr_assert(fabsf(g1[i] - g2[i]) <= 1e-5f * (1 + fabsf(g1[i])), "param %zu: %g vs %g", i, g1[i], g2[i]);
    sg_ctx_free(ctx);
    free(p); free(x); free(g1); free(g2);
}
