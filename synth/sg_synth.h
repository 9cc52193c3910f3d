/* sg_synth.h — the SGPS engine: a meta-trained hypernetwork that writes every
 * parameter of a small CNN classifier from a task's support images and
 * clinical descriptions; its meta-training and few-shot evaluation.
 *
 * Lifecycle:
 *   1) sg_engine *e = sg_engine_create(&cfg, seed);   or sg_engine_load(path, &e, &err)
 *   2) meta-train:  sg_engine_train(e, &data, &opts, comm, &err)   (MPI data-parallel)
 *   3) synthesize:  sg_engine_synthesize(e, &task, &sopts, &classifier, &err)
 *      → a standalone sg_classifier (model/), run with sg_net_forward.
 *   4) evaluate:    sg_fewshot_eval(e, &data, &eopts, &result, comm)
 *   5) sg_engine_save(e, path, &err); sg_engine_free(e)
 *
 * Images handed to the engine are already decoded by the caller (io/):
 * uint8 RGB planar (3, S, S) at the engine's storage side S = cfg.store
 * (slightly above cfg.img, for crops). The engine normalizes with the
 * statistics it stores.
 *
 * The synthesized classifier: 4 × [conv3×3 (W_base + U·diag(α)·V), affine
 * (folded norm × FiLM), ReLU, maxpool 2], GAP, centred L2 norm, linear head.
 * α, the FiLM scale/shift, the centre and the head all come from the task
 * code (support-set image summary + text code), so every parameter of the
 * classifier is a function of the task.
 */
#ifndef SG_SYNTH_H
#define SG_SYNTH_H

#include "sg_core.h"
#include "sg_model.h"

#include <mpi.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SG_SGPE_VERSION 2 /* 2: head scalars κ, ρ, log λ added; 1 files load with sg_engine_load_backbone */

#define SG_ENGINE_MAX_STAGES 6
#define SG_ENGINE_MAX_CONVS 3 /* per stage */

typedef struct sg_engine_config {
    int img;          /* classifier input side (40) */
    int store;        /* stored image side for training crops (45) */
    int width;        /* channels per stage (64) */
    int stages;       /* conv stages (4) */
    int rank;         /* rank of the generated kernel deltas (4) */
    int text_buckets; /* hashed uni/bigram buckets (16384) */
    int text_dim;     /* embedding-bag dimension (64) */
    int text_hidden;  /* text MLP hidden units (64) */
    int code_dim;     /* text code dimension (32) */
    int n_base_classes; /* classes of the stage-1 supervised head */
    int convs[SG_ENGINE_MAX_STAGES]; /* convolutions in each stage, 1..SG_ENGINE_MAX_CONVS (1 each: Conv4) */
} sg_engine_config;

void sg_engine_config_default(sg_engine_config *c);
/* "1,2,2,2": the convolutions per stage, into buf (n bytes); returns 1 when
 * some stage has more than one, 0 for a Conv4-style one each. */
int sg_engine_convs_str(const sg_engine_config *c, char *buf, size_t n);

typedef struct sg_engine sg_engine; /* opaque */

sg_engine *sg_engine_create(const sg_engine_config *cfg, uint64_t seed);
void sg_engine_free(sg_engine *e);
const sg_engine_config *sg_engine_get_config(const sg_engine *e);
size_t sg_engine_n_params(const sg_engine *e);
void sg_engine_set_normalization(sg_engine *e, const float mean[3], const float std[3]);
sg_status sg_engine_save(const sg_engine *e, const char *path, sg_err *err);
void sg_engine_serialize(const sg_engine *e, sg_buf *out);
sg_status sg_engine_load(const char *path, sg_engine **out, sg_err *err);
sg_status sg_engine_deserialize(const uint8_t *data, size_t len, const char *name, sg_engine **out, sg_err *err);
/* Copies the base backbone, its stage-1 head, running statistics and input
 * normalization from an engine file whose backbone configuration matches;
 * the generator keeps its own (e.g. fresh) parameters. */
sg_status sg_engine_load_backbone(sg_engine *e, const char *path, sg_err *err);
/* The backbone part of an engine file's configuration (img, store, width,
 * stages, convs; the rest default), from any format version this sgps can
 * take a backbone from (sg_engine_load_backbone), version 1 included. */
sg_status sg_engine_read_backbone_config(const char *path, sg_engine_config *out, sg_err *err);
/* CRC-32 of the parameters: equal on every rank after each step. */
uint32_t sg_engine_params_crc(const sg_engine *e);

/* ---- text ---------------------------------------------------------------- */
/* Lowercased alphanumeric words; unigram and bigram hashes into [0, buckets).
 * Returns the number of ids written (at most max_ids). */
int sg_text_tokenize(const char *text, int buckets, int *ids, int max_ids);
/* Whether text holds a word the tokenizer reads (an ASCII letter or digit):
 * a description without one carries nothing and counts as no description. */
int sg_text_has_words(const char *text);

/* ---- tasks --------------------------------------------------------------- */

typedef struct sg_task_class {
    const char *name;
    const char *text;       /* clinical description, or NULL */
    int n_shots;            /* support images, 0..5 (or more) */
    const uint8_t *images;  /* (n_shots, 3, store, store) uint8 */
} sg_task_class;

typedef struct sg_task {
    int n_classes;
    const sg_task_class *classes;
} sg_task;

typedef struct sg_synth_opts {
    int use_images; /* 1: use the support images (when a class has any) */
    int use_text;   /* 1: use the descriptions (when present) */
    int flip_aug;   /* 1: also see each support image mirrored (default 0) */
    int adapt;      /* 1: generated kernel deltas and FiLM; 0: base kernels (ablation) */
    float support_norm; /* with adapt: weight of the support images' own statistics in every
                           norm of the classifier, 0..1 (0: the engine's statistics alone);
                           default SG_SUPPORT_NORM_AUTO */
} sg_synth_opts;

/* The support normalization's default weight: chosen on two image domains
 * held out of training (docs/results.md). */
#define SG_SUPPORT_NORM_DEFAULT 0.25f
/* support_norm < 0: SG_SUPPORT_NORM_DEFAULT, or 0 for an engine whose
 * normalization was adapted to the target domain (sgps adapt-engine), on
 * which the two did not stack, and for one whose backbone took batch-norm
 * statistics per source set, which it lowers on held-out domains
 * (docs/results.md). */
#define SG_SUPPORT_NORM_AUTO (-1.0f)

/* The support normalization weight synthesis uses for a requested one. */
float sg_engine_support_norm(const sg_engine *e, float requested);
/* The weight sg_engine_synthesize applies with options o to a task with
 * n_images support images: sg_engine_support_norm's, or 0 without images or
 * adaptation (text-only synthesis, the no-adaptation ablation). */
float sg_synth_support_norm(const sg_engine *e, const sg_synth_opts *o, int n_images);
/* 1 when sg_engine_adapt_norm adapted the engine's normalization (kept in the file). */
int sg_engine_norm_adapted(const sg_engine *e);
/* 1 when the engine's backbone was trained with batch-norm statistics per
 * source set (sg_train_opts.bn_group; kept in the file). */
int sg_engine_bn_by_source(const sg_engine *e);

void sg_synth_opts_default(sg_synth_opts *o);

/* Writes a standalone classifier for the task. Deterministic. Fails with a
 * message when a class has neither usable images nor text. */
sg_status sg_engine_synthesize(const sg_engine *e, const sg_task *task, const sg_synth_opts *o, sg_classifier **out,
                               sg_err *err);

/* Leave-one-out check of the support images (sg_support_check.c): each image
 * of a class with at least two is classified by the classifier synthesized
 * with options o from the task without it. Images of classes with fewer, and
 * every image when o->use_images is 0, are not checked. */
typedef struct sg_support_check {
    int checked, correct; /* images left out; those classified as their own class */
    int n_classes;
    int n_images;         /* the task's support images, class by class */
    int *pred;            /* (n_images) the class each was classified as, -1 when not checked */
    float *p_own;         /* (n_images) the probability it gave the image's own class, NaN when not checked */
    double mean_p_own;    /* mean of p_own over the checked images (NaN when none) */
    int fast;             /* 1: the fast check (see exact_max below) */
} sg_support_check;

/* exact_max: the exact check (one synthesis per image) for a task of at most
 * this many support images; a larger one takes the fast check (out->fast):
 * the task's classifier is synthesized once, and each image is scored, as
 * that backbone computes its features, by the head rebuilt without it. The
 * two differ only in the normalization's statistics and the generated
 * kernels, which the exact check also recomputes without the image (with the
 * support normalization's B = 0.25 that is a 1/(4n) share of the statistics);
 * the fast one costs about one synthesis. */
#define SG_SUPPORT_CHECK_EXACT_MAX 25
/* sg_support_check_json lists at most this many misclassified exemplars. */
#define SG_SUPPORT_CHECK_MAX_LISTED 200
/* The check's methods by name (sgps synth --check, a manifest's "support_check"):
 * auto (exact up to SG_SUPPORT_CHECK_EXACT_MAX images, fast above), exact, fast;
 * SG_CHECK_OFF: no check. */
enum { SG_CHECK_OFF = 0, SG_CHECK_AUTO = 1, SG_CHECK_EXACT = 2, SG_CHECK_FAST = 3 };
/* "auto", "exact" or "fast" -> its SG_CHECK_*; anything else -> -1. */
int sg_support_check_method(const char *name);
/* The exact_max argument of sg_engine_support_check that a method stands for. */
int sg_support_check_exact_max(int method);
sg_status sg_engine_support_check(const sg_engine *e, const sg_task *task, const sg_synth_opts *o, int exact_max,
                                  sg_support_check *out, sg_err *err);
void sg_support_check_free(sg_support_check *c);
/* 1 when a check of `checked` images with `correct` right is no better than
 * chance (1/n_classes): the rule behind every support-check warning. */
int sg_support_check_failed(int correct, int checked, int n_classes);
/* {"checked", "correct", "accuracy" and "mean_own_probability" (null when nothing
 * was checked), "chance", "misclassified": [{"class", "image" (index within its
 * class), "predicted", "own_probability"}]};
 * a string to free(). */
char *sg_support_check_json(const sg_support_check *c, const sg_task *task);

/* Normalizes uint8 (n, 3, store, store) images to floats (n, 3, img, img),
 * centre region resized (used by synthesis and evaluation). */
void sg_engine_prepare_images(const sg_engine *e, int n, const uint8_t *images, float *out);

/* Adapts the engine to a new image domain without labels (AdaBN): every
 * batch norm of the base network gets (1 - alpha) * its statistics + alpha *
 * the statistics of n images (n, 3, store, store), measured norm by norm in
 * eval mode with the earlier norms already adapted. Base features, and so
 * every synthesized classifier, change with them; nothing else does. */
sg_status sg_engine_adapt_norm(sg_engine *e, int n, const uint8_t *images, float alpha, sg_err *err);

/* ---- training data ------------------------------------------------------- */

typedef struct sg_dataset {
    int n;            /* images */
    int store;        /* side of the stored images */
    uint8_t *pix;     /* (n, 3, store, store) */
    int *label;       /* (n) class index */
    int n_classes;
    char **class_names; /* (n_classes) */
    char **class_text;  /* (n_classes) description or NULL */
    int *class_domain;  /* (n_classes) which source set */
    int n_domains;
    char **domain_names;
} sg_dataset;

void sg_dataset_free(sg_dataset *d);
/* Per-channel mean and std of the images (0..1 scale). */
void sg_dataset_stats(const sg_dataset *d, float mean[3], float std[3]);

/* ---- meta-training ------------------------------------------------------- */

typedef struct sg_train_opts {
    int stage1_epochs;     /* supervised pretraining epochs */
    int batch;             /* stage 1 global batch */
    float lr1, wd1;        /* stage 1 learning rate and weight decay (decoupled for AdamW, L2 for SGD) */
    int sgd1;              /* stage 1 optimizer: 0 AdamW, 1 SGD with momentum 0.9 */
    int bn_group;          /* stage 1: batch-norm statistics over groups of this many images drawn from
                              one source set each (0: over each rank's whole batch, mixed sets) */
    int stage2_episodes;   /* episodic steps (global) */
    int episodes_per_step; /* episodes per optimizer step (split over ranks) */
    float lr2, wd2;
    int way, max_shot, queries;
    float text_dropout;
    int val_episodes;      /* validation episodes per check */
    const int *val_classes; int n_val_classes; /* held-out classes (indices into data) */
    const int *s2_classes; int n_s2_classes;   /* classes kept out of stage 1 and used alone for stage-2
                                                  episodes (none: stage 2 uses the stage-1 classes) */
    uint64_t seed;
    const char *checkpoint; /* path prefix: PREFIX.stage1/2.sgpe engines and PREFIX.state (resumable), or NULL */
    int resume;             /* continue from PREFIX.state when it exists (same settings and data required) */
    long stop_after;        /* testing: act as if a stop signal arrived after this many steps (0: never) */
    int log_every;
    double time_budget_s;  /* stop stage 2 early when exceeded (0: none) */
    int train_gen, train_text, train_head; /* stage-2 parameter groups to train (default all 1) */
    int calib_episodes;    /* head calibration on the validation classes after stage 2: episodes per shot
                              count (1 and 5); 0: keep the head as trained (default 300) */
    /* Stage-1 distillation: the loss is (1 - kd_weight) x cross-entropy + kd_weight x
     * T^2 KL(teachers || student) at temperature kd_temp, the teachers' tempered class
     * probabilities averaged (train-engine --teacher). The teachers are read only. */
    const sg_engine *const *teachers; int n_teachers;
    float kd_weight, kd_temp; /* defaults 0.5 and 4 */
} sg_train_opts;

void sg_train_opts_default(sg_train_opts *o);
/* 1 when stage-1 batch-norm groups of `group` images divide a batch of `batch`
 * and each of `ranks` ranks' share of it (group 0 always fits). */
int sg_train_bn_group_fits(int batch, int group, int ranks);
/* Whether `teacher` can teach engine e's stage 1 on data of n_classes classes:
 * the same classes (their count), input side and input normalization (the
 * statistics of the same training images). SG_ERR_ARG with the reason otherwise. */
sg_status sg_train_teacher_fits(const sg_engine *e, const sg_engine *teacher, int n_classes, sg_err *err);

/* SIGTERM / SIGUSR1 during sg_engine_train: finish the current step, write
 * PREFIX.state (when a checkpoint prefix is set) and return
 * SG_ERR_INTERRUPTED, so that the same command with --resume continues. */
void sg_train_install_signals(void);

/* Meta-trains the engine on `data` (classes not in val_classes). All ranks
 * of comm pass the same data and options; returns with identical weights on
 * every rank. */
sg_status sg_engine_train(sg_engine *e, const sg_dataset *data, const sg_train_opts *o, MPI_Comm comm, sg_err *err);

/* One stage-2 episode: loss and gradient (accumulated into grad, flat like the
 * engine's parameters, scaled by `scale`). Exposed for tests. */
typedef struct sg_episode {
    int way;
    int *shots;          /* (way) */
    const uint8_t **support; /* per class (shots[c], 3, store, store) */
    const char **texts;  /* per class or NULL */
    int n_query;
    const uint8_t *query; /* (n_query, 3, store, store) */
    const int *query_label;
    float word_dropout; /* training: drop each text token with this probability (0: none) */
    uint64_t seed;      /* seeds the word dropout */
} sg_episode;

float sg_engine_episode_grad(sg_engine *e, const sg_episode *ep, float *grad, float scale, float *acc);
float *sg_engine_params(sg_engine *e);
/* The first trainable parameter of stage 2 (base backbone and stage-1 head come before). */
size_t sg_engine_stage2_offset(const sg_engine *e);

/* ---- few-shot evaluation ------------------------------------------------- */

typedef enum sg_method {
    SG_M_SGPS_IMG = 0,
    SG_M_SGPS_IMG_TEXT,
    SG_M_SGPS_TEXT,
    SG_M_SGPS_NOADAPT, /* ablation: SGPS head on the base kernels, no generated deltas/FiLM, no text */
    SG_M_PROTONET,
    SG_M_LINPROBE,
    SG_M_FINETUNE,
    SG_M_CHANCE,
    SG_M__COUNT
} sg_method;

const char *sg_method_name(sg_method m);

typedef struct sg_fewshot_opts {
    int way, shot, queries, episodes;
    uint64_t seed;
    int methods[SG_M__COUNT]; /* 1 = run */
    float support_norm;       /* sg_synth_opts.support_norm of the SGPS methods (default auto) */
} sg_fewshot_opts;

/* 5-way, 15 queries, 600 episodes, seed 1, the support normalization as
 * synthesis chooses it (SG_SUPPORT_NORM_AUTO); shot 0 and no method
 * selected yet. */
void sg_fewshot_opts_default(sg_fewshot_opts *o);

typedef struct sg_fewshot_result {
    double mean[SG_M__COUNT], ci95[SG_M__COUNT];
    int ran[SG_M__COUNT];
    /* Paired on the same episodes: mean and 95 % CI of acc(SGPS images) - acc(m)
     * per episode, for every other method that ran (has_diff[m]). */
    double diff[SG_M__COUNT], diff_ci95[SG_M__COUNT];
    int has_diff[SG_M__COUNT];
    int episodes;
    double seconds;
} sg_fewshot_result;

/* Episodes over all classes of `data` with at least shot + queries images.
 * Splits episodes over the ranks of comm; rank 0 gets the result. */
sg_status sg_fewshot_eval(const sg_engine *e, const sg_dataset *data, const sg_fewshot_opts *o,
                          sg_fewshot_result *res, MPI_Comm comm, sg_err *err);

#ifdef __cplusplus
}
#endif
#endif
