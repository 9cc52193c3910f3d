/* sg_model.h — float32 NCHW layers with forward and backward side by side,
 * networks over one flat parameter buffer, optimizers, and the classifier
 * file (.sgpm).
 *
 * Lifecycle of a network:
 *   1) sg_arch_init(&a, C, H, W); sg_arch_add_conv(&a, ...); ...   (a value)
 *   2) sg_ctx *ctx = sg_ctx_create(&a, batch_capacity);           (workspace)
 *   3) float *params = sg_xalloc_floats(a.n_params); sg_arch_init_params(&a, params, &rng);
 *      float *state  = sg_xalloc_floats(a.n_state);  sg_arch_init_state(&a, state);
 *   4) out = sg_net_forward(&a, ctx, params, state, x, n, train);
 *      sg_net_backward(&a, ctx, params, dout, dparams, dx);        (accumulates)
 *   5) sg_ctx_free(ctx);
 * The architecture never owns parameters, so the engine can run the same
 * architecture over parameters it synthesized. Gradients and optimizer
 * moments use exactly the parameter layout (offsets in sg_layer).
 *
 * Low-level ops (sg_conv2d_forward ...) are public too: the engine composes
 * them directly. Backward functions ACCUMULATE (+=) into their gradient
 * outputs; any gradient output may be NULL when not needed.
 */
#ifndef SG_MODEL_H
#define SG_MODEL_H

#include "sg_core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- low-level ops ------------------------------------------------------ */

typedef struct sg_conv2d_cfg {
    int cin, cout, k, stride, pad;
} sg_conv2d_cfg;

int sg_conv2d_out_size(int in, int k, int stride, int pad);
/* Floats of scratch that sg_conv2d_forward/backward need for n images of h×w. */
size_t sg_conv2d_work_floats(const sg_conv2d_cfg *c, int n, int h, int w);

/* Per-channel statistics of n (C, hw) maps: sg_channel_sums adds the sums of
 * x and x² to s and ss (C; each plane summed in float, planes in double);
 * sg_channel_moments turns sums over m values into the mean and the unbiased
 * variance (as batch norm keeps it). */
void sg_channel_sums(int n, int C, int hw, const float *x, double *s, double *ss);
void sg_channel_moments(int C, double m, const double *s, const double *ss, double *mean, double *var);

/* The statistics pass of a norm whose statistics are not known yet (the
 * support normalization of synthesis): conv(x) without bias; per output
 * channel the sum and the sum of squares of every output pixel are added to
 * sum and sumsq (cout each), and the 2×2 stride-2 max and min of the raw
 * output are written to y: max (N, cout, OH/2, OW/2), then min (same shape),
 * so that pool2(relu(fma(conv, s, t))) = relu(fma(s ≥ 0 ? max : min, s, t))
 * exactly, for any s, t found from the sums. OH and OW must be even. work:
 * sg_conv2d_pool_stats_work_floats floats. */
size_t sg_conv2d_pool_stats_work_floats(const sg_conv2d_cfg *c, int n, int h, int w);
void sg_conv2d_forward_pool_stats(const sg_conv2d_cfg *c, int n, int h, int w, const float *restrict x,
                                  const float *restrict wt, float *restrict y, double *sum, double *sumsq,
                                  float *restrict work);
/* x (N, cin, H, W), wt (cout, cin, k, k), b (cout) or NULL → y (N, cout, OH, OW) */
void sg_conv2d_forward(const sg_conv2d_cfg *c, int n, int h, int w, const float *restrict x,
                       const float *restrict wt, const float *restrict b, float *restrict y, float *restrict work);
/* dy (N, cout, OH, OW); accumulates dx (N, cin, H, W), dwt (cout, cin, k, k), db (cout) */
void sg_conv2d_backward(const sg_conv2d_cfg *c, int n, int h, int w, const float *restrict x,
                        const float *restrict wt, const float *restrict dy, float *restrict dx,
                        float *restrict dwt, float *restrict db, float *restrict work);

/* Batch norm over (N, C, HW). Train mode uses batch statistics, stores
 * mean and 1/std in save_mean/save_invstd (C) and updates running stats
 * (may be NULL) with momentum; eval mode uses the running stats. */
void sg_batchnorm_forward_train(int n, int c, int hw, const float *restrict x, const float *restrict gamma,
                                const float *restrict beta, float *restrict y, float *restrict save_mean,
                                float *restrict save_invstd, float *restrict run_mean, float *restrict run_var,
                                float momentum, float eps);
void sg_batchnorm_backward_train(int n, int c, int hw, const float *restrict x, const float *restrict gamma,
                                 const float *restrict save_mean, const float *restrict save_invstd,
                                 const float *restrict dy, float *restrict dx, float *restrict dgamma,
                                 float *restrict dbeta);
void sg_batchnorm_forward_eval(int n, int c, int hw, const float *restrict x, const float *restrict gamma,
                               const float *restrict beta, const float *restrict run_mean,
                               const float *restrict run_var, float eps, float *restrict y);
void sg_batchnorm_backward_eval(int n, int c, int hw, const float *restrict gamma, const float *restrict run_var,
                                float eps, const float *restrict x, const float *restrict run_mean,
                                const float *restrict dy, float *restrict dx, float *restrict dgamma,
                                float *restrict dbeta);

/* Per-channel affine y = x * scale[c] + shift[c] over (N, C, HW): the
 * normalization of a synthesized classifier (a folded batch norm). */
void sg_affine_forward(int n, int c, int hw, const float *restrict x, const float *restrict scale,
                       const float *restrict shift, float *restrict y);
void sg_affine_backward(int n, int c, int hw, const float *restrict x, const float *restrict scale,
                        const float *restrict dy, float *restrict dx, float *restrict dscale, float *restrict dshift);

void sg_relu_forward(size_t n, const float *restrict x, float *restrict y);
/* Uses the forward OUTPUT y (or input: same sign pattern). */
void sg_relu_backward(size_t n, const float *restrict y, const float *restrict dy, float *restrict dx);
void sg_silu_forward(size_t n, const float *restrict x, float *restrict y);
void sg_silu_backward(size_t n, const float *restrict x, const float *restrict dy, float *restrict dx);

/* Pools over (N*C) planes; argmax (int32, one per output) records the winner. */
void sg_maxpool_forward(int nc, int h, int w, int k, int stride, const float *restrict x, float *restrict y,
                        int32_t *restrict argmax);
void sg_maxpool_backward(int nc, int h, int w, int k, int stride, const int32_t *restrict argmax,
                         const float *restrict dy, float *restrict dx);
void sg_avgpool_forward(int nc, int h, int w, int k, int stride, const float *restrict x, float *restrict y);
void sg_avgpool_backward(int nc, int h, int w, int k, int stride, const float *restrict dy, float *restrict dx);
/* Global average pool (N*C planes of hw) → (N*C). */
void sg_gap_forward(int nc, int hw, const float *restrict x, float *restrict y);
void sg_gap_backward(int nc, int hw, const float *restrict dy, float *restrict dx);

/* Centred L2 normalization of rows: x (N, C), center (C) or NULL →
 * y = (x - center) / sqrt(|x - center|² + eps). */
void sg_l2norm_forward(int n, int c, const float *restrict x, const float *restrict center, float eps,
                       float *restrict y);
void sg_l2norm_backward(int n, int c, const float *restrict x, const float *restrict center, float eps,
                        const float *restrict dy, float *restrict dx, float *restrict dcenter);

/* x (N, in), wt (out, in), b (out) or NULL → y (N, out) */
void sg_linear_forward(int n, int in, int out, const float *restrict x, const float *restrict wt,
                       const float *restrict b, float *restrict y);
void sg_linear_backward(int n, int in, int out, const float *restrict x, const float *restrict wt,
                        const float *restrict dy, float *restrict dx, float *restrict dwt, float *restrict db);

/* Mean softmax cross-entropy of logits (N, K) against labels (N), in [0, K).
 * Writes dlogits (N, K) = d(mean loss)/d(logits) when non-NULL (overwrites,
 * scaled by `scale`, usually 1), and probs (N, K) when non-NULL. */
float sg_softmax_xent(int n, int k, const float *restrict logits, const int *restrict labels, float scale,
                      float *restrict dlogits, float *restrict probs);
void sg_softmax(int n, int k, const float *restrict logits, float *restrict probs);
/* Distillation: mean over the N rows of T^2 KL(target || softmax(logits / T)),
 * target (N, K) a probability row each (e.g. teachers' softmax at T). Writes
 * dlogits (N, K) = scale x d(mean loss)/d(logits) = scale T (softmax(logits / T)
 * - target) / N when non-NULL (overwrites). */
float sg_softmax_distill(int n, int k, const float *restrict logits, const float *restrict target, float t,
                         float scale, float *restrict dlogits);

/* ---- networks ----------------------------------------------------------- */

#define SG_MAX_LAYERS 64
#define SG_L2NORM_EPS 1e-6f

typedef enum sg_layer_kind {
    SG_LAYER_CONV2D = 1,
    SG_LAYER_BATCHNORM = 2, /* params gamma, beta; state running mean, var */
    SG_LAYER_AFFINE = 3,    /* params scale, shift */
    SG_LAYER_RELU = 4,
    SG_LAYER_SILU = 5,
    SG_LAYER_MAXPOOL = 6,
    SG_LAYER_AVGPOOL = 7,
    SG_LAYER_GAP = 8,    /* (N, C, H, W) → (N, C, 1, 1) */
    SG_LAYER_LINEAR = 9, /* (N, in) → (N, out) */
    SG_LAYER_L2NORM = 10 /* (N, C) → (N, C); params center (C); eps 1e-6 */
} sg_layer_kind;

const char *sg_layer_kind_name(sg_layer_kind k);

typedef struct sg_layer {
    sg_layer_kind kind;
    int cin, cout;         /* channels (features for linear) in and out */
    int k, stride, pad;    /* conv / pool geometry */
    int has_bias;          /* conv, linear */
    int in_h, in_w, out_h, out_w;
    size_t param_off, n_params; /* into the flat parameter buffer */
    size_t state_off, n_state;  /* into the state buffer (running stats) */
} sg_layer;

typedef struct sg_arch {
    int in_c, in_h, in_w;
    int n_layers;
    sg_layer layers[SG_MAX_LAYERS];
    size_t n_params, n_state;
    float bn_eps, bn_momentum;
} sg_arch;

void sg_arch_init(sg_arch *a, int c, int h, int w);
/* Each add returns the layer index; shape errors abort (our own code's contract). */
int sg_arch_add_conv(sg_arch *a, int cout, int k, int stride, int pad, int has_bias);
int sg_arch_add_batchnorm(sg_arch *a);
int sg_arch_add_affine(sg_arch *a);
int sg_arch_add_relu(sg_arch *a);
int sg_arch_add_silu(sg_arch *a);
int sg_arch_add_maxpool(sg_arch *a, int k, int stride);
int sg_arch_add_avgpool(sg_arch *a, int k, int stride);
int sg_arch_add_gap(sg_arch *a);
int sg_arch_add_linear(sg_arch *a, int out, int has_bias);
int sg_arch_add_l2norm(sg_arch *a); /* flattens like linear */
/* Output features per image of the last layer. */
int sg_arch_out_features(const sg_arch *a);
/* Output features per image after layer i (C*H*W). */
size_t sg_arch_layer_out_floats(const sg_arch *a, int i);
/* The Conv4 backbone: `stages` × [conv3×3 `width` (no bias), norm, ReLU, maxpool 2],
 * GAP, then a linear head of `classes` outputs when classes > 0.
 * norm is SG_LAYER_BATCHNORM or SG_LAYER_AFFINE. */
void sg_arch_conv4(sg_arch *a, int in_c, int in_hw, int width, int stages, sg_layer_kind norm, int classes);
/* One stage: n units [conv3×3 `width` (no bias), norm, ReLU], then max pool 2. */
void sg_arch_add_stage(sg_arch *a, int width, int n, sg_layer_kind norm);
/* The same with convs[s] units in stage s (convs NULL: one each, i.e.
 * sg_arch_conv4). */
void sg_arch_convnet(sg_arch *a, int in_c, int in_hw, int width, int stages, const int *convs, sg_layer_kind norm,
                     int classes);

/* He-normal conv/linear weights, zero biases, gamma/scale 1, beta/shift 0. */
void sg_arch_init_params(const sg_arch *a, float *params, sg_rng *rng);
/* Running mean 0, running var 1. */
void sg_arch_init_state(const sg_arch *a, float *state);
/* 1 for parameters that take weight decay (conv/linear weights), 0 otherwise. */
void sg_arch_decay_mask(const sg_arch *a, uint8_t *mask);

typedef struct sg_ctx sg_ctx; /* opaque: activations and scratch for up to batch_cap images */
sg_ctx *sg_ctx_create(const sg_arch *a, int batch_cap);
void sg_ctx_free(sg_ctx *ctx);
int sg_ctx_batch_cap(const sg_ctx *ctx);

/* Runs x (n, in_c, in_h, in_w) through the network; returns the output
 * (n, out_features), owned by ctx and valid until the next forward.
 * train = 1: batch norm uses batch statistics and updates `state` (may be
 * NULL then); train = 0: running statistics. */
const float *sg_net_forward(const sg_arch *a, sg_ctx *ctx, const float *params, float *state, const float *x,
                            int n, int train);
/* Output of layer i from the last forward (n, layer_out_floats). */
const float *sg_net_activation(const sg_ctx *ctx, int i);
/* Backward of the last forward: dout (n, out_features); accumulates dparams
 * (n_params) and dx (n, in) when non-NULL. Backward through layers
 * [first_layer, n_layers): pass first_layer = 0 normally. */
void sg_net_backward(const sg_arch *a, sg_ctx *ctx, const float *params, const float *state, const float *dout,
                     float *dparams, float *dx);
/* Backward starting from the output of layer `from_layer` (inclusive) with
 * gradient dact (n, layer_out_floats(from_layer)). */
void sg_net_backward_from(const sg_arch *a, sg_ctx *ctx, const float *params, const float *state, int from_layer,
                          const float *dact, float *dparams, float *dx);

/* ---- optimizers --------------------------------------------------------- */
/* All over flat buffers of n floats; mask (nullable) selects weight decay. */
void sg_sgd_step(size_t n, float *restrict params, const float *restrict grads, float *restrict mom, float lr,
                 float momentum, float weight_decay, const uint8_t *restrict decay_mask);
/* AdamW, step t counted from 1; decoupled weight decay. */
void sg_adamw_step(size_t n, float *restrict params, const float *restrict grads, float *restrict m,
                   float *restrict v, long t, float lr, float beta1, float beta2, float eps, float weight_decay,
                   const uint8_t *restrict decay_mask);

/* ---- classifier file (.sgpm) -------------------------------------------- */

#define SG_SGPM_VERSION 1
#define SG_MAX_CLASSES 1024
#define SG_MAX_NAME 256

/* A standalone classifier: architecture, input preprocessing, class names,
 * parameters and running statistics. */
typedef struct sg_classifier {
    sg_arch arch;
    float mean[3], std[3]; /* input normalization per RGB channel */
    int n_classes;
    char **class_names;    /* n_classes strings */
    float *params;         /* arch.n_params */
    float *state;          /* arch.n_state */
    char *meta_json;       /* optional free-form JSON (task id, engine hash), or NULL */
} sg_classifier;

/* Deep-copies arch, params, state and names. */
sg_classifier *sg_classifier_create(const sg_arch *arch, const float mean[3], const float std[3], int n_classes,
                                    const char *const *class_names, const float *params, const float *state);
void sg_classifier_free(sg_classifier *c);
/* Serialization to bytes (for hashing / MPI) and to a file written atomically. */
void sg_classifier_serialize(const sg_classifier *c, sg_buf *out);
sg_status sg_classifier_save(const sg_classifier *c, const char *path, sg_err *err);
/* `name` is used in messages (the file path). */
sg_status sg_classifier_deserialize(const uint8_t *data, size_t len, const char *name, sg_classifier **out,
                                    sg_err *err);
sg_status sg_classifier_load(const char *path, sg_classifier **out, sg_err *err);

#ifdef __cplusplus
}
#endif
#endif
