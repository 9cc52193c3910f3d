/* test_synth_grad.c — the meta-training gradient, generator → synthesized
 * classifier → episode loss (sg_engine_episode_grad), against central finite
 * differences of the loss over every stage-2 parameter kind: the embedding
 * rows the episode's texts use, the text MLP, the FiLM γ/β generators, the
 * kernel-delta factors U, V and the α generator A of every stage, the text
 * projection P, ω, log τ, the centring weight κ, and the ridge head's ρ and
 * log λ.
 *
 * The engine is tiny (8 px, width 4, 2 stages), so every parameter of every
 * block is visited. The generators are moved off their zero initialization
 * and the base batch norm off identity first, so that the whole path
 * (FiLM, kernel deltas, folded-norm shift) carries gradient. The loss is a
 * float; the step is the difference actually representable in float and the
 * tolerance allows for the loss's rounding. ReLU and max-pool kinks are
 * detected from the four half-step slopes and skipped (counted and bounded).
 * The base backbone is frozen in stage 2 (and the image summary goes
 * through it), so its gradient must stay exactly untouched.
 *
 * Gradient buffers are pre-filled with noise and the analytic gradient is
 * read as (after − before): an overwriting backward fails. */
#include "sg_synth_fixtures.h"

#include <criterion/criterion.h>
#include <float.h>

typedef struct fd_stats {
    int checked, skipped;
    double worst;
} fd_stats;

static double ep_loss(sg_engine *e, const sg_episode *ep) { return sg_engine_episode_grad(e, ep, NULL, 1.0f, NULL); }

/* Loss at orig + (q − 2)·h/2, q = 0..4; at[] receives the represented points. */
static void five_points(sg_engine *e, const sg_episode *ep, size_t i, float h, double l[5], double at[5]) {
    float *p = sg_engine_params(e), orig = p[i];
    for (int q = 0; q < 5; q++) {
        p[i] = orig + h * 0.5f * (float)(q - 2);
        at[q] = (double)p[i] - orig;
        l[q] = ep_loss(e, ep);
    }
    p[i] = orig;
}

/* Checks analytic[idx[k]] for k < n by finite differences; indices at a
 * ReLU / max-pool kink are skipped and counted. */
static fd_stats check_block(sg_engine *e, const sg_episode *ep, const float *analytic, const char *what,
                            const size_t *idx, size_t n, float h) {
    double *num = sg_xcalloc(n, sizeof(double)), *floor_ = sg_xcalloc(n, sizeof(double));
    int *skip = sg_xcalloc(n, sizeof(int));
    double l0 = ep_loss(e, ep), ss = 0;
    /* The float forward rounds the loss with a relative noise of about 1e-7
     * (measured: the residual of a line fit over 1e-5 steps); 2e-7 to be safe. */
    double sigma = 2e-7 * fabs(l0);
    fd_stats st = {0, 0, 0};
    for (size_t k = 0; k < n; k++) {
        /* Fourth-order central differences over the half-steps δ = h/2 and
         * δ = h/8. A stencil whose four slopes jump holds a kink. The wide
         * one is used when both are smooth and agree; else the narrow one
         * when smooth (a kink inside the wide stencil that its slopes do not
         * reveal shows as a disagreement); else the index is skipped. */
        double est[2], fl[2];
        int smooth[2];
        for (int t = 0; t < 2; t++) {
            float hk = t ? h / 4 : h;
            double l[5], at[5], d = hk / 2.0;
            five_points(e, ep, idx[k], hk, l, at);
            /* (−L(+2δ) + 8L(+δ) − 8L(−δ) + L(−2δ)) / 12δ, over the represented steps */
            est[t] = (8 * (l[3] - l[1]) - (l[4] - l[0])) / (3 * (at[4] - at[0]));
            fl[t] = 4 * sigma / d;
            double sl[4], lo = 1e300, hi = -1e300;
            for (int q = 0; q < 4; q++) sl[q] = (l[q + 1] - l[q]) / (at[q + 1] - at[q]);
            for (int q = 0; q < 3; q++) {
                double dd = sl[q + 1] - sl[q];
                lo = dd < lo ? dd : lo;
                hi = dd > hi ? dd : hi;
            }
            /* the slope increments agree up to curvature change and noise */
            smooth[t] = hi - lo <= 1e-2 * fabs(est[t]) + 12 * sigma / d;
        }
        int agree = fabs(est[0] - est[1]) <= 1e-2 * fabs(est[0]) + fl[0] + fl[1];
        int use = smooth[0] && smooth[1] && agree ? 0 : 1;
        num[k] = est[use];
        floor_[k] = fl[use];
        skip[k] = !smooth[1];
        st.skipped += skip[k];
        ss += num[k] * num[k];
    }
    cr_assert(ep_loss(e, ep) == l0, "%s: parameters not restored", what);
    double rms = sqrt(ss / (double)(n ? n : 1)), dd = 0, nn = 0, ff = 0;
    size_t worst_k = 0;
    for (size_t k = 0; k < n; k++) {
        if (skip[k]) continue;
        st.checked++;
        double a = analytic[idx[k]], d = fabs(a - num[k]);
        /* error in units of the allowance tol·(|n| + 0.05·rms) + noise floor */
        double rel = d / (3e-2 * (fabs(num[k]) + 0.05 * rms) + floor_[k]);
        dd += d * d;
        nn += num[k] * num[k];
        ff += floor_[k] * floor_[k];
        if (rel > st.worst) {
            st.worst = rel;
            worst_k = k;
        }
    }
    cr_log_info("%-10s L %.3f %4zu params, %4d checked, %3d at kinks, rms grad %.3g, worst err/allowance %.3g", what, l0, n,
                st.checked, st.skipped, rms, st.worst);
    /* a block's gradient must stand out of the noise; a lone scalar may be small by chance */
    cr_assert(n < 4 || rms > 16 * sigma / h, "%s: finite differences vanish (rms %.3g): the path carries no gradient", what,
              rms);
    cr_assert(st.worst <= 1.0, "%s: param %zu analytic %.7g vs numeric %.7g (%.3g × allowance)", what, idx[worst_k],
              (double)analytic[idx[worst_k]], num[worst_k], st.worst);
    /* the floor is about four noise deviations: allow two in the norm */
    cr_assert(sqrt(dd) <= 1.5e-2 * sqrt(nn) + 0.5 * sqrt(ff), "%s: norm relative error %.3g", what,
              sqrt(dd / (nn + 1e-30)));
    cr_assert(st.skipped * 2 <= (int)n, "%s: %d of %zu indices at kinks", what, st.skipped, n);
    free(num);
    free(floor_);
    free(skip);
    return st;
}

static void check_range(sg_engine *e, const sg_episode *ep, const float *analytic, const char *what, size_t off,
                        size_t n, float h, fd_stats *tot) {
    size_t *idx = sg_xmalloc(sizeof(size_t) * n);
    for (size_t k = 0; k < n; k++) idx[k] = off + k;
    fd_stats s = check_block(e, ep, analytic, what, idx, n, h);
    tot->checked += s.checked;
    tot->skipped += s.skipped;
    free(idx);
}

/* An episode over fixture images: class c has shots[c] support images and
 * text texts[c] (NULL for none); nq queries with labels cycling over classes. */
typedef struct ep_fix {
    int shots[SG_MAX_WAY];
    const uint8_t *support[SG_MAX_WAY];
    const char *texts[SG_MAX_WAY];
    uint8_t *pix;
    int qlab[64];
    sg_episode ep;
} ep_fix;

static void ep_fix_build(ep_fix *f, const sg_engine_config *c, int way, const int *shots, const char *const *texts,
                         int nq, uint64_t seed) {
    memset(f, 0, sizeof *f);
    size_t ssz = (size_t)3 * c->store * c->store;
    int ns = 0;
    for (int k = 0; k < way; k++) ns += shots[k];
    f->pix = sg_xmalloc(ssz * (size_t)(ns + nq));
    sg_rng r;
    sg_rng_seed(&r, seed);
    uint8_t *q = f->pix;
    for (int k = 0; k < way; k++) {
        f->shots[k] = shots[k];
        f->support[k] = q;
        f->texts[k] = texts ? texts[k] : NULL;
        for (int i = 0; i < shots[k]; i++, q += ssz) fx_draw(&r, k % FX_N_SHAPES, (k * 3 + 1) % FX_N_COLOURS, c->store, q);
    }
    const uint8_t *qry = q;
    for (int i = 0; i < nq; i++, q += ssz) {
        f->qlab[i] = i % way;
        fx_draw(&r, f->qlab[i] % FX_N_SHAPES, (f->qlab[i] * 3 + 1) % FX_N_COLOURS, c->store, q);
    }
    f->ep.way = way;
    f->ep.shots = f->shots;
    f->ep.support = f->support;
    f->ep.texts = f->texts;
    f->ep.n_query = nq;
    f->ep.query = qry;
    f->ep.query_label = f->qlab;
}

/* Analytic gradient with a noise-filled buffer; returns after − before. */
static float *analytic_grad(sg_engine *e, const sg_episode *ep, float scale, float *loss) {
    size_t np = sg_engine_n_params(e);
    float *g = sg_xalloc_floats(np), *before = sg_xalloc_floats(np);
    sg_rng r;
    sg_rng_seed(&r, 4242);
    for (size_t i = 0; i < np; i++) before[i] = g[i] = sg_rng_normal(&r);
    *loss = sg_engine_episode_grad(e, ep, g, scale, NULL);
    for (size_t i = 0; i < np; i++) g[i] -= before[i];
    /* The frozen base (backbone + stage-1 head) must not have been written at all. */
    for (size_t i = 0; i < sg_engine_stage2_offset(e); i++)
        cr_assert(g[i] == 0.0f, "base parameter %zu received gradient %g in stage 2", i, g[i]);
    free(before);
    return g;
}

/* The embedding rows the episode's texts use (sorted, unique). */
static int used_rows(const sg_engine *e, const sg_episode *ep, uint8_t *used) {
    int B = e->cfg.text_buckets, n = 0, ids[SG_TEXT_MAX_IDS];
    memset(used, 0, (size_t)B);
    for (int c = 0; c < ep->way; c++) {
        if (!ep->texts || !ep->texts[c]) continue;
        int k = sg_text_tokenize(ep->texts[c], B, ids, SG_TEXT_MAX_IDS);
        for (int i = 0; i < k; i++) used[ids[i]] = 1;
    }
    for (int b = 0; b < B; b++) n += used[b];
    return n;
}

/* Checks every stage-2 block; has_text selects whether the text path is live. */
static void check_all(sg_engine *e, const sg_episode *ep, int has_img, int has_text, int has_img_text) {
    float loss;
    float *g = analytic_grad(e, ep, 1.0f, &loss);
    cr_assert(isfinite(loss) && loss > 0);
    cr_assert(fabs(loss - ep_loss(e, ep)) <= 1e-6 * fabs(loss), "loss with and without gradient differ: %g vs %g",
              loss, ep_loss(e, ep));
    const sg_engine_config *c = &e->cfg;
    int E = c->text_dim, H = c->text_hidden, T = c->code_dim, C = c->width;
    fd_stats tot = {0, 0, 0};
    char name[64];
    const float h = 2e-2f;

    /* text embedding: used rows by finite differences, the others exactly zero */
    uint8_t used[4096];
    cr_assert(c->text_buckets <= 4096);
    int n_used = used_rows(e, ep, used);
    if (has_text) {
        cr_assert(n_used >= 4);
        size_t *idx = sg_xmalloc(sizeof(size_t) * (size_t)n_used * E), n = 0;
        for (int b = 0; b < c->text_buckets; b++)
            for (int j = 0; used[b] && j < E; j++) idx[n++] = e->off_emb + (size_t)b * E + j;
        fd_stats s = check_block(e, ep, g, "embedding", idx, n, h);
        tot.checked += s.checked;
        tot.skipped += s.skipped;
        free(idx);
    }
    for (int b = 0; b < c->text_buckets; b++)
        for (int j = 0; !used[b] && j < E; j++)
            cr_assert(g[e->off_emb + (size_t)b * E + j] == 0.0f, "unused embedding row %d has gradient", b);

    size_t text_n[3] = {(size_t)H * E + H, (size_t)T * H + T, (size_t)C * T + C};
    size_t text_off[3] = {e->off_t1, e->off_t2, e->off_P};
    const char *text_name[3] = {"text MLP 1", "text MLP 2", "P"};
    for (int k = 0; k < 3; k++) {
        if (has_text) {
            check_range(e, ep, g, text_name[k], text_off[k], text_n[k], h, &tot);
        } else {
            for (size_t i = 0; i < text_n[k]; i++)
                cr_assert(g[text_off[k] + i] == 0.0f, "%s: gradient without any text", text_name[k]);
        }
    }
    for (int s = 0; s < e->n_units; s++) {
        size_t n_gen = (size_t)C * e->zdim + C;
        snprintf(name, sizeof name, "FiLM-g %d", s);
        check_range(e, ep, g, name, e->off_gg[s], n_gen, h, &tot);
        snprintf(name, sizeof name, "FiLM-b %d", s);
        check_range(e, ep, g, name, e->off_gb[s], n_gen, h, &tot);
        /* the kernel factors move many pre-activations at once: shorter steps */
        snprintf(name, sizeof name, "U %d", s);
        check_range(e, ep, g, name, e->off_U[s], e->off_V[s] - e->off_U[s], h / 4, &tot);
        snprintf(name, sizeof name, "V %d", s);
        check_range(e, ep, g, name, e->off_V[s], e->off_A[s] - e->off_V[s], h / 4, &tot);
        snprintf(name, sizeof name, "A %d", s);
        check_range(e, ep, g, name, e->off_A[s], (size_t)c->rank * e->zdim + c->rank, h, &tot);
    }
    if (has_img_text) check_range(e, ep, g, "omega", e->off_omega, 1, h, &tot);
    else cr_assert(g[e->off_omega] == 0.0f, "ω has gradient but no class has both images and text");
    check_range(e, ep, g, "log tau", e->off_logtau, 1, h, &tot);
    check_range(e, ep, g, "kappa", e->off_kappa, 1, h, &tot);
    if (has_img) {
        check_range(e, ep, g, "rho", e->off_rho, 1, h, &tot);
        check_range(e, ep, g, "log lambda", e->off_loglam, 1, h, &tot);
    } else {
        cr_assert(g[e->off_rho] == 0.0f && g[e->off_loglam] == 0.0f, "ridge head has gradient without support images");
    }
    cr_assert(e->off_loglam + 1 == sg_engine_n_params(e), "a parameter block is not covered by this test");
    cr_log_info("total: %d checked, %d at kinks", tot.checked, tot.skipped);
    cr_assert(tot.skipped * 5 <= tot.checked + tot.skipped, "%d of %d indices at kinks", tot.skipped,
              tot.checked + tot.skipped);

    /* `scale` scales the accumulated gradient and nothing else (zeroed
     * buffers here, so the comparison is not limited by the prefill). */
    size_t np = sg_engine_n_params(e);
    float *z1 = sg_xalloc_floats(np), *g2 = sg_xalloc_floats(np);
    float loss1 = sg_engine_episode_grad(e, ep, z1, 1.0f, NULL), loss2 = sg_engine_episode_grad(e, ep, g2, 0.25f, NULL);
    cr_assert(loss1 == loss && loss2 == loss, "the loss depends on scale");
    for (size_t i = 0; i < np; i++)
        cr_assert(fabsf(g2[i] - 0.25f * z1[i]) <= 1e-5f * fabsf(z1[i]) + 1e-9f, "scale: %zu %g vs %g", i, g2[i], z1[i]);
    free(z1);
    free(g2);
    free(g);
}

/* Width of the deeper tiny engines: at width 4 two convolutions in a row
 * leave most channels dead or at a kink for the 2e-2 steps. */
#define WIDTH_DEEP 6

static sg_engine *tiny_engine_convs(uint64_t seed, int c0, int c1) {
    sg_engine_config c = fx_tiny_config();
    if (c0 + c1 > 2) c.width = WIDTH_DEEP;
    c.convs[0] = c0;
    c.convs[1] = c1;
    sg_engine *e = sg_engine_create(&c, seed);
    fx_engine_perturb(e, seed + 1, 0.15f);
    /* τ = 4 keeps the loss away from saturation (where its rounding noise
     * would hide small gradients). */
    sg_engine_params(e)[e->off_logtau] = logf(4.0f);
    return e;
}

static sg_engine *tiny_engine(uint64_t seed) { return tiny_engine_convs(seed, 1, 1); }

/* Builds a `way`-way episode (q queries per class, fixture seed), checks every
 * gradient block of e on it, and frees e. */
static void check_episode(sg_engine *e, int way, const int *shots, const char *const *texts, int q, uint64_t seed,
                          int has_img, int has_text, int has_img_text) {
    ep_fix f;
    ep_fix_build(&f, &e->cfg, way, shots, texts, q, seed);
    check_all(e, &f.ep, has_img, has_text, has_img_text);
    free(f.pix);
    sg_engine_free(e);
}

/* Mixed shots 2, 1, 0: class 0 has images and text (ω), class 1 images only,
 * class 2 text only. */
Test(synth_grad, mixed_shots_images_and_text) {
    sg_engine *e = tiny_engine(11);
    const int shots[3] = {2, 1, 0};
    const char *texts[3] = {"A red disc, on a DARK background", NULL, "a blue ring on a dark background"};
    check_episode(e, 3, shots, texts, 6, 5, 1, 1, 1);
}

/* Two convolutions in each stage (sg_arch_convnet): every unit's generator
 * and the head. A deeper net crosses more ReLU and max-pool kinks within a
 * step; on most seeds some block has too many indices at kinks for the
 * check (probing those by hand, the one-sided slopes converge to the
 * analytic value as the step shrinks), so the seed is one whose episode is
 * clean at this step. */
Test(synth_grad, deeper_stages) {
    sg_engine *e = tiny_engine_convs(19, 2, 2);
    cr_assert(e->n_units == e->cfg.convs[0] + e->cfg.convs[1] && e->syn.layers[e->unit_layer[1]].kind == SG_LAYER_CONV2D &&
              e->syn.layers[e->unit_layer[1] - 1].kind == SG_LAYER_RELU, "units not laid out as conv, norm, ReLU");
    const int shots[3] = {2, 1, 0};
    const char *texts[3] = {"a red disc", NULL, "a blue ring on a dark background"};
    check_episode(e, 3, shots, texts, 6, 9, 1, 1, 1);
}

/* Every class has images and text: ω collects from all of them. */
Test(synth_grad, four_way_all_with_text) {
    sg_engine *e = tiny_engine(12);
    const int shots[4] = {1, 3, 1, 2};
    const char *texts[4] = {"green bar", "yellow cross on dark", "red ring", "blue disc bright"};
    check_episode(e, 4, shots, texts, 5, 6, 1, 1, 1);
}

/* Text-only episode: no support image, the image summary and its flag are zero. */
Test(synth_grad, text_only) {
    sg_engine *e = tiny_engine(13);
    const int shots[3] = {0, 0, 0};
    const char *texts[3] = {"a red disc", "a green bar", "a yellow cross"};
    check_episode(e, 3, shots, texts, 6, 7, 0, 1, 0);
}

/* Images only: the text encoder, P and ω get exactly zero gradient. */
Test(synth_grad, images_only) {
    sg_engine *e = tiny_engine(14);
    const int shots[2] = {2, 1};
    check_episode(e, 2, shots, NULL, 4, 8, 1, 0, 0);
}

/* Word dropout (training): the dropped tokens are drawn from the episode's
 * seed, so the loss stays a deterministic function of the parameters and
 * the gradient must still match; the dropped tokens' rows get none. */
Test(synth_grad, word_dropout) {
    sg_engine *e = tiny_engine(15);
    const int shots[3] = {1, 2, 0};
    const char *texts[3] = {"a red disc on a dark background", "green bar", "a blue ring, bright"};
    ep_fix f;
    ep_fix_build(&f, &e->cfg, 3, shots, texts, 6, 9);
    f.ep.word_dropout = 0.5f;
    f.ep.seed = 1234;
    float l1 = sg_engine_episode_grad(e, &f.ep, NULL, 1.0f, NULL);
    f.ep.word_dropout = 0;
    float l0 = sg_engine_episode_grad(e, &f.ep, NULL, 1.0f, NULL);
    f.ep.word_dropout = 0.5f;
    cr_assert(l1 != l0, "word dropout changed nothing");
    cr_assert(sg_engine_episode_grad(e, &f.ep, NULL, 1.0f, NULL) == l1, "word dropout is not reproducible");
    check_all(e, &f.ep, 1, 1, 1);
    free(f.pix);
    sg_engine_free(e);
}
