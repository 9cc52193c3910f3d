/* sg_pack.c — packs an ImageFolder or a CSV list into WebDataset shards, plus
 * the shard index JSON and the class list (docs/formats-shards.md).
 *
 * The whole source list is read and sorted first, so the output depends only
 * on the source: samples in path order (or, with a group column, groups in the
 * order of their first path, paths within a group), class ids in sorted class
 * name order. Image bytes are copied unchanged; only their magic bytes are
 * checked so that a shard never carries a file no decoder will accept.
 *
 * Everything that can be checked from the list (keys, labels) is checked
 * while listing, so such errors name the source line and come before any
 * shard is written. Shards stay under their temp names until the last one is
 * complete; then the old index is removed, the shards renamed and the class
 * list and index written, so a failed pack leaves no new file under a final
 * name and an index, when there is one, describes the shards beside it. */
#include "sg_io.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct pk_entry {
    char *path;  /* as opened */
    char *key;   /* WebDataset key */
    char *label; /* class name or NULL */
    char *group; /* group value or NULL */
    char **extra; /* (n_cols) values of the extra columns, or NULL */
    size_t order; /* group rank, then position */
    int cls;
} pk_entry;

typedef struct pk_list {
    pk_entry *e;
    size_t n, cap;
    char **extra_names; /* (n_extra) */
    size_t n_extra;
} pk_list;

static pk_entry *pk_push(pk_list *l) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 1024;
        l->e = sg_xrealloc(l->e, sizeof(pk_entry) * l->cap);
    }
    pk_entry *e = &l->e[l->n++];
    memset(e, 0, sizeof *e);
    e->cls = -1;
    return e;
}

static void pk_free(pk_list *l) {
    for (size_t i = 0; i < l->n; i++) {
        free(l->e[i].path);
        free(l->e[i].key);
        free(l->e[i].label);
        free(l->e[i].group);
        sg_strv_free(l->e[i].extra, l->e[i].extra ? l->n_extra : 0);
    }
    free(l->e);
    sg_strv_free(l->extra_names, l->n_extra);
}

static char *join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *r = sg_xmalloc(n);
    snprintf(r, n, "%s%s%s", a, (*a && a[strlen(a) - 1] != '/') ? "/" : "", b);
    return r;
}

/* Key from a relative path: extension dropped, other dots and backslashes
 * made safe, leading "./" and "/" removed, "//" made "/". The result may
 * still be invalid (a "__name__" basename, a trailing '/'): check it with
 * sg_shard_key_valid. */
static char *make_key(const char *rel) {
    while (rel[0] == '.' && rel[1] == '/') rel += 2;
    while (rel[0] == '/') rel++;
    char *k = sg_xstrdup(rel);
    size_t o = 0;
    for (size_t i = 0; k[i]; i++)
        if (!(k[i] == '/' && o > 0 && k[o - 1] == '/')) k[o++] = k[i];
    k[o] = 0;
    char *base = strrchr(k, '/');
    base = base ? base + 1 : k;
    char *dot = strrchr(base, '.');
    if (dot && dot != base) *dot = 0;
    for (char *c = k; *c; c++)
        if (*c == '.' || *c == '\\') *c = '_';
    return k;
}

#define PK_KEY_RULES "a key has no '__name__' basename and no empty path component"

/* A label becomes one line of the class list: no line breaks. (A NUL cannot
 * get here: folder names cannot hold one and a CSV with one is refused.) */
static int label_ok(const char *l) { return !strpbrk(l, "\r\n"); }

static int is_image_name(const char *n) {
    const char *d = strrchr(n, '.');
    if (!d) return 0;
    static const char *const ok[] = {".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".pnm"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (strcasecmp(d, ok[i]) == 0) return 1;
    return 0;
}


static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* ---- ImageFolder ------------------------------------------------------------ */

static sg_status list_folder(const char *src, pk_list *l, sg_err *err) {
    char *images = join(src, "images");
    const char *root = is_dir(images) ? images : src;
    const char *relpre = root == images ? "images/" : "";
    DIR *d = opendir(root);
    if (!d) {
        sg_status s = sg_err_set(err, SG_ERR_IO, "%s: cannot open folder: %s", root, strerror(errno));
        free(images);
        return s;
    }
    char **classes = NULL;
    size_t nc = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char *p = join(root, de->d_name);
        if (is_dir(p)) {
            classes = sg_xrealloc(classes, sizeof(char *) * (nc + 1));
            classes[nc++] = sg_xstrdup(de->d_name);
        }
        free(p);
    }
    closedir(d);
    qsort(classes, nc, sizeof(char *), sg_cmp_strp);
    sg_status s = SG_OK;
    for (size_t c = 0; c < nc && s == SG_OK; c++) {
        char *cd = join(root, classes[c]);
        DIR *dd = opendir(cd);
        if (!dd) {
            s = sg_err_set(err, SG_ERR_IO, "%s: cannot open folder: %s", cd, strerror(errno));
            free(cd);
            break;
        }
        while ((de = readdir(dd))) {
            if (de->d_name[0] == '.' || !is_image_name(de->d_name)) continue;
            pk_entry *e = pk_push(l);
            e->path = join(cd, de->d_name);
            size_t rn = strlen(relpre) + strlen(classes[c]) + strlen(de->d_name) + 2;
            char *rel = sg_xmalloc(rn);
            snprintf(rel, rn, "%s%s/%s", relpre, classes[c], de->d_name);
            e->key = make_key(rel);
            free(rel);
            e->label = sg_xstrdup(classes[c]);
        }
        closedir(dd);
        free(cd);
    }
    sg_strv_free(classes, nc);
    if (s == SG_OK && l->n == 0)
        s = sg_err_set(err, SG_ERR_FORMAT, "%s: no images found (expected %s<label>/<name>.jpg)", src,
                       root == images ? "images/" : "");
    free(images);
    return s;
}

/* What pack needs of a folder listing beyond sg_image_folder_list: labels
 * that fit one line of the class list, keys the writer accepts. */
static sg_status check_folder(const pk_list *l, sg_err *err) {
    for (size_t i = 0; i < l->n; i++) {
        const pk_entry *e = &l->e[i];
        if (!label_ok(e->label)) {
            const char *sl = strrchr(e->path, '/');
            return sg_err_set(err, SG_ERR_FORMAT, "%.*s: a class folder name with a line break cannot be a class name",
                              (int)(sl ? sl - e->path : 0), e->path);
        }
        if (!sg_shard_key_valid(e->key))
            return sg_err_set(err, SG_ERR_FORMAT, "%s: the file name gives the key '%s', not a valid WebDataset key "
                              "(" PK_KEY_RULES ")", e->path, e->key);
    }
    return SG_OK;
}

/* ---- CSV ----------------------------------------------------------------------- */

/* Splits one CSV record (RFC 4180 quoting) starting at *pos. Returns the
 * number of fields, or -1 on an unterminated quote. */
static int csv_record(const char *t, size_t n, size_t *pos, char ***fields) {
    size_t p = *pos;
    int nf = 0;
    char **f = NULL;
    sg_buf b = {0};
    for (;;) {
        b.len = 0;
        if (p < n && t[p] == '"') {
            p++;
            for (;;) {
                if (p >= n) {
                    sg_buf_free(&b);
                    sg_strv_free(f, (size_t)nf);
                    return -1;
                }
                if (t[p] == '"') {
                    if (p + 1 < n && t[p + 1] == '"') {
                        sg_buf_append(&b, "\"", 1);
                        p += 2;
                        continue;
                    }
                    p++;
                    break;
                }
                sg_buf_append(&b, t + p, 1);
                p++;
            }
            while (p < n && t[p] != ',' && t[p] != '\n' && t[p] != '\r') p++; /* junk after the quote */
        } else {
            size_t s = p;
            while (p < n && t[p] != ',' && t[p] != '\n' && t[p] != '\r') p++;
            sg_buf_append(&b, t + s, p - s);
        }
        sg_buf_append(&b, "", 1);
        f = sg_xrealloc(f, sizeof(char *) * (size_t)(nf + 1));
        f[nf++] = sg_xstrdup((const char *)b.data);
        if (p < n && t[p] == ',') {
            p++;
            continue;
        }
        if (p < n && t[p] == '\r') p++;
        if (p < n && t[p] == '\n') p++;
        break;
    }
    sg_buf_free(&b);
    *pos = p;
    *fields = f;
    return nf;
}

static sg_status list_csv(const char *csv, const char *group_col, pk_list *l, sg_err *err) {
    uint8_t *data;
    size_t len;
    sg_status s = sg_file_read_all(csv, &data, &len, (size_t)1 << 31, err);
    if (s != SG_OK) return s;
    const char *t = (const char *)data;
    const char *nul = memchr(t, 0, len);
    if (nul) {
        size_t nl = 1;
        for (const char *c = t; c < nul; c++) nl += *c == '\n';
        free(data);
        return sg_err_set(err, SG_ERR_FORMAT, "%s:%zu: NUL byte (not a text CSV)", csv, nl);
    }
    size_t pos = 0;
    if (len >= 3 && memcmp(t, "\xEF\xBB\xBF", 3) == 0) pos = 3;
    char **hdr;
    int nh = csv_record(t, len, &pos, &hdr);
    if (nh <= 0) {
        free(data);
        return sg_err_set(err, SG_ERR_FORMAT, "%s: missing header line", csv);
    }
    int pc = -1, lc = -1, gc = -1;
    for (int i = 0; i < nh; i++) {
        if (strcmp(hdr[i], "path") == 0 && pc < 0) pc = i;
        else if (strcmp(hdr[i], "label") == 0 && lc < 0) lc = i;
    }
    if (pc < 0) {
        sg_strv_free(hdr, (size_t)nh);
        free(data);
        return sg_err_set(err, SG_ERR_FORMAT, "%s: header has no 'path' column", csv);
    }
    if (group_col) {
        for (int i = 0; i < nh; i++)
            if (strcmp(hdr[i], group_col) == 0) gc = i;
        if (gc < 0) {
            sg_strv_free(hdr, (size_t)nh);
            free(data);
            return sg_err_set(err, SG_ERR_ARG, "%s: no column '%s' for --group", csv, group_col);
        }
    }
    int *extra_idx = sg_xmalloc(sizeof(int) * (size_t)nh);
    for (int i = 0; i < nh; i++)
        if (i != pc && i != lc) {
            extra_idx[l->n_extra] = i;
            l->extra_names = sg_xrealloc(l->extra_names, sizeof(char *) * (l->n_extra + 1));
            l->extra_names[l->n_extra++] = sg_xstrdup(hdr[i]);
        }
    char *dir = sg_xstrdup(csv);
    char *sl = strrchr(dir, '/');
    if (sl)
        sl[1] = 0;
    else
        dir[0] = 0;
    size_t line = 1, counted = 0; /* line: of the record starting at pos (a quoted field may span lines) */
    for (; counted < pos; counted++) line += t[counted] == '\n';
    while (pos < len && s == SG_OK) {
        for (; counted < pos; counted++) line += t[counted] == '\n';
        char **f;
        int nf = csv_record(t, len, &pos, &f);
        if (nf < 0) {
            s = sg_err_set(err, SG_ERR_FORMAT, "%s:%zu: unterminated quoted field", csv, line);
            break;
        }
        if (nf == 1 && f[0][0] == 0) { /* blank line */
            sg_strv_free(f, 1);
            continue;
        }
        if (nf != nh) {
            s = sg_err_set(err, SG_ERR_FORMAT, "%s:%zu: %d fields, the header has %d", csv, line, nf, nh);
            sg_strv_free(f, (size_t)nf);
            break;
        }
        if (!f[pc][0]) {
            s = sg_err_set(err, SG_ERR_FORMAT, "%s:%zu: empty path", csv, line);
            sg_strv_free(f, (size_t)nf);
            break;
        }
        if (lc >= 0 && !label_ok(f[lc])) {
            s = sg_err_set(err, SG_ERR_FORMAT, "%s:%zu: the label contains a line break", csv, line);
            sg_strv_free(f, (size_t)nf);
            break;
        }
        char *key = make_key(f[pc]);
        if (!sg_shard_key_valid(key)) {
            s = sg_err_set(err, SG_ERR_FORMAT, "%s:%zu: the path '%s' gives the key '%s', not a valid WebDataset key "
                           "(" PK_KEY_RULES ")", csv, line, f[pc], key);
            free(key);
            sg_strv_free(f, (size_t)nf);
            break;
        }
        pk_entry *e = pk_push(l);
        e->path = f[pc][0] == '/' ? sg_xstrdup(f[pc]) : join(dir, f[pc]);
        e->key = key;
        if (lc >= 0 && f[lc][0]) e->label = sg_xstrdup(f[lc]);
        if (gc >= 0 && f[gc][0]) e->group = sg_xstrdup(f[gc]);
        if (l->n_extra) {
            e->extra = sg_xcalloc(l->n_extra, sizeof(char *));
            for (size_t k = 0; k < l->n_extra; k++) e->extra[k] = sg_xstrdup(f[extra_idx[k]]);
        }
        sg_strv_free(f, (size_t)nf);
    }
    free(dir);
    free(extra_idx);
    sg_strv_free(hdr, (size_t)nh);
    free(data);
    if (s == SG_OK && l->n == 0) s = sg_err_set(err, SG_ERR_FORMAT, "%s: no rows", csv);
    return s;
}

/* ---- ordering ------------------------------------------------------------------ */

static int cmp_by_key(const void *a, const void *b) {
    return strcmp(((const pk_entry *)a)->key, ((const pk_entry *)b)->key);
}

typedef struct grp_ref {
    const char *g;
    size_t idx;
} grp_ref;

static int cmp_grp(const void *a, const void *b) {
    const grp_ref *x = a, *y = b;
    int c = strcmp(x->g, y->g);
    if (c) return c;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int cmp_by_order(const void *a, const void *b) {
    size_t x = ((const pk_entry *)a)->order, y = ((const pk_entry *)b)->order;
    return x < y ? -1 : x > y;
}

/* Sorted by key; with groups, each group moves up to its first key's place. */
static void order_entries(pk_list *l, int grouped) {
    qsort(l->e, l->n, sizeof(pk_entry), cmp_by_key);
    if (!grouped) return;
    grp_ref *g = sg_xmalloc(sizeof(grp_ref) * l->n);
    for (size_t i = 0; i < l->n; i++) g[i] = (grp_ref){l->e[i].group ? l->e[i].group : l->e[i].key, i};
    qsort(g, l->n, sizeof(grp_ref), cmp_grp);
    /* order = (index of the group's first key) * n + own index */
    for (size_t i = 0; i < l->n;) {
        size_t j = i, first = g[i].idx;
        while (j < l->n && strcmp(g[j].g, g[i].g) == 0) j++;
        for (size_t k = i; k < j; k++) l->e[g[k].idx].order = first * l->n + g[k].idx;
        i = j;
    }
    free(g);
    qsort(l->e, l->n, sizeof(pk_entry), cmp_by_order);
}

static int same_group(const pk_entry *a, const pk_entry *b) {
    return a->group && b->group && strcmp(a->group, b->group) == 0;
}

/* ---- output names ---------------------------------------------------------------- */

/* Checks that the pattern has exactly one %d / %0Nd, in the file name (the
 * folder is created once), and %% otherwise. */
static sg_status pattern_check(const char *pat, sg_err *err) {
    int conv = 0;
    const char *base = strrchr(pat, '/');
    base = base ? base + 1 : pat;
    for (const char *p = pat; *p; p++) {
        if (*p != '%') continue;
        if (p[1] == '%') {
            p++;
            continue;
        }
        const char *q = p + 1;
        if (*q == '0') q++;
        while (*q >= '0' && *q <= '9') q++;
        if (*q != 'd' || q - p > 4) return sg_err_set(err, SG_ERR_ARG, "%s: only %%d or %%0Nd may appear in the "
                                                                       "output pattern", pat);
        if (p < base)
            return sg_err_set(err, SG_ERR_ARG, "%s: the %%d must be in the file name, not in the folder (%%%% for a "
                              "literal %%)", pat);
        conv++;
        p = q;
    }
    if (conv != 1)
        return sg_err_set(err, SG_ERR_ARG, "%s: the output pattern needs exactly one %%d, e.g. out/ham-%%06d.tar.zst",
                          pat);
    return SG_OK;
}

static char *pattern_name(const char *pat, long long v) {
    sg_buf b = {0};
    for (const char *p = pat; *p; p++) {
        if (*p != '%') {
            sg_buf_append(&b, p, 1);
            continue;
        }
        if (p[1] == '%') {
            sg_buf_append(&b, "%", 1);
            p++;
            continue;
        }
        const char *q = p + 1;
        int zero = *q == '0';
        if (zero) q++;
        int width = 0;
        while (*q >= '0' && *q <= '9') width = width * 10 + (*q++ - '0');
        if (zero)
            sg_buf_printf(&b, "%0*lld", width, v);
        else
            sg_buf_printf(&b, "%*lld", width, v);
        p = q;
    }
    sg_buf_append(&b, "", 1);
    return (char *)b.data;
}

/* The first n bytes of a pattern with %% made %. */
static char *pattern_literal(const char *pat, size_t n) {
    char *s = sg_xmalloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        s[o++] = pat[i];
        if (pat[i] == '%' && i + 1 < n && pat[i + 1] == '%') i++;
    }
    s[o] = 0;
    return s;
}

/* "<dir>/<stem>" from the pattern: the path up to the conversion, with
 * trailing '-', '_', '.' kept as a separator ("ham-%06d" -> "ham-"), %%
 * made %. */
static char *pattern_stem(const char *pat) {
    const char *pc = strchr(pat, '%');
    while (pc && pc[1] == '%') pc = strchr(pc + 2, '%');
    return pattern_literal(pat, pc ? (size_t)(pc - pat) : strlen(pat));
}

/* ---- the pack ---------------------------------------------------------------------- */

static char *sample_json(const pk_list *l, const pk_entry *e) {
    if (!e->label && !l->n_extra) return NULL;
    cJSON *j = cJSON_CreateObject();
    if (e->label) cJSON_AddStringToObject(j, "label", e->label);
    for (size_t k = 0; k < l->n_extra; k++) cJSON_AddStringToObject(j, l->extra_names[k], e->extra[k]);
    char *t = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    SG_ASSERT(t);
    return t;
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* The shard path as the index stores it: relative to the index's folder when
 * both live in the same folder, else absolute (from the folder: the shard
 * itself exists only under its temp name yet). */
static char *index_rel(const char *index_path, const char *shard) {
    const char *a = strrchr(index_path, '/'), *b = strrchr(shard, '/');
    size_t da = a ? (size_t)(a - index_path) : 0, db = b ? (size_t)(b - shard) : 0;
    if (da == db && strncmp(index_path, shard, da) == 0) return sg_xstrdup(base_name(shard));
    size_t dl = b ? (db ? db : 1) : 0; /* "/x.tar": the folder is "/" */
    char *dir = sg_xmalloc(dl + 2);
    memcpy(dir, b ? shard : ".", b ? dl : 1);
    dir[b ? dl : 1] = 0;
    char *abs = realpath(dir, NULL);
    free(dir);
    if (!abs) return sg_xstrdup(shard);
    char *r = join(abs, base_name(shard));
    free(abs);
    return r;
}

static void index_add(cJSON *arr, const char *index_path, const char *shard, const sg_shard_info *info) {
    cJSON *o = cJSON_CreateObject();
    char *rel = index_rel(index_path, shard);
    cJSON_AddStringToObject(o, "path", rel);
    free(rel);
    cJSON_AddNumberToObject(o, "samples", (double)info->samples);
    cJSON_AddNumberToObject(o, "bytes", (double)info->bytes);
    cJSON_AddStringToObject(o, "sha256", info->sha256);
    cJSON_AddItemToArray(arr, o);
}

sg_status sg_image_folder_list(const char *dir, sg_image_folder *out, sg_err *err) {
    memset(out, 0, sizeof *out);
    pk_list l = {0};
    sg_status s = list_folder(dir, &l, err);
    if (s != SG_OK) {
        pk_free(&l);
        return s;
    }
    qsort(l.e, l.n, sizeof(pk_entry), cmp_by_key);
    out->n = l.n;
    out->paths = sg_xcalloc(l.n, sizeof(char *));
    out->labels = sg_xcalloc(l.n, sizeof(char *));
    for (size_t i = 0; i < l.n; i++) { /* moved out of the list */
        out->paths[i] = l.e[i].path;
        out->labels[i] = l.e[i].label;
        l.e[i].path = l.e[i].label = NULL;
    }
    pk_free(&l);
    return SG_OK;
}

void sg_image_folder_free(sg_image_folder *f) {
    sg_strv_free(f->paths, f->n);
    sg_strv_free(f->labels, f->n);
    memset(f, 0, sizeof *f);
}

void sg_pack_result_free(sg_pack_result *res) {
    if (!res) return;
    sg_strv_free(res->classes, res->n_classes);
    free(res->class_counts);
    free(res->index_path);
    free(res->classes_path);
    memset(res, 0, sizeof *res);
}

/* Shards finished under their temp names, waiting to be renamed together. */
typedef struct pk_shards {
    sg_shard_writer **w;
    char **path; /* final names */
    size_t n;
} pk_shards;

static void pk_shards_push(pk_shards *p, sg_shard_writer *w, char *path) {
    p->w = sg_xrealloc(p->w, sizeof(sg_shard_writer *) * (p->n + 1));
    p->path = sg_xrealloc(p->path, sizeof(char *) * (p->n + 1));
    p->w[p->n] = w;
    p->path[p->n++] = path;
}

static void pk_shards_free(pk_shards *p) {
    for (size_t i = 0; i < p->n; i++) sg_shard_writer_free(p->w[i]); /* removes temp files not renamed */
    free(p->w);
    sg_strv_free(p->path, p->n);
    memset(p, 0, sizeof *p);
}

/* Renames the finished shards, then writes the class list and the index. The
 * index of an earlier pack goes first so that it never describes the new
 * shards; on failure the renamed shards and the class list are removed again,
 * leaving no new file under a final name. */
static sg_status publish(pk_shards *p, const char *index_path, const char *index_txt, const char *classes_path,
                         const sg_buf *cl, sg_err *err) {
    if (unlink(index_path) != 0 && errno != ENOENT)
        return sg_err_set(err, SG_ERR_IO, "%s: cannot remove the index of an earlier pack: %s", index_path,
                          strerror(errno));
    sg_status s = SG_OK;
    size_t renamed = 0;
    while (renamed < p->n && s == SG_OK) {
        s = sg_shard_writer_commit(p->w[renamed], err);
        if (s == SG_OK) renamed++;
    }
    int classes_written = 0;
    if (s == SG_OK) {
        s = sg_file_write_atomic(classes_path, cl->data ? (const void *)cl->data : "", cl->len, err);
        classes_written = s == SG_OK;
    }
    if (s == SG_OK) s = sg_file_write_atomic(index_path, index_txt, strlen(index_txt), err);
    if (s != SG_OK) {
        for (size_t i = 0; i < renamed; i++) unlink(p->path[i]);
        if (classes_written) unlink(classes_path);
    }
    return s;
}

sg_status sg_pack(const sg_pack_opts *opts, sg_pack_result *res, sg_err *err) {
    SG_ASSERT(opts && res && opts->src && opts->out_pattern);
    memset(res, 0, sizeof *res);
    double t0 = sg_now();
    const uint64_t max_samples = opts->max_samples ? opts->max_samples : 10000;
    const uint64_t max_bytes = opts->max_bytes ? opts->max_bytes : (uint64_t)1 << 30;
    /* A larger file would make a member the reader refuses. */
    size_t max_file = SG_SHARD_MAX_MEMBER_BYTES;
    if (opts->max_file_bytes && opts->max_file_bytes < max_file) max_file = opts->max_file_bytes;
    sg_status s = pattern_check(opts->out_pattern, err);
    if (s != SG_OK) return s;
    sg_compression comp = sg_compression_from_path(opts->out_pattern);
    int level = opts->level;
    if (level < 0 || (comp == SG_COMPRESS_ZSTD && level > 19) || (comp == SG_COMPRESS_GZIP && level > 9))
        return sg_err_set(err, SG_ERR_ARG, "compression level %d out of range (zstd 1..19, gzip 1..9)", level);

    pk_list l = {0};
    int from_csv = !is_dir(opts->src);
    if (!from_csv && opts->group_col) return sg_err_set(err, SG_ERR_ARG, "%s: --group needs a CSV source", opts->src);
    s = from_csv ? list_csv(opts->src, opts->group_col, &l, err) : list_folder(opts->src, &l, err);
    if (s == SG_OK && !from_csv) s = check_folder(&l, err);
    if (s != SG_OK) {
        pk_free(&l);
        return s;
    }
    /* Keys must be unique. */
    qsort(l.e, l.n, sizeof(pk_entry), cmp_by_key);
    for (size_t i = 1; i < l.n; i++)
        if (strcmp(l.e[i].key, l.e[i - 1].key) == 0) {
            s = sg_err_set(err, SG_ERR_FORMAT, "%s: two images map to the key '%s' (%s and %s)", opts->src,
                           l.e[i].key, l.e[i - 1].path, l.e[i].path);
            pk_free(&l);
            return s;
        }
    order_entries(&l, opts->group_col != NULL);

    /* Class list: sorted distinct labels. */
    char **names = sg_xcalloc(l.n, sizeof(char *));
    size_t nn = 0;
    for (size_t i = 0; i < l.n; i++)
        if (l.e[i].label) names[nn++] = l.e[i].label;
    qsort(names, nn, sizeof(char *), sg_cmp_strp);
    for (size_t i = 0; i < nn; i++)
        if (res->n_classes == 0 || strcmp(res->classes[res->n_classes - 1], names[i]) != 0) {
            res->classes = sg_xrealloc(res->classes, sizeof(char *) * (res->n_classes + 1));
            res->classes[res->n_classes++] = sg_xstrdup(names[i]);
        }
    free(names);
    res->class_counts = sg_xcalloc(res->n_classes ? res->n_classes : 1, sizeof(uint64_t));
    for (size_t i = 0; i < l.n; i++) {
        if (!l.e[i].label) {
            res->unlabelled++;
            continue;
        }
        char **hit = bsearch(&l.e[i].label, res->classes, res->n_classes, sizeof(char *), sg_cmp_strp);
        SG_ASSERT(hit);
        l.e[i].cls = (int)(hit - res->classes);
        res->class_counts[l.e[i].cls]++;
    }

    /* Output folder and side files. */
    char *stem = pattern_stem(opts->out_pattern);
    {
        const char *sl = strrchr(opts->out_pattern, '/');
        if (sl && sl != opts->out_pattern) {
            char *dir = pattern_literal(opts->out_pattern, (size_t)(sl - opts->out_pattern));
            s = sg_mkdir_p(dir, err);
            free(dir);
        }
    }
    size_t sn = strlen(stem) + 16;
    res->index_path = opts->index_path ? sg_xstrdup(opts->index_path) : sg_xmalloc(sn);
    if (!opts->index_path) snprintf(res->index_path, sn, "%sindex.json", stem);
    res->classes_path = opts->classes_path ? sg_xstrdup(opts->classes_path) : sg_xmalloc(sn);
    if (!opts->classes_path) snprintf(res->classes_path, sn, "%sclasses.txt", stem);
    free(stem);

    cJSON *ix = cJSON_CreateObject();
    cJSON_AddStringToObject(ix, "format", "sgps-shards");
    cJSON_AddNumberToObject(ix, "version", 1);
    cJSON *jcl = cJSON_AddArrayToObject(ix, "classes");
    for (size_t c = 0; c < res->n_classes; c++) cJSON_AddItemToArray(jcl, cJSON_CreateString(res->classes[c]));
    cJSON *jshards = cJSON_AddArrayToObject(ix, "shards");

    sg_shard_writer *w = NULL;
    char *shard_path = NULL;
    pk_shards done = {0};
    uint64_t cur_samples = 0, cur_bytes = 0;
    double last_log = sg_now();
    for (size_t i = 0; i < l.n && s == SG_OK;) {
        /* The next unit: one sample, or a whole group. */
        size_t j = i + 1;
        if (opts->group_col)
            while (j < l.n && same_group(&l.e[i], &l.e[j])) j++;
        /* Read the unit's images and build its members. */
        size_t nu = j - i;
        uint8_t **img = sg_xcalloc(nu, sizeof(uint8_t *));
        size_t *ilen = sg_xcalloc(nu, sizeof(size_t));
        char **json = sg_xcalloc(nu, sizeof(char *));
        char (*cls)[16] = sg_xcalloc(nu, 16);
        sg_member(*mem)[3] = sg_xcalloc(nu, sizeof *mem);
        size_t *nm = sg_xcalloc(nu, sizeof(size_t));
        uint64_t unit_bytes = 0;
        for (size_t k = 0; k < nu && s == SG_OK; k++) {
            const pk_entry *e = &l.e[i + k];
            s = sg_file_read_all(e->path, &img[k], &ilen[k], max_file, err);
            if (s != SG_OK) break;
            const char *ext = sg_image_format_ext(img[k], ilen[k]);
            if (!ext) {
                s = sg_err_set(err, SG_ERR_FORMAT, "%s: not a JPEG, PNG or PGM/PPM file", e->path);
                break;
            }
            mem[k][nm[k]++] = (sg_member){ext, img[k], ilen[k]};
            if (e->cls >= 0) {
                snprintf(cls[k], 16, "%d", e->cls);
                mem[k][nm[k]++] = (sg_member){"cls", (const uint8_t *)cls[k], strlen(cls[k])};
            }
            json[k] = sample_json(&l, e);
            if (json[k]) mem[k][nm[k]++] = (sg_member){"json", (const uint8_t *)json[k], strlen(json[k])};
            unit_bytes += sg_shard_tar_bytes(e->key, mem[k], nm[k]);
            res->bytes_in += ilen[k];
        }
        /* Start a new shard when this unit would overflow the current one. */
        if (s == SG_OK && w && cur_samples > 0 &&
            (cur_samples + nu > max_samples || cur_bytes + unit_bytes + 1024 > max_bytes)) {
            sg_shard_info info;
            s = sg_shard_writer_finish(w, &info, err);
            if (s == SG_OK) {
                index_add(jshards, res->index_path, shard_path, &info);
                res->bytes_out += info.bytes;
                if (opts->progress)
                    sg_log(SG_LOG_INFO, "pack: wrote %s: %llu samples, %.1f MB", shard_path,
                           (unsigned long long)info.samples, info.bytes / 1e6);
                pk_shards_push(&done, w, shard_path);
            } else {
                sg_shard_writer_free(w);
                free(shard_path);
            }
            w = NULL;
            shard_path = NULL;
        }
        if (s == SG_OK && !w) {
            shard_path = pattern_name(opts->out_pattern, (long long)res->shards);
            w = sg_shard_writer_open(shard_path, comp, level, err);
            if (!w) s = SG_ERR_IO;
            res->shards++;
            cur_samples = cur_bytes = 0;
            if (s == SG_OK && nu > 1 && (nu > max_samples || unit_bytes > max_bytes))
                sg_log(SG_LOG_WARN, "pack: group '%s' (%zu samples) exceeds the shard limits: it gets %s alone",
                       l.e[i].group, nu, shard_path);
        }
        for (size_t k = 0; k < nu && s == SG_OK; k++) {
            s = sg_shard_writer_add(w, l.e[i + k].key, mem[k], nm[k], err);
            if (s == SG_OK) {
                res->samples++;
                cur_samples++;
            }
        }
        cur_bytes += unit_bytes;
        for (size_t k = 0; k < nu; k++) {
            free(img[k]);
            free(json[k]);
        }
        free(img);
        free(ilen);
        free(json);
        free(cls);
        free(mem);
        free(nm);
        i = j;
        if (opts->progress && sg_now() - last_log >= 2.0) {
            last_log = sg_now();
            double dt = last_log - t0;
            sg_log(SG_LOG_INFO, "pack: %llu / %zu samples (%.0f%%), %llu shards, %.0f images/s",
                   (unsigned long long)res->samples, l.n, 100.0 * (double)res->samples / (double)l.n,
                   (unsigned long long)res->shards, dt > 0 ? (double)res->samples / dt : 0.0);
        }
    }
    if (s == SG_OK && w) {
        sg_shard_info info;
        s = sg_shard_writer_finish(w, &info, err);
        if (s == SG_OK) {
            index_add(jshards, res->index_path, shard_path, &info);
            res->bytes_out += info.bytes;
            if (opts->progress)
                sg_log(SG_LOG_INFO, "pack: wrote %s: %llu samples, %.1f MB", shard_path,
                       (unsigned long long)info.samples, info.bytes / 1e6);
            pk_shards_push(&done, w, shard_path);
            w = NULL;
            shard_path = NULL;
        }
    }
    sg_shard_writer_free(w);
    free(shard_path);
    if (s == SG_OK) {
        cJSON_AddNumberToObject(ix, "total_samples", (double)res->samples);
        cJSON *jp = cJSON_AddObjectToObject(ix, "pack");
        cJSON_AddStringToObject(jp, "source", base_name(opts->src));
        cJSON_AddStringToObject(jp, "compression",
                                comp == SG_COMPRESS_ZSTD ? "zstd" : comp == SG_COMPRESS_GZIP ? "gzip" : "none");
        cJSON_AddNumberToObject(jp, "level", comp == SG_COMPRESS_NONE ? 0 : level ? level : comp == SG_COMPRESS_ZSTD ? 3 : 6);
        cJSON_AddNumberToObject(jp, "max_samples", (double)max_samples);
        cJSON_AddNumberToObject(jp, "max_bytes", (double)max_bytes);
        if (opts->group_col) cJSON_AddStringToObject(jp, "group", opts->group_col);
        char *txt = cJSON_Print(ix);
        SG_ASSERT(txt);
        size_t tl = strlen(txt);
        char *t2 = sg_xmalloc(tl + 2);
        memcpy(t2, txt, tl);
        memcpy(t2 + tl, "\n", 2);
        sg_buf cl = {0};
        for (size_t c = 0; c < res->n_classes; c++) sg_buf_printf(&cl, "%s\n", res->classes[c]);
        s = publish(&done, res->index_path, t2, res->classes_path, &cl, err);
        sg_buf_free(&cl);
        free(t2);
        free(txt);
    }
    pk_shards_free(&done);
    cJSON_Delete(ix);
    pk_free(&l);
    res->seconds = sg_now() - t0;
    return s;
}
