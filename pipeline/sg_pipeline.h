/* sg_pipeline.h — the batch pipeline: the disease registry and the run
 * manifest (JSON, validated with every problem reported at once), MPI
 * scheduling of work units (task, shard) over ranks, per-task classifier
 * synthesis, streaming inference over shards, and the run folder.
 *
 * pipeline uses io, synth, model, core and MPI. jobs/ (metrics, reports,
 * worklists) builds on pipeline, never the reverse.
 *
 * Lifecycle of a run (every rank of comm):
 *   1) sg_diag d = {0};
 *      sg_manifest_load(path, deep, &m, &d)        rank 0 deep = 1 (exemplars
 *      decoded, shard files checked, engine loaded); other ranks deep = 0
 *      d lists every problem, each naming file, JSON path and reason.
 *      Returns SG_OK when no problem is of kind SG_DIAG_ERROR.
 *   2) sg_pipeline_run(m, &opts, comm, &res, &err)  units → part files,
 *      status.tsv, run.json (rank 0)
 *      or sg_pipeline_plan(m, &opts, ranks, &plan, &err)  (one process, writes nothing)
 *   3) rank 0: sg_run_load_task(m, out, t, &rows, &err) per task (jobs/)
 *   4) sg_manifest_free(m); sg_diag_free(&d)
 *
 * Problems of kind SG_DIAG_DATA (a missing or corrupt exemplar, a missing
 * shard file) make `sgps validate` fail but do not stop `sgps run`: there the
 * affected units fail alone, with the reason in status.tsv.
 */
#ifndef SG_PIPELINE_H
#define SG_PIPELINE_H

#include "sg_core.h"
#include "sg_model.h"
#include "sg_synth.h"

#include <mpi.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SG_MANIFEST_VERSION 1
#define SG_RUN_PART_VERSION 2 /* 2: the task's config_hash and the shard's identity in the header */

/* Exit statuses of `sgps run` (docs/run-folder.md). */
#define SG_RUN_EXIT_OK 0          /* every unit succeeded, outputs written */
#define SG_RUN_EXIT_ERROR 1       /* invalid manifest or a run-folder I/O error */
#define SG_RUN_EXIT_USAGE 2       /* bad arguments */
#define SG_RUN_EXIT_FAILED 3      /* some units failed (reasons in status.tsv) */
#define SG_RUN_EXIT_INTERRUPTED 4 /* stopped by SIGTERM/SIGUSR1; --resume completes it */
#define SG_RUN_EXIT_REGRESSION 5  /* --baseline: a metric dropped beyond noise */

/* ---- diagnostics ----------------------------------------------------------- */

typedef enum sg_diag_kind {
    SG_DIAG_ERROR = 0, /* the manifest cannot run */
    SG_DIAG_DATA = 1,  /* a file a task needs is missing or unreadable: its units fail alone */
    SG_DIAG_WARN = 2   /* runs as written, but likely not as meant */
} sg_diag_kind;

typedef struct sg_diag {
    char **msgs;        /* (n) "FILE: $.json.path: reason" */
    sg_diag_kind *kind; /* (n) */
    size_t n, cap;
} sg_diag;

void sg_diag_add(sg_diag *d, sg_diag_kind kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
size_t sg_diag_count(const sg_diag *d, sg_diag_kind kind);
void sg_diag_free(sg_diag *d);

/* ---- registry and manifest --------------------------------------------------- */

typedef struct sg_disease {
    char *id, *name, *modality, *description; /* name/modality/description may be NULL */
    char *orpha, *icd10;                     /* codes, or NULL */
    char **exemplars;                        /* (n_exemplars) paths resolved against the registry folder */
    int n_exemplars;
} sg_disease;

typedef enum sg_task_kind { SG_TASK_EVALUATE = 0, SG_TASK_SCREEN = 1 } sg_task_kind;
const char *sg_task_kind_str(sg_task_kind k);

/* Labels of prediction rows (sg_task_rows.label) and label maps (map_class). */
#define SG_LABEL_UNKNOWN (-1) /* no label, or a label that maps to no class */
#define SG_LABEL_NONE (-2)    /* labelled as none of the task's classes (open-set tasks only) */
/* The class name open-set tasks write for rejected images and out-of-set labels. */
#define SG_OPEN_SET_NONE "none"

/* One shard file, shared by every task that lists it (the manifest keeps each once). */
typedef struct sg_shard_file {
    char *path; /* to open */
    char *name; /* as written in outputs (relative to the manifest folder) */
} sg_shard_file;

typedef enum sg_open_rule {
    SG_OPEN_RULE_AUTO = 0,    /* balanced when the reference holds out-of-set images, else accept */
    SG_OPEN_RULE_ACCEPT = 1,  /* largest threshold keeping >= accept of in-set reference images */
    SG_OPEN_RULE_BALANCED = 2 /* threshold maximizing (accept rate + reject rate) / 2 on the reference */
} sg_open_rule;
const char *sg_open_rule_str(sg_open_rule r);

/* "open_set" of a task (docs/formats-manifest.md): images whose best class
 * probability is below a threshold are reported as none of the classes. */
typedef struct sg_open_set {
    int enabled;
    int fixed;           /* 1: "threshold" given */
    double threshold;    /* the fixed threshold, or the default when neither fixed nor calibrated */
    double accept;       /* accept rule: in-set reference fraction to keep (default 0.95) */
    sg_open_rule rule;
    size_t n_ref_shards; /* labelled reference shards (0: no calibration) */
    char **map_keys;     /* (n_map) reference shard label → class, as sg_run_task.map_*; */
    int *map_class;      /* (n_map) class index or SG_LABEL_NONE */
    int n_map;           /* 0: the task's own labels (or integer k → class k) */
} sg_open_set;

/* (1 + 1/k) / 2: the threshold of an open-set task without reference data or
 * "threshold" — halfway between chance (1/k) and certainty. */
double sg_open_set_default_threshold(int k);

typedef struct sg_run_task {
    char *id;
    sg_task_kind kind;
    int n_classes;
    int *disease;     /* (n_classes) index into the registry */
    char **class_ids; /* (n_classes) registry ids: the classifier's class names */
    int reference;    /* class index of the reference class (no worklist), or -1 */
    int shots;        /* exemplars used per class (the first `shots` of each entry) */
    int use_text;
    float support_norm; /* sg_synth_opts.support_norm of its classifier (default SG_SUPPORT_NORM_AUTO) */
    double threshold; /* operating point on each class's probability */
    const uint32_t *shard; /* (n_shards) index into sg_manifest.files; tasks that write the same
                              "shards" string share one array */
    size_t n_shards;  /* shards to evaluate or screen */
    const uint32_t *ref_shard; /* (open_set.n_ref_shards) the open-set reference shards, likewise */
    char **map_keys; /* (n_map) shard labels (integer as text, or a string label) */
    int *map_class;  /* (n_map) class index, or SG_LABEL_NONE (open-set tasks) */
    int n_map;       /* 0: an integer shard label k is class k */
    sg_open_set open_set;
    char config_hash[65]; /* what --resume trusts the task's part files and classifier for: sha256 of
                             sg_manifest.config_hash, the registry entries of its classes, the bytes
                             of the exemplars it uses and its expanded shard lists (run-folder.md) */
} sg_run_task;

typedef struct sg_manifest {
    char *path, *engine_path, *registry_path, *output; /* resolved */
    sg_disease *diseases;
    int n_diseases;
    sg_run_task *tasks;
    int n_tasks;
    sg_shard_file *files; /* (n_files) every distinct shard file the tasks list */
    size_t n_files;
    uint32_t **id_lists;  /* (n_id_lists) the arrays sg_run_task.shard and ref_shard point into */
    size_t n_id_lists;
    uint64_t seed;      /* bootstrap seed (default 1) */
    int bootstrap;      /* resamples (default 1000) */
    int batch;          /* images per forward (default 64) */
    int support_check;  /* leave-one-out check of each task's exemplars at synthesis: SG_CHECK_*
                           (sg_synth.h; true = auto, the default; false = off) */
    char manifest_sha256[65], engine_sha256[65];
    char config_hash[65]; /* sha256(manifest bytes, engine sha256); each task adds its own inputs
                             (sg_run_task.config_hash) */
    char tasks_hash[65];  /* sha256 over every task's config_hash: the ranks of a run compare it */
    size_t n_units;       /* sum over tasks of n_shards + open_set.n_ref_shards */
    size_t *unit_start;   /* (n_tasks + 1) first unit of each task */
} sg_manifest;

/* Loads and validates. deep = 1 also loads the engine (format and version),
 * decodes the exemplars the tasks use and checks that shard files exist.
 * *out is set whenever the manifest could be parsed far enough to run (it
 * may be non-NULL with errors); free with sg_manifest_free. */
sg_status sg_manifest_load(const char *path, int deep, sg_manifest **out, sg_diag *diag);
void sg_manifest_free(sg_manifest *m);
/* Unit u (0 <= u < n_units) → task and the task's unit index s: units are
 * ordered by task, then the task's shards, then its open-set reference shards
 * (s >= n_shards). O(log n_tasks). */
void sg_manifest_unit(const sg_manifest *m, size_t u, int *task, size_t *shard);
/* Units of task t: n_shards + open_set.n_ref_shards. */
size_t sg_task_n_units(const sg_run_task *t);
/* The shard file of the task's unit s (0 <= s < sg_task_n_units). */
const sg_shard_file *sg_task_shard(const sg_manifest *m, const sg_run_task *t, size_t s);
/* The path of exemplar i of the task's class with registry id class_id (as the
 * support check names it), or NULL when there is no such class or exemplar. */
const char *sg_task_exemplar(const sg_manifest *m, const sg_run_task *t, const char *class_id, int i);

/* ---- the run ---------------------------------------------------------------- */

typedef struct sg_run_opts {
    const char *out;       /* run folder; NULL: the manifest's "output" */
    int resume;            /* keep units whose part file is complete for this configuration */
    int retry_failed;      /* with resume: redo units recorded as failed */
    int fail_fast;         /* stop handing out units after the first failure */
    int progress;          /* rank 0 logs units done/total, images/s, ETA */
    const char *version;   /* sgps version and git hash, for run.json */
    const char *git_hash;
    double unit_delay_s;   /* tests only: sleep after each batch */
} sg_run_opts;

typedef struct sg_run_result {
    size_t units_total, units_ok, units_failed, units_resumed, units_not_run;
    size_t units_interrupted; /* of units_not_run: stopped by a signal on any rank mid-unit or before it began */
    int interrupted; /* a signal (or --fail-fast) stopped the run early */
    uint64_t images;
    double seconds;
    int ranks;
    char start[32]; /* UTC, ISO 8601 */
    char **hosts;   /* (n_hosts) distinct host names, rank 0 only */
    int n_hosts;
} sg_run_result;
void sg_run_result_free(sg_run_result *res);

/* SIGTERM and SIGUSR1 set a flag: each rank finishes its current batch, the
 * unfinished unit is left for --resume, rank 0 writes status and exits. */
void sg_pipeline_install_signals(void);
int sg_pipeline_stop_requested(void);

/* Runs every unit (all ranks of comm call it). Every rank works; rank 0 also
 * schedules (between its own batches), writes status.tsv and run.json. Returns
 * SG_OK when the run folder could be written (unit failures are counted in
 * res, not returned). res is filled on rank 0. */
sg_status sg_pipeline_run(const sg_manifest *m, const sg_run_opts *o, MPI_Comm comm, sg_run_result *res,
                          sg_err *err);
/* Rewrites run.json with the end time and result (rank 0, after jobs wrote their outputs). */
sg_status sg_pipeline_finish_run_json(const sg_manifest *m, const sg_run_opts *o, const sg_run_result *res,
                                      sg_err *err);
/* The run folder: o->out or m->output. */
const char *sg_run_dir(const sg_manifest *m, const sg_run_opts *o);

/* ---- planning without running (`sgps run --dry-run`) -------------------------- */

typedef struct sg_run_plan {
    int ranks;                 /* ranks planned for (every rank works; rank 0 also schedules) */
    int tasks, tasks_open_set, tasks_calibrated;
    size_t shard_files;        /* distinct shard files */
    size_t units;              /* all units */
    size_t units_reference;    /* of which open-set reference units */
    size_t units_kept;         /* complete for this configuration (with resume), not rerun */
    size_t units_to_run;
    /* the schedule, simulated with equal unit costs */
    size_t units_per_rank_min, units_per_rank_max;
    size_t syntheses;          /* classifier syntheses over all ranks (task switches of a rank) */
    double seconds_resume;     /* reading part headers (resume only) */
    double seconds_schedule;   /* the simulated scheduling decisions */
} sg_run_plan;

/* Plans the run of m for `ranks` ranks (>= 1) and writes nothing: with
 * o->resume, reads the header of each part file to find the units a resumed
 * run would keep; then hands every other unit out through the run's own
 * scheduler as if each unit took the same time. O(units + tasks). */
sg_status sg_pipeline_plan(const sg_manifest *m, const sg_run_opts *o, int ranks, sg_run_plan *plan, sg_err *err);

/* Task ti's classifier as `sgps run` synthesizes it (its exemplars, text and
 * support_norm settings; metadata with the task id, engine hash and
 * configuration), with check (SG_CHECK_AUTO, _EXACT or _FAST) also the support
 * check of its exemplars, kept in the metadata as "support_check" (tasks with
 * two or more exemplars per class); SG_CHECK_OFF: none. */
sg_status sg_pipeline_synth_task(const sg_manifest *m, const sg_engine *e, int ti, int check, sg_classifier **out,
                                 sg_err *err);

/* ---- reading a task's results back ------------------------------------------ */

typedef struct sg_task_rows {
    size_t n;          /* prediction rows, in shard order then sample order */
    int k;             /* classes */
    int *label;        /* (n) class index, SG_LABEL_UNKNOWN, or SG_LABEL_NONE (open-set tasks) */
    int *pred;         /* (n) argmax class (rejection is applied by jobs/, not stored here) */
    float *score;      /* (n, k) class probabilities as written (6 decimals) */
    char **line;       /* (n) the CSV row as written in the part file, without newline */
    size_t units_ok, units_failed, units_missing;
    uint64_t skipped;  /* samples skipped by the reader, over ok units */
    uint64_t unmapped; /* images whose shard label had no class */
} sg_task_rows;

/* Gathers the part files of task t from run folder dir (units of this
 * configuration only): its shards (sg_run_load_task) or its open-set
 * reference shards (sg_run_load_reference). */
sg_status sg_run_load_task(const sg_manifest *m, const char *dir, int t, sg_task_rows *rows, sg_err *err);
sg_status sg_run_load_reference(const sg_manifest *m, const char *dir, int t, sg_task_rows *rows, sg_err *err);
void sg_task_rows_free(sg_task_rows *r);
/* The CSV header of predictions.csv for task t (with newline), malloc'd. */
char *sg_run_predictions_header(const sg_manifest *m, int t);

#ifdef __cplusplus
}
#endif
#endif
