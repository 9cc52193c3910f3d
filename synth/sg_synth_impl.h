/* sg_synth_impl.h — internals shared by the synth/ sources. */
#ifndef SG_SYNTH_IMPL_H
#define SG_SYNTH_IMPL_H

#include "sg_synth.h"

#define SG_ENGINE_MAX_UNITS (SG_ENGINE_MAX_STAGES * SG_ENGINE_MAX_CONVS) /* a unit: conv, norm, ReLU */
#define SG_ENGINE_MAX_WIDTH 512
#define SG_ENGINE_MAX_RANK 64
#define SG_TEXT_MAX_DIM 512
#define SG_TEXT_MAX_IDS 1024
#define SG_MAX_WAY 64

struct sg_engine {
    sg_engine_config cfg;
    float mean[3], std[3];
    sg_arch base_cls; /* conv4(BN) + GAP + stage-1 head */
    sg_arch base;     /* conv4(BN) + GAP: the same leading parameters */
    sg_arch syn;      /* conv4(affine) + GAP: what the generator writes */
    int zdim;         /* task code: image summary (C) + text summary (T) + 2 flags */
    size_t n_params;
    float *params;
    float *state; /* base batch-norm running statistics */
    size_t off_s2, off_emb, off_t1, off_t2;
    int norm_adapted; /* 1: sg_engine_adapt_norm moved the running statistics to a new domain */
    int bn_by_source; /* 1: stage 1 took batch-norm statistics per source set (train-engine --bn-group) */
    int n_units;                         /* convolutions of the backbone */
    int unit_layer[SG_ENGINE_MAX_UNITS]; /* layer index of each unit's conv (its norm follows it) */
    size_t off_gg[SG_ENGINE_MAX_UNITS], off_gb[SG_ENGINE_MAX_UNITS];
    size_t off_U[SG_ENGINE_MAX_UNITS], off_V[SG_ENGINE_MAX_UNITS], off_A[SG_ENGINE_MAX_UNITS];
    size_t off_P, off_omega, off_logtau, off_kappa, off_rho, off_loglam;
    /* Reused workspaces (an engine is used by one thread at a time). */
    sg_ctx *ws_base, *ws_sup, *ws_qry;
    sg_ctx *ws_seg[SG_ENGINE_MAX_UNITS + 1]; /* support normalization: one per segment of syn */
    float *sn_buf; /* support normalization: pooled outputs and convolution scratch */
    size_t sn_cap;
};

const char *sg_engine_check_state(const sg_engine *e);

/* Fills the architectures and parameter offsets from e->cfg (no allocation). */
void sg_engine_layout(sg_engine *e);
/* An engine of configuration cfg laid out, its parameters and state zero
 * and nothing initialized: what sg_engine_create initializes and
 * sg_engine_deserialize fills from a file (drawing the 1.2 M random start
 * values it would overwrite took half of loading an engine). */
sg_engine *sg_engine_alloc(const sg_engine_config *cfg);

/* A workspace for arch a with room for n images, reused while big enough. */
sg_ctx *sg_engine_ws(sg_ctx **slot, const sg_arch *a, int n);

typedef struct sg_text_cache {
    float bag[SG_TEXT_MAX_DIM], hid[SG_TEXT_MAX_DIM], code[SG_TEXT_MAX_DIM];
    int n_used;
} sg_text_cache;

typedef struct sg_gen_cache {
    float gamma[SG_ENGINE_MAX_UNITS][SG_ENGINE_MAX_WIDTH];
    float beta[SG_ENGINE_MAX_UNITS][SG_ENGINE_MAX_WIDTH];
    float alpha[SG_ENGINE_MAX_UNITS][SG_ENGINE_MAX_RANK];
    float *work;
} sg_gen_cache;

void sg_engine_crop_plane(const uint8_t *plane, int S, float x0, float y0, float cw, float ch, int o, int flip,
                          float mean, float std, float *out);
void sg_engine_prepare_image(const sg_engine *e, const uint8_t *img, int flip, float *out);
void sg_text_forward(const sg_engine *e, const int *ids, int n_ids, const uint8_t *drop, sg_text_cache *tc);
void sg_text_backward(const sg_engine *e, const int *ids, int n_ids, const uint8_t *drop, const sg_text_cache *tc,
                      const float *dcode, float *grad);
void sg_gen_forward(const sg_engine *e, const float *z, int adapt, sg_gen_cache *gc, float *theta);
void sg_gen_backward(const sg_engine *e, const float *z, const sg_gen_cache *gc, const float *dtheta, float *grad,
                     float *dz);
sg_gen_cache *sg_gen_cache_create(const sg_engine *e);
void sg_gen_cache_free(sg_gen_cache *gc);
void sg_engine_image_summary(const sg_engine *e, sg_ctx *bctx, int n, const float *x, float *out);


/* The fast support check (sg_support_check.c): the task's classifier is
 * synthesized once; for each support image of a class with at least two, the
 * head is rebuilt without it and scores the image's features as the whole
 * task's backbone computes them. logits (n_images, N), class by class; rows of
 * unchecked images are left as they are. */
sg_status sg_engine_support_loo_fast(const sg_engine *e, const sg_task *task, const sg_synth_opts *o, float *logits,
                                     sg_err *err);

/* Base-backbone features (eval mode) of n prepared images → (n, C). */
void sg_engine_base_features(const sg_engine *e, int n, const float *x, float *feat);

/* Episode sampling (sg_train.c), shared with evaluation. */
typedef struct sg_episode_buf {
    int shots[SG_MAX_WAY];
    const uint8_t *support[SG_MAX_WAY];
    const char *texts[SG_MAX_WAY];
    int classes[SG_MAX_WAY]; /* dataset class of each episode class */
    uint8_t *sup, *qry;
    int *qlab;
    sg_episode ep;
} sg_episode_buf;

/* Draws an N-way episode (N = min(way, eligible classes of one domain)) from
 * the classes allowed[]: `shot` support and `queries` query images per class;
 * text dropped per class with probability text_dropout; text_only: no
 * support, only classes with text. Returns 0 when no domain has two
 * eligible classes. */
int sg_sample_episode(const sg_dataset *d, const int *allowed, int n_allowed, int way, int shot, int queries,
                      float text_dropout, int text_only, sg_rng *r, sg_episode_buf *b);
void sg_episode_buf_free(sg_episode_buf *b);

/* Stage-1 batches: n images of classes drawn uniformly from cls[0..n_cls)
 * (labels and dataset image indices). With group > 0, each run of `group`
 * images shares the source set of its first one, so that batch-norm
 * statistics over a group are one set's (train-engine --bn-group). group 0
 * draws exactly what stage 1 drew before groups existed. */
typedef struct sg_batch_sampler sg_batch_sampler;
sg_batch_sampler *sg_batch_sampler_create(const sg_dataset *d, const int *cls, int n_cls, int group);
void sg_batch_sampler_draw(const sg_batch_sampler *s, sg_rng *r, int n, int *lab, int *img);
long sg_batch_sampler_images(const sg_batch_sampler *s); /* images of its classes */
void sg_batch_sampler_free(sg_batch_sampler *s);

/* A candidate head for calibration: logits = a · cosine part + b · ridge part
 * (scaled afterwards), centre κ · mean prototype, ridge regularizer λ. */
typedef struct sg_head_cand {
    float a, b, kappa, lambda;
} sg_head_cand;

void sg_engine_head_eval(const sg_engine *e, const sg_episode *ep, int n_cand, const sg_head_cand *cand, int n_scale,
                         const float *scales, double *acc, double *nll);

/* Resumable training state (sg_train_state.c). The buffers belong to the trainer. */
typedef struct sg_train_snapshot {
    int stage;      /* 1 or 2 */
    long next_step; /* first step of `stage` still to run */
    double best_val;
    float *m, *v, *best, *best_state;
    int ranks;          /* P: rank_state holds P running-statistics vectors */
    float *rank_state;  /* (ranks × n_state) each rank's running statistics (rank 0's copy) */
} sg_train_snapshot;

uint64_t sg_train_config_hash(const sg_engine *e, const sg_dataset *d, const sg_train_opts *o);
/* Writes e's parameters, the snapshot's buffers and s->rank_state (every
 * rank's running statistics: between two synchronizations they differ). */
sg_status sg_train_state_save(const char *path, uint64_t hash, const sg_train_snapshot *s, const sg_engine *e,
                              sg_err *err);
/* Restores e's parameters, the snapshot's buffers and s->rank_state (rank r's
 * statistics go back to rank r); refuses a state written for other settings
 * (hash), another rank count, another engine shape or a corrupt file. */
sg_status sg_train_state_load(const char *path, uint64_t hash, sg_train_snapshot *s, sg_engine *e, sg_err *err);

#endif
