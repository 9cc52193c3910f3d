/* sg_demo_world.c — plans and writes the demo world (docs/demo.md): which
 * diseases exist, which are held out, their descriptions, the cohorts and the
 * manifest, then every file.
 *
 * Planning rules, and why:
 * - The first training diseases walk through every value of every attribute
 *   (a permutation per attribute), so each value is seen in training and a
 *   text encoder can learn every word a held-out description uses.
 * - Held-out diseases differ from every training disease and from each other
 *   in at least two attribute slots: their combinations are new, not a
 *   training disease under another name.
 * - Held-out descriptions use only synonyms that training descriptions use.
 * - Every image has its own PRNG stream (role, disease, index), so adding
 *   images to one part of the world never changes another part. */
#include "sg_cli_demo.h"
#include "sg_io.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ROLE_PLAN = 0, ROLE_TRAIN = 1, ROLE_EXEMPLAR = 2, ROLE_VAL = 3, ROLE_SCREEN = 4, ROLE_REFERENCE = 5 };

#define TRAIN_SHARD_SAMPLES 500
#define COHORT_SHARD_SAMPLES 100
#define REFERENCE_ID "ref/common"
#define REFERENCE_EXEMPLARS 5
#define MODALITY "synthetic dermoscopy"

static uint64_t image_stream(int role, int disease, int index) {
    return ((uint64_t)role << 56) | ((uint64_t)(uint32_t)disease << 28) | (uint64_t)(uint32_t)index;
}

void sg_demo_opts_default(sg_demo_opts *o) {
    o->seed = 1;
    o->n_diseases = 60;
    o->per_class = 40;
    o->size = 56;
    o->progress = 1;
}

int sg_demo_attrs_distance(const sg_demo_attrs *a, const sg_demo_attrs *b) {
    int n = 0;
    for (int s = 0; s < SG_DEMO_SLOTS; s++) n += a->v[s] != b->v[s];
    return n;
}

static void random_attrs(sg_rng *r, sg_demo_attrs *a) {
    for (int s = 0; s < SG_DEMO_SLOTS; s++) {
        if (s == SG_DEMO_S_COLOUR2) continue;
        a->v[s] = (int)sg_rng_below(r, (uint32_t)sg_demo_kind_count(sg_demo_slot_kind((sg_demo_slot)s)));
    }
    a->v[SG_DEMO_S_COLOUR2] = -1;
    if (sg_rng_uniform(r) < 0.55f) /* a second colour, never the first */
        a->v[SG_DEMO_S_COLOUR2] = (a->v[SG_DEMO_S_COLOUR1] + 1 + (int)sg_rng_below(r, 7)) % 8;
}

static int min_distance(const sg_demo_disease *d, int n, const sg_demo_attrs *a) {
    int best = SG_DEMO_SLOTS;
    for (int i = 0; i < n; i++) {
        int x = sg_demo_attrs_distance(&d[i].a, a);
        if (x < best) best = x;
    }
    return best;
}

void sg_demo_world_free(sg_demo_world *w) {
    for (int i = 0; i < w->n; i++) free(w->d[i].description);
    free(w->d);
    memset(w, 0, sizeof *w);
}

static void set_task(sg_demo_task *t, const char *id, int screen, const int *cls, int n, int shots, int text) {
    SG_ASSERT(n >= 1 && n <= (int)(sizeof t->cls / sizeof t->cls[0]));
    memset(t, 0, sizeof *t);
    snprintf(t->id, sizeof t->id, "%s", id);
    t->screen = screen;
    t->n_classes = n;
    for (int i = 0; i < n; i++) t->cls[i] = cls[i];
    t->shots = shots;
    t->text = text;
}

/* A differential as a clinician would pose it: disease hp[seed] and the k - 1
 * held-out diseases nearest to it in attributes (ties: order in hp). */
static void lookalikes(const sg_demo_world *w, const int *hp, int H, int seed, int k, int *cls) {
    int used[512] = {0};
    SG_ASSERT(H <= 512 && k <= H);
    cls[0] = hp[seed];
    used[seed] = 1;
    for (int n = 1; n < k; n++) {
        int best = -1, bd = SG_DEMO_SLOTS + 1;
        for (int j = 0; j < H; j++) {
            if (used[j]) continue;
            int d = sg_demo_attrs_distance(&w->d[hp[seed]].a, &w->d[hp[j]].a);
            if (d < bd) bd = d, best = j;
        }
        used[best] = 1;
        cls[n] = hp[best];
    }
}

sg_status sg_demo_world_plan(const sg_demo_opts *o, sg_demo_world *w, sg_err *err) {
    memset(w, 0, sizeof *w);
    if (o->n_diseases < 12 || o->n_diseases > 500)
        return sg_err_set(err, SG_ERR_ARG, "--diseases must be 12..500 (got %d)", o->n_diseases);
    if (o->per_class < 2 || o->per_class > 100000)
        return sg_err_set(err, SG_ERR_ARG, "--images-per-class must be 2..100000 (got %d)", o->per_class);
    if (o->size < 24 || o->size > 512) return sg_err_set(err, SG_ERR_ARG, "--size must be 24..512 (got %d)", o->size);
    int n = o->n_diseases;
    w->n = n;
    w->n_heldout = n / 5 > 3 ? n / 5 : 3;
    w->n_train = n - w->n_heldout;
    w->d = sg_xcalloc((size_t)n, sizeof *w->d);
    sg_rng r;
    sg_rng_seed2(&r, o->seed, image_stream(ROLE_PLAN, 0, 0));

    /* training diseases: the first ones cover every value of every attribute */
    int perm[SG_DEMO_SLOTS][8];
    for (int s = 0; s < SG_DEMO_SLOTS; s++) {
        int k = sg_demo_kind_count(sg_demo_slot_kind((sg_demo_slot)s));
        for (int i = 0; i < k; i++) perm[s][i] = i;
        sg_rng_shuffle_int(&r, perm[s], (size_t)k);
    }
    for (int i = 0; i < w->n_train; i++) {
        sg_demo_attrs a;
        for (int attempt = 0;; attempt++) {
            random_attrs(&r, &a);
            for (int s = 0; s < SG_DEMO_SLOTS; s++) {
                int k = sg_demo_kind_count(sg_demo_slot_kind((sg_demo_slot)s));
                if (s != SG_DEMO_S_COLOUR2 && i < k) a.v[s] = perm[s][i];
            }
            if (a.v[SG_DEMO_S_COLOUR2] == a.v[SG_DEMO_S_COLOUR1]) a.v[SG_DEMO_S_COLOUR2] = -1;
            if (min_distance(w->d, i, &a) >= 1) break;
            SG_ASSERT(attempt < 100000);
        }
        w->d[i].a = a;
    }
    /* held-out diseases: new combinations, at least two slots from any other */
    for (int j = 0; j < w->n_heldout; j++) {
        int i = w->n_train + j, need = 2;
        sg_demo_attrs a;
        for (int attempt = 0;; attempt++) {
            if (attempt == 200000) need = 1;
            random_attrs(&r, &a);
            if (min_distance(w->d, i, &a) >= need) break;
            SG_ASSERT(attempt < 400000);
        }
        w->d[i].a = a;
        w->d[i].heldout = 1;
    }
    /* words: training picks freely; held out only what training used */
    int seen[SG_DEMO_KINDS][8][SG_DEMO_SYNONYMS];
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < n; i++) {
        sg_demo_disease *d = &w->d[i];
        for (int s = 0; s < SG_DEMO_SLOTS; s++) {
            int syn = (int)sg_rng_below(&r, SG_DEMO_SYNONYMS), v = d->a.v[s];
            sg_demo_kind k = sg_demo_slot_kind((sg_demo_slot)s);
            if (v >= 0 && !d->heldout) seen[k][v][syn] = 1;
            if (v >= 0 && d->heldout && !seen[k][v][syn]) syn = 1 - syn;
            SG_ASSERT(v < 0 || !d->heldout || seen[k][v][syn]);
            d->syn[s] = syn;
        }
        d->tmpl = (int)sg_rng_below(&r, 6);
        d->description = sg_demo_describe(d, sg_rng_u64(&r));
        snprintf(d->label, sizeof d->label, "d%03d", i);
        snprintf(d->id, sizeof d->id, "%s/%s", d->heldout ? "heldout" : "train", d->label);
        for (int attempt = 0;; attempt++) {
            sg_demo_name(&r, d->a.v[SG_DEMO_S_SHAPE], d->name, sizeof d->name);
            int dup = 0;
            for (int k = 0; k < i; k++) dup |= strcmp(w->d[k].name, d->name) == 0;
            if (!dup) break;
            SG_ASSERT(attempt < 100000);
        }
        d->n_exemplars = d->heldout ? 3 + (int)sg_rng_below(&r, 3) : 0;
    }

    /* cohorts */
    w->per_val = o->per_class / 2 > 4 ? o->per_class / 2 : 4;
    w->n_screen = 10 * o->per_class > 40 ? 10 * o->per_class : 40;
    int H = w->n_heldout, *hp = sg_xmalloc(sizeof(int) * (size_t)H);
    for (int j = 0; j < H; j++) hp[j] = w->n_train + j;
    sg_rng_shuffle_int(&r, hp, (size_t)H);
    /* two screened diseases (with all five exemplars: a screen task compares
     * them with a varied reference) and a third with positives but no task */
    w->n_screened = 2;
    for (int k = 0; k < 3; k++) {
        w->screened[k] = hp[(H - 1 - k + H) % H];
        if (k < w->n_screened) w->d[w->screened[k]].n_exemplars = 5;
        w->screen_pos[k] = k < 2 ? (w->n_screen / 25 > 2 ? w->n_screen / 25 : 2) : (w->n_screen / 50 > 1 ? w->n_screen / 50 : 1);
    }

    /* tasks: differentials among look-alike held-out diseases, then screens
     * against the reference */
    int cls[8] = {0};
    int k3 = H < 3 ? H : 3, k4 = H < 4 ? H : 4, k5 = H < 5 ? H : 5;
    int min_ex = 5;
    lookalikes(w, hp, H, 0, k3, cls);
    for (int i = 0; i < k3; i++)
        if (w->d[cls[i]].n_exemplars < min_ex) min_ex = w->d[cls[i]].n_exemplars;
    set_task(&w->tasks[w->n_tasks++], "diff3-images-text", 0, cls, k3, min_ex, 1);
    /* the same differential, open set: the other held-out diseases are in its
     * shards labelled "none of these", and should be rejected */
    set_task(&w->tasks[w->n_tasks], "diff3-open-set", 0, cls, k3, min_ex, 1);
    w->tasks[w->n_tasks++].open_set = 1;
    lookalikes(w, hp, H, 3 % H, k4, cls);
    set_task(&w->tasks[w->n_tasks++], "diff4-1shot", 0, cls, k4, 1, 1);
    lookalikes(w, hp, H, 7 % H, k5, cls);
    set_task(&w->tasks[w->n_tasks++], "diff5-3shot", 0, cls, k5, 3, 1);
    set_task(&w->tasks[w->n_tasks++], "diff5-text-only", 0, cls, k5, 0, 1);
    set_task(&w->tasks[w->n_tasks++], "diff5-images-only", 0, cls, k5, 3, 0);
    for (int k = 0; k < w->n_screened; k++) {
        char id[48];
        snprintf(id, sizeof id, "screen-%s", w->d[w->screened[k]].label);
        set_task(&w->tasks[w->n_tasks++], id, 1, &w->screened[k], 1, 5, 1);
    }
    free(hp);
    return SG_OK;
}

/* ---- writing ------------------------------------------------------------- */

static void json_str(sg_buf *b, const char *s) {
    sg_buf_append(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') sg_buf_printf(b, "\\%c", c);
        else if (c < 0x20) sg_buf_printf(b, "\\u%04x", c);
        else sg_buf_append(b, s, 1);
    }
    sg_buf_append(b, "\"", 1);
}

static sg_status write_plain(const char *path, const void *data, size_t len, sg_err *err) {
    FILE *f = fopen(path, "wb");
    if (!f) return sg_err_set(err, SG_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    int ok = fwrite(data, 1, len, f) == len;
    ok &= fclose(f) == 0;
    if (!ok) return sg_err_set(err, SG_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return SG_OK;
}

typedef struct writer_ctx {
    const sg_demo_opts *o;
    const sg_demo_world *w;
    const char *out;
    uint8_t *rgb; /* (size, size, 3) */
    sg_buf png;
    double t0, last_log;
    long done, total; /* images, for progress */
} writer_ctx;

static void progress(writer_ctx *c, const char *what, int force) {
    if (!c->o->progress) return;
    double now = sg_now();
    if (!force && now - c->last_log < 2.0) return;
    c->last_log = now;
    sg_log(SG_LOG_INFO, "demo-world: %s: %ld/%ld images (%.1f s)", what, c->done, c->total, now - c->t0);
}

/* Renders image (role, disease, index) of disease di into c->png. */
static sg_status render_png(writer_ctx *c, int role, int di, int index, sg_err *err) {
    const sg_demo_disease *d = &c->w->d[di];
    sg_demo_render(&d->a, c->o->seed, image_stream(role, di, index), c->o->size, c->rgb);
    c->png.len = 0;
    c->done++;
    return sg_demo_png_encode(c->rgb, c->o->size, c->o->size, &c->png, err);
}

static char *join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = sg_xmalloc(n);
    snprintf(p, n, "%s/%s", a, b);
    return p;
}

/* A sequence of shards NAME-%06d.tar.zst in OUT/shards with an index. */
typedef struct shard_seq {
    const char *stem; /* "train", "val", "screen" */
    int per_shard;
    sg_shard_writer *w;
    int n_in, n_shards;
    sg_buf index; /* the "shards" array entries */
} shard_seq;

static sg_status seq_close(shard_seq *s, sg_err *err) {
    if (!s->w) return SG_OK;
    sg_shard_info info;
    sg_status st = sg_shard_writer_close(s->w, &info, err);
    sg_shard_writer_free(s->w);
    s->w = NULL;
    if (st != SG_OK) return st;
    sg_buf_printf(&s->index, "%s    {\"path\": \"%s-%06d.tar.zst\", \"samples\": %llu, \"bytes\": %llu, \"sha256\": \"%s\"}",
                  s->n_shards ? ",\n" : "", s->stem, s->n_shards, (unsigned long long)info.samples,
                  (unsigned long long)info.bytes, info.sha256);
    s->n_shards++;
    s->n_in = 0;
    return SG_OK;
}

static sg_status seq_add(writer_ctx *c, shard_seq *s, const char *key, int label, sg_err *err) {
    if (s->w && s->n_in == s->per_shard) {
        sg_status st = seq_close(s, err);
        if (st != SG_OK) return st;
    }
    if (!s->w) {
        char name[4096];
        snprintf(name, sizeof name, "%s/shards/%s-%06d.tar.zst", c->out, s->stem, s->n_shards);
        s->w = sg_shard_writer_open(name, SG_COMPRESS_ZSTD, 0, err);
        if (!s->w) return SG_ERR_IO;
    }
    char cls[16];
    snprintf(cls, sizeof cls, "%d", label);
    sg_member m[2] = {{"png", c->png.data, c->png.len}, {"cls", (const uint8_t *)cls, strlen(cls)}};
    s->n_in++;
    return sg_shard_writer_add(s->w, key, m, label >= 0 ? 2 : 1, err);
}

/* Closes the last shard and writes shards/STEM-index.json with these classes. */
static sg_status seq_finish(writer_ctx *c, shard_seq *s, const int *classes, int n_classes, long total, sg_err *err) {
    sg_status st = seq_close(s, err);
    if (st != SG_OK) return st;
    sg_buf b = {0};
    sg_buf_printf(&b, "{\n  \"format\": \"sgps-shards\",\n  \"version\": 1,\n  \"classes\": [");
    for (int i = 0; i < n_classes; i++) {
        sg_buf_printf(&b, "%s", i ? ", " : "");
        json_str(&b, c->w->d[classes[i]].id);
    }
    sg_buf_printf(&b, "],\n  \"shards\": [\n%.*s\n  ],\n  \"total_samples\": %ld,\n", (int)s->index.len,
                  (const char *)s->index.data, total);
    sg_buf_printf(&b, "  \"generator\": {\"tool\": \"sgps demo-world\", \"seed\": %llu}\n}\n",
                  (unsigned long long)c->o->seed);
    char name[4096];
    snprintf(name, sizeof name, "%s/shards/%s-index.json", c->out, s->stem);
    st = sg_file_write_atomic(name, b.data, b.len, err);
    sg_buf_free(&b);
    sg_buf_free(&s->index);
    return st;
}

static sg_status write_training(writer_ctx *c, sg_err *err) {
    const sg_demo_world *w = c->w;
    sg_buf csv = {0};
    sg_buf_printf(&csv, "path,label\n");
    shard_seq seq = {"train", TRAIN_SHARD_SAMPLES, NULL, 0, 0, {0}};
    sg_status st = SG_OK;
    int *classes = sg_xmalloc(sizeof(int) * (size_t)w->n_train);
    for (int i = 0; i < w->n_train && st == SG_OK; i++) {
        const sg_demo_disease *d = &w->d[i];
        classes[i] = i;
        char rel[128], key[64];
        snprintf(rel, sizeof rel, "train/images/%s", d->label);
        char *dir = join(c->out, rel);
        st = sg_mkdir_p(dir, err);
        free(dir);
        for (int j = 0; j < c->o->per_class && st == SG_OK; j++) {
            if ((st = render_png(c, ROLE_TRAIN, i, j, err)) != SG_OK) break;
            snprintf(rel, sizeof rel, "images/%s/%s-%04d.png", d->label, d->label, j);
            sg_buf_printf(&csv, "%s,%s\n", rel, d->label);
            snprintf(rel, sizeof rel, "train/images/%s/%s-%04d.png", d->label, d->label, j);
            char *p = join(c->out, rel);
            st = write_plain(p, c->png.data, c->png.len, err);
            free(p);
            snprintf(key, sizeof key, "%s/%04d", d->label, j);
            if (st == SG_OK) st = seq_add(c, &seq, key, i, err);
            progress(c, "training images", 0);
        }
    }
    if (st == SG_OK) st = seq_finish(c, &seq, classes, w->n_train, (long)w->n_train * c->o->per_class, err);
    if (st == SG_OK) {
        char *p = join(c->out, "train/labels.csv");
        st = sg_file_write_atomic(p, csv.data, csv.len, err);
        free(p);
    }
    sg_shard_writer_free(seq.w);
    sg_buf_free(&seq.index);
    sg_buf_free(&csv);
    free(classes);
    return st;
}

static sg_status write_exemplars(writer_ctx *c, sg_err *err) {
    const sg_demo_world *w = c->w;
    sg_status st = SG_OK;
    for (int i = w->n_train; i < w->n && st == SG_OK; i++)
        for (int e = 0; e < w->d[i].n_exemplars && st == SG_OK; e++) {
            if ((st = render_png(c, ROLE_EXEMPLAR, i, e, err)) != SG_OK) break;
            char rel[128];
            snprintf(rel, sizeof rel, "exemplars/%s-%d.png", w->d[i].label, e + 1);
            char *p = join(c->out, rel);
            st = write_plain(p, c->png.data, c->png.len, err);
            free(p);
        }
    /* the reference: common lesions, one exemplar from each of five training diseases */
    for (int e = 0; e < REFERENCE_EXEMPLARS && st == SG_OK; e++) {
        int di = e * w->n_train / REFERENCE_EXEMPLARS;
        if ((st = render_png(c, ROLE_REFERENCE, di, e, err)) != SG_OK) break;
        char rel[128];
        snprintf(rel, sizeof rel, "exemplars/ref-common-%d.png", e + 1);
        char *p = join(c->out, rel);
        st = write_plain(p, c->png.data, c->png.len, err);
        free(p);
    }
    progress(c, "exemplars", 1);
    return st;
}

/* The labelled validation cohort over the held-out diseases: val shards (.cls =
 * index among held-out diseases, val-index.json names them) and the same
 * images as the heldout/ ImageFolder for eval-fewshot. */
static sg_status write_validation(writer_ctx *c, sg_err *err) {
    const sg_demo_world *w = c->w;
    int H = w->n_heldout, n = H * w->per_val;
    int *order = sg_xmalloc(sizeof(int) * (size_t)n), *classes = sg_xmalloc(sizeof(int) * (size_t)H);
    for (int i = 0; i < n; i++) order[i] = i;
    for (int j = 0; j < H; j++) classes[j] = w->n_train + j;
    sg_rng r;
    sg_rng_seed2(&r, c->o->seed, image_stream(ROLE_PLAN, 1, 0));
    sg_rng_shuffle_int(&r, order, (size_t)n);
    sg_buf csv = {0};
    sg_buf_printf(&csv, "path,label\n");
    shard_seq seq = {"val", COHORT_SHARD_SAMPLES, NULL, 0, 0, {0}};
    sg_status st = SG_OK;
    for (int j = 0; j < H && st == SG_OK; j++) {
        char rel[128];
        snprintf(rel, sizeof rel, "heldout/images/%s", w->d[w->n_train + j].label);
        char *dir = join(c->out, rel);
        st = sg_mkdir_p(dir, err);
        free(dir);
    }
    for (int k = 0; k < n && st == SG_OK; k++) {
        int j = order[k] / w->per_val, idx = order[k] % w->per_val, di = w->n_train + j;
        if ((st = render_png(c, ROLE_VAL, di, idx, err)) != SG_OK) break;
        char key[32], rel[128];
        snprintf(key, sizeof key, "v%06d", k);
        snprintf(rel, sizeof rel, "images/%s/%s.png", w->d[di].label, key);
        sg_buf_printf(&csv, "%s,%s\n", rel, w->d[di].label);
        snprintf(rel, sizeof rel, "heldout/images/%s/%s.png", w->d[di].label, key);
        char *p = join(c->out, rel);
        st = write_plain(p, c->png.data, c->png.len, err);
        free(p);
        if (st == SG_OK) st = seq_add(c, &seq, key, j, err);
        progress(c, "validation images", 0);
    }
    if (st == SG_OK) st = seq_finish(c, &seq, classes, H, n, err);
    if (st == SG_OK) {
        char *p = join(c->out, "heldout/labels.csv");
        st = sg_file_write_atomic(p, csv.data, csv.len, err);
        free(p);
    }
    sg_shard_writer_free(seq.w);
    sg_buf_free(&seq.index);
    sg_buf_free(&csv);
    free(order);
    free(classes);
    return st;
}

/* The unlabelled screening cohort: positives of the screened diseases (and of
 * one more held-out disease, with no screen task) among common lesions from
 * the training diseases. The truth goes to screen-truth.csv only. */
static sg_status write_screening(writer_ctx *c, sg_err *err) {
    const sg_demo_world *w = c->w;
    int n = w->n_screen;
    int *who = sg_xmalloc(sizeof(int) * (size_t)n), k = 0;
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < w->screen_pos[s] && k < n; i++) who[k++] = w->screened[s];
    sg_rng r;
    sg_rng_seed2(&r, c->o->seed, image_stream(ROLE_PLAN, 2, 0));
    while (k < n) who[k++] = (int)sg_rng_below(&r, (uint32_t)w->n_train);
    sg_rng_shuffle_int(&r, who, (size_t)n);
    sg_buf truth = {0};
    sg_buf_printf(&truth, "key,shard,truth,positive\n");
    shard_seq seq = {"screen", COHORT_SHARD_SAMPLES, NULL, 0, 0, {0}};
    sg_status st = SG_OK;
    for (k = 0; k < n && st == SG_OK; k++) {
        if ((st = render_png(c, ROLE_SCREEN, who[k], k, err)) != SG_OK) break;
        char key[32];
        snprintf(key, sizeof key, "s%06d", k);
        sg_buf_printf(&truth, "%s,shards/screen-%06d.tar.zst,%s,%d\n", key, k / COHORT_SHARD_SAMPLES, w->d[who[k]].id,
                      w->d[who[k]].heldout);
        st = seq_add(c, &seq, key, -1, err);
        progress(c, "screening images", 0);
    }
    if (st == SG_OK) st = seq_finish(c, &seq, NULL, 0, n, err);
    if (st == SG_OK) {
        char *p = join(c->out, "screen-truth.csv");
        st = sg_file_write_atomic(p, truth.data, truth.len, err);
        free(p);
    }
    sg_shard_writer_free(seq.w);
    sg_buf_free(&seq.index);
    sg_buf_free(&truth);
    free(who);
    return st;
}

static sg_status write_registry(writer_ctx *c, sg_err *err) {
    const sg_demo_world *w = c->w;
    sg_buf b = {0};
    sg_buf_printf(&b, "{\"version\": 1,\n \"diseases\": [\n");
    for (int i = 0; i < w->n; i++) {
        const sg_demo_disease *d = &w->d[i];
        sg_buf_printf(&b, "  {\"id\": ");
        json_str(&b, d->id);
        sg_buf_printf(&b, ", \"name\": ");
        json_str(&b, d->name);
        sg_buf_printf(&b, ", \"modality\": \"%s\", \"codes\": {},\n   \"description\": ", MODALITY);
        json_str(&b, d->description);
        if (d->n_exemplars) {
            sg_buf_printf(&b, ",\n   \"exemplars\": [");
            for (int e = 0; e < d->n_exemplars; e++) sg_buf_printf(&b, "%s\"exemplars/%s-%d.png\"", e ? ", " : "", d->label, e + 1);
            sg_buf_printf(&b, "]");
        }
        sg_buf_printf(&b, "},\n");
    }
    sg_buf_printf(&b, "  {\"id\": \"%s\", \"name\": \"common lesions (reference)\", \"modality\": \"%s\", \"codes\": {},\n"
                      "   \"description\": \"Common benign lesions of any shape and colour, as seen every day; "
                      "none of the rare diseases under study.\",\n   \"exemplars\": [",
                  REFERENCE_ID, MODALITY);
    for (int e = 0; e < REFERENCE_EXEMPLARS; e++) sg_buf_printf(&b, "%s\"exemplars/ref-common-%d.png\"", e ? ", " : "", e + 1);
    sg_buf_printf(&b, "]}\n ]\n}\n");
    char *p = join(c->out, "registry.json");
    sg_status st = sg_file_write_atomic(p, b.data, b.len, err);
    free(p);
    sg_buf_free(&b);
    return st;
}

static int heldout_index(const sg_demo_world *w, int di) { return di - w->n_train; }

static sg_status write_manifest(writer_ctx *c, sg_err *err) {
    const sg_demo_world *w = c->w;
    int n_val_shards = (w->n_heldout * w->per_val + COHORT_SHARD_SAMPLES - 1) / COHORT_SHARD_SAMPLES;
    int n_screen_shards = (w->n_screen + COHORT_SHARD_SAMPLES - 1) / COHORT_SHARD_SAMPLES;
    sg_buf b = {0};
    sg_buf_printf(&b, "{\n  \"version\": 1,\n  \"engine\": \"engine.sgpe\",\n  \"registry\": \"registry.json\",\n"
                      "  \"output\": \"run\",\n  \"seed\": %llu,\n  \"bootstrap\": 1000,\n  \"batch\": 64,\n  \"tasks\": [\n",
                  (unsigned long long)c->o->seed);
    for (int t = 0; t < w->n_tasks; t++) {
        const sg_demo_task *k = &w->tasks[t];
        sg_buf_printf(&b, "    {\"id\": \"%s\", \"kind\": \"%s\", \"classes\": [", k->id, k->screen ? "screen" : "evaluate");
        for (int i = 0; i < k->n_classes; i++) sg_buf_printf(&b, "%s\"%s\"", i ? ", " : "", w->d[k->cls[i]].id);
        if (k->screen) {
            sg_buf_printf(&b, ", \"%s\"], \"reference\": \"%s\",\n     \"shots\": %d, \"text\": %s, "
                              "\"shards\": \"shards/screen-{000000..%06d}.tar.zst\", \"threshold\": 0.8}",
                          REFERENCE_ID, REFERENCE_ID, k->shots, k->text ? "true" : "false", n_screen_shards - 1);
        } else {
            sg_buf_printf(&b, "],\n     \"shots\": %d, \"text\": %s, \"shards\": \"shards/val-{000000..%06d}.tar.zst\", "
                              "\"threshold\": 0.5,\n     \"labels\": {",
                          k->shots, k->text ? "true" : "false", n_val_shards - 1);
            for (int i = 0; i < k->n_classes; i++)
                sg_buf_printf(&b, "%s\"%d\": \"%s\"", i ? ", " : "", heldout_index(w, k->cls[i]), w->d[k->cls[i]].id);
            if (k->open_set) /* every other held-out disease: none of these */
                for (int h = 0; h < w->n_heldout; h++) {
                    int in = 0;
                    for (int i = 0; i < k->n_classes; i++) in |= heldout_index(w, k->cls[i]) == h;
                    if (!in) sg_buf_printf(&b, ", \"%d\": null", h);
                }
            sg_buf_printf(&b, "}%s}", k->open_set ? ",\n     \"open_set\": true" : "");
        }
        sg_buf_printf(&b, "%s\n", t + 1 < w->n_tasks ? "," : "");
    }
    sg_buf_printf(&b, "  ]\n}\n");
    char *p = join(c->out, "manifest.json");
    sg_status st = sg_file_write_atomic(p, b.data, b.len, err);
    free(p);
    sg_buf_free(&b);
    return st;
}

/* world.json: the plan in full, for people and tests. */
static sg_status write_world_json(writer_ctx *c, sg_err *err) {
    const sg_demo_world *w = c->w;
    const sg_demo_opts *o = c->o;
    sg_buf b = {0};
    sg_buf_printf(&b, "{\n  \"format\": \"sgps-demo-world\",\n  \"version\": 1,\n  \"seed\": %llu,\n"
                      "  \"size\": %d,\n  \"images_per_class\": %d,\n  \"val_per_disease\": %d,\n  \"screen_images\": %d,\n"
                      "  \"n_train\": %d,\n  \"n_heldout\": %d,\n  \"attributes\": {",
                  (unsigned long long)o->seed, o->size, o->per_class, w->per_val, w->n_screen, w->n_train, w->n_heldout);
    for (int k = 0; k < SG_DEMO_KINDS; k++) {
        sg_buf_printf(&b, "%s\n    \"%s\": [", k ? "," : "", sg_demo_kind_name((sg_demo_kind)k));
        for (int v = 0; v < sg_demo_kind_count((sg_demo_kind)k); v++)
            sg_buf_printf(&b, "%s\"%s\"", v ? ", " : "", sg_demo_value_name((sg_demo_kind)k, v));
        sg_buf_printf(&b, "]");
    }
    sg_buf_printf(&b, "\n  },\n  \"diseases\": [\n");
    static const char *const slot_names[SG_DEMO_SLOTS] = {"shape", "border", "colour", "colour2", "texture", "size", "background"};
    for (int i = 0; i < w->n; i++) {
        const sg_demo_disease *d = &w->d[i];
        sg_buf_printf(&b, "    {\"id\": \"%s\", \"split\": \"%s\"", d->id, d->heldout ? "heldout" : "train");
        for (int s = 0; s < SG_DEMO_SLOTS; s++) {
            int v = d->a.v[s];
            if (v < 0) sg_buf_printf(&b, ", \"%s\": null", slot_names[s]);
            else sg_buf_printf(&b, ", \"%s\": \"%s\"", slot_names[s], sg_demo_value_name(sg_demo_slot_kind((sg_demo_slot)s), v));
        }
        sg_buf_printf(&b, ", \"exemplars\": %d}%s\n", d->n_exemplars, i + 1 < w->n ? "," : "");
    }
    sg_buf_printf(&b, "  ],\n  \"screened\": [");
    for (int k = 0; k < 3; k++)
        sg_buf_printf(&b, "%s{\"id\": \"%s\", \"positives\": %d, \"task\": %s}", k ? ", " : "", w->d[w->screened[k]].id,
                      w->screen_pos[k], k < w->n_screened ? "true" : "false");
    sg_buf_printf(&b, "]\n}\n");
    char *p = join(c->out, "world.json");
    sg_status st = sg_file_write_atomic(p, b.data, b.len, err);
    free(p);
    sg_buf_free(&b);
    return st;
}

sg_status sg_demo_world_write(const sg_demo_opts *o, const sg_demo_world *w, const char *out_dir, sg_err *err) {
    if (strlen(out_dir) > 3000) return sg_err_set(err, SG_ERR_ARG, "output folder name too long (%zu bytes)", strlen(out_dir));
    writer_ctx c;
    memset(&c, 0, sizeof c);
    c.o = o;
    c.w = w;
    c.out = out_dir;
    c.t0 = c.last_log = sg_now();
    long n_ex = REFERENCE_EXEMPLARS;
    for (int i = 0; i < w->n; i++) n_ex += w->d[i].n_exemplars;
    c.total = (long)w->n_train * o->per_class + n_ex + (long)w->n_heldout * w->per_val + w->n_screen;
    static const char *const dirs[] = {"train/images", "heldout/images", "exemplars", "shards"};
    sg_status st0 = sg_mkdir_p(out_dir, err);
    if (st0 != SG_OK) return st0;
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        char *p = join(out_dir, dirs[i]);
        sg_status st = sg_mkdir_p(p, err);
        free(p);
        if (st != SG_OK) return st;
    }
    c.rgb = sg_xmalloc((size_t)o->size * o->size * 3);
    sg_status st = write_training(&c, err);
    if (st == SG_OK) st = write_exemplars(&c, err);
    if (st == SG_OK) st = write_validation(&c, err);
    if (st == SG_OK) st = write_screening(&c, err);
    if (st == SG_OK) st = write_registry(&c, err);
    if (st == SG_OK) st = write_manifest(&c, err);
    if (st == SG_OK) st = write_world_json(&c, err);
    if (st == SG_OK) progress(&c, "done", 1);
    free(c.rgb);
    sg_buf_free(&c.png);
    return st;
}
