/* sg_jobs.h — job kinds over the results of a pipeline run: `evaluate`
 * (labelled shards → metrics), `screen` (unlabelled → worklists) and the
 * nightly comparison with an earlier run, the
 * per-task metrics, and the run summary and report.
 *
 * jobs depends on pipeline (it reads a run's part files through
 * sg_run_load_task); pipeline never depends on jobs.
 *
 * Use (rank 0, after sg_pipeline_run):
 *   sg_jobs_finalize(manifest, run_dir, &err)
 *   sg_jobs_compare(manifest, run_dir, baseline_dir, &n_flagged, &err)   (nightly)
 *     → tasks/<id>/predictions.csv, metrics.json, worklist-<class>.csv (screen),
 *       summary.json, summary.csv, report.html — all written atomically and
 *       byte-identical whatever the number of ranks.
 *
 * Metrics (sg_metrics_compute) are plain functions of the prediction rows,
 * exposed for tests.
 */
#ifndef SG_JOBS_H
#define SG_JOBS_H

#include "sg_core.h"
#include "sg_pipeline.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SG_ECE_BINS 15
#define SG_HIST_BINS 20

typedef struct sg_metrics {
    int k;                   /* classes */
    size_t n_total;          /* rows */
    size_t n;                /* rows with a known label: the metrics use these */
    double threshold;        /* operating point on each class's probability */
    int64_t *confusion;      /* (k, k): rows true class, columns argmax prediction */
    int64_t *support;        /* (k) labelled rows per true class */
    double accuracy, balanced_accuracy, macro_f1; /* argmax decisions; NaN when n == 0 */
    double *precision, *recall, *f1;              /* (k) argmax, one-vs-rest */
    double *sensitivity, *specificity;            /* (k) decision score_k >= threshold */
    double *auroc, *auroc_lo, *auroc_hi;          /* (k) one-vs-rest; NaN when undefined */
    int bootstrap;           /* resamples for the AUROC interval */
    uint64_t seed;
    double ece;              /* SG_ECE_BINS equal-width bins on the top-class probability */
    int64_t ece_count[SG_ECE_BINS];
    double ece_conf[SG_ECE_BINS], ece_acc[SG_ECE_BINS];
    /* all rows, labelled or not */
    int64_t *flagged;        /* (k) rows with score_k >= threshold */
    int64_t *hist;           /* (k, SG_HIST_BINS) histogram of score_k on [0, 1] */
} sg_metrics;

/* rows: n rows of k classes (label -1 = unknown). stream separates the
 * bootstrap streams of different tasks (e.g. a hash of the task id). */
void sg_metrics_compute(size_t n, int k, const int *label, const int *pred, const float *score, double threshold,
                        int bootstrap, uint64_t seed, uint64_t stream, sg_metrics *out);
void sg_metrics_free(sg_metrics *m);

/* One-vs-rest AUROC of score (n rows, stride floats apart) for positive[i] != 0,
 * ties counted half (the Mann-Whitney statistic). NaN without positives or negatives. */
double sg_auroc(size_t n, const float *score, size_t stride, const uint8_t *positive);

/* ---- open set ("none of these") ------------------------------------------------
 * An open-set task reports an image as none of its classes when the image's
 * best class probability is below the task's threshold. The threshold is
 * "fixed" (open_set.threshold), "default" (sg_open_set_default_threshold), or
 * calibrated on the task's labelled reference shards ("reference"):
 * - rule accept: the largest threshold that keeps at least a fraction
 *   `accept` of the in-set reference images accepted: the ceil(accept·n)-th
 *   largest best-class probability of those n images;
 * - rule balanced (needs reference images labelled out of set): the
 *   threshold, among the reference best-class probabilities, maximizing
 *   (in-set accept rate + out-of-set reject rate) / 2; ties: the lowest.
 * Scores are the 6-decimal probabilities of the part files, so every rank
 * count and every resume gives the same threshold. */

typedef struct sg_open_calibration {
    double threshold;
    const char *source;  /* "reference", "fixed" or "default" */
    sg_open_rule rule;   /* the rule applied (source "reference") */
    char note[256];      /* why the reference or the asked rule could not be used; "" */
    size_t ref_in_set, ref_out_of_set;
    double ref_accept_rate; /* in-set reference images accepted at the threshold; NaN without */
    double ref_reject_rate; /* out-of-set reference images rejected; NaN without */
} sg_open_calibration;

/* The best-class probability of each of n rows of k scores. */
void sg_open_set_best(size_t n, int k, const float *score, float *best);
/* Calibrates os for a k-class task on n reference rows: best (n) best-class
 * probability, label (n) class index (in set), SG_LABEL_NONE (out of set) or
 * SG_LABEL_UNKNOWN (left out). n may be 0 (no reference). */
void sg_open_set_calibrate(const sg_open_set *os, int k, size_t n, const float *best, const int *label,
                           sg_open_calibration *out);

typedef struct sg_open_metrics {
    int k;
    double threshold;
    size_t images, rejected;                          /* all rows */
    size_t in_set, in_set_accepted, in_set_correct;   /* rows labelled with a class */
    size_t out_of_set, out_of_set_rejected;           /* rows labelled SG_LABEL_NONE */
    double rejected_fraction;
    double true_accept_rate, true_reject_rate;        /* NaN without such rows */
    double open_balanced_accuracy; /* mean recall over the k classes and none (those with rows); a class
                                      image counts when accepted and argmax right */
    double auroc;                  /* best-class probability, in-set vs out-of-set rows */
    int64_t *confusion;            /* (k + 1, k + 1): rows true (class or none), columns decision */
} sg_open_metrics;

/* rejected (n) receives 1 for rows below threshold. */
void sg_open_metrics_compute(size_t n, int k, const int *label, const int *pred, const float *best, double threshold,
                             uint8_t *rejected, sg_open_metrics *out);
void sg_open_metrics_free(sg_open_metrics *m);

/* The file name of class class_id's worklist (docs/run-folder.md):
 * "worklist-" + the id with every byte outside [A-Za-z0-9._-] written as %XX
 * + ".csv", which tells any two ids apart; when that would pass
 * SG_WORKLIST_NAME_MAX bytes, the encoded id is cut and "~" + 16 hex digits of
 * the id's SHA-256 added ('~' never appears otherwise). */
#define SG_WORKLIST_NAME_MAX (255 - SG_FILE_TMP_SUFFIX_LEN) /* its temporary name stays within 255 bytes */
void sg_jobs_worklist_name(const char *class_id, char out[SG_WORKLIST_NAME_MAX + 1]);

/* Writes every per-task output, the summary and the report for a run folder.
 * Tasks with failed or missing units get metrics over the units that
 * succeeded, marked "complete": false. */
sg_status sg_jobs_finalize(const sg_manifest *m, const char *dir, sg_err *err);

/* Nightly re-evaluation: compares the evaluate tasks of the finished run in
 * dir with the same tasks in an earlier run folder `baseline`; writes
 * comparison.json and comparison.csv into dir and counts the drops beyond
 * noise in *n_flagged (rule: docs/run-folder.md). */
sg_status sg_jobs_compare(const sg_manifest *m, const char *dir, const char *baseline, int *n_flagged, sg_err *err);

#ifdef __cplusplus
}
#endif
#endif
