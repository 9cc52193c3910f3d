/* sg_train.c — meta-training of the engine, data-parallel over MPI ranks.
 *
 * Stage 1: supervised pretraining of the base CNN on every training class
 * (class-balanced batches, random resized crops, flips, light brightness and
 * contrast jitter), AdamW with cosine decay.
 * Stage 2: episodic training of the generator (text encoder, FiLM and
 * kernel-delta generators, text projection, temperature) on the frozen base:
 * N-way episodes drawn within one source set, K mixed over 0..max_shot (K = 0
 * is text-only), text dropped per class.
 *
 * Every rank draws the same batch / episodes from the same seeded stream and
 * works on its own share; one MPI_Allreduce sums the flat gradient buffer, so
 * all ranks apply the same update and keep identical weights (checked by a
 * CRC of the parameters at every validation).
 */
#include "sg_synth_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sg_train_install_signals(void) { sg_stop_signals_install(); }

/* Whether to stop after this step: a signal on any rank, or the test hook. */
static int stop_requested(const sg_train_opts *o, long *done, MPI_Comm comm, int P) {
    ++*done;
    int stop = sg_stop_requested() || (o->stop_after > 0 && *done >= o->stop_after);
    if (P > 1) MPI_Allreduce(MPI_IN_PLACE, &stop, 1, MPI_INT, MPI_MAX, comm);
    return stop;
}

/* Rank 0 writes PREFIX.state; every rank learns whether it worked. */
static sg_status save_state(const sg_train_opts *o, uint64_t hash, const sg_train_snapshot *snap, const sg_engine *e,
                            int rank, MPI_Comm comm, int P, sg_err *err) {
    if (!o->checkpoint) return SG_OK;
    char path[4096];
    snprintf(path, sizeof path, "%s.state", o->checkpoint);
    int ok = 1;
    /* every rank's running statistics: they differ between synchronizations */
    if (P > 1) MPI_Gather(e->state, (int)e->base.n_state, MPI_FLOAT, snap->rank_state, (int)e->base.n_state, MPI_FLOAT, 0, comm);
    else memcpy(snap->rank_state, e->state, sizeof(float) * e->base.n_state);
    if (rank == 0) {
        sg_err e2;
        if (sg_train_state_save(path, hash, snap, e, &e2) != SG_OK) {
            sg_log(SG_LOG_WARN, "training state: %s", e2.msg);
            ok = 0;
        }
    }
    if (P > 1) MPI_Bcast(&ok, 1, MPI_INT, 0, comm);
    return ok ? SG_OK : sg_err_set(err, SG_ERR_IO, "%s: could not write the training state", path);
}

void sg_train_opts_default(sg_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->stage1_epochs = 10;
    o->batch = 128;
    o->lr1 = 2e-3f;
    o->wd1 = 5e-4f;
    o->stage2_episodes = 1000;
    o->episodes_per_step = 4;
    o->lr2 = 1e-3f;
    o->wd2 = 1e-4f;
    o->way = 5;
    o->max_shot = 5;
    o->queries = 6;
    o->text_dropout = 0.3f;
    o->val_episodes = 60;
    o->seed = 1;
    o->log_every = 20;
    o->train_gen = o->train_text = o->train_head = 1;
    o->calib_episodes = 300;
    o->kd_weight = 0.5f;
    o->kd_temp = 4.0f;
}

sg_status sg_train_teacher_fits(const sg_engine *e, const sg_engine *teacher, int n_classes, sg_err *err) {
    const sg_engine_config *tc = &teacher->cfg;
    if (tc->n_base_classes != n_classes)
        return sg_err_set(err, SG_ERR_ARG, "teaches %d classes; the data has %d", tc->n_base_classes, n_classes);
    if (tc->img != e->cfg.img)
        return sg_err_set(err, SG_ERR_ARG, "takes %d px input; the engine being trained takes %d px", tc->img, e->cfg.img);
    for (int c = 0; c < 3; c++)
        if (fabsf(teacher->mean[c] - e->mean[c]) > 1e-4f || fabsf(teacher->std[c] - e->std[c]) > 1e-4f)
            return sg_err_set(err, SG_ERR_ARG,
                              "normalizes its input with other statistics than the engine being trained "
                              "(it was trained on other images)");
    return SG_OK;
}

/* Stage-1 distillation targets: the teachers' class probabilities at
 * temperature T for n prepared images x, averaged over the teachers → q (n, K). */
static void teacher_targets(const sg_train_opts *o, sg_ctx **tctx, int n, int K, const float *x, float *logit_t,
                            float *p, float *q) {
    memset(q, 0, sizeof(float) * (size_t)n * K);
    for (int t = 0; t < o->n_teachers; t++) {
        const sg_engine *te = o->teachers[t];
        const float *z = sg_net_forward(&te->base_cls, tctx[t], te->params, te->state, x, n, 0);
        for (size_t i = 0; i < (size_t)n * K; i++) logit_t[i] = z[i] / o->kd_temp;
        sg_softmax(n, K, logit_t, p);
        for (size_t i = 0; i < (size_t)n * K; i++) q[i] += p[i] / (float)o->n_teachers;
    }
}

/* Zeroes the stage-2 gradient of the groups that are not trained. */
static void mask_stage2(const sg_engine *e, const sg_train_opts *o, float *grad) {
    if (!o->train_gen)
        for (int s = 0; s < e->n_units; s++) {
            memset(grad + e->off_gg[s], 0, sizeof(float) * (e->off_V[s] - e->off_gg[s]));
            size_t kk = (size_t)e->syn.layers[e->unit_layer[s]].cin * 9;
            memset(grad + e->off_V[s], 0, sizeof(float) * (size_t)e->cfg.rank * kk);
            memset(grad + e->off_A[s], 0, sizeof(float) * ((size_t)e->cfg.rank * e->zdim + e->cfg.rank));
        }
    if (!o->train_text) {
        memset(grad + e->off_emb, 0, sizeof(float) * (e->off_gg[0] - e->off_emb));
        memset(grad + e->off_P, 0, sizeof(float) * (e->off_omega + 1 - e->off_P));
    }
    if (!o->train_head) {
        grad[e->off_logtau] = grad[e->off_kappa] = grad[e->off_rho] = grad[e->off_loglam] = 0;
    }
}

void sg_dataset_free(sg_dataset *d) {
    if (!d) return;
    for (int c = 0; c < d->n_classes; c++) {
        free(d->class_names ? d->class_names[c] : NULL);
        free(d->class_text ? d->class_text[c] : NULL);
    }
    for (int i = 0; i < d->n_domains; i++) free(d->domain_names ? d->domain_names[i] : NULL);
    free(d->class_names);
    free(d->class_text);
    free(d->class_domain);
    free(d->domain_names);
    free(d->pix);
    free(d->label);
    memset(d, 0, sizeof *d);
}

void sg_dataset_stats(const sg_dataset *d, float mean[3], float std[3]) {
    size_t pl = (size_t)d->store * d->store;
    for (int c = 0; c < 3; c++) {
        double s = 0, ss = 0;
        for (int i = 0; i < d->n; i++) {
            const uint8_t *p = d->pix + ((size_t)i * 3 + c) * pl;
            for (size_t q = 0; q < pl; q++) {
                s += p[q];
                ss += (double)p[q] * p[q];
            }
        }
        double m = s / ((double)d->n * pl), var = ss / ((double)d->n * pl) - m * m;
        mean[c] = (float)(m / 255.0);
        std[c] = (float)(sqrt(var > 1e-12 ? var : 1e-12) / 255.0);
    }
}

/* Class → image indices. */
typedef struct class_index {
    int n_classes;
    int *start, *count, *idx;
} class_index;

static void class_index_build(const sg_dataset *d, class_index *ci) {
    ci->n_classes = d->n_classes;
    ci->start = sg_xcalloc((size_t)d->n_classes + 1, sizeof(int));
    ci->count = sg_xcalloc((size_t)d->n_classes, sizeof(int));
    ci->idx = sg_xcalloc((size_t)d->n + 1, sizeof(int));
    for (int i = 0; i < d->n; i++) ci->count[d->label[i]]++;
    for (int c = 0; c < d->n_classes; c++) ci->start[c + 1] = ci->start[c] + ci->count[c];
    int *fill = sg_xcalloc((size_t)d->n_classes, sizeof(int));
    for (int i = 0; i < d->n; i++) {
        int c = d->label[i];
        ci->idx[ci->start[c] + fill[c]++] = i;
    }
    free(fill);
}

static void class_index_free(class_index *ci) {
    free(ci->start);
    free(ci->count);
    free(ci->idx);
}

struct sg_batch_sampler {
    const sg_dataset *d;
    class_index ci;
    const int *cls;
    int n_cls, group;
    int *dom_start, *dom_cls; /* the classes of cls by source set */
};

sg_batch_sampler *sg_batch_sampler_create(const sg_dataset *d, const int *cls, int n_cls, int group) {
    SG_ASSERT(n_cls > 0 && group >= 0);
    sg_batch_sampler *s = sg_xcalloc(1, sizeof *s);
    s->d = d;
    s->cls = cls;
    s->n_cls = n_cls;
    s->group = group;
    class_index_build(d, &s->ci);
    s->dom_start = sg_xcalloc((size_t)d->n_domains + 1, sizeof(int));
    s->dom_cls = sg_xmalloc(sizeof(int) * (size_t)n_cls);
    for (int i = 0; i < n_cls; i++) s->dom_start[d->class_domain[cls[i]] + 1]++;
    for (int k = 0; k < d->n_domains; k++) s->dom_start[k + 1] += s->dom_start[k];
    int *fill = sg_xmalloc(sizeof(int) * (size_t)(d->n_domains + 1));
    memcpy(fill, s->dom_start, sizeof(int) * (size_t)(d->n_domains + 1));
    for (int i = 0; i < n_cls; i++) s->dom_cls[fill[d->class_domain[cls[i]]]++] = cls[i];
    free(fill);
    return s;
}

void sg_batch_sampler_draw(const sg_batch_sampler *s, sg_rng *r, int n, int *lab, int *img) {
    const int G = s->group;
    for (int i = 0; i < n; i++) {
        /* class-balanced: the first image of a group draws its class among all, which draws the
           group's source set in proportion to its classes; the others draw among that set's */
        int c = s->cls[sg_rng_below(r, (uint32_t)s->n_cls)];
        if (G > 0 && i % G != 0) {
            int dm = s->d->class_domain[lab[i - i % G]];
            int lo = s->dom_start[dm], k = s->dom_start[dm + 1] - lo;
            c = s->dom_cls[lo + (int)sg_rng_below(r, (uint32_t)k)];
        }
        lab[i] = c;
        img[i] = s->ci.idx[s->ci.start[c] + (int)sg_rng_below(r, (uint32_t)s->ci.count[c])];
    }
}

long sg_batch_sampler_images(const sg_batch_sampler *s) {
    long n = 0;
    for (int i = 0; i < s->n_cls; i++) n += s->ci.count[s->cls[i]];
    return n;
}

int sg_train_bn_group_fits(int batch, int group, int ranks) {
    int per_rank = (batch + ranks - 1) / ranks;
    return group <= 0 || (batch % group == 0 && per_rank % group == 0);
}

void sg_batch_sampler_free(sg_batch_sampler *s) {
    if (!s) return;
    class_index_free(&s->ci);
    free(s->dom_start);
    free(s->dom_cls);
    free(s);
}

/* Random resized crop + flip + jitter of one stored image into (3, img, img). */
static void augment(const sg_engine *e, const uint8_t *img, sg_rng *r, float *out) {
    int S = e->cfg.store, o = e->cfg.img;
    float area = 0.35f + 0.65f * sg_rng_uniform(r);
    float ar = expf(logf(0.75f) + (logf(4.0f / 3.0f) - logf(0.75f)) * sg_rng_uniform(r));
    float cw = (float)S * sqrtf(area * ar), ch = (float)S * sqrtf(area / ar);
    if (cw > S) cw = (float)S;
    if (ch > S) ch = (float)S;
    float x0 = ((float)S - cw) * sg_rng_uniform(r), y0 = ((float)S - ch) * sg_rng_uniform(r);
    int flip = sg_rng_below(r, 2);
    float con = 1.0f + 0.3f * (sg_rng_uniform(r) - 0.5f), bri = 0.3f * (sg_rng_uniform(r) - 0.5f);
    for (int c = 0; c < 3; c++) {
        float *p = out + (size_t)c * o * o;
        sg_engine_crop_plane(img + (size_t)c * S * S, S, x0, y0, cw, ch, o, flip, e->mean[c], e->std[c], p);
        for (int q = 0; q < o * o; q++) p[q] = p[q] * con + bri;
    }
}

static double allreduce_sum_d(double v, MPI_Comm comm) {
    double out;
    MPI_Allreduce(&v, &out, 1, MPI_DOUBLE, MPI_SUM, comm);
    return out;
}

/* Average the base batch-norm running statistics over ranks. */
static void sync_state(sg_engine *e, MPI_Comm comm, int P) {
    if (P == 1) return;
    MPI_Allreduce(MPI_IN_PLACE, e->state, (int)e->base.n_state, MPI_FLOAT, MPI_SUM, comm);
    for (size_t i = 0; i < e->base.n_state; i++) e->state[i] /= (float)P;
}

static sg_status check_same_weights(const sg_engine *e, MPI_Comm comm, sg_err *err) {
    uint32_t crc = sg_engine_params_crc(e), lo, hi;
    MPI_Allreduce(&crc, &lo, 1, MPI_UINT32_T, MPI_MIN, comm);
    MPI_Allreduce(&crc, &hi, 1, MPI_UINT32_T, MPI_MAX, comm);
    if (lo != hi) return sg_err_set(err, SG_ERR_MPI, "ranks hold different weights (CRC %08x vs %08x)", lo, hi);
    return SG_OK;
}

/* ---- episodes ---- */

int sg_sample_episode(const sg_dataset *d, const int *allowed, int n_allowed, int way, int shot, int queries,
                      float text_dropout, int text_only, sg_rng *r, sg_episode_buf *b) {
    class_index ci; /* O(n) to build: cheap next to an episode */
    class_index_build(d, &ci);
    int need = (shot > 0 ? shot : 0) + queries;
    /* pick a domain weighted by its eligible classes */
    int *elig = sg_xmalloc(sizeof(int) * (size_t)(n_allowed + 1));
    int tries = 0;
    int dom = -1, ne = 0;
    while (tries++ < 50) {
        int pick = allowed[sg_rng_below(r, (uint32_t)n_allowed)];
        dom = d->class_domain[pick];
        ne = 0;
        for (int i = 0; i < n_allowed; i++) {
            int c = allowed[i];
            if (d->class_domain[c] == dom && ci.count[c] >= need && (!text_only || d->class_text[c])) elig[ne++] = c;
        }
        if (ne >= 2) break;
    }
    if (ne < 2) {
        free(elig);
        class_index_free(&ci);
        return 0;
    }
    sg_rng_shuffle_int(r, elig, (size_t)ne);
    int N = way < ne ? way : ne;
    size_t ssz = (size_t)3 * d->store * d->store;
    b->sup = sg_xrealloc(b->sup, ssz * (size_t)N * (shot > 0 ? shot : 1));
    b->qry = sg_xrealloc(b->qry, ssz * (size_t)N * queries);
    b->qlab = sg_xrealloc(b->qlab, sizeof(int) * (size_t)N * queries);
    int *perm = sg_xmalloc(sizeof(int) * (size_t)(need + 1));
    for (int c = 0; c < N; c++) {
        int cls = elig[c];
        b->classes[c] = cls;
        /* partial Fisher-Yates over the class's images */
        int cnt = ci.count[cls];
        int *pool = sg_xmalloc(sizeof(int) * (size_t)cnt);
        memcpy(pool, ci.idx + ci.start[cls], sizeof(int) * (size_t)cnt);
        for (int i = 0; i < need; i++) {
            int j = i + (int)sg_rng_below(r, (uint32_t)(cnt - i));
            int t = pool[i];
            pool[i] = pool[j];
            pool[j] = t;
            perm[i] = pool[i];
        }
        free(pool);
        b->shots[c] = text_only ? 0 : shot;
        b->support[c] = b->sup + (size_t)c * shot * ssz;
        for (int i = 0; i < shot && !text_only; i++) memcpy(b->sup + ((size_t)c * shot + i) * ssz, d->pix + (size_t)perm[i] * ssz, ssz);
        for (int q = 0; q < queries; q++) {
            memcpy(b->qry + ((size_t)c * queries + q) * ssz, d->pix + (size_t)perm[shot + q] * ssz, ssz);
            b->qlab[c * queries + q] = c;
        }
        const char *t = d->class_text ? d->class_text[cls] : NULL;
        if (!text_only && t && sg_rng_uniform(r) < text_dropout) t = NULL;
        b->texts[c] = t;
    }
    free(perm);
    free(elig);
    class_index_free(&ci);
    b->ep.way = N;
    b->ep.shots = b->shots;
    b->ep.support = b->support;
    b->ep.texts = b->texts;
    b->ep.n_query = N * queries;
    b->ep.query = b->qry;
    b->ep.query_label = b->qlab;
    b->ep.word_dropout = 0;
    b->ep.seed = 0;
    return 1;
}

void sg_episode_buf_free(sg_episode_buf *b) {
    free(b->sup);
    free(b->qry);
    free(b->qlab);
}

/* Validation: mean accuracy of SGPS (images + text) and of the un-adapted
 * base (ProtoNet-like, no text) on seeded episodes over val classes. */
static void validate(sg_engine *e, const sg_dataset *d, const sg_train_opts *o, int shot, MPI_Comm comm, int rank,
                     int P, int want_sgps, double *acc_sgps, double *acc_base) {
    sg_episode_buf b = {0};
    double s1 = 0, s2 = 0;
    int cnt = 0;
    float *saved = NULL;
    for (int i = 0; i < o->val_episodes; i++) {
        sg_rng r;
        sg_rng_seed2(&r, o->seed ^ 0x5A17ULL, (uint64_t)i * 7 + (uint64_t)shot);
        if (!sg_sample_episode(d, o->val_classes, o->n_val_classes, o->way, shot, 15, 0.0f, 0, &r, &b)) break;
        if (i % P != rank) continue;
        float a1 = 0, a2;
        if (!o->train_text) /* an untrained text pathway is not what gets deployed */
            for (int c = 0; c < b.ep.way; c++) b.texts[c] = NULL;
        if (want_sgps) sg_engine_episode_grad(e, &b.ep, NULL, 1.0f, &a1);
        /* base: generators off and no text */
        if (!saved) saved = sg_xalloc_floats(e->n_params - e->off_s2);
        memcpy(saved, e->params + e->off_s2, sizeof(float) * (e->n_params - e->off_s2));
        for (int s = 0; s < e->n_units; s++) {
            memset(e->params + e->off_gg[s], 0, sizeof(float) * (e->off_U[s] - e->off_gg[s]));
            memset(e->params + e->off_A[s], 0, sizeof(float) * ((size_t)e->cfg.rank * e->zdim + e->cfg.rank));
        }
        for (int c = 0; c < b.ep.way; c++) b.texts[c] = NULL;
        sg_engine_episode_grad(e, &b.ep, NULL, 1.0f, &a2);
        memcpy(e->params + e->off_s2, saved, sizeof(float) * (e->n_params - e->off_s2));
        s1 += a1;
        s2 += a2;
        cnt++;
    }
    free(saved);
    sg_episode_buf_free(&b);
    double n = allreduce_sum_d(cnt, comm);
    *acc_sgps = allreduce_sum_d(s1, comm) / (n > 0 ? n : 1);
    *acc_base = allreduce_sum_d(s2, comm) / (n > 0 ? n : 1);
}

static double cosine_lr(double base, long step, long total, long warm) {
    if (step < warm) return base * (double)(step + 1) / (double)warm;
    double t = (double)(step - warm) / (double)(total - warm > 1 ? total - warm : 1);
    return base * 0.5 * (1 + cos(3.141592653589793 * (t < 1 ? t : 1)));
}

/* Head calibration on the validation classes: the head's mix of cosine and
 * ridge parts, centring κ and ridge λ are chosen by validation accuracy
 * (1-shot + 5-shot, image-only episodes, as synthesis runs them), then the
 * logit scale by validation NLL, so that the scores the pipeline reports are
 * calibrated too. Stage 2 fits these scalars on training-set episodes, which
 * favours prototype heads on familiar domains; this step chooses them where
 * the evaluation protocol says settings are chosen. */
static void calibrate_head(sg_engine *e, const sg_dataset *d, const sg_train_opts *o, MPI_Comm comm, int rank, int P) {
    static const float ratios[] = {0, 1.0f / 16, 1.0f / 8, 1.0f / 4, 1.0f / 2, 1, 2, 4, 8, -1 /* ridge only */};
    static const float kappas[] = {0, 0.25f, 0.5f, 0.75f, 1};
    static const float lambdas[] = {0.1f, 0.3f, 1, 3};
    enum { NR = sizeof ratios / sizeof *ratios, NK = sizeof kappas / sizeof *kappas, NL = sizeof lambdas / sizeof *lambdas,
           NS = 21 };
    float *p = e->params;
    float tau0 = expf(p[e->off_logtau]), rho0 = p[e->off_rho], kap0 = p[e->off_kappa], lam0 = expf(p[e->off_loglam]);
    int n = 1 + NR * NK * NL;
    sg_head_cand *cand = sg_xmalloc(sizeof *cand * (size_t)n);
    cand[0] = (sg_head_cand){tau0, rho0, kap0, lam0}; /* the head as trained: kept on ties */
    int k = 1;
    for (int i = 0; i < NR; i++)
        for (int j = 0; j < NK; j++)
            for (int l = 0; l < NL; l++)
                cand[k++] = (sg_head_cand){ratios[i] < 0 ? 0.0f : 1.0f, ratios[i] < 0 ? 1.0f : ratios[i], kappas[j], lambdas[l]};
    float scales[NS];
    for (int j = 0; j < NS; j++) scales[j] = powf(2.0f, (float)(j - 6) * 0.5f); /* 1/8 .. 128 */
    double *acc = sg_xcalloc((size_t)n, sizeof(double)), *nll = sg_xcalloc((size_t)n * NS, sizeof(double));
    int eps = o->calib_episodes, cnt = 0;
    sg_episode_buf b = {0};
    double t0 = sg_now();
    if (rank == 0)
        sg_log(SG_LOG_INFO, "head calibration: %d candidate heads x %d scales on %d + %d validation episodes (1 and 5 shots)",
               n, NS, eps, eps);
    for (int shot = 1; shot <= 5; shot += 4)
        for (int i = 0; i < eps; i++) {
            sg_rng r;
            sg_rng_seed2(&r, o->seed ^ 0xCA11B7ULL, (uint64_t)i * 11 + (uint64_t)shot);
            if (!sg_sample_episode(d, o->val_classes, o->n_val_classes, o->way, shot, 15, 0.0f, 0, &r, &b)) break;
            if (rank == 0 && i > 0 && i % 100 == 0)
                sg_log(SG_LOG_INFO, "head calibration: %d-shot episode %d/%d, %.0f s", shot, i, eps, sg_now() - t0);
            if (i % P != rank) continue;
            sg_engine_head_eval(e, &b.ep, n, cand, NS, scales, acc, nll);
            cnt++;
        }
    sg_episode_buf_free(&b);
    if (P > 1) {
        MPI_Allreduce(MPI_IN_PLACE, acc, n, MPI_DOUBLE, MPI_SUM, comm);
        MPI_Allreduce(MPI_IN_PLACE, nll, n * NS, MPI_DOUBLE, MPI_SUM, comm);
        MPI_Allreduce(MPI_IN_PLACE, &cnt, 1, MPI_INT, MPI_SUM, comm);
    }
    if (cnt == 0) {
        if (rank == 0) sg_log(SG_LOG_WARN, "head calibration: no validation episode could be drawn; head left as trained");
        free(cand); free(acc); free(nll);
        return;
    }
    int best = 0;
    for (int c = 1; c < n; c++)
        if (acc[c] > acc[best] + 1e-9) best = c;
    int bs = 0;
    for (int j = 1; j < NS; j++)
        if (nll[(size_t)best * NS + j] < nll[(size_t)best * NS + bs]) bs = j;
    sg_head_cand h = cand[best];
    float s = scales[bs], tau = s * h.a;
    p[e->off_logtau] = logf(tau > 1e-6f ? tau : 1e-6f);
    p[e->off_rho] = s * h.b;
    p[e->off_kappa] = h.kappa;
    p[e->off_loglam] = logf(h.lambda);
    if (rank == 0)
        sg_log(SG_LOG_INFO,
               "head calibration on %d validation episodes (%.0f s): mean 1+5-shot accuracy %.2f%% as trained "
               "(tau %.3g, rho %.3g, kappa %.2f, lambda %.3g) -> %.2f%% chosen (tau %.3g, rho %.3g, kappa %.2f, lambda %.3g)",
               cnt, sg_now() - t0, 100 * acc[0] / cnt, tau0, rho0, kap0, lam0, 100 * acc[best] / cnt, tau,
               s * h.b, h.kappa, h.lambda);
    free(cand);
    free(acc);
    free(nll);
}

sg_status sg_engine_train(sg_engine *e, const sg_dataset *d, const sg_train_opts *o, MPI_Comm comm, sg_err *err) {
    int rank, P;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &P);
    if (d->n_classes != e->cfg.n_base_classes)
        return sg_err_set(err, SG_ERR_ARG, "engine has %d base classes but the data has %d", e->cfg.n_base_classes,
                          d->n_classes);
    if (d->store != e->cfg.store) return sg_err_set(err, SG_ERR_ARG, "data stored at %d px, engine expects %d", d->store, e->cfg.store);
    uint8_t *is_val = sg_xcalloc((size_t)d->n_classes, 1);
    for (int i = 0; i < o->n_val_classes; i++) is_val[o->val_classes[i]] = 1;
    uint8_t *is_s2 = sg_xcalloc((size_t)d->n_classes, 1);
    for (int i = 0; i < o->n_s2_classes; i++) is_s2[o->s2_classes[i]] = 1;
    int *train_cls = sg_xmalloc(sizeof(int) * (size_t)d->n_classes), n_train = 0;
    int *s2_cls = sg_xmalloc(sizeof(int) * (size_t)d->n_classes), n_s2 = 0;
    for (int c = 0; c < d->n_classes; c++) {
        if (!is_val[c] && !is_s2[c]) train_cls[n_train++] = c;
        if (!is_val[c] && (is_s2[c] || !o->n_s2_classes)) s2_cls[n_s2++] = c;
    }
    sg_status bad = SG_OK;
    for (int t = 0; t < o->n_teachers && bad == SG_OK; t++)
        if (sg_train_teacher_fits(e, o->teachers[t], d->n_classes, err) != SG_OK) {
            char why[sizeof err->msg];
            snprintf(why, sizeof why, "%s", err->msg);
            bad = sg_err_set(err, SG_ERR_ARG, "teacher %d of %d %s", t + 1, o->n_teachers, why);
        }
    if (bad == SG_OK && o->n_teachers > 0 && !(o->kd_weight >= 0 && o->kd_weight <= 1 && o->kd_temp > 0))
        bad = sg_err_set(err, SG_ERR_ARG, "distillation weight %g (0..1) or temperature %g (> 0) out of range",
                         (double)o->kd_weight, (double)o->kd_temp);
    if (bad == SG_OK && o->stage1_epochs > 0 && n_train == 0)
        bad = sg_err_set(err, SG_ERR_ARG, "no class is left for stage 1 (every class is a validation or stage-2 class)");
    else if (bad == SG_OK && o->stage2_episodes > 0 && n_s2 < 2)
        bad = sg_err_set(err, SG_ERR_ARG, "stage 2 needs at least 2 classes; %d left", n_s2);
    if (bad != SG_OK) {
        free(is_val); free(is_s2); free(train_cls); free(s2_cls);
        return bad;
    }
    /* Validation (checkpoint choice, head calibration) needs 1- and 5-shot
     * episodes of 15 queries from the validation classes; without them it is
     * skipped with a warning rather than reported as 0 %. */
    int val_on = o->n_val_classes > 0 && o->val_episodes > 0;
    for (int shot = 1; shot <= 5 && val_on; shot += 4) {
        sg_episode_buf vb = {0};
        sg_rng r;
        sg_rng_seed2(&r, o->seed ^ 0x5A17ULL, (uint64_t)shot);
        if (!sg_sample_episode(d, o->val_classes, o->n_val_classes, o->way, shot, 15, 0.0f, 0, &r, &vb)) {
            val_on = 0;
            if (rank == 0)
                sg_log(SG_LOG_WARN,
                       "the validation classes cannot form %d-shot episodes (2 classes of one set with %d images each): "
                       "no validation, no checkpoint choice, no head calibration",
                       shot, shot + 15);
        }
        sg_episode_buf_free(&vb);
    }
    /* stage-1 batches (its class index also counts the stage-1 images) */
    sg_batch_sampler *bs = n_train > 0 ? sg_batch_sampler_create(d, train_cls, n_train, o->bn_group > 0 ? o->bn_group : 0)
                                       : NULL;
    size_t np = e->n_params;
    float *grad = sg_xalloc_floats(np), *m = sg_xalloc_floats(np), *v = sg_xalloc_floats(np);
    float *best = sg_xalloc_floats(np), *best_state = sg_xalloc_floats(e->base.n_state);
    uint8_t *mask = sg_xcalloc(np, 1);
    sg_arch_decay_mask(&e->base_cls, mask);
    double best_val = -1;
    sg_status st = SG_OK;
    double t0 = sg_now();
    uint64_t hash = sg_train_config_hash(e, d, o);
    sg_train_snapshot snap = {1, 0, -1, m, v, best, best_state, P,
                              sg_xalloc_floats((size_t)P * e->base.n_state + 1)};
    long start1 = 0, start2 = 0, done = 0;
    int resumed2 = 0;
    if (o->resume && o->checkpoint) {
        char path[4096];
        snprintf(path, sizeof path, "%s.state", o->checkpoint);
        int have = 0;
        sg_status ls = SG_OK;
        if (rank == 0) {
            FILE *f = fopen(path, "rb");
            have = f != NULL;
            if (f) fclose(f);
            if (have) ls = sg_train_state_load(path, hash, &snap, e, err);
        }
        int hdr[2] = {have, (int)ls};
        if (P > 1) MPI_Bcast(hdr, 2, MPI_INT, 0, comm);
        if (hdr[1] != SG_OK) {
            /* nothing runs below; the common cleanup at the end frees everything */
            st = (sg_status)hdr[1];
            if (rank != 0) sg_err_set(err, st, "%s: cannot resume (see rank 0)", path);
        } else if (!hdr[0]) {
            if (rank == 0) sg_log(SG_LOG_INFO, "no training state at %s: starting from the beginning", path);
        } else {
            long sv[2] = {snap.stage, snap.next_step};
            if (P > 1) {
                MPI_Bcast(sv, 2, MPI_LONG, 0, comm);
                MPI_Bcast(&snap.best_val, 1, MPI_DOUBLE, 0, comm);
                MPI_Bcast(e->params, (int)np, MPI_FLOAT, 0, comm);
                MPI_Scatter(snap.rank_state, (int)e->base.n_state, MPI_FLOAT, e->state, (int)e->base.n_state, MPI_FLOAT,
                            0, comm); /* each rank its own statistics */
                MPI_Bcast(m, (int)np, MPI_FLOAT, 0, comm);
                MPI_Bcast(v, (int)np, MPI_FLOAT, 0, comm);
                MPI_Bcast(best, (int)np, MPI_FLOAT, 0, comm);
                MPI_Bcast(best_state, (int)e->base.n_state, MPI_FLOAT, 0, comm);
            }
            snap.stage = (int)sv[0];
            snap.next_step = sv[1];
            best_val = snap.best_val;
            /* a step beyond the stage's end (the hash covers the settings that
             * size the stages, so only a hand-made file gets here) */
            long spe = bs && sg_batch_sampler_images(bs) / o->batch > 0 ? sg_batch_sampler_images(bs) / o->batch : 1;
            long end = snap.stage == 1 ? spe * o->stage1_epochs
                                       : (o->stage2_episodes + o->episodes_per_step - 1) / o->episodes_per_step;
            if (snap.next_step < 0 || snap.next_step > end || isnan(best_val)) {
                st = sg_err_set(err, SG_ERR_FORMAT, "%s: step %ld of stage %d is outside 0..%ld, or its best score is "
                                "not a number", path, snap.next_step, snap.stage, end);
            }
            if (snap.stage == 1) start1 = snap.next_step;
            else {
                start1 = -1; /* stage 1 finished: its best weights are in params */
                start2 = snap.next_step;
                resumed2 = 1;
            }
            if (rank == 0 && st == SG_OK)
                sg_log(SG_LOG_INFO, "resuming from %s: stage %d at step %ld", path, snap.stage, snap.next_step);
        }
    }

    /* ---- stage 1 ---- */
    int B = o->batch, Bl = (B + P - 1) / P;
    int img = e->cfg.img;
    size_t isz = (size_t)3 * img * img, ssz = (size_t)3 * d->store * d->store;
    long n_train_img = bs ? sg_batch_sampler_images(bs) : 0;
    long steps_per_epoch = n_train_img / B > 0 ? n_train_img / B : 1;
    long total1 = steps_per_epoch * o->stage1_epochs;
    /* batch-norm groups: each from one source set, statistics over the group (0: the rank's batch) */
    int G = o->bn_group;
    if (total1 > 0 && !sg_train_bn_group_fits(B, G, P)) {
        st = sg_err_set(err, SG_ERR_ARG, "batch-norm group %d must divide the batch (%d) and the batch per rank (%d over %d rank(s))",
                        G, B, Bl, P);
        total1 = 0;
    }
    if (st == SG_OK && total1 > 0) e->bn_by_source = G > 0; /* in the engine file (a resumed stage 2 too) */
    if (st == SG_OK && total1 > 0 && start1 >= 0 && start1 < total1) {
        sg_ctx *ctx = sg_ctx_create(&e->base_cls, Bl);
        float *x = sg_xalloc_floats((size_t)Bl * isz), *dl = sg_xalloc_floats((size_t)Bl * d->n_classes);
        /* distillation: each teacher's workspace; a teacher's tempered logits and
           probabilities, the teachers' mean (the target) and the distillation gradient */
        int K = d->n_classes, kd = o->n_teachers > 0 && o->kd_weight > 0;
        float wce = kd ? 1 - o->kd_weight : 1;
        sg_ctx **tctx = sg_xcalloc((size_t)(o->n_teachers > 0 ? o->n_teachers : 1), sizeof *tctx);
        float *t_logit = NULL, *t_prob = NULL, *target = NULL, *dkd = NULL;
        if (kd) {
            t_logit = sg_xalloc_floats((size_t)Bl * K);
            t_prob = sg_xalloc_floats((size_t)Bl * K);
            target = sg_xalloc_floats((size_t)Bl * K);
            dkd = sg_xalloc_floats((size_t)Bl * K);
            for (int t = 0; t < o->n_teachers; t++) tctx[t] = sg_ctx_create(&o->teachers[t]->base_cls, Bl);
        }
        int *lab = sg_xmalloc(sizeof(int) * (size_t)B), *idx = sg_xmalloc(sizeof(int) * (size_t)B);
        if (rank == 0)
            sg_log(SG_LOG_INFO, "stage 1: supervised pretraining on %d classes (%ld images), %d epochs x %ld steps, batch %d over %d rank(s), %s lr %.2g",
                   n_train, n_train_img, o->stage1_epochs, steps_per_epoch, B, P, o->sgd1 ? "SGD" : "AdamW", o->lr1);
        if (rank == 0 && G > 0)
            sg_log(SG_LOG_INFO, "stage 1: batch-norm statistics over groups of %d images, each group from one source set", G);
        if (rank == 0 && kd)
            sg_log(SG_LOG_INFO, "stage 1: distilling from %d teacher(s): loss %.2g x cross-entropy + %.2g x KL at T %.3g",
                   o->n_teachers, (double)wce, (double)o->kd_weight, (double)o->kd_temp);
        double tl = sg_now(), lsum = 0, asum = 0;
        int lcnt = 0;
        for (long step = start1; step < total1; step++) {
            sg_rng r;
            sg_rng_seed2(&r, o->seed, (uint64_t)step + 1000);
            sg_batch_sampler_draw(bs, &r, B, lab, idx);
            int lo = rank * Bl, hi = lo + Bl < B ? lo + Bl : B, nb = hi - lo;
            float loss = 0, accr = 0;
            memset(grad, 0, sizeof(float) * e->off_s2);
            if (nb > 0) {
                for (int i = 0; i < nb; i++) {
                    sg_rng ar;
                    sg_rng_seed2(&ar, o->seed ^ 0xA11CE, (uint64_t)step * (uint64_t)B + (uint64_t)(lo + i));
                    augment(e, d->pix + (size_t)idx[lo + i] * ssz, &ar, x + i * isz);
                }
                /* batch-norm statistics over each group (the whole local batch without groups) */
                int gs = G > 0 ? G : nb;
                for (int g0 = 0; g0 < nb; g0 += gs) {
                    int ng = nb - g0 < gs ? nb - g0 : gs;
                    const float *out = sg_net_forward(&e->base_cls, ctx, e->params, e->state, x + (size_t)g0 * isz, ng, 1);
                    /* scale so that the summed gradient is the global-batch mean */
                    float lg = wce * sg_softmax_xent(ng, K, out, lab + lo + g0, wce * (float)ng / (float)B, dl, NULL);
                    if (kd) {
                        teacher_targets(o, tctx, ng, K, x + (size_t)g0 * isz, t_logit, t_prob, target);
                        lg += o->kd_weight * sg_softmax_distill(ng, K, out, target, o->kd_temp,
                                                                o->kd_weight * (float)ng / (float)B, dkd);
                        for (size_t i = 0; i < (size_t)ng * K; i++) dl[i] += dkd[i];
                    }
                    loss += (float)ng / (float)nb * lg;
                    for (int i = 0; i < ng; i++) {
                        int bi = 0;
                        for (int k = 1; k < d->n_classes; k++)
                            if (out[(size_t)i * d->n_classes + k] > out[(size_t)i * d->n_classes + bi]) bi = k;
                        accr += bi == lab[lo + g0 + i];
                    }
                    sg_net_backward(&e->base_cls, ctx, e->params, e->state, dl, grad, NULL);
                }
            }
            if (P > 1) MPI_Allreduce(MPI_IN_PLACE, grad, (int)e->off_s2, MPI_FLOAT, MPI_SUM, comm);
            float lr = (float)cosine_lr(o->lr1, step, total1, steps_per_epoch / 2 + 1);
            if (o->sgd1)
                sg_sgd_step(e->off_s2, e->params, grad, m, lr, 0.9f, o->wd1, mask);
            else
                sg_adamw_step(e->off_s2, e->params, grad, m, v, step + 1, lr, 0.9f, 0.999f, 1e-8f, o->wd1, mask);
            lsum += loss * nb;
            asum += accr;
            lcnt += nb;
            if (step % 50 == 49) sync_state(e, comm, P);
            if (rank == 0 && ((step + 1) % o->log_every == 0 || step + 1 == total1)) {
                double el = sg_now() - t0, rate = (double)(step + 1) / (sg_now() - tl);
                sg_log(SG_LOG_INFO, "stage 1 step %ld/%ld epoch %ld  loss %.3f  acc %.1f%%  %.0f img/s  lr %.2e  elapsed %.0fs  ETA %.0fs",
                       step + 1, total1, step / steps_per_epoch + 1, lsum / (lcnt ? lcnt : 1), 100 * asum / (lcnt ? lcnt : 1),
                       rate * B, lr, el, (double)(total1 - step - 1) / rate);
                lsum = asum = 0;
                lcnt = 0;
            }
            if ((step + 1) % steps_per_epoch == 0 || step + 1 == total1) {
                sync_state(e, comm, P);
                if ((st = check_same_weights(e, comm, err)) != SG_OK) break;
                if (val_on) {
                    double a5, b5, a1, b1;
                    validate(e, d, o, 1, comm, rank, P, 0, &a1, &b1);
                    validate(e, d, o, 5, comm, rank, P, 0, &a5, &b5);
                    double score = b1 + b5;
                    if (rank == 0)
                        sg_log(SG_LOG_INFO, "stage 1 epoch %ld validation (held-out classes): base 1-shot %.1f%%, 5-shot %.1f%%%s",
                               (step + 1) / steps_per_epoch, 100 * b1, 100 * b5, score > best_val ? "  (best so far)" : "");
                    if (score > best_val) {
                        best_val = score;
                        memcpy(best, e->params, sizeof(float) * np);
                        memcpy(best_state, e->state, sizeof(float) * e->base.n_state);
                    }
                }
                if (o->checkpoint && rank == 0) {
                    char path[4096];
                    snprintf(path, sizeof path, "%s.stage1.sgpe", o->checkpoint);
                    sg_err e2;
                    if (sg_engine_save(e, path, &e2) != SG_OK) sg_log(SG_LOG_WARN, "checkpoint: %s", e2.msg);
                }
            }
            int stop = stop_requested(o, &done, comm, P);
            if (stop || (step + 1) % steps_per_epoch == 0) {
                snap.stage = 1;
                snap.next_step = step + 1;
                snap.best_val = best_val;
                if ((st = save_state(o, hash, &snap, e, rank, comm, P, err)) != SG_OK) break;
            }
            if (stop) {
                if (rank == 0)
                    sg_log(SG_LOG_INFO, "stopping after stage 1 step %ld%s", step + 1,
                           o->checkpoint ? ": continue with the same command and --resume" : " (no --checkpoint: nothing saved)");
                st = sg_err_set(err, SG_ERR_INTERRUPTED, "stopped by request after stage 1 step %ld", step + 1);
                break;
            }
        }
        sg_ctx_free(ctx);
        for (int t = 0; t < o->n_teachers; t++) sg_ctx_free(tctx[t]);
        free(tctx); free(t_logit); free(t_prob); free(target); free(dkd);
        free(x); free(dl); free(lab); free(idx);
    }
    /* Stage 1 ends with its best validated weights, also when a state saved
     * after its last step is resumed (the loop above then does not run). */
    if (st == SG_OK && total1 > 0 && start1 >= 0 && best_val >= 0) {
        memcpy(e->params, best, sizeof(float) * np);
        memcpy(e->state, best_state, sizeof(float) * e->base.n_state);
    }


    /* ---- stage 2 ---- */
    if (st == SG_OK && o->stage2_episodes > 0) {
        size_t off = e->off_s2, n2 = np - off;
        if (!resumed2) {
            memset(m, 0, sizeof(float) * np);
            memset(v, 0, sizeof(float) * np);
        }
        int E = o->episodes_per_step;
        long steps = (o->stage2_episodes + E - 1) / E;
        if (rank == 0)
            sg_log(SG_LOG_INFO, "stage 2: episodic meta-training on %d classes%s, %ld steps x %d episodes (%d-way, K in 0..%d, %d queries/class, text dropout %.2f)",
                   n_s2, o->n_s2_classes ? " unseen in stage 1" : "", steps, E, o->way, o->max_shot, o->queries, o->text_dropout);
        sg_episode_buf b = {0};
        double tl = sg_now(), lsum = 0, asum = 0;
        int lcnt = 0;
        if (!resumed2) best_val = -1;
        if (!resumed2 && val_on) {
            /* the starting point is a candidate too: stage 2 must earn its keep */
            double a1, b1, a5, b5;
            validate(e, d, o, 1, comm, rank, P, 1, &a1, &b1);
            validate(e, d, o, 5, comm, rank, P, 1, &a5, &b5);
            best_val = a1 + a5;
            memcpy(best, e->params, sizeof(float) * np);
            if (rank == 0)
                sg_log(SG_LOG_INFO, "stage 2 start validation: SGPS 1-shot %.1f%% (base %.1f%%), 5-shot %.1f%% (base %.1f%%)",
                       100 * a1, 100 * b1, 100 * a5, 100 * b5);
        }
        if (!resumed2) {
            snap.stage = 2;
            snap.next_step = 0;
            snap.best_val = best_val;
            st = save_state(o, hash, &snap, e, rank, comm, P, err);
        }
        double t2 = sg_now();
        unsigned undrawn = 0; /* shot counts whose episodes could not be drawn, warned once each */
        for (long step = start2; step < steps && st == SG_OK; step++) {
            memset(grad + off, 0, sizeof(float) * n2);
            float lsr = 0, acr = 0;
            int cnt = 0;
            for (int k = 0; k < E; k++) {
                sg_rng r;
                sg_rng_seed2(&r, o->seed ^ 0xE915, (uint64_t)step * (uint64_t)E + (uint64_t)k);
                int shot = (int)sg_rng_below(&r, (uint32_t)o->max_shot + 1);
                int text_only = shot == 0;
                if (text_only) shot = 0;
                if (!sg_sample_episode(d, s2_cls, n_s2, o->way, shot, o->queries, o->text_dropout, text_only, &r, &b)) {
                    if (rank == 0 && !(undrawn & (1u << shot)))
                        sg_log(SG_LOG_WARN, "stage 2: %d-shot episodes cannot be drawn (2 classes of one set with %d "
                               "images%s each) and are skipped", shot, shot + o->queries, text_only ? " and a description" : "");
                    undrawn |= 1u << shot;
                    continue;
                }
                if (k % P != rank) continue;
                b.ep.word_dropout = 0.2f;
                b.ep.seed = o->seed ^ ((uint64_t)step * (uint64_t)E + (uint64_t)k);
                float a;
                lsr += sg_engine_episode_grad(e, &b.ep, grad, 1.0f / (float)E, &a);
                acr += a;
                cnt++;
            }
            if (P > 1) MPI_Allreduce(MPI_IN_PLACE, grad + off, (int)n2, MPI_FLOAT, MPI_SUM, comm);
            mask_stage2(e, o, grad);
            float lr = (float)cosine_lr(o->lr2, step, steps, steps / 20 + 1);
            sg_adamw_step(n2, e->params + off, grad + off, m + off, v + off, step + 1, lr, 0.9f, 0.999f, 1e-8f, o->wd2, NULL);
            lsum += lsr;
            asum += acr;
            lcnt += cnt;
            int last = step + 1 == steps || (o->time_budget_s > 0 && sg_now() - t2 > o->time_budget_s);
            if (P > 1) {
                int l2 = last;
                MPI_Allreduce(&l2, &last, 1, MPI_INT, MPI_MAX, comm);
            }
            if ((step + 1) % o->log_every == 0 || last) {
                double tot[3] = {lsum, asum, lcnt};
                if (P > 1) MPI_Allreduce(MPI_IN_PLACE, tot, 3, MPI_DOUBLE, MPI_SUM, comm);
                double rate = (double)(step + 1) * E / (sg_now() - tl);
                if (rank == 0)
                    sg_log(SG_LOG_INFO, "stage 2 step %ld/%ld  loss %.3f  acc %.1f%%  %.1f episodes/s  lr %.2e  elapsed %.0fs  ETA %.0fs",
                           step + 1, steps, tot[0] / (tot[2] ? tot[2] : 1), 100 * tot[1] / (tot[2] ? tot[2] : 1), rate, lr,
                           sg_now() - t0, (double)(steps - step - 1) * E / rate);
                lsum = asum = 0;
                lcnt = 0;
            }
            long every = steps / 5 > 0 ? steps / 5 : 1;
            if ((step + 1) % every == 0 || last) {
                if ((st = check_same_weights(e, comm, err)) != SG_OK) break;
                if (val_on) {
                    double a1, b1, a5, b5;
                    validate(e, d, o, 1, comm, rank, P, 1, &a1, &b1);
                    validate(e, d, o, 5, comm, rank, P, 1, &a5, &b5);
                    double score = a1 + a5;
                    if (rank == 0)
                        sg_log(SG_LOG_INFO, "stage 2 step %ld validation: SGPS 1-shot %.1f%% (base %.1f%%), 5-shot %.1f%% (base %.1f%%)%s",
                               step + 1, 100 * a1, 100 * b1, 100 * a5, 100 * b5, score > best_val ? "  (best so far)" : "");
                    if (score > best_val) {
                        best_val = score;
                        memcpy(best, e->params, sizeof(float) * np);
                    }
                }
                if (o->checkpoint && rank == 0) {
                    char path[4096];
                    snprintf(path, sizeof path, "%s.stage2.sgpe", o->checkpoint);
                    sg_err e2;
                    if (sg_engine_save(e, path, &e2) != SG_OK) sg_log(SG_LOG_WARN, "checkpoint: %s", e2.msg);
                }
            }
            int stop = !last && stop_requested(o, &done, comm, P);
            if (stop || (!last && (step + 1) % every == 0)) {
                snap.stage = 2;
                snap.next_step = step + 1;
                snap.best_val = best_val;
                if ((st = save_state(o, hash, &snap, e, rank, comm, P, err)) != SG_OK) break;
            }
            if (stop) {
                if (rank == 0)
                    sg_log(SG_LOG_INFO, "stopping after stage 2 step %ld%s", step + 1,
                           o->checkpoint ? ": continue with the same command and --resume" : " (no --checkpoint: nothing saved)");
                st = sg_err_set(err, SG_ERR_INTERRUPTED, "stopped by request after stage 2 step %ld", step + 1);
                break;
            }
            if (last) break;
        }
        sg_episode_buf_free(&b);
        if (st == SG_OK && best_val >= 0) memcpy(e->params, best, sizeof(float) * np);
    }
    if (st == SG_OK && o->calib_episodes > 0 && val_on) calibrate_head(e, d, o, comm, rank, P);
    if (st == SG_OK) st = check_same_weights(e, comm, err);
    sg_batch_sampler_free(bs);
    free(grad); free(m); free(v); free(best); free(best_state); free(snap.rank_state); free(mask); free(is_val); free(train_cls); free(is_s2); free(s2_cls);
    return st;
}
