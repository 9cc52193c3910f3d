/* sg_shard_reader.c — streaming WebDataset reader over tar, tar.zst, tar.gz
 * (compression detected from content by libarchive).
 *
 * Members are read one at a time straight from the (de)compressed stream;
 * consecutive members sharing a key form a sample. One member of look-ahead
 * is kept: the first member whose key differs ends the current sample and
 * starts the next. A bad member poisons only its own sample; a broken stream
 * (libarchive reporting a fatal error) ends the shard, and the sample being
 * assembled at that moment is dropped with it, because it may be missing
 * members. Keys are remembered as 64-bit hashes to find duplicates. */
#include "sg_io.h"

#include <archive.h>
#include <archive_entry.h>
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SG_READER_BLOCK (1u << 20)
#define SG_READER_MAX_RETRIES 16

static const char *const skip_names[SG_SKIP__COUNT] = {
    "stream broken", "bad image", "too large", "unsupported member type",
    "bad or missing label", "duplicate key", "unsafe member name", "no image",
};

const char *sg_skip_reason_str(sg_skip_reason r) {
    return (unsigned)r < SG_SKIP__COUNT ? skip_names[r] : "unknown";
}

void sg_shard_reader_opts_default(sg_shard_reader_opts *o) {
    memset(o, 0, sizeof *o);
    o->limits = sg_image_limits_default();
    o->require_image = 1;
    o->max_member_bytes = SG_SHARD_MAX_MEMBER_BYTES;
    o->max_members = 64;
    o->log_skips = 1;
    o->max_messages = 1000;
}

/* A member as read: owned strings and bytes. */
typedef struct rd_member {
    char *key, *ext;
    uint8_t *data;
    size_t len;
    int bad;              /* sg_skip_reason + 1, 0 when fine */
    char why[256];
} rd_member;

struct sg_shard_reader {
    struct archive *a;
    char *name;
    sg_shard_reader_opts o;
    int done;
    sg_status brk_status;
    char brk_msg[512];
    uint64_t skips[SG_SKIP__COUNT];
    char **msgs;
    size_t n_msgs;
    int64_t n_out;
    rd_member pending;
    int have_pending;
    /* the sample under assembly / handed out */
    char *key;
    rd_member *mem;
    size_t n_mem, cap_mem;
    sg_member *views;
    int bad;
    char why[256];
    char *label_str;
    sg_sample sample;
    /* key hash set (open addressing, 0 = empty) */
    uint64_t *keys;
    size_t n_keys, cap_keys;
};

static void member_clear(rd_member *m) {
    free(m->key);
    free(m->ext);
    free(m->data);
    memset(m, 0, sizeof *m);
}

static void sample_clear(sg_shard_reader *r) {
    for (size_t i = 0; i < r->n_mem; i++) member_clear(&r->mem[i]);
    r->n_mem = 0;
    free(r->key);
    r->key = NULL;
    free(r->label_str);
    r->label_str = NULL;
    r->bad = 0;
    r->why[0] = 0;
    sg_image_free(&r->sample.img);
    memset(&r->sample, 0, sizeof r->sample);
}

static void add_skip(sg_shard_reader *r, sg_skip_reason why, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void add_skip(sg_shard_reader *r, sg_skip_reason why, const char *key, const char *fmt, ...) {
    r->skips[why]++;
    char reason[512], line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    snprintf(line, sizeof line, "%s: key %s: %s", r->name, key && *key ? key : "-", reason);
    if (r->o.log_skips) sg_log(SG_LOG_WARN, "%s", line);
    if (r->n_msgs < r->o.max_messages) {
        r->msgs = sg_xrealloc(r->msgs, sizeof(char *) * (r->n_msgs + 1));
        r->msgs[r->n_msgs++] = sg_xstrdup(line);
    }
}

/* Returns 1 if the key was new (and inserts it). */
static int key_insert(sg_shard_reader *r, const char *key) {
    uint64_t h = sg_fnv1a64(key, strlen(key));
    if (h == 0) h = 1;
    if (2 * (r->n_keys + 1) > r->cap_keys) {
        size_t nc = r->cap_keys ? 2 * r->cap_keys : 1024;
        uint64_t *nk = sg_xcalloc(nc, sizeof(uint64_t));
        for (size_t i = 0; i < r->cap_keys; i++) {
            if (!r->keys[i]) continue;
            size_t j = r->keys[i] & (nc - 1);
            while (nk[j]) j = (j + 1) & (nc - 1);
            nk[j] = r->keys[i];
        }
        free(r->keys);
        r->keys = nk;
        r->cap_keys = nc;
    }
    size_t j = h & (r->cap_keys - 1);
    while (r->keys[j]) {
        if (r->keys[j] == h) return 0;
        j = (j + 1) & (r->cap_keys - 1);
    }
    r->keys[j] = h;
    r->n_keys++;
    return 1;
}

static sg_shard_reader *reader_new(const char *name, const sg_shard_reader_opts *opts) {
    sg_shard_reader *r = sg_xcalloc(1, sizeof *r);
    if (opts)
        r->o = *opts;
    else
        sg_shard_reader_opts_default(&r->o);
    if (r->o.max_members == 0) r->o.max_members = 64;
    if (r->o.max_member_bytes == 0) r->o.max_member_bytes = SG_SHARD_MAX_MEMBER_BYTES;
    if (r->o.limits.max_pixels == 0) r->o.limits = sg_image_limits_default();
    r->name = sg_xstrdup(name ? name : "shard");
    r->a = archive_read_new();
    SG_ASSERT(r->a);
    archive_read_support_format_tar(r->a);
    archive_read_support_filter_zstd(r->a);
    archive_read_support_filter_gzip(r->a);
    return r;
}

static void mark_broken(sg_shard_reader *r, const char *key, const char *what) {
    r->done = 1;
    r->brk_status = SG_ERR_FORMAT;
    char ctx[300];
    if (key)
        snprintf(ctx, sizeof ctx, "%s", key);
    else if (r->n_out > 0)
        snprintf(ctx, sizeof ctx, "(after sample %lld)", (long long)r->n_out);
    else
        snprintf(ctx, sizeof ctx, "(start)");
    snprintf(r->brk_msg, sizeof r->brk_msg, "%s: key %s: stream broken: %s (rest of shard skipped)", r->name, ctx,
             what);
    add_skip(r, SG_SKIP_STREAM, ctx, "stream broken: %s (rest of shard skipped)", what);
}

static void broken_at_open(sg_shard_reader *r) {
    const char *e = archive_error_string(r->a);
    mark_broken(r, NULL, e ? e : "cannot open");
}

sg_shard_reader *sg_shard_reader_open(const char *path, const sg_shard_reader_opts *opts, sg_err *err) {
    SG_ASSERT(path);
    struct stat st;
    if (stat(path, &st) != 0) {
        sg_err_set(err, SG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        sg_err_set(err, SG_ERR_IO, "%s: not a regular file", path);
        return NULL;
    }
    sg_shard_reader *r = reader_new(path, opts);
    if (archive_read_open_filename(r->a, path, SG_READER_BLOCK) != ARCHIVE_OK) broken_at_open(r);
    return r;
}

sg_shard_reader *sg_shard_reader_open_memory(const void *data, size_t len, const char *name,
                                             const sg_shard_reader_opts *opts, sg_err *err) {
    (void)err;
    SG_ASSERT(data || len == 0);
    sg_shard_reader *r = reader_new(name ? name : "memory", opts);
    static const uint8_t empty[1] = {0};
    if (archive_read_open_memory(r->a, len ? data : empty, len) != ARCHIVE_OK) broken_at_open(r);
    return r;
}

void sg_shard_reader_free(sg_shard_reader *r) {
    if (!r) return;
    sample_clear(r);
    member_clear(&r->pending);
    free(r->mem);
    free(r->views);
    for (size_t i = 0; i < r->n_msgs; i++) free(r->msgs[i]);
    free(r->msgs);
    free(r->keys);
    archive_read_free(r->a);
    free(r->name);
    free(r);
}

int sg_shard_reader_done(const sg_shard_reader *r) { return r->done; }

sg_status sg_shard_reader_status(const sg_shard_reader *r, sg_err *err) {
    if (r->brk_status == SG_OK) return SG_OK;
    return sg_err_set(err, r->brk_status, "%s", r->brk_msg);
}

void sg_shard_reader_skips(const sg_shard_reader *r, uint64_t counts[SG_SKIP__COUNT]) {
    memcpy(counts, r->skips, sizeof r->skips);
}

uint64_t sg_shard_reader_n_skipped(const sg_shard_reader *r) {
    uint64_t n = 0;
    for (int i = 0; i < SG_SKIP__COUNT; i++) n += r->skips[i];
    return n;
}

size_t sg_shard_reader_n_messages(const sg_shard_reader *r) { return r->n_msgs; }

const char *sg_shard_reader_message(const sg_shard_reader *r, size_t i) {
    return i < r->n_msgs ? r->msgs[i] : NULL;
}

/* ---- member reading ---------------------------------------------------- */

enum { RD_MEMBER, RD_END, RD_BROKEN };

static void member_bad(rd_member *m, sg_skip_reason why, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void member_bad(rd_member *m, sg_skip_reason why, const char *fmt, ...) {
    if (m->bad) return;
    m->bad = (int)why + 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->why, sizeof m->why, fmt, ap);
    va_end(ap);
}

static int name_unsafe(const char *p) {
    if (p[0] == '/') return 1;
    for (const char *s = p; *s;) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 2 && s[0] == '.' && s[1] == '.') return 1;
        if (!e) break;
        s = e + 1;
    }
    return 0;
}

/* Splits "dir/base.ext.more" into key "dir/base" and ext "ext.more" (lowercased). */
static void split_name(const char *p, char **key, char **ext) {
    const char *base = strrchr(p, '/');
    base = base ? base + 1 : p;
    const char *dot = strchr(base, '.');
    size_t kl = dot ? (size_t)(dot - p) : strlen(p);
    *key = sg_xmalloc(kl + 1);
    memcpy(*key, p, kl);
    (*key)[kl] = 0;
    *ext = sg_xstrdup(dot ? dot + 1 : "");
    for (char *c = *ext; *c; c++) *c = (char)tolower((unsigned char)*c);
}

static int is_meta_name(const char *p) {
    const char *base = strrchr(p, '/');
    base = base ? base + 1 : p;
    const char *dot = strchr(base, '.');
    size_t n = dot ? (size_t)(dot - base) : strlen(base);
    return n >= 4 && base[0] == '_' && base[1] == '_' && base[n - 1] == '_' && base[n - 2] == '_';
}

/* Reads the entry's data into m->data (NUL-terminated). Returns RD_BROKEN if
 * the stream fails. A tar header gives the size: exactly that much is read
 * (libarchive reports a short member as a broken stream). Without a size the
 * buffer grows, and one byte past the limit is probed to tell a member of
 * exactly max_member_bytes from a larger one. */
static int read_data(sg_shard_reader *r, rd_member *m, struct archive_entry *e) {
    int64_t sz = archive_entry_size_is_set(e) ? archive_entry_size(e) : -1;
    size_t cap = r->o.max_member_bytes;
    if (sz > (int64_t)cap) {
        member_bad(m, SG_SKIP_TOO_LARGE, "member .%s is %lld bytes, above the limit of %zu", m->ext, (long long)sz,
                   cap);
        return archive_read_data_skip(r->a) == ARCHIVE_OK ? RD_MEMBER : RD_BROKEN;
    }
    size_t want = sz >= 0 ? (size_t)sz : (cap < 65536 ? cap : 65536);
    uint8_t *buf = sg_xmalloc(want + 1);
    size_t len = 0;
    for (;;) {
        if (len == want) {
            if (sz >= 0) break;
            if (len >= cap) {
                uint8_t probe;
                la_ssize_t got = archive_read_data(r->a, &probe, 1);
                if (got < 0) {
                    free(buf);
                    return RD_BROKEN;
                }
                if (got == 0) break;
                free(buf);
                member_bad(m, SG_SKIP_TOO_LARGE, "member .%s is above the limit of %zu bytes", m->ext, cap);
                return archive_read_data_skip(r->a) == ARCHIVE_OK ? RD_MEMBER : RD_BROKEN;
            }
            want = want > cap / 2 ? cap : 2 * want;
            buf = sg_xrealloc(buf, want + 1);
        }
        la_ssize_t got = archive_read_data(r->a, buf + len, want - len);
        if (got < 0) {
            free(buf);
            return RD_BROKEN;
        }
        if (got == 0) break;
        len += (size_t)got;
    }
    buf[len] = 0;
    m->data = buf;
    m->len = len;
    return RD_MEMBER;
}

static int read_member(sg_shard_reader *r, rd_member *m) {
    struct archive_entry *e;
    for (int retries = 0;;) {
        memset(m, 0, sizeof *m);
        int rc = archive_read_next_header(r->a, &e);
        if (rc == ARCHIVE_EOF) return RD_END;
        if (rc == ARCHIVE_RETRY && ++retries < SG_READER_MAX_RETRIES) continue;
        if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) return RD_BROKEN;
        const char *p = archive_entry_pathname(e);
        if (!p || !*p) {
            m->key = sg_xstrdup("(no name)");
            m->ext = sg_xstrdup("");
            member_bad(m, SG_SKIP_UNSAFE_NAME, "member without a usable name");
            return archive_read_data_skip(r->a) == ARCHIVE_OK ? RD_MEMBER : RD_BROKEN;
        }
        while (p[0] == '.' && p[1] == '/') p += 2;
        mode_t ft = archive_entry_filetype(e);
        if (ft == AE_IFDIR || !*p) {
            if (archive_read_data_skip(r->a) != ARCHIVE_OK) return RD_BROKEN;
            continue;
        }
        if (is_meta_name(p)) {
            if (archive_read_data_skip(r->a) != ARCHIVE_OK) return RD_BROKEN;
            continue;
        }
        split_name(p, &m->key, &m->ext);
        if (name_unsafe(p)) member_bad(m, SG_SKIP_UNSAFE_NAME, "unsafe member name '%.200s'", p);
        size_t kl = strlen(m->key);
        if (kl == 0 || m->key[kl - 1] == '/') /* ".jpg", "dir/.jpg": no key the writer could have written */
            member_bad(m, SG_SKIP_UNSAFE_NAME, "unsafe member name '%.200s': empty key", p);
        if (archive_entry_hardlink(e))
            member_bad(m, SG_SKIP_MEMBER_TYPE, "member '%.200s' is a hard link", p);
        else if (ft != AE_IFREG)
            member_bad(m, SG_SKIP_MEMBER_TYPE, "member '%.200s' is not a regular file (type 0%o)", p, (unsigned)ft);
        else if (archive_entry_sparse_count(e) > 0)
            member_bad(m, SG_SKIP_MEMBER_TYPE, "member '%.200s' is a sparse file", p);
        if (m->bad) return archive_read_data_skip(r->a) == ARCHIVE_OK ? RD_MEMBER : RD_BROKEN;
        return read_data(r, m, e);
    }
}

/* ---- sample assembly ---------------------------------------------------- */

static void sample_add(sg_shard_reader *r, rd_member *m) {
    if (!r->key) r->key = sg_xstrdup(m->key);
    if (m->bad && !r->bad) {
        r->bad = m->bad;
        snprintf(r->why, sizeof r->why, "%s", m->why);
    }
    for (size_t i = 0; i < r->n_mem && !r->bad; i++)
        if (strcmp(r->mem[i].ext, m->ext) == 0) {
            r->bad = SG_SKIP_DUPLICATE + 1;
            snprintf(r->why, sizeof r->why, "member .%.100s appears twice", m->ext);
        }
    if (r->n_mem >= r->o.max_members && !r->bad) {
        r->bad = SG_SKIP_TOO_LARGE + 1;
        snprintf(r->why, sizeof r->why, "more than %zu members", r->o.max_members);
    }
    if (r->bad) {
        member_clear(m);
        return;
    }
    if (r->n_mem == r->cap_mem) {
        r->cap_mem = r->cap_mem ? 2 * r->cap_mem : 8;
        r->mem = sg_xrealloc(r->mem, sizeof(rd_member) * r->cap_mem);
        r->views = sg_xrealloc(r->views, sizeof(sg_member) * r->cap_mem);
    }
    r->mem[r->n_mem++] = *m;
    memset(m, 0, sizeof *m);
}

static int parse_cls(const rd_member *m, int *label) {
    const char *s = (const char *)m->data;
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
    if (!(*s >= '0' && *s <= '9')) return 0;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || v < 0 || v > INT_MAX) return 0;
    while (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r') end++;
    if (end != (const char *)m->data + m->len) return 0;
    *label = (int)v;
    return 1;
}

static const char *const image_exts[] = {"jpg", "jpeg", "png", "ppm", "pgm", "pnm"};

/* Fills r->sample from the assembled members. Returns 1 if the sample is
 * good, 0 if it was skipped (counted). */
static int sample_finish(sg_shard_reader *r) {
    const char *key = r->key;
    if (!key_insert(r, key)) {
        add_skip(r, SG_SKIP_DUPLICATE, key, "key appears again, not next to its first occurrence");
        return 0;
    }
    if (r->bad) {
        add_skip(r, (sg_skip_reason)(r->bad - 1), key, "%s", r->why);
        return 0;
    }
    sg_sample *s = &r->sample;
    memset(s, 0, sizeof *s);
    s->key = key;
    s->label = -1;
    int have_cls = 0;
    for (size_t i = 0; i < r->n_mem; i++) {
        rd_member *m = &r->mem[i];
        r->views[i] = (sg_member){m->ext, m->data, m->len};
        if (strcmp(m->ext, "cls") == 0) {
            if (!parse_cls(m, &s->label)) {
                add_skip(r, SG_SKIP_LABEL, key, "unparsable .cls label '%.40s'", (const char *)m->data);
                return 0;
            }
            have_cls = 1;
        } else if (strcmp(m->ext, "json") == 0) {
            s->json = (const char *)m->data;
        }
        for (size_t k = 0; k < sizeof image_exts / sizeof image_exts[0] && !s->image; k++)
            if (strcmp(m->ext, image_exts[k]) == 0) {
                s->image = m->data;
                s->image_len = m->len;
                s->image_ext = m->ext;
            }
    }
    s->members = r->views;
    s->n_members = r->n_mem;
    if (s->json) {
        cJSON *j = cJSON_ParseWithLength(s->json, strlen(s->json));
        if (!j || !cJSON_IsObject(j)) {
            cJSON_Delete(j);
            add_skip(r, SG_SKIP_LABEL, key, "unparsable .json");
            return 0;
        }
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(j, "label");
        int ok = 1;
        if (l && cJSON_IsNumber(l)) {
            double v = l->valuedouble;
            if (v >= 0 && v <= INT_MAX && v == (double)(int)v) {
                if (!have_cls) s->label = (int)v;
            } else {
                ok = 0;
            }
        } else if (l && cJSON_IsString(l)) {
            const char *v = l->valuestring;
            r->label_str = sg_xstrdup(v);
            s->label_str = r->label_str;
            if (!have_cls)
                for (size_t c = 0; c < r->o.n_classes; c++)
                    if (strcmp(r->o.classes[c], v) == 0) {
                        s->label = (int)c;
                        break;
                    }
        } else if (l && !cJSON_IsNull(l)) {
            ok = 0;
        }
        cJSON_Delete(j);
        if (!ok) {
            add_skip(r, SG_SKIP_LABEL, key, "unparsable .json label");
            return 0;
        }
    }
    if (r->o.require_label && s->label < 0) {
        add_skip(r, SG_SKIP_LABEL, key, s->label_str ? "label '%.100s' is not a known class" : "missing label%.0s",
                 s->label_str ? s->label_str : "");
        return 0;
    }
    if (!s->image && r->o.require_image) {
        add_skip(r, SG_SKIP_NO_IMAGE, key, "no image member");
        return 0;
    }
    if (s->image && r->o.decode) {
        sg_err e;
        sg_status st = sg_image_decode_hint(s->image, s->image_len, NULL, &r->o.limits, r->o.min_w, r->o.min_h,
                                            &s->img, &e);
        if (st != SG_OK) {
            const char *msg = strncmp(e.msg, "image: ", 7) == 0 ? e.msg + 7 : e.msg;
            add_skip(r, st == SG_ERR_LIMIT ? SG_SKIP_TOO_LARGE : SG_SKIP_BAD_IMAGE, key, ".%s: %s", s->image_ext,
                     msg);
            return 0;
        }
    }
    s->index = r->n_out++;
    return 1;
}

sg_status sg_shard_reader_next(sg_shard_reader *r, sg_sample **out) {
    SG_ASSERT(r && out);
    *out = NULL;
    sample_clear(r);
    while (!r->done || r->have_pending) {
        if (r->have_pending) {
            sample_add(r, &r->pending);
            r->have_pending = 0;
        }
        for (;;) {
            if (r->done) break;
            rd_member m;
            int rc = read_member(r, &m);
            if (rc == RD_END) {
                r->done = 1;
                member_clear(&m);
                break;
            }
            if (rc == RD_BROKEN) {
                /* A member of another key failed: the current sample is
                 * complete. A failed header: it may have lost members. */
                const char *e = archive_error_string(r->a);
                int complete = r->key && m.key && strcmp(m.key, r->key) != 0;
                mark_broken(r, complete ? m.key : r->key, e ? e : "read error");
                member_clear(&m);
                if (complete) break;
                sample_clear(r);
                return SG_OK;
            }
            if (r->key && strcmp(m.key, r->key) != 0) {
                r->pending = m;
                r->have_pending = 1;
                break;
            }
            sample_add(r, &m);
        }
        if (!r->key) continue;
        if (sample_finish(r)) {
            *out = &r->sample;
            return SG_OK;
        }
        sample_clear(r);
    }
    return SG_OK;
}
