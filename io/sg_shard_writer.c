/* sg_shard_writer.c — deterministic WebDataset shard writer (libarchive).
 *
 * The same samples give the same bytes: members are sorted by extension,
 * mtime/uid/gid are 0, mode 0644, no user/group names, pax headers only for
 * names ustar cannot hold, gzip without a timestamp, zstd single-threaded.
 * Bytes go to "<path>.tmp.<pid>" through a write callback that also hashes
 * them (SHA-256 of the final file without reading it back); close fsyncs and
 * renames, so a shard never exists half-written under its final name. finish
 * and commit split close for callers that publish several files at once.
 *
 * Names that are not ASCII: in the C locale libarchive cannot translate them
 * to UTF-8 for the pax header and answers ARCHIVE_WARN, having written the
 * entry with a per-entry "hdrcharset=BINARY" record and the raw bytes — what
 * we want (readers, Python's tarfile included, get the same bytes back). The
 * archive-wide hdrcharset option would add a pax header to every member. */
#include "sg_io.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <fcntl.h>

struct sg_shard_writer {
    struct archive *a;
    FILE *f;
    char *path, *tmp;
    sg_sha256 sha;
    uint64_t bytes, tar_bytes, samples;
    int failed;
    int finished; /* finish succeeded: the temp file is complete */
    int io_errno;
};

sg_compression sg_compression_from_path(const char *path) {
    size_t n = strlen(path);
#define ENDS(s) (n >= sizeof(s) - 1 && strcmp(path + n - (sizeof(s) - 1), s) == 0)
    if (ENDS(".zst") || ENDS(".tzst") || ENDS(".zstd")) return SG_COMPRESS_ZSTD;
    if (ENDS(".gz") || ENDS(".tgz")) return SG_COMPRESS_GZIP;
#undef ENDS
    return SG_COMPRESS_NONE;
}

static la_ssize_t w_write(struct archive *a, void *user, const void *buf, size_t n) {
    (void)a;
    sg_shard_writer *w = user;
    if (fwrite(buf, 1, n, w->f) != n) {
        w->io_errno = errno ? errno : EIO;
        return -1;
    }
    sg_sha256_update(&w->sha, buf, n);
    w->bytes += n;
    return (la_ssize_t)n;
}

sg_shard_writer *sg_shard_writer_open(const char *path, sg_compression c, int level, sg_err *err) {
    SG_ASSERT(path);
    sg_shard_writer *w = sg_xcalloc(1, sizeof *w);
    w->path = sg_xstrdup(path);
    size_t n = strlen(path) + 32;
    w->tmp = sg_xmalloc(n);
    snprintf(w->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    w->f = fopen(w->tmp, "wb");
    if (!w->f) {
        sg_err_set(err, SG_ERR_IO, "%s: cannot create the temp file %s: %s", path, w->tmp, strerror(errno));
        free(w->tmp);
        free(w->path);
        free(w);
        return NULL;
    }
    sg_sha256_init(&w->sha);
    w->a = archive_write_new();
    SG_ASSERT(w->a);
    archive_write_set_format_pax_restricted(w->a);
    /* No zero padding after the last block: after a compressor it would be read
     * as a corrupt second frame. */
    archive_write_set_bytes_in_last_block(w->a, 1);
    char lv[16];
    int ok = ARCHIVE_OK;
    if (c == SG_COMPRESS_ZSTD) {
        snprintf(lv, sizeof lv, "%d", level > 0 ? level : 3);
        ok = archive_write_add_filter_zstd(w->a);
        if (ok == ARCHIVE_OK) ok = archive_write_set_filter_option(w->a, "zstd", "compression-level", lv);
    } else if (c == SG_COMPRESS_GZIP) {
        snprintf(lv, sizeof lv, "%d", level > 0 ? level : 6);
        ok = archive_write_add_filter_gzip(w->a);
        if (ok == ARCHIVE_OK) ok = archive_write_set_filter_option(w->a, "gzip", "compression-level", lv);
        if (ok == ARCHIVE_OK) ok = archive_write_set_filter_option(w->a, "gzip", "timestamp", NULL);
    }
    if (ok == ARCHIVE_OK) ok = archive_write_open2(w->a, w, NULL, w_write, NULL, NULL);
    if (ok != ARCHIVE_OK) {
        sg_err_set(err, SG_ERR_ARG, "%s: cannot set up the writer (level %d): %s", path, level,
                   archive_error_string(w->a));
        sg_shard_writer_free(w);
        return NULL;
    }
    return w;
}

int sg_shard_key_valid(const char *key) {
    SG_ASSERT(key);
    if (!*key || key[0] == '/' || strchr(key, '.') || strchr(key, '\\')) return 0;
    if (strstr(key, "//")) return 0;
    size_t n = strlen(key);
    if (key[n - 1] == '/') return 0;
    const char *base = strrchr(key, '/');
    base = base ? base + 1 : key;
    size_t bn = strlen(base);
    if (bn >= 4 && base[0] == '_' && base[1] == '_' && base[bn - 1] == '_' && base[bn - 2] == '_') return 0;
    return 1;
}

static int cmp_member(const void *a, const void *b) {
    return strcmp(((const sg_member *)a)->ext, ((const sg_member *)b)->ext);
}

static int has_non_ascii(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80) return 1;
    return 0;
}

uint64_t sg_shard_tar_bytes(const char *key, const sg_member *m, size_t n) {
    uint64_t t = 0, kl = strlen(key);
    int wide = has_non_ascii(key);
    for (size_t i = 0; i < n; i++) {
        t += 512 + ((m[i].len + 511) / 512) * 512;
        if (wide || kl + 1 + strlen(m[i].ext) > 100) t += 1024; /* pax header: long or non-ASCII name */
    }
    return t;
}

sg_status sg_shard_writer_add(sg_shard_writer *w, const char *key, const sg_member *members, size_t n, sg_err *err) {
    SG_ASSERT(w && key && (members || n == 0));
    if (w->failed) return sg_err_set(err, SG_ERR_IO, "%s: writer already failed", w->path);
    if (w->finished) return sg_err_set(err, SG_ERR_ARG, "%s: writer already finished", w->path);
    if (!sg_shard_key_valid(key))
        return sg_err_set(err, SG_ERR_ARG, "%s: key '%s' is not a valid WebDataset key (no dots, not absolute, "
                                           "no empty component, not __name__)", w->path, key);
    if (n == 0) return sg_err_set(err, SG_ERR_ARG, "%s: sample %s has no members", w->path, key);
    sg_member *m = sg_xmalloc(sizeof(sg_member) * n);
    memcpy(m, members, sizeof(sg_member) * n);
    qsort(m, n, sizeof *m, cmp_member);
    for (size_t i = 0; i < n; i++) {
        if (!*m[i].ext || strchr(m[i].ext, '/') || (i > 0 && strcmp(m[i].ext, m[i - 1].ext) == 0)) {
            sg_status s = sg_err_set(err, SG_ERR_ARG, "%s: sample %s: bad or repeated extension '%s'", w->path, key,
                                     m[i].ext);
            free(m);
            return s;
        }
    }
    size_t kl = strlen(key);
    for (size_t i = 0; i < n; i++) {
        size_t nl = kl + 1 + strlen(m[i].ext) + 1;
        char *name = sg_xmalloc(nl);
        snprintf(name, nl, "%s.%s", key, m[i].ext);
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, name);
        archive_entry_set_size(e, (la_int64_t)m[i].len);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_mtime(e, 0, 0);
        archive_entry_set_uid(e, 0);
        archive_entry_set_gid(e, 0);
        int rc = archive_write_header(w->a, e);
        if (rc == ARCHIVE_WARN) rc = ARCHIVE_OK; /* name not translatable: written as binary, see above */
        la_ssize_t wr = 0;
        if (rc == ARCHIVE_OK && m[i].len) wr = archive_write_data(w->a, m[i].data, m[i].len);
        archive_entry_free(e);
        free(name);
        if (rc != ARCHIVE_OK || wr < 0 || (size_t)wr != m[i].len) {
            w->failed = 1;
            sg_status s = sg_err_set(err, SG_ERR_IO, "%s: writing %s.%s failed: %s", w->path, key, m[i].ext,
                                     w->io_errno ? strerror(w->io_errno) : archive_error_string(w->a));
            free(m);
            return s;
        }
    }
    w->tar_bytes += sg_shard_tar_bytes(key, m, n);
    w->samples++;
    free(m);
    return SG_OK;
}

sg_status sg_shard_writer_finish(sg_shard_writer *w, sg_shard_info *info, sg_err *err) {
    SG_ASSERT(w && w->a && !w->finished);
    sg_status s = SG_OK;
    if (w->failed) s = sg_err_set(err, SG_ERR_IO, "%s: writer failed earlier", w->path);
    if (s == SG_OK && archive_write_close(w->a) != ARCHIVE_OK)
        s = sg_err_set(err, SG_ERR_IO, "%s: finishing the archive failed: %s", w->path,
                       w->io_errno ? strerror(w->io_errno) : archive_error_string(w->a));
    archive_write_free(w->a);
    w->a = NULL;
    if (s == SG_OK && (fflush(w->f) != 0 || fsync(fileno(w->f)) != 0))
        s = sg_err_set(err, SG_ERR_IO, "%s: flush of the temp file %s failed: %s", w->path, w->tmp, strerror(errno));
    if (fclose(w->f) != 0 && s == SG_OK)
        s = sg_err_set(err, SG_ERR_IO, "%s: close of the temp file %s failed: %s", w->path, w->tmp, strerror(errno));
    w->f = NULL;
    if (s != SG_OK) {
        unlink(w->tmp);
        w->failed = 1;
        return s;
    }
    w->finished = 1;
    if (info) {
        uint8_t dg[32];
        sg_sha256_final(&w->sha, dg);
        sg_sha256_hex(dg, info->sha256);
        info->bytes = w->bytes;
        info->tar_bytes = w->tar_bytes;
        info->samples = w->samples;
    }
    return SG_OK;
}

sg_status sg_shard_writer_commit(sg_shard_writer *w, sg_err *err) {
    SG_ASSERT(w && w->finished && w->tmp);
    if (rename(w->tmp, w->path) != 0) {
        sg_status s = sg_err_set(err, SG_ERR_IO, "%s: rename from %s failed: %s", w->path, w->tmp, strerror(errno));
        unlink(w->tmp);
        w->failed = 1;
        return s;
    }
    char *d = sg_xstrdup(w->path);
    int dfd = open(dirname(d), O_RDONLY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(d);
    free(w->tmp);
    w->tmp = NULL; /* renamed: nothing left to remove */
    return SG_OK;
}

sg_status sg_shard_writer_close(sg_shard_writer *w, sg_shard_info *info, sg_err *err) {
    sg_status s = sg_shard_writer_finish(w, info, err);
    return s == SG_OK ? sg_shard_writer_commit(w, err) : s;
}

void sg_shard_writer_free(sg_shard_writer *w) {
    if (!w) return;
    if (w->a) archive_write_free(w->a); /* closes the archive: bytes still go to the temp file */
    if (w->f) fclose(w->f);
    if (w->tmp) {
        unlink(w->tmp);
        free(w->tmp);
    }
    free(w->path);
    free(w);
}
