/* sg_conv_winograd.c — the pooled 3×3 convolution by Winograd's minimal
 * filtering, F(2×2, 3×3) (Lavin & Gray 2016).
 *
 * A 3×3 convolution (stride 1, padding 1) followed by the 2×2 max pool is
 * every unit of Conv4 after the first. Each pooling window is one 2×2
 * output tile, and a tile is
 *     Y = Aᵀ [ Σ_c (G g_oc Gᵀ) ⊙ (Bᵀ d_c B) ] A
 * with d_c the 4×4 input patch around it in channel c and g_oc the 3×3
 * kernel: 16 products per (input, output channel) pair and tile instead of
 * the direct kernel's 36. The sum over input channels is, for each of the
 * 16 positions ξ of the transformed patch, a small matrix product
 * M_ξ (cout × tiles) = U_ξ (cout × cin) · V_ξ (cin × tiles), computed here
 * by a register tile of 6 output channels × 16 tiles (the direct kernel's
 * shape) over chunks of 16 tiles that may span images, so that the 2×2 and
 * 5×5 maps of the last units fill their vectors too. Then, from registers:
 * the output transform, the folded norm (v·scale + shift), the 2×2 max and
 * ReLU, or the statistics mode of the support normalization (raw sums, 2×2
 * max and min), exactly as the direct kernel's epilogue.
 *
 * Only the pooled outputs are computed: with an odd map the last row and
 * column, which the pool drops, are never formed. The transforms add and
 * subtract in float, so the outputs differ from the direct kernel's in the
 * last bits (tests/model/test_conv_direct.c holds both to the im2col
 * reference); the statistics mode and the fused mode form the raw outputs
 * the same way, so the fused output is bit for bit the affine of the
 * statistics pass's max (or min) as on the direct path. */
#include "sg_model_impl.h"

#include <cblas.h>
#include <stddef.h>
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define SG_WINO 1
#else
#define SG_WINO 0
#endif

#define WINO_CB 6     /* output channels per register tile */
#define WINO_LANES 16 /* tiles per register tile: two vectors */

/* Fewer input channels (RGB) and the transforms cost more than they save: on
 * 40×40 maps, 8 images, Winograd / direct took 1.31× the time with 3 input
 * channels, 1.11× with 4, 0.83× with 8, 0.67× with 16. */
#define WINO_MIN_CIN 8

#define WINO_GROUP_TILES 128 /* tiles transformed at a time: V stays in L2 */

/* Floats per row of the zero-padded input plane: room for the transform's
 * vectors of eight tiles (16 + 2 columns) up to pw rounded up to 8. */
static int wino_pp_stride(int pw) { return 2 * ((pw + 7) / 8 * 8) + 4; }

typedef struct wino_geom {
    int ph, pw, cbn;
    int group, band;   /* images whose tiles are transformed together; tile rows at a time (one image) */
    size_t op, ld, xs; /* tiles per image; V's row stride (per input channel) and ξ stride */
    size_t u_f, v_f, m_f, s_f, p_f;
} wino_geom;

/* U: 16 values per (output, input) channel pair, output channels padded to
 * whole blocks of WINO_CB. */
size_t sg_conv2d_winograd_weights_floats(const sg_conv2d_cfg *c) {
    return sg_round16((size_t)16 * ((c->cout + WINO_CB - 1) / WINO_CB) * WINO_CB * c->cin);
}

static wino_geom wino_geometry(const sg_conv2d_cfg *c, int n, int h, int w) {
    wino_geom g;
    g.ph = h / 2; /* k 3, stride 1, pad 1: the output is h × w */
    g.pw = w / 2;
    g.op = (size_t)g.ph * g.pw;
    /* Small maps: whole images, enough of them for WINO_GROUP_TILES tiles. Large
     * maps: one image at a time, in bands of tile rows, so V stays in L2
     * whatever the input side. */
    g.group = g.op >= WINO_GROUP_TILES ? 1 : (int)(WINO_GROUP_TILES / g.op);
    if (g.group > n) g.group = n > 0 ? n : 1;
    g.band = g.op >= WINO_GROUP_TILES ? (int)(WINO_GROUP_TILES / (size_t)g.pw) : g.ph;
    if (g.band < 1) g.band = 1;
    if (g.band > g.ph) g.band = g.ph;
    /* + the last row's vector past its end. Rows an odd number of 64-byte
     * lines apart, and ξ planes not a multiple of 4 KiB apart, so that a
     * chunk's 16 lanes of every row (and the transform's 16 store streams)
     * fall in different L1 sets. */
    g.ld = sg_round16((size_t)g.group * g.band * g.pw + 8);
    if ((g.ld / 16) % 2 == 0) g.ld += 16;
    g.xs = (size_t)c->cin * g.ld + 16;
    g.cbn = (c->cout + WINO_CB - 1) / WINO_CB;
    g.u_f = sg_conv2d_winograd_weights_floats(c);
    g.v_f = sg_round16((size_t)16 * g.xs);
    g.m_f = (size_t)16 * g.cbn * WINO_CB * WINO_LANES;
    g.s_f = sg_round16(2 * (size_t)g.cbn * WINO_CB);
    g.p_f = sg_round16((size_t)(2 * g.band + 2) * wino_pp_stride(g.pw));
    return g;
}

/* A process-wide kernel choice, like OpenBLAS's thread count that the
 * dispatch also reads: benchmarks and tests time and check both paths in one
 * process. Nothing else sets it. */
static int g_wino_on = 1;

void sg_conv2d_set_winograd(int on) { g_wino_on = on != 0; }

int sg_conv2d_uses_winograd(const sg_conv2d_cfg *c, int h, int w) {
#if SG_WINO
    return g_wino_on && c->k == 3 && c->stride == 1 && c->pad == 1 && c->cin >= WINO_MIN_CIN && h >= 2 && w >= 2 &&
           openblas_get_num_threads() == 1;
#else
    (void)c, (void)h, (void)w;
    return 0;
#endif
}

size_t sg_conv2d_winograd_work_floats(const sg_conv2d_cfg *c, int n, int h, int w) {
    if (c->k != 3 || c->stride != 1 || c->pad != 1 || h < 2 || w < 2) return 0;
    wino_geom g = wino_geometry(c, n, h, w);
    return g.u_f + g.v_f + g.m_f + g.s_f + g.p_f;
}

#if SG_WINO
/* U_ξ for every (output, input) channel pair: G g Gᵀ, G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1],
 * laid out (ξ, channel block, cin, WINO_CB); channels past cout get zeros. */
__attribute__((noinline)) static void wino_weights(const sg_conv2d_cfg *c, const float *restrict wt, int cbn,
                                                   float *restrict u) {
    const int cin = c->cin;
    for (int b = 0; b < cbn; b++)
        for (int r = 0; r < WINO_CB; r++) {
            int o = b * WINO_CB + r;
            for (int ci = 0; ci < cin; ci++) {
                float t[16];
                if (o < c->cout) {
                    const float *g = wt + ((size_t)o * cin + ci) * 9;
                    float gg[4][3];
                    for (int j = 0; j < 3; j++) {
                        gg[0][j] = g[j];
                        gg[1][j] = 0.5f * (g[j] + g[3 + j] + g[6 + j]);
                        gg[2][j] = 0.5f * (g[j] - g[3 + j] + g[6 + j]);
                        gg[3][j] = g[6 + j];
                    }
                    for (int i = 0; i < 4; i++) {
                        t[4 * i + 0] = gg[i][0];
                        t[4 * i + 1] = 0.5f * (gg[i][0] + gg[i][1] + gg[i][2]);
                        t[4 * i + 2] = 0.5f * (gg[i][0] - gg[i][1] + gg[i][2]);
                        t[4 * i + 3] = gg[i][2];
                    }
                } else {
                    memset(t, 0, sizeof t);
                }
                for (int x = 0; x < 16; x++) u[(((size_t)x * cbn + b) * cin + ci) * WINO_CB + r] = t[x];
            }
        }
}

/* The even and odd columns of 16 floats at p: p[0], p[2] … p[14] and p[1] … p[15]. */
static inline __attribute__((always_inline)) void wino_deinterleave(const float *p, __m256 *even, __m256 *odd) {
    __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
    *even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xd8));
    *odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xdd)), 0xd8));
}

/* V_ξ of tile rows ty0 … ty0 + nr − 1 of the n images: Bᵀ d B, Bᵀ = [1 0 −1 0;
 * 0 1 1 0; 0 −1 1 0; 0 1 0 −1], d the tile's 4×4 patch of the zero-padded rows
 * in pp (rows of wino_pp_stride floats; pp row q is padded row 2·ty0 + q). Written
 * as v[ξ·xs + ci·ld + tile], tile = im·nr·pw + (ty − ty0)·pw + tx, eight tiles of
 * a row at a time: tile tx's patch columns 2tx … 2tx+3
 * are the even and odd columns from 2tx and from 2tx + 2. A row's last vector
 * runs past its pw tiles into the next row's (written after it) or past the
 * last tile (ld leaves room; the caller zeroes those lanes). */
__attribute__((noinline)) static void wino_input(const float *restrict x, int n, int cin, int h, int w, int ty0,
                                                 int nr, int pw, size_t ld, size_t xs, float *restrict pp,
                                                 float *restrict v) {
    const int wp = wino_pp_stride(pw);
    const size_t plane = (size_t)h * w, bt = (size_t)nr * pw;
    memset(pp, 0, sizeof(float) * (size_t)(2 * nr + 2) * wp); /* borders; rows are rewritten below */
    for (int im = 0; im < n; im++)
        for (int ci = 0; ci < cin; ci++) {
            const float *restrict src = x + ((size_t)im * cin + ci) * plane;
            for (int q = 0; q < 2 * nr + 2; q++) {
                int i = 2 * ty0 + q - 1; /* the input row of pp row q */
                float *restrict d = pp + (size_t)q * wp + 1;
                if (i >= 0 && i < h)
                    for (int j = 0; j < w; j++) d[j] = src[(size_t)i * w + j];
                else
                    for (int j = 0; j < w; j++) d[j] = 0;
            }
            float *restrict vt = v + (size_t)ci * ld + (size_t)im * bt;
            for (int ty = 0; ty < nr; ty++)
                for (int tx = 0; tx < pw; tx += 8) {
                    const float *r = pp + (size_t)2 * ty * wp + 2 * tx;
                    __m256 t[4][4];
                    __m256 d[4][4];
                    for (int i = 0; i < 4; i++) {
                        wino_deinterleave(r + (size_t)i * wp, &d[i][0], &d[i][1]);
                        wino_deinterleave(r + (size_t)i * wp + 2, &d[i][2], &d[i][3]);
                    }
                    for (int j = 0; j < 4; j++) {
                        t[0][j] = _mm256_sub_ps(d[0][j], d[2][j]);
                        t[1][j] = _mm256_add_ps(d[1][j], d[2][j]);
                        t[2][j] = _mm256_sub_ps(d[2][j], d[1][j]);
                        t[3][j] = _mm256_sub_ps(d[1][j], d[3][j]);
                    }
                    float *o = vt + (size_t)ty * pw + tx;
                    for (int i = 0; i < 4; i++) {
                        float *oi = o + (size_t)(4 * i) * xs;
                        _mm256_storeu_ps(oi, _mm256_sub_ps(t[i][0], t[i][2]));
                        _mm256_storeu_ps(oi + xs, _mm256_add_ps(t[i][1], t[i][2]));
                        _mm256_storeu_ps(oi + 2 * xs, _mm256_sub_ps(t[i][2], t[i][1]));
                        _mm256_storeu_ps(oi + 3 * xs, _mm256_sub_ps(t[i][1], t[i][3]));
                    }
                }
        }
}

/* M_ξ (WINO_CB × 16 lanes) = U_ξ block · V_ξ over the input channels. The
 * accumulators are named variables (an array of vectors stays in memory). */
__attribute__((noinline)) static void wino_gemm(int cin, const float *restrict u, const float *restrict v, size_t ld,
                                                float *restrict m) {
    const __m256 z = _mm256_setzero_ps();
    __m256 a00 = z, a01 = z, a10 = z, a11 = z, a20 = z, a21 = z, a30 = z, a31 = z, a40 = z, a41 = z, a50 = z,
           a51 = z;
    for (int ci = 0; ci < cin; ci++, u += WINO_CB, v += ld) {
        __m256 x0 = _mm256_loadu_ps(v), x1 = _mm256_loadu_ps(v + 8), b;
#define WINO_FMA(r)                                                                                                  \
    b = _mm256_broadcast_ss(u + (r));                                                                                \
    a##r##0 = _mm256_fmadd_ps(x0, b, a##r##0);                                                                       \
    a##r##1 = _mm256_fmadd_ps(x1, b, a##r##1);
        WINO_FMA(0)
        WINO_FMA(1)
        WINO_FMA(2)
        WINO_FMA(3)
        WINO_FMA(4)
        WINO_FMA(5)
#undef WINO_FMA
    }
#define WINO_STORE(r)                                                                                                \
    _mm256_storeu_ps(m + 16 * (r), a##r##0);                                                                         \
    _mm256_storeu_ps(m + 16 * (r) + 8, a##r##1);
    WINO_STORE(0)
    WINO_STORE(1)
    WINO_STORE(2)
    WINO_STORE(3)
    WINO_STORE(4)
    WINO_STORE(5)
#undef WINO_STORE
}

/* The 2×2 raw outputs of 8 lanes of channel row r: Aᵀ M A, Aᵀ = [1 1 1 0; 0 1 −1 −1].
 * m: M of the block, (ξ, WINO_CB, 16 lanes), at the lane offset. */
static inline __attribute__((always_inline)) void wino_output(const float *restrict m, size_t xs, __m256 *y00,
                                                              __m256 *y01, __m256 *y10, __m256 *y11) {
#define M(i, j) _mm256_loadu_ps(m + (size_t)(4 * (i) + (j)) * xs)
    __m256 s0[4], s1[4];
    for (int j = 0; j < 4; j++) {
        __m256 m1 = M(1, j), m2 = M(2, j);
        s0[j] = _mm256_add_ps(_mm256_add_ps(M(0, j), m1), m2);
        s1[j] = _mm256_sub_ps(_mm256_sub_ps(m1, m2), M(3, j));
    }
#undef M
    *y00 = _mm256_add_ps(_mm256_add_ps(s0[0], s0[1]), s0[2]);
    *y01 = _mm256_sub_ps(_mm256_sub_ps(s0[1], s0[2]), s0[3]);
    *y10 = _mm256_add_ps(_mm256_add_ps(s1[0], s1[1]), s1[2]);
    *y11 = _mm256_sub_ps(_mm256_sub_ps(s1[1], s1[2]), s1[3]);
}

static float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* A chunk's outputs from M (ξ, cbn·WINO_CB, 16 lanes): per output channel the
 * output transform, then the fused mode (affine, 2×2 max, ReLU to y) or the
 * statistics mode (relu 2: raw sums added to sum and sumsq, 2×2 max to y and
 * min to y + ymo). Lane l is tile lane_t[l] of image lane_img[l]; nt lanes. */
static void wino_epilogue(const float *restrict m, int cbn, int cout, int nt, int relu, const float *restrict sc,
                          const float *restrict sh, const int *lane_img, const size_t *lane_t, size_t op,
                          float *restrict y, ptrdiff_t ymo, double *sum, double *sumsq) {
    const __m256 zero = _mm256_setzero_ps();
    const __m256i lane_ix = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const int contiguous = lane_img[0] == lane_img[nt - 1]; /* one image's consecutive tiles */
    for (int o = 0; o < cout; o++) {
        __m256 s = _mm256_set1_ps(sc[o]), t = _mm256_set1_ps(sh[o]), ssum = zero, ssq = zero;
        for (int half = 0; half < 2 && nt > 8 * half; half++) {
            int n0 = nt - 8 * half > 8 ? 8 : nt - 8 * half;
            __m256 y00, y01, y10, y11;
            wino_output(m + (size_t)o * WINO_LANES + 8 * half, (size_t)cbn * WINO_CB * WINO_LANES, &y00, &y01, &y10,
                        &y11);
            float out[2][8];
            int nout = 1;
            if (relu == 2) {
                __m256 in = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n0), lane_ix));
                __m256 a = _mm256_add_ps(_mm256_add_ps(y00, y01), _mm256_add_ps(y10, y11));
                ssum = _mm256_add_ps(ssum, _mm256_and_ps(a, in));
                __m256 q = _mm256_fmadd_ps(y00, y00, _mm256_mul_ps(y01, y01));
                q = _mm256_fmadd_ps(y10, y10, q);
                q = _mm256_fmadd_ps(y11, y11, q);
                ssq = _mm256_add_ps(ssq, _mm256_and_ps(q, in));
                _mm256_storeu_ps(out[0], _mm256_max_ps(_mm256_max_ps(y00, y01), _mm256_max_ps(y10, y11)));
                _mm256_storeu_ps(out[1], _mm256_min_ps(_mm256_min_ps(y00, y01), _mm256_min_ps(y10, y11)));
                nout = 2;
            } else {
                /* the affine before the max: a negative scale reverses the order */
                __m256 mx = _mm256_max_ps(_mm256_max_ps(_mm256_fmadd_ps(y00, s, t), _mm256_fmadd_ps(y01, s, t)),
                                          _mm256_max_ps(_mm256_fmadd_ps(y10, s, t), _mm256_fmadd_ps(y11, s, t)));
                if (relu) mx = _mm256_max_ps(mx, zero);
                _mm256_storeu_ps(out[0], mx);
            }
            for (int k = 0; k < nout; k++) {
                float *yk = y + (k ? ymo : 0);
                if (contiguous) {
                    memcpy(yk + ((size_t)lane_img[0] * cout + o) * op + lane_t[8 * half], out[k],
                           sizeof(float) * (size_t)n0);
                    continue;
                }
                for (int l = 0; l < n0; l++) {
                    int L = 8 * half + l;
                    yk[((size_t)lane_img[L] * cout + o) * op + lane_t[L]] = out[k][l];
                }
            }
        }
        if (relu == 2) {
            sum[o] += hsum8(ssum);
            sumsq[o] += hsum8(ssq);
        }
    }
}

/* Same contract as the direct kernel's pooled modes (relu 0/1: fused, the
 * pooled outputs to y; relu 2: the statistics mode, pooled max to y, pooled
 * min to y + ymo, raw sums added to sum and sumsq). */
void sg_conv2d_winograd_weights(const sg_conv2d_cfg *c, const float *restrict wt, float *restrict u) {
    wino_weights(c, wt, (c->cout + WINO_CB - 1) / WINO_CB, u);
}

void sg_conv2d_forward_winograd(const sg_conv2d_cfg *c, int n, int h, int w, const float *restrict x,
                                const float *restrict wt, const float *restrict u_pre, const float *restrict scale,
                                const float *restrict shift, int relu, float *restrict y, float *restrict work,
                                ptrdiff_t ymo, double *sum, double *sumsq) {
    SG_ASSERT(sg_conv2d_uses_winograd(c, h, w));
    SG_ASSERT(relu != 2 || (h % 2 == 0 && w % 2 == 0 && !scale && !shift));
    wino_geom g = wino_geometry(c, n, h, w);
    const int cin = c->cin, cout = c->cout, cbn = g.cbn;
    float *uw = work, *v = uw + g.u_f, *m = v + g.v_f, *sc = m + g.m_f, *sh = sc + (size_t)cbn * WINO_CB;
    float *pp = sc + g.s_f;
    const float *u = u_pre;
    if (!u) {
        wino_weights(c, wt, cbn, uw);
        u = uw;
    }
    for (int o = 0; o < cbn * WINO_CB; o++) {
        sc[o] = scale && o < cout ? scale[o] : 1.0f;
        sh[o] = shift && o < cout ? shift[o] : 0.0f;
    }
    const size_t in_sz = (size_t)cin * h * w, op = g.op, ld = g.ld, xs = g.xs;
    for (int im0 = 0; im0 < n; im0 += g.group)
        for (int ty0 = 0; ty0 < g.ph; ty0 += g.band) {
            int gn = n - im0 < g.group ? n - im0 : g.group, nr = g.ph - ty0 < g.band ? g.ph - ty0 : g.band;
            size_t bt = (size_t)nr * g.pw, tiles = (size_t)gn * bt, tend = ld; /* per image, in all */
            wino_input(x + (size_t)im0 * in_sz, gn, cin, h, w, ty0, nr, g.pw, ld, xs, pp, v);
            for (int xi = 0; xi < 16; xi++) /* lanes past the last tile: 0 */
                for (int ci = 0; ci < cin; ci++)
                    for (size_t t = tiles; t < tend; t++) v[(size_t)xi * xs + (size_t)ci * ld + t] = 0;
            for (size_t g0 = 0; g0 < tiles; g0 += WINO_LANES) {
                int nt = tiles - g0 < WINO_LANES ? (int)(tiles - g0) : WINO_LANES;
                int lane_img[WINO_LANES];
                size_t lane_t[WINO_LANES];
                for (int l = 0; l < nt; l++) {
                    lane_img[l] = im0 + (int)((g0 + l) / bt);
                    lane_t[l] = (size_t)ty0 * g.pw + (g0 + l) % bt;
                }
                /* ξ by ξ over every channel block: the chunk's V_ξ (16 lanes × cin) stays in L1 */
                for (int xi = 0; xi < 16; xi++)
                    for (int b = 0; b < cbn; b++)
                        wino_gemm(cin, u + ((size_t)xi * cbn + b) * cin * WINO_CB, v + (size_t)xi * xs + g0, ld,
                                  m + ((size_t)xi * cbn + b) * WINO_CB * WINO_LANES);
                wino_epilogue(m, cbn, cout, nt, relu, sc, sh, lane_img, lane_t, op, y, ymo, sum, sumsq);
            }
        }
}
#else
void sg_conv2d_winograd_weights(const sg_conv2d_cfg *c, const float *restrict wt, float *restrict u) {
    (void)c, (void)wt, (void)u;
    SG_ASSERT(!"Winograd convolution not compiled in");
}

void sg_conv2d_forward_winograd(const sg_conv2d_cfg *c, int n, int h, int w, const float *restrict x,
                                const float *restrict wt, const float *restrict u_pre, const float *restrict scale,
                                const float *restrict shift, int relu, float *restrict y, float *restrict work,
                                ptrdiff_t ymo, double *sum, double *sumsq) {
    (void)c, (void)n, (void)h, (void)w, (void)x, (void)wt, (void)u_pre, (void)scale, (void)shift, (void)relu, (void)y;
    (void)work, (void)ymo, (void)sum, (void)sumsq;
    SG_ASSERT(!"Winograd convolution not compiled in");
}
#endif
