/* sg_net.c — architectures as ordered layer lists over one flat parameter
 * buffer, their workspaces, and forward/backward through the whole list.
 * The architecture owns no parameters: the engine runs the same architecture
 * over parameters it synthesized.
 *
 * Eval-mode forwards take an inference path: images go through the whole
 * network a few at a time (activations stay in cache), and each conv is fused
 * with the norm, ReLU and 2×2 max pool after it (sg_conv2d_forward_fused).
 * Only the output is kept; the per-layer activations are recomputed by the
 * plain forward the first time sg_net_activation or a backward asks for them
 * (the "lazy" state), so the public contract is unchanged. */
#include "sg_model_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *sg_layer_kind_name(sg_layer_kind k) {
    switch (k) {
    case SG_LAYER_CONV2D: return "conv2d";
    case SG_LAYER_BATCHNORM: return "batchnorm";
    case SG_LAYER_AFFINE: return "affine";
    case SG_LAYER_RELU: return "relu";
    case SG_LAYER_SILU: return "silu";
    case SG_LAYER_MAXPOOL: return "maxpool";
    case SG_LAYER_AVGPOOL: return "avgpool";
    case SG_LAYER_GAP: return "gap";
    case SG_LAYER_LINEAR: return "linear";
    case SG_LAYER_L2NORM: return "l2norm";
    }
    return "unknown";
}

void sg_arch_init(sg_arch *a, int c, int h, int w) {
    memset(a, 0, sizeof *a);
    SG_ASSERT(c > 0 && h > 0 && w > 0);
    a->in_c = c;
    a->in_h = h;
    a->in_w = w;
    a->bn_eps = 1e-5f;
    a->bn_momentum = 0.1f;
}

static sg_layer *push(sg_arch *a, sg_layer_kind kind) {
    SG_ASSERT(a->n_layers < SG_MAX_LAYERS);
    sg_layer *l = &a->layers[a->n_layers];
    memset(l, 0, sizeof *l);
    l->kind = kind;
    if (a->n_layers == 0) {
        l->cin = a->in_c;
        l->in_h = a->in_h;
        l->in_w = a->in_w;
    } else {
        const sg_layer *p = &a->layers[a->n_layers - 1];
        l->cin = p->cout;
        l->in_h = p->out_h;
        l->in_w = p->out_w;
    }
    l->cout = l->cin;
    l->out_h = l->in_h;
    l->out_w = l->in_w;
    l->param_off = a->n_params;
    l->state_off = a->n_state;
    return l;
}

static int finish(sg_arch *a, sg_layer *l) {
    a->n_params += l->n_params;
    a->n_state += l->n_state;
    return a->n_layers++;
}

int sg_arch_add_conv(sg_arch *a, int cout, int k, int stride, int pad, int has_bias) {
    sg_layer *l = push(a, SG_LAYER_CONV2D);
    SG_ASSERT(cout > 0 && k > 0 && stride > 0 && pad >= 0);
    /* C division truncates toward zero: without this, a kernel larger than the
     * padded input would still get an output size of 1. */
    SG_ASSERT(l->in_h + 2 * pad >= k && l->in_w + 2 * pad >= k);
    l->cout = cout;
    l->k = k;
    l->stride = stride;
    l->pad = pad;
    l->has_bias = has_bias;
    l->out_h = sg_conv2d_out_size(l->in_h, k, stride, pad);
    l->out_w = sg_conv2d_out_size(l->in_w, k, stride, pad);
    SG_ASSERT(l->out_h > 0 && l->out_w > 0);
    l->n_params = (size_t)cout * l->cin * k * k + (has_bias ? (size_t)cout : 0);
    return finish(a, l);
}

int sg_arch_add_batchnorm(sg_arch *a) {
    sg_layer *l = push(a, SG_LAYER_BATCHNORM);
    l->n_params = 2 * (size_t)l->cin;
    l->n_state = 2 * (size_t)l->cin;
    return finish(a, l);
}

int sg_arch_add_affine(sg_arch *a) {
    sg_layer *l = push(a, SG_LAYER_AFFINE);
    l->n_params = 2 * (size_t)l->cin;
    return finish(a, l);
}

int sg_arch_add_relu(sg_arch *a) { return finish(a, push(a, SG_LAYER_RELU)); }
int sg_arch_add_silu(sg_arch *a) { return finish(a, push(a, SG_LAYER_SILU)); }

static int add_pool(sg_arch *a, sg_layer_kind kind, int k, int stride) {
    sg_layer *l = push(a, kind);
    SG_ASSERT(k > 0 && stride > 0 && l->in_h >= k && l->in_w >= k);
    l->k = k;
    l->stride = stride;
    l->out_h = (l->in_h - k) / stride + 1;
    l->out_w = (l->in_w - k) / stride + 1;
    return finish(a, l);
}
int sg_arch_add_maxpool(sg_arch *a, int k, int stride) { return add_pool(a, SG_LAYER_MAXPOOL, k, stride); }
int sg_arch_add_avgpool(sg_arch *a, int k, int stride) { return add_pool(a, SG_LAYER_AVGPOOL, k, stride); }

int sg_arch_add_gap(sg_arch *a) {
    sg_layer *l = push(a, SG_LAYER_GAP);
    l->out_h = l->out_w = 1;
    return finish(a, l);
}

int sg_arch_add_linear(sg_arch *a, int out, int has_bias) {
    sg_layer *l = push(a, SG_LAYER_LINEAR);
    l->cin = l->cin * l->in_h * l->in_w; /* flattens */
    l->in_h = l->in_w = 1;
    l->cout = out;
    l->out_h = l->out_w = 1;
    l->has_bias = has_bias;
    l->n_params = (size_t)out * l->cin + (has_bias ? (size_t)out : 0);
    return finish(a, l);
}

int sg_arch_add_l2norm(sg_arch *a) {
    sg_layer *l = push(a, SG_LAYER_L2NORM);
    l->cin = l->cin * l->in_h * l->in_w;
    l->cout = l->cin;
    l->in_h = l->in_w = l->out_h = l->out_w = 1;
    l->n_params = (size_t)l->cin;
    return finish(a, l);
}

size_t sg_arch_layer_out_floats(const sg_arch *a, int i) {
    const sg_layer *l = &a->layers[i];
    return (size_t)l->cout * l->out_h * l->out_w;
}

int sg_arch_out_features(const sg_arch *a) {
    if (a->n_layers == 0) return a->in_c * a->in_h * a->in_w;
    return (int)sg_arch_layer_out_floats(a, a->n_layers - 1);
}

void sg_arch_add_stage(sg_arch *a, int width, int n, sg_layer_kind norm) {
    SG_ASSERT(n >= 1);
    for (int j = 0; j < n; j++) {
        sg_arch_add_conv(a, width, 3, 1, 1, 0);
        if (norm == SG_LAYER_BATCHNORM) sg_arch_add_batchnorm(a);
        else sg_arch_add_affine(a);
        sg_arch_add_relu(a);
    }
    sg_arch_add_maxpool(a, 2, 2);
}

void sg_arch_convnet(sg_arch *a, int in_c, int in_hw, int width, int stages, const int *convs, sg_layer_kind norm,
                     int classes) {
    sg_arch_init(a, in_c, in_hw, in_hw);
    for (int s = 0; s < stages; s++) sg_arch_add_stage(a, width, convs ? convs[s] : 1, norm);
    sg_arch_add_gap(a);
    if (classes > 0) sg_arch_add_linear(a, classes, 1);
}

void sg_arch_conv4(sg_arch *a, int in_c, int in_hw, int width, int stages, sg_layer_kind norm, int classes) {
    sg_arch_convnet(a, in_c, in_hw, width, stages, NULL, norm, classes);
}

void sg_arch_init_params(const sg_arch *a, float *params, sg_rng *rng) {
    for (int i = 0; i < a->n_layers; i++) {
        const sg_layer *l = &a->layers[i];
        float *p = params + l->param_off;
        switch (l->kind) {
        case SG_LAYER_CONV2D:
        case SG_LAYER_LINEAR: {
            size_t fan_in = l->kind == SG_LAYER_CONV2D ? (size_t)l->cin * l->k * l->k : (size_t)l->cin;
            size_t nw = (size_t)l->cout * fan_in;
            float sd = sqrtf(2.0f / (float)fan_in);
            for (size_t j = 0; j < nw; j++) p[j] = sd * sg_rng_normal(rng);
            if (l->has_bias) memset(p + nw, 0, sizeof(float) * (size_t)l->cout);
            break;
        }
        case SG_LAYER_BATCHNORM:
        case SG_LAYER_AFFINE:
            for (int c = 0; c < l->cin; c++) {
                p[c] = 1.0f;
                p[l->cin + c] = 0.0f;
            }
            break;
        default: break;
        }
    }
}

void sg_arch_init_state(const sg_arch *a, float *state) {
    for (int i = 0; i < a->n_layers; i++) {
        const sg_layer *l = &a->layers[i];
        if (l->kind != SG_LAYER_BATCHNORM) continue;
        for (int c = 0; c < l->cin; c++) {
            state[l->state_off + c] = 0.0f;
            state[l->state_off + l->cin + c] = 1.0f;
        }
    }
}

void sg_arch_decay_mask(const sg_arch *a, uint8_t *mask) {
    memset(mask, 0, a->n_params);
    for (int i = 0; i < a->n_layers; i++) {
        const sg_layer *l = &a->layers[i];
        if (l->kind != SG_LAYER_CONV2D && l->kind != SG_LAYER_LINEAR) continue;
        size_t nw = l->n_params - (l->has_bias ? (size_t)l->cout : 0);
        memset(mask + l->param_off, 1, nw);
    }
}

/* ---- workspace ---- */

/* Images per inference chunk: enough for the deep convs' GEMMs to stay
 * wide, few enough that a chunk's activations fit in the L2/L3 caches. */
#define SG_EVAL_CHUNK 8

struct sg_ctx {
    int batch_cap, n_layers, n;
    const sg_arch *arch;  /* of the last forward (caller-owned) */
    const float *x;       /* input of the last forward (caller-owned) */
    const float *params;  /* of the last forward, for recomputing activations */
    const float *state;
    float *act[SG_MAX_LAYERS];      /* (batch_cap, layer_out_floats); allocated on first need */
    size_t act_floats[SG_MAX_LAYERS];
    float *save[SG_MAX_LAYERS];     /* batch norm: mean (C), invstd (C) */
    int32_t *argmax[SG_MAX_LAYERS]; /* max pool */
    float *work;
    size_t max_act;
    float *g0, *g1; /* ping-pong gradient buffers, allocated on first backward */
    int train;
    int lazy; /* last forward was eval: act[0 .. n_layers-2] not computed */
    int chunk;
    float *e0, *e1;    /* (chunk, max_act) inference ping-pong */
    int32_t *eargmax;  /* (chunk, max_act) argmax scratch of unfused max pools */
    float *escale;     /* (2, max channels) folded norm scale and shift */
    float *wino_u[SG_MAX_LAYERS]; /* a Winograd unit's transformed weights, for
                                   * the chunks of one eval forward; allocated
                                   * on the first forward of more than a chunk */
    sg_net_profile *prof;
};

sg_ctx *sg_ctx_create(const sg_arch *a, int batch_cap) {
    SG_ASSERT(batch_cap > 0);
    sg_ctx *c = sg_xcalloc(1, sizeof *c);
    c->batch_cap = batch_cap;
    c->n_layers = a->n_layers;
    c->chunk = batch_cap < SG_EVAL_CHUNK ? batch_cap : SG_EVAL_CHUNK;
    size_t max_act = (size_t)a->in_c * a->in_h * a->in_w, work = 16, max_c = 1;
    for (int i = 0; i < a->n_layers; i++) {
        const sg_layer *l = &a->layers[i];
        size_t of = sg_arch_layer_out_floats(a, i);
        if (of > max_act) max_act = of;
        if ((size_t)l->cout > max_c) max_c = (size_t)l->cout;
        c->act_floats[i] = of;
        if (l->kind == SG_LAYER_BATCHNORM) c->save[i] = sg_xalloc_floats(2 * (size_t)l->cin);
        if (l->kind == SG_LAYER_CONV2D) {
            sg_conv2d_cfg cc = {l->cin, l->cout, l->k, l->stride, l->pad};
            size_t wf = sg_conv2d_work_floats(&cc, batch_cap, l->in_h, l->in_w);
            if (wf > work) work = wf;
        }
    }
    if (a->n_layers > 0) c->act[a->n_layers - 1] = sg_xalloc_floats(c->act_floats[a->n_layers - 1] * batch_cap);
    c->max_act = max_act;
    c->work = sg_xalloc_floats(work);
    c->e0 = sg_xalloc_floats(max_act * c->chunk);
    c->e1 = sg_xalloc_floats(max_act * c->chunk);
    c->eargmax = sg_xcalloc(max_act * c->chunk, sizeof(int32_t));
    c->escale = sg_xalloc_floats(2 * max_c);
    return c;
}

/* Activations of every layer: needed by train forwards and backwards only. */
static void ensure_acts(const sg_arch *a, sg_ctx *c) {
    for (int i = 0; i < a->n_layers; i++) {
        if (!c->act[i]) c->act[i] = sg_xalloc_floats(c->act_floats[i] * c->batch_cap);
        if (a->layers[i].kind == SG_LAYER_MAXPOOL && !c->argmax[i])
            c->argmax[i] = sg_xcalloc(c->act_floats[i] * c->batch_cap, sizeof(int32_t));
    }
}

void sg_ctx_free(sg_ctx *c) {
    if (!c) return;
    for (int i = 0; i < c->n_layers; i++) {
        free(c->act[i]);
        free(c->save[i]);
        free(c->argmax[i]);
        free(c->wino_u[i]);
    }
    free(c->work);
    free(c->g0);
    free(c->g1);
    free(c->e0);
    free(c->e1);
    free(c->eargmax);
    free(c->escale);
    free(c);
}

void sg_ctx_set_profile(sg_ctx *c, sg_net_profile *p) {
    c->prof = p;
    if (!p) return;
    for (int i = 0; i < SG_MAX_LAYERS; i++) {
        p->secs[i] = 0;
        p->fused_into[i] = -1;
    }
}

int sg_ctx_batch_cap(const sg_ctx *c) { return c->batch_cap; }

/* One layer over n images, in → y. argmax: the max pool's winners. */
static void layer_forward(const sg_arch *a, const sg_layer *l, int n, const float *p, float *state, float *save,
                          int32_t *argmax, float *work, const float *in, float *y, int train) {
    int hw = l->in_h * l->in_w;
    switch (l->kind) {
    case SG_LAYER_CONV2D: {
        sg_conv2d_cfg cc = {l->cin, l->cout, l->k, l->stride, l->pad};
        const float *b = l->has_bias ? p + (size_t)l->cout * l->cin * l->k * l->k : NULL;
        sg_conv2d_forward(&cc, n, l->in_h, l->in_w, in, p, b, y, work);
        break;
    }
    case SG_LAYER_BATCHNORM: {
        float *rm = state ? state + l->state_off : NULL, *rv = state ? rm + l->cin : NULL;
        if (train)
            sg_batchnorm_forward_train(n, l->cin, hw, in, p, p + l->cin, y, save, save + l->cin, rm, rv,
                                       a->bn_momentum, a->bn_eps);
        else {
            SG_ASSERT(state);
            sg_batchnorm_forward_eval(n, l->cin, hw, in, p, p + l->cin, rm, rv, a->bn_eps, y);
        }
        break;
    }
    case SG_LAYER_AFFINE: sg_affine_forward(n, l->cin, hw, in, p, p + l->cin, y); break;
    case SG_LAYER_RELU: sg_relu_forward((size_t)n * l->cin * hw, in, y); break;
    case SG_LAYER_SILU: sg_silu_forward((size_t)n * l->cin * hw, in, y); break;
    case SG_LAYER_MAXPOOL: sg_maxpool_forward(n * l->cin, l->in_h, l->in_w, l->k, l->stride, in, y, argmax); break;
    case SG_LAYER_AVGPOOL: sg_avgpool_forward(n * l->cin, l->in_h, l->in_w, l->k, l->stride, in, y); break;
    case SG_LAYER_GAP: sg_gap_forward(n * l->cin, hw, in, y); break;
    case SG_LAYER_LINEAR: {
        const float *b = l->has_bias ? p + (size_t)l->cout * l->cin : NULL;
        sg_linear_forward(n, l->cin, l->cout, in, p, b, y);
        break;
    }
    case SG_LAYER_L2NORM: sg_l2norm_forward(n, l->cin, in, p, SG_L2NORM_EPS, y); break;
    }
}

/* Every layer over the whole batch, keeping every activation. */
static void forward_plain(const sg_arch *a, sg_ctx *c, const float *params, float *state, const float *x, int n,
                          int train) {
    ensure_acts(a, c);
    const float *in = x;
    for (int i = 0; i < a->n_layers; i++) {
        const sg_layer *l = &a->layers[i];
        layer_forward(a, l, n, params + l->param_off, state, c->save[i], c->argmax[i], c->work, in, c->act[i],
                      train);
        in = c->act[i];
    }
    c->lazy = 0;
}

/* Layers [i, end) that one fused conv computes: conv, then optionally a norm,
 * a ReLU and a 2×2/2 max pool, in that order. Fills scale/shift (NULL when
 * not needed) with the folded norm and conv bias. */
static int fuse_conv(const sg_arch *a, int i, const float *params, const float *state, float *buf, int *relu,
                     int *pool2, const float **scale, const float **shift) {
    const sg_layer *l = &a->layers[i];
    const float *p = params + l->param_off;
    const float *bias = l->has_bias ? p + (size_t)l->cout * l->cin * l->k * l->k : NULL;
    int j = i + 1, co = l->cout;
    *relu = *pool2 = 0;
    *scale = NULL;
    *shift = bias;
    if (j < a->n_layers && (a->layers[j].kind == SG_LAYER_BATCHNORM || a->layers[j].kind == SG_LAYER_AFFINE)) {
        const sg_layer *nl = &a->layers[j];
        const float *np = params + nl->param_off;
        float *sc = buf, *sh = buf + co;
        for (int o = 0; o < co; o++) {
            if (nl->kind == SG_LAYER_BATCHNORM) {
                SG_ASSERT(state);
                const float *rm = state + nl->state_off, *rv = rm + co;
                sc[o] = np[o] / sqrtf(rv[o] + a->bn_eps);
                sh[o] = np[co + o] - rm[o] * sc[o];
            } else {
                sc[o] = np[o];
                sh[o] = np[co + o];
            }
            if (bias) sh[o] += bias[o] * sc[o];
        }
        *scale = sc;
        *shift = sh;
        j++;
    }
    if (j < a->n_layers && a->layers[j].kind == SG_LAYER_RELU) {
        *relu = 1;
        j++;
    }
    if (j < a->n_layers && a->layers[j].kind == SG_LAYER_MAXPOOL && a->layers[j].k == 2 && a->layers[j].stride == 2) {
        *pool2 = 1;
        j++;
    }
    return j;
}

/* Eval mode, chunk by chunk; only the last layer's output is stored. */
static void forward_eval(const sg_arch *a, sg_ctx *c, const float *params, float *state, const float *x, int n) {
    int L = a->n_layers;
    size_t in_f = (size_t)a->in_c * a->in_h * a->in_w, out_f = c->act_floats[L - 1];
    for (int i0 = 0; i0 < n; i0 += c->chunk) {
        int cn = n - i0 < c->chunk ? n - i0 : c->chunk;
        const float *in = x + i0 * in_f;
        for (int i = 0; i < L;) {
            const sg_layer *l = &a->layers[i];
            double t0 = c->prof ? sg_now() : 0;
            int end = i + 1, relu = 0, pool2 = 0;
            const float *scale = NULL, *shift = NULL;
            if (l->kind == SG_LAYER_CONV2D)
                end = fuse_conv(a, i, params, state, c->escale, &relu, &pool2, &scale, &shift);
            float *y = end == L ? c->act[L - 1] + i0 * out_f : (in == c->e0 ? c->e1 : c->e0);
            if (end > i + 1) {
                sg_conv2d_cfg cc = {l->cin, l->cout, l->k, l->stride, l->pad};
                /* more than one chunk: a Winograd unit's weights are transformed
                 * at the first chunk and reused by the others */
                const float *u_pre = NULL;
                if (pool2 && n > c->chunk && sg_conv2d_uses_winograd(&cc, l->in_h, l->in_w)) {
                    if (!c->wino_u[i]) c->wino_u[i] = sg_xalloc_floats(sg_conv2d_winograd_weights_floats(&cc));
                    if (i0 == 0) sg_conv2d_winograd_weights(&cc, params + l->param_off, c->wino_u[i]);
                    u_pre = c->wino_u[i];
                }
                sg_conv2d_forward_fused_pre(&cc, cn, l->in_h, l->in_w, in, params + l->param_off, u_pre, scale, shift,
                                            relu, pool2, y, c->work);
            } else {
                layer_forward(a, l, cn, params + l->param_off, state, NULL, c->eargmax, c->work, in, y, 0);
            }
            if (c->prof) {
                c->prof->secs[i] += sg_now() - t0;
                for (int j = i + 1; j < end; j++) c->prof->fused_into[j] = i;
            }
            in = y;
            i = end;
        }
    }
    c->lazy = 1;
}

/* Recomputes the activations an eval forward skipped. */
static void materialize(sg_ctx *c) {
    if (c->lazy) forward_plain(c->arch, c, c->params, (float *)c->state, c->x, c->n, 0);
}

const float *sg_net_activation(const sg_ctx *c, int i) {
    /* The context is caller-owned heap memory; filling it in lazily is safe. */
    materialize((sg_ctx *)c);
    return c->act[i];
}

const float *sg_net_forward(const sg_arch *a, sg_ctx *c, const float *params, float *state, const float *x, int n,
                            int train) {
    SG_ASSERT(n > 0 && n <= c->batch_cap && c->n_layers == a->n_layers);
    c->arch = a;
    c->x = x;
    c->n = n;
    c->train = train;
    c->params = params;
    c->state = state;
    if (a->n_layers == 0) return x;
    if (train) forward_plain(a, c, params, state, x, n, 1);
    else forward_eval(a, c, params, state, x, n);
    return c->act[a->n_layers - 1];
}

void sg_net_backward_from(const sg_arch *a, sg_ctx *c, const float *params, const float *state, int from_layer,
                          const float *dact, float *dparams, float *dx) {
    int n = c->n;
    SG_ASSERT(from_layer >= 0 && from_layer < a->n_layers);
    materialize(c);
    if (!c->g0) {
        c->g0 = sg_xalloc_floats(c->max_act * c->batch_cap);
        c->g1 = sg_xalloc_floats(c->max_act * c->batch_cap);
    }
    const float *g = dact;
    for (int i = from_layer; i >= 0; i--) {
        const sg_layer *l = &a->layers[i];
        const float *in = i == 0 ? c->x : c->act[i - 1];
        const float *p = params + l->param_off;
        float *dp = dparams ? dparams + l->param_off : NULL;
        int hw = l->in_h * l->in_w;
        size_t in_n = (size_t)n * l->cin * hw;
        float *din;
        if (i == 0) {
            din = dx;
        } else {
            din = (g == c->g0) ? c->g1 : c->g0;
            memset(din, 0, sizeof(float) * in_n);
        }
        /* The first layer needs no input gradient unless the caller asked. */
        switch (l->kind) {
        case SG_LAYER_CONV2D: {
            sg_conv2d_cfg cc = {l->cin, l->cout, l->k, l->stride, l->pad};
            size_t nw = (size_t)l->cout * l->cin * l->k * l->k;
            sg_conv2d_backward(&cc, n, l->in_h, l->in_w, in, p, g, din, dp, (dp && l->has_bias) ? dp + nw : NULL,
                               c->work);
            break;
        }
        case SG_LAYER_BATCHNORM:
            if (c->train)
                sg_batchnorm_backward_train(n, l->cin, hw, in, p, c->save[i], c->save[i] + l->cin, g, din, dp,
                                            dp ? dp + l->cin : NULL);
            else
                sg_batchnorm_backward_eval(n, l->cin, hw, p, state + l->state_off + l->cin, a->bn_eps, in,
                                           state + l->state_off, g, din, dp, dp ? dp + l->cin : NULL);
            break;
        case SG_LAYER_AFFINE: sg_affine_backward(n, l->cin, hw, in, p, g, din, dp, dp ? dp + l->cin : NULL); break;
        case SG_LAYER_RELU:
            if (din) sg_relu_backward(in_n, c->act[i], g, din);
            break;
        case SG_LAYER_SILU:
            if (din) sg_silu_backward(in_n, in, g, din);
            break;
        case SG_LAYER_MAXPOOL:
            if (din) sg_maxpool_backward(n * l->cin, l->in_h, l->in_w, l->k, l->stride, c->argmax[i], g, din);
            break;
        case SG_LAYER_AVGPOOL:
            if (din) sg_avgpool_backward(n * l->cin, l->in_h, l->in_w, l->k, l->stride, g, din);
            break;
        case SG_LAYER_GAP:
            if (din) sg_gap_backward(n * l->cin, hw, g, din);
            break;
        case SG_LAYER_LINEAR: {
            size_t nw = (size_t)l->cout * l->cin;
            sg_linear_backward(n, l->cin, l->cout, in, p, g, din, dp, (dp && l->has_bias) ? dp + nw : NULL);
            break;
        }
        case SG_LAYER_L2NORM: sg_l2norm_backward(n, l->cin, in, p, SG_L2NORM_EPS, g, din, dp); break;
        }
        g = din;
    }
}

void sg_net_backward(const sg_arch *a, sg_ctx *c, const float *params, const float *state, const float *dout,
                     float *dparams, float *dx) {
    sg_net_backward_from(a, c, params, state, a->n_layers - 1, dout, dparams, dx);
}
