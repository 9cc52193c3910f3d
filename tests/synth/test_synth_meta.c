/* test_synth_meta.c — meta-training pays off on classes it never saw.
 *
 * A generated task distribution: classes are shape × colour combinations
 * (6 shapes × 6 colours) drawn at random position, size, angle, background
 * and noise, next to a smaller distractor object of another shape and
 * colour, each with a description built from its attribute words ("a red
 * ring on a dark background"). The six diagonal combinations are held out
 * (every shape and every colour is still seen in training, in other
 * combinations); a small engine is trained with sg_engine_train (both
 * stages, MPI_COMM_WORLD of this one process) on the other thirty. On
 * seeded 4-way episodes over the held-out classes:
 *   - SGPS (images + text, generated kernels and FiLM) beats the un-adapted
 *     base (opts.adapt = 0, no text: ProtoNet on the base features) at 1 shot
 *     by a margin, on the very same episodes;
 *   - text-only synthesis (no image of the new classes at all) beats chance.
 * Criterion runs each test in its own process, so the test initializes and
 * finalizes MPI itself (Open MPI singleton mode). */
#include "sg_synth_fixtures.h"

#include <criterion/criterion.h>

enum { META_PER_CLASS = 20, META_WAY = 4, META_QUERIES = 10, META_EPISODES = 40 };

/* Accuracy over META_EPISODES seeded META_WAY-way episodes drawn from the
 * classes pool[] with `shot` support images (0: text only) and META_QUERIES
 * queries per class. */
static double eval_episodes(const sg_engine *e, const sg_dataset *d, const int *pool_cls, int n_pool, int shot,
                            const sg_synth_opts *o, uint64_t seed) {
    int way = META_WAY, cls[SG_MAX_WAY], perm[64];
    cr_assert(n_pool >= way && n_pool <= 64);
    const sg_engine_config *c = sg_engine_get_config(e);
    size_t ssz = (size_t)3 * d->store * d->store, isz = (size_t)3 * c->img * c->img;
    int nq = way * META_QUERIES, right = 0, total = 0;
    uint8_t *sup = sg_xmalloc(ssz * (size_t)way * (shot ? shot : 1)), *qry = sg_xmalloc(ssz * (size_t)nq);
    int *qlab = sg_xmalloc(sizeof(int) * (size_t)nq);
    float *x = sg_xalloc_floats(isz * (size_t)nq);
    sg_ctx *ctx = NULL;
    for (int ep = 0; ep < META_EPISODES; ep++) {
        sg_rng r;
        sg_rng_seed2(&r, seed, (uint64_t)ep);
        for (int k = 0; k < n_pool; k++) perm[k] = pool_cls[k];
        sg_rng_shuffle_int(&r, perm, (size_t)n_pool);
        for (int k = 0; k < way; k++) cls[k] = perm[k];
        sg_task_class tc[SG_MAX_WAY];
        for (int k = 0; k < way; k++) {
            /* the class's images, shuffled: shot support, then queries */
            int pool[META_PER_CLASS], np = 0;
            for (int i = 0; i < d->n && np < META_PER_CLASS; i++)
                if (d->label[i] == cls[k]) pool[np++] = i;
            cr_assert(np >= shot + META_QUERIES);
            sg_rng_shuffle_int(&r, pool, (size_t)np);
            for (int i = 0; i < shot; i++) memcpy(sup + ((size_t)k * shot + i) * ssz, d->pix + (size_t)pool[i] * ssz, ssz);
            for (int q = 0; q < META_QUERIES; q++) {
                memcpy(qry + ((size_t)k * META_QUERIES + q) * ssz, d->pix + (size_t)pool[shot + q] * ssz, ssz);
                qlab[k * META_QUERIES + q] = k;
            }
            tc[k].name = d->class_names[cls[k]];
            tc[k].text = d->class_text[cls[k]];
            tc[k].n_shots = shot;
            tc[k].images = sup + (size_t)k * shot * ssz;
        }
        sg_task task = {way, tc};
        sg_classifier *cl = NULL;
        sg_err err = {{0}};
        cr_assert(sg_engine_synthesize(e, &task, o, &cl, &err) == SG_OK, "%s", err.msg);
        if (!ctx) ctx = sg_ctx_create(&cl->arch, nq);
        sg_engine_prepare_images(e, nq, qry, x);
        const float *y = sg_net_forward(&cl->arch, ctx, cl->params, cl->state, x, nq, 0);
        for (int q = 0; q < nq; q++) {
            int best = 0;
            for (int k = 1; k < way; k++)
                if (y[(size_t)q * way + k] > y[(size_t)q * way + best]) best = k;
            right += best == qlab[q];
            total++;
        }
        sg_classifier_free(cl);
    }
    sg_ctx_free(ctx);
    free(sup); free(qry); free(qlab); free(x);
    return (double)right / total;
}

Test(synth_meta, sgps_beats_protonet_on_held_out_classes, .timeout = 300) {
    int inited;
    MPI_Initialized(&inited);
    if (!inited) MPI_Init(NULL, NULL);
    sg_log_set_level(SG_LOG_WARN);
    double t0 = sg_now();

    /* all 36 combinations; the diagonal (red disc, green bar, blue ring, ...) is held out */
    int combos[2 * FX_N_SHAPES * FX_N_COLOURS], held[FX_N_SHAPES], nh = 0, n = 0;
    for (int s = 0; s < FX_N_SHAPES; s++)
        for (int co = 0; co < FX_N_COLOURS; co++) {
            if (s == co) held[nh++] = n;
            combos[2 * n] = s;
            combos[2 * n + 1] = co;
            n++;
        }
    sg_engine_config c;
    sg_engine_config_default(&c);
    c.img = 16;
    c.store = 20;
    c.width = 16;
    c.stages = 3;
    c.rank = 4;
    c.text_buckets = 512;
    c.text_dim = 16;
    c.text_hidden = 32;
    c.code_dim = 16;
    c.n_base_classes = n;
    sg_dataset d;
    fx_dataset_build(&d, combos, n, META_PER_CLASS, c.store, 1, 2024);
    sg_engine *e = fx_engine_for(&d, c, 7);

    sg_train_opts o;
    sg_train_opts_default(&o);
    o.stage1_epochs = 15;
    o.batch = 32;
    o.lr1 = 3e-3f;
    o.stage2_episodes = 1500;
    o.episodes_per_step = 2;
    o.lr2 = 6e-3f;
    o.way = META_WAY;
    o.max_shot = 3;
    o.queries = 4;
    o.val_classes = held; /* excluded from training; no validation on them (val_episodes 0) */
    o.n_val_classes = nh;
    o.val_episodes = 0;
    o.seed = 11;
    o.log_every = 100000;
    sg_err err = {{0}};
    cr_assert(sg_engine_train(e, &d, &o, MPI_COMM_WORLD, &err) == SG_OK, "train: %s", err.msg);
    double t_train = sg_now() - t0;

    sg_synth_opts sgps, proto, text;
    sg_synth_opts_default(&sgps);
    proto = sgps;
    proto.adapt = 0;
    proto.use_text = 0;
    text = sgps;
    text.use_images = 0;
    double a_sgps1 = eval_episodes(e, &d, held, nh, 1, &sgps, 99);
    double a_proto1 = eval_episodes(e, &d, held, nh, 1, &proto, 99);
    double a_sgps3 = eval_episodes(e, &d, held, nh, 3, &sgps, 98);
    double a_proto3 = eval_episodes(e, &d, held, nh, 3, &proto, 98);
    double a_text = eval_episodes(e, &d, held, nh, 0, &text, 97);
    /* ablations, logged for the record: base kernels + text, generated kernels without text */
    sg_synth_opts noadapt = sgps, notext = sgps;
    noadapt.adapt = 0;
    notext.use_text = 0;
    double a_noadapt1 = eval_episodes(e, &d, held, nh, 1, &noadapt, 99), a_notext1 = eval_episodes(e, &d, held, nh, 1, &notext, 99);
    cr_log_info("held-out 4-way (%d episodes x %d queries): 1-shot SGPS %.1f%% vs ProtoNet %.1f%%; 3-shot SGPS %.1f%% "
                "vs ProtoNet %.1f%%; text only %.1f%% (chance 25%%); train %.1fs, total %.1fs",
                META_EPISODES, META_WAY * META_QUERIES, 100 * a_sgps1, 100 * a_proto1, 100 * a_sgps3, 100 * a_proto3,
                100 * a_text, t_train, sg_now() - t0);
    cr_log_info("1-shot ablations: base kernels + text %.1f%%, generated kernels without text %.1f%%; learned omega %.3f "
                "kappa %.3f rho %.3f tau %.2f",
                100 * a_noadapt1, 100 * a_notext1, e->params[e->off_omega], e->params[e->off_kappa], e->params[e->off_rho],
                expf(e->params[e->off_logtau]));
    cr_assert(a_sgps1 >= a_proto1 + 0.05, "1-shot: SGPS %.3f does not beat ProtoNet %.3f by 5 points", a_sgps1, a_proto1);
    cr_assert(a_text >= 0.25 + 0.15, "text only %.3f is not clearly above chance (0.25)", a_text);
    cr_assert(a_sgps3 >= a_proto3 - 0.02, "3-shot: SGPS %.3f below ProtoNet %.3f", a_sgps3, a_proto3);
    sg_engine_free(e);
    sg_dataset_free(&d);
    MPI_Finalize();
}
