/* sg_fewshot.c — few-shot evaluation of the engine against baselines on the
 * same seeded episodes: SGPS (images; images + text; text only), ProtoNet on
 * the base backbone (cosine to class means), a linear probe (logistic
 * regression on L2-normalized support features), fine-tuning (the last conv
 * stage and a prototype-initialised cosine head, Adam on the support set: a
 * baseline that does train) and chance. Episodes are split over MPI ranks;
 * per-episode accuracies are summed on rank 0, so the result does not depend
 * on the number of ranks. */
#include "sg_synth_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *sg_method_name(sg_method m) {
    switch (m) {
    case SG_M_SGPS_IMG: return "SGPS (images)";
    case SG_M_SGPS_IMG_TEXT: return "SGPS (images + text)";
    case SG_M_SGPS_TEXT: return "SGPS (text only)";
    case SG_M_SGPS_NOADAPT: return "ablation: SGPS head, no adaptation";
    case SG_M_PROTONET: return "ProtoNet (base backbone)";
    case SG_M_LINPROBE: return "linear probe";
    case SG_M_FINETUNE: return "fine-tuning (last stage + head)";
    case SG_M_CHANCE: return "chance";
    case SG_M__COUNT: break;
    }
    return "?";
}

static int argmax(const float *v, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

static double acc_of(const float *logits, const int *labels, int nq, int N) {
    int right = 0;
    for (int q = 0; q < nq; q++) right += argmax(logits + (size_t)q * N, N) == labels[q];
    return (double)right / nq;
}

/* Classifier accuracy on prepared queries. */
static double classifier_acc(const sg_classifier *c, sg_ctx **ctx, const float *xq, const int *labels, int nq) {
    if (!*ctx || sg_ctx_batch_cap(*ctx) < nq) {
        sg_ctx_free(*ctx);
        *ctx = sg_ctx_create(&c->arch, nq);
    }
    const float *out = sg_net_forward(&c->arch, *ctx, c->params, c->state, xq, nq, 0);
    return acc_of(out, labels, nq, c->n_classes);
}

static void protonet(int N, int C, const float *fs, const int *shots, const float *fq, int nq, float *logits) {
    float proto[SG_MAX_WAY][SG_ENGINE_MAX_WIDTH] = {{0}};
    for (int c = 0, k = 0; c < N; c++)
        for (int i = 0; i < shots[c]; i++, k++)
            for (int j = 0; j < C; j++) proto[c][j] += fs[(size_t)k * C + j];
    float *pr = sg_xalloc_floats((size_t)N * C), *pn = sg_xalloc_floats((size_t)N * C);
    float *u = sg_xalloc_floats((size_t)nq * C);
    for (int c = 0; c < N; c++) memcpy(pr + (size_t)c * C, proto[c], sizeof(float) * (size_t)C);
    sg_l2norm_forward(N, C, pr, NULL, SG_L2NORM_EPS, pn);
    free(pr);
    sg_l2norm_forward(nq, C, fq, NULL, SG_L2NORM_EPS, u);
    for (int q = 0; q < nq; q++)
        for (int c = 0; c < N; c++) {
            float s = 0;
            for (int j = 0; j < C; j++) s += u[(size_t)q * C + j] * pn[(size_t)c * C + j];
            logits[(size_t)q * N + c] = s;
        }
    free(pn);
    free(u);
}

/* Logistic regression on 10·l2norm(features), Adam, 100 full-batch steps. */
static void linprobe(int N, int C, const float *fs, const int *shots, const float *fq, int nq, float *logits) {
    int ns = 0;
    for (int c = 0; c < N; c++) ns += shots[c];
    float *u = sg_xalloc_floats((size_t)ns * C), *uq = sg_xalloc_floats((size_t)nq * C);
    sg_l2norm_forward(ns, C, fs, NULL, SG_L2NORM_EPS, u);
    sg_l2norm_forward(nq, C, fq, NULL, SG_L2NORM_EPS, uq);
    for (size_t i = 0; i < (size_t)ns * C; i++) u[i] *= 10.0f;
    for (size_t i = 0; i < (size_t)nq * C; i++) uq[i] *= 10.0f;
    int *lab = sg_xmalloc(sizeof(int) * (size_t)ns);
    for (int c = 0, k = 0; c < N; c++)
        for (int i = 0; i < shots[c]; i++) lab[k++] = c;
    size_t np = (size_t)N * C + N;
    float *w = sg_xalloc_floats(np), *g = sg_xalloc_floats(np), *m = sg_xalloc_floats(np), *v = sg_xalloc_floats(np);
    float *lg = sg_xalloc_floats((size_t)ns * N), *dl = sg_xalloc_floats((size_t)ns * N);
    for (int t = 1; t <= 100; t++) {
        sg_linear_forward(ns, C, N, u, w, w + (size_t)N * C, lg);
        sg_softmax_xent(ns, N, lg, lab, 1.0f, dl, NULL);
        memset(g, 0, sizeof(float) * np);
        sg_linear_backward(ns, C, N, u, w, dl, NULL, g, g + (size_t)N * C);
        sg_adamw_step(np, w, g, m, v, t, 0.01f, 0.9f, 0.999f, 1e-8f, 1e-3f, NULL);
    }
    sg_linear_forward(nq, C, N, uq, w, w + (size_t)N * C, logits);
    free(u); free(uq); free(lab); free(w); free(g); free(m); free(v); free(lg); free(dl);
}

/* Fine-tuning: base stages 1..S-1 frozen (their output computed once), the
 * last stage (its convs, batch norms in eval mode, ReLUs, pool), GAP, L2 norm and a
 * linear head initialised from the prototypes, trained with Adam for 20
 * steps on the support set. */
typedef struct finetune_ctx {
    sg_arch front, tail;
    float *tail_params0, *tail_state;
    size_t head_off;
} finetune_ctx;

static void finetune_setup(const sg_engine *e, int N, finetune_ctx *f) {
    const sg_engine_config *c = &e->cfg;
    sg_arch_init(&f->front, 3, c->img, c->img);
    for (int s = 0; s < c->stages - 1; s++) sg_arch_add_stage(&f->front, c->width, c->convs[s], SG_LAYER_BATCHNORM);
    const sg_layer *last = &f->front.layers[f->front.n_layers - 1];
    sg_arch_init(&f->tail, last->cout, last->out_h, last->out_w);
    sg_arch_add_stage(&f->tail, c->width, c->convs[c->stages - 1], SG_LAYER_BATCHNORM);
    sg_arch_add_gap(&f->tail);
    int li = sg_arch_add_l2norm(&f->tail);
    int lh = sg_arch_add_linear(&f->tail, N, 1);
    (void)li;
    f->head_off = f->tail.layers[lh].param_off;
    /* the tail's conv + bn parameters follow the front's in the base layout */
    size_t nconv = 0;
    for (int i = 0; f->tail.layers[i].kind != SG_LAYER_MAXPOOL; i++) nconv += f->tail.layers[i].n_params;
    f->tail_params0 = sg_xalloc_floats(f->tail.n_params);
    memcpy(f->tail_params0, e->params + f->front.n_params, sizeof(float) * nconv);
    f->tail_state = sg_xalloc_floats(f->tail.n_state);
    memcpy(f->tail_state, e->state + f->front.n_state, sizeof(float) * f->tail.n_state);
}

static void finetune_free(finetune_ctx *f) {
    free(f->tail_params0);
    free(f->tail_state);
}

static void finetune(const sg_engine *e, finetune_ctx *f, int N, const float *xs, const int *shots, const float *xq,
                     int nq, float *logits) {
    int ns = 0;
    for (int c = 0; c < N; c++) ns += shots[c];
    size_t fo = sg_arch_layer_out_floats(&f->front, f->front.n_layers - 1);
    float *as = sg_xalloc_floats((size_t)ns * fo), *aq = sg_xalloc_floats((size_t)nq * fo);
    sg_ctx *fc = sg_ctx_create(&f->front, ns > nq ? ns : nq);
    memcpy(as, sg_net_forward(&f->front, fc, e->params, e->state, xs, ns, 0), sizeof(float) * (size_t)ns * fo);
    memcpy(aq, sg_net_forward(&f->front, fc, e->params, e->state, xq, nq, 0), sizeof(float) * (size_t)nq * fo);
    sg_ctx_free(fc);
    size_t np = f->tail.n_params;
    float *p = sg_xalloc_floats(np), *g = sg_xalloc_floats(np), *m = sg_xalloc_floats(np), *v = sg_xalloc_floats(np);
    memcpy(p, f->tail_params0, sizeof(float) * np);
    sg_ctx *tc = sg_ctx_create(&f->tail, ns > nq ? ns : nq);
    /* head init: 10 · normalized prototypes of the tail's features */
    int C = e->cfg.width;
    int gap = f->tail.n_layers - 3;
    /* batch norm stays in eval mode: its statistics are the base network's */
    sg_net_forward(&f->tail, tc, p, f->tail_state, as, ns, 0);
    const float *fs = sg_net_activation(tc, gap);
    float proto[SG_MAX_WAY][SG_ENGINE_MAX_WIDTH] = {{0}};
    for (int c = 0, k = 0; c < N; c++)
        for (int i = 0; i < shots[c]; i++, k++)
            for (int j = 0; j < C; j++) proto[c][j] += fs[(size_t)k * C + j];
    for (int c = 0; c < N; c++) {
        double nn = 0;
        for (int j = 0; j < C; j++) nn += (double)proto[c][j] * proto[c][j];
        float r = (float)(10.0 / sqrt(nn + 1e-12));
        for (int j = 0; j < C; j++) p[f->head_off + (size_t)c * C + j] = proto[c][j] * r;
    }
    int *lab = sg_xmalloc(sizeof(int) * (size_t)ns);
    for (int c = 0, k = 0; c < N; c++)
        for (int i = 0; i < shots[c]; i++) lab[k++] = c;
    float *dl = sg_xalloc_floats((size_t)ns * N);
    for (int t = 1; t <= 20; t++) {
        const float *out = sg_net_forward(&f->tail, tc, p, f->tail_state, as, ns, 0);
        sg_softmax_xent(ns, N, out, lab, 1.0f, dl, NULL);
        memset(g, 0, sizeof(float) * np);
        sg_net_backward(&f->tail, tc, p, f->tail_state, dl, g, NULL);
        sg_adamw_step(np, p, g, m, v, t, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, NULL);
    }
    memcpy(logits, sg_net_forward(&f->tail, tc, p, f->tail_state, aq, nq, 0), sizeof(float) * (size_t)nq * N);
    sg_ctx_free(tc);
    free(as); free(aq); free(p); free(g); free(m); free(v); free(lab); free(dl);
}

/* Mean and 95 % interval (1.96 sd / sqrt(E)) over E episodes of a[ep] - b[ep]
 * (b NULL: of a[ep]); a and b step by SG_M__COUNT (one row per episode). */
static void mean_ci95(int E, const double *a, const double *b, double *mean, double *ci) {
    double s = 0, ss = 0;
    for (int ep = 0; ep < E; ep++) s += a[(size_t)ep * SG_M__COUNT] - (b ? b[(size_t)ep * SG_M__COUNT] : 0);
    *mean = s / E;
    for (int ep = 0; ep < E; ep++) {
        double dv = a[(size_t)ep * SG_M__COUNT] - (b ? b[(size_t)ep * SG_M__COUNT] : 0) - *mean;
        ss += dv * dv;
    }
    *ci = 1.96 * sqrt(ss / (E > 1 ? E - 1 : 1)) / sqrt((double)E);
}

void sg_fewshot_opts_default(sg_fewshot_opts *o) {
    memset(o, 0, sizeof *o);
    o->way = 5;
    o->queries = 15;
    o->episodes = 600;
    o->seed = 1;
    o->support_norm = SG_SUPPORT_NORM_AUTO;
}

sg_status sg_fewshot_eval(const sg_engine *e, const sg_dataset *d, const sg_fewshot_opts *o, sg_fewshot_result *res,
                          MPI_Comm comm, sg_err *err) {
    int rank, P;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &P);
    memset(res, 0, sizeof *res);
    if (d->store != e->cfg.store)
        return sg_err_set(err, SG_ERR_ARG, "images stored at %d px; the engine expects %d", d->store, e->cfg.store);
    int *all = sg_xmalloc(sizeof(int) * (size_t)d->n_classes);
    for (int c = 0; c < d->n_classes; c++) all[c] = c;
    int E = o->episodes;
    double *acc = sg_xcalloc((size_t)E * SG_M__COUNT, sizeof(double));
    int *done = sg_xcalloc((size_t)E, sizeof(int));
    sg_episode_buf b = {0};
    const sg_engine_config *cf = &e->cfg;
    size_t isz = (size_t)3 * cf->img * cf->img, ssz = (size_t)3 * cf->store * cf->store;
    int C = cf->width;
    finetune_ctx ft;
    int ft_way = -1;
    sg_ctx *cctx = NULL;
    double t0 = sg_now();
    int text_ok = 1;
    for (int c = 0; c < d->n_classes && text_ok; c++)
        if (!d->class_text || !d->class_text[c]) {
            text_ok = 0;
            if (rank == 0 && (o->methods[SG_M_SGPS_IMG_TEXT] || o->methods[SG_M_SGPS_TEXT]))
                sg_log(SG_LOG_WARN, "the methods with text are left out: class %s has no description", d->class_names[c]);
        }
    /* Every episode is o->way-way or none is: an episode drawn with fewer
     * classes would be reported under the wrong name. */
    {
        int need = o->shot + o->queries, ok = 0;
        int *count = sg_xcalloc((size_t)d->n_classes, sizeof(int));
        for (int i = 0; i < d->n; i++) count[d->label[i]]++;
        sg_buf few = {0};
        for (int c = 0; c < d->n_classes; c++) {
            if (count[c] >= need) ok++;
            else sg_buf_printf(&few, "%s%s (%d)", few.len ? ", " : "", d->class_names[c], count[c]);
        }
        free(count);
        if (ok < o->way) {
            sg_err_set(err, SG_ERR_ARG, "%d-way episodes need %d classes with %d images each (shot + queries); %d have them%s%.*s",
                       o->way, o->way, need, ok, few.len ? "; fewer: " : "", (int)few.len, (const char *)few.data);
            sg_buf_free(&few);
            free(all); free(acc); free(done);
            return SG_ERR_ARG;
        }
        sg_buf_free(&few);
    }
    int synth_failed = 0;
    for (int ep = 0; ep < E; ep++) {
        sg_rng r;
        sg_rng_seed2(&r, o->seed, (uint64_t)ep);
        if (!sg_sample_episode(d, all, d->n_classes, o->way, o->shot, o->queries, 0.0f, 0, &r, &b)) {
            free(all); free(acc); free(done);
            sg_episode_buf_free(&b);
            return sg_err_set(err, SG_ERR_ARG, "not enough classes with %d images (shot + queries)", o->shot + o->queries);
        }
        if (b.ep.way != o->way) { /* a source set with fewer eligible classes (every rank draws every episode) */
            free(all); free(acc); free(done);
            sg_episode_buf_free(&b);
            return sg_err_set(err, SG_ERR_ARG, "episode %d drew %d classes from one source set, not %d", ep, b.ep.way,
                              o->way);
        }
        if (ep % P != rank) continue;
        int N = b.ep.way, ns = N * o->shot, nq = b.ep.n_query;
        float *xs = sg_xalloc_floats((size_t)ns * isz), *xq = sg_xalloc_floats((size_t)nq * isz);
        sg_engine_prepare_images(e, ns, b.sup, xs);
        sg_engine_prepare_images(e, nq, b.qry, xq);
        float *logits = sg_xalloc_floats((size_t)nq * N);
        double *a = acc + (size_t)ep * SG_M__COUNT;
        if (o->methods[SG_M_PROTONET] || o->methods[SG_M_LINPROBE]) {
            float *fs = sg_xalloc_floats((size_t)ns * C), *fq = sg_xalloc_floats((size_t)nq * C);
            sg_engine_base_features(e, ns, xs, fs);
            sg_engine_base_features(e, nq, xq, fq);
            if (o->methods[SG_M_PROTONET]) {
                protonet(N, C, fs, b.shots, fq, nq, logits);
                a[SG_M_PROTONET] = acc_of(logits, b.qlab, nq, N);
            }
            if (o->methods[SG_M_LINPROBE]) {
                linprobe(N, C, fs, b.shots, fq, nq, logits);
                a[SG_M_LINPROBE] = acc_of(logits, b.qlab, nq, N);
            }
            free(fs);
            free(fq);
        }
        if (o->methods[SG_M_FINETUNE]) {
            if (ft_way != N) {
                if (ft_way >= 0) finetune_free(&ft);
                finetune_setup(e, N, &ft);
                ft_way = N;
            }
            finetune(e, &ft, N, xs, b.shots, xq, nq, logits);
            a[SG_M_FINETUNE] = acc_of(logits, b.qlab, nq, N);
        }
        a[SG_M_CHANCE] = 1.0 / N;
        sg_task_class tcls[SG_MAX_WAY];
        for (int c = 0; c < N; c++) {
            tcls[c].name = d->class_names[b.classes[c]];
            tcls[c].text = d->class_text ? d->class_text[b.classes[c]] : NULL;
            tcls[c].n_shots = b.shots[c];
            tcls[c].images = b.support[c];
        }
        sg_task task = {N, tcls};
        for (int m = SG_M_SGPS_IMG; m <= SG_M_SGPS_NOADAPT; m++) {
            int texty = m == SG_M_SGPS_IMG_TEXT || m == SG_M_SGPS_TEXT;
            if (!o->methods[m] || (texty && !text_ok)) continue;
            sg_synth_opts so;
            sg_synth_opts_default(&so);
            so.use_text = texty;
            so.use_images = m != SG_M_SGPS_TEXT;
            so.adapt = m != SG_M_SGPS_NOADAPT;
            so.support_norm = o->support_norm;
            sg_classifier *cl;
            sg_err e2;
            if (sg_engine_synthesize(e, &task, &so, &cl, &e2) != SG_OK) {
                if (!synth_failed++) sg_log(SG_LOG_ERROR, "episode %d, %s: %s", ep, sg_method_name((sg_method)m), e2.msg);
                continue;
            }
            a[m] = classifier_acc(cl, &cctx, xq, b.qlab, nq);
            sg_classifier_free(cl);
        }
        done[ep] = 1;
        free(xs);
        free(xq);
        free(logits);
        if (rank == 0 && (ep / P + 1) % 25 == 0) {
            double el = sg_now() - t0;
            sg_log(SG_LOG_INFO, "eval %d-way %d-shot: episode %d/%d, %.1f episodes/s, ETA %.0fs", o->way, o->shot, ep + 1, E,
                   (ep + 1) / el, el / (ep + 1) * (E - ep - 1));
        }
        (void)ssz;
    }
    if (ft_way >= 0) finetune_free(&ft);
    sg_ctx_free(cctx);
    sg_episode_buf_free(&b);
    if (P > 1) {
        MPI_Reduce(rank == 0 ? MPI_IN_PLACE : acc, acc, E * SG_M__COUNT, MPI_DOUBLE, MPI_SUM, 0, comm);
        MPI_Reduce(rank == 0 ? MPI_IN_PLACE : done, done, E, MPI_INT, MPI_SUM, 0, comm);
        MPI_Allreduce(MPI_IN_PLACE, &synth_failed, 1, MPI_INT, MPI_SUM, comm);
    }
    if (synth_failed) { /* a failed synthesis is not an accuracy of 0 */
        free(all);
        free(acc);
        free(done);
        return sg_err_set(err, SG_ERR_ARG, "synthesis failed in %d episode(s) (the first is logged above)", synth_failed);
    }
    if (rank == 0) {
        for (int m = 0; m < SG_M__COUNT; m++) {
            if (!o->methods[m] || (m >= SG_M_SGPS_IMG_TEXT && m <= SG_M_SGPS_TEXT && !text_ok)) continue;
            mean_ci95(E, acc + m, NULL, &res->mean[m], &res->ci95[m]);
            res->ran[m] = 1;
        }
        for (int m = 0; m < SG_M__COUNT && res->ran[SG_M_SGPS_IMG]; m++) {
            if (m == SG_M_SGPS_IMG || !res->ran[m]) continue;
            mean_ci95(E, acc + SG_M_SGPS_IMG, acc + m, &res->diff[m], &res->diff_ci95[m]);
            res->has_diff[m] = 1;
        }
        res->episodes = E;
        res->seconds = sg_now() - t0;
    }
    free(all);
    free(acc);
    free(done);
    return SG_OK;
}
