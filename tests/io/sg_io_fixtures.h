/* sg_io_fixtures.h — fixtures the io tests generate themselves: small JPEG
 * and PNG images (libjpeg, libpng), raw tar files with arbitrary members
 * (libarchive, so that broken and hostile shards can be built), temp folders,
 * and running the sgps binary (SG_TEST_SGPS, set by tests.cmake when the
 * binary is built). */
#ifndef SG_IO_FIXTURES_H
#define SG_IO_FIXTURES_H

#include "sg_io.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <jpeglib.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A gradient test pattern: pixel (x, y) = (x*7+y, y*5, x+y*3) mod 256. */
static inline uint8_t fx_pix(int x, int y, int c) {
    return (uint8_t)(c == 0 ? x * 7 + y : c == 1 ? y * 5 : x + y * 3);
}

static inline void fx_jpeg(int w, int h, int grey, int quality, uint8_t **out, size_t *len) {
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    unsigned char *buf = NULL;
    unsigned long n = 0;
    jpeg_mem_dest(&c, &buf, &n);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = grey ? 1 : 3;
    c.in_color_space = grey ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, quality, TRUE);
    jpeg_start_compress(&c, TRUE);
    uint8_t *row = malloc((size_t)w * 3);
    while (c.next_scanline < c.image_height) {
        int y = (int)c.next_scanline;
        for (int x = 0; x < w; x++)
            for (int ch = 0; ch < (grey ? 1 : 3); ch++) row[x * (grey ? 1 : 3) + ch] = fx_pix(x, y, ch);
        JSAMPROW rp = row;
        jpeg_write_scanlines(&c, &rp, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    free(row);
    *out = malloc(n);
    memcpy(*out, buf, n);
    free(buf);
    *len = n;
}

static inline void fx_png_write(png_structp p, png_bytep d, png_size_t n) {
    sg_buf_append((sg_buf *)png_get_io_ptr(p), d, n);
}
static inline void fx_png_flush(png_structp p) { (void)p; }

/* color_type: PNG_COLOR_TYPE_GRAY, _GRAY_ALPHA, _RGB, _RGB_ALPHA, _PALETTE.
 * Sample values follow fx_pix (grey uses channel 0; palette index = x % 16
 * with palette entry i = (i*16, 255-i*16, i)). */
static inline void fx_png(int w, int h, int color_type, int depth, uint8_t **out, size_t *len) {
    png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(p);
    sg_buf b = {0};
    png_set_write_fn(p, &b, fx_png_write, fx_png_flush);
    png_set_IHDR(p, info, (png_uint_32)w, (png_uint_32)h, depth, color_type, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (color_type == PNG_COLOR_TYPE_PALETTE) {
        png_color pal[16];
        for (int i = 0; i < 16; i++) pal[i] = (png_color){(png_byte)(i * 16), (png_byte)(255 - i * 16), (png_byte)i};
        png_set_PLTE(p, info, pal, 16);
    }
    png_write_info(p, info);
    int ch = color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_PALETTE ? 1
             : color_type == PNG_COLOR_TYPE_GRAY_ALPHA                                 ? 2
             : color_type == PNG_COLOR_TYPE_RGB                                        ? 3
                                                                                       : 4;
    int bps = depth == 16 ? 2 : 1;
    uint8_t *row = calloc((size_t)w * (size_t)ch * (size_t)bps + 8, 1);
    for (int y = 0; y < h; y++) {
        memset(row, 0, (size_t)w * (size_t)ch * (size_t)bps + 8);
        for (int x = 0; x < w; x++)
            for (int c = 0; c < ch; c++) {
                int v;
                if (color_type == PNG_COLOR_TYPE_PALETTE) v = x % 16;
                else if (c == ch - 1 && (ch == 2 || ch == 4)) v = 128; /* alpha */
                else v = fx_pix(x, y, ch >= 3 ? c : 0);
                if (depth == 16) {
                    row[(x * ch + c) * 2] = (uint8_t)v; /* 16-bit value = v * 257 */
                    row[(x * ch + c) * 2 + 1] = (uint8_t)v;
                } else if (depth == 8) {
                    row[x * ch + c] = (uint8_t)v;
                } else { /* sub-byte palette indices */
                    int per = 8 / depth, bit = (per - 1 - x % per) * depth;
                    row[x / per] |= (uint8_t)((v & ((1 << depth) - 1)) << bit);
                }
            }
        png_write_row(p, row);
    }
    png_write_end(p, info);
    png_destroy_write_struct(&p, &info);
    free(row);
    *out = b.data;
    *len = b.len;
}

static inline char *fx_tmpdir(void) {
    char *t = strdup("/tmp/sgio-test-XXXXXX");
    if (!mkdtemp(t)) abort();
    return t;
}

static inline char *fx_path(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static inline void fx_rmrf(const char *dir) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}

static inline void fx_write(const char *path, const void *d, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(d, 1, n, f) != n) abort();
    fclose(f);
}

static inline int fx_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Entries of a folder whose name contains `part` ("" counts all but . and ..). */
static inline int fx_count_names(const char *dir, const char *part) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && strstr(de->d_name, part)) n++;
    closedir(d);
    return n;
}

#ifdef SG_TEST_SGPS
/* Runs `sgps ARGS` (a shell fragment) with stdout and stderr sent to the
 * file out; returns the exit status, -1 when it did not exit normally. */
static inline int fx_sgps(const char *args, const char *out) {
    size_t n = strlen(SG_TEST_SGPS) + strlen(args) + strlen(out) + 32;
    char *cmd = malloc(n);
    snprintf(cmd, n, "'%s' %s >'%s' 2>&1", SG_TEST_SGPS, args, out);
    int st = system(cmd);
    free(cmd);
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The file's text (NUL-terminated, malloc'd). */
static inline char *fx_read_text(const char *path) {
    uint8_t *d;
    size_t n;
    if (sg_file_read_all(path, &d, &n, (size_t)1 << 24, NULL) != SG_OK) abort();
    char *t = malloc(n + 1);
    memcpy(t, d, n);
    t[n] = 0;
    free(d);
    return t;
}
#endif

/* A raw tar member: name, bytes, type (AE_IFREG default when 0; AE_IFLNK
 * uses data as the link target). */
typedef struct fx_member {
    const char *name;
    const void *data;
    size_t len;
    unsigned type;
} fx_member;

/* filter: 0 none, 1 zstd, 2 gzip. Written into memory. */
static inline void fx_tar(const fx_member *m, size_t n, int filter, uint8_t **out, size_t *len) {
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    archive_write_set_bytes_in_last_block(a, 1);
    if (filter == 1) archive_write_add_filter_zstd(a);
    if (filter == 2) archive_write_add_filter_gzip(a);
    size_t cap = 1 << 22, used = 0;
    uint8_t *buf = malloc(cap);
    if (archive_write_open_memory(a, buf, cap, &used) != ARCHIVE_OK) abort();
    for (size_t i = 0; i < n; i++) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, m[i].name);
        unsigned t = m[i].type ? m[i].type : AE_IFREG;
        archive_entry_set_filetype(e, t);
        archive_entry_set_perm(e, 0644);
        if (t == AE_IFLNK) {
            archive_entry_set_symlink(e, (const char *)m[i].data);
            archive_entry_set_size(e, 0);
        } else {
            archive_entry_set_size(e, t == AE_IFREG ? (la_int64_t)m[i].len : 0);
        }
        if (archive_write_header(a, e) != ARCHIVE_OK) abort();
        if (t == AE_IFREG && m[i].len) archive_write_data(a, m[i].data, m[i].len);
        archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
    *out = buf;
    *len = used;
}

/* Reads every sample; returns the number of good samples. */
static inline size_t fx_read_all(sg_shard_reader *r) {
    size_t n = 0;
    sg_sample *s;
    while (sg_shard_reader_next(r, &s) == SG_OK && s) n++;
    return n;
}

static inline sg_shard_reader_opts fx_quiet_opts(void) {
    sg_shard_reader_opts o;
    sg_shard_reader_opts_default(&o);
    o.log_skips = 0;
    return o;
}

#endif
