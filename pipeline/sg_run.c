/* sg_run.c — one batch run over MPI: work units (task, shard), a dynamic
 * scheduler on rank 0, per-task classifier synthesis cached on each rank,
 * streaming inference over shards, and the run folder (docs/run-folder.md).
 *
 * Each finished unit leaves one part file, written atomically by the rank
 * that ran it: parts/<task>/<shard index>.part (open-set reference shards:
 * parts/<task>/ref-<index>.part), a header line with the task's configuration
 * hash and the unit's status, a line naming the shard with its size and
 * modification time, then its prediction rows. A part under its final name
 * is complete by construction, and it is used only while the task's
 * configuration and the shard behind it are unchanged: that is what --resume
 * relies on (a part is named by position, so the shard line is what tells
 * that position 3 still means the same file); rows
 * are merged in shard order by rank 0 afterwards, so the outputs do not
 * depend on which rank ran what, or when. The run folder must be visible to
 * every rank (a shared file system, as for any Slurm job).
 *
 * Every rank works, rank 0 included: between its own batches rank 0 answers
 * the other ranks' requests (MPI_Iprobe), and each other rank keeps one
 * request outstanding while it works (it asks for its next unit when it
 * starts one), so it does not wait for rank 0 to finish a batch. Reports and
 * answers travel with MPI_Isend for the same reason. Units of a
 * task go to the rank that already holds the task's classifier (squeue
 * below), so a task is synthesized about once rather than once per rank. */
#include "sg_pipeline.h"
#include "sg_io.h"
#include "sg_model.h"
#include "sg_synth.h"

#include <cblas.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TAG_REPORT 71
#define TAG_ASSIGN 72
/* Classifiers a rank keeps; units come task by task, so a few suffice even
 * for runs of thousands of tasks. */
#define MAX_CACHED_CLASSIFIERS 16
/* Requests a rank other than 0 keeps outstanding: the unit it runs and the next. */
#define WORKER_REQUESTS 2

enum { U_OK = 0, U_FAILED = 1, U_INTERRUPTED = 2, U_NOT_RUN = 3 };
static const char *const unit_status_names[] = {"ok", "failed", "interrupted", "not-run"};

/* What a rank tells rank 0 about one unit (plain bytes: ranks run the same
 * binary). unit = -1: a request without a report. */
typedef struct unit_report {
    int32_t unit, status, rank, resumed;
    uint64_t images, unmapped;
    uint64_t skips[SG_SKIP__COUNT];
    double seconds;
    char msg[768];
} unit_report;

/* ---- signals ---- */

void sg_pipeline_install_signals(void) { sg_stop_signals_install(); }

int sg_pipeline_stop_requested(void) { return sg_stop_requested(); }

/* ---- paths ---- */

const char *sg_run_dir(const sg_manifest *m, const sg_run_opts *o) { return o && o->out ? o->out : m->output; }

static void part_path(const char *dir, const sg_run_task *t, size_t s, char *out, size_t n) {
    if (s < t->n_shards) snprintf(out, n, "%s/parts/%s/%06zu.part", dir, t->id, s);
    else snprintf(out, n, "%s/parts/%s/ref-%06zu.part", dir, t->id, s - t->n_shards);
}

static void task_dir(const char *dir, const sg_run_task *t, char *out, size_t n) {
    snprintf(out, n, "%s/tasks/%s", dir, t->id);
}

static int dir_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static void sanitize(char *s) {
    for (; *s; s++)
        if (*s == '\n' || *s == '\r' || *s == '\t') *s = ' ';
}

/* ---- part files ---- */

typedef struct part_header {
    char config[65]; /* the task's config_hash */
    int status, rank;
    double seconds;
    uint64_t images, unmapped, skips[SG_SKIP__COUNT];
    char shard_id[64];     /* shard_identity() when the unit ran */
    char shard_name[4200]; /* the shard's name as written in outputs */
    char msg[768];
    size_t body; /* offset of the first row */
} part_header;

/* What tells a shard file's content changed without reading it: size and
 * modification time (ns), "-" when it cannot be read. */
#define SHARD_ID_CHARS 64
static void shard_identity(const char *path, char *out, size_t n) {
    struct stat st;
    if (stat(path, &st) != 0) snprintf(out, n, "-");
    else
        snprintf(out, n, "%lld:%lld.%09ld", (long long)st.st_size, (long long)st.st_mtim.tv_sec,
                 (long)st.st_mtim.tv_nsec);
}

/* The part is of this task's configuration and of the same shard file, unchanged. */
static int part_current(const part_header *h, const sg_run_task *t, const sg_shard_file *sf, const char *shard_id) {
    return strcmp(h->config, t->config_hash) == 0 && strcmp(h->shard_name, sf->name) == 0 &&
           strcmp(h->shard_id, shard_id) == 0;
}

static int part_parse(const uint8_t *data, size_t len, part_header *h) {
    memset(h, 0, sizeof *h);
    const char *p = (const char *)data;
    const char *nl = memchr(p, '\n', len);
    if (!nl) return 0;
    char line[1024];
    size_t ll = (size_t)(nl - p) < sizeof line - 1 ? (size_t)(nl - p) : sizeof line - 1;
    memcpy(line, p, ll);
    line[ll] = 0;
    char st[32];
    int ver, used = 0;
    unsigned long long im, um;
    if (sscanf(line, "sgps-part %d %64s %31s %d %lf %llu %llu%n", &ver, h->config, st, &h->rank, &h->seconds, &im, &um,
               &used) != 7 ||
        ver != SG_RUN_PART_VERSION)
        return 0;
    const char *q = line + used;
    for (int i = 0; i < SG_SKIP__COUNT; i++) {
        char *end;
        h->skips[i] = strtoull(q, &end, 10);
        if (end == q) return 0;
        q = end;
    }
    h->images = im;
    h->unmapped = um;
    if (strcmp(st, "ok") == 0) h->status = U_OK;
    else if (strcmp(st, "failed") == 0) h->status = U_FAILED;
    else return 0;
    /* "shard ID NAME" */
    const char *s0 = nl + 1, *s1 = memchr(s0, '\n', len - (size_t)(s0 - p));
    if (!s1 || s1 - s0 < 6 || memcmp(s0, "shard ", 6) != 0) return 0;
    const char *id0 = s0 + 6, *id1 = memchr(id0, ' ', (size_t)(s1 - id0));
    if (!id1 || (size_t)(id1 - id0) >= sizeof h->shard_id || (size_t)(s1 - id1 - 1) >= sizeof h->shard_name) return 0;
    memcpy(h->shard_id, id0, (size_t)(id1 - id0));
    h->shard_id[id1 - id0] = 0;
    memcpy(h->shard_name, id1 + 1, (size_t)(s1 - id1 - 1));
    h->shard_name[s1 - id1 - 1] = 0;
    const char *m0 = s1 + 1, *m1 = memchr(m0, '\n', len - (size_t)(m0 - p));
    if (!m1) return 0;
    size_t ml = (size_t)(m1 - m0);
    if (ml >= sizeof h->msg) ml = sizeof h->msg - 1;
    memcpy(h->msg, m0, ml);
    h->msg[ml] = 0;
    h->body = (size_t)(m1 + 1 - p);
    return 1;
}

static int part_read(const char *path, part_header *h, uint8_t **data, size_t *len) {
    uint8_t *d;
    size_t n;
    if (access(path, F_OK) != 0) return 0;
    if (sg_file_read_all(path, &d, &n, (size_t)16 << 30, NULL) != SG_OK) return 0;
    int ok = part_parse(d, n, h);
    if (ok && data) {
        *data = d;
        *len = n;
    } else {
        free(d);
    }
    return ok;
}

/* The header lines only (what --resume needs): the first 12 KiB (shard names
 * are at most a path, messages 768 bytes). */
static int part_read_header(const char *path, part_header *h) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    uint8_t buf[12288];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return part_parse(buf, n, h);
}

static sg_status part_write(const char *dir, const sg_run_task *t, size_t s, const sg_shard_file *sf,
                            const char *shard_id, const unit_report *r, const sg_buf *rows, sg_err *err) {
    char tdir[4096], path[4200];
    snprintf(tdir, sizeof tdir, "%s/parts/%s", dir, t->id);
    sg_status st = sg_mkdir_p(tdir, err);
    if (st != SG_OK) return st;
    part_path(dir, t, s, path, sizeof path);
    sg_buf b = {0};
    sg_buf_printf(&b, "sgps-part %d %s %s %d %.3f %llu %llu", SG_RUN_PART_VERSION, t->config_hash,
                  r->status == U_OK ? "ok" : "failed", r->rank, r->seconds, (unsigned long long)r->images,
                  (unsigned long long)r->unmapped);
    for (int i = 0; i < SG_SKIP__COUNT; i++) sg_buf_printf(&b, " %llu", (unsigned long long)r->skips[i]);
    sg_buf_printf(&b, "\nshard %s %s", shard_id, sf->name);
    char msg[sizeof r->msg];
    memcpy(msg, r->msg, sizeof msg);
    sanitize(msg);
    sg_buf_printf(&b, "\n%s\n", msg);
    if (rows && rows->len) sg_buf_append(&b, rows->data, rows->len);
    st = sg_file_write_atomic(path, b.data ? (const void *)b.data : "", b.len, err);
    sg_buf_free(&b);
    return st;
}

/* ---- synthesis ---- */

sg_status sg_pipeline_synth_task(const sg_manifest *m, const sg_engine *e, int ti, int check, sg_classifier **out,
                                 sg_err *err) {
    const sg_run_task *t = &m->tasks[ti];
    int S = sg_engine_get_config(e)->store;
    size_t ssz = (size_t)3 * S * S;
    sg_task_class *cls = sg_xcalloc((size_t)t->n_classes, sizeof *cls);
    uint8_t **pix = sg_xcalloc((size_t)t->n_classes, sizeof *pix);
    sg_status st = SG_OK;
    for (int c = 0; c < t->n_classes && st == SG_OK; c++) {
        const sg_disease *d = &m->diseases[t->disease[c]];
        cls[c].name = d->id;
        cls[c].text = t->use_text ? d->description : NULL;
        pix[c] = sg_xmalloc(ssz * (size_t)(t->shots ? t->shots : 1));
        for (int k = 0; k < t->shots && st == SG_OK; k++) {
            sg_err e2;
            st = sg_image_load_u8_planar(d->exemplars[k], S, pix[c] + (size_t)k * ssz, &e2);
            if (st != SG_OK) sg_err_set(err, st, "exemplar %d of '%s': %s", k, d->id, e2.msg);
        }
        cls[c].n_shots = t->shots;
        cls[c].images = pix[c];
    }
    if (st == SG_OK) {
        sg_synth_opts so;
        sg_synth_opts_default(&so);
        so.use_images = t->shots > 0;
        so.use_text = t->use_text;
        so.support_norm = t->support_norm;
        sg_task task = {t->n_classes, cls};
        sg_err e2;
        st = sg_engine_synthesize(e, &task, &so, out, &e2);
        if (st != SG_OK) sg_err_set(err, st, "synthesis: %s", e2.msg);
        char *check_json = NULL;
        /* the support check (one exemplar per class: nothing to leave out), kept in the metadata */
        if (st == SG_OK && check && so.use_images && t->shots >= 2) {
            sg_support_check chk;
            st = sg_engine_support_check(e, &task, &so, sg_support_check_exact_max(check), &chk, &e2);
            if (st != SG_OK) {
                sg_err_set(err, st, "support check: %s", e2.msg);
                sg_classifier_free(*out);
                *out = NULL;
            } else {
                check_json = sg_support_check_json(&chk, &task);
                sg_support_check_free(&chk);
            }
        }
        if (st == SG_OK) {
            sg_buf meta = {0};
            sg_buf_printf(&meta, "{\"task\": \"%s\", \"engine_sha256\": \"%s\", \"config\": \"%s\"", t->id,
                          m->engine_sha256, t->config_hash);
            if (check_json) sg_buf_printf(&meta, ", \"support_check\": %s", check_json);
            sg_buf_append(&meta, "}", 2);
            (*out)->meta_json = (char *)meta.data;
        }
        free(check_json);
    }
    for (int c = 0; c < t->n_classes; c++) free(pix[c]);
    free(pix);
    free(cls);
    return st;
}

/* ---- a worker: engine and classifiers cached per task ---- */

typedef struct worker {
    const sg_manifest *m;
    const sg_run_opts *o;
    const char *dir;
    int rank;
    sg_engine *engine;
    int engine_tried;
    char engine_err[1024];
    sg_classifier **cls; /* (n_tasks) */
    char **cls_err;      /* (n_tasks) */
    int *cls_tried;
    uint64_t *cls_used;  /* (n_tasks) last use, for evicting the least recent */
    uint64_t clock;
    int n_cached;
    void (*poll)(void *); /* rank 0: called between batches (answers the other ranks) */
    void *poll_user;
    /* the forward workspace and batch buffers, kept from unit to unit while
     * the classifiers' architecture stays the same (allocating and faulting
     * them in per unit cost more than a small unit's images) */
    sg_ctx *ctx;
    sg_arch ctx_arch;
    float *x, *prob; /* (batch, C, H, W), (batch, K) */
    size_t x_cap, prob_cap;
    char **key;      /* (batch) */
    int *label;      /* (batch) */
} worker;

static void worker_init(worker *w, const sg_manifest *m, const sg_run_opts *o, int rank) {
    memset(w, 0, sizeof *w);
    w->m = m;
    w->o = o;
    w->dir = sg_run_dir(m, o);
    w->rank = rank;
    w->cls = sg_xcalloc((size_t)m->n_tasks + 1, sizeof *w->cls);
    w->cls_err = sg_xcalloc((size_t)m->n_tasks + 1, sizeof *w->cls_err);
    w->cls_tried = sg_xcalloc((size_t)m->n_tasks + 1, sizeof *w->cls_tried);
    w->cls_used = sg_xcalloc((size_t)m->n_tasks + 1, sizeof *w->cls_used);
}

static void worker_free(worker *w) {
    for (int t = 0; t < w->m->n_tasks; t++) {
        sg_classifier_free(w->cls[t]);
        free(w->cls_err[t]);
    }
    free(w->cls);
    free(w->cls_err);
    free(w->cls_tried);
    free(w->cls_used);
    sg_engine_free(w->engine);
    sg_ctx_free(w->ctx);
    free(w->x);
    free(w->prob);
    free(w->key);
    free(w->label);
}

/* The workspace for classifier c at batch B (every classifier of a run has batch B). */
static sg_ctx *worker_ctx(worker *w, const sg_classifier *c, int B) {
    if (!w->ctx || memcmp(&w->ctx_arch, &c->arch, sizeof c->arch) != 0) {
        sg_ctx_free(w->ctx);
        w->ctx = sg_ctx_create(&c->arch, B);
        w->ctx_arch = c->arch;
    }
    size_t in = (size_t)B * c->arch.in_c * c->arch.in_h * c->arch.in_w, pk = (size_t)B * c->n_classes;
    if (in > w->x_cap) {
        free(w->x);
        w->x = sg_xalloc_floats(in);
        w->x_cap = in;
    }
    if (pk > w->prob_cap) {
        free(w->prob);
        w->prob = sg_xalloc_floats(pk);
        w->prob_cap = pk;
    }
    if (!w->key) {
        w->key = sg_xcalloc((size_t)B, sizeof *w->key);
        w->label = sg_xcalloc((size_t)B, sizeof *w->label);
    }
    return w->ctx;
}

static void worker_poll(worker *w) {
    if (w->poll) w->poll(w->poll_user);
}

/* The task's classifier, synthesized on first use and saved as
 * tasks/<id>/classifier.sgpm (atomically; every rank that synthesizes a task
 * writes the same bytes). */
static const sg_classifier *worker_classifier(worker *w, int t, const char **why) {
    if (!w->engine_tried) {
        sg_err err;
        w->engine_tried = 1;
        if (sg_engine_load(w->m->engine_path, &w->engine, &err) != SG_OK) {
            snprintf(w->engine_err, sizeof w->engine_err, "engine: %.1000s", err.msg);
            w->engine = NULL;
        }
        worker_poll(w);
    }
    if (!w->engine) {
        *why = w->engine_err;
        return NULL;
    }
    w->cls_used[t] = ++w->clock;
    if (!w->cls_tried[t]) {
        sg_err err;
        w->cls_tried[t] = 1;
        if (w->n_cached == MAX_CACHED_CLASSIFIERS) {
            int lru = -1;
            for (int i = 0; i < w->m->n_tasks; i++)
                if (w->cls[i] && (lru < 0 || w->cls_used[i] < w->cls_used[lru])) lru = i;
            sg_classifier_free(w->cls[lru]);
            w->cls[lru] = NULL;
            w->cls_tried[lru] = 0;
            w->n_cached--;
        }
        char td[4096], path[4200];
        task_dir(w->dir, &w->m->tasks[t], td, sizeof td);
        snprintf(path, sizeof path, "%s/classifier.sgpm", td);
        if (sg_pipeline_synth_task(w->m, w->engine, t, w->m->support_check, &w->cls[t], &err) != SG_OK) {
            w->cls[t] = NULL;
            w->cls_err[t] = sg_xstrdup(err.msg);
            /* an earlier run's classifier (and its support check) must not pass for this one's */
            if (unlink(path) != 0 && errno != ENOENT) sg_log(SG_LOG_WARN, "%s: cannot remove: %s", path, strerror(errno));
        } else {
            w->n_cached++;
            if (sg_mkdir_p(td, &err) != SG_OK || sg_classifier_save(w->cls[t], path, &err) != SG_OK)
                sg_log(SG_LOG_WARN, "%s", err.msg);
        }
        worker_poll(w);
    }
    *why = w->cls_err[t];
    return w->cls[t];
}

static int classifier_current(const sg_manifest *m, const char *dir, int t) {
    char td[4096], path[4200];
    task_dir(dir, &m->tasks[t], td, sizeof td);
    snprintf(path, sizeof path, "%s/classifier.sgpm", td);
    sg_classifier *c = NULL;
    if (access(path, F_OK) != 0 || sg_classifier_load(path, &c, NULL) != SG_OK) return 0;
    int ok = c->meta_json && strstr(c->meta_json, m->tasks[t].config_hash) != NULL;
    sg_classifier_free(c);
    return ok;
}

/* The class of a sample's label: a class index, SG_LABEL_NONE (mapped to
 * null in an open-set task) or SG_LABEL_UNKNOWN. Reference shards use the
 * open-set labels when given, else the task's. */
static int map_label(const sg_run_task *t, const sg_sample *s, int reference) {
    char *const *keys = t->map_keys;
    const int *cls = t->map_class;
    int n = t->n_map;
    if (reference && t->open_set.n_map) {
        keys = t->open_set.map_keys;
        cls = t->open_set.map_class;
        n = t->open_set.n_map;
    }
    if (n == 0) return s->label >= 0 && s->label < t->n_classes ? s->label : SG_LABEL_UNKNOWN;
    char num[32];
    if (s->label >= 0) {
        snprintf(num, sizeof num, "%d", s->label);
        for (int i = 0; i < n; i++)
            if (strcmp(keys[i], num) == 0) return cls[i];
    }
    if (s->label_str)
        for (int i = 0; i < n; i++)
            if (strcmp(keys[i], s->label_str) == 0) return cls[i];
    return SG_LABEL_UNKNOWN;
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

typedef struct batch {
    int n, cap;
    float *x;    /* (cap, 3, H, W) */
    char **key;  /* (cap) */
    int *label;  /* (cap) */
    float *prob; /* (cap, K) */
} batch;

static void batch_flush(batch *b, const sg_classifier *c, sg_ctx *ctx, const sg_run_task *t, const char *shard_name,
                        sg_buf *rows) {
    if (!b->n) return;
    int K = c->n_classes;
    const float *logits = sg_net_forward(&c->arch, ctx, c->params, c->state, b->x, b->n, 0);
    sg_softmax(b->n, K, logits, b->prob);
    for (int i = 0; i < b->n; i++) {
        const float *p = b->prob + (size_t)i * K;
        int best = 0;
        for (int k = 1; k < K; k++)
            if (p[k] > p[best]) best = k;
        sg_buf_csv_field(rows, b->key[i]);
        sg_buf_append(rows, ",", 1);
        sg_buf_csv_field(rows, shard_name);
        const char *lab = b->label[i] >= 0 ? t->class_ids[b->label[i]] : b->label[i] == SG_LABEL_NONE ? SG_OPEN_SET_NONE : "";
        sg_buf_printf(rows, ",%s,%s", lab, t->class_ids[best]);
        for (int k = 0; k < K; k++) sg_buf_printf(rows, ",%.6f", (double)p[k]);
        sg_buf_append(rows, "\n", 1);
        free(b->key[i]);
        b->key[i] = NULL;
    }
    b->n = 0;
}

static void run_unit(worker *w, size_t u, unit_report *r) {
    const sg_manifest *m = w->m;
    int ti;
    size_t si;
    sg_manifest_unit(m, u, &ti, &si);
    const sg_run_task *t = &m->tasks[ti];
    const sg_shard_file *sf = sg_task_shard(m, t, si);
    int reference = si >= t->n_shards, labelled = reference || t->kind == SG_TASK_EVALUATE;
    char shard_id[SHARD_ID_CHARS];
    shard_identity(sf->path, shard_id, sizeof shard_id);
    memset(r, 0, sizeof *r);
    r->unit = (int32_t)u;
    r->rank = w->rank;
    double t0 = sg_now();
    if (sg_pipeline_stop_requested()) {
        r->status = U_INTERRUPTED;
        snprintf(r->msg, sizeof r->msg, "interrupted by a signal before it started");
        return;
    }
    const char *why = NULL;
    const sg_classifier *c = worker_classifier(w, ti, &why);
    sg_buf rows = {0};
    if (!c) {
        r->status = U_FAILED;
        snprintf(r->msg, sizeof r->msg, "%.760s", why ? why : "no classifier");
    } else {
        sg_shard_reader_opts ro;
        sg_shard_reader_opts_default(&ro);
        ro.decode = 1;
        ro.min_w = c->arch.in_w;
        ro.min_h = c->arch.in_h;
        ro.log_skips = 0;
        sg_err err;
        sg_shard_reader *rd = sg_shard_reader_open(sf->path, &ro, &err);
        if (!rd) {
            r->status = U_FAILED;
            snprintf(r->msg, sizeof r->msg, "%.760s", err.msg);
        } else {
            int B = m->batch;
            size_t in = (size_t)c->arch.in_c * c->arch.in_h * c->arch.in_w;
            sg_ctx *ctx = worker_ctx(w, c, B);
            batch b = {0, B, w->x, w->key, w->label, w->prob};
            sg_sample *s;
            sg_status st;
            while ((st = sg_shard_reader_next(rd, &s)) == SG_OK && s) {
                sg_image_to_tensor(&s->img, c->arch.in_h, c->arch.in_w, c->mean, c->std, b.x + (size_t)b.n * in);
                b.key[b.n] = sg_xstrdup(s->key);
                b.label[b.n] = labelled ? map_label(t, s, reference) : SG_LABEL_UNKNOWN;
                if (labelled && b.label[b.n] == SG_LABEL_UNKNOWN) r->unmapped++;
                b.n++;
                r->images++;
                if (b.n == B) {
                    batch_flush(&b, c, ctx, t, sf->name, &rows);
                    if (w->o->unit_delay_s > 0) sleep_s(w->o->unit_delay_s);
                    worker_poll(w);
                    if (sg_pipeline_stop_requested()) break;
                }
            }
            if (sg_pipeline_stop_requested()) {
                r->status = U_INTERRUPTED;
                snprintf(r->msg, sizeof r->msg, "interrupted by a signal; --resume redoes this unit");
            } else if (st != SG_OK) {
                r->status = U_FAILED;
                snprintf(r->msg, sizeof r->msg, "%s", sg_status_str(st));
            } else {
                batch_flush(&b, c, ctx, t, sf->name, &rows);
                sg_shard_reader_skips(rd, r->skips);
                if (sg_shard_reader_status(rd, &err) != SG_OK) {
                    r->status = U_FAILED;
                    snprintf(r->msg, sizeof r->msg, "shard unreadable: %.700s", err.msg);
                }
            }
            for (int i = 0; i < b.n; i++) {
                free(b.key[i]);
                b.key[i] = NULL;
            }
            sg_shard_reader_free(rd);
        }
    }
    r->seconds = sg_now() - t0;
    if (r->status != U_INTERRUPTED) {
        sg_err err;
        if (part_write(w->dir, t, si, sf, shard_id, r, r->status == U_OK ? &rows : NULL, &err) != SG_OK) {
            r->status = U_FAILED;
            snprintf(r->msg, sizeof r->msg, "cannot write the part file: %.700s", err.msg);
        }
    }
    if (r->status == U_FAILED)
        sg_log(SG_LOG_WARN, "unit %s / %s%s failed: %s", t->id, sf->name, reference ? " (open-set reference)" : "",
               r->msg);
    sg_buf_free(&rows);
}

/* ---- MPI helpers: polling receives, so a waiting rank neither spins a core
 * nor misses a signal ---- */

static int recv_poll(void *buf, int n, int src, int tag, MPI_Comm comm, MPI_Status *st, void (*idle)(void *),
                     void *u) {
    MPI_Request rq;
    if (MPI_Irecv(buf, n, MPI_BYTE, src, tag, comm, &rq) != MPI_SUCCESS) return 0;
    int done = 0;
    while (!done) {
        if (MPI_Test(&rq, &done, st) != MPI_SUCCESS) return 0;
        if (!done) {
            if (idle) idle(u);
            sleep_s(0.002);
        }
    }
    return 1;
}

/* ---- the scheduler's queue: which unit a rank gets next ----
 *
 * A rank keeps getting units of the task it had last while that task has
 * units left (its classifier is cached there); a rank whose task is done
 * opens the next task nobody has started; once every task is started it
 * joins the started task with the most units left (ties: the lowest task).
 * So a task is synthesized about once, plus once per rank that joins it at
 * the end, instead of once per rank. Every decision is O(1) amortized: units
 * kept by --resume are skipped once, and a join scans the started tasks that
 * still have units, at most one per rank. */

typedef struct squeue {
    const sg_manifest *m;
    const uint8_t *keep; /* (n_units bits) units not to run, or NULL */
    size_t *cursor;      /* (n_tasks) next unit of the task to look at */
    size_t *left;        /* (n_tasks) units of the task still to hand out */
    int next_task;       /* tasks below it have been started */
    int *active;         /* started tasks, possibly done (dropped lazily) */
    int n_active;
    size_t remaining;
} squeue;

static int bit_get(const uint8_t *b, size_t i) { return b && ((b[i >> 3] >> (i & 7)) & 1); }
static void bit_set(uint8_t *b, size_t i) { b[i >> 3] = (uint8_t)(b[i >> 3] | (1u << (i & 7))); }

static void sq_init(squeue *q, const sg_manifest *m, const uint8_t *keep) {
    memset(q, 0, sizeof *q);
    q->m = m;
    q->keep = keep;
    q->cursor = sg_xcalloc((size_t)m->n_tasks + 1, sizeof *q->cursor);
    q->left = sg_xcalloc((size_t)m->n_tasks + 1, sizeof *q->left);
    q->active = sg_xcalloc((size_t)m->n_tasks + 1, sizeof *q->active);
    for (int t = 0; t < m->n_tasks; t++) {
        size_t n = sg_task_n_units(&m->tasks[t]);
        if (!keep) q->left[t] = n;
        else
            for (size_t s = 0; s < n; s++) q->left[t] += !bit_get(keep, m->unit_start[t] + s);
        q->remaining += q->left[t];
    }
}

static void sq_free(squeue *q) {
    free(q->cursor);
    free(q->left);
    free(q->active);
}

static size_t sq_take(squeue *q, int t) {
    size_t base = q->m->unit_start[t];
    while (bit_get(q->keep, base + q->cursor[t])) q->cursor[t]++;
    q->left[t]--;
    q->remaining--;
    return base + q->cursor[t]++;
}

/* The next unit for a rank whose last unit was of task *task (-1: none);
 * *task becomes the unit's task. -1 when no unit is left. */
static int64_t sq_next(squeue *q, int *task) {
    if (!q->remaining) return -1;
    int t = *task;
    if (t < 0 || !q->left[t]) {
        while (q->next_task < q->m->n_tasks && !q->left[q->next_task]) q->next_task++;
        if (q->next_task < q->m->n_tasks) {
            t = q->next_task++;
            q->active[q->n_active++] = t;
        } else {
            int best = -1, keep_n = 0;
            for (int i = 0; i < q->n_active; i++) {
                int a = q->active[i];
                if (!q->left[a]) continue;
                q->active[keep_n++] = a;
                if (best < 0 || q->left[a] > q->left[best] || (q->left[a] == q->left[best] && a < best)) best = a;
            }
            q->n_active = keep_n;
            if (best < 0) return -1;
            t = best;
        }
    }
    *task = t;
    return (int64_t)sq_take(q, t);
}

/* ---- rank 0 bookkeeping ---- */

/* Rank 0's record of one unit: 32 bytes, the rare details (skips, unmapped
 * labels, a message) aside, so that runs of millions of units fit. */
typedef struct unit_rec {
    uint64_t images;
    double seconds;
    int32_t rank;
    uint32_t extra; /* index + 1 into sched.extra, 0: none */
    uint8_t status, resumed;
} unit_rec;

typedef struct unit_extra {
    uint64_t unmapped, skips[SG_SKIP__COUNT];
    char *msg;
} unit_extra;

typedef struct sched {
    const sg_manifest *m;
    const sg_run_opts *o;
    MPI_Comm comm;
    int size;
    unit_rec *rec; /* (n_units) */
    unit_extra *extra;
    size_t n_extra, cap_extra;
    squeue q;
    int *last_task;  /* (size) task of the last unit handed to each rank */
    int *ended;      /* (size) "no more units" answers sent to each rank */
    /* answers in flight (MPI_Isend: a blocking send could wait for the rank to
     * finish its unit); a rank has at most WORKER_REQUESTS unanswered requests */
    int32_t *answer;       /* (size, WORKER_REQUESTS) */
    MPI_Request *answer_rq; /* (size, WORKER_REQUESTS) */
    int *answer_slot;      /* (size) */
    size_t todo_n, done_n, failed_n;
    uint64_t images;
    double t0, last_print, last_status;
    int stop, mpi_failed;
} sched;

static sg_status write_status(const sched *s, const char *dir, sg_err *err);

static void sched_free(sched *s) {
    for (size_t i = 0; i < s->n_extra; i++) free(s->extra[i].msg);
    free(s->extra);
    free(s->rec);
    free(s->last_task);
    free(s->ended);
    free(s->answer);
    free(s->answer_rq);
    free(s->answer_slot);
    sq_free(&s->q);
}

static void rec_set(sched *s, const unit_report *r) {
    unit_rec *x = &s->rec[r->unit];
    x->images = r->images;
    x->seconds = r->seconds;
    x->rank = r->rank;
    x->status = (uint8_t)r->status;
    x->resumed = (uint8_t)r->resumed;
    int any = r->unmapped != 0 || r->msg[0] != 0;
    for (int i = 0; i < SG_SKIP__COUNT; i++) any |= r->skips[i] != 0;
    if (!any && !x->extra) return;
    if (!x->extra) {
        if (s->n_extra == s->cap_extra) {
            s->cap_extra = s->cap_extra ? 2 * s->cap_extra : 256;
            s->extra = sg_xrealloc(s->extra, s->cap_extra * sizeof *s->extra);
        }
        memset(&s->extra[s->n_extra], 0, sizeof *s->extra);
        x->extra = (uint32_t)++s->n_extra;
    }
    unit_extra *e = &s->extra[x->extra - 1];
    e->unmapped = r->unmapped;
    memcpy(e->skips, r->skips, sizeof e->skips);
    free(e->msg);
    e->msg = r->msg[0] ? sg_xstrdup(r->msg) : NULL;
}

static void progress(sched *s, int force) {
    double now = sg_now();
    if (!s->o->progress || (!force && now - s->last_print < 2.0)) return;
    s->last_print = now;
    double el = now - s->t0;
    double eta = s->done_n ? el / (double)s->done_n * (double)(s->todo_n - s->done_n) : 0;
    sg_log(SG_LOG_INFO, "units %zu/%zu (%zu failed), %llu images, %.0f images/s, ETA %.0f s", s->done_n, s->todo_n,
           s->failed_n, (unsigned long long)s->images, el > 0 ? (double)s->images / el : 0.0, eta);
}

/* status.tsv every 30 s while the run goes, so a long job can be watched. */
static void status_checkpoint(sched *s) {
    double now = sg_now();
    if (now - s->last_status < 30.0) return;
    s->last_status = now;
    sg_err err;
    if (write_status(s, sg_run_dir(s->m, s->o), &err) != SG_OK) sg_log(SG_LOG_WARN, "%s", err.msg);
}

static void sched_tick(void *u) {
    sched *s = u;
    if (sg_pipeline_stop_requested()) s->stop = 1;
    progress(s, 0);
    status_checkpoint(s);
}

static void sched_record(sched *s, const unit_report *r) {
    rec_set(s, r);
    s->done_n++;
    s->images += r->images;
    if (r->status == U_FAILED) s->failed_n++;
    if (r->status == U_INTERRUPTED) s->stop = 1;
    if (r->status == U_FAILED && s->o->fail_fast) s->stop = 1;
    progress(s, 0);
    status_checkpoint(s);
}

/* Rank 0 with other ranks: answers every report/request waiting, without blocking. */
static void sched_serve(void *u) {
    sched *s = u;
    for (;;) {
        int flag = 0;
        MPI_Status st;
        if (MPI_Iprobe(MPI_ANY_SOURCE, TAG_REPORT, s->comm, &flag, &st) != MPI_SUCCESS) {
            s->mpi_failed = s->stop = 1;
            break;
        }
        if (!flag) break;
        unit_report r;
        if (MPI_Recv(&r, (int)sizeof r, MPI_BYTE, st.MPI_SOURCE, TAG_REPORT, s->comm, MPI_STATUS_IGNORE) != MPI_SUCCESS) {
            s->mpi_failed = s->stop = 1;
            break;
        }
        int src = st.MPI_SOURCE;
        if (r.unit >= 0 && (size_t)r.unit < s->m->n_units) sched_record(s, &r);
        if (sg_pipeline_stop_requested()) s->stop = 1;
        int64_t a = s->stop ? -1 : sq_next(&s->q, &s->last_task[src]);
        if (a < 0) s->ended[src]++;
        /* the slot's previous answer was received: the rank asked again after it */
        size_t k = (size_t)src * WORKER_REQUESTS + (size_t)s->answer_slot[src];
        s->answer_slot[src] = (s->answer_slot[src] + 1) % WORKER_REQUESTS;
        if (MPI_Wait(&s->answer_rq[k], MPI_STATUS_IGNORE) != MPI_SUCCESS) {
            s->mpi_failed = s->stop = 1;
            break;
        }
        s->answer[k] = (int32_t)a;
        if (MPI_Isend(&s->answer[k], 1, MPI_INT32_T, src, TAG_ASSIGN, s->comm, &s->answer_rq[k]) != MPI_SUCCESS) {
            s->mpi_failed = s->stop = 1;
            break;
        }
    }
    sched_tick(s);
}

static void skips_str(const uint64_t *sk, uint64_t unmapped, char *out, size_t n) {
    size_t o = 0;
    out[0] = 0;
    for (int i = 0; i < SG_SKIP__COUNT; i++)
        if (sk[i] && o < n)
            o += (size_t)snprintf(out + o, n - o, "%s%s=%llu", o ? ";" : "", sg_skip_reason_str((sg_skip_reason)i),
                                  (unsigned long long)sk[i]);
    if (unmapped && o < n)
        o += (size_t)snprintf(out + o, n - o, "%sunmapped label=%llu", o ? ";" : "", (unsigned long long)unmapped);
    if (!o) snprintf(out, n, "-");
}

static sg_status write_status(const sched *s, const char *dir, sg_err *err) {
    const sg_manifest *m = s->m;
    sg_buf b = {0};
    sg_buf_printf(&b, "task\tshard\tstatus\trank\tseconds\timages\tskipped\tmessage\n");
    static const uint64_t no_skips[SG_SKIP__COUNT];
    for (int ti = 0; ti < m->n_tasks; ti++) {
        const sg_run_task *t = &m->tasks[ti];
        size_t nu = sg_task_n_units(t);
        for (size_t si = 0; si < nu; si++) {
            const unit_rec *r = &s->rec[m->unit_start[ti] + si];
            const unit_extra *e = r->extra ? &s->extra[r->extra - 1] : NULL;
            char sk[512], msg[1024];
            skips_str(e ? e->skips : no_skips, e ? e->unmapped : 0, sk, sizeof sk);
            snprintf(msg, sizeof msg, "%s", e && e->msg ? e->msg : "-");
            sanitize(msg);
            char rank[16];
            if (r->status == U_NOT_RUN) snprintf(rank, sizeof rank, "-");
            else snprintf(rank, sizeof rank, "%d", r->rank);
            sg_buf_printf(&b, "%s\t%s%s\t%s\t%s\t%.3f\t%llu\t%s\t%s\n", t->id, sg_task_shard(m, t, si)->name,
                          si >= t->n_shards ? " (open-set reference)" : "", unit_status_names[r->status], rank,
                          r->seconds, (unsigned long long)r->images, sk, msg);
        }
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/status.tsv", dir);
    sg_status st = sg_file_write_atomic(path, b.data, b.len, err);
    sg_buf_free(&b);
    return st;
}

/* ---- run.json ---- */

static void iso_now(char *out, size_t n) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static sg_status write_run_json(const sg_manifest *m, const sg_run_opts *o, const sg_run_result *res, int final,
                                sg_err *err) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "sgps_version", o->version ? o->version : SG_VERSION_STRING);
    cJSON_AddStringToObject(j, "git_hash", o->git_hash ? o->git_hash : "unknown");
    cJSON_AddStringToObject(j, "manifest", m->path);
    cJSON_AddStringToObject(j, "manifest_sha256", m->manifest_sha256);
    cJSON_AddStringToObject(j, "engine", m->engine_path);
    cJSON_AddStringToObject(j, "engine_sha256", m->engine_sha256);
    cJSON_AddStringToObject(j, "config_hash", m->config_hash);
    cJSON_AddNumberToObject(j, "ranks", res->ranks);
    cJSON *h = cJSON_AddArrayToObject(j, "hosts");
    for (int i = 0; i < res->n_hosts; i++) cJSON_AddItemToArray(h, cJSON_CreateString(res->hosts[i]));
    cJSON_AddStringToObject(j, "start", res->start);
    if (final) {
        char end[32];
        iso_now(end, sizeof end);
        cJSON_AddStringToObject(j, "end", end);
    } else {
        cJSON_AddNullToObject(j, "end");
    }
    cJSON *opt = cJSON_AddObjectToObject(j, "options");
    cJSON_AddBoolToObject(opt, "resume", o->resume);
    cJSON_AddBoolToObject(opt, "retry_failed", o->retry_failed);
    cJSON_AddBoolToObject(opt, "fail_fast", o->fail_fast);
    cJSON *sl = cJSON_AddObjectToObject(j, "slurm");
    static const char *const vars[] = {"SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_NAME",
                                       "SLURM_CLUSTER_NAME", "SLURM_JOB_NODELIST", "SLURM_NTASKS", "SLURM_RESTART_COUNT",
                                       NULL};
    for (const char *const *v = vars; *v; v++) {
        const char *val = getenv(*v);
        if (val) cJSON_AddStringToObject(sl, *v, val);
    }
    cJSON *u = cJSON_AddObjectToObject(j, "units");
    cJSON_AddNumberToObject(u, "total", (double)m->n_units);
    if (final) {
        cJSON_AddNumberToObject(u, "ok", (double)res->units_ok);
        cJSON_AddNumberToObject(u, "failed", (double)res->units_failed);
        cJSON_AddNumberToObject(u, "resumed", (double)res->units_resumed);
        cJSON_AddNumberToObject(u, "not_run", (double)res->units_not_run);
        cJSON_AddBoolToObject(j, "interrupted", res->interrupted);
        cJSON_AddNumberToObject(j, "images", (double)res->images);
        cJSON_AddNumberToObject(j, "seconds", res->seconds);
    }
    char *txt = cJSON_Print(j);
    cJSON_Delete(j);
    char path[4200];
    snprintf(path, sizeof path, "%s/run.json", sg_run_dir(m, o));
    sg_buf b = {0};
    sg_buf_printf(&b, "%s\n", txt);
    free(txt);
    sg_status st = sg_file_write_atomic(path, b.data, b.len, err);
    sg_buf_free(&b);
    return st;
}

sg_status sg_pipeline_finish_run_json(const sg_manifest *m, const sg_run_opts *o, const sg_run_result *res,
                                      sg_err *err) {
    return write_run_json(m, o, res, 1, err);
}

void sg_run_result_free(sg_run_result *res) {
    for (int i = 0; i < res->n_hosts; i++) free(res->hosts[i]);
    free(res->hosts);
    res->hosts = NULL;
    res->n_hosts = 0;
}

static void gather_hosts(MPI_Comm comm, int rank, int size, sg_run_result *res) {
    char name[MPI_MAX_PROCESSOR_NAME] = {0};
    int len = 0;
    MPI_Get_processor_name(name, &len);
    char *all = rank == 0 ? sg_xcalloc((size_t)size, MPI_MAX_PROCESSOR_NAME) : NULL;
    MPI_Gather(name, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, all, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, 0, comm);
    if (rank == 0) {
        res->hosts = sg_xcalloc((size_t)size, sizeof(char *));
        res->n_hosts = 0;
        for (int i = 0; i < size; i++) {
            const char *h = all + (size_t)i * MPI_MAX_PROCESSOR_NAME;
            int seen = 0;
            for (int k = 0; k < res->n_hosts; k++) seen |= strcmp(res->hosts[k], h) == 0;
            if (!seen) res->hosts[res->n_hosts++] = sg_xstrdup(h);
        }
    }
    free(all);
}

/* ---- the run ---- */

/* The outputs only a finished run writes: removed at the start, so that an
 * interrupted run never leaves an earlier run's summary looking current, and
 * every worklist in a task folder is this run's (a class dropped from the
 * task, or a run stopped before its worklists, leaves none behind). Without
 * resume the classifiers go too: one kept from an earlier run would lend its
 * support check to a task whose synthesis now fails. */
static void remove_final_outputs(const sg_manifest *m, const sg_run_opts *o, const char *dir) {
    static const char *const top[] = {"summary.json", "summary.csv", "report.html", "comparison.json",
                                      "comparison.csv"};
    static const char *const per_task[] = {"predictions.csv", "metrics.json", "reference.csv", "classifier.sgpm"};
    size_t n_per_task = sizeof per_task / sizeof per_task[0] - (o->resume ? 1 : 0);
    char p[8192];
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++) {
        snprintf(p, sizeof p, "%.4000s/%s", dir, top[i]);
        unlink(p);
    }
    for (int t = 0; t < m->n_tasks; t++) {
        for (size_t i = 0; i < n_per_task; i++) {
            snprintf(p, sizeof p, "%.4000s/tasks/%s/%s", dir, m->tasks[t].id, per_task[i]);
            unlink(p);
        }
        snprintf(p, sizeof p, "%.4000s/tasks/%s", dir, m->tasks[t].id);
        DIR *dd = opendir(p);
        if (!dd) continue;
        struct dirent *de;
        while ((de = readdir(dd)) != NULL) {
            size_t nl = strlen(de->d_name);
            if (nl < 13 || strncmp(de->d_name, "worklist-", 9) != 0 || strcmp(de->d_name + nl - 4, ".csv") != 0) continue;
            char f[8600];
            snprintf(f, sizeof f, "%s/%s", p, de->d_name);
            unlink(f);
        }
        closedir(dd);
    }
}

/* Folders under RUN/tasks/ that no task of this manifest writes (a folder
 * reused with another manifest): left as they are, but said, since only this
 * manifest's tasks are in the summary and the report. Returns how many. */
static size_t warn_foreign_tasks(const sg_manifest *m, const char *dir) {
    char td[4200];
    snprintf(td, sizeof td, "%s/tasks", dir);
    DIR *dd = opendir(td);
    if (!dd) return 0;
    /* each task's first path component, sorted, for lookups */
    char **first = sg_xcalloc((size_t)m->n_tasks + 1, sizeof *first);
    for (int t = 0; t < m->n_tasks; t++) {
        first[t] = sg_xstrdup(m->tasks[t].id);
        char *sl = strchr(first[t], '/');
        if (sl) *sl = 0;
    }
    qsort(first, (size_t)m->n_tasks, sizeof *first, sg_cmp_strp);
    size_t n = 0;
    char names[512] = "";
    struct dirent *de;
    while ((de = readdir(dd)) != NULL) {
        const char *nm = de->d_name;
        if (nm[0] == '.' || bsearch(&nm, first, (size_t)m->n_tasks, sizeof *first, sg_cmp_strp)) continue;
        if (n < 5) snprintf(names + strlen(names), sizeof names - strlen(names), "%s%.100s", n ? ", " : "", nm);
        n++;
    }
    closedir(dd);
    for (int t = 0; t < m->n_tasks; t++) free(first[t]);
    free(first);
    if (n)
        sg_log(SG_LOG_WARN,
               "%s holds %zu task folder%s of another manifest (%s%s); left as they are: the summary and the report "
               "cover this manifest's %d task%s only",
               td, n, n == 1 ? "" : "s", names, n > 5 ? ", ..." : "", m->n_tasks, m->n_tasks == 1 ? "" : "s");
    return n;
}

/* Rank 0 before a run (and a dry run): marks in keep the units whose part
 * file is current (o->resume: the task's configuration hash, and the same
 * shard file, unchanged in size and time), recording them in s when given;
 * without resume, removes stale part files unless dry. Folders
 * parts/<task>/ that do not exist are not looked into, so a first run costs
 * one stat per task. */
static int plan_keep(const sg_manifest *m, const sg_run_opts *o, const char *dir, int dry, uint8_t *keep, sched *s,
                     size_t *n_kept, sg_err *err) {
    *n_kept = 0;
    /* each shard file's identity, taken once (tasks share files) */
    char (*ids)[SHARD_ID_CHARS] = o->resume ? sg_xcalloc(m->n_files + 1, sizeof *ids) : NULL;
    for (int ti = 0; ti < m->n_tasks; ti++) {
        const sg_run_task *t = &m->tasks[ti];
        char pd[4200];
        snprintf(pd, sizeof pd, "%s/parts/%s", dir, t->id);
        if (!dir_exists(pd)) continue;
        size_t nu = sg_task_n_units(t);
        for (size_t si = 0; si < nu; si++) {
            size_t u = m->unit_start[ti] + si;
            char pp[4200];
            part_path(dir, t, si, pp, sizeof pp);
            part_header h;
            if (o->resume) {
                const uint32_t fi = si < t->n_shards ? t->shard[si] : t->ref_shard[si - t->n_shards];
                if (!ids[fi][0]) shard_identity(m->files[fi].path, ids[fi], sizeof ids[fi]);
                if (part_read_header(pp, &h) && part_current(&h, t, &m->files[fi], ids[fi]) &&
                    (h.status == U_OK || !o->retry_failed)) {
                    bit_set(keep, u);
                    (*n_kept)++;
                    if (s) {
                        unit_report r;
                        memset(&r, 0, sizeof r);
                        r.unit = (int32_t)u;
                        r.status = h.status;
                        r.rank = h.rank;
                        r.seconds = h.seconds;
                        r.images = h.images;
                        r.unmapped = h.unmapped;
                        memcpy(r.skips, h.skips, sizeof r.skips);
                        r.resumed = 1;
                        snprintf(r.msg, sizeof r.msg, "%.700s%s(from an earlier run)", h.msg, h.msg[0] ? " " : "");
                        rec_set(s, &r);
                    }
                }
                continue;
            }
            if (!dry && unlink(pp) != 0 && errno != ENOENT) {
                sg_err_set(err, SG_ERR_IO, "%s: cannot remove: %s", pp, strerror(errno));
                return 0;
            }
        }
    }
    free(ids);
    return 1;
}

sg_status sg_pipeline_run(const sg_manifest *m, const sg_run_opts *o, MPI_Comm comm, sg_run_result *res,
                          sg_err *err) {
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    memset(res, 0, sizeof *res);
    openblas_set_num_threads(1);
    const char *dir = sg_run_dir(m, o);
    double t0 = sg_now();
    res->ranks = size;
    gather_hosts(comm, rank, size, res);

    /* rank 0: what is already done, the run folder, run.json (end null) */
    int ok = 1;
    uint8_t *keep = NULL;
    sched s;
    memset(&s, 0, sizeof s);
    s.m = m;
    s.o = o;
    s.comm = comm;
    s.size = size;
    s.t0 = s.last_print = s.last_status = t0;
    if (rank == 0) {
        iso_now(res->start, sizeof res->start);
        s.rec = sg_xcalloc(m->n_units ? m->n_units : 1, sizeof *s.rec);
        for (size_t u = 0; u < m->n_units; u++) s.rec[u].status = U_NOT_RUN;
        keep = sg_xcalloc(m->n_units / 8 + 1, 1);
        s.last_task = sg_xmalloc((size_t)size * sizeof *s.last_task);
        for (int i = 0; i < size; i++) s.last_task[i] = -1;
        s.ended = sg_xcalloc((size_t)size, sizeof *s.ended);
        s.answer = sg_xcalloc((size_t)size * WORKER_REQUESTS, sizeof *s.answer);
        s.answer_rq = sg_xmalloc((size_t)size * WORKER_REQUESTS * sizeof *s.answer_rq);
        for (int i = 0; i < size * WORKER_REQUESTS; i++) s.answer_rq[i] = MPI_REQUEST_NULL;
        s.answer_slot = sg_xcalloc((size_t)size, sizeof *s.answer_slot);
        if (sg_mkdir_p(dir, err) != SG_OK || write_run_json(m, o, res, 0, err) != SG_OK) ok = 0;
        if (ok) remove_final_outputs(m, o, dir);
        if (ok) warn_foreign_tasks(m, dir);
        size_t kept = 0;
        if (ok && !plan_keep(m, o, dir, 0, keep, &s, &kept, err)) ok = 0;
        res->units_resumed = kept;
        sq_init(&s.q, m, keep);
        s.todo_n = s.q.remaining;
        if (ok && o->progress)
            sg_log(SG_LOG_INFO, "%zu units (%d tasks), %zu to run, %zu done earlier; %d rank%s%s", m->n_units,
                   m->n_tasks, s.todo_n, kept, size, size > 1 ? "s" : "", size > 1 ? " (rank 0 also schedules)" : "");
    }
    MPI_Bcast(&ok, 1, MPI_INT, 0, comm);
    if (!ok) {
        sched_free(&s);
        free(keep);
        if (rank == 0) return SG_ERR_IO;
        return sg_err_set(err, SG_ERR_IO, "rank 0 could not prepare the run folder");
    }

    worker w;
    worker_init(&w, m, o, rank);
    int mpi_failed = 0;
    if (rank == 0) {
        w.poll = size > 1 ? sched_serve : sched_tick;
        w.poll_user = &s;
        int own = -1;
        for (;;) {
            if (size > 1) sched_serve(&s);
            if (sg_pipeline_stop_requested()) s.stop = 1;
            int64_t a = s.stop ? -1 : sq_next(&s.q, &own);
            if (a >= 0) {
                unit_report r;
                run_unit(&w, (size_t)a, &r);
                sched_record(&s, &r);
                continue;
            }
            if (size == 1 || s.mpi_failed) break;
            int all = 1;
            for (int i = 1; i < size; i++) all &= s.ended[i] >= WORKER_REQUESTS;
            if (all) break;
            sleep_s(0.002);
        }
        w.poll = NULL;
        if (size > 1 && !s.mpi_failed &&
            MPI_Waitall(size * WORKER_REQUESTS, s.answer_rq, MPI_STATUSES_IGNORE) != MPI_SUCCESS)
            s.mpi_failed = 1;
        mpi_failed = s.mpi_failed;
    } else {
        /* reports go out with MPI_Isend from alternating buffers: a blocking
         * send would wait until rank 0 looks between two of its batches */
        unit_report rep[WORKER_REQUESTS];
        MPI_Request rq[WORKER_REQUESTS];
        int slot = 0, outstanding = 0;
        for (int i = 0; i < WORKER_REQUESTS; i++) {
            memset(&rep[i], 0, sizeof rep[i]);
            rep[i].unit = -1;
            rep[i].rank = rank;
            rq[i] = MPI_REQUEST_NULL;
        }
        for (int i = 0; i < WORKER_REQUESTS && !mpi_failed; i++) {
            if (MPI_Isend(&rep[i], (int)sizeof rep[i], MPI_BYTE, 0, TAG_REPORT, comm, &rq[i]) != MPI_SUCCESS)
                mpi_failed = 1;
            else outstanding++;
        }
        while (!mpi_failed) {
            int32_t a;
            MPI_Status st;
            if (!recv_poll(&a, (int)sizeof a, 0, TAG_ASSIGN, comm, &st, NULL, NULL)) {
                mpi_failed = 1;
                break;
            }
            outstanding--;
            if (a < 0) break;
            unit_report r;
            run_unit(&w, (size_t)a, &r);
            /* the report sent from this slot two units ago has been answered, so received */
            if (MPI_Wait(&rq[slot], MPI_STATUS_IGNORE) != MPI_SUCCESS) {
                mpi_failed = 1;
                break;
            }
            rep[slot] = r;
            if (MPI_Isend(&rep[slot], (int)sizeof rep[slot], MPI_BYTE, 0, TAG_REPORT, comm, &rq[slot]) != MPI_SUCCESS)
                mpi_failed = 1;
            else outstanding++;
            slot = (slot + 1) % WORKER_REQUESTS;
        }
        /* the answers still owed are "no more units" too (rank 0 never takes that back) */
        while (!mpi_failed && outstanding > 0) {
            int32_t a;
            MPI_Status st;
            if (!recv_poll(&a, (int)sizeof a, 0, TAG_ASSIGN, comm, &st, NULL, NULL)) mpi_failed = 1;
            outstanding--;
        }
        if (!mpi_failed && MPI_Waitall(WORKER_REQUESTS, rq, MPI_STATUSES_IGNORE) != MPI_SUCCESS) mpi_failed = 1;
    }

    sg_status ret = SG_OK;
    if (rank == 0) {
        if (sg_pipeline_stop_requested()) s.stop = 1;
        /* classifiers no rank wrote in this run (all units resumed, or the
         * task ran elsewhere): rewrite unless the file is of this configuration */
        for (int t = 0; t < m->n_tasks && !s.stop; t++)
            if (!w.cls_tried[t] && !classifier_current(m, dir, t)) {
                const char *why;
                worker_classifier(&w, t, &why);
            }
        for (size_t u = 0; u < m->n_units; u++) {
            const unit_rec *r = &s.rec[u];
            if (r->status == U_OK) res->units_ok++;
            else if (r->status == U_FAILED) res->units_failed++;
            else res->units_not_run++;
            if (r->status == U_INTERRUPTED) res->units_interrupted++;
            if (!r->resumed) res->images += r->images;
        }
        res->interrupted = res->units_not_run > 0;
        res->units_total = m->n_units;
        res->seconds = sg_now() - t0;
        progress(&s, 1);
        ret = write_status(&s, dir, err);
        if (mpi_failed) ret = sg_err_set(err, SG_ERR_MPI, "rank 0: receiving a unit report failed; status.tsv has what was done");
    }
    worker_free(&w);
    sched_free(&s);
    free(keep);
    return ret;
}

/* ---- planning ---- */

sg_status sg_pipeline_plan(const sg_manifest *m, const sg_run_opts *o, int ranks, sg_run_plan *p, sg_err *err) {
    memset(p, 0, sizeof *p);
    if (ranks < 1) return sg_err_set(err, SG_ERR_ARG, "a plan needs at least one rank, got %d", ranks);
    p->ranks = ranks;
    p->tasks = m->n_tasks;
    p->shard_files = m->n_files;
    p->units = m->n_units;
    for (int t = 0; t < m->n_tasks; t++) {
        const sg_open_set *os = &m->tasks[t].open_set;
        p->tasks_open_set += os->enabled;
        p->tasks_calibrated += os->enabled && os->n_ref_shards > 0;
        p->units_reference += os->n_ref_shards;
    }
    uint8_t *keep = sg_xcalloc(m->n_units / 8 + 1, 1);
    double t0 = sg_now();
    if (o->resume && !plan_keep(m, o, sg_run_dir(m, o), 1, keep, NULL, &p->units_kept, err)) {
        free(keep);
        return SG_ERR_IO;
    }
    p->seconds_resume = sg_now() - t0;
    p->units_to_run = p->units - p->units_kept;

    /* the run's own queue, every rank asking in turn (equal unit costs) */
    squeue q;
    sq_init(&q, m, o->resume ? keep : NULL);
    int *last = sg_xmalloc((size_t)ranks * sizeof *last);
    size_t *count = sg_xcalloc((size_t)ranks, sizeof *count);
    for (int r = 0; r < ranks; r++) last[r] = -1;
    t0 = sg_now();
    for (int r = 0, live = ranks; live > 0; r = (r + 1) % ranks) {
        if (last[r] == -2) continue;
        int t = last[r];
        if (sq_next(&q, &t) < 0) {
            last[r] = -2;
            live--;
            continue;
        }
        if (t != last[r]) p->syntheses++;
        last[r] = t;
        count[r]++;
    }
    p->seconds_schedule = sg_now() - t0;
    p->units_per_rank_min = p->units_per_rank_max = count[0];
    for (int r = 1; r < ranks; r++) {
        if (count[r] < p->units_per_rank_min) p->units_per_rank_min = count[r];
        if (count[r] > p->units_per_rank_max) p->units_per_rank_max = count[r];
    }
    free(last);
    free(count);
    sq_free(&q);
    free(keep);
    return SG_OK;
}

/* ---- reading results back ---- */

char *sg_run_predictions_header(const sg_manifest *m, int ti) {
    const sg_run_task *t = &m->tasks[ti];
    sg_buf b = {0};
    sg_buf_printf(&b, "key,shard,label,predicted");
    for (int k = 0; k < t->n_classes; k++) sg_buf_printf(&b, ",score_%s", t->class_ids[k]);
    sg_buf_printf(&b, "\n");
    sg_buf_append(&b, "", 1);
    return (char *)b.data;
}

static int class_index(const sg_run_task *t, const char *s, size_t n) {
    for (int k = 0; k < t->n_classes; k++)
        if (strlen(t->class_ids[k]) == n && memcmp(t->class_ids[k], s, n) == 0) return k;
    if (t->open_set.enabled && n == strlen(SG_OPEN_SET_NONE) && memcmp(s, SG_OPEN_SET_NONE, n) == 0)
        return SG_LABEL_NONE;
    return SG_LABEL_UNKNOWN;
}

/* The rows of task ti's units s0 <= s < s1. */
static sg_status load_rows(const sg_manifest *m, const char *dir, int ti, size_t s0, size_t s1, sg_task_rows *rows,
                           sg_err *err) {
    const sg_run_task *t = &m->tasks[ti];
    memset(rows, 0, sizeof *rows);
    int K = t->n_classes;
    rows->k = K;
    size_t cap = 0;
    for (size_t si = s0; si < s1; si++) {
        char pp[4200];
        part_path(dir, t, si, pp, sizeof pp);
        part_header h;
        uint8_t *data;
        size_t len;
        if (!part_read(pp, &h, &data, &len)) {
            rows->units_missing++;
            continue;
        }
        const sg_shard_file *sf = sg_task_shard(m, t, si);
        char shard_id[SHARD_ID_CHARS];
        shard_identity(sf->path, shard_id, sizeof shard_id);
        int current = part_current(&h, t, sf, shard_id);
        if (!current || h.status != U_OK) {
            if (!current) rows->units_missing++;
            else rows->units_failed++;
            free(data);
            continue;
        }
        rows->units_ok++;
        rows->unmapped += h.unmapped;
        for (int i = 0; i < SG_SKIP__COUNT; i++) rows->skipped += h.skips[i];
        char *p = (char *)data + h.body, *end = (char *)data + len;
        while (p < end) {
            char *nl = memchr(p, '\n', (size_t)(end - p));
            if (!nl) nl = end;
            size_t ll = (size_t)(nl - p);
            if (ll) {
                if (rows->n == cap) {
                    cap = cap ? 2 * cap : 1024;
                    rows->label = sg_xrealloc(rows->label, cap * sizeof(int));
                    rows->pred = sg_xrealloc(rows->pred, cap * sizeof(int));
                    rows->score = sg_xrealloc(rows->score, cap * (size_t)K * sizeof(float));
                    rows->line = sg_xrealloc(rows->line, cap * sizeof(char *));
                }
                /* fields from the right: K scores, predicted, label */
                char *q = nl;
                char *fs[SG_MAX_CLASSES + 2];
                size_t fl[SG_MAX_CLASSES + 2];
                int bad = 0;
                for (int f = K + 1; f >= 0 && !bad; f--) {
                    char *c = q - 1;
                    while (c >= p && *c != ',') c--;
                    if (c < p) bad = 1;
                    else {
                        fs[f] = c + 1;
                        fl[f] = (size_t)(q - c - 1);
                        q = c;
                    }
                }
                int pred = bad ? SG_LABEL_UNKNOWN : class_index(t, fs[1], fl[1]);
                if (bad || pred < 0) {
                    sg_err_set(err, SG_ERR_FORMAT, "%s: malformed row", pp);
                    free(data);
                    sg_task_rows_free(rows);
                    return SG_ERR_FORMAT;
                }
                size_t r = rows->n++;
                rows->label[r] = fl[0] ? class_index(t, fs[0], fl[0]) : SG_LABEL_UNKNOWN;
                rows->pred[r] = pred;
                for (int k = 0; k < K; k++) rows->score[r * (size_t)K + (size_t)k] = strtof(fs[2 + k], NULL);
                rows->line[r] = sg_xmalloc(ll + 1);
                memcpy(rows->line[r], p, ll);
                rows->line[r][ll] = 0;
            }
            p = nl + 1;
        }
        free(data);
    }
    return SG_OK;
}

sg_status sg_run_load_task(const sg_manifest *m, const char *dir, int ti, sg_task_rows *rows, sg_err *err) {
    return load_rows(m, dir, ti, 0, m->tasks[ti].n_shards, rows, err);
}

sg_status sg_run_load_reference(const sg_manifest *m, const char *dir, int ti, sg_task_rows *rows, sg_err *err) {
    const sg_run_task *t = &m->tasks[ti];
    return load_rows(m, dir, ti, t->n_shards, sg_task_n_units(t), rows, err);
}

void sg_task_rows_free(sg_task_rows *r) {
    for (size_t i = 0; i < r->n; i++) free(r->line[i]);
    free(r->line);
    free(r->label);
    free(r->pred);
    free(r->score);
    memset(r, 0, sizeof *r);
}
