/* sg_cli_data.c — loading labelled image sets (a folder with labels.csv, the
 * layout of ../shared/data; an ImageFolder of class subfolders; shards, by
 * index JSON or brace pattern) and class descriptions from a registry into
 * the engine's in-memory dataset. Images are decoded by io/ and stored at
 * the engine's storage side as uint8 RGB planes. A bad image is skipped with
 * a warning naming the file; the rest of the set goes on. */
#include "sg_cli_data.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

/* Splits one CSV line in place (double quotes honoured); returns fields. */
static int csv_split(char *line, char **fields, int max) {
    int n = 0;
    char *p = line;
    while (n < max) {
        char *out = p, *start = p;
        int q = 0;
        if (*p == '"') {
            q = 1;
            p++;
        }
        while (*p) {
            if (q && *p == '"') {
                if (p[1] == '"') {
                    *out++ = '"';
                    p += 2;
                    continue;
                }
                q = 0;
                p++;
                continue;
            }
            if (!q && (*p == ',' || *p == '\n' || *p == '\r')) break;
            *out++ = *p++;
        }
        char end = *p;
        *out = 0;
        fields[n++] = start;
        if (end != ',') break;
        p++;
    }
    return n;
}


sg_status sg_registry_load_texts(const char *path, sg_registry_texts *rt, sg_err *err) {
    memset(rt, 0, sizeof *rt);
    uint8_t *data;
    size_t len;
    sg_status s = sg_file_read_all(path, &data, &len, (size_t)64 << 20, err);
    if (s != SG_OK) return s;
    cJSON *root = cJSON_ParseWithLength((const char *)data, len);
    free(data);
    if (!root) return sg_err_set(err, SG_ERR_FORMAT, "%s: not valid JSON", path);
    cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "diseases");
    if (!cJSON_IsArray(list)) {
        cJSON_Delete(root);
        return sg_err_set(err, SG_ERR_FORMAT, "%s: $.diseases must be an array", path);
    }
    int n = cJSON_GetArraySize(list);
    rt->ids = sg_xcalloc((size_t)n + 1, sizeof(char *));
    rt->texts = sg_xcalloc((size_t)n + 1, sizeof(char *));
    int i = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, list) {
        cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        cJSON *desc = cJSON_GetObjectItemCaseSensitive(it, "description");
        if (!cJSON_IsString(id) || !cJSON_IsString(desc)) {
            sg_registry_texts_free(rt);
            cJSON_Delete(root);
            return sg_err_set(err, SG_ERR_FORMAT, "%s: $.diseases[%d] needs string fields id and description", path, i);
        }
        rt->ids[i] = sg_xstrdup(id->valuestring);
        rt->texts[i] = sg_xstrdup(desc->valuestring);
        rt->n = ++i; /* so that a later bad entry frees these */
    }
    cJSON_Delete(root);
    return SG_OK;
}

const char *sg_registry_text(const sg_registry_texts *rt, const char *id) {
    for (int i = 0; rt && i < rt->n; i++)
        if (strcmp(rt->ids[i], id) == 0) return rt->texts[i];
    return NULL;
}

void sg_registry_texts_free(sg_registry_texts *rt) {
    for (int i = 0; i < rt->n; i++) {
        free(rt->ids[i]);
        free(rt->texts[i]);
    }
    free(rt->ids);
    free(rt->texts);
    memset(rt, 0, sizeof *rt);
}

static const char *base_name(const char *dir) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    const char *p = dir + n;
    while (p > dir && p[-1] != '/') p--;
    return p;
}

static char *dup_n(const char *s, size_t n) {
    char *r = sg_xmalloc(n + 1);
    memcpy(r, s, n);
    r[n] = 0;
    return r;
}

/* A set's name (the SET of its SET/LABEL class ids): a folder's name; for a
 * shard index "DIR/ham-index.json" or pattern "DIR/ham-{000000..000003}.tar.zst",
 * its stem ("ham"), else DIR's name. */
static char *set_name(const char *spec, int is_folder) {
    const char *b = base_name(spec);
    size_t n = strcspn(b, is_folder ? "/" : "{");
    if (!is_folder) {
        if (n > 5 && strncmp(b + n - 5, ".json", 5) == 0) n -= 5;
        if (n >= 5 && strncmp(b + n - 5, "index", 5) == 0) n -= 5;
        const char *dot = memchr(b, '.', n); /* a single shard: x.tar.zst */
        if (dot) n = (size_t)(dot - b);
        while (n > 0 && strchr("-_.", b[n - 1])) n--;
    }
    if (n > 0) return dup_n(b, n);
    if (b == spec) return sg_xstrdup("shards");
    char *dir = dup_n(spec, (size_t)(b - spec)), *r = sg_xstrdup(base_name(dir));
    free(dir);
    if (!r[0] || strcmp(r, "/") == 0) {
        free(r);
        r = sg_xstrdup("shards");
    }
    return r;
}

/* A labelled load in progress: the dataset, its capacities, the set being
 * read, what was skipped, and the progress clock. */
typedef struct set_loader {
    sg_dataset *d;
    const sg_registry_texts *rt;
    size_t cap;
    int ccap, di;
    long skipped;
    double t0, t_last;
} set_loader;

/* The class id of SET/label in the set being read, added when new. */
static int class_of(set_loader *L, const char *label) {
    sg_dataset *d = L->d;
    char cname[512];
    snprintf(cname, sizeof cname, "%s/%s", d->domain_names[L->di], label);
    for (int c = 0; c < d->n_classes; c++)
        if (d->class_domain[c] == L->di && strcmp(d->class_names[c], cname) == 0) return c;
    if (d->n_classes == L->ccap) {
        L->ccap *= 2;
        d->class_names = sg_xrealloc(d->class_names, sizeof(char *) * (size_t)L->ccap);
        d->class_text = sg_xrealloc(d->class_text, sizeof(char *) * (size_t)L->ccap);
        d->class_domain = sg_xrealloc(d->class_domain, sizeof(int) * (size_t)L->ccap);
    }
    int cls = d->n_classes++;
    d->class_names[cls] = sg_xstrdup(cname);
    const char *t = sg_registry_text(L->rt, cname);
    d->class_text[cls] = sg_text_has_words(t) ? sg_xstrdup(t) : NULL; /* no words: no description */
    d->class_domain[cls] = L->di;
    return cls;
}

/* Decodes one image (a file, or encoded bytes when data is not NULL) of
 * class `label` into the dataset; a bad image is skipped with a warning. A
 * progress line every 10 s on long loads. */
static void add_image(set_loader *L, const char *label, const char *name, const uint8_t *data, size_t len) {
    sg_dataset *d = L->d;
    int cls = class_of(L, label);
    size_t ssz = (size_t)3 * d->store * d->store;
    if ((size_t)d->n == L->cap) {
        L->cap *= 2;
        d->pix = sg_xrealloc(d->pix, L->cap * ssz);
        d->label = sg_xrealloc(d->label, L->cap * sizeof(int));
    }
    uint8_t *px = d->pix + (size_t)d->n * ssz;
    sg_err e2;
    if ((data ? sg_image_decode_u8_planar(data, len, name, d->store, px, &e2)
              : sg_image_load_u8_planar(name, d->store, px, &e2)) != SG_OK) {
        sg_log(SG_LOG_WARN, "%s; image skipped", e2.msg);
        L->skipped++;
        return;
    }
    d->label[d->n++] = cls;
    double now = sg_now();
    if (now - L->t_last >= 10) {
        L->t_last = now;
        sg_log(SG_LOG_INFO, "loading: %d images, %.0f images/s", d->n, d->n / (now - L->t0));
    }
}

/* A folder with labels.csv (path,label,...; paths relative to the folder). */
static sg_status load_csv_set(set_loader *L, const char *dir, FILE *f, const char *path, sg_err *err) {
    char line[8192];
    char *fields[32];
    int lineno = 0, path_col = -1, label_col = -1;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        int nf = csv_split(line, fields, 32);
        if (lineno == 1) {
            for (int k = 0; k < nf; k++) {
                if (strcmp(fields[k], "path") == 0) path_col = k;
                if (strcmp(fields[k], "label") == 0) label_col = k;
            }
            if (path_col < 0 || label_col < 0)
                return sg_err_set(err, SG_ERR_FORMAT, "%s: header must name columns path and label", path);
            continue;
        }
        if (nf <= path_col || nf <= label_col || !fields[label_col][0]) {
            sg_log(SG_LOG_WARN, "%s:%d: missing path or label; line skipped", path, lineno);
            L->skipped++;
            continue;
        }
        char ipath[4096];
        snprintf(ipath, sizeof ipath, "%s/%s", dir, fields[path_col]);
        add_image(L, fields[label_col], ipath, NULL, 0);
    }
    return SG_OK;
}

/* An ImageFolder without labels.csv: DIR/images/<label>/x or DIR/<label>/x. */
static sg_status load_folder_set(set_loader *L, const char *dir, sg_err *err) {
    sg_image_folder fo;
    sg_status st = sg_image_folder_list(dir, &fo, err);
    if (st != SG_OK) return st;
    for (size_t i = 0; i < fo.n; i++) add_image(L, fo.labels[i], fo.paths[i], NULL, 0);
    sg_image_folder_free(&fo);
    return SG_OK;
}

/* Shards (an index JSON or a brace pattern): each sample's image with its
 * label: an integer one through the index's class list, else the .json
 * string label, else the integer's decimal form. A sample without a label, a bad
 * image and a broken or unreadable shard are skipped with a warning. */
static sg_status load_shard_set(set_loader *L, const char *spec, sg_err *err) {
    sg_shard_index *ix = NULL;
    char **pattern = NULL;
    size_t n = 0;
    sg_status st = sg_shard_spec_is_index(spec) ? sg_shard_index_load(spec, &ix, err)
                                                : sg_braces_expand(spec, &pattern, &n, err);
    if (st != SG_OK) return st;
    if (ix) n = ix->n_shards;
    sg_shard_reader_opts ro;
    sg_shard_reader_opts_default(&ro);
    if (ix) {
        ro.classes = (const char *const *)ix->classes;
        ro.n_classes = ix->n_classes;
    }
    long unlabelled = 0;
    for (size_t k = 0; k < n; k++) {
        const char *path = ix ? ix->shards[k].path : pattern[k];
        sg_err e2;
        sg_shard_reader *r = sg_shard_reader_open(path, &ro, &e2);
        if (!r) {
            sg_log(SG_LOG_WARN, "%s; shard skipped", e2.msg);
            L->skipped++;
            continue;
        }
        sg_sample *smp;
        while (sg_shard_reader_next(r, &smp) == SG_OK && smp) {
            /* the class name: the index's for the label id, else the .json label, else the id */
            char num[32], name[4096];
            const char *label = NULL;
            if (ix && smp->label >= 0 && (size_t)smp->label < ix->n_classes) label = ix->classes[smp->label];
            else if (smp->label_str) label = smp->label_str;
            else if (smp->label >= 0) snprintf(num, sizeof num, "%d", smp->label), label = num;
            if (!label) {
                unlabelled++;
                continue;
            }
            snprintf(name, sizeof name, "%s: key %s", path, smp->key);
            add_image(L, label, name, smp->image, smp->image_len);
        }
        L->skipped += (long)sg_shard_reader_n_skipped(r);
        sg_shard_reader_free(r);
    }
    if (unlabelled)
        sg_log(SG_LOG_WARN, "%s: %ld samples without a label skipped", spec, unlabelled), L->skipped += unlabelled;
    sg_strv_free(pattern, ix ? 0 : n);
    sg_shard_index_free(ix);
    return SG_OK;
}

sg_status sg_cli_load_sets(char **dirs, int n_dirs, int side, const sg_registry_texts *rt, sg_dataset *d, sg_err *err) {
    memset(d, 0, sizeof *d);
    set_loader L = {d, rt, 1024, 64, 0, 0, sg_now(), 0};
    L.t_last = L.t0;
    d->store = side;
    d->pix = sg_xmalloc(L.cap * (size_t)3 * side * side);
    d->label = sg_xmalloc(L.cap * sizeof(int));
    d->class_names = sg_xcalloc((size_t)L.ccap, sizeof(char *));
    d->class_text = sg_xcalloc((size_t)L.ccap, sizeof(char *));
    d->class_domain = sg_xcalloc((size_t)L.ccap, sizeof(int));
    d->domain_names = sg_xcalloc((size_t)n_dirs, sizeof(char *));
    for (int di = 0; di < n_dirs; di++) {
        struct stat st;
        int folder = stat(dirs[di], &st) == 0 && S_ISDIR(st.st_mode);
        int shards = !folder && (sg_shard_spec_is_index(dirs[di]) || strstr(dirs[di], ".tar") ||
                                 strstr(dirs[di], ".tgz") || strstr(dirs[di], ".tzst"));
        if (!folder && !shards) {
            sg_dataset_free(d);
            return sg_err_set(err, SG_ERR_IO, "%s: %s (expected an image set: a folder with labels.csv or class "
                              "subfolders, a shard index JSON or a shard pattern)", dirs[di],
                              stat(dirs[di], &st) != 0 ? strerror(errno) : "not a folder");
        }
        d->domain_names[di] = set_name(dirs[di], folder);
        d->n_domains = di + 1;
        L.di = di;
        for (int e = 0; e < di; e++)
            if (strcmp(d->domain_names[e], d->domain_names[di]) == 0) {
                sg_status s = sg_err_set(err, SG_ERR_ARG, "%s and %s are both named set '%s' (the SET of the SET/LABEL "
                                         "class ids); give each set its own name", dirs[e], dirs[di], d->domain_names[di]);
                sg_dataset_free(d);
                return s;
            }
        sg_status s = SG_OK;
        const char *how = "shards";
        if (folder) {
            char path[4096];
            snprintf(path, sizeof path, "%s/labels.csv", dirs[di]);
            FILE *f = fopen(path, "r");
            if (f) {
                s = load_csv_set(&L, dirs[di], f, path, err);
                fclose(f);
                how = "labels.csv";
            } else {
                s = load_folder_set(&L, dirs[di], err);
                how = "class folders";
            }
        } else {
            s = load_shard_set(&L, dirs[di], err);
        }
        if (s != SG_OK) {
            sg_dataset_free(d);
            return s;
        }
        sg_log(SG_LOG_INFO, "loaded %s (%s, set '%s'): %d images so far, %d classes (%.1fs)", dirs[di], how,
               d->domain_names[di], d->n, d->n_classes, sg_now() - L.t0);
    }
    if (L.skipped) sg_log(SG_LOG_WARN, "%ld images or lines skipped (see above)", L.skipped);
    if (d->n == 0) {
        sg_dataset_free(d);
        return sg_err_set(err, SG_ERR_FORMAT, "no images loaded");
    }
    return SG_OK;
}

/* sg_cli_load_images over a list of n image paths (src: the list's name in
 * messages; a NULL path is a line without one, line[i] its number): at most
 * max_images, evenly spaced over a longer list (row k·n/max_images). */
static sg_status load_image_list(const char *src, char *const *paths, const int *line, size_t n, int side,
                                 long max_images, uint8_t **pix, int *n_out, sg_err *err) {
    size_t want = max_images > 0 && n > (size_t)max_images ? (size_t)max_images : n;
    size_t ssz = (size_t)3 * side * side;
    uint8_t *buf = sg_xmalloc(ssz * (want ? want : 1));
    int got = 0;
    long skipped = 0;
    for (size_t k = 0; k < want; k++) {
        size_t i = want == n ? k : (size_t)((unsigned long long)k * n / want);
        sg_err e2;
        if (!paths[i]) {
            sg_log(SG_LOG_WARN, "%s:%d: no path; line skipped", src, line[i]);
            skipped++;
        } else if (sg_image_load_u8_planar(paths[i], side, buf + (size_t)got * ssz, &e2) != SG_OK) {
            sg_log(SG_LOG_WARN, "%s; image skipped", e2.msg);
            skipped++;
        } else {
            got++;
        }
    }
    if (skipped) sg_log(SG_LOG_WARN, "%s: %ld images or lines skipped (see above)", src, skipped);
    if (got == 0) {
        free(buf);
        return sg_err_set(err, SG_ERR_FORMAT, "%s: no images loaded", src);
    }
    *pix = buf;
    *n_out = got;
    return SG_OK;
}

sg_status sg_cli_load_images(const char *spec, int side, long max_images, uint8_t **pix, int *n_out, sg_err *err) {
    *pix = NULL;
    *n_out = 0;
    char csv[4096], dir[4096];
    struct stat st;
    if (stat(spec, &st) != 0) return sg_err_set(err, SG_ERR_IO, "%s: cannot open: %s", spec, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        snprintf(csv, sizeof csv, "%s/labels.csv", spec);
        snprintf(dir, sizeof dir, "%s", spec);
    } else {
        snprintf(csv, sizeof csv, "%s", spec);
        snprintf(dir, sizeof dir, "%s", spec);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else snprintf(dir, sizeof dir, ".");
    }
    FILE *f = fopen(csv, "r");
    if (!f && S_ISDIR(st.st_mode)) { /* a folder of class subfolders (labels ignored) */
        sg_image_folder fo;
        sg_status s = sg_image_folder_list(spec, &fo, err);
        if (s != SG_OK) return s;
        s = load_image_list(spec, fo.paths, NULL, fo.n, side, max_images, pix, n_out, err);
        sg_image_folder_free(&fo);
        return s;
    }
    if (!f) return sg_err_set(err, SG_ERR_IO, "%s: cannot open (expected a CSV with a path column, or a folder with labels.csv)", csv);
    /* every row's image path (NULL for a row without one), then the images */
    size_t n = 0, cap = 256;
    char **paths = sg_xmalloc(cap * sizeof(char *));
    int *line = sg_xmalloc(cap * sizeof(int)), lineno = 0, path_col = -1;
    char buf[8192];
    char *fields[32];
    while (fgets(buf, sizeof buf, f)) {
        lineno++;
        int nf = csv_split(buf, fields, 32);
        if (lineno == 1) {
            for (int k = 0; k < nf; k++)
                if (strcmp(fields[k], "path") == 0) path_col = k;
            if (path_col < 0) break;
            continue;
        }
        if (n == cap) {
            cap *= 2;
            paths = sg_xrealloc(paths, cap * sizeof(char *));
            line = sg_xrealloc(line, cap * sizeof(int));
        }
        paths[n] = NULL;
        if (nf > path_col && fields[path_col][0]) {
            size_t len = strlen(dir) + strlen(fields[path_col]) + 2;
            paths[n] = sg_xmalloc(len);
            snprintf(paths[n], len, "%s/%s", dir, fields[path_col]);
        }
        line[n++] = lineno;
    }
    fclose(f);
    sg_status s = path_col < 0 ? sg_err_set(err, SG_ERR_FORMAT, "%s: the header must name a path column", csv)
                               : load_image_list(csv, paths, line, n, side, max_images, pix, n_out, err);
    sg_strv_free(paths, n);
    free(line);
    return s;
}

/* ---- synthesis task files ---- */

void sg_task_spec_free(sg_task_spec *t) {
    if (!t) return;
    free(t->names);
    free(t->texts);
    free(t->n_images);
    if (t->images)
        for (int i = 0; i < t->n; i++) free(t->images[i]);
    free(t->images);
    cJSON_Delete(t->json);
    memset(t, 0, sizeof *t);
}

/* A class name and its place in the task file, sorted by name then place. */
typedef struct name_at {
    const char *s;
    int i;
} name_at;

static int name_at_cmp(const void *a, const void *b) {
    const name_at *x = a, *y = b;
    int c = strcmp(x->s, y->s);
    return c ? c : (x->i > y->i) - (x->i < y->i);
}

sg_status sg_task_spec_parse(const char *data, size_t len, const char *name, sg_task_spec *out, sg_err *err) {
    memset(out, 0, sizeof *out);
    cJSON *root = cJSON_ParseWithLength(data, len);
    cJSON *classes = root ? cJSON_GetObjectItemCaseSensitive(root, "classes") : NULL;
    if (!cJSON_IsArray(classes)) {
        cJSON_Delete(root);
        return sg_err_set(err, SG_ERR_FORMAT, "%s: %s", name, root ? "$.classes must be an array" : "not valid JSON");
    }
    int n = cJSON_GetArraySize(classes);
    out->json = root;
    out->n = n;
    out->names = sg_xcalloc((size_t)n + 1, sizeof *out->names);
    out->texts = sg_xcalloc((size_t)n + 1, sizeof *out->texts);
    out->n_images = sg_xcalloc((size_t)n + 1, sizeof *out->n_images);
    out->images = sg_xcalloc((size_t)n + 1, sizeof *out->images);
    int ci = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, classes) {
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(c, "name");
        const cJSON *desc = cJSON_GetObjectItemCaseSensitive(c, "description");
        const cJSON *im = cJSON_GetObjectItemCaseSensitive(c, "images");
        const char *bad = !cJSON_IsString(nm)          ? "name must be a string"
                          : desc && !cJSON_IsString(desc) ? "description must be a string"
                          : im && !cJSON_IsArray(im)      ? "images must be an array of paths"
                                                          : NULL;
        if (bad) {
            sg_task_spec_free(out);
            return sg_err_set(err, SG_ERR_FORMAT, "%s: $.classes[%d].%s", name, ci, bad);
        }
        if (!nm->valuestring[0] || strlen(nm->valuestring) > SG_MAX_NAME) {
            sg_err_set(err, SG_ERR_FORMAT, "%s: $.classes[%d].name must %s", name, ci,
                       nm->valuestring[0] ? "be at most 256 bytes long" : "not be empty");
            sg_task_spec_free(out);
            return SG_ERR_FORMAT;
        }
        out->names[ci] = nm->valuestring;
        out->texts[ci] = desc ? desc->valuestring : NULL;
        int k = im ? cJSON_GetArraySize(im) : 0;
        out->images[ci] = sg_xcalloc((size_t)k + 1, sizeof **out->images);
        const cJSON *p;
        int kk = 0;
        cJSON_ArrayForEach(p, im) {
            if (!cJSON_IsString(p)) {
                sg_task_spec_free(out);
                return sg_err_set(err, SG_ERR_FORMAT, "%s: $.classes[%d].images[%d] must be a string", name, ci, kk);
            }
            out->images[ci][kk++] = p->valuestring;
        }
        out->n_images[ci] = kk;
        ci++;
    }
    /* The names head classify's columns and are what it predicts: one class per name.
     * Sorted, so a file of many classes is checked in n log n. */
    name_at *by = sg_xmalloc(sizeof *by * ((size_t)n + 1));
    for (int i = 0; i < n; i++) by[i] = (name_at){out->names[i], i};
    qsort(by, (size_t)n, sizeof *by, name_at_cmp);
    for (int i = 1; i < n; i++)
        if (strcmp(by[i - 1].s, by[i].s) == 0) {
            sg_err_set(err, SG_ERR_FORMAT, "%s: $.classes[%d].name: '%s' is also the name of class %d", name,
                       by[i].i, by[i].s, by[i - 1].i);
            free(by);
            sg_task_spec_free(out);
            return SG_ERR_FORMAT;
        }
    free(by);
    return SG_OK;
}
