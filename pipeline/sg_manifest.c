/* sg_manifest.c — the disease registry and the run manifest: parsing with
 * cJSON and validation that collects every problem (file, JSON path, reason)
 * before any work starts. Schema: docs/formats-manifest.md.
 *
 * Relative paths: engine, registry, output and shards resolve against the
 * manifest's folder; exemplars against the registry's folder. */
#include "sg_pipeline.h"
#include "sg_io.h"
#include "sg_synth.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_JSON_BYTES ((size_t)256 << 20)
#define MAX_SHOTS 16

/* ---- diagnostics ---- */

void sg_diag_add(sg_diag *d, sg_diag_kind kind, const char *fmt, ...) {
    if (d->n == d->cap) {
        d->cap = d->cap ? 2 * d->cap : 16;
        d->msgs = sg_xrealloc(d->msgs, d->cap * sizeof *d->msgs);
        d->kind = sg_xrealloc(d->kind, d->cap * sizeof *d->kind);
    }
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    d->msgs[d->n] = sg_xstrdup(buf);
    d->kind[d->n++] = kind;
}

size_t sg_diag_count(const sg_diag *d, sg_diag_kind kind) {
    size_t c = 0;
    for (size_t i = 0; i < d->n; i++) c += d->kind[i] == kind;
    return c;
}

void sg_diag_free(sg_diag *d) {
    for (size_t i = 0; i < d->n; i++) free(d->msgs[i]);
    free(d->msgs);
    free(d->kind);
    memset(d, 0, sizeof *d);
}

const char *sg_task_kind_str(sg_task_kind k) { return k == SG_TASK_SCREEN ? "screen" : "evaluate"; }

/* ---- helpers ---- */

static char *dir_of(const char *path) {
    const char *s = strrchr(path, '/');
    if (!s) return sg_xstrdup("");
    size_t n = (size_t)(s - path) + 1;
    char *d = sg_xmalloc(n + 1);
    memcpy(d, path, n);
    d[n] = 0;
    return d;
}

static char *resolve(const char *dir, const char *p) {
    if (p[0] == '/' || !dir[0]) return sg_xstrdup(p);
    size_t n = strlen(dir) + strlen(p) + 1;
    char *r = sg_xmalloc(n);
    snprintf(r, n, "%s%s", dir, p);
    return r;
}

static int file_readable(const char *p) { return access(p, R_OK) == 0; }

/* Ids name folders and appear in CSV: letters, digits and . _ - / :, no "..", not leading '.' or '/'. */
static int safe_id(const char *s, int allow_slash) {
    if (!s[0] || s[0] == '.' || s[0] == '/' || strstr(s, "..") || strlen(s) > 200) return 0;
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                 c == '_' || c == '-' || c == ':' || (allow_slash && c == '/');
        if (!ok) return 0;
    }
    return 1;
}

static void check_keys(sg_diag *d, const char *file, const char *path, const cJSON *obj, const char *const *allowed) {
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++) ok |= strcmp(it->string, *a) == 0;
        if (!ok) sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.%s: unknown key", file, path, it->string);
    }
}

/* A string member: NULL (and a diagnostic when required) if absent or not a string. */
static const char *get_str(sg_diag *d, const char *file, const char *path, const cJSON *obj, const char *key,
                           int required) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) {
        if (required) sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.%s: missing (a string is required)", file, path, key);
        return NULL;
    }
    if (!cJSON_IsString(v) || !v->valuestring[0]) {
        sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.%s: must be a non-empty string", file, path, key);
        return NULL;
    }
    return v->valuestring;
}

static char *dup_or_null(const char *s) { return s ? sg_xstrdup(s) : NULL; }

static cJSON *parse_file(const char *path, sg_diag *d, uint8_t **bytes, size_t *len) {
    sg_err err;
    uint8_t *data;
    size_t n;
    if (sg_file_read_all(path, &data, &n, MAX_JSON_BYTES, &err) != SG_OK) {
        sg_diag_add(d, SG_DIAG_ERROR, "%s", err.msg);
        return NULL;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)data, n, &end, 0);
    if (!root) {
        size_t off = end ? (size_t)(end - (const char *)data) : 0, line = 1;
        for (size_t i = 0; i < off && i < n; i++) line += data[i] == '\n';
        sg_diag_add(d, SG_DIAG_ERROR, "%s: $: not valid JSON (near line %zu)", path, line);
        free(data);
        return NULL;
    }
    if (bytes) {
        *bytes = data;
        *len = n;
    } else {
        free(data);
    }
    return root;
}

/* ---- registry ---- */

static void load_registry(sg_manifest *m, const char *path, sg_diag *d) {
    cJSON *root = parse_file(path, d, NULL, NULL);
    if (!root) return;
    char *dir = dir_of(path);
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "diseases");
    if (!cJSON_IsObject(root) || !cJSON_IsArray(list)) {
        sg_diag_add(d, SG_DIAG_ERROR, "%s: $.diseases: must be an array", path);
        goto done;
    }
    static const char *const keys[] = {"id", "name", "codes", "modality", "description", "exemplars", NULL};
    int n = cJSON_GetArraySize(list), i = 0;
    m->diseases = sg_xcalloc((size_t)n + 1, sizeof *m->diseases);
    const cJSON *it;
    cJSON_ArrayForEach(it, list) {
        char jp[64];
        snprintf(jp, sizeof jp, "$.diseases[%d]", i++);
        if (!cJSON_IsObject(it)) {
            sg_diag_add(d, SG_DIAG_ERROR, "%s: %s: must be an object", path, jp);
            continue;
        }
        check_keys(d, path, jp, it, keys);
        const char *id = get_str(d, path, jp, it, "id", 1);
        if (!id) continue;
        if (!safe_id(id, 1)) {
            sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.id: '%s' must use only letters, digits and . _ - / :", path, jp, id);
            continue;
        }
        for (int j = 0; j < m->n_diseases; j++)
            if (strcmp(m->diseases[j].id, id) == 0)
                sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.id: duplicate id '%s'", path, jp, id);
        sg_disease *e = &m->diseases[m->n_diseases++];
        e->id = sg_xstrdup(id);
        e->name = dup_or_null(get_str(d, path, jp, it, "name", 0));
        e->modality = dup_or_null(get_str(d, path, jp, it, "modality", 0));
        const cJSON *desc = cJSON_GetObjectItemCaseSensitive(it, "description");
        if (desc && !cJSON_IsString(desc)) sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.description: must be a string", path, jp);
        else if (desc) e->description = sg_xstrdup(desc->valuestring);
        const cJSON *codes = cJSON_GetObjectItemCaseSensitive(it, "codes");
        if (codes) {
            char cp[96];
            snprintf(cp, sizeof cp, "%s.codes", jp);
            if (!cJSON_IsObject(codes)) {
                sg_diag_add(d, SG_DIAG_ERROR, "%s: %s: must be an object", path, cp);
            } else {
                static const char *const ckeys[] = {"orpha", "icd10", NULL};
                check_keys(d, path, cp, codes, ckeys);
                e->orpha = dup_or_null(get_str(d, path, cp, codes, "orpha", 0));
                e->icd10 = dup_or_null(get_str(d, path, cp, codes, "icd10", 0));
            }
        }
        const cJSON *ex = cJSON_GetObjectItemCaseSensitive(it, "exemplars");
        if (ex && !cJSON_IsArray(ex)) {
            sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.exemplars: must be an array of paths", path, jp);
        } else if (ex) {
            e->exemplars = sg_xcalloc((size_t)cJSON_GetArraySize(ex) + 1, sizeof(char *));
            int k = 0;
            const cJSON *p;
            cJSON_ArrayForEach(p, ex) {
                if (!cJSON_IsString(p) || !p->valuestring[0])
                    sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.exemplars[%d]: must be a non-empty string", path, jp, k);
                else
                    e->exemplars[e->n_exemplars++] = resolve(dir, p->valuestring);
                k++;
            }
        }
    }
done:
    free(dir);
    cJSON_Delete(root);
}

static int find_disease(const sg_manifest *m, const char *id) {
    for (int i = 0; i < m->n_diseases; i++)
        if (strcmp(m->diseases[i].id, id) == 0) return i;
    return -1;
}

/* ---- tasks ---- */

static void parse_shards(sg_run_task *t, const char *mpath, const char *jp, const char *mdir, const char *spec,
                         int deep, sg_diag *d) {
    sg_err err;
    char **names = NULL;
    size_t n = 0;
    size_t l = strlen(spec);
    int is_index = l > 5 && strcmp(spec + l - 5, ".json") == 0;
    char *rspec = resolve(mdir, spec);
    sg_status s = is_index ? sg_shard_list_resolve(rspec, &names, &n, &err) : sg_braces_expand(spec, &names, &n, &err);
    if (s != SG_OK) {
        sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.shards: %s", mpath, jp,
                    err.msg);
        free(rspec);
        return;
    }
    free(rspec);
    if (n == 0) {
        sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.shards: '%s' names no shard", mpath, jp, spec);
        sg_strv_free(names, n);
        return;
    }
    t->shards = sg_xcalloc(n, sizeof(char *));
    t->shard_names = sg_xcalloc(n, sizeof(char *));
    size_t dl = strlen(mdir), missing = 0;
    for (size_t i = 0; i < n; i++) {
        if (is_index) {
            t->shards[i] = sg_xstrdup(names[i]);
            t->shard_names[i] = sg_xstrdup(dl && strncmp(names[i], mdir, dl) == 0 ? names[i] + dl : names[i]);
        } else {
            t->shards[i] = resolve(mdir, names[i]);
            t->shard_names[i] = sg_xstrdup(names[i]);
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(t->shards[j], t->shards[i]) == 0)
                sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.shards: shard '%s' listed twice", mpath, jp, t->shard_names[i]);
        if (deep && !file_readable(t->shards[i])) missing++;
    }
    t->n_shards = n;
    if (deep && missing == n) {
        sg_diag_add(d, SG_DIAG_DATA, "%s: %s.shards: '%s' matches no readable file (%zu names, e.g. %s)", mpath, jp,
                    spec, n, t->shards[0]);
    } else if (deep && missing) {
        for (size_t i = 0; i < n; i++)
            if (!file_readable(t->shards[i]))
                sg_diag_add(d, SG_DIAG_DATA, "%s: %s.shards: %s: %s", mpath, jp, t->shards[i], strerror(errno));
    }
    sg_strv_free(names, n);
}

static void parse_labels(sg_run_task *t, const char *mpath, const char *jp, const cJSON *map, sg_diag *d) {
    if (!cJSON_IsObject(map)) {
        sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.labels: must be an object {shard label: class}", mpath, jp);
        return;
    }
    int n = cJSON_GetArraySize(map);
    t->map_keys = sg_xcalloc((size_t)n + 1, sizeof(char *));
    t->map_class = sg_xcalloc((size_t)n + 1, sizeof(int));
    const cJSON *it;
    cJSON_ArrayForEach(it, map) {
        int c = -1;
        if (cJSON_IsNumber(it)) {
            double v = it->valuedouble;
            if (v == floor(v) && v >= 0 && v < t->n_classes) c = (int)v;
        } else if (cJSON_IsString(it)) {
            for (int k = 0; k < t->n_classes; k++)
                if (t->class_ids && t->class_ids[k] && strcmp(t->class_ids[k], it->valuestring) == 0) c = k;
        }
        if (c < 0) {
            sg_diag_add(d, SG_DIAG_ERROR,
                        "%s: %s.labels[\"%s\"]: must be a class index 0..%d or a registry id among the task's classes",
                        mpath, jp, it->string, t->n_classes - 1);
            continue;
        }
        t->map_keys[t->n_map] = sg_xstrdup(it->string);
        t->map_class[t->n_map++] = c;
    }
}

/* Decodes one exemplar to check it; the run decodes again (cheap, and a
 * worker needs the pixels anyway). */
static void check_exemplar(const sg_manifest *m, int di, int k, const char *task_id, int deep, sg_diag *d) {
    const char *p = m->diseases[di].exemplars[k];
    if (!deep) return;
    sg_err err;
    sg_image im;
    sg_image_limits lim = sg_image_limits_default();
    if (sg_image_load_file(p, &lim, &im, &err) != SG_OK) {
        sg_diag_add(d, SG_DIAG_DATA, "%s: $.diseases[%d].exemplars[%d]: %s (used by task '%s')", m->registry_path, di,
                    k, err.msg, task_id);
        return;
    }
    sg_image_free(&im);
}

static void parse_task(sg_manifest *m, const cJSON *jt, int ti, const char *mdir, int deep, sg_diag *d) {
    const char *mp = m->path;
    char jp[64];
    snprintf(jp, sizeof jp, "$.tasks[%d]", ti);
    sg_run_task *t = &m->tasks[m->n_tasks++];
    t->reference = -1;
    t->threshold = 0.5;
    if (!cJSON_IsObject(jt)) {
        sg_diag_add(d, SG_DIAG_ERROR, "%s: %s: must be an object", mp, jp);
        t->id = sg_xstrdup("?");
        return;
    }
    static const char *const keys[] = {"id", "kind", "classes", "reference", "shots", "text", "shards",
                                       "threshold", "labels", NULL};
    check_keys(d, mp, jp, jt, keys);
    const char *id = get_str(d, mp, jp, jt, "id", 1);
    if (id && !safe_id(id, 0))
        sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.id: '%s' must use only letters, digits and . _ - : (it names a folder)",
                    mp, jp, id);
    t->id = sg_xstrdup(id ? id : "?");
    for (int j = 0; id && j < m->n_tasks - 1; j++)
        if (strcmp(m->tasks[j].id, id) == 0)
            sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.id: duplicate task id '%s' (also $.tasks[%d])", mp, jp, id, j);
    const char *kind = get_str(d, mp, jp, jt, "kind", 1);
    if (kind && strcmp(kind, "evaluate") == 0) t->kind = SG_TASK_EVALUATE;
    else if (kind && strcmp(kind, "screen") == 0) t->kind = SG_TASK_SCREEN;
    else if (kind) sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.kind: '%s' is not one of evaluate, screen", mp, jp, kind);

    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(jt, "shots");
    t->shots = 0;
    if (!sh) sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.shots: missing (an integer 0..%d)", mp, jp, MAX_SHOTS);
    else if (!cJSON_IsNumber(sh) || sh->valuedouble != floor(sh->valuedouble) || sh->valuedouble < 0 ||
             sh->valuedouble > MAX_SHOTS)
        sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.shots: must be an integer 0..%d", mp, jp, MAX_SHOTS);
    else t->shots = (int)sh->valuedouble;
    const cJSON *tx = cJSON_GetObjectItemCaseSensitive(jt, "text");
    t->use_text = 1;
    if (tx && !cJSON_IsBool(tx)) sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.text: must be true or false", mp, jp);
    else if (tx) t->use_text = cJSON_IsTrue(tx);
    const cJSON *th = cJSON_GetObjectItemCaseSensitive(jt, "threshold");
    if (th && (!cJSON_IsNumber(th) || !(th->valuedouble >= 0 && th->valuedouble <= 1)))
        sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.threshold: must be a number in [0, 1]", mp, jp);
    else if (th) t->threshold = th->valuedouble;

    const cJSON *cl = cJSON_GetObjectItemCaseSensitive(jt, "classes");
    if (!cJSON_IsArray(cl) || cJSON_GetArraySize(cl) < 2 || cJSON_GetArraySize(cl) > SG_MAX_CLASSES) {
        sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.classes: must be an array of 2..%d registry ids", mp, jp, SG_MAX_CLASSES);
    } else {
        int n = cJSON_GetArraySize(cl), k = 0;
        t->n_classes = n;
        t->disease = sg_xcalloc((size_t)n, sizeof(int));
        t->class_ids = sg_xcalloc((size_t)n, sizeof(char *));
        const cJSON *c;
        cJSON_ArrayForEach(c, cl) {
            t->disease[k] = -1;
            if (!cJSON_IsString(c)) {
                sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.classes[%d]: must be a registry id (string)", mp, jp, k);
                t->class_ids[k] = sg_xstrdup("?");
                k++;
                continue;
            }
            t->class_ids[k] = sg_xstrdup(c->valuestring);
            for (int j = 0; j < k; j++)
                if (strcmp(t->class_ids[j], c->valuestring) == 0)
                    sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.classes[%d]: '%s' appears twice", mp, jp, k, c->valuestring);
            int di = find_disease(m, c->valuestring);
            if (di < 0 && m->diseases) {
                sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.classes[%d]: '%s' is not in the registry %s", mp, jp, k,
                            c->valuestring, m->registry_path);
            } else if (di >= 0) {
                t->disease[k] = di;
                const sg_disease *e = &m->diseases[di];
                if (e->n_exemplars < t->shots)
                    sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.classes[%d]: '%s' has %d exemplars in %s, the task asks for %d shots",
                                mp, jp, k, e->id, e->n_exemplars, m->registry_path, t->shots);
                for (int x = 0; x < t->shots && x < e->n_exemplars; x++) check_exemplar(m, di, x, t->id, deep, d);
                if (t->shots == 0 && (!t->use_text || !e->description))
                    sg_diag_add(d, SG_DIAG_ERROR,
                                "%s: %s.classes[%d]: '%s' would have neither exemplars (shots 0) nor a description (text %s)",
                                mp, jp, k, e->id, t->use_text ? "on, none in the registry" : "off");
            }
            k++;
        }
    }
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(jt, "reference");
    if (ref) {
        if (!cJSON_IsString(ref))
            sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.reference: must be a registry id among the classes", mp, jp);
        for (int k = 0; cJSON_IsString(ref) && k < t->n_classes; k++)
            if (strcmp(t->class_ids[k], ref->valuestring) == 0) t->reference = k;
        if (cJSON_IsString(ref) && t->reference < 0)
            sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.reference: '%s' is not among the task's classes", mp, jp,
                        ref->valuestring);
    }
    const cJSON *lm = cJSON_GetObjectItemCaseSensitive(jt, "labels");
    if (lm) parse_labels(t, mp, jp, lm, d);
    const char *shards = get_str(d, mp, jp, jt, "shards", 1);
    if (shards) {
        char sp[80];
        snprintf(sp, sizeof sp, "%s", jp);
        parse_shards(t, mp, sp, mdir, shards, deep, d);
    }
}

static void check_engine(sg_manifest *m, int deep, sg_diag *d) {
    sg_err err;
    if (!file_readable(m->engine_path)) {
        sg_diag_add(d, SG_DIAG_ERROR, "%s: $.engine: %s: %s", m->path, m->engine_path, strerror(errno));
        return;
    }
    if (sg_sha256_file(m->engine_path, m->engine_sha256, &err) != SG_OK) {
        sg_diag_add(d, SG_DIAG_ERROR, "%s: $.engine: %s", m->path, err.msg);
        return;
    }
    if (!deep) return;
    sg_engine *e = NULL;
    if (sg_engine_load(m->engine_path, &e, &err) != SG_OK)
        sg_diag_add(d, SG_DIAG_ERROR, "%s: $.engine: %s", m->path, err.msg);
    sg_engine_free(e);
}

sg_status sg_manifest_load(const char *path, int deep, sg_manifest **out, sg_diag *d) {
    *out = NULL;
    size_t n_before = sg_diag_count(d, SG_DIAG_ERROR);
    uint8_t *bytes = NULL;
    size_t len = 0;
    cJSON *root = parse_file(path, d, &bytes, &len);
    if (!root) return SG_ERR_FORMAT;
    sg_manifest *m = sg_xcalloc(1, sizeof *m);
    m->path = sg_xstrdup(path);
    m->seed = 1;
    m->bootstrap = 1000;
    m->batch = 64;
    char *mdir = dir_of(path);
    if (!cJSON_IsObject(root)) {
        sg_diag_add(d, SG_DIAG_ERROR, "%s: $: must be an object", path);
        goto done;
    }
    static const char *const keys[] = {"version", "engine", "registry", "output", "tasks", "seed", "bootstrap", "batch",
                                       NULL};
    check_keys(d, path, "$", root, keys);
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(root, "version");
    if (ver && (!cJSON_IsNumber(ver) || ver->valuedouble != 1))
        sg_diag_add(d, SG_DIAG_ERROR, "%s: $.version: this sgps reads manifest version %d", path, SG_MANIFEST_VERSION);
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(root, "seed");
    if (seed && (!cJSON_IsNumber(seed) || seed->valuedouble < 0 || seed->valuedouble != floor(seed->valuedouble) ||
                 seed->valuedouble > 9007199254740992.0))
        sg_diag_add(d, SG_DIAG_ERROR, "%s: $.seed: must be a non-negative integer", path);
    else if (seed) m->seed = (uint64_t)seed->valuedouble;
    const cJSON *bs = cJSON_GetObjectItemCaseSensitive(root, "bootstrap");
    if (bs && (!cJSON_IsNumber(bs) || bs->valuedouble < 1000 || bs->valuedouble > 100000 ||
               bs->valuedouble != floor(bs->valuedouble)))
        sg_diag_add(d, SG_DIAG_ERROR, "%s: $.bootstrap: must be an integer 1000..100000", path);
    else if (bs) m->bootstrap = (int)bs->valuedouble;
    const cJSON *bt = cJSON_GetObjectItemCaseSensitive(root, "batch");
    if (bt && (!cJSON_IsNumber(bt) || bt->valuedouble < 1 || bt->valuedouble > 4096 ||
               bt->valuedouble != floor(bt->valuedouble)))
        sg_diag_add(d, SG_DIAG_ERROR, "%s: $.batch: must be an integer 1..4096", path);
    else if (bt) m->batch = (int)bt->valuedouble;

    const char *eng = get_str(d, path, "$", root, "engine", 1);
    const char *reg = get_str(d, path, "$", root, "registry", 1);
    const char *outp = get_str(d, path, "$", root, "output", 1);
    if (outp) m->output = resolve(mdir, outp);
    if (eng) {
        m->engine_path = resolve(mdir, eng);
        check_engine(m, deep, d);
    }
    if (reg) {
        m->registry_path = resolve(mdir, reg);
        load_registry(m, m->registry_path, d);
    }
    const cJSON *tasks = cJSON_GetObjectItemCaseSensitive(root, "tasks");
    if (!cJSON_IsArray(tasks) || cJSON_GetArraySize(tasks) == 0) {
        sg_diag_add(d, SG_DIAG_ERROR, "%s: $.tasks: must be a non-empty array", path);
    } else {
        m->tasks = sg_xcalloc((size_t)cJSON_GetArraySize(tasks), sizeof *m->tasks);
        const cJSON *jt;
        int ti = 0;
        cJSON_ArrayForEach(jt, tasks) parse_task(m, jt, ti++, mdir, deep, d);
    }
    for (int t = 0; t < m->n_tasks; t++) m->n_units += m->tasks[t].n_shards;
    if (sg_sha256_file(path, m->manifest_sha256, NULL) != SG_OK) memset(m->manifest_sha256, 0, sizeof m->manifest_sha256);
    {
        sg_sha256 c;
        uint8_t dig[32];
        sg_sha256_init(&c);
        sg_sha256_update(&c, bytes, len);
        sg_sha256_update(&c, m->engine_sha256, 64);
        sg_sha256_final(&c, dig);
        sg_sha256_hex(dig, m->config_hash);
    }
done:
    free(mdir);
    free(bytes);
    cJSON_Delete(root);
    *out = m;
    return sg_diag_count(d, SG_DIAG_ERROR) > n_before ? SG_ERR_FORMAT : SG_OK;
}

void sg_manifest_free(sg_manifest *m) {
    if (!m) return;
    for (int i = 0; i < m->n_diseases; i++) {
        sg_disease *e = &m->diseases[i];
        free(e->id);
        free(e->name);
        free(e->modality);
        free(e->description);
        free(e->orpha);
        free(e->icd10);
        for (int k = 0; k < e->n_exemplars; k++) free(e->exemplars[k]);
        free(e->exemplars);
    }
    free(m->diseases);
    for (int i = 0; i < m->n_tasks; i++) {
        sg_run_task *t = &m->tasks[i];
        free(t->id);
        for (int k = 0; k < t->n_classes; k++) free(t->class_ids[k]);
        free(t->class_ids);
        free(t->disease);
        for (size_t s = 0; s < t->n_shards; s++) {
            free(t->shards[s]);
            free(t->shard_names[s]);
        }
        free(t->shards);
        free(t->shard_names);
        for (int k = 0; k < t->n_map; k++) free(t->map_keys[k]);
        free(t->map_keys);
        free(t->map_class);
    }
    free(m->tasks);
    free(m->path);
    free(m->engine_path);
    free(m->registry_path);
    free(m->output);
    free(m);
}

void sg_manifest_unit(const sg_manifest *m, size_t u, int *task, size_t *shard) {
    SG_ASSERT(u < m->n_units);
    for (int t = 0; t < m->n_tasks; t++) {
        if (u < m->tasks[t].n_shards) {
            *task = t;
            *shard = u;
            return;
        }
        u -= m->tasks[t].n_shards;
    }
    SG_ASSERT(0);
}

