/* sg_manifest.c — the disease registry and the run manifest: parsing with
 * cJSON and validation that collects every problem (file, JSON path, reason)
 * before any work starts. Schema: docs/formats-manifest.md.
 *
 * Relative paths: engine, registry, output and shards resolve against the
 * manifest's folder; exemplars against the registry's folder.
 *
 * Scale: a manifest may hold ten thousand tasks of a thousand shards each.
 * Everything here is linear in what the manifest lists: ids are looked up in
 * hash tables, each distinct shard list ("shards" string) is expanded once
 * and each distinct shard file is kept once (tasks point at one shared array
 * of 4-byte file indices per distinct string), file
 * checks and exemplar decodes happen once per file, and unit → task is a
 * binary search over the tasks' first units. */
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
#define DEFAULT_OPEN_ACCEPT 0.95

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

const char *sg_open_rule_str(sg_open_rule r) {
    return r == SG_OPEN_RULE_ACCEPT ? "accept" : r == SG_OPEN_RULE_BALANCED ? "balanced" : "auto";
}

double sg_open_set_default_threshold(int k) { return k > 0 ? 0.5 * (1.0 + 1.0 / k) : 1.0; }

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
    size_t dl = strlen(dir), pl = strlen(p);
    char *r = sg_xmalloc(dl + pl + 1);
    memcpy(r, dir, dl);
    memcpy(r + dl, p, pl + 1);
    return r;
}

static int file_readable(const char *p) { return access(p, R_OK) == 0; }

/* Ids name folders and files and appear in CSV: at most MAX_ID_CHARS (so that
 * tasks/<id>/ and worklist-<class>.csv stay within a file name's 255 bytes). */
#define MAX_ID_CHARS 200

/* Letters, digits and . _ - / :, no "..", not leading '.' or '/' (the length is checked apart). */
static int safe_id(const char *s, int allow_slash) {
    if (!s[0] || s[0] == '.' || s[0] == '/' || strstr(s, "..")) return 0;
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                 c == '_' || c == '-' || c == ':' || (allow_slash && c == '/');
        if (!ok) return 0;
    }
    return 1;
}

/* Unknown keys, and known keys given twice: the parser keeps the first, so a
 * second "threshold" would be as silently ignored as a misspelt one. */
static void check_keys(sg_diag *d, const char *file, const char *path, const cJSON *obj, const char *const *allowed) {
    int seen[32] = {0};
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        int k = 0;
        while (allowed[k] && strcmp(it->string, allowed[k]) != 0) k++;
        SG_ASSERT(k < 32);
        if (!allowed[k]) sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.%s: unknown key", file, path, it->string);
        else if (++seen[k] == 2)
            sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.%s: key given twice (only one is read)", file, path, it->string);
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
    /* a second document or stray text after the value would otherwise be ignored */
    size_t off = (size_t)(end - (const char *)data), line = 1;
    while (off < n && (data[off] == ' ' || data[off] == '\t' || data[off] == '\n' || data[off] == '\r')) off++;
    if (off < n) {
        for (size_t i = 0; i < off; i++) line += data[i] == '\n';
        sg_diag_add(d, SG_DIAG_ERROR, "%s: unexpected data after the JSON value (line %zu)", path, line);
        cJSON_Delete(root);
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

/* ---- a hash table of indices (keys live in the caller's arrays) ---- */

typedef struct htab {
    uint64_t *hash; /* (cap) */
    uint32_t *slot; /* (cap) index + 1; 0 = empty */
    size_t cap, n;
} htab;

typedef int (*htab_eq)(const void *user, uint32_t idx, const void *key);

static uint64_t hash_str(const char *s) { return sg_fnv1a64(s, strlen(s)); }

static void htab_free(htab *h) {
    free(h->hash);
    free(h->slot);
    memset(h, 0, sizeof *h);
}

static void htab_put_raw(htab *h, uint64_t hv, uint32_t idx) {
    size_t i = (size_t)hv & (h->cap - 1);
    while (h->slot[i]) i = (i + 1) & (h->cap - 1);
    h->hash[i] = hv;
    h->slot[i] = idx + 1;
}

/* The index stored under key, or -1. */
static int64_t htab_get(const htab *h, uint64_t hv, htab_eq eq, const void *user, const void *key) {
    if (!h->cap) return -1;
    for (size_t i = (size_t)hv & (h->cap - 1); h->slot[i]; i = (i + 1) & (h->cap - 1))
        if (h->hash[i] == hv && eq(user, h->slot[i] - 1, key)) return h->slot[i] - 1;
    return -1;
}

/* Adds idx under hv (the caller checked that the key is absent). */
static void htab_add(htab *h, uint64_t hv, uint32_t idx) {
    if (2 * (h->n + 1) > h->cap) {
        htab old = *h;
        h->cap = old.cap ? 2 * old.cap : 64;
        h->hash = sg_xcalloc(h->cap, sizeof *h->hash);
        h->slot = sg_xcalloc(h->cap, sizeof *h->slot);
        for (size_t i = 0; i < old.cap; i++)
            if (old.slot[i]) htab_put_raw(h, old.hash[i], old.slot[i] - 1);
        htab_free(&old);
    }
    htab_put_raw(h, hv, idx);
    h->n++;
}

/* ---- the loader: what one sg_manifest_load keeps while it parses ---- */

/* One distinct "shards" (or open_set "reference") string, expanded once. */
typedef struct spec_entry {
    char *spec;
    uint32_t *ids;  /* (n) into m->files, in listing order; owned by m->id_lists */
    size_t n;
    char *error;    /* expansion failed: why */
    char **dups;    /* (n_dups) names listed twice */
    size_t n_dups;
    size_t missing; /* deep: listed files that are not readable */
    uint8_t dig[32]; /* sha256 of the expanded list (names as written): an index JSON rewritten
                        to list other shards changes it */
} spec_entry;

typedef struct exemplar_check {
    int state; /* 0 not checked, 1 decodes, 2 does not */
    char *msg;
} exemplar_check;

typedef struct loader {
    sg_manifest *m;
    sg_diag *d;
    const char *mdir;
    int deep;
    htab disease_ix, task_ix, file_ix, spec_ix;
    size_t files_cap;
    int *file_errno; /* (files_cap) deep: 0 readable, else errno of access() */
    uint32_t *stamp; /* (files_cap) last spec that listed the file + 1 (duplicates) */
    uint32_t *mark;  /* (files_cap) last task whose "shards" list the file + 1 */
    spec_entry *specs;
    size_t n_specs, specs_cap, id_lists_cap;
    exemplar_check **ex; /* (n_diseases) → (n_exemplars), allocated on first use */
    /* what each task's configuration hash covers beyond the manifest and engine */
    uint8_t (*entry_dig)[32];  /* (n_diseases) sha256 of the registry entry (its JSON, unformatted) */
    uint8_t **ex_dig;          /* (n_diseases) → (n_exemplars, 32) sha256 of each exemplar file, on first use */
    uint8_t (*shards_dig)[32]; /* (n_tasks) the expanded "shards" list */
    uint8_t (*ref_dig)[32];    /* (n_tasks) the expanded open_set "reference" list */
} loader;

static int eq_disease(const void *u, uint32_t i, const void *k) {
    return strcmp(((const sg_manifest *)u)->diseases[i].id, k) == 0;
}
static int eq_task(const void *u, uint32_t i, const void *k) {
    return strcmp(((const sg_manifest *)u)->tasks[i].id, k) == 0;
}
typedef struct file_key {
    const char *path, *name;
} file_key;
static int eq_file(const void *u, uint32_t i, const void *k) {
    const sg_shard_file *f = &((const sg_manifest *)u)->files[i];
    const file_key *fk = k;
    return strcmp(f->path, fk->path) == 0 && strcmp(f->name, fk->name) == 0;
}
static int eq_spec(const void *u, uint32_t i, const void *k) { return strcmp(((const loader *)u)->specs[i].spec, k) == 0; }

static void loader_free(loader *L) {
    htab_free(&L->disease_ix);
    htab_free(&L->task_ix);
    htab_free(&L->file_ix);
    htab_free(&L->spec_ix);
    free(L->file_errno);
    free(L->stamp);
    free(L->mark);
    for (size_t i = 0; i < L->n_specs; i++) {
        spec_entry *s = &L->specs[i];
        free(s->spec);
        free(s->error);
        sg_strv_free(s->dups, s->n_dups);
    }
    free(L->specs);
    if (L->ex)
        for (int i = 0; i < L->m->n_diseases; i++) {
            if (!L->ex[i]) continue;
            for (int k = 0; k < L->m->diseases[i].n_exemplars; k++) free(L->ex[i][k].msg);
            free(L->ex[i]);
        }
    free(L->ex);
    if (L->ex_dig)
        for (int i = 0; i < L->m->n_diseases; i++) free(L->ex_dig[i]);
    free(L->ex_dig);
    free(L->entry_dig);
    free(L->shards_dig);
    free(L->ref_dig);
}

/* The index of shard file (path, name), added (copied) if new. */
static uint32_t file_intern(loader *L, const char *path, const char *name) {
    sg_manifest *m = L->m;
    file_key k = {path, name};
    uint64_t hv = hash_str(path) * 31 + hash_str(name);
    int64_t i = htab_get(&L->file_ix, hv, eq_file, m, &k);
    if (i >= 0) return (uint32_t)i;
    SG_ASSERT(m->n_files < UINT32_MAX);
    if (m->n_files == L->files_cap) {
        size_t old = L->files_cap;
        L->files_cap = old ? 2 * old : 1024;
        m->files = sg_xrealloc(m->files, L->files_cap * sizeof *m->files);
        L->file_errno = sg_xrealloc(L->file_errno, L->files_cap * sizeof *L->file_errno);
        L->stamp = sg_xrealloc(L->stamp, L->files_cap * sizeof *L->stamp);
        memset(L->stamp + old, 0, (L->files_cap - old) * sizeof *L->stamp);
        L->mark = sg_xrealloc(L->mark, L->files_cap * sizeof *L->mark);
        memset(L->mark + old, 0, (L->files_cap - old) * sizeof *L->mark);
    }
    uint32_t id = (uint32_t)m->n_files++;
    m->files[id].path = sg_xstrdup(path);
    m->files[id].name = sg_xstrdup(name);
    L->file_errno[id] = 0;
    if (L->deep && !file_readable(path)) L->file_errno[id] = errno ? errno : ENOENT;
    htab_add(&L->file_ix, hv, id);
    return id;
}

/* The expansion of a shard list string, computed on first use. */
static const spec_entry *spec_get(loader *L, const char *spec) {
    uint64_t hv = hash_str(spec);
    int64_t found = htab_get(&L->spec_ix, hv, eq_spec, L, spec);
    if (found >= 0) return &L->specs[found];
    if (L->n_specs == L->specs_cap) {
        L->specs_cap = L->specs_cap ? 2 * L->specs_cap : 64;
        L->specs = sg_xrealloc(L->specs, L->specs_cap * sizeof *L->specs);
    }
    uint32_t si = (uint32_t)L->n_specs++;
    spec_entry *e = &L->specs[si];
    memset(e, 0, sizeof *e);
    e->spec = sg_xstrdup(spec);
    htab_add(&L->spec_ix, hv, si);

    sg_err err;
    char **names = NULL;
    size_t n = 0;
    int is_index = sg_shard_spec_is_index(spec);
    char *rspec = resolve(L->mdir, spec);
    sg_status s = is_index ? sg_shard_list_resolve(rspec, &names, &n, &err) : sg_braces_expand(spec, &names, &n, &err);
    free(rspec);
    if (s != SG_OK) {
        e->error = sg_xstrdup(err.msg);
        return e;
    }
    sg_sha256 sc;
    sg_sha256_init(&sc);
    e->ids = sg_xmalloc((n ? n : 1) * sizeof *e->ids);
    sg_manifest *m = L->m;
    if (m->n_id_lists == L->id_lists_cap) {
        L->id_lists_cap = L->id_lists_cap ? 2 * L->id_lists_cap : 64;
        m->id_lists = sg_xrealloc(m->id_lists, L->id_lists_cap * sizeof *m->id_lists);
    }
    m->id_lists[m->n_id_lists++] = e->ids;
    size_t dl = strlen(L->mdir), dups_cap = 0, buf_cap = 0;
    char *buf = NULL; /* mdir + name, for brace lists */
    for (size_t i = 0; i < n; i++) {
        const char *path = names[i], *name = names[i];
        if (is_index) {
            if (dl && strncmp(names[i], L->mdir, dl) == 0) name = names[i] + dl;
        } else if (dl && names[i][0] != '/') {
            size_t nl = strlen(names[i]);
            if (dl + nl + 1 > buf_cap) {
                buf_cap = 2 * (dl + nl + 1);
                buf = sg_xrealloc(buf, buf_cap);
            }
            memcpy(buf, L->mdir, dl);
            memcpy(buf + dl, names[i], nl + 1);
            path = buf;
        }
        uint32_t id = file_intern(L, path, name);
        sg_sha256_update(&sc, name, strlen(name) + 1);
        if (L->stamp[id] == si + 1) {
            if (e->n_dups == dups_cap) {
                dups_cap = dups_cap ? 2 * dups_cap : 4;
                e->dups = sg_xrealloc(e->dups, dups_cap * sizeof *e->dups);
            }
            e->dups[e->n_dups++] = sg_xstrdup(L->m->files[id].name);
        }
        L->stamp[id] = si + 1;
        e->missing += L->file_errno[id] != 0;
        e->ids[e->n++] = id;
    }
    free(buf);
    sg_strv_free(names, n);
    sg_sha256_final(&sc, e->dig);
    return e;
}

/* ---- registry ---- */

static void load_registry(loader *L, const char *path) {
    sg_manifest *m = L->m;
    sg_diag *d = L->d;
    cJSON *root = parse_file(path, d, NULL, NULL);
    if (!root) return;
    char *dir = dir_of(path);
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "diseases");
    if (!cJSON_IsObject(root) || !cJSON_IsArray(list)) {
        sg_diag_add(d, SG_DIAG_ERROR, "%s: $.diseases: must be an array", path);
        goto done;
    }
    static const char *const top[] = {"version", "diseases", NULL};
    check_keys(d, path, "$", root, top);
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(root, "version");
    if (ver && (!cJSON_IsNumber(ver) || ver->valuedouble != 1))
        sg_diag_add(d, SG_DIAG_ERROR, "%s: $.version: this sgps reads registry version 1", path);
    static const char *const keys[] = {"id", "name", "codes", "modality", "description", "exemplars", NULL};
    int n = cJSON_GetArraySize(list), i = 0;
    m->diseases = sg_xcalloc((size_t)n + 1, sizeof *m->diseases);
    L->entry_dig = sg_xcalloc((size_t)n + 1, sizeof *L->entry_dig);
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
        if (strlen(id) > MAX_ID_CHARS) {
            sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.id: '%.40s...' is longer than %d characters (%zu)", path, jp, id,
                        MAX_ID_CHARS, strlen(id));
            continue;
        }
        if (!safe_id(id, 1)) {
            sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.id: '%s' must use only letters, digits and . _ - / :", path, jp, id);
            continue;
        }
        uint64_t hv = hash_str(id);
        int dup = htab_get(&L->disease_ix, hv, eq_disease, m, id) >= 0;
        if (dup) sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.id: duplicate id '%s'", path, jp, id);
        sg_disease *e = &m->diseases[m->n_diseases++];
        e->id = sg_xstrdup(id);
        {
            char *txt = cJSON_PrintUnformatted(it);
            sg_sha256 c;
            sg_sha256_init(&c);
            if (txt) sg_sha256_update(&c, txt, strlen(txt));
            sg_sha256_final(&c, L->entry_dig[m->n_diseases - 1]);
            free(txt);
        }
        if (!dup) htab_add(&L->disease_ix, hv, (uint32_t)(m->n_diseases - 1));
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

static int find_disease(const loader *L, const char *id) {
    return (int)htab_get(&L->disease_ix, hash_str(id), eq_disease, L->m, id);
}

/* ---- tasks ---- */

/* The shard list `spec` at JSON path jp.key: diagnostics, and the shared
 * array of its file indices in *ids, *n (NULL, 0 when unusable). */
static void add_shards(loader *L, const char *jp, const char *key, const char *spec, const uint32_t **ids, size_t *n,
                       uint8_t dig[32]) {
    const char *mp = L->m->path;
    const spec_entry *e = spec_get(L, spec);
    *ids = NULL;
    *n = 0;
    memcpy(dig, e->dig, 32);
    if (e->error) {
        sg_diag_add(L->d, SG_DIAG_ERROR, "%s: %s.%s: %s", mp, jp, key, e->error);
        return;
    }
    if (e->n == 0) {
        sg_diag_add(L->d, SG_DIAG_ERROR, "%s: %s.%s: '%s' names no shard", mp, jp, key, spec);
        return;
    }
    for (size_t i = 0; i < e->n_dups; i++)
        sg_diag_add(L->d, SG_DIAG_ERROR, "%s: %s.%s: shard '%s' listed twice", mp, jp, key, e->dups[i]);
    if (e->missing == e->n) {
        sg_diag_add(L->d, SG_DIAG_DATA, "%s: %s.%s: '%s' matches no readable file (%zu names, e.g. %s)", mp, jp, key,
                    spec, e->n, L->m->files[e->ids[0]].path);
    } else if (e->missing) {
        for (size_t i = 0; i < e->n; i++) {
            int er = L->file_errno[e->ids[i]];
            if (er) sg_diag_add(L->d, SG_DIAG_DATA, "%s: %s.%s: %s: %s", mp, jp, key, L->m->files[e->ids[i]].path,
                                strerror(er));
        }
    }
    *ids = e->ids;
    *n = e->n;
}

/* A label map {shard label: class index | class id | null}. null (none of the
 * classes) only when allow_none. */
static void parse_label_map(const sg_run_task *t, const char *mpath, const char *jp, const cJSON *map, int allow_none,
                            char ***keys, int **cls, int *n_map, sg_diag *d) {
    if (!cJSON_IsObject(map)) {
        sg_diag_add(d, SG_DIAG_ERROR, "%s: %s: must be an object {shard label: class}", mpath, jp);
        return;
    }
    int n = cJSON_GetArraySize(map);
    *keys = sg_xcalloc((size_t)n + 1, sizeof(char *));
    *cls = sg_xcalloc((size_t)n + 1, sizeof(int));
    const cJSON *it;
    cJSON_ArrayForEach(it, map) {
        int c = SG_LABEL_UNKNOWN;
        if (cJSON_IsNumber(it)) {
            double v = it->valuedouble;
            if (v == floor(v) && v >= 0 && v < t->n_classes) c = (int)v;
        } else if (cJSON_IsString(it)) {
            for (int k = 0; k < t->n_classes; k++)
                if (t->class_ids && t->class_ids[k] && strcmp(t->class_ids[k], it->valuestring) == 0) c = k;
        } else if (cJSON_IsNull(it)) {
            if (!allow_none) {
                sg_diag_add(d, SG_DIAG_ERROR,
                            "%s: %s[\"%s\"]: null (none of the task's classes) needs \"open_set\" on the task", mpath,
                            jp, it->string);
                continue;
            }
            c = SG_LABEL_NONE;
        }
        if (c == SG_LABEL_UNKNOWN) {
            sg_diag_add(d, SG_DIAG_ERROR, "%s: %s[\"%s\"]: must be a class index 0..%d or a registry id among the task's classes%s",
                        mpath, jp, it->string, t->n_classes - 1, allow_none ? ", or null (none of them)" : "");
            continue;
        }
        (*keys)[*n_map] = sg_xstrdup(it->string);
        (*cls)[(*n_map)++] = c;
    }
    /* a label given twice: the parser keeps one, so the other would be silently lost */
    char **sorted = sg_xmalloc(sizeof(char *) * ((size_t)*n_map + 1));
    memcpy(sorted, *keys, sizeof(char *) * (size_t)*n_map);
    qsort(sorted, (size_t)*n_map, sizeof *sorted, sg_cmp_strp);
    for (int i = 1; i < *n_map; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0 && (i < 2 || strcmp(sorted[i - 2], sorted[i]) != 0))
            sg_diag_add(d, SG_DIAG_ERROR, "%s: %s[\"%s\"]: label given twice (only one is read)", mpath, jp, sorted[i]);
    free(sorted);
}

/* Decodes an exemplar once per load; problems are reported for every task
 * that uses it. The run decodes again (cheap, and a worker needs the pixels). */
static void check_exemplar(loader *L, int di, int k, const char *task_id) {
    if (!L->deep) return;
    sg_manifest *m = L->m;
    if (!L->ex) L->ex = sg_xcalloc((size_t)m->n_diseases + 1, sizeof *L->ex);
    if (!L->ex[di]) L->ex[di] = sg_xcalloc((size_t)m->diseases[di].n_exemplars + 1, sizeof **L->ex);
    exemplar_check *c = &L->ex[di][k];
    if (!c->state) {
        sg_err err;
        sg_image im;
        sg_image_limits lim = sg_image_limits_default();
        if (sg_image_load_file(m->diseases[di].exemplars[k], &lim, &im, &err) != SG_OK) {
            c->state = 2;
            c->msg = sg_xstrdup(err.msg);
        } else {
            c->state = 1;
            sg_image_free(&im);
        }
    }
    if (c->state == 2)
        sg_diag_add(L->d, SG_DIAG_DATA, "%s: $.diseases[%d].exemplars[%d]: %s (used by task '%s')", m->registry_path, di,
                    k, c->msg, task_id);
}

static int json_number_in(const cJSON *v, double lo, double hi, int lo_open) {
    if (!cJSON_IsNumber(v)) return 0;
    double x = v->valuedouble;
    return (lo_open ? x > lo : x >= lo) && x <= hi;
}

/* "open_set": true | false | {reference, labels, accept, rule, threshold}. */
static void parse_open_set(loader *L, sg_run_task *t, const char *jp, const cJSON *os) {
    const char *mp = L->m->path;
    sg_diag *d = L->d;
    sg_open_set *o = &t->open_set;
    o->accept = DEFAULT_OPEN_ACCEPT;
    o->rule = SG_OPEN_RULE_AUTO;
    char op[96];
    snprintf(op, sizeof op, "%s.open_set", jp);
    if (cJSON_IsBool(os)) {
        o->enabled = cJSON_IsTrue(os);
        return;
    }
    if (!cJSON_IsObject(os)) {
        sg_diag_add(d, SG_DIAG_ERROR, "%s: %s: must be true, false or an object {reference, labels, accept, rule, threshold}",
                    mp, op);
        return;
    }
    o->enabled = 1;
    static const char *const keys[] = {"reference", "labels", "accept", "rule", "threshold", NULL};
    check_keys(d, mp, op, os, keys);
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(os, "reference");
    const cJSON *th = cJSON_GetObjectItemCaseSensitive(os, "threshold");
    const cJSON *ac = cJSON_GetObjectItemCaseSensitive(os, "accept");
    const cJSON *ru = cJSON_GetObjectItemCaseSensitive(os, "rule");
    const cJSON *lm = cJSON_GetObjectItemCaseSensitive(os, "labels");
    if (th) {
        if (!json_number_in(th, 0, 1, 0))
            sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.threshold: must be a number in [0, 1] (the lowest best-class probability accepted)",
                        mp, op);
        else {
            o->fixed = 1;
            o->threshold = th->valuedouble;
        }
        if (ref)
            sg_diag_add(d, SG_DIAG_ERROR,
                        "%s: %s.threshold: cannot be combined with reference (the threshold is calibrated on the reference shards)",
                        mp, op);
    }
    if (ac) {
        if (!json_number_in(ac, 0, 1, 1))
            sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.accept: must be a number in (0, 1] (the fraction of in-set reference images to accept)",
                        mp, op);
        else o->accept = ac->valuedouble;
    }
    if (ru) {
        if (cJSON_IsString(ru) && strcmp(ru->valuestring, "accept") == 0) o->rule = SG_OPEN_RULE_ACCEPT;
        else if (cJSON_IsString(ru) && strcmp(ru->valuestring, "balanced") == 0) o->rule = SG_OPEN_RULE_BALANCED;
        else sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.rule: must be \"accept\" or \"balanced\"", mp, op);
    }
    if (!ref) {
        if (ac) sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.accept: only applies with reference (calibration data)", mp, op);
        if (ru) sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.rule: only applies with reference (calibration data)", mp, op);
        if (lm) sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.labels: only applies with reference (calibration data)", mp, op);
    } else if (!cJSON_IsString(ref) || !ref->valuestring[0]) {
        sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.reference: must be a brace pattern or an index JSON of labelled shards", mp, op);
    } else {
        add_shards(L, op, "reference", ref->valuestring, &t->ref_shard, &o->n_ref_shards,
                   L->ref_dig[L->m->n_tasks - 1]);
    }
    if (lm && ref) {
        char lp[128];
        snprintf(lp, sizeof lp, "%s.labels", op);
        parse_label_map(t, mp, lp, lm, 1, &o->map_keys, &o->map_class, &o->n_map, d);
    }
}

static void parse_task(loader *L, const cJSON *jt, int ti) {
    sg_manifest *m = L->m;
    sg_diag *d = L->d;
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
                                       "threshold", "labels", "open_set", "support_norm", NULL};
    check_keys(d, mp, jp, jt, keys);
    const char *id = get_str(d, mp, jp, jt, "id", 1);
    if (id && strlen(id) > MAX_ID_CHARS)
        sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.id: '%.40s...' is longer than %d characters (%zu; it names a folder)", mp,
                    jp, id, MAX_ID_CHARS, strlen(id));
    else if (id && !safe_id(id, 0))
        sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.id: '%s' must use only letters, digits and . _ - : (it names a folder)",
                    mp, jp, id);
    t->id = sg_xstrdup(id ? id : "?");
    if (id) {
        uint64_t hv = hash_str(id);
        int64_t j = htab_get(&L->task_ix, hv, eq_task, m, id);
        if (j >= 0) sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.id: duplicate task id '%s' (also $.tasks[%d])", mp, jp, id, (int)j);
        else htab_add(&L->task_ix, hv, (uint32_t)(m->n_tasks - 1));
    }
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
    const cJSON *sn = cJSON_GetObjectItemCaseSensitive(jt, "support_norm");
    t->support_norm = SG_SUPPORT_NORM_AUTO;
    if (sn && (!cJSON_IsNumber(sn) || !(sn->valuedouble >= 0 && sn->valuedouble <= 1)))
        sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.support_norm: must be a number in [0, 1]", mp, jp);
    else if (sn) t->support_norm = (float)sn->valuedouble;

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
            int di = find_disease(L, c->valuestring);
            if (di < 0 && m->diseases) {
                sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.classes[%d]: '%s' is not in the registry %s", mp, jp, k,
                            c->valuestring, m->registry_path);
            } else if (di >= 0) {
                t->disease[k] = di;
                const sg_disease *e = &m->diseases[di];
                if (e->n_exemplars < t->shots)
                    sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.classes[%d]: '%s' has %d exemplars in %s, the task asks for %d shots",
                                mp, jp, k, e->id, e->n_exemplars, m->registry_path, t->shots);
                for (int x = 0; x < t->shots && x < e->n_exemplars; x++) check_exemplar(L, di, x, t->id);
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
    const char *shards = get_str(d, mp, jp, jt, "shards", 1);
    if (shards) add_shards(L, jp, "shards", shards, &t->shard, &t->n_shards, L->shards_dig[m->n_tasks - 1]);
    const cJSON *os = cJSON_GetObjectItemCaseSensitive(jt, "open_set");
    if (os) parse_open_set(L, t, jp, os);
    if (t->open_set.enabled) {
        if (!t->open_set.fixed) t->open_set.threshold = sg_open_set_default_threshold(t->n_classes);
        for (int k = 0; k < t->n_classes; k++)
            if (strcmp(t->class_ids[k], SG_OPEN_SET_NONE) == 0)
                sg_diag_add(d, SG_DIAG_ERROR, "%s: %s.classes[%d]: '%s' is reserved for open-set rejection", mp, jp, k,
                            SG_OPEN_SET_NONE);
    }
    const cJSON *lm = cJSON_GetObjectItemCaseSensitive(jt, "labels");
    if (lm) {
        char lp[80];
        snprintf(lp, sizeof lp, "%s.labels", jp);
        parse_label_map(t, mp, lp, lm, t->open_set.enabled, &t->map_keys, &t->map_class, &t->n_map, d);
        if (t->kind == SG_TASK_SCREEN && !t->open_set.enabled)
            sg_diag_add(d, SG_DIAG_WARN, "%s: %s.labels: a screen task without open_set reads no labels; ignored", mp, jp);
    }
    /* a reference shard that the task also screens: its threshold would be
     * calibrated on the images it then reports */
    if (t->open_set.enabled && t->shard && t->ref_shard) {
        for (size_t i = 0; i < t->n_shards; i++) L->mark[t->shard[i]] = (uint32_t)ti + 1;
        for (size_t i = 0; i < t->open_set.n_ref_shards; i++)
            if (L->mark[t->ref_shard[i]] == (uint32_t)ti + 1) {
                sg_diag_add(d, SG_DIAG_WARN,
                            "%s: %s.open_set.reference: %s is also in the task's shards (the threshold is calibrated "
                            "on images it then classifies)", mp, jp, m->files[t->ref_shard[i]].name);
                break;
            }
    }
}

/* sha256 of exemplar k of disease di (of "unreadable" when it cannot be
 * read: the unit then fails, and is redone once the file is back). */
static const uint8_t *exemplar_digest(loader *L, int di, int k) {
    sg_manifest *m = L->m;
    if (!L->ex_dig) L->ex_dig = sg_xcalloc((size_t)m->n_diseases + 1, sizeof *L->ex_dig);
    int n = m->diseases[di].n_exemplars;
    if (!L->ex_dig[di]) L->ex_dig[di] = sg_xcalloc((size_t)n * 33 + 1, 1); /* 32 bytes, then n "done" flags */
    uint8_t *dg = L->ex_dig[di] + (size_t)k * 32, *done = L->ex_dig[di] + (size_t)n * 32 + k;
    if (!*done) {
        char hex[65];
        sg_sha256 c;
        sg_sha256_init(&c);
        if (sg_sha256_file(m->diseases[di].exemplars[k], hex, NULL) == SG_OK) sg_sha256_update(&c, hex, 64);
        else sg_sha256_update(&c, "unreadable", 10);
        sg_sha256_final(&c, dg);
        *done = 1;
    }
    return dg;
}

/* Each task's configuration hash (sg_run_task.config_hash): what --resume
 * trusts a part file or classifier for. It covers the manifest and engine
 * (m->config_hash), the registry entries of the task's classes, the bytes of
 * the exemplars it uses and its expanded shard lists; and m->tasks_hash over
 * all of them, which the ranks compare. */
static void task_hashes(loader *L) {
    sg_manifest *m = L->m;
    sg_sha256 all;
    sg_sha256_init(&all);
    for (int ti = 0; ti < m->n_tasks; ti++) {
        sg_run_task *t = &m->tasks[ti];
        sg_sha256 c;
        uint8_t dig[32];
        sg_sha256_init(&c);
        sg_sha256_update(&c, "sgps-task 1\n", 12);
        sg_sha256_update(&c, m->config_hash, 64);
        sg_sha256_update(&c, t->id, strlen(t->id) + 1);
        for (int k = 0; k < t->n_classes; k++) {
            int di = t->disease ? t->disease[k] : -1;
            if (di < 0) {
                sg_sha256_update(&c, "?", 1);
                continue;
            }
            sg_sha256_update(&c, L->entry_dig[di], 32);
            for (int x = 0; x < t->shots && x < m->diseases[di].n_exemplars; x++)
                sg_sha256_update(&c, exemplar_digest(L, di, x), 32);
        }
        sg_sha256_update(&c, L->shards_dig[ti], 32);
        sg_sha256_update(&c, L->ref_dig[ti], 32);
        sg_sha256_final(&c, dig);
        sg_sha256_hex(dig, t->config_hash);
        sg_sha256_update(&all, t->config_hash, 64);
    }
    uint8_t dig[32];
    sg_sha256_final(&all, dig);
    sg_sha256_hex(dig, m->tasks_hash);
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
    m->support_check = SG_CHECK_AUTO;
    char *mdir = dir_of(path);
    loader L;
    memset(&L, 0, sizeof L);
    L.m = m;
    L.d = d;
    L.mdir = mdir;
    L.deep = deep;
    if (!cJSON_IsObject(root)) {
        sg_diag_add(d, SG_DIAG_ERROR, "%s: $: must be an object", path);
        goto done;
    }
    static const char *const keys[] = {"version", "engine", "registry", "output", "tasks", "seed", "bootstrap", "batch",
                                       "support_check", NULL};
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
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(root, "support_check");
    if (cJSON_IsBool(sc)) m->support_check = cJSON_IsTrue(sc) ? SG_CHECK_AUTO : SG_CHECK_OFF;
    else if (cJSON_IsString(sc) && sg_support_check_method(sc->valuestring) > 0)
        m->support_check = sg_support_check_method(sc->valuestring);
    else if (sc)
        sg_diag_add(d, SG_DIAG_ERROR, "%s: $.support_check: must be true, false, \"auto\", \"exact\" or \"fast\"", path);

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
        load_registry(&L, m->registry_path);
    }
    const cJSON *tasks = cJSON_GetObjectItemCaseSensitive(root, "tasks");
    if (!cJSON_IsArray(tasks) || cJSON_GetArraySize(tasks) == 0) {
        sg_diag_add(d, SG_DIAG_ERROR, "%s: $.tasks: must be a non-empty array", path);
    } else {
        size_t nt = (size_t)cJSON_GetArraySize(tasks);
        m->tasks = sg_xcalloc(nt, sizeof *m->tasks);
        L.shards_dig = sg_xcalloc(nt, sizeof *L.shards_dig);
        L.ref_dig = sg_xcalloc(nt, sizeof *L.ref_dig);
        const cJSON *jt;
        int ti = 0;
        cJSON_ArrayForEach(jt, tasks) parse_task(&L, jt, ti++);
    }
    m->unit_start = sg_xcalloc((size_t)m->n_tasks + 1, sizeof *m->unit_start);
    for (int t = 0; t < m->n_tasks; t++) m->unit_start[t + 1] = m->unit_start[t] + sg_task_n_units(&m->tasks[t]);
    m->n_units = m->unit_start[m->n_tasks];
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
    task_hashes(&L);
done:
    if (!m->unit_start) m->unit_start = sg_xcalloc(1, sizeof *m->unit_start);
    loader_free(&L);
    free(mdir);
    free(bytes);
    cJSON_Delete(root);
    *out = m;
    return sg_diag_count(d, SG_DIAG_ERROR) > n_before ? SG_ERR_FORMAT : SG_OK;
}

static void free_map(char **keys, int *cls, int n) {
    for (int k = 0; k < n; k++) free(keys[k]);
    free(keys);
    free(cls);
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
        free_map(t->map_keys, t->map_class, t->n_map);
        free_map(t->open_set.map_keys, t->open_set.map_class, t->open_set.n_map);
    }
    free(m->tasks);
    for (size_t f = 0; f < m->n_files; f++) {
        free(m->files[f].path);
        free(m->files[f].name);
    }
    free(m->files);
    for (size_t i = 0; i < m->n_id_lists; i++) free(m->id_lists[i]);
    free(m->id_lists);
    free(m->unit_start);
    free(m->path);
    free(m->engine_path);
    free(m->registry_path);
    free(m->output);
    free(m);
}

size_t sg_task_n_units(const sg_run_task *t) { return t->n_shards + t->open_set.n_ref_shards; }

const char *sg_task_exemplar(const sg_manifest *m, const sg_run_task *t, const char *class_id, int i) {
    for (int c = 0; c < t->n_classes; c++) {
        const sg_disease *d = &m->diseases[t->disease[c]];
        if (strcmp(t->class_ids[c], class_id) == 0) return i >= 0 && i < d->n_exemplars ? d->exemplars[i] : NULL;
    }
    return NULL;
}

const sg_shard_file *sg_task_shard(const sg_manifest *m, const sg_run_task *t, size_t s) {
    SG_ASSERT(s < sg_task_n_units(t));
    return &m->files[s < t->n_shards ? t->shard[s] : t->ref_shard[s - t->n_shards]];
}

void sg_manifest_unit(const sg_manifest *m, size_t u, int *task, size_t *shard) {
    SG_ASSERT(u < m->n_units);
    /* the last task whose first unit is <= u (tasks without units share a start) */
    int lo = 0, hi = m->n_tasks - 1;
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (m->unit_start[mid] <= u) lo = mid;
        else hi = mid - 1;
    }
    *task = lo;
    *shard = u - m->unit_start[lo];
    SG_ASSERT(*shard < sg_task_n_units(&m->tasks[lo]));
}
