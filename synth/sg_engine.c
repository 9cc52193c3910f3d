/* sg_engine.c — the engine's parameters, its text encoder, the generator
 * (task code → kernel deltas, FiLM, head), differentiable synthesis for
 * meta-training, and synthesis of standalone classifiers.
 *
 * Parameter layout (one flat buffer; gradients and optimizer moments alike):
 *   [base backbone conv4(BN)] [stage-1 head] | [text embedding] [text MLP]
 *   [per unit (conv): FiLM-γ gen, FiLM-β gen, U, V, α gen] [text→feature projection]
 *   [ω, log τ, κ, ρ, log λ]
 * Everything right of `|` is trained in stage 2 (sg_engine_stage2_offset).
 */
#include "sg_synth_impl.h"

#include <cblas.h>
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void sg_engine_config_default(sg_engine_config *c) {
    c->img = 40; /* chosen on validation classes of ../shared/data: docs/results.md */
    c->store = 45;
    c->width = 64;
    c->stages = 4;
    c->rank = 4;
    c->text_buckets = 16384;
    c->text_dim = 64;
    c->text_hidden = 64;
    c->code_dim = 32;
    c->n_base_classes = 64;
    for (int s = 0; s < SG_ENGINE_MAX_STAGES; s++) c->convs[s] = 1;
}

void sg_synth_opts_default(sg_synth_opts *o) {
    o->use_images = 1;
    o->use_text = 1;
    o->flip_aug = 0; /* the mirror view did not move validation accuracy and doubles the cost */
    o->adapt = 1;
    o->support_norm = SG_SUPPORT_NORM_AUTO;
}

int sg_engine_convs_str(const sg_engine_config *c, char *buf, size_t n) {
    int deep = 0;
    size_t used = 0;
    if (n) buf[0] = 0;
    for (int s = 0; s < c->stages && used < n; s++) {
        deep |= c->convs[s] != 1;
        int w = snprintf(buf + used, n - used, "%s%d", s ? "," : "", c->convs[s]);
        if (w < 0) break;
        used += (size_t)w;
    }
    return deep;
}

static size_t take(size_t *off, size_t n) {
    size_t o = *off;
    *off += n;
    return o;
}

void sg_engine_layout(sg_engine *e) {
    const sg_engine_config *c = &e->cfg;
    sg_arch_convnet(&e->base_cls, 3, c->img, c->width, c->stages, c->convs, SG_LAYER_BATCHNORM, c->n_base_classes);
    sg_arch_convnet(&e->base, 3, c->img, c->width, c->stages, c->convs, SG_LAYER_BATCHNORM, 0);
    sg_arch_convnet(&e->syn, 3, c->img, c->width, c->stages, c->convs, SG_LAYER_AFFINE, 0);
    SG_ASSERT(e->base.n_params == e->syn.n_params);
    e->n_units = 0;
    for (int i = 0; i < e->syn.n_layers; i++)
        if (e->syn.layers[i].kind == SG_LAYER_CONV2D) e->unit_layer[e->n_units++] = i;
    int C = c->width, Z = C + c->code_dim + 2;
    e->zdim = Z;
    size_t off = 0;
    take(&off, e->base_cls.n_params);
    e->off_s2 = off;
    e->off_emb = take(&off, (size_t)c->text_buckets * c->text_dim);
    e->off_t1 = take(&off, (size_t)c->text_hidden * c->text_dim + c->text_hidden);
    e->off_t2 = take(&off, (size_t)c->code_dim * c->text_hidden + c->code_dim);
    for (int s = 0; s < e->n_units; s++) {
        const sg_layer *l = &e->syn.layers[e->unit_layer[s]];
        size_t kk = (size_t)l->cin * l->k * l->k;
        e->off_gg[s] = take(&off, (size_t)C * Z + C);
        e->off_gb[s] = take(&off, (size_t)C * Z + C);
        e->off_U[s] = take(&off, (size_t)C * c->rank);
        e->off_V[s] = take(&off, (size_t)c->rank * kk);
        e->off_A[s] = take(&off, (size_t)c->rank * Z + c->rank);
    }
    e->off_P = take(&off, (size_t)C * c->code_dim + C);
    e->off_omega = take(&off, 1);
    e->off_logtau = take(&off, 1);
    e->off_kappa = take(&off, 1);
    e->off_rho = take(&off, 1);
    e->off_loglam = take(&off, 1);
    e->n_params = off;
}

sg_engine *sg_engine_alloc(const sg_engine_config *cfg) {
    sg_engine *e = sg_xcalloc(1, sizeof *e);
    e->cfg = *cfg;
    SG_ASSERT(cfg->stages >= 1 && cfg->stages <= SG_ENGINE_MAX_STAGES);
    for (int s = 0; s < cfg->stages; s++) SG_ASSERT(cfg->convs[s] >= 1 && cfg->convs[s] <= SG_ENGINE_MAX_CONVS);
    sg_engine_layout(e);
    e->params = sg_xalloc_floats(e->n_params);
    e->state = sg_xalloc_floats(e->base.n_state);
    for (int i = 0; i < 3; i++) {
        e->mean[i] = 0.5f;
        e->std[i] = 0.25f;
    }
    return e;
}

sg_engine *sg_engine_create(const sg_engine_config *cfg, uint64_t seed) {
    sg_engine *e = sg_engine_alloc(cfg);
    sg_rng r;
    sg_rng_seed(&r, seed);
    sg_arch_init_params(&e->base_cls, e->params, &r);
    sg_arch_init_state(&e->base, e->state);
    const sg_engine_config *c = cfg;
    float *p = e->params;
    for (size_t i = 0; i < (size_t)c->text_buckets * c->text_dim; i++) p[e->off_emb + i] = 0.1f * sg_rng_normal(&r);
    float s1 = sqrtf(2.0f / c->text_dim), s2 = sqrtf(1.0f / c->text_hidden);
    for (int i = 0; i < c->text_hidden * c->text_dim; i++) p[e->off_t1 + i] = s1 * sg_rng_normal(&r);
    for (int i = 0; i < c->code_dim * c->text_hidden; i++) p[e->off_t2 + i] = s2 * sg_rng_normal(&r);
    for (int s = 0; s < e->n_units; s++) {
        const sg_layer *l = &e->syn.layers[e->unit_layer[s]];
        size_t kk = (size_t)l->cin * l->k * l->k;
        /* Generators start at zero: the first synthesized classifier is the base network. */
        for (size_t i = 0; i < (size_t)l->cout * c->rank; i++) p[e->off_U[s] + i] = sg_rng_normal(&r) / sqrtf((float)c->rank);
        for (size_t i = 0; i < (size_t)c->rank * kk; i++) p[e->off_V[s] + i] = 0.05f * sg_rng_normal(&r) / sqrtf((float)kk);
    }
    float sp = sqrtf(1.0f / c->code_dim);
    for (int i = 0; i < c->width * c->code_dim; i++) p[e->off_P + i] = sp * sg_rng_normal(&r);
    p[e->off_omega] = 0.3f;
    p[e->off_logtau] = logf(10.0f);
    p[e->off_kappa] = 0.0f; /* no centring at first: the head starts as ProtoNet's */
    p[e->off_rho] = 0.0f;   /* ridge-regression head off at first */
    p[e->off_loglam] = 0.0f;
    return e;
}

sg_ctx *sg_engine_ws(sg_ctx **slot, const sg_arch *a, int n) {
    if (n < 1) n = 1;
    if (*slot && sg_ctx_batch_cap(*slot) >= n) return *slot;
    int cap = *slot ? 2 * sg_ctx_batch_cap(*slot) : n;
    if (cap < n) cap = n;
    sg_ctx_free(*slot);
    *slot = sg_ctx_create(a, cap);
    return *slot;
}

void sg_engine_free(sg_engine *e) {
    if (!e) return;
    sg_ctx_free(e->ws_base);
    sg_ctx_free(e->ws_sup);
    sg_ctx_free(e->ws_qry);
    for (int i = 0; i <= SG_ENGINE_MAX_UNITS; i++) sg_ctx_free(e->ws_seg[i]);
    free(e->sn_buf);
    free(e->params);
    free(e->state);
    free(e);
}

const sg_engine_config *sg_engine_get_config(const sg_engine *e) { return &e->cfg; }

int sg_engine_norm_adapted(const sg_engine *e) { return e->norm_adapted; }
int sg_engine_bn_by_source(const sg_engine *e) { return e->bn_by_source; }

float sg_engine_support_norm(const sg_engine *e, float requested) {
    if (requested >= 0) return requested;
    return e->norm_adapted || e->bn_by_source ? 0.0f : SG_SUPPORT_NORM_DEFAULT;
}

float sg_synth_support_norm(const sg_engine *e, const sg_synth_opts *o, int n_images) {
    return o->adapt && o->use_images && n_images > 0 ? sg_engine_support_norm(e, o->support_norm) : 0.0f;
}
size_t sg_engine_n_params(const sg_engine *e) { return e->n_params; }
float *sg_engine_params(sg_engine *e) { return e->params; }
size_t sg_engine_stage2_offset(const sg_engine *e) { return e->off_s2; }

void sg_engine_set_normalization(sg_engine *e, const float mean[3], const float std[3]) {
    for (int i = 0; i < 3; i++) {
        e->mean[i] = mean[i];
        e->std[i] = std[i] > 1e-6f ? std[i] : 1e-6f;
    }
}

uint32_t sg_engine_params_crc(const sg_engine *e) {
    uint32_t c = sg_crc32(0, e->params, e->n_params * sizeof(float));
    return sg_crc32(c, e->state, e->base.n_state * sizeof(float));
}

/* ---- images ---- */

/* Bilinear resample of one uint8 plane region (x0, y0, cw, ch) of a side-S
 * plane to out (o × o), normalized. */
void sg_engine_crop_plane(const uint8_t *plane, int S, float x0, float y0, float cw, float ch, int o, int flip,
                          float mean, float std, float *out) {
    float inv = 1.0f / (255.0f * std), off = mean / std;
    /* The column taps and weights are the same on every row: computed once. */
    enum { MAX_O = 2048 };
    int ixs[MAX_O], ix1s[MAX_O];
    float fxs[MAX_O];
    SG_ASSERT(o <= MAX_O);
    for (int x = 0; x < o; x++) {
        int xx = flip ? o - 1 - x : x;
        float sx = x0 + ((float)xx + 0.5f) * cw / (float)o - 0.5f;
        if (sx < 0) sx = 0;
        if (sx > S - 1) sx = (float)(S - 1);
        ixs[x] = (int)sx;
        ix1s[x] = ixs[x] + 1 < S ? ixs[x] + 1 : ixs[x];
        fxs[x] = sx - (float)ixs[x];
    }
    for (int y = 0; y < o; y++) {
        float sy = y0 + ((float)y + 0.5f) * ch / (float)o - 0.5f;
        if (sy < 0) sy = 0;
        if (sy > S - 1) sy = (float)(S - 1);
        int iy = (int)sy;
        int iy1 = iy + 1 < S ? iy + 1 : iy;
        float fy = sy - (float)iy;
        const uint8_t *r0 = plane + (size_t)iy * S, *r1 = plane + (size_t)iy1 * S;
        for (int x = 0; x < o; x++) {
            int ix = ixs[x], ix1 = ix1s[x];
            float fx = fxs[x];
            float v = (1 - fy) * ((1 - fx) * r0[ix] + fx * r0[ix1]) + fy * ((1 - fx) * r1[ix] + fx * r1[ix1]);
            out[y * o + x] = v * inv - off;
        }
    }
}

void sg_engine_prepare_image(const sg_engine *e, const uint8_t *img, int flip, float *out) {
    int S = e->cfg.store, o = e->cfg.img;
    for (int c = 0; c < 3; c++)
        sg_engine_crop_plane(img + (size_t)c * S * S, S, 0, 0, (float)S, (float)S, o, flip, e->mean[c], e->std[c],
                             out + (size_t)c * o * o);
}

void sg_engine_prepare_images(const sg_engine *e, int n, const uint8_t *images, float *out) {
    size_t in_sz = (size_t)3 * e->cfg.store * e->cfg.store, out_sz = (size_t)3 * e->cfg.img * e->cfg.img;
    for (int i = 0; i < n; i++) sg_engine_prepare_image(e, images + i * in_sz, 0, out + i * out_sz);
}

/* ---- text ---- */

int sg_text_tokenize(const char *text, int buckets, int *ids, int max_ids) {
    int n = 0;
    char prev[64] = "", word[64];
    const char *p = text;
    while (*p && n < max_ids) {
        while (*p && !isalnum((unsigned char)*p)) p++;
        if (!*p) break;
        int len = 0;
        while (*p && isalnum((unsigned char)*p)) {
            if (len < 63) word[len++] = (char)tolower((unsigned char)*p);
            p++;
        }
        word[len] = 0;
        ids[n++] = (int)(sg_fnv1a64(word, (size_t)len) % (uint64_t)buckets);
        if (prev[0] && n < max_ids) {
            char bi[130];
            int bl = snprintf(bi, sizeof bi, "%s %s", prev, word);
            ids[n++] = (int)(sg_fnv1a64(bi, (size_t)bl) % (uint64_t)buckets);
        }
        memcpy(prev, word, (size_t)len + 1);
    }
    return n;
}

int sg_text_has_words(const char *text) {
    for (const char *p = text; p && *p; p++)
        if (isalnum((unsigned char)*p)) return 1;
    return 0;
}

/* Text code t (T) of token ids; keeps what backward needs in tc. drop_mask
 * (nullable) marks tokens to leave out (training word dropout). */
void sg_text_forward(const sg_engine *e, const int *ids, int n_ids, const uint8_t *drop, sg_text_cache *tc) {
    const sg_engine_config *c = &e->cfg;
    const float *p = e->params;
    int E = c->text_dim, H = c->text_hidden, T = c->code_dim;
    memset(tc->bag, 0, sizeof(float) * (size_t)E);
    int used = 0;
    for (int i = 0; i < n_ids; i++) {
        if (drop && drop[i]) continue;
        const float *row = p + e->off_emb + (size_t)ids[i] * E;
        for (int j = 0; j < E; j++) tc->bag[j] += row[j];
        used++;
    }
    tc->n_used = used;
    if (used)
        for (int j = 0; j < E; j++) tc->bag[j] /= (float)used;
    const float *w1 = p + e->off_t1, *b1 = w1 + (size_t)H * E;
    for (int h = 0; h < H; h++) {
        float s = b1[h];
        for (int j = 0; j < E; j++) s += w1[(size_t)h * E + j] * tc->bag[j];
        tc->hid[h] = s > 0 ? s : 0;
    }
    const float *w2 = p + e->off_t2, *b2 = w2 + (size_t)T * H;
    for (int t = 0; t < T; t++) {
        float s = b2[t];
        for (int h = 0; h < H; h++) s += w2[(size_t)t * H + h] * tc->hid[h];
        tc->code[t] = s;
    }
}

void sg_text_backward(const sg_engine *e, const int *ids, int n_ids, const uint8_t *drop, const sg_text_cache *tc,
                      const float *dcode, float *grad) {
    const sg_engine_config *c = &e->cfg;
    const float *p = e->params;
    int E = c->text_dim, H = c->text_hidden, T = c->code_dim;
    const float *w2 = p + e->off_t2, *w1 = p + e->off_t1;
    float *gw2 = grad + e->off_t2, *gb2 = gw2 + (size_t)T * H;
    float *gw1 = grad + e->off_t1, *gb1 = gw1 + (size_t)H * E;
    float dh[SG_TEXT_MAX_DIM], dbag[SG_TEXT_MAX_DIM];
    for (int h = 0; h < H; h++) dh[h] = 0;
    for (int t = 0; t < T; t++) {
        gb2[t] += dcode[t];
        for (int h = 0; h < H; h++) {
            gw2[(size_t)t * H + h] += dcode[t] * tc->hid[h];
            dh[h] += dcode[t] * w2[(size_t)t * H + h];
        }
    }
    for (int j = 0; j < E; j++) dbag[j] = 0;
    for (int h = 0; h < H; h++) {
        if (tc->hid[h] <= 0) continue;
        gb1[h] += dh[h];
        for (int j = 0; j < E; j++) {
            gw1[(size_t)h * E + j] += dh[h] * tc->bag[j];
            dbag[j] += dh[h] * w1[(size_t)h * E + j];
        }
    }
    if (!tc->n_used) return;
    float inv = 1.0f / (float)tc->n_used;
    for (int i = 0; i < n_ids; i++) {
        if (drop && drop[i]) continue;
        float *row = grad + e->off_emb + (size_t)ids[i] * E;
        for (int j = 0; j < E; j++) row[j] += dbag[j] * inv;
    }
}

/* ---- generator: task code → synthesized backbone parameters ---- */

/* Folded base batch norm of unit s: scale (C), shift (C). */
static void fold_bn(const sg_engine *e, int s, float *scale, float *shift) {
    const sg_layer *bn = &e->base.layers[e->unit_layer[s] + 1];
    const float *g = e->params + bn->param_off, *b = g + bn->cin;
    const float *rm = e->state + bn->state_off, *rv = rm + bn->cin;
    for (int c = 0; c < bn->cin; c++) {
        scale[c] = g[c] / sqrtf(rv[c] + e->base.bn_eps);
        shift[c] = b[c] - rm[c] * scale[c];
    }
}

/* z (Z) → theta (syn.n_params); keeps γ, β, α in gc for backward. */
void sg_gen_forward(const sg_engine *e, const float *z, int adapt, sg_gen_cache *gc, float *theta) {
    const sg_engine_config *c = &e->cfg;
    const float *p = e->params;
    int C = c->width, Z = e->zdim, R = c->rank;
    for (int s = 0; s < e->n_units; s++) {
        const sg_layer *cl = &e->syn.layers[e->unit_layer[s]], *al = &e->syn.layers[e->unit_layer[s] + 1];
        const sg_layer *bl = &e->base.layers[e->unit_layer[s]];
        size_t kk = (size_t)cl->cin * cl->k * cl->k;
        float *gam = gc->gamma[s], *bet = gc->beta[s], *alp = gc->alpha[s];
        const float *gg = p + e->off_gg[s], *gb = p + e->off_gb[s], *A = p + e->off_A[s];
        for (int o = 0; o < C; o++) {
            float sg = gg[(size_t)C * Z + o], sb = gb[(size_t)C * Z + o];
            for (int j = 0; j < Z; j++) {
                sg += gg[(size_t)o * Z + j] * z[j];
                sb += gb[(size_t)o * Z + j] * z[j];
            }
            gam[o] = adapt ? sg : 0;
            bet[o] = adapt ? sb : 0;
        }
        for (int r = 0; r < R; r++) {
            float sa = A[(size_t)R * Z + r];
            for (int j = 0; j < Z; j++) sa += A[(size_t)r * Z + j] * z[j];
            alp[r] = adapt ? sa : 0;
        }
        /* conv: W_base + U diag(α) V */
        float *w = theta + cl->param_off;
        memcpy(w, p + bl->param_off, sizeof(float) * (size_t)C * kk);
        if (adapt) {
            float *av = gc->work; /* (R, kk) */
            const float *V = p + e->off_V[s];
            for (int r = 0; r < R; r++)
                for (size_t i = 0; i < kk; i++) av[(size_t)r * kk + i] = alp[r] * V[(size_t)r * kk + i];
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, C, (int)kk, R, 1.0f, p + e->off_U[s], R, av,
                        (int)kk, 1.0f, w, (int)kk);
        }
        float fs[SG_ENGINE_MAX_WIDTH], ft[SG_ENGINE_MAX_WIDTH];
        fold_bn(e, s, fs, ft);
        float *sc = theta + al->param_off, *sh = sc + C;
        for (int o = 0; o < C; o++) {
            sc[o] = fs[o] * (1 + gam[o]);
            sh[o] = ft[o] * (1 + gam[o]) + bet[o];
        }
    }
}

/* dtheta → grads of the generator; accumulates dz (Z). */
void sg_gen_backward(const sg_engine *e, const float *z, const sg_gen_cache *gc, const float *dtheta, float *grad,
                     float *dz) {
    const sg_engine_config *c = &e->cfg;
    const float *p = e->params;
    int C = c->width, Z = e->zdim, R = c->rank;
    for (int s = 0; s < e->n_units; s++) {
        const sg_layer *cl = &e->syn.layers[e->unit_layer[s]], *al = &e->syn.layers[e->unit_layer[s] + 1];
        size_t kk = (size_t)cl->cin * cl->k * cl->k;
        float fs[SG_ENGINE_MAX_WIDTH], ft[SG_ENGINE_MAX_WIDTH];
        fold_bn(e, s, fs, ft);
        const float *dsc = dtheta + al->param_off, *dsh = dsc + C;
        float *ggw = grad + e->off_gg[s], *gbw = grad + e->off_gb[s];
        const float *gg = p + e->off_gg[s], *gb = p + e->off_gb[s];
        for (int o = 0; o < C; o++) {
            float dg = dsc[o] * fs[o] + dsh[o] * ft[o], db = dsh[o];
            ggw[(size_t)C * Z + o] += dg;
            gbw[(size_t)C * Z + o] += db;
            for (int j = 0; j < Z; j++) {
                ggw[(size_t)o * Z + j] += dg * z[j];
                gbw[(size_t)o * Z + j] += db * z[j];
                dz[j] += dg * gg[(size_t)o * Z + j] + db * gb[(size_t)o * Z + j];
            }
        }
        /* kernel delta: W = Wb + U diag(α) V */
        const float *dW = dtheta + cl->param_off;
        const float *U = p + e->off_U[s], *V = p + e->off_V[s], *A = p + e->off_A[s];
        const float *alp = gc->alpha[s];
        float *M = gc->work; /* U^T dW (R, kk) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, R, (int)kk, C, 1.0f, U, R, dW, (int)kk, 0.0f, M, (int)kk);
        float *gU = grad + e->off_U[s], *gV = grad + e->off_V[s], *gA = grad + e->off_A[s];
        float dalpha[SG_ENGINE_MAX_RANK];
        for (int r = 0; r < R; r++) {
            double d = 0;
            for (size_t i = 0; i < kk; i++) {
                d += (double)M[(size_t)r * kk + i] * V[(size_t)r * kk + i];
                gV[(size_t)r * kk + i] += alp[r] * M[(size_t)r * kk + i];
            }
            dalpha[r] = (float)d;
        }
        /* dU += dW (α V)^T */
        float *av = gc->work + (size_t)R * kk;
        for (int r = 0; r < R; r++)
            for (size_t i = 0; i < kk; i++) av[(size_t)r * kk + i] = alp[r] * V[(size_t)r * kk + i];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, C, R, (int)kk, 1.0f, dW, (int)kk, av, (int)kk, 1.0f, gU, R);
        for (int r = 0; r < R; r++) {
            gA[(size_t)R * Z + r] += dalpha[r];
            for (int j = 0; j < Z; j++) {
                gA[(size_t)r * Z + j] += dalpha[r] * z[j];
                dz[j] += dalpha[r] * A[(size_t)r * Z + j];
            }
        }
    }
}

sg_gen_cache *sg_gen_cache_create(const sg_engine *e) {
    sg_gen_cache *gc = sg_xcalloc(1, sizeof *gc);
    size_t maxkk = 0;
    for (int s = 0; s < e->n_units; s++) {
        const sg_layer *cl = &e->syn.layers[e->unit_layer[s]];
        size_t kk = (size_t)cl->cin * cl->k * cl->k;
        if (kk > maxkk) maxkk = kk;
    }
    gc->work = sg_xalloc_floats(2 * (size_t)e->cfg.rank * maxkk + 16);
    return gc;
}

void sg_gen_cache_free(sg_gen_cache *gc) {
    if (!gc) return;
    free(gc->work);
    free(gc);
}

/* Image summary: mean over the support images of L2-normalized base features. */
void sg_engine_image_summary(const sg_engine *e, sg_ctx *bctx, int n, const float *x, float *out) {
    int C = e->cfg.width;
    memset(out, 0, sizeof(float) * (size_t)C);
    if (n == 0) return;
    const float *f = sg_net_forward(&e->base, bctx, e->params, e->state, x, n, 0);
    float *u = sg_xalloc_floats((size_t)n * C);
    sg_l2norm_forward(n, C, f, NULL, SG_L2NORM_EPS, u);
    for (int i = 0; i < n; i++)
        for (int c = 0; c < C; c++) out[c] += u[(size_t)i * C + c] / (float)n;
    free(u);
}
