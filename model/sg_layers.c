/* sg_layers.c — the layer ops: forward and backward side by side, same
 * argument order. Every backward accumulates (+=) into its gradient outputs.
 *
 * Convolution forward has two implementations:
 *  - direct (AVX2+FMA builds, stride 1, kernel > 1, OpenBLAS on one thread):
 *    the input is copied into a zero-padded plane per channel, and a register
 *    tile of 6 output channels × 16 pixels (1×16, 2×8, or 4×4 when pooling
 *    narrow maps) accumulates w[o][c,ki,kj] ·
 *    x_pad[pixel + offset(c, ki, kj)] over all taps, reading the padded
 *    input directly: no im2col matrix, no GEMM packing, and the norm, ReLU
 *    and 2×2 max pool are applied to the tile while it is in registers. This
 *    wins most where im2col + SGEMM is weakest: few input channels (K = 27
 *    for RGB), small maps (short GEMMs), and the epilogue pass.
 *  - im2col + cblas_sgemm otherwise; for small feature maps several images
 *    share one GEMM so that its N dimension stays large. With several BLAS
 *    threads this path is used because the direct kernel is single-threaded
 *    and OpenBLAS parallelizes the GEMM.
 * Backward is always im2col + SGEMM. */
#include "sg_model_impl.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define SG_CONV_DIRECT 1
#else
#define SG_CONV_DIRECT 0
#endif

int sg_conv2d_out_size(int in, int k, int stride, int pad) { return (in + 2 * pad - k) / stride + 1; }

/* Images per GEMM: enough that the GEMM has ~2048 columns. */
static int conv_group(int n, int p) {
    int g = (2048 + p - 1) / p;
    if (g < 1) g = 1;
    if (g > n) g = n;
    return g;
}

static int conv_is_pointwise(const sg_conv2d_cfg *c) { return c->k == 1 && c->stride == 1 && c->pad == 0; }

static size_t direct_work_floats(const sg_conv2d_cfg *c, int h, int w);

/* What the register-tiled paths need: the direct kernel or, for pooled 3×3
 * units, Winograd (sg_conv_winograd.c), whichever the call takes. */
static size_t fast_work_floats(const sg_conv2d_cfg *c, int n, int h, int w) {
    size_t direct = direct_work_floats(c, h, w), wino = sg_conv2d_winograd_work_floats(c, n, h, w);
    return wino > direct ? wino : direct;
}

size_t sg_conv2d_work_floats(const sg_conv2d_cfg *c, int n, int h, int w) {
    int oh = sg_conv2d_out_size(h, c->k, c->stride, c->pad), ow = sg_conv2d_out_size(w, c->k, c->stride, c->pad);
    size_t p = (size_t)oh * ow;
    int g = conv_group(n > 0 ? n : 1, (int)p);
    size_t kk = (size_t)c->cin * c->k * c->k;
    /* forward: col + out (+ one padded input image); backward: col + dcol + dy gathered */
    size_t padded = (size_t)c->cin * (h + 2 * c->pad) * (w + 2 * c->pad);
    size_t gemm = 2 * kk * g * p + (size_t)c->cout * g * p + (padded > kk * g * p ? padded : 0) + 16;
    size_t fast = fast_work_floats(c, n, h, w);
    return gemm > fast ? gemm : fast;
}

/* col (cin*k*k, ld) at column offset: rows are (c, ki, kj), columns output
 * pixels. Rows are short (ow floats) for the deep layers, so the stride-1
 * path hoists the padding bounds out of the row loop and copies with a plain
 * loop the compiler vectorizes, instead of one memcpy call per row. */
static void im2col(const float *restrict x, int cin, int h, int w, int k, int s, int pad, int oh, int ow,
                   float *restrict col, size_t ld) {
    for (int c = 0; c < cin; c++)
        for (int ki = 0; ki < k; ki++)
            for (int kj = 0; kj < k; kj++) {
                float *restrict row = col + ((size_t)(c * k + ki) * k + kj) * ld;
                const float *restrict xc = x + (size_t)c * h * w;
                if (s == 1 && pad == 0) {
                    for (int i = 0; i < oh; i++) {
                        float *restrict r = row + (size_t)i * ow;
                        const float *restrict xr = xc + (size_t)(i + ki) * w + kj;
                        for (int j = 0; j < ow; j++) r[j] = xr[j];
                    }
                    continue;
                }
                if (s == 1) {
                    /* output column j reads input column j - pad + kj */
                    int j0 = pad - kj > 0 ? pad - kj : 0;
                    int j1 = w + pad - kj < ow ? w + pad - kj : ow;
                    if (j1 < j0) j1 = j0;
                    int i0 = pad - ki > 0 ? pad - ki : 0;
                    int i1 = h + pad - ki < oh ? h + pad - ki : oh;
                    if (i1 < i0) i1 = i0;
                    for (int i = 0; i < i0; i++) memset(row + (size_t)i * ow, 0, sizeof(float) * (size_t)ow);
                    for (int i = i0; i < i1; i++) {
                        float *restrict r = row + (size_t)i * ow;
                        const float *restrict xr = xc + (size_t)(i - pad + ki) * w - pad + kj;
                        for (int j = 0; j < j0; j++) r[j] = 0.0f;
                        for (int j = j0; j < j1; j++) r[j] = xr[j];
                        for (int j = j1; j < ow; j++) r[j] = 0.0f;
                    }
                    for (int i = i1; i < oh; i++) memset(row + (size_t)i * ow, 0, sizeof(float) * (size_t)ow);
                    continue;
                }
                for (int i = 0; i < oh; i++) {
                    int ih = i * s - pad + ki;
                    float *restrict r = row + (size_t)i * ow;
                    if (ih < 0 || ih >= h) {
                        memset(r, 0, sizeof(float) * (size_t)ow);
                        continue;
                    }
                    const float *restrict xr = xc + (size_t)ih * w;
                    for (int j = 0; j < ow; j++) {
                        int iw = j * s - pad + kj;
                        r[j] = (iw >= 0 && iw < w) ? xr[iw] : 0.0f;
                    }
                }
            }
}

static void col2im(const float *restrict col, size_t ld, int cin, int h, int w, int k, int s, int pad, int oh,
                   int ow, float *restrict dx) {
    for (int c = 0; c < cin; c++)
        for (int ki = 0; ki < k; ki++)
            for (int kj = 0; kj < k; kj++) {
                const float *restrict row = col + ((size_t)(c * k + ki) * k + kj) * ld;
                float *restrict xc = dx + (size_t)c * h * w;
                for (int i = 0; i < oh; i++) {
                    int ih = i * s - pad + ki;
                    if (ih < 0 || ih >= h) continue;
                    const float *restrict r = row + (size_t)i * ow;
                    float *restrict xr = xc + (size_t)ih * w;
                    for (int j = 0; j < ow; j++) {
                        int iw = j * s - pad + kj;
                        if (iw >= 0 && iw < w) xr[iw] += r[j];
                    }
                }
            }
}

void sg_conv2d_forward_im2col(const sg_conv2d_cfg *c, int n, int h, int w, const float *restrict x,
                              const float *restrict wt, const float *restrict b, float *restrict y,
                              float *restrict work) {
    int oh = sg_conv2d_out_size(h, c->k, c->stride, c->pad), ow = sg_conv2d_out_size(w, c->k, c->stride, c->pad);
    SG_ASSERT(oh > 0 && ow > 0);
    int p = oh * ow;
    int kk = c->cin * c->k * c->k;
    size_t in_sz = (size_t)c->cin * h * w, out_sz = (size_t)c->cout * p;
    int g = conv_group(n, p);
    for (int i0 = 0; i0 < n; i0 += g) {
        int gn = n - i0 < g ? n - i0 : g;
        size_t ld = (size_t)gn * p;
        if (gn == 1) {
            const float *col = x + i0 * in_sz;
            if (!conv_is_pointwise(c)) {
                im2col(x + i0 * in_sz, c->cin, h, w, c->k, c->stride, c->pad, oh, ow, work, ld);
                col = work;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->cout, p, kk, 1.0f, wt, kk, col, (int)ld, 0.0f,
                        y + i0 * out_sz, p);
        } else {
            float *col = work, *out = work + (size_t)kk * ld;
            for (int j = 0; j < gn; j++)
                im2col(x + (i0 + j) * in_sz, c->cin, h, w, c->k, c->stride, c->pad, oh, ow, col + (size_t)j * p, ld);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->cout, (int)ld, kk, 1.0f, wt, kk, col, (int)ld,
                        0.0f, out, (int)ld);
            for (int j = 0; j < gn; j++)
                for (int o = 0; o < c->cout; o++)
                    memcpy(y + (i0 + j) * out_sz + (size_t)o * p, out + (size_t)o * ld + (size_t)j * p,
                           sizeof(float) * (size_t)p);
        }
        if (b)
            for (int j = 0; j < gn; j++)
                for (int o = 0; o < c->cout; o++) {
                    float *restrict yo = y + (i0 + j) * out_sz + (size_t)o * p;
                    for (int q = 0; q < p; q++) yo[q] += b[o];
                }
    }
}

/* Epilogue of the fused eval conv for one output plane src (oh rows of ow,
 * row stride ls): affine, ReLU, and optionally the 2×2/2 max pool. The
 * affine is applied before the max because a negative scale reverses the
 * order. Without ReLU and pool it is a plain y = x·sc + sh (NaNs pass). */
static void conv_epilogue(const float *restrict src, size_t ls, int oh, int ow, float sc, float sh, int relu,
                          int pool2, float *restrict dst) {
    if (!pool2) {
        for (int i = 0; i < oh; i++) {
            const float *restrict r = src + (size_t)i * ls;
            float *restrict d = dst + (size_t)i * ow;
            if (relu)
                for (int j = 0; j < ow; j++) {
                    float v = r[j] * sc + sh;
                    d[j] = v > 0.0f ? v : 0.0f;
                }
            else
                for (int j = 0; j < ow; j++) d[j] = r[j] * sc + sh;
        }
        return;
    }
    const float lo = relu ? 0.0f : -INFINITY;
    int ph = (oh - 2) / 2 + 1, pw = (ow - 2) / 2 + 1;
    for (int i = 0; i < ph; i++) {
        const float *restrict r0 = src + (size_t)(2 * i) * ls, *restrict r1 = r0 + ls;
        float *restrict d = dst + (size_t)i * pw;
        int j = 0;
#if SG_CONV_DIRECT
        /* 8 pooled outputs from 16 columns of two rows: the compiler does
         * not vectorize the stride-2 column pairs. */
        const __m256 vs = _mm256_set1_ps(sc), vh = _mm256_set1_ps(sh), vlo = _mm256_set1_ps(lo);
        for (; j + 8 <= pw; j += 8) {
            __m256 m0 = _mm256_max_ps(_mm256_fmadd_ps(_mm256_loadu_ps(r0 + 2 * j), vs, vh),
                                      _mm256_fmadd_ps(_mm256_loadu_ps(r1 + 2 * j), vs, vh));
            __m256 m1 = _mm256_max_ps(_mm256_fmadd_ps(_mm256_loadu_ps(r0 + 2 * j + 8), vs, vh),
                                      _mm256_fmadd_ps(_mm256_loadu_ps(r1 + 2 * j + 8), vs, vh));
            /* even/odd columns within each 128-bit lane, then the 64-bit pairs back in order */
            __m256 m = _mm256_max_ps(_mm256_shuffle_ps(m0, m1, _MM_SHUFFLE(2, 0, 2, 0)),
                                     _mm256_shuffle_ps(m0, m1, _MM_SHUFFLE(3, 1, 3, 1)));
            m = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(m), _MM_SHUFFLE(3, 1, 2, 0)));
            _mm256_storeu_ps(d + j, _mm256_max_ps(m, vlo));
        }
#endif
        for (; j < pw; j++) {
            float a = r0[2 * j] * sc + sh, b = r0[2 * j + 1] * sc + sh;
            float c = r1[2 * j] * sc + sh, e = r1[2 * j + 1] * sc + sh;
            float m0 = a > b ? a : b, m1 = c > e ? c : e, m = m0 > m1 ? m0 : m1;
            d[j] = m > lo ? m : lo;
        }
    }
}

void sg_conv2d_forward_fused_im2col(const sg_conv2d_cfg *c, int n, int h, int w, const float *restrict x,
                                    const float *restrict wt, const float *restrict scale,
                                    const float *restrict shift, int relu, int pool2, float *restrict y,
                                    float *restrict work) {
    int oh = sg_conv2d_out_size(h, c->k, c->stride, c->pad), ow = sg_conv2d_out_size(w, c->k, c->stride, c->pad);
    SG_ASSERT(oh > 0 && ow > 0 && (!pool2 || (oh >= 2 && ow >= 2)));
    int p = oh * ow;
    int kk = c->cin * c->k * c->k;
    size_t in_sz = (size_t)c->cin * h * w;
    size_t op = pool2 ? (size_t)((oh - 2) / 2 + 1) * ((ow - 2) / 2 + 1) : (size_t)p, out_sz = (size_t)c->cout * op;
    int g = conv_group(n, p);
    for (int i0 = 0; i0 < n; i0 += g) {
        int gn = n - i0 < g ? n - i0 : g;
        size_t ld = (size_t)gn * p;
        float *col = work, *out = work + (size_t)kk * ld;
        const float *colp = col;
        if (gn == 1 && conv_is_pointwise(c)) colp = x + i0 * in_sz;
        else if (c->stride == 1 && c->pad > 0) {
            /* Pad once, then im2col without bounds checks: the rows are
             * short in the deep layers and the checks dominated. */
            int hp = h + 2 * c->pad, wp = w + 2 * c->pad;
            float *xp = out + (size_t)c->cout * ld;
            for (int j = 0; j < gn; j++) {
                memset(xp, 0, sizeof(float) * (size_t)c->cin * hp * wp);
                for (int ch = 0; ch < c->cin; ch++)
                    for (int i = 0; i < h; i++)
                        memcpy(xp + ((size_t)ch * hp + i + c->pad) * wp + c->pad, x + (i0 + j) * in_sz + ((size_t)ch * h + i) * w,
                               sizeof(float) * (size_t)w);
                im2col(xp, c->cin, hp, wp, c->k, 1, 0, oh, ow, col + (size_t)j * p, ld);
            }
        } else
            for (int j = 0; j < gn; j++)
                im2col(x + (i0 + j) * in_sz, c->cin, h, w, c->k, c->stride, c->pad, oh, ow, col + (size_t)j * p, ld);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->cout, (int)ld, kk, 1.0f, wt, kk, colp, (int)ld,
                    0.0f, out, (int)ld);
        for (int j = 0; j < gn; j++)
            for (int o = 0; o < c->cout; o++)
                conv_epilogue(out + (size_t)o * ld + (size_t)j * p, (size_t)ow, oh, ow, scale ? scale[o] : 1.0f,
                              shift ? shift[o] : 0.0f, relu, pool2, y + (i0 + j) * out_sz + (size_t)o * op);
    }
}

/* ---- direct convolution (stride 1) ---- */

#define DIRECT_CB 6 /* output channels per register tile: 6 × 2 vectors = 12 accumulators */

typedef struct direct_geom {
    int hp, wp, oh, ow;   /* zero-padded input and output sizes */
    int kk, cbn;          /* taps (cin·k·k), channel blocks */
    size_t ps;            /* floats per padded plane */
    size_t xp_f, wpk_f;   /* work segments (floats) */
} direct_geom;

static direct_geom direct_geometry(const sg_conv2d_cfg *c, int h, int w) {
    direct_geom g;
    g.hp = h + 2 * c->pad;
    g.wp = w + 2 * c->pad;
    g.oh = g.hp - c->k + 1;
    g.ow = g.wp - c->k + 1;
    g.kk = c->cin * c->k * c->k;
    g.cbn = (c->cout + DIRECT_CB - 1) / DIRECT_CB;
    g.ps = (size_t)g.hp * g.wp;
    /* A tile's pixels may run past its row end (into the next row:
     * computed, never stored), and its taps past the last plane by less
     * than wp + 16 floats (a two-row tile on the last, odd row), or by at
     * most 2·wp + 2 (a 4×4 tile whose lower two rows are past the pooled
     * height, 2 columns past the row end). */
    g.xp_f = sg_round16((size_t)c->cin * g.ps + 2 * (size_t)g.wp + 16);
    g.wpk_f = sg_round16((size_t)g.cbn * DIRECT_CB * g.kk);
    return g;
}

static size_t direct_work_floats(const sg_conv2d_cfg *c, int h, int w) {
    if (c->stride != 1 || c->k < 2) return 0;
    direct_geom g = direct_geometry(c, h, w);
    /* + scale and shift per (padded) channel, + offsets (int32) */
    /* + statistics-mode lane sums (16 per padded channel) */
    return g.xp_f + g.wpk_f + sg_round16(2 * (size_t)g.cbn * DIRECT_CB) + sg_round16((size_t)g.kk) +
           (size_t)g.cbn * DIRECT_CB * 16;
}

static int conv_use_direct(const sg_conv2d_cfg *c) {
#if SG_CONV_DIRECT
    return c->stride == 1 && c->k >= 2 && openblas_get_num_threads() == 1;
#else
    (void)c;
    return 0;
#endif
}

#if SG_CONV_DIRECT
/* The first n (≤ 8) floats of v to d. */
static inline void store_first(float *d, __m256 v, int n) {
    if (n >= 8) {
        _mm256_storeu_ps(d, v);
        return;
    }
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_maskstore_ps(d, _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane), v);
}

/* One register tile: cb (≤ DIRECT_CB) output channels × two vectors of 8
 * pixels, vector 1 starting d1 floats after vector 0 in the padded input
 * (8: 16 pixels of one row; wp: the same 8 columns of the next row). Then
 * the epilogue from registers: v·scale + shift, ReLU, and with pool the 2×2
 * max of the two rows' column pairs (4 outputs per channel).
 * pool 2 is the 4×4 tile, for pooled widths that would leave 8-column tiles
 * half empty: d1 = wp, and each vector holds 4 columns of two rows in its
 * 128-bit halves (vector 0 rows 0|1, vector 1 rows 2|3): 2×2 pooled
 * outputs per channel.
 * Stores per channel c at y + c·ys: without pool n0 floats of vector 0 at
 * +0 and n1 of vector 1 at +y1; with pool n0 (≤ 4) pooled floats; with pool
 * 2 n0 (≤ 2) pooled floats at +0 and, if n1 = 2, n0 more at +y1 (the next
 * pooled row).
 * The accumulators are named variables: an array of vectors stays in memory
 * with GCC 12. cb and pool are constants after inlining. */
#define DIRECT_FMA(r)                                                                                                \
    if (cb > (r)) {                                                                                                  \
        b = _mm256_broadcast_ss(w + (r));                                                                            \
        a##r##0 = _mm256_fmadd_ps(x0, b, a##r##0);                                                                   \
        a##r##1 = _mm256_fmadd_ps(x1, b, a##r##1);                                                                   \
    }
#define DIRECT_OUT(r)                                                                                                \
    if (cb > (r)) direct_out(pool, relu, a##r##0, a##r##1, sc[r], sh[r], y + (r) * ys, y1, n0, n1, acc + 16 * (r), ymo);

/* The 2×2 max (or min: op 1) of a pooled tile's two vectors, its pooled
 * outputs first in each 128-bit half (pool 2) or in the low half (pool 1). */
static inline __attribute__((always_inline)) __m256 direct_pool(int pool, int op, __m256 v0, __m256 v1) {
#define DIRECT_RED(a, b) (op ? _mm256_min_ps((a), (b)) : _mm256_max_ps((a), (b)))
    if (pool == 2) {
        /* halves rows 0|1 and 2|3 regrouped as 0|2 and 1|3: one max pools the rows */
        __m256 m = DIRECT_RED(_mm256_permute2f128_ps(v0, v1, 0x20), _mm256_permute2f128_ps(v0, v1, 0x31));
        m = DIRECT_RED(m, _mm256_permute_ps(m, _MM_SHUFFLE(2, 3, 0, 1)));
        return _mm256_permute_ps(m, _MM_SHUFFLE(2, 0, 2, 0)); /* each half: its 2 pooled outputs first */
    }
    __m256 m = DIRECT_RED(v0, v1);
    m = DIRECT_RED(m, _mm256_permute_ps(m, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm256_permutevar8x32_ps(m, _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6));
#undef DIRECT_RED
}

/* Stores a pooled tile's outputs m (direct_pool) as the pool 1 / pool 2
 * contract above says. */
static inline __attribute__((always_inline)) void direct_store_pooled(int pool, __m256 m, float *restrict y,
                                                                      size_t y1, int n0, int n1) {
    if (pool == 2) {
        __m128 p0 = _mm256_castps256_ps128(m), p1 = _mm256_extractf128_ps(m, 1);
        if (n0 >= 2) {
            _mm_storel_pi((__m64 *)y, p0);
            if (n1 >= 2) _mm_storel_pi((__m64 *)(y + y1), p1);
        } else {
            _mm_store_ss(y, p0);
            if (n1 >= 2) _mm_store_ss(y + y1, p1);
        }
        return;
    }
    /* masked stores are slow on Zen: the common full case is a plain one */
    if (n0 >= 4) _mm_storeu_ps(y, _mm256_castps256_ps128(m));
    else store_first(y, m, n0);
}

/* relu 2 (pooled tiles only): the statistics mode. No affine, no ReLU: the
 * 2×2 max of the raw output at y, its 2×2 min at y + ymo, and every raw
 * output pixel the tile covers added to acc[0..8) (sum, lane-wise) and
 * acc[8..16) (sum of squares). */
static inline __attribute__((always_inline)) void direct_out(int pool, int relu, __m256 v0, __m256 v1, float sc,
                                                             float sh, float *restrict y, size_t y1, int n0,
                                                             int n1, float *restrict acc, ptrdiff_t ymo) {
    const __m256 zero = _mm256_setzero_ps();
    if (relu == 2 && pool) {
        /* covered pixels: 2·n0 columns (of 8, or of 4 per half), both rows (pool 2: v1 when n1 = 2) */
        const __m256i lane = pool == 2 ? _mm256_setr_epi32(0, 1, 2, 3, 0, 1, 2, 3) : _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        __m256 in = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(2 * n0), lane));
        __m256 u0 = _mm256_and_ps(v0, in), u1 = _mm256_and_ps(v1, in);
        if (pool == 2 && n1 < 2) u1 = zero;
        __m256 s = _mm256_add_ps(_mm256_loadu_ps(acc), _mm256_add_ps(u0, u1));
        __m256 q = _mm256_fmadd_ps(u0, u0, _mm256_loadu_ps(acc + 8));
        _mm256_storeu_ps(acc, s);
        _mm256_storeu_ps(acc + 8, _mm256_fmadd_ps(u1, u1, q));
        direct_store_pooled(pool, direct_pool(pool, 0, v0, v1), y, y1, n0, n1);
        direct_store_pooled(pool, direct_pool(pool, 1, v0, v1), y + ymo, y1, n0, n1);
        return;
    }
    (void)acc, (void)ymo;
    const __m256 s = _mm256_set1_ps(sc), h = _mm256_set1_ps(sh);
    v0 = _mm256_fmadd_ps(v0, s, h);
    v1 = _mm256_fmadd_ps(v1, s, h);
    if (!pool) {
        if (relu) {
            v0 = _mm256_max_ps(v0, zero);
            v1 = _mm256_max_ps(v1, zero);
        }
        store_first(y, v0, n0);
        if (n1 > 0) store_first(y + y1, v1, n1);
        return;
    }
    /* The affine comes before the max: a negative scale reverses the order. */
    __m256 m = direct_pool(pool, 0, v0, v1);
    if (relu) m = _mm256_max_ps(m, zero);
    direct_store_pooled(pool, m, y, y1, n0, n1);
}

static inline __attribute__((always_inline)) void direct_tile(int cb, int pool, int relu, int kk,
                                                              const float *restrict x, size_t d1,
                                                              const int *restrict offs, const float *restrict w,
                                                              const float *restrict sc, const float *restrict sh,
                                                              float *restrict y, size_t ys, size_t y1, int n0,
                                                              int n1, float *restrict acc, ptrdiff_t ymo) {
    const __m256 z = _mm256_setzero_ps();
    __m256 a00 = z, a01 = z, a10 = z, a11 = z, a20 = z, a21 = z, a30 = z, a31 = z, a40 = z, a41 = z, a50 = z,
           a51 = z;
    for (int t = 0; t < kk; t++, w += DIRECT_CB) {
        const float *xs = x + offs[t];
        __m256 x0, x1, b;
        if (pool == 2) {
            x0 = _mm256_loadu2_m128(xs + d1, xs);
            x1 = _mm256_loadu2_m128(xs + 3 * d1, xs + 2 * d1);
        } else {
            x0 = _mm256_loadu_ps(xs);
            x1 = _mm256_loadu_ps(xs + d1);
        }
        DIRECT_FMA(0)
        DIRECT_FMA(1)
        DIRECT_FMA(2)
        DIRECT_FMA(3)
        DIRECT_FMA(4)
        DIRECT_FMA(5)
    }
    DIRECT_OUT(0)
    DIRECT_OUT(1)
    DIRECT_OUT(2)
    DIRECT_OUT(3)
    DIRECT_OUT(4)
    DIRECT_OUT(5)
}

typedef void (*direct_tile_fn)(int kk, const float *x, size_t d1, const int *offs, const float *w, const float *sc,
                               const float *sh, float *y, size_t ys, size_t y1, int n0, int n1, float *acc,
                               ptrdiff_t ymo);
#define DIRECT_VARIANT(cb, pool, relu)                                                                               \
    static void direct_tile_##cb##_##pool##_##relu(int kk, const float *x, size_t d1, const int *offs,             \
                                                   const float *w, const float *sc, const float *sh, float *y,       \
                                                   size_t ys, size_t y1, int n0, int n1, float *acc, ptrdiff_t ymo) {   \
        direct_tile(cb, pool, relu, kk, x, d1, offs, w, sc, sh, y, ys, y1, n0, n1, acc, ymo);                        \
    }
/* (no statistics mode without pooling: column 2 repeats column 0) */
#define DIRECT_VARIANTS(cb)                                                                                          \
    DIRECT_VARIANT(cb, 0, 0) DIRECT_VARIANT(cb, 0, 1) DIRECT_VARIANT(cb, 1, 0) DIRECT_VARIANT(cb, 1, 1)             \
    DIRECT_VARIANT(cb, 1, 2) DIRECT_VARIANT(cb, 2, 0) DIRECT_VARIANT(cb, 2, 1) DIRECT_VARIANT(cb, 2, 2)
DIRECT_VARIANTS(1)
DIRECT_VARIANTS(2)
DIRECT_VARIANTS(3)
DIRECT_VARIANTS(4)
DIRECT_VARIANTS(5)
DIRECT_VARIANTS(6)
#define DIRECT_ROW_OF(cb)                                                                                            \
    {direct_tile_##cb##_0_0, direct_tile_##cb##_0_1, direct_tile_##cb##_0_0,                                        \
     direct_tile_##cb##_1_0, direct_tile_##cb##_1_1, direct_tile_##cb##_1_2,                                        \
     direct_tile_##cb##_2_0, direct_tile_##cb##_2_1, direct_tile_##cb##_2_2}
static const direct_tile_fn direct_tiles[DIRECT_CB][9] = {DIRECT_ROW_OF(1), DIRECT_ROW_OF(2), DIRECT_ROW_OF(3),
                                                          DIRECT_ROW_OF(4), DIRECT_ROW_OF(5), DIRECT_ROW_OF(6)};

/* One tile position over all channel blocks; variant = the direct_tiles
 * column (3·pool + relu); acc: 16 floats per channel (statistics mode). */
static void direct_blocks(int kk, int cbn, int cout, int variant, const float *xt, size_t d1, const int *offs,
                          const float *wpk, const float *sc, const float *sh, float *yt, size_t op, size_t y1, int n0,
                          int n1, float *acc, ptrdiff_t ymo) {
    for (int b = 0; b < cbn; b++) {
        int cb = cout - b * DIRECT_CB < DIRECT_CB ? cout - b * DIRECT_CB : DIRECT_CB;
        direct_tiles[cb - 1][variant](kk, xt, d1, offs, wpk + (size_t)b * DIRECT_CB * kk, sc + b * DIRECT_CB,
                                      sh + b * DIRECT_CB, yt + (size_t)b * DIRECT_CB * op, op, y1, n0, n1,
                                      acc + (size_t)b * DIRECT_CB * 16, ymo);
    }
}

/* Same contract as sg_conv2d_forward_fused, for stride 1. Images one at a
 * time: copy into the zero-padded layout, then tile by tile (16 pixels:
 * one row × 16 columns, or two rows × 8 columns when pooling or when rows
 * are short, or 4 × 4 for a pooled tail of 2 or 4 columns) over all channel
 * blocks, so the tile's input window stays in L1 while the packed weights
 * stream from L2. No output scratch: each tile's epilogue stores straight
 * into y.
 * relu 2 is the statistics mode of sg_conv2d_forward_pool_stats (pool2 1,
 * even output sizes, scale and shift NULL): the pooled max to y, the pooled
 * min to y + ymo, the raw outputs' sums added to sum and sumsq. */
static void conv_direct(const sg_conv2d_cfg *c, int n, int h, int w, const float *restrict x,
                        const float *restrict wt, const float *restrict scale, const float *restrict shift, int relu,
                        int pool2, float *restrict y, float *restrict work, ptrdiff_t ymo, double *sum,
                        double *sumsq) {
    direct_geom g = direct_geometry(c, h, w);
    SG_ASSERT(c->stride == 1 && g.oh > 0 && g.ow > 0 && (!pool2 || (g.oh >= 2 && g.ow >= 2)));
    SG_ASSERT(relu != 2 || (pool2 && g.oh % 2 == 0 && g.ow % 2 == 0 && !scale && !shift));
    SG_ASSERT(g.xp_f < (size_t)INT_MAX); /* tap offsets are int */
    const int k = c->k, kk = g.kk, cout = c->cout;
    float *xp = work, *wpk = xp + g.xp_f, *sc = wpk + g.wpk_f, *sh = sc + (size_t)g.cbn * DIRECT_CB;
    int *offs = (int *)(sc + sg_round16(2 * (size_t)g.cbn * DIRECT_CB));
    float *acc = (float *)offs + sg_round16((size_t)kk);
    for (int ch = 0; ch < c->cin; ch++)
        for (int ki = 0; ki < k; ki++)
            for (int kj = 0; kj < k; kj++) offs[(ch * k + ki) * k + kj] = (int)(ch * g.ps + (size_t)ki * g.wp + kj);
    /* (cbn, kk, DIRECT_CB); channels past cout get zero weights and are not stored */
    for (int b = 0; b < g.cbn; b++)
        for (int r = 0; r < DIRECT_CB; r++) {
            int o = b * DIRECT_CB + r;
            float *restrict d = wpk + (size_t)b * DIRECT_CB * kk + r;
            for (int t = 0; t < kk; t++) d[(size_t)t * DIRECT_CB] = o < cout ? wt[(size_t)o * kk + t] : 0.0f;
        }
    for (int o = 0; o < g.cbn * DIRECT_CB; o++) {
        sc[o] = scale && o < cout ? scale[o] : 1.0f;
        sh[o] = shift && o < cout ? shift[o] : 0.0f;
    }
    /* Borders and slack once; each image overwrites only the interior. */
    memset(xp, 0, sizeof(float) * g.xp_f);
    size_t in_sz = (size_t)c->cin * h * w;
    int ow = g.ow, pw = pool2 ? ow / 2 : ow, ph = pool2 ? g.oh / 2 : g.oh;
    size_t op = (size_t)ph * pw, out_sz = (size_t)cout * op;
    int two_rows = pool2 || ow <= 8; /* 16-pixel tiles as 2 rows × 8 columns */
    int rows = pool2 ? 2 * ph : g.oh, cend = pool2 ? 2 * pw : ow;
    /* Pooled, a last 2 or 4 columns would leave an 8-column tile half empty
     * or worse (ow 20: 83% of the lanes used, 10: 62%, 5: 50%): 4×4 tiles
     * take them, exact when ph is even. A last 6 stay in a 2×8 tile (as
     * good as 4×4 tiles, better for odd ph). */
    int cq = pool2 && cend % 8 != 0 && cend % 8 <= 4 ? cend - cend % 8 : cend;
    int variant = 3 * pool2 + relu;
    for (int im = 0; im < n; im++) {
        if (relu == 2) memset(acc, 0, sizeof(float) * (size_t)g.cbn * DIRECT_CB * 16);
        const float *xi = x + im * in_sz;
        float *yi = y + im * out_sz;
        /* A plain loop, not a memcpy call per (short) row. */
        for (int ch = 0; ch < c->cin; ch++)
            for (int i = 0; i < h; i++) {
                float *restrict d = xp + ch * g.ps + (size_t)(i + c->pad) * g.wp + c->pad;
                const float *restrict src = xi + ((size_t)ch * h + i) * w;
                for (int j = 0; j < w; j++) d[j] = src[j];
            }
        int rstep = two_rows ? 2 : 1, cstep = two_rows ? 8 : 16;
        for (int r = 0; r < rows; r += rstep)
            for (int j = 0; j < cq; j += cstep) {
                const float *xt = xp + (size_t)r * g.wp + j;
                size_t d1 = two_rows ? (size_t)g.wp : 8, y1 = two_rows ? (size_t)ow : 8;
                float *yt;
                int n0, n1;
                if (pool2) {
                    yt = yi + (size_t)(r / 2) * pw + j / 2;
                    n0 = (cend - j) / 2;
                    n1 = 0;
                } else if (two_rows) {
                    yt = yi + (size_t)r * ow + j;
                    n0 = ow - j < 8 ? ow - j : 8;
                    n1 = r + 1 < g.oh ? n0 : 0;
                } else {
                    yt = yi + (size_t)r * ow + j;
                    n0 = ow - j < 8 ? ow - j : 8;
                    n1 = ow - j - 8 < 8 ? ow - j - 8 : 8;
                }
                direct_blocks(kk, g.cbn, cout, variant, xt, d1, offs, wpk, sc, sh, yt, op, y1, n0, n1, acc, ymo);
            }
        /* the 4×4 tail: 2 (or 1) pooled columns × 2 (or 1) pooled rows */
        for (int r = 0; r < rows; r += 4)
            for (int j = cq; j < cend; j += 4)
                direct_blocks(kk, g.cbn, cout, variant + 3, xp + (size_t)r * g.wp + j, (size_t)g.wp, offs, wpk, sc,
                              sh, yi + (size_t)(r / 2) * pw + j / 2, op, (size_t)pw, cend - j < 4 ? 1 : 2,
                              rows - r < 4 ? 1 : 2, acc, ymo);
        if (relu == 2)
            for (int o = 0; o < cout; o++) {
                /* per image in float, as the other channel sums; across images in double */
                float s1 = 0, s2 = 0;
                for (int l = 0; l < 8; l++) {
                    s1 += acc[(size_t)o * 16 + l];
                    s2 += acc[(size_t)o * 16 + 8 + l];
                }
                sum[o] += s1;
                sumsq[o] += s2;
            }
    }
}
#else
static void conv_direct(const sg_conv2d_cfg *c, int n, int h, int w, const float *restrict x,
                        const float *restrict wt, const float *restrict scale, const float *restrict shift, int relu,
                        int pool2, float *restrict y, float *restrict work, ptrdiff_t ymo, double *sum,
                        double *sumsq) {
    (void)c, (void)n, (void)h, (void)w, (void)x, (void)wt, (void)scale, (void)shift, (void)relu, (void)pool2;
    (void)y, (void)work, (void)ymo, (void)sum, (void)sumsq;
    SG_ASSERT(!"direct convolution not compiled in");
}
#endif

int sg_conv2d_uses_direct(const sg_conv2d_cfg *c) { return conv_use_direct(c); }

void sg_conv2d_forward(const sg_conv2d_cfg *c, int n, int h, int w, const float *restrict x,
                       const float *restrict wt, const float *restrict b, float *restrict y, float *restrict work) {
    if (conv_use_direct(c)) conv_direct(c, n, h, w, x, wt, NULL, b, 0, 0, y, work, 0, NULL, NULL);
    else sg_conv2d_forward_im2col(c, n, h, w, x, wt, b, y, work);
}

void sg_conv2d_forward_fused(const sg_conv2d_cfg *c, int n, int h, int w, const float *restrict x,
                             const float *restrict wt, const float *restrict scale, const float *restrict shift,
                             int relu, int pool2, float *restrict y, float *restrict work) {
    sg_conv2d_forward_fused_pre(c, n, h, w, x, wt, NULL, scale, shift, relu, pool2, y, work);
}

void sg_conv2d_forward_fused_pre(const sg_conv2d_cfg *c, int n, int h, int w, const float *restrict x,
                                 const float *restrict wt, const float *restrict u_pre, const float *restrict scale,
                                 const float *restrict shift, int relu, int pool2, float *restrict y,
                                 float *restrict work) {
    if (pool2 && sg_conv2d_uses_winograd(c, h, w))
        sg_conv2d_forward_winograd(c, n, h, w, x, wt, u_pre, scale, shift, relu, y, work, 0, NULL, NULL);
    else if (conv_use_direct(c)) conv_direct(c, n, h, w, x, wt, scale, shift, relu, pool2, y, work, 0, NULL, NULL);
    else sg_conv2d_forward_fused_im2col(c, n, h, w, x, wt, scale, shift, relu, pool2, y, work);
}

void sg_channel_sums(int n, int C, int hw, const float *x, double *s, double *ss) {
    for (int i = 0; i < n; i++)
        for (int c = 0; c < C; c++) { /* a plane in float (vectorizes), planes summed in double */
            const float *p = x + ((size_t)i * C + c) * hw;
            float ps = 0, pss = 0;
            for (int q = 0; q < hw; q++) {
                ps += p[q];
                pss += p[q] * p[q];
            }
            s[c] += ps;
            ss[c] += pss;
        }
}

void sg_channel_moments(int C, double m, const double *s, const double *ss, double *mean, double *var) {
    for (int c = 0; c < C; c++) {
        mean[c] = s[c] / m;
        var[c] = ss[c] / m - mean[c] * mean[c];
        if (var[c] < 0) var[c] = 0;
        if (m > 1) var[c] *= m / (m - 1); /* unbiased, as training keeps it */
    }
}

size_t sg_conv2d_pool_stats_work_floats(const sg_conv2d_cfg *c, int n, int h, int w) {
    int oh = sg_conv2d_out_size(h, c->k, c->stride, c->pad), ow = sg_conv2d_out_size(w, c->k, c->stride, c->pad);
    size_t plain = sg_conv2d_work_floats(c, n, h, w) + (size_t)n * c->cout * oh * ow;
    size_t fast = fast_work_floats(c, n, h, w);
    return plain > fast ? plain : fast;
}

void sg_conv2d_forward_pool_stats(const sg_conv2d_cfg *c, int n, int h, int w, const float *restrict x,
                                  const float *restrict wt, float *restrict y, double *sum, double *sumsq,
                                  float *restrict work) {
    int oh = sg_conv2d_out_size(h, c->k, c->stride, c->pad), ow = sg_conv2d_out_size(w, c->k, c->stride, c->pad);
    SG_ASSERT(oh >= 2 && ow >= 2 && oh % 2 == 0 && ow % 2 == 0);
    ptrdiff_t half = (ptrdiff_t)n * c->cout * (oh / 2) * (ow / 2);
    float *ymax = y, *ymin = y + half;
    if (sg_conv2d_uses_winograd(c, h, w)) {
        sg_conv2d_forward_winograd(c, n, h, w, x, wt, NULL, NULL, NULL, 2, ymax, work, half, sum, sumsq);
        return;
    }
    if (conv_use_direct(c)) {
        conv_direct(c, n, h, w, x, wt, NULL, NULL, 2, 1, ymax, work, half, sum, sumsq);
        return;
    }
    /* the plain convolution, then the same sums and pools */
    size_t p = (size_t)oh * ow;
    float *out = work + sg_conv2d_work_floats(c, n, h, w);
    sg_conv2d_forward_im2col(c, n, h, w, x, wt, NULL, out, work);
    sg_channel_sums(n, c->cout, (int)p, out, sum, sumsq);
    int pw = ow / 2;
    for (int i = 0; i < n; i++)
        for (int o = 0; o < c->cout; o++) {
            const float *restrict v = out + ((size_t)i * c->cout + o) * p;
            float *restrict mx = ymax + ((size_t)i * c->cout + o) * (p / 4), *restrict mn = ymin + (mx - ymax);
            for (int r = 0; r < oh / 2; r++)
                for (int j = 0; j < pw; j++) {
                    const float *a = v + (size_t)2 * r * ow + 2 * j;
                    float hi = fmaxf(fmaxf(a[0], a[1]), fmaxf(a[ow], a[ow + 1]));
                    float lo = fminf(fminf(a[0], a[1]), fminf(a[ow], a[ow + 1]));
                    mx[(size_t)r * pw + j] = hi;
                    mn[(size_t)r * pw + j] = lo;
                }
        }
}

void sg_conv2d_backward(const sg_conv2d_cfg *c, int n, int h, int w, const float *restrict x,
                        const float *restrict wt, const float *restrict dy, float *restrict dx,
                        float *restrict dwt, float *restrict db, float *restrict work) {
    int oh = sg_conv2d_out_size(h, c->k, c->stride, c->pad), ow = sg_conv2d_out_size(w, c->k, c->stride, c->pad);
    int p = oh * ow;
    int kk = c->cin * c->k * c->k;
    size_t in_sz = (size_t)c->cin * h * w, out_sz = (size_t)c->cout * p;
    if (db)
        for (int i = 0; i < n; i++)
            for (int o = 0; o < c->cout; o++) {
                const float *restrict d = dy + i * out_sz + (size_t)o * p;
                float s = 0;
                for (int q = 0; q < p; q++) s += d[q];
                db[o] += s;
            }
    if (!dwt && !dx) return;
    int g = conv_group(n, p);
    for (int i0 = 0; i0 < n; i0 += g) {
        int gn = n - i0 < g ? n - i0 : g;
        size_t ld = (size_t)gn * p;
        float *col = work, *dcol = work + (size_t)kk * ld, *dyg = dcol + (size_t)kk * ld;
        const float *colp = col, *dyp = dyg;
        if (gn == 1) {
            dyp = dy + i0 * out_sz;
            if (conv_is_pointwise(c)) colp = x + i0 * in_sz;
            else if (dwt) im2col(x + i0 * in_sz, c->cin, h, w, c->k, c->stride, c->pad, oh, ow, col, ld);
        } else {
            for (int j = 0; j < gn; j++) {
                if (dwt)
                    im2col(x + (i0 + j) * in_sz, c->cin, h, w, c->k, c->stride, c->pad, oh, ow, col + (size_t)j * p,
                           ld);
                for (int o = 0; o < c->cout; o++)
                    memcpy(dyg + (size_t)o * ld + (size_t)j * p, dy + (i0 + j) * out_sz + (size_t)o * p,
                           sizeof(float) * (size_t)p);
            }
        }
        if (dwt)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c->cout, kk, (int)ld, 1.0f, dyp, (int)ld, colp,
                        (int)ld, 1.0f, dwt, kk);
        if (dx) {
            if (gn == 1 && conv_is_pointwise(c)) {
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kk, (int)ld, c->cout, 1.0f, wt, kk, dyp, (int)ld,
                            1.0f, dx + i0 * in_sz, (int)ld);
                continue;
            }
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kk, (int)ld, c->cout, 1.0f, wt, kk, dyp, (int)ld,
                        0.0f, dcol, (int)ld);
            for (int j = 0; j < gn; j++)
                col2im(dcol + (size_t)j * p, ld, c->cin, h, w, c->k, c->stride, c->pad, oh, ow, dx + (i0 + j) * in_sz);
        }
    }
}

/* ---- batch norm ---- */

void sg_batchnorm_forward_train(int n, int c, int hw, const float *restrict x, const float *restrict gamma,
                                const float *restrict beta, float *restrict y, float *restrict save_mean,
                                float *restrict save_invstd, float *restrict run_mean, float *restrict run_var,
                                float momentum, float eps) {
    double m = (double)n * hw;
    for (int ch = 0; ch < c; ch++) {
        double s = 0, ss = 0;
        for (int i = 0; i < n; i++) {
            const float *restrict xp = x + ((size_t)i * c + ch) * hw;
            float ps = 0, pss = 0;
            for (int q = 0; q < hw; q++) {
                ps += xp[q];
                pss += xp[q] * xp[q];
            }
            s += ps;
            ss += pss;
        }
        double mean = s / m;
        double var = ss / m - mean * mean;
        if (var < 0) var = 0;
        float invstd = (float)(1.0 / sqrt(var + eps));
        save_mean[ch] = (float)mean;
        save_invstd[ch] = invstd;
        if (run_mean) run_mean[ch] = (1 - momentum) * run_mean[ch] + momentum * (float)mean;
        if (run_var) run_var[ch] = (1 - momentum) * run_var[ch] + momentum * (float)(m > 1 ? var * m / (m - 1) : var);
        float sc = gamma[ch] * invstd, sh = beta[ch] - (float)mean * sc;
        for (int i = 0; i < n; i++) {
            const float *restrict xp = x + ((size_t)i * c + ch) * hw;
            float *restrict yp = y + ((size_t)i * c + ch) * hw;
            for (int q = 0; q < hw; q++) yp[q] = xp[q] * sc + sh;
        }
    }
}

void sg_batchnorm_backward_train(int n, int c, int hw, const float *restrict x, const float *restrict gamma,
                                 const float *restrict save_mean, const float *restrict save_invstd,
                                 const float *restrict dy, float *restrict dx, float *restrict dgamma,
                                 float *restrict dbeta) {
    float m = (float)n * hw;
    for (int ch = 0; ch < c; ch++) {
        float mean = save_mean[ch], is = save_invstd[ch];
        double sdy = 0, sdyx = 0;
        for (int i = 0; i < n; i++) {
            const float *restrict xp = x + ((size_t)i * c + ch) * hw;
            const float *restrict dp = dy + ((size_t)i * c + ch) * hw;
            float a = 0, b = 0;
            for (int q = 0; q < hw; q++) {
                a += dp[q];
                b += dp[q] * (xp[q] - mean);
            }
            sdy += a;
            sdyx += b;
        }
        float dg = (float)sdyx * is, dbt = (float)sdy;
        if (dgamma) dgamma[ch] += dg;
        if (dbeta) dbeta[ch] += dbt;
        if (!dx) continue;
        float k = gamma[ch] * is / m;
        for (int i = 0; i < n; i++) {
            const float *restrict xp = x + ((size_t)i * c + ch) * hw;
            const float *restrict dp = dy + ((size_t)i * c + ch) * hw;
            float *restrict dxp = dx + ((size_t)i * c + ch) * hw;
            for (int q = 0; q < hw; q++) {
                float xhat = (xp[q] - mean) * is;
                dxp[q] += k * (m * dp[q] - dbt - xhat * dg);
            }
        }
    }
}

void sg_batchnorm_forward_eval(int n, int c, int hw, const float *restrict x, const float *restrict gamma,
                               const float *restrict beta, const float *restrict run_mean,
                               const float *restrict run_var, float eps, float *restrict y) {
    for (int ch = 0; ch < c; ch++) {
        float sc = gamma[ch] / sqrtf(run_var[ch] + eps), sh = beta[ch] - run_mean[ch] * sc;
        for (int i = 0; i < n; i++) {
            const float *restrict xp = x + ((size_t)i * c + ch) * hw;
            float *restrict yp = y + ((size_t)i * c + ch) * hw;
            for (int q = 0; q < hw; q++) yp[q] = xp[q] * sc + sh;
        }
    }
}

void sg_batchnorm_backward_eval(int n, int c, int hw, const float *restrict gamma, const float *restrict run_var,
                                float eps, const float *restrict x, const float *restrict run_mean,
                                const float *restrict dy, float *restrict dx, float *restrict dgamma,
                                float *restrict dbeta) {
    for (int ch = 0; ch < c; ch++) {
        float is = 1.0f / sqrtf(run_var[ch] + eps), sc = gamma[ch] * is;
        double sdy = 0, sdyx = 0;
        for (int i = 0; i < n; i++) {
            const float *restrict xp = x + ((size_t)i * c + ch) * hw;
            const float *restrict dp = dy + ((size_t)i * c + ch) * hw;
            float *restrict dxp = dx ? dx + ((size_t)i * c + ch) * hw : NULL;
            float a = 0, b = 0;
            for (int q = 0; q < hw; q++) {
                a += dp[q];
                b += dp[q] * (xp[q] - run_mean[ch]);
                if (dxp) dxp[q] += dp[q] * sc;
            }
            sdy += a;
            sdyx += b;
        }
        if (dgamma) dgamma[ch] += (float)sdyx * is;
        if (dbeta) dbeta[ch] += (float)sdy;
    }
}

void sg_affine_forward(int n, int c, int hw, const float *restrict x, const float *restrict scale,
                       const float *restrict shift, float *restrict y) {
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++) {
            const float *restrict xp = x + ((size_t)i * c + ch) * hw;
            float *restrict yp = y + ((size_t)i * c + ch) * hw;
            float sc = scale[ch], sh = shift[ch];
            for (int q = 0; q < hw; q++) yp[q] = xp[q] * sc + sh;
        }
}

void sg_affine_backward(int n, int c, int hw, const float *restrict x, const float *restrict scale,
                        const float *restrict dy, float *restrict dx, float *restrict dscale, float *restrict dshift) {
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++) {
            const float *restrict xp = x + ((size_t)i * c + ch) * hw;
            const float *restrict dp = dy + ((size_t)i * c + ch) * hw;
            float a = 0, b = 0, sc = scale[ch];
            if (dx) {
                float *restrict dxp = dx + ((size_t)i * c + ch) * hw;
                for (int q = 0; q < hw; q++) dxp[q] += dp[q] * sc;
            }
            for (int q = 0; q < hw; q++) {
                a += dp[q];
                b += dp[q] * xp[q];
            }
            if (dshift) dshift[ch] += a;
            if (dscale) dscale[ch] += b;
        }
}

/* ---- activations ---- */

void sg_relu_forward(size_t n, const float *restrict x, float *restrict y) {
    for (size_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0.0f;
}
void sg_relu_backward(size_t n, const float *restrict y, const float *restrict dy, float *restrict dx) {
    for (size_t i = 0; i < n; i++) dx[i] += y[i] > 0 ? dy[i] : 0.0f;
}
void sg_silu_forward(size_t n, const float *restrict x, float *restrict y) {
    for (size_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + expf(-x[i]));
}
void sg_silu_backward(size_t n, const float *restrict x, const float *restrict dy, float *restrict dx) {
    for (size_t i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + expf(-x[i]));
        dx[i] += dy[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

/* ---- pooling ---- */

void sg_maxpool_forward(int nc, int h, int w, int k, int stride, const float *restrict x, float *restrict y,
                        int32_t *restrict argmax) {
    int oh = (h - k) / stride + 1, ow = (w - k) / stride + 1;
    for (int pl = 0; pl < nc; pl++) {
        const float *restrict xp = x + (size_t)pl * h * w;
        float *restrict yp = y + (size_t)pl * oh * ow;
        int32_t *restrict ap = argmax + (size_t)pl * oh * ow;
        if (k == 2 && stride == 2) {
            for (int i = 0; i < oh; i++) {
                const float *r0 = xp + (size_t)(2 * i) * w, *r1 = r0 + w;
                for (int j = 0; j < ow; j++) {
                    int b = 2 * i * w + 2 * j;
                    float m = r0[2 * j];
                    if (r0[2 * j + 1] > m) { m = r0[2 * j + 1]; b = 2 * i * w + 2 * j + 1; }
                    if (r1[2 * j] > m) { m = r1[2 * j]; b = (2 * i + 1) * w + 2 * j; }
                    if (r1[2 * j + 1] > m) { m = r1[2 * j + 1]; b = (2 * i + 1) * w + 2 * j + 1; }
                    yp[i * ow + j] = m;
                    ap[i * ow + j] = b;
                }
            }
            continue;
        }
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++) {
                int best = (i * stride) * w + j * stride;
                float m = xp[best];
                for (int a = 0; a < k; a++)
                    for (int b = 0; b < k; b++) {
                        int idx = (i * stride + a) * w + j * stride + b;
                        if (xp[idx] > m) {
                            m = xp[idx];
                            best = idx;
                        }
                    }
                yp[i * ow + j] = m;
                ap[i * ow + j] = best;
            }
    }
}

void sg_maxpool_backward(int nc, int h, int w, int k, int stride, const int32_t *restrict argmax,
                         const float *restrict dy, float *restrict dx) {
    int oh = (h - k) / stride + 1, ow = (w - k) / stride + 1;
    for (int pl = 0; pl < nc; pl++) {
        float *restrict dxp = dx + (size_t)pl * h * w;
        const float *restrict dyp = dy + (size_t)pl * oh * ow;
        const int32_t *restrict ap = argmax + (size_t)pl * oh * ow;
        for (int q = 0; q < oh * ow; q++) dxp[ap[q]] += dyp[q];
    }
}

void sg_avgpool_forward(int nc, int h, int w, int k, int stride, const float *restrict x, float *restrict y) {
    int oh = (h - k) / stride + 1, ow = (w - k) / stride + 1;
    float inv = 1.0f / (float)(k * k);
    for (int pl = 0; pl < nc; pl++) {
        const float *restrict xp = x + (size_t)pl * h * w;
        float *restrict yp = y + (size_t)pl * oh * ow;
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++) {
                float s = 0;
                for (int a = 0; a < k; a++)
                    for (int b = 0; b < k; b++) s += xp[(i * stride + a) * w + j * stride + b];
                yp[i * ow + j] = s * inv;
            }
    }
}

void sg_avgpool_backward(int nc, int h, int w, int k, int stride, const float *restrict dy, float *restrict dx) {
    int oh = (h - k) / stride + 1, ow = (w - k) / stride + 1;
    float inv = 1.0f / (float)(k * k);
    for (int pl = 0; pl < nc; pl++) {
        float *restrict dxp = dx + (size_t)pl * h * w;
        const float *restrict dyp = dy + (size_t)pl * oh * ow;
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++) {
                float g = dyp[i * ow + j] * inv;
                for (int a = 0; a < k; a++)
                    for (int b = 0; b < k; b++) dxp[(i * stride + a) * w + j * stride + b] += g;
            }
    }
}

void sg_gap_forward(int nc, int hw, const float *restrict x, float *restrict y) {
    float inv = 1.0f / (float)hw;
    for (int pl = 0; pl < nc; pl++) {
        const float *restrict xp = x + (size_t)pl * hw;
        float s = 0;
        for (int q = 0; q < hw; q++) s += xp[q];
        y[pl] = s * inv;
    }
}

void sg_gap_backward(int nc, int hw, const float *restrict dy, float *restrict dx) {
    float inv = 1.0f / (float)hw;
    for (int pl = 0; pl < nc; pl++) {
        float g = dy[pl] * inv;
        float *restrict dxp = dx + (size_t)pl * hw;
        for (int q = 0; q < hw; q++) dxp[q] += g;
    }
}

/* ---- linear ---- */

void sg_linear_forward(int n, int in, int out, const float *restrict x, const float *restrict wt,
                       const float *restrict b, float *restrict y) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, wt, in, 0.0f, y, out);
    if (b)
        for (int i = 0; i < n; i++)
            for (int o = 0; o < out; o++) y[(size_t)i * out + o] += b[o];
}

void sg_linear_backward(int n, int in, int out, const float *restrict x, const float *restrict wt,
                        const float *restrict dy, float *restrict dx, float *restrict dwt, float *restrict db) {
    if (dwt) cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, n, 1.0f, dy, out, x, in, 1.0f, dwt, in);
    if (dx) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, out, 1.0f, dy, out, wt, in, 1.0f, dx, in);
    if (db)
        for (int i = 0; i < n; i++)
            for (int o = 0; o < out; o++) db[o] += dy[(size_t)i * out + o];
}

/* ---- loss ---- */

void sg_softmax(int n, int k, const float *restrict logits, float *restrict probs) {
    for (int i = 0; i < n; i++) {
        const float *l = logits + (size_t)i * k;
        float *p = probs + (size_t)i * k;
        float m = l[0];
        for (int j = 1; j < k; j++) m = l[j] > m ? l[j] : m;
        double s = 0;
        for (int j = 0; j < k; j++) s += (p[j] = expf(l[j] - m));
        float inv = (float)(1.0 / s);
        for (int j = 0; j < k; j++) p[j] *= inv;
    }
}

float sg_softmax_distill(int n, int k, const float *restrict logits, const float *restrict target, float t,
                         float scale, float *restrict dlogits) {
    SG_ASSERT(t > 0);
    double loss = 0;
    for (int i = 0; i < n; i++) {
        const float *l = logits + (size_t)i * k, *q = target + (size_t)i * k;
        float m = l[0];
        for (int j = 1; j < k; j++) m = l[j] > m ? l[j] : m;
        double s = 0;
        for (int j = 0; j < k; j++) s += exp((double)(l[j] - m) / t);
        double lse = log(s);
        for (int j = 0; j < k; j++) {
            double lp = (double)(l[j] - m) / t - lse; /* log softmax(l / T) */
            if (q[j] > 0) loss += (double)q[j] * (log((double)q[j]) - lp);
            if (dlogits) dlogits[(size_t)i * k + j] = scale * t * ((float)exp(lp) - q[j]) / (float)n;
        }
    }
    return (float)((double)t * t * loss / n);
}

float sg_softmax_xent(int n, int k, const float *restrict logits, const int *restrict labels, float scale,
                      float *restrict dlogits, float *restrict probs) {
    double loss = 0;
    for (int i = 0; i < n; i++) {
        const float *l = logits + (size_t)i * k;
        SG_ASSERT(labels[i] >= 0 && labels[i] < k);
        float m = l[0];
        for (int j = 1; j < k; j++) m = l[j] > m ? l[j] : m;
        double s = 0;
        for (int j = 0; j < k; j++) s += exp((double)(l[j] - m));
        double lse = m + log(s);
        loss += lse - l[labels[i]];
        for (int j = 0; j < k; j++) {
            float p = (float)exp((double)l[j] - lse);
            if (probs) probs[(size_t)i * k + j] = p;
            if (dlogits) dlogits[(size_t)i * k + j] = scale * (p - (j == labels[i] ? 1.0f : 0.0f)) / (float)n;
        }
    }
    return (float)(loss / n);
}
