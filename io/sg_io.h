/* sg_io.h — the io module: image decoding and preprocessing, WebDataset shard
 * reading and writing, shard lists (brace notation, index files) and packing
 * image folders / CSV lists into shards. io uses sg_core, libarchive, zstd,
 * cJSON, libjpeg(-turbo) and libpng; never model/ or synth/.
 *
 * Lifecycles
 * ----------
 * Images (plain value struct, owns its pixels):
 *   1) sg_image_decode / sg_image_decode_hint / sg_image_load_file -> sg_image
 *   2) sg_image_to_tensor(img, H, W, mean, std, out)   out: (3, H, W) planar
 *   3) sg_image_free(&img)                              (accepts zeroed images)
 *
 * Shard reader (opaque handle, streaming, never extracts to disk):
 *   1) r = sg_shard_reader_open(path, opts, err)        NULL only when the file
 *      cannot be opened; format problems surface while reading
 *      (or sg_shard_reader_open_memory(data, len, name, opts, err))
 *   2) sg_sample *s;
 *      while (sg_shard_reader_next(r, &s) == SG_OK && s) { ... use s ... }
 *      A sample and everything it points to stays valid until the next call
 *      to sg_shard_reader_next or sg_shard_reader_free.
 *      next returns SG_OK with s == NULL at the end of the shard: after a
 *      clean end, or after a broken stream (truncated tar, corrupt zstd/gzip
 *      frame), which is counted as one SG_SKIP_STREAM event.
 *   3) sg_shard_reader_skips(r, counts), sg_shard_reader_message(r, i),
 *      sg_shard_reader_status(r, err): why and what was skipped.
 *   4) sg_shard_reader_free(r)                          (accepts NULL)
 *   Bad samples never stop the reader: they are skipped, counted per
 *   sg_skip_reason and described as "SHARD: key KEY: reason".
 *
 * Shard writer (opaque handle; deterministic tar: members sorted, mtime 0,
 * uid/gid 0, mode 0644; the file appears under its final name only after
 * sg_shard_writer_close succeeded):
 *   1) w = sg_shard_writer_open(path, compression, level, err)
 *   2) sg_shard_writer_add(w, key, members, n, err)     once per sample
 *   3) sg_shard_writer_close(w, &info, err)             fsync + rename
 *      or, to publish several files together (sg_pack):
 *      sg_shard_writer_finish(w, &info, err)            fsync, temp name kept
 *      ... sg_shard_writer_commit(w, err)               rename
 *   4) sg_shard_writer_free(w)                          removes the temp file
 *      when it was not renamed; accepts NULL
 *
 * Shard lists: sg_braces_expand("a-{000..127}.tar.zst", ...) or
 * sg_shard_index_load("index.json", ...); sg_shard_list_resolve accepts both.
 *
 * Packing: sg_pack(opts, result, err) turns an ImageFolder or a CSV list into
 * shards + index JSON + class list (see docs/formats-shards.md).
 *
 * Errors on user data return sg_status with a message naming the file and the
 * reason; broken contracts (NULL where a value is required) abort.
 */
#ifndef SG_IO_H
#define SG_IO_H

#include "sg_core.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- images ------------------------------------------------------------ */

typedef struct sg_image_limits {
    uint64_t max_pixels; /* width * height above this is refused from the header */
} sg_image_limits;

#define SG_IMAGE_DEFAULT_MAX_PIXELS (64ull * 1000 * 1000)
sg_image_limits sg_image_limits_default(void);

/* 8-bit RGB, interleaved, rows top to bottom: rgb is (h, w, 3). */
typedef struct sg_image {
    int w, h;
    uint8_t *rgb;
} sg_image;

typedef enum sg_image_format {
    SG_IMAGE_UNKNOWN = 0,
    SG_IMAGE_JPEG,
    SG_IMAGE_PNG,
    SG_IMAGE_PNM /* binary P5 (grey) / P6 (RGB), maxval 1..65535 */
} sg_image_format;

/* From magic bytes only. */
sg_image_format sg_image_detect(const uint8_t *data, size_t len);
/* "jpg", "png", "ppm"/"pgm" (by magic), or NULL. */
const char *sg_image_format_ext(const uint8_t *data, size_t len);

/* Decodes JPEG, PNG (1-16 bit; grey, grey+alpha, RGB, RGBA, palette; alpha
 * dropped) or binary PGM/PPM to RGB, grey replicated. name is used in
 * messages only (may be NULL). lim may be NULL (defaults). On failure *out is
 * zeroed and the status says why: SG_ERR_FORMAT (corrupt or truncated),
 * SG_ERR_LIMIT (above max_pixels, refused before allocating pixels),
 * SG_ERR_UNSUPPORTED (unknown format). */
sg_status sg_image_decode(const uint8_t *data, size_t len, const char *name, const sg_image_limits *lim,
                          sg_image *out, sg_err *err);
/* Same, but a JPEG may be decoded at a reduced scale (1/2, 1/4, 1/8 through
 * libjpeg's DCT scaling) as long as the result stays >= min_w x min_h.
 * min_w = min_h = 0 decodes at full size. Other formats ignore the hint. */
sg_status sg_image_decode_hint(const uint8_t *data, size_t len, const char *name, const sg_image_limits *lim,
                               int min_w, int min_h, sg_image *out, sg_err *err);
sg_status sg_image_load_file(const char *path, const sg_image_limits *lim, sg_image *out, sg_err *err);
void sg_image_free(sg_image *img);

/* Resizes and normalizes into out: (3, out_h, out_w) planar CHW floats,
 * out[c][y][x] = (v / 255 - mean[c]) / std[c]. Per axis: area averaging when
 * shrinking, bilinear (half-pixel centres, edge clamped) when enlarging,
 * a copy when equal. */
void sg_image_to_tensor(const sg_image *img, int out_h, int out_w, const float mean[3], const float std[3],
                        float *restrict out);

/* Decodes an image file (JPEG through DCT scaling when it can), resizes it to
 * side × side as sg_image_to_tensor does and rounds to uint8 planar
 * (3, side, side): the engine's support-image format. */
sg_status sg_image_load_u8_planar(const char *path, int side, uint8_t *out, sg_err *err);
/* The same from encoded bytes in memory (name is used in messages). */
sg_status sg_image_decode_u8_planar(const uint8_t *data, size_t len, const char *name, int side, uint8_t *out,
                                    sg_err *err);

/* ---- samples and the shard reader --------------------------------------- */

/* The largest tar member the reader accepts by default (64 MiB), and so the
 * largest source file sg_pack stores: a packed shard is always readable. */
#define SG_SHARD_MAX_MEMBER_BYTES ((size_t)64 << 20)

/* One tar member of a sample: KEY.EXT. ext is lowercased. */
typedef struct sg_member {
    const char *ext;
    const uint8_t *data; /* (len) bytes, followed by a NUL not counted in len */
    size_t len;
} sg_member;

typedef struct sg_sample {
    const char *key;       /* WebDataset key: dir + basename up to the first dot */
    int64_t index;         /* 0-based ordinal among the samples returned */
    int label;             /* from .cls, or .json "label" (integer, or string found in
                              opts.classes); -1 when none */
    const char *label_str; /* .json "label" when it is a string, else NULL */
    const uint8_t *image;  /* the image member's bytes (NULL if the sample has none) */
    size_t image_len;
    const char *image_ext; /* "jpg", "png", ... */
    const char *json;      /* the .json member's text, NUL-terminated, or NULL */
    const sg_member *members; /* (n_members) all members, image and labels included */
    size_t n_members;
    sg_image img; /* decoded image when opts.decode, else zeroed */
} sg_sample;

typedef enum sg_skip_reason {
    SG_SKIP_STREAM = 0,      /* truncated tar, corrupt zstd/gzip frame: rest of the shard lost */
    SG_SKIP_BAD_IMAGE = 1,   /* corrupt or unsupported image data (opts.decode) */
    SG_SKIP_TOO_LARGE = 2,   /* image above the pixel limit, member above max_member_bytes */
    SG_SKIP_MEMBER_TYPE = 3, /* symlink, hardlink, device, fifo, sparse file */
    SG_SKIP_LABEL = 4,       /* label missing (opts.require_label) or unparsable */
    SG_SKIP_DUPLICATE = 5,   /* key seen before in this shard, or an extension twice */
    SG_SKIP_UNSAFE_NAME = 6, /* absolute member name, a ".." component, or an empty
                                key (".jpg", "dir/.jpg") */
    SG_SKIP_NO_IMAGE = 7,    /* no image member (opts.require_image) */
    SG_SKIP__COUNT = 8
} sg_skip_reason;
const char *sg_skip_reason_str(sg_skip_reason r);

typedef struct sg_shard_reader_opts {
    int decode;              /* 1: decode each image into sample->img; default 0 */
    int min_w, min_h;        /* decode size hint, see sg_image_decode_hint */
    sg_image_limits limits;  /* default 64 Mpx */
    int require_label;       /* default 0 */
    int require_image;       /* default 1 */
    size_t max_member_bytes; /* default SG_SHARD_MAX_MEMBER_BYTES; larger members
                                skip their sample */
    size_t max_members;      /* per sample; default 64 */
    const char *const *classes; /* optional class names for string labels */
    size_t n_classes;
    int log_skips;           /* 1: sg_log(WARN) each skip message; default 1 */
    size_t max_messages;     /* skip messages kept; default 1000 */
} sg_shard_reader_opts;
void sg_shard_reader_opts_default(sg_shard_reader_opts *o);

typedef struct sg_shard_reader sg_shard_reader;

/* opts may be NULL (defaults). */
sg_shard_reader *sg_shard_reader_open(const char *path, const sg_shard_reader_opts *opts, sg_err *err);
/* data must stay valid until sg_shard_reader_free. name is used in messages. */
sg_shard_reader *sg_shard_reader_open_memory(const void *data, size_t len, const char *name,
                                             const sg_shard_reader_opts *opts, sg_err *err);
sg_status sg_shard_reader_next(sg_shard_reader *r, sg_sample **out);
int sg_shard_reader_done(const sg_shard_reader *r);
/* SG_OK when the shard ended cleanly (or is not finished yet); otherwise why
 * the stream broke, with the message in err. */
sg_status sg_shard_reader_status(const sg_shard_reader *r, sg_err *err);
void sg_shard_reader_skips(const sg_shard_reader *r, uint64_t counts[SG_SKIP__COUNT]);
uint64_t sg_shard_reader_n_skipped(const sg_shard_reader *r);
size_t sg_shard_reader_n_messages(const sg_shard_reader *r);
const char *sg_shard_reader_message(const sg_shard_reader *r, size_t i); /* "SHARD: key K: reason" */
void sg_shard_reader_free(sg_shard_reader *r);

/* ---- shard writer -------------------------------------------------------- */

typedef enum sg_compression { SG_COMPRESS_NONE = 0, SG_COMPRESS_ZSTD = 1, SG_COMPRESS_GZIP = 2 } sg_compression;
/* From the name: .tar.zst/.tzst -> ZSTD, .tar.gz/.tgz -> GZIP, else NONE. */
sg_compression sg_compression_from_path(const char *path);

typedef struct sg_shard_writer sg_shard_writer;
typedef struct sg_shard_info {
    uint64_t samples;
    uint64_t bytes;     /* size of the file on disk */
    uint64_t tar_bytes; /* uncompressed tar size */
    char sha256[65];    /* of the file on disk */
} sg_shard_info;

/* level: zstd 1..19, gzip 1..9; 0 = the default (zstd 3, gzip 6). */
sg_shard_writer *sg_shard_writer_open(const char *path, sg_compression c, int level, sg_err *err);
/* 1 when key is a valid WebDataset key for the writer: non-empty, no '.' or
 * backslash, not absolute, no empty component ("a//b", "a/"), basename not "__*__". */
int sg_shard_key_valid(const char *key);
/* key: sg_shard_key_valid. Members are written as KEY.EXT sorted by ext;
 * exts must be distinct. Non-ASCII names are stored as raw bytes (pax
 * hdrcharset=BINARY) and read back unchanged. */
sg_status sg_shard_writer_add(sg_shard_writer *w, const char *key, const sg_member *members, size_t n, sg_err *err);
/* Uncompressed tar bytes a sample with these member sizes adds. */
uint64_t sg_shard_tar_bytes(const char *key, const sg_member *members, size_t n);
sg_status sg_shard_writer_close(sg_shard_writer *w, sg_shard_info *info, sg_err *err);
/* close in two steps: finish completes and fsyncs the temp file (info as
 * close gives it), commit renames it to the final name. Between the two the
 * shard exists only under its temp name; free removes it. */
sg_status sg_shard_writer_finish(sg_shard_writer *w, sg_shard_info *info, sg_err *err);
sg_status sg_shard_writer_commit(sg_shard_writer *w, sg_err *err);
void sg_shard_writer_free(sg_shard_writer *w);

/* ---- shard lists ---------------------------------------------------------- */

#define SG_BRACES_MAX_EXPANSION 1000000
/* Bash-style braces: numeric ranges {000..127} (zero padding kept, optional
 * step {0..10..2}), lists {a,b,c}, nested and several per pattern. Refuses
 * more than SG_BRACES_MAX_EXPANSION results. *out is a malloc'd array of
 * malloc'd strings; free with sg_strv_free. */
sg_status sg_braces_expand(const char *pattern, char ***out, size_t *n, sg_err *err);
void sg_strv_free(char **v, size_t n);

typedef struct sg_shard_entry {
    char *path; /* resolved against the index file's folder */
    uint64_t samples;
    uint64_t bytes;
    char sha256[65];
} sg_shard_entry;

typedef struct sg_shard_index {
    sg_shard_entry *shards; /* (n_shards) */
    size_t n_shards;
    char **classes; /* (n_classes) class names; label i is classes[i] */
    size_t n_classes;
    uint64_t total_samples;
} sg_shard_index;

/* Reads the index JSON written by sg_pack (docs/formats-shards.md). */
sg_status sg_shard_index_load(const char *path, sg_shard_index **out, sg_err *err);
void sg_shard_index_free(sg_shard_index *ix);
/* 1 when a shard spec names an index file (*.json), 0 for a brace pattern. */
int sg_shard_spec_is_index(const char *spec);
/* A shard spec: an index file (*.json), or a brace pattern. */
sg_status sg_shard_list_resolve(const char *spec, char ***paths, size_t *n, sg_err *err);

/* ---- packing -------------------------------------------------------------- */

typedef struct sg_pack_opts {
    const char *src;         /* ImageFolder (DIR/images/<label>/x or DIR/<label>/x) or a CSV file */
    const char *out_pattern; /* shard names with one printf %d in the file name, e.g.
                                out/ham-%06d.tar.zst; %% is a literal % */
    const char *index_path;  /* NULL: <dir>/<stem>index.json beside the shards */
    const char *classes_path; /* NULL: <dir>/<stem>classes.txt */
    uint64_t max_samples;    /* per shard; 0 = 10000 */
    uint64_t max_bytes;      /* per shard, uncompressed tar bytes; 0 = 1 GiB */
    int level;               /* compression level, 0 = default */
    const char *group_col;   /* CSV column whose groups stay within one shard, or NULL */
    size_t max_file_bytes;   /* per source image; 0 or above SG_SHARD_MAX_MEMBER_BYTES =
                                SG_SHARD_MAX_MEMBER_BYTES */
    int progress;            /* 1: a progress line every 2 s and per shard */
} sg_pack_opts;

typedef struct sg_pack_result {
    uint64_t samples, shards;
    uint64_t bytes_in;  /* image bytes read */
    uint64_t bytes_out; /* shard bytes written */
    char **classes;     /* (n_classes) */
    uint64_t *class_counts; /* (n_classes) */
    size_t n_classes;
    uint64_t unlabelled;
    double seconds;
    char *index_path, *classes_path;
} sg_pack_result;

/* Shards are written under temp names and renamed together with the index
 * and class list only when everything succeeded: a failed pack leaves no new
 * file under a final name (an older index at the same path is removed just
 * before the renames, so it never describes the new shards). */
sg_status sg_pack(const sg_pack_opts *opts, sg_pack_result *res, sg_err *err);
/* The images of an ImageFolder (DIR/images/<label>/x.jpg, or DIR/<label>/x.jpg),
 * as sg_pack reads it, in the order of their WebDataset keys: paths[i] as
 * opened, labels[i] its folder's name. Free with sg_image_folder_free. */
typedef struct sg_image_folder {
    char **paths, **labels;
    size_t n;
} sg_image_folder;
sg_status sg_image_folder_list(const char *dir, sg_image_folder *out, sg_err *err);
void sg_image_folder_free(sg_image_folder *f);
void sg_pack_result_free(sg_pack_result *res);

/* Checks every shard of an index: size (first), sha256, and the sample count found
 * by reading it (no decoding). Writes one line per problem to the log and
 * returns SG_ERR_CHECKSUM / SG_ERR_FORMAT on the first kind found, with the
 * count of bad shards in *n_bad. */
sg_status sg_shard_index_verify(const char *index_path, size_t *n_bad, sg_err *err);

#ifdef __cplusplus
}
#endif
#endif
