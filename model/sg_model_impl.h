/* sg_model_impl.h — model/'s private declarations: the fused eval-mode
 * convolution used by sg_net_forward's inference path, and a per-layer
 * profile for bench_forward. Not part of the public API. */
#ifndef SG_MODEL_IMPL_H
#define SG_MODEL_IMPL_H

#include "sg_model.h"

#include <stddef.h>

/* v rounded up to a multiple of 16 (floats: one 64-byte line). */
static inline size_t sg_round16(size_t v) { return (v + 15) & ~(size_t)15; }

/* Eval-mode conv with its epilogue applied while the GEMM output is still in
 * cache: y = pool2(relu(conv(x) * scale[o] + shift[o])).
 * x (N, cin, H, W), wt (cout, cin, k, k); scale (cout) or NULL (1), shift
 * (cout) or NULL (0) — a conv bias is folded into shift by the caller;
 * relu 0/1; pool2 1: 2×2 stride-2 max pool → y (N, cout, OH/2, OW/2),
 * else y (N, cout, OH, OW). work: sg_conv2d_work_floats floats. */
void sg_conv2d_forward_fused(const sg_conv2d_cfg *c, int n, int h, int w, const float *restrict x,
                             const float *restrict wt, const float *restrict scale, const float *restrict shift,
                             int relu, int pool2, float *restrict y, float *restrict work);

/* The im2col + SGEMM forwards, same contracts as sg_conv2d_forward and
 * sg_conv2d_forward_fused: what those run when the direct path does not
 * apply, and the reference the tests hold the direct path to. */
void sg_conv2d_forward_im2col(const sg_conv2d_cfg *c, int n, int h, int w, const float *restrict x,
                              const float *restrict wt, const float *restrict b, float *restrict y,
                              float *restrict work);
void sg_conv2d_forward_fused_im2col(const sg_conv2d_cfg *c, int n, int h, int w, const float *restrict x,
                                    const float *restrict wt, const float *restrict scale,
                                    const float *restrict shift, int relu, int pool2, float *restrict y,
                                    float *restrict work);
/* 1 when the forwards of c take the direct path (AVX2+FMA build, stride 1,
 * kernel > 1, OpenBLAS on one thread), 0 for im2col + SGEMM. */
int sg_conv2d_uses_direct(const sg_conv2d_cfg *c);

/* The pooled 3×3 units (stride 1, padding 1, ≥ 8 input channels, followed by
 * the 2×2 max pool) run Winograd F(2×2, 3×3) in sg_conv2d_forward_fused and
 * sg_conv2d_forward_pool_stats (sg_conv_winograd.c) when the build has
 * AVX2+FMA and OpenBLAS is on one thread. sg_conv2d_uses_winograd says
 * whether a unit on h×w input would; sg_conv2d_set_winograd(0) turns the
 * path off (benchmarks and tests compare the two), 1 back on (the default).
 * sg_conv2d_forward_winograd has the direct kernel's pooled contract (relu 2:
 * the statistics mode, min at y + ymo, sums added to sum and sumsq);
 * its work is sg_conv2d_winograd_work_floats floats. It transforms the
 * weights wt itself unless u_pre holds them transformed already
 * (sg_conv2d_winograd_weights, sg_conv2d_winograd_weights_floats floats):
 * the eval forward transforms each unit's weights once per call rather than
 * once per chunk of images. */
int sg_conv2d_uses_winograd(const sg_conv2d_cfg *c, int h, int w);
void sg_conv2d_set_winograd(int on);
size_t sg_conv2d_winograd_work_floats(const sg_conv2d_cfg *c, int n, int h, int w);
size_t sg_conv2d_winograd_weights_floats(const sg_conv2d_cfg *c);
void sg_conv2d_winograd_weights(const sg_conv2d_cfg *c, const float *restrict wt, float *restrict u);
void sg_conv2d_forward_winograd(const sg_conv2d_cfg *c, int n, int h, int w, const float *restrict x,
                                const float *restrict wt, const float *restrict u_pre, const float *restrict scale,
                                const float *restrict shift, int relu, float *restrict y, float *restrict work,
                                ptrdiff_t ymo, double *sum, double *sumsq);
/* sg_conv2d_forward_fused with the Winograd weights transformed already
 * (u_pre, NULL: transform them if the call takes the Winograd path). */
void sg_conv2d_forward_fused_pre(const sg_conv2d_cfg *c, int n, int h, int w, const float *restrict x,
                                 const float *restrict wt, const float *restrict u_pre, const float *restrict scale,
                                 const float *restrict shift, int relu, int pool2, float *restrict y,
                                 float *restrict work);

/* Per-layer seconds of eval-mode forwards (accumulated). A layer computed
 * inside another's fused op has fused_into = that layer's index and no time
 * of its own; otherwise fused_into = -1. */
typedef struct sg_net_profile {
    double secs[SG_MAX_LAYERS];
    int fused_into[SG_MAX_LAYERS];
} sg_net_profile;

/* p (nullable) stays owned by the caller and must outlive its use. */
void sg_ctx_set_profile(sg_ctx *c, sg_net_profile *p);

#endif
