/* sg_shard_list.c — shard lists: brace expansion (bash style), the shard
 * index JSON written by sg_pack, and its verification.
 *
 * Brace expansion works on the first top-level {...} group that is a list
 * (a,b) or a range (lo..hi[..step]); each alternative is spliced in and the
 * result expanded again, so nesting and several groups compose. The result
 * count is checked before anything is produced, so a pattern such as
 * {0..999999999} fails fast instead of exhausting memory. */
#include "sg_io.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void sg_strv_free(char **v, size_t n) {
    if (!v) return;
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

typedef struct strv {
    char **v;
    size_t n, cap;
} strv;

static void strv_push(strv *s, char *x) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 16;
        s->v = sg_xrealloc(s->v, sizeof(char *) * s->cap);
    }
    s->v[s->n++] = x;
}

/* Finds the '}' matching the '{' at p[o]; returns its index or -1. */
static long match_brace(const char *p, size_t o) {
    int depth = 0;
    for (size_t i = o; p[i]; i++) {
        if (p[i] == '{') depth++;
        else if (p[i] == '}' && --depth == 0) return (long)i;
    }
    return -1;
}

/* Parses "lo..hi[..step]" with integers; width > 0 when zero-padded. step is
 * the magnitude (the direction comes from lo and hi); a step of LLONG_MIN has
 * none and is refused by the caller (*step = 0). */
static int parse_range(const char *s, size_t n, long long *lo, long long *hi, unsigned long long *step, int *width) {
    char buf[96];
    if (n >= sizeof buf) return 0;
    memcpy(buf, s, n);
    buf[n] = 0;
    char *a = buf, *d1 = strstr(a, "..");
    if (!d1) return 0;
    *d1 = 0;
    char *b = d1 + 2, *d2 = strstr(b, "..");
    char *c = NULL;
    if (d2) {
        *d2 = 0;
        c = d2 + 2;
    }
    char *end;
    errno = 0;
    if (!*a || !*b) return 0;
    *lo = strtoll(a, &end, 10);
    if (*end || errno) return 0;
    *hi = strtoll(b, &end, 10);
    if (*end || errno) return 0;
    *step = 1;
    if (c) {
        long long st = strtoll(c, &end, 10);
        if (*end || errno || !*c || st == 0) return 0;
        *step = st == LLONG_MIN ? 0 : (unsigned long long)(st < 0 ? -st : st);
    }
    *width = 0;
    const char *ua = a[0] == '-' ? a + 1 : a, *ub = b[0] == '-' ? b + 1 : b;
    if ((ua[0] == '0' && ua[1]) || (ub[0] == '0' && ub[1])) *width = (int)(strlen(a) > strlen(b) ? strlen(a) : strlen(b));
    return 1;
}

/* Splits the inside of a brace group at top-level commas. */
static void split_alts(const char *s, size_t n, strv *alts) {
    int depth = 0;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] == '{') depth++;
        if (i < n && s[i] == '}') depth--;
        if (i == n || (s[i] == ',' && depth == 0)) {
            char *x = sg_xmalloc(i - start + 1);
            memcpy(x, s + start, i - start);
            x[i - start] = 0;
            strv_push(alts, x);
            start = i + 1;
        }
    }
}

static sg_status expand(const char *p, strv *out, const char *orig, sg_err *err) {
    size_t len = strlen(p);
    for (size_t i = 0; i < len; i++) {
        if (p[i] != '{') continue;
        long j = match_brace(p, i);
        if (j < 0) break;
        const char *in = p + i + 1;
        size_t inn = (size_t)j - i - 1;
        strv alts = {0};
        long long lo, hi;
        unsigned long long step;
        int width;
        int depth = 0, has_comma = 0;
        for (size_t k = 0; k < inn; k++) {
            if (in[k] == '{') depth++;
            else if (in[k] == '}') depth--;
            else if (in[k] == ',' && depth == 0) has_comma = 1;
        }
        if (has_comma) {
            split_alts(in, inn, &alts);
        } else if (parse_range(in, inn, &lo, &hi, &step, &width)) {
            /* In unsigned arithmetic: the distance between any two long longs
             * fits, and lo + k * step stays between lo and hi. */
            if (step == 0)
                return sg_err_set(err, SG_ERR_ARG, "%s: brace range {%.*s}: step out of range", orig, (int)inn, in);
            unsigned long long ulo = (unsigned long long)lo, uhi = (unsigned long long)hi;
            unsigned long long steps = (lo > hi ? ulo - uhi : uhi - ulo) / step; /* span - 1 */
            if (steps >= SG_BRACES_MAX_EXPANSION)
                return sg_err_set(err, SG_ERR_LIMIT, "%s: brace range {%.*s} gives more than %d names", orig, (int)inn,
                                  in, SG_BRACES_MAX_EXPANSION);
            for (unsigned long long k = 0; k <= steps; k++) {
                unsigned long long u = lo <= hi ? ulo + k * step : ulo - k * step;
                long long v = u <= (unsigned long long)LLONG_MAX ? (long long)u : -(long long)(~u) - 1;
                char b[128];
                snprintf(b, sizeof b, "%0*lld", width, v);
                strv_push(&alts, sg_xstrdup(b));
            }
        } else {
            continue; /* not an expansion: a literal brace */
        }
        if (out->n + alts.n > SG_BRACES_MAX_EXPANSION) {
            sg_strv_free(alts.v, alts.n);
            return sg_err_set(err, SG_ERR_LIMIT, "%s: brace pattern gives more than %d names", orig,
                              SG_BRACES_MAX_EXPANSION);
        }
        sg_status s = SG_OK;
        const char *rest = p + j + 1;
        for (size_t a = 0; a < alts.n && s == SG_OK; a++) {
            size_t nl = i + strlen(alts.v[a]) + strlen(rest) + 1;
            char *x = sg_xmalloc(nl);
            memcpy(x, p, i);
            snprintf(x + i, nl - i, "%s%s", alts.v[a], rest);
            s = expand(x, out, orig, err);
            free(x);
        }
        sg_strv_free(alts.v, alts.n);
        return s;
    }
    if (out->n >= SG_BRACES_MAX_EXPANSION)
        return sg_err_set(err, SG_ERR_LIMIT, "%s: brace pattern gives more than %d names", orig,
                          SG_BRACES_MAX_EXPANSION);
    strv_push(out, sg_xstrdup(p));
    return SG_OK;
}

sg_status sg_braces_expand(const char *pattern, char ***out, size_t *n, sg_err *err) {
    SG_ASSERT(pattern && out && n);
    *out = NULL;
    *n = 0;
    strv v = {0};
    sg_status s = expand(pattern, &v, pattern, err);
    if (s != SG_OK) {
        sg_strv_free(v.v, v.n);
        return s;
    }
    *out = v.v;
    *n = v.n;
    return SG_OK;
}

/* ---- index ---------------------------------------------------------------- */

void sg_shard_index_free(sg_shard_index *ix) {
    if (!ix) return;
    for (size_t i = 0; i < ix->n_shards; i++) free(ix->shards[i].path);
    free(ix->shards);
    sg_strv_free(ix->classes, ix->n_classes);
    free(ix);
}

static char *resolve_rel(const char *index_path, const char *p) {
    if (p[0] == '/') return sg_xstrdup(p);
    const char *slash = strrchr(index_path, '/');
    if (!slash) return sg_xstrdup(p);
    size_t dl = (size_t)(slash - index_path) + 1, n = dl + strlen(p) + 1;
    char *r = sg_xmalloc(n);
    memcpy(r, index_path, dl);
    memcpy(r + dl, p, strlen(p) + 1);
    return r;
}

static int json_u64(const cJSON *o, const char *k, uint64_t *v) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble > 9.0e15) return 0;
    *v = (uint64_t)x->valuedouble;
    return 1;
}

sg_status sg_shard_index_load(const char *path, sg_shard_index **out, sg_err *err) {
    SG_ASSERT(path && out);
    *out = NULL;
    uint8_t *data;
    size_t len;
    sg_status s = sg_file_read_all(path, &data, &len, (size_t)256 << 20, err);
    if (s != SG_OK) return s;
    cJSON *j = cJSON_ParseWithLength((const char *)data, len);
    free(data);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return sg_err_set(err, SG_ERR_FORMAT, "%s: not a JSON object", path);
    }
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(j, "format");
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(j, "version");
    const cJSON *shards = cJSON_GetObjectItemCaseSensitive(j, "shards");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "sgps-shards") != 0 || !cJSON_IsArray(shards)) {
        cJSON_Delete(j);
        return sg_err_set(err, SG_ERR_FORMAT, "%s: not an sgps shard index (format \"sgps-shards\", \"shards\" array)",
                          path);
    }
    if (cJSON_IsNumber(ver) && ver->valuedouble > 1) {
        double v = ver->valuedouble; /* read before the document is freed */
        cJSON_Delete(j);
        return sg_err_set(err, SG_ERR_VERSION, "%s: index version %g is newer than this sgps (1)", path, v);
    }
    sg_shard_index *ix = sg_xcalloc(1, sizeof *ix);
    size_t n = (size_t)cJSON_GetArraySize(shards);
    ix->shards = sg_xcalloc(n ? n : 1, sizeof(sg_shard_entry));
    const cJSON *e;
    cJSON_ArrayForEach(e, shards) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(e, "path");
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(e, "sha256");
        sg_shard_entry *se = &ix->shards[ix->n_shards];
        if (!cJSON_IsString(p) || !*p->valuestring || !json_u64(e, "samples", &se->samples) ||
            !json_u64(e, "bytes", &se->bytes) || !cJSON_IsString(h) || strlen(h->valuestring) != 64) {
            s = sg_err_set(err, SG_ERR_FORMAT, "%s: shard %zu: needs path, samples, bytes and a 64-hex sha256", path,
                           ix->n_shards);
            break;
        }
        se->path = resolve_rel(path, p->valuestring);
        memcpy(se->sha256, h->valuestring, 65);
        ix->total_samples += se->samples;
        ix->n_shards++;
    }
    const cJSON *cl = cJSON_GetObjectItemCaseSensitive(j, "classes");
    if (s == SG_OK && cl) {
        if (!cJSON_IsArray(cl)) {
            s = sg_err_set(err, SG_ERR_FORMAT, "%s: \"classes\" must be an array of strings", path);
        } else {
            size_t nc = (size_t)cJSON_GetArraySize(cl);
            ix->classes = sg_xcalloc(nc ? nc : 1, sizeof(char *));
            const cJSON *c;
            cJSON_ArrayForEach(c, cl) {
                if (!cJSON_IsString(c)) {
                    s = sg_err_set(err, SG_ERR_FORMAT, "%s: \"classes\" must be an array of strings", path);
                    break;
                }
                ix->classes[ix->n_classes++] = sg_xstrdup(c->valuestring);
            }
        }
    }
    cJSON_Delete(j);
    if (s != SG_OK) {
        sg_shard_index_free(ix);
        return s;
    }
    *out = ix;
    return SG_OK;
}

int sg_shard_spec_is_index(const char *spec) {
    size_t l = strlen(spec);
    return l > 5 && strcmp(spec + l - 5, ".json") == 0;
}

sg_status sg_shard_list_resolve(const char *spec, char ***paths, size_t *n, sg_err *err) {
    SG_ASSERT(spec && paths && n);
    if (sg_shard_spec_is_index(spec)) {
        sg_shard_index *ix;
        sg_status s = sg_shard_index_load(spec, &ix, err);
        if (s != SG_OK) return s;
        *paths = sg_xcalloc(ix->n_shards ? ix->n_shards : 1, sizeof(char *));
        for (size_t i = 0; i < ix->n_shards; i++) (*paths)[i] = sg_xstrdup(ix->shards[i].path);
        *n = ix->n_shards;
        sg_shard_index_free(ix);
        return SG_OK;
    }
    return sg_braces_expand(spec, paths, n, err);
}

sg_status sg_shard_index_verify(const char *index_path, size_t *n_bad, sg_err *err) {
    sg_shard_index *ix;
    *n_bad = 0;
    sg_status s = sg_shard_index_load(index_path, &ix, err);
    if (s != SG_OK) return s;
    sg_status first = SG_OK;
    for (size_t i = 0; i < ix->n_shards; i++) {
        const sg_shard_entry *se = &ix->shards[i];
        sg_err e;
        char hex[65];
        struct stat fst;
        sg_status st = SG_OK;
        if (stat(se->path, &fst) != 0) {
            st = SG_ERR_IO;
            sg_log(SG_LOG_ERROR, "%s: cannot open: %s", se->path, strerror(errno));
        } else if ((uint64_t)fst.st_size != se->bytes) {
            st = SG_ERR_CHECKSUM;
            sg_log(SG_LOG_ERROR, "%s: %llu bytes, index says %llu", se->path, (unsigned long long)fst.st_size,
                   (unsigned long long)se->bytes);
        } else if ((st = sg_sha256_file(se->path, hex, &e)) != SG_OK) {
            sg_log(SG_LOG_ERROR, "%s", e.msg);
        } else if (strcmp(hex, se->sha256) != 0) {
            st = SG_ERR_CHECKSUM;
            sg_log(SG_LOG_ERROR, "%s: sha256 %s, index says %s", se->path, hex, se->sha256);
        } else {
            sg_shard_reader_opts o;
            sg_shard_reader_opts_default(&o);
            o.require_image = 0;
            sg_shard_reader *r = sg_shard_reader_open(se->path, &o, &e);
            if (!r) {
                st = SG_ERR_IO;
                sg_log(SG_LOG_ERROR, "%s", e.msg);
            } else {
                uint64_t cnt = 0;
                sg_sample *smp;
                while (sg_shard_reader_next(r, &smp) == SG_OK && smp) cnt++;
                if (sg_shard_reader_n_skipped(r) || cnt != se->samples) {
                    st = SG_ERR_FORMAT;
                    sg_log(SG_LOG_ERROR, "%s: %llu good samples and %llu skipped, index says %llu", se->path,
                           (unsigned long long)cnt, (unsigned long long)sg_shard_reader_n_skipped(r),
                           (unsigned long long)se->samples);
                }
                sg_shard_reader_free(r);
            }
        }
        if (st != SG_OK) {
            (*n_bad)++;
            if (first == SG_OK) first = st;
        }
    }
    size_t ns = ix->n_shards;
    sg_shard_index_free(ix);
    if (first != SG_OK)
        return sg_err_set(err, first, "%s: %zu of %zu shards failed verification", index_path, *n_bad, ns);
    return SG_OK;
}
