/* sg_episode.c — differentiable synthesis of one episode (meta-training) and
 * synthesis of a standalone classifier for a task.
 *
 * Head of the synthesized classifier: prototypes p_c mix the mean support
 * feature of class c (through the synthesized backbone) with the projected
 * text code, p_c = [K_c > 0]·mean f(x) + [text]·w_c·(P t_c + b_P), w_c = ω when
 * the class also has images, else 1. The head is
 * a cosine classifier: logit_c = τ · ((f - m)/|f - m|) · ((p_c - m)/|p_c - m|),
 * with the centre m = κ · mean_c p_c (κ learned; 0 at first).
 * ProtoNet is the special case with no adaptation and no text. */
#include "sg_synth_impl.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void sg_engine_base_features(const sg_engine *e, int n, const float *x, float *feat) {
    int C = e->cfg.width, chunk = 64;
    sg_ctx *ctx = sg_ctx_create(&e->base, n < chunk ? (n > 0 ? n : 1) : chunk);
    size_t in_sz = (size_t)3 * e->cfg.img * e->cfg.img;
    for (int i = 0; i < n; i += chunk) {
        int b = n - i < chunk ? n - i : chunk;
        const float *f = sg_net_forward(&e->base, ctx, e->params, e->state, x + i * in_sz, b, 0);
        memcpy(feat + (size_t)i * C, f, sizeof(float) * (size_t)b * C);
    }
    sg_ctx_free(ctx);
}

/* Closed-form ridge-regression head (as in R2-D2, Bertinetto et al. 2019):
 * rows U (n, C) with labels y, W_r (N, C) = αᵀU with α = (UUᵀ + λI)⁻¹ Y.
 * Computed in double with an explicit inverse (n is a support set: small). */
typedef struct ridge_state {
    int n, N, C;
    double *ainv; /* (n, n) */
    float *alpha; /* (n, N) */
    float *w;     /* (N, C) */
} ridge_state;

static void ridge_forward(int n, int N, int C, const float *U, const int *y, float lam, ridge_state *r) {
    r->n = n;
    r->N = N;
    r->C = C;
    double *a = sg_xcalloc((size_t)n * n, sizeof(double)), *l = sg_xcalloc((size_t)n * n, sizeof(double));
    for (int i = 0; i < n; i++)
        for (int j = 0; j <= i; j++) {
            double s = 0;
            for (int k = 0; k < C; k++) s += (double)U[(size_t)i * C + k] * U[(size_t)j * C + k];
            a[(size_t)i * n + j] = a[(size_t)j * n + i] = s + (i == j ? lam : 0);
        }
    /* Cholesky A = L Lᵀ (A is SPD: λ > 0) */
    for (int i = 0; i < n; i++)
        for (int j = 0; j <= i; j++) {
            double s = a[(size_t)i * n + j];
            for (int k = 0; k < j; k++) s -= l[(size_t)i * n + k] * l[(size_t)j * n + k];
            l[(size_t)i * n + j] = i == j ? sqrt(s > 1e-30 ? s : 1e-30) : s / l[(size_t)j * n + j];
        }
    /* A⁻¹ column by column */
    r->ainv = sg_xcalloc((size_t)n * n, sizeof(double));
    double *col = sg_xcalloc((size_t)n, sizeof(double));
    for (int c = 0; c < n; c++) {
        for (int i = 0; i < n; i++) {
            double s = i == c ? 1.0 : 0.0;
            for (int k = 0; k < i; k++) s -= l[(size_t)i * n + k] * col[k];
            col[i] = s / l[(size_t)i * n + i];
        }
        for (int i = n - 1; i >= 0; i--) {
            double s = col[i];
            for (int k = i + 1; k < n; k++) s -= l[(size_t)k * n + i] * col[k];
            col[i] = s / l[(size_t)i * n + i];
        }
        for (int i = 0; i < n; i++) r->ainv[(size_t)i * n + c] = col[i];
    }
    r->alpha = sg_xalloc_floats((size_t)n * N);
    for (int i = 0; i < n; i++)
        for (int c = 0; c < N; c++) {
            double s = 0;
            for (int k = 0; k < n; k++)
                if (y[k] == c) s += r->ainv[(size_t)i * n + k];
            r->alpha[(size_t)i * N + c] = (float)s;
        }
    r->w = sg_xalloc_floats((size_t)N * C);
    for (int c = 0; c < N; c++)
        for (int k = 0; k < C; k++) {
            float s = 0;
            for (int i = 0; i < n; i++) s += r->alpha[(size_t)i * N + c] * U[(size_t)i * C + k];
            r->w[(size_t)c * C + k] = s;
        }
    free(a);
    free(l);
    free(col);
}

/* dW (N, C) → accumulates dU (n, C); returns d(λ). */
static float ridge_backward(const ridge_state *r, const float *U, const float *dw, float *du) {
    int n = r->n, N = r->N, C = r->C;
    float *dalpha = sg_xalloc_floats((size_t)n * N);
    for (int i = 0; i < n; i++)
        for (int c = 0; c < N; c++) {
            float s = 0;
            for (int k = 0; k < C; k++) {
                du[(size_t)i * C + k] += r->alpha[(size_t)i * N + c] * dw[(size_t)c * C + k];
                s += U[(size_t)i * C + k] * dw[(size_t)c * C + k];
            }
            dalpha[(size_t)i * N + c] = s;
        }
    /* dA = -A⁻¹ dα αᵀ */
    double *t = sg_xcalloc((size_t)n * n, sizeof(double)), *da = sg_xcalloc((size_t)n * n, sizeof(double));
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int c = 0; c < N; c++) s += (double)dalpha[(size_t)i * N + c] * r->alpha[(size_t)j * N + c];
            t[(size_t)i * n + j] = s;
        }
    double dlam = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int k = 0; k < n; k++) s += r->ainv[(size_t)i * n + k] * t[(size_t)k * n + j];
            da[(size_t)i * n + j] = -s;
        }
    for (int i = 0; i < n; i++) {
        dlam += da[(size_t)i * n + i];
        for (int j = 0; j < n; j++) {
            float g = (float)(da[(size_t)i * n + j] + da[(size_t)j * n + i]);
            for (int k = 0; k < C; k++) du[(size_t)i * C + k] += g * U[(size_t)j * C + k];
        }
    }
    free(dalpha);
    free(t);
    free(da);
    return (float)dlam;
}

static void ridge_free(ridge_state *r) {
    free(r->ainv);
    free(r->alpha);
    free(r->w);
}

/* Head forward: prototypes from support features and text projections. The
 * class rows (N of them, zero past C) are allocated for the task's N classes,
 * not for SG_MAX_WAY: a tiny engine's episode would otherwise spend its time
 * zeroing and mapping half a megabyte it never reads. */
typedef struct head_state {
    int N, C;
    float (*proto)[SG_ENGINE_MAX_WIDTH];
    float (*tp)[SG_ENGINE_MAX_WIDTH];
    float (*v)[SG_ENGINE_MAX_WIDTH];
    float (*nrm)[SG_ENGINE_MAX_WIDTH];
    float m[SG_ENGINE_MAX_WIDTH];    /* centre used: κ · mean of the prototypes */
    float mraw[SG_ENGINE_MAX_WIDTH]; /* mean of the prototypes */
    float wc[SG_MAX_WAY];
    int has_img[SG_MAX_WAY], has_text[SG_MAX_WAY];
} head_state;

static head_state *head_create(int N, int C) {
    head_state *h = sg_xcalloc(1, sizeof *h);
    h->N = N;
    h->C = C;
    h->proto = sg_xcalloc((size_t)4 * N, sizeof *h->proto);
    h->tp = h->proto + N;
    h->v = h->tp + N;
    h->nrm = h->v + N;
    return h;
}

static void head_free(head_state *h) {
    if (!h) return;
    free(h->proto);
    free(h);
}

static void text_project(const sg_engine *e, const float *code, float *out) {
    int C = e->cfg.width, T = e->cfg.code_dim;
    const float *P = e->params + e->off_P, *pb = P + (size_t)C * T;
    for (int c = 0; c < C; c++) {
        float s = pb[c];
        for (int t = 0; t < T; t++) s += P[(size_t)c * T + t] * code[t];
        out[c] = s;
    }
}

/* feats_img[c] (C) given when has_img[c]; codes[c] (T) when has_text[c]. */
static void head_forward(const sg_engine *e, head_state *h, float feats_img[][SG_ENGINE_MAX_WIDTH],
                         float codes[][SG_TEXT_MAX_DIM]) {
    int N = h->N, C = h->C;
    float omega = e->params[e->off_omega];
    memset(h->mraw, 0, sizeof h->mraw);
    for (int c = 0; c < N; c++) {
        h->wc[c] = h->has_img[c] ? omega : 1.0f;
        for (int j = 0; j < C; j++) h->proto[c][j] = h->has_img[c] ? feats_img[c][j] : 0.0f;
        if (h->has_text[c]) {
            text_project(e, codes[c], h->tp[c]);
            for (int j = 0; j < C; j++) h->proto[c][j] += h->wc[c] * h->tp[c][j];
        }
        for (int j = 0; j < C; j++) h->mraw[j] += h->proto[c][j] / (float)N;
    }
    float kappa = e->params[e->off_kappa];
    for (int j = 0; j < C; j++) h->m[j] = kappa * h->mraw[j];

    for (int c = 0; c < N; c++)
        for (int j = 0; j < C; j++) h->v[c][j] = h->proto[c][j] - h->m[j];
    sg_l2norm_forward(N, SG_ENGINE_MAX_WIDTH, &h->v[0][0], NULL, SG_L2NORM_EPS, &h->nrm[0][0]);
}

float sg_engine_episode_grad(sg_engine *e, const sg_episode *ep, float *grad, float scale, float *acc) {
    const sg_engine_config *cf = &e->cfg;
    int N = ep->way, C = cf->width, T = cf->code_dim, Z = e->zdim;
    SG_ASSERT(N >= 2 && N <= SG_MAX_WAY && C <= SG_ENGINE_MAX_WIDTH);
    size_t isz = (size_t)3 * cf->img * cf->img, ssz = (size_t)3 * cf->store * cf->store;
    int ns = 0;
    for (int c = 0; c < N; c++) ns += ep->shots[c];
    int nq = ep->n_query;
    float *xs = sg_xalloc_floats((size_t)(ns ? ns : 1) * isz), *xq = sg_xalloc_floats((size_t)nq * isz);
    for (int c = 0, k = 0; c < N; c++)
        for (int i = 0; i < ep->shots[c]; i++, k++) sg_engine_prepare_image(e, ep->support[c] + i * ssz, 0, xs + k * isz);
    for (int q = 0; q < nq; q++) sg_engine_prepare_image(e, ep->query + q * ssz, 0, xq + q * isz);

    /* text codes */
    static _Thread_local sg_text_cache tcache[SG_MAX_WAY];
    static _Thread_local int tids[SG_MAX_WAY][SG_TEXT_MAX_IDS];
    static _Thread_local uint8_t tdrop[SG_MAX_WAY][SG_TEXT_MAX_IDS];
    sg_rng wr;
    sg_rng_seed2(&wr, ep->seed, 0x770D);
    int ntid[SG_MAX_WAY], n_text = 0;
    float (*codes)[SG_TEXT_MAX_DIM] = sg_xcalloc((size_t)N, sizeof *codes);
    head_state *h = head_create(N, C);
    float *z = sg_xalloc_floats((size_t)Z);
    for (int c = 0; c < N; c++) {
        h->has_img[c] = ep->shots[c] > 0;
        h->has_text[c] = ep->texts && sg_text_has_words(ep->texts[c]);
        if (!h->has_text[c]) continue;
        ntid[c] = sg_text_tokenize(ep->texts[c], cf->text_buckets, tids[c], SG_TEXT_MAX_IDS);
        int kept = 0;
        for (int i = 0; i < ntid[c]; i++) {
            tdrop[c][i] = ep->word_dropout > 0 && sg_rng_uniform(&wr) < ep->word_dropout;
            kept += !tdrop[c][i];
        }
        if (!kept && ntid[c]) tdrop[c][0] = 0;
        sg_text_forward(e, tids[c], ntid[c], tdrop[c], &tcache[c]);
        memcpy(codes[c], tcache[c].code, sizeof(float) * (size_t)T);
        for (int t = 0; t < T; t++) z[C + t] += codes[c][t];
        n_text++;
    }
    for (int c = 0; c < N; c++) SG_ASSERT(h->has_img[c] || h->has_text[c]);
    if (n_text)
        for (int t = 0; t < T; t++) z[C + t] /= (float)n_text;
    sg_engine_image_summary(e, sg_engine_ws(&e->ws_base, &e->base, ns), ns, xs, z);
    z[C + T] = ns > 0;
    z[C + T + 1] = n_text > 0;

    float *theta = sg_xalloc_floats(e->syn.n_params), *dtheta = sg_xalloc_floats(e->syn.n_params);
    sg_gen_cache *gc = sg_gen_cache_create(e);
    sg_gen_forward(e, z, 1, gc, theta);

    /* Train-mode forwards keep the activations the backward needs (the
     * synthesized net has no batch norm, so the modes compute the same). */
    int keep = grad != NULL;
    sg_ctx *cs = ns ? sg_engine_ws(&e->ws_sup, &e->syn, ns) : NULL, *cq = sg_engine_ws(&e->ws_qry, &e->syn, nq);
    float (*fimg)[SG_ENGINE_MAX_WIDTH] = sg_xcalloc((size_t)N, sizeof *fimg);
    float *fsup = NULL; /* (ns, C) support features */
    if (ns) {
        const float *fs = sg_net_forward(&e->syn, cs, theta, NULL, xs, ns, keep);
        fsup = sg_xalloc_floats((size_t)ns * C);
        memcpy(fsup, fs, sizeof(float) * (size_t)ns * C);
        for (int c = 0, k = 0; c < N; c++)
            for (int i = 0; i < ep->shots[c]; i++, k++)
                for (int j = 0; j < C; j++) fimg[c][j] += fs[(size_t)k * C + j] / (float)ep->shots[c];
    }
    head_forward(e, h, fimg, codes);
    const float *fq = sg_net_forward(&e->syn, cq, theta, NULL, xq, nq, keep);
    float tau = expf(e->params[e->off_logtau]), rho = e->params[e->off_rho];
    float lam = expf(e->params[e->off_loglam]);
    float *u = sg_xalloc_floats((size_t)nq * C), *logits = sg_xalloc_floats((size_t)nq * N);
    float *dlog = sg_xalloc_floats((size_t)nq * N);
    float *l1 = sg_xalloc_floats((size_t)nq * N), *l2 = sg_xalloc_floats((size_t)nq * N);
    /* ridge head over the centred, normalized support features */
    ridge_state rs = {0};
    float *us = NULL;
    int *ys = NULL;
    if (ns) {
        const float *fs = fsup;
        us = sg_xalloc_floats((size_t)ns * C);
        ys = sg_xmalloc(sizeof(int) * (size_t)ns);
        for (int c = 0, k = 0; c < N; c++)
            for (int i = 0; i < ep->shots[c]; i++) ys[k++] = c;
        sg_l2norm_forward(ns, C, fs, h->m, SG_L2NORM_EPS, us);
        ridge_forward(ns, N, C, us, ys, lam, &rs);
    }
    sg_l2norm_forward(nq, C, fq, h->m, SG_L2NORM_EPS, u);
    for (int q = 0; q < nq; q++)
        for (int c = 0; c < N; c++) {
            float s = 0, s2 = 0;
            for (int j = 0; j < C; j++) {
                s += u[(size_t)q * C + j] * h->nrm[c][j];
                if (ns) s2 += u[(size_t)q * C + j] * rs.w[(size_t)c * C + j];
            }
            l1[(size_t)q * N + c] = s;
            l2[(size_t)q * N + c] = s2;
            logits[(size_t)q * N + c] = tau * s + rho * s2;
        }
    float loss = sg_softmax_xent(nq, N, logits, ep->query_label, scale, dlog, NULL);
    if (acc) {
        int right = 0;
        for (int q = 0; q < nq; q++) {
            int best = 0;
            for (int c = 1; c < N; c++)
                if (logits[(size_t)q * N + c] > logits[(size_t)q * N + best]) best = c;
            right += best == ep->query_label[q];
        }
        *acc = (float)right / (float)nq;
    }

    if (grad) {
        /* head backward */
        float dlt = 0, drho = 0;
        for (size_t i = 0; i < (size_t)nq * N; i++) {
            dlt += dlog[i] * tau * l1[i];
            drho += dlog[i] * l2[i];
        }
        grad[e->off_logtau] += dlt;
        grad[e->off_rho] += drho;
        float (*dn)[SG_ENGINE_MAX_WIDTH] = sg_xcalloc((size_t)N, sizeof *dn);
        float (*dv)[SG_ENGINE_MAX_WIDTH] = sg_xcalloc((size_t)N, sizeof *dv);
        float *du = sg_xalloc_floats((size_t)nq * C), *dfq = sg_xalloc_floats((size_t)nq * C);
        float dm[SG_ENGINE_MAX_WIDTH] = {0};
        for (int q = 0; q < nq; q++)
            for (int c = 0; c < N; c++) {
                float g = tau * dlog[(size_t)q * N + c], g2 = rho * dlog[(size_t)q * N + c];
                for (int j = 0; j < C; j++) {
                    dn[c][j] += g * u[(size_t)q * C + j];
                    du[(size_t)q * C + j] += g * h->nrm[c][j] + (ns ? g2 * rs.w[(size_t)c * C + j] : 0.0f);
                }
            }
        sg_l2norm_backward(nq, C, fq, h->m, SG_L2NORM_EPS, du, dfq, dm);
        float *dfs = ns ? sg_xalloc_floats((size_t)ns * C) : NULL;
        if (ns) {
            float *dw = sg_xalloc_floats((size_t)N * C), *dus = sg_xalloc_floats((size_t)ns * C);
            for (int q = 0; q < nq; q++)
                for (int c = 0; c < N; c++) {
                    float g2 = rho * dlog[(size_t)q * N + c];
                    for (int j = 0; j < C; j++) dw[(size_t)c * C + j] += g2 * u[(size_t)q * C + j];
                }
            float dl = ridge_backward(&rs, us, dw, dus);
            grad[e->off_loglam] += dl * lam;
            sg_l2norm_backward(ns, C, fsup, h->m, SG_L2NORM_EPS, dus, dfs, dm);
            free(dw);
            free(dus);
        }
        sg_l2norm_backward(N, SG_ENGINE_MAX_WIDTH, &h->v[0][0], NULL, SG_L2NORM_EPS, &dn[0][0], &dv[0][0], NULL);
        for (int c = 0; c < N; c++)
            for (int j = 0; j < C; j++) dm[j] -= dv[c][j];
        /* dm is the gradient of the centre used, κ · mraw */
        float kappa = e->params[e->off_kappa], dk = 0;
        for (int j = 0; j < C; j++) {
            dk += dm[j] * h->mraw[j];
            dm[j] *= kappa;
        }
        grad[e->off_kappa] += dk;
        float *dz = sg_xalloc_floats((size_t)Z);
        float (*dcode)[SG_TEXT_MAX_DIM] = sg_xcalloc((size_t)N, sizeof *dcode);
        float *gP = grad + e->off_P, *gpb = gP + (size_t)C * T;
        const float *P = e->params + e->off_P;
        for (int c = 0, k0 = 0; c < N; c++) {
            float dp[SG_ENGINE_MAX_WIDTH];
            for (int j = 0; j < C; j++) dp[j] = dv[c][j] + dm[j] / (float)N;
            if (h->has_text[c]) {
                if (h->has_img[c]) {
                    float s = 0;
                    for (int j = 0; j < C; j++) s += dp[j] * h->tp[c][j];
                    grad[e->off_omega] += s;
                }
                for (int j = 0; j < C; j++) {
                    float g = h->wc[c] * dp[j];
                    gpb[j] += g;
                    for (int t = 0; t < T; t++) {
                        gP[(size_t)j * T + t] += g * codes[c][t];
                        dcode[c][t] += g * P[(size_t)j * T + t];
                    }
                }
            }
            for (int i = 0; i < ep->shots[c]; i++)
                for (int j = 0; j < C; j++) dfs[(size_t)(k0 + i) * C + j] += dp[j] / (float)ep->shots[c];
            k0 += ep->shots[c];
        }
        sg_net_backward(&e->syn, cq, theta, NULL, dfq, dtheta, NULL);
        if (ns) sg_net_backward(&e->syn, cs, theta, NULL, dfs, dtheta, NULL);
        sg_gen_backward(e, z, gc, dtheta, grad, dz);
        for (int c = 0; c < N; c++) {
            if (!h->has_text[c]) continue;
            for (int t = 0; t < T; t++) dcode[c][t] += dz[C + t] / (float)n_text;
            sg_text_backward(e, tids[c], ntid[c], tdrop[c], &tcache[c], dcode[c], grad);
        }
        free(dn); free(dv); free(du); free(dfq); free(dz); free(dcode); free(dfs);
    }
    sg_gen_cache_free(gc);
    free(xs); free(xq); free(codes); head_free(h); free(z); free(theta); free(dtheta); free(fimg);
    free(u); free(logits); free(dlog); free(l1); free(l2); free(us); free(ys); free(fsup);
    ridge_free(&rs);
    return loss;
}

/* Whether the generator reads the image summary at all: some weight on the
 * first C entries of z is nonzero. When none is (e.g. an engine whose
 * generators validation kept at zero), the summary forward is skipped; the
 * result is identical. */
static int summary_used(const sg_engine *e) {
    int C = e->cfg.width, Z = e->zdim, R = e->cfg.rank;
    for (int s = 0; s < e->n_units; s++) {
        const float *gg = e->params + e->off_gg[s], *gb = e->params + e->off_gb[s], *A = e->params + e->off_A[s];
        for (int o = 0; o < C; o++)
            for (int j = 0; j < C; j++)
                if (gg[(size_t)o * Z + j] != 0 || gb[(size_t)o * Z + j] != 0) return 1;
        for (int r = 0; r < R; r++)
            for (int j = 0; j < C; j++)
                if (A[(size_t)r * Z + j] != 0) return 1;
    }
    return 0;
}

/* Runs layers [from, to) of syn on n inputs in workspace slot; returns the output. */
static const float *syn_segment(const sg_engine *e, sg_ctx **slot, int from, int to, const float *in, int n,
                                const float *theta) {
    sg_arch seg = e->syn;
    memmove(seg.layers, e->syn.layers + from, sizeof(sg_layer) * (size_t)(to - from));
    seg.n_layers = to - from;
    seg.in_c = seg.layers[0].cin;
    seg.in_h = seg.layers[0].in_h;
    seg.in_w = seg.layers[0].in_w;
    return sg_net_forward(&seg, sg_engine_ws(slot, &seg, n), theta, NULL, in, n, 0);
}

/* Whether unit s's convolution can take the statistics pass: a stride-1
 * convolution without bias, then its affine, a ReLU and a 2×2/2 max pool,
 * with even output sizes. */
static int unit_pools(const sg_engine *e, int s) {
    int ci = e->unit_layer[s];
    const sg_layer *l = e->syn.layers + ci;
    return ci + 3 < e->syn.n_layers && l->stride == 1 && !l->has_bias && l->out_h % 2 == 0 && l->out_w % 2 == 0 &&
           l[1].kind == SG_LAYER_AFFINE && l[2].kind == SG_LAYER_RELU && l[3].kind == SG_LAYER_MAXPOOL && l[3].k == 2 &&
           l[3].stride == 2;
}

/* Task normalization: the synthesized classifier's folded norms take
 * (1 - beta) x the engine's statistics + beta x those of the n support views x,
 * measured unit by unit in one pass through theta (each unit's convolution
 * output is measured after the earlier units were refolded); the generated
 * FiLM (gc) is applied on top as in sg_gen_forward. Writes the views' pooled
 * features, as the refolded classifier computes them, to feat (n, C).
 * A unit followed by ReLU and 2×2 max pool takes one convolution pass that
 * yields its statistics and the pooled max and min of its raw output, from
 * which the refolded affine, ReLU and pool follow exactly; any other unit is
 * run up to its convolution and measured there. */
static void support_renorm(const sg_engine *e, const sg_gen_cache *gc, float *theta, int n, const float *x, float beta,
                           float *feat) {
    int C = e->cfg.width;
    sg_engine *me = (sg_engine *)e; /* workspaces only */
    /* scratch for the statistics passes: pooled max + min, two outputs, conv work */
    size_t pool_f = 0, work_f = 0;
    for (int s = 0; s < e->n_units; s++) {
        if (!unit_pools(e, s)) continue;
        const sg_layer *l = &e->syn.layers[e->unit_layer[s]];
        sg_conv2d_cfg cc = {l->cin, l->cout, l->k, l->stride, l->pad};
        size_t pf = (size_t)n * l->cout * (l->out_h / 2) * (l->out_w / 2), wf = sg_conv2d_pool_stats_work_floats(&cc, n, l->in_h, l->in_w);
        pool_f = pf > pool_f ? pf : pool_f;
        work_f = wf > work_f ? wf : work_f;
    }
    if (4 * pool_f + work_f > me->sn_cap) {
        free(me->sn_buf);
        me->sn_cap = 4 * pool_f + work_f;
        me->sn_buf = sg_xalloc_floats(me->sn_cap);
    }
    float *ypool = me->sn_buf, *outs[2] = {ypool + 2 * pool_f, ypool + 3 * pool_f}, *work = ypool + 4 * pool_f;
    const float *in = x;
    int pos = 0, flip = 0; /* the next layer of syn to run on in */
    for (int s = 0; s < e->n_units; s++) {
        int ci = e->unit_layer[s];
        const sg_layer *cl = &e->syn.layers[ci], *al = &e->syn.layers[ci + 1];
        const sg_layer *bn = &e->base.layers[ci + 1];
        const float *g = e->params + bn->param_off, *b = g + C;
        const float *rm = e->state + bn->state_off, *rv = rm + C;
        int hw = cl->out_h * cl->out_w, fast = unit_pools(e, s);
        if (fast && pos < ci) { /* the layers since the last measured unit (a ReLU, a pool) first */
            in = syn_segment(e, &me->ws_seg[s], pos, ci, in, n, theta);
            pos = ci;
        }
        double su[SG_ENGINE_MAX_WIDTH] = {0}, ss[SG_ENGINE_MAX_WIDTH] = {0};
        double mean[SG_ENGINE_MAX_WIDTH], var[SG_ENGINE_MAX_WIDTH];
        if (fast) {
            sg_conv2d_cfg cc = {cl->cin, cl->cout, cl->k, cl->stride, cl->pad};
            sg_conv2d_forward_pool_stats(&cc, n, cl->in_h, cl->in_w, in, theta + cl->param_off, ypool, su, ss, work);
        } else {
            /* each segment has its own workspace, so its output stays valid as the next one's input */
            in = syn_segment(e, &me->ws_seg[s], pos, ci + 1, in, n, theta);
            sg_channel_sums(n, C, hw, in, su, ss);
        }
        sg_channel_moments(C, (double)n * hw, su, ss, mean, var);
        float *sc = theta + al->param_off, *sh = sc + C;
        for (int c = 0; c < C; c++) {
            float tm = (1 - beta) * rm[c] + beta * (float)mean[c], tv = (1 - beta) * rv[c] + beta * (float)var[c];
            float fs = g[c] / sqrtf(tv + e->base.bn_eps), ft = b[c] - tm * fs;
            sc[c] = fs * (1 + gc->gamma[s][c]);
            sh[c] = ft * (1 + gc->gamma[s][c]) + gc->beta[s][c];
        }
        if (!fast) {
            pos = ci + 1;
            continue;
        }
        /* affine, ReLU, pool from the pooled max (scale ≥ 0) or min (< 0), as the fused convolution computes them */
        size_t op = (size_t)(cl->out_h / 2) * (cl->out_w / 2), half = (size_t)n * C * op;
        float *out = outs[flip];
        flip ^= 1;
        for (int i = 0; i < n; i++)
            for (int c = 0; c < C; c++) {
                size_t o = ((size_t)i * C + c) * op;
                const float *restrict v = ypool + (sc[c] >= 0 ? o : half + o);
                float *restrict d = out + o;
                for (size_t q = 0; q < op; q++) {
                    float t = fmaf(v[q], sc[c], sh[c]);
                    d[q] = t > 0 ? t : 0;
                }
            }
        in = out;
        pos = ci + 4;
    }
    if (pos < e->syn.n_layers) in = syn_segment(e, &me->ws_seg[e->n_units], pos, e->syn.n_layers, in, n, theta);
    memcpy(feat, in, sizeof(float) * (size_t)n * C);
}

/* What synthesis computes for a task before its head: the synthesized
 * backbone theta and the support features through it (ns · views rows, class
 * by class, labels ys), the text codes and the head's per-class flags. */
typedef struct synth_prep {
    int N, C, ns, views;
    float *theta, *fsup;
    int *ys;
    float (*codes)[SG_TEXT_MAX_DIM];
    head_state *h;
} synth_prep;

static void synth_prep_free(synth_prep *p) {
    free(p->theta);
    free(p->fsup);
    free(p->ys);
    free(p->codes);
    head_free(p->h);
    memset(p, 0, sizeof *p);
}

static sg_status synth_prepare(const sg_engine *e, const sg_task *task, const sg_synth_opts *o, synth_prep *p,
                               sg_err *err) {
    const sg_engine_config *cf = &e->cfg;
    int N = task->n_classes, C = cf->width, T = cf->code_dim, Z = e->zdim;
    memset(p, 0, sizeof *p);
    if (N < 2 || N > SG_MAX_WAY) return sg_err_set(err, SG_ERR_ARG, "task has %d classes; 2..%d are supported", N, SG_MAX_WAY);
    size_t isz = (size_t)3 * cf->img * cf->img, ssz = (size_t)3 * cf->store * cf->store;
    int ns = 0, n_text = 0;
    for (int c = 0; c < N; c++) {
        const sg_task_class *k = &task->classes[c];
        int img = o->use_images && k->n_shots > 0, txt = o->use_text && sg_text_has_words(k->text);
        if (!img && !txt)
            return sg_err_set(err, SG_ERR_ARG, "class '%s' has no %s", k->name ? k->name : "?",
                              o->use_images ? (o->use_text ? "support image and no description (a description needs a word: ASCII letters or digits)" : "support image")
                                            : "description (text-only synthesis; a description needs a word: ASCII letters or digits)");
        if (img) ns += k->n_shots;
        n_text += txt;
    }
    int views = o->flip_aug ? 2 : 1;
    p->N = N;
    p->C = C;
    p->ns = ns;
    p->views = views;
    float *xs = sg_xalloc_floats((size_t)(ns ? ns : 1) * views * isz);
    for (int c = 0, k = 0; c < N && o->use_images; c++)
        for (int i = 0; i < task->classes[c].n_shots; i++, k++)
            for (int v = 0; v < views; v++)
                sg_engine_prepare_image(e, task->classes[c].images + i * ssz, v, xs + ((size_t)k * views + v) * isz);
    float *z = sg_xalloc_floats((size_t)Z);
    p->codes = sg_xcalloc((size_t)N, sizeof *p->codes);
    head_state *h = p->h = head_create(N, C);
    int *ids = sg_xmalloc(sizeof(int) * SG_TEXT_MAX_IDS);
    sg_text_cache tc;
    for (int c = 0; c < N; c++) {
        const sg_task_class *k = &task->classes[c];
        h->has_img[c] = o->use_images && k->n_shots > 0;
        h->has_text[c] = o->use_text && sg_text_has_words(k->text);
        if (!h->has_text[c]) continue;
        int nid = sg_text_tokenize(k->text, cf->text_buckets, ids, SG_TEXT_MAX_IDS);
        sg_text_forward(e, ids, nid, NULL, &tc);
        memcpy(p->codes[c], tc.code, sizeof(float) * (size_t)T);
        for (int t = 0; t < T; t++) z[C + t] += p->codes[c][t] / (float)n_text;
    }
    sg_engine *me = (sg_engine *)e; /* workspaces only */
    sg_ctx *ctx;
    if (ns && o->adapt && summary_used(e)) {
        ctx = sg_engine_ws(&me->ws_base, &e->base, ns);
        /* The summary sees the unflipped views, as in training. */
        float *x1 = sg_xalloc_floats((size_t)ns * isz);
        for (int k = 0; k < ns; k++) memcpy(x1 + k * isz, xs + (size_t)k * views * isz, sizeof(float) * isz);
        sg_engine_image_summary(e, ctx, ns, x1, z);
        free(x1);
    }
    z[C + T] = ns > 0;
    z[C + T + 1] = n_text > 0;
    p->theta = sg_xalloc_floats(e->syn.n_params);
    sg_gen_cache *gc = sg_gen_cache_create(e);
    sg_gen_forward(e, z, o->adapt, gc, p->theta);
    float bsup = sg_synth_support_norm(e, o, ns);
    if (bsup > 0) {
        p->fsup = sg_xalloc_floats((size_t)ns * views * C);
        support_renorm(e, gc, p->theta, ns * views, xs, bsup, p->fsup);
    }
    sg_gen_cache_free(gc);
    if (ns) {
        if (!p->fsup) { /* (support_renorm computed them on its way) */
            ctx = sg_engine_ws(&me->ws_sup, &e->syn, ns * views);
            const float *fs = sg_net_forward(&e->syn, ctx, p->theta, NULL, xs, ns * views, 0);
            p->fsup = sg_xalloc_floats((size_t)ns * views * C);
            memcpy(p->fsup, fs, sizeof(float) * (size_t)ns * views * C);
        }
        p->ys = sg_xmalloc(sizeof(int) * (size_t)ns * views);
        for (int c = 0, k = 0; c < N; c++)
            for (int i = 0; h->has_img[c] && i < task->classes[c].n_shots * views; i++) p->ys[k++] = c;
    }
    free(z);
    free(xs);
    free(ids);
    return SG_OK;
}

/* The head as synthesis writes it: the centre (p->h->m) and the weights
 * W (N, C) = τ · normalized centred prototypes + ρ · ridge, from the support
 * features with support image `skip` left out (its views; -1: none). */
static void synth_head(const sg_engine *e, const sg_task *task, synth_prep *p, int skip, float *W) {
    int N = p->N, C = p->C, views = p->views;
    head_state *h = p->h;
    float (*fimg)[SG_ENGINE_MAX_WIDTH] = sg_xcalloc((size_t)N, sizeof *fimg);
    for (int c = 0, k = 0; c < N; c++) {
        int n = task->classes[c].n_shots;
        if (!h->has_img[c]) continue;
        int used = n - (skip >= k && skip < k + n);
        for (int i = 0; i < n; i++, k++)
            for (int v = 0; k != skip && v < views; v++)
                for (int j = 0; j < C; j++) fimg[c][j] += p->fsup[((size_t)k * views + v) * C + j] / (float)(used * views);
    }
    head_forward(e, h, fimg, p->codes);
    free(fimg);
    float tau = expf(e->params[e->off_logtau]), rho = e->params[e->off_rho];
    for (int c = 0; c < N; c++)
        for (int j = 0; j < C; j++) W[(size_t)c * C + j] = tau * h->nrm[c][j];
    if (!p->ns || rho == 0) return;
    /* plus the ridge-regression head over the centred support features (every view) */
    int rows = (p->ns - (skip >= 0)) * views;
    float *us = sg_xalloc_floats((size_t)rows * C);
    const float *f = p->fsup;
    int *ys = p->ys;
    if (skip >= 0) { /* the rows of the other images */
        float *fk = sg_xalloc_floats((size_t)rows * C);
        ys = sg_xmalloc(sizeof(int) * (size_t)(rows ? rows : 1));
        for (int k = 0, r = 0; k < p->ns * views; k++) {
            if (k / views == skip) continue;
            memcpy(fk + (size_t)r * C, p->fsup + (size_t)k * C, sizeof(float) * (size_t)C);
            ys[r++] = p->ys[k];
        }
        f = fk;
    }
    sg_l2norm_forward(rows, C, f, h->m, SG_L2NORM_EPS, us);
    if (f != p->fsup) free((float *)f);
    ridge_state rs = {0};
    ridge_forward(rows, N, C, us, ys, expf(e->params[e->off_loglam]), &rs);
    for (size_t i = 0; i < (size_t)N * C; i++) W[i] += rho * rs.w[i];
    ridge_free(&rs);
    if (ys != p->ys) free(ys);
    free(us);
}

sg_status sg_engine_synthesize(const sg_engine *e, const sg_task *task, const sg_synth_opts *o, sg_classifier **out,
                               sg_err *err) {
    *out = NULL;
    synth_prep p;
    sg_status st = synth_prepare(e, task, o, &p, err);
    if (st != SG_OK) return st;
    int N = p.N, C = p.C;
    /* The classifier: synthesized backbone, centred L2 norm, linear head
     * (cosine to the prototypes + ridge regression). */
    sg_arch a = e->syn;
    int li = sg_arch_add_l2norm(&a);
    int lh = sg_arch_add_linear(&a, N, 1);
    float *params = sg_xalloc_floats(a.n_params);
    memcpy(params, p.theta, sizeof(float) * e->syn.n_params);
    synth_head(e, task, &p, -1, params + a.layers[lh].param_off);
    memcpy(params + a.layers[li].param_off, p.h->m, sizeof(float) * (size_t)C);
    const char **names = sg_xcalloc((size_t)N, sizeof *names);
    for (int c = 0; c < N; c++) names[c] = task->classes[c].name ? task->classes[c].name : "";
    *out = sg_classifier_create(&a, e->mean, e->std, N, names, params, NULL);
    free(names);
    free(params);
    synth_prep_free(&p);
    return SG_OK;
}

sg_status sg_engine_support_loo_fast(const sg_engine *e, const sg_task *task, const sg_synth_opts *o, float *logits,
                                     sg_err *err) {
    synth_prep p;
    sg_status st = synth_prepare(e, task, o, &p, err);
    if (st != SG_OK) return st;
    int N = p.N, C = p.C;
    float *W = sg_xalloc_floats((size_t)N * C), *u = sg_xalloc_floats((size_t)C);
    for (int c = 0, k = 0; c < N; c++)
        for (int i = 0; p.h->has_img[c] && i < task->classes[c].n_shots; i++, k++) {
            if (task->classes[c].n_shots < 2) continue;
            synth_head(e, task, &p, k, W);
            /* the image as the whole task's classifier sees it: its unflipped view */
            sg_l2norm_forward(1, C, p.fsup + (size_t)k * p.views * C, p.h->m, SG_L2NORM_EPS, u);
            for (int j = 0; j < N; j++) {
                float s = 0;
                for (int q = 0; q < C; q++) s += W[(size_t)j * C + q] * u[q];
                logits[(size_t)k * N + j] = s;
            }
        }
    free(W);
    free(u);
    synth_prep_free(&p);
    return SG_OK;
}

/* Head calibration (sg_train.c): one image-only episode, prepared exactly as
 * default synthesis prepares it (support views and support normalization
 * as sg_synth_opts_default says, generated kernels and FiLM, centre from the
 * mean of the prototypes);
 * the backbone features are computed once and every candidate head is
 * scored on the queries:
 * logits = s · (a · cos(u, p̂_c) + b · u · W_ridge(λ)), centre κ · mean_c p_c.
 * acc[k] += accuracy of candidate k; nll[k · n_scale + j] += mean NLL of
 * candidate k at scale scales[j]. */
void sg_engine_head_eval(const sg_engine *e, const sg_episode *ep, int n_cand, const sg_head_cand *cand, int n_scale,
                         const float *scales, double *acc, double *nll) {
    const sg_engine_config *cf = &e->cfg;
    sg_synth_opts so;
    sg_synth_opts_default(&so);
    int N = ep->way, C = cf->width, T = cf->code_dim, Z = e->zdim, views = so.flip_aug ? 2 : 1;
    size_t isz = (size_t)3 * cf->img * cf->img, ssz = (size_t)3 * cf->store * cf->store;
    int ns = 0, nq = ep->n_query;
    for (int c = 0; c < N; c++) ns += ep->shots[c];
    SG_ASSERT(ns > 0 && N >= 2 && N <= SG_MAX_WAY);
    float *xs = sg_xalloc_floats((size_t)ns * views * isz), *x1 = sg_xalloc_floats((size_t)ns * isz);
    float *xq = sg_xalloc_floats((size_t)nq * isz);
    int *ys = sg_xmalloc(sizeof(int) * (size_t)ns * views);
    for (int c = 0, k = 0; c < N; c++)
        for (int i = 0; i < ep->shots[c]; i++, k++) {
            for (int v = 0; v < views; v++) {
                sg_engine_prepare_image(e, ep->support[c] + i * ssz, v, xs + ((size_t)k * views + v) * isz);
                ys[k * views + v] = c;
            }
            memcpy(x1 + (size_t)k * isz, xs + (size_t)k * views * isz, sizeof(float) * isz);
        }
    for (int q = 0; q < nq; q++) sg_engine_prepare_image(e, ep->query + q * ssz, 0, xq + q * isz);
    float *z = sg_xalloc_floats((size_t)Z);
    sg_engine *me = (sg_engine *)e; /* workspaces only */
    sg_engine_image_summary(e, sg_engine_ws(&me->ws_base, &e->base, ns), ns, x1, z);
    z[C + T] = 1;
    float *theta = sg_xalloc_floats(e->syn.n_params);
    sg_gen_cache *gc = sg_gen_cache_create(e);
    sg_gen_forward(e, z, 1, gc, theta);
    float *fs = sg_xalloc_floats((size_t)ns * views * C), *fq = sg_xalloc_floats((size_t)nq * C);
    float bsup = sg_engine_support_norm(e, so.support_norm);
    if (bsup > 0) support_renorm(e, gc, theta, ns * views, xs, bsup, fs);
    else
        memcpy(fs, sg_net_forward(&e->syn, sg_engine_ws(&me->ws_sup, &e->syn, ns * views), theta, NULL, xs, ns * views, 0),
               sizeof(float) * (size_t)ns * views * C);
    sg_gen_cache_free(gc);
    memcpy(fq, sg_net_forward(&e->syn, sg_engine_ws(&me->ws_qry, &e->syn, nq), theta, NULL, xq, nq, 0),
           sizeof(float) * (size_t)nq * C);
    float *proto = sg_xalloc_floats((size_t)N * C), *mraw = sg_xalloc_floats((size_t)C), *m = sg_xalloc_floats((size_t)C);
    for (int k = 0; k < ns * views; k++)
        for (int j = 0; j < C; j++) proto[(size_t)ys[k] * C + j] += fs[(size_t)k * C + j] / (float)(ep->shots[ys[k]] * views);
    for (int c = 0; c < N; c++)
        for (int j = 0; j < C; j++) mraw[j] += proto[(size_t)c * C + j] / (float)N;
    float *pc = sg_xalloc_floats((size_t)N * C), *pn = sg_xalloc_floats((size_t)N * C);
    float *us = sg_xalloc_floats((size_t)ns * views * C), *u = sg_xalloc_floats((size_t)nq * C);
    float *l1 = sg_xalloc_floats((size_t)nq * N), *l2 = sg_xalloc_floats((size_t)nq * N);
    for (int k = 0; k < n_cand; k++) {
        const sg_head_cand *h = &cand[k];
        for (int j = 0; j < C; j++) m[j] = h->kappa * mraw[j];
        for (size_t i = 0; i < (size_t)N * C; i++) pc[i] = proto[i] - m[i % (size_t)C];
        sg_l2norm_forward(N, C, pc, NULL, SG_L2NORM_EPS, pn);
        sg_l2norm_forward(nq, C, fq, m, SG_L2NORM_EPS, u);
        ridge_state rs = {0};
        if (h->b != 0) {
            sg_l2norm_forward(ns * views, C, fs, m, SG_L2NORM_EPS, us);
            ridge_forward(ns * views, N, C, us, ys, h->lambda, &rs);
        }
        for (int q = 0; q < nq; q++)
            for (int c = 0; c < N; c++) {
                float s1 = 0, s2 = 0;
                for (int j = 0; j < C; j++) {
                    s1 += u[(size_t)q * C + j] * pn[(size_t)c * C + j];
                    if (h->b != 0) s2 += u[(size_t)q * C + j] * rs.w[(size_t)c * C + j];
                }
                l1[(size_t)q * N + c] = s1;
                l2[(size_t)q * N + c] = s2;
            }
        int right = 0;
        for (int q = 0; q < nq; q++) {
            const float *a1 = l1 + (size_t)q * N, *a2 = l2 + (size_t)q * N;
            int best = 0;
            for (int c = 1; c < N; c++)
                if (h->a * a1[c] + h->b * a2[c] > h->a * a1[best] + h->b * a2[best]) best = c;
            right += best == ep->query_label[q];
            for (int j = 0; j < n_scale; j++) {
                double mx = -1e300, se = 0, ly = 0;
                for (int c = 0; c < N; c++) {
                    double l = scales[j] * (h->a * a1[c] + h->b * a2[c]);
                    mx = l > mx ? l : mx;
                }
                for (int c = 0; c < N; c++) {
                    double l = scales[j] * (h->a * a1[c] + h->b * a2[c]);
                    se += exp(l - mx);
                    if (c == ep->query_label[q]) ly = l;
                }
                nll[(size_t)k * n_scale + j] += (mx + log(se) - ly) / nq;
            }
        }
        acc[k] += (double)right / nq;
        if (h->b != 0) ridge_free(&rs);
    }
    free(xs); free(x1); free(xq); free(ys); free(z); free(theta); free(fs); free(fq); free(proto); free(mraw); free(m);
    free(pc); free(pn); free(us); free(u); free(l1); free(l2);
}
