/* sg_core.h — what every sgps module shares: the status type, the error
 * message buffer, the log sink, the seeded PRNG, checksums (CRC-32, SHA-256),
 * little-endian byte helpers and atomic file writes.
 *
 * core depends on nothing but libc; model/ and io/ both use it and never each
 * other.
 *
 * Errors: functions that can fail on user data return sg_status and, when given
 * a non-NULL sg_err*, leave a message there that names the file and the reason.
 * Broken contracts in our own code abort through SG_ASSERT with file:line.
 *
 * Log: one process-wide sink (the only mutable global): sg_log_set(cb, user).
 * Default sink writes to stderr, prefixed with "[rank R]" once
 * sg_log_set_rank() was called with R >= 0.
 */
#ifndef SG_CORE_H
#define SG_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SG_VERSION_STRING "0.1.0"

/* ---- status ------------------------------------------------------------ */
/* Fixed values: they appear in status files and exit codes. */
typedef enum sg_status {
    SG_OK = 0,
    SG_ERR_IO = 1,          /* open/read/write failed */
    SG_ERR_FORMAT = 2,      /* malformed or truncated content */
    SG_ERR_VERSION = 3,     /* newer/incompatible format version */
    SG_ERR_CHECKSUM = 4,    /* checksum mismatch */
    SG_ERR_NOMEM = 5,       /* allocation failed */
    SG_ERR_ARG = 6,         /* invalid argument from the user */
    SG_ERR_LIMIT = 7,       /* a configured limit was exceeded (e.g. pixels) */
    SG_ERR_UNSUPPORTED = 8, /* valid but unsupported content */
    SG_ERR_NONFINITE = 9,   /* NaN or Inf where finite numbers are required */
    SG_ERR_MPI = 10,        /* an MPI call failed */
    SG_ERR_INTERRUPTED = 11 /* stopped by a signal; resumable */
} sg_status;

const char *sg_status_str(sg_status s);

/* A message buffer that failing calls fill. */
typedef struct sg_err {
    char msg[1024];
} sg_err;

/* printf-style; safe with err == NULL. Returns code, so callers can write
 * `return sg_err_set(err, SG_ERR_IO, "%s: cannot open: %s", path, strerror(e));` */
sg_status sg_err_set(sg_err *err, sg_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- assertions -------------------------------------------------------- */
void sg_abort_at(const char *file, int line, const char *expr) __attribute__((noreturn));
#define SG_ASSERT(x) ((x) ? (void)0 : sg_abort_at(__FILE__, __LINE__, #x))

/* Allocation that aborts on failure; for sizes our own code computed. */
void *sg_xmalloc(size_t n);
void *sg_xcalloc(size_t n, size_t size);
void *sg_xrealloc(void *p, size_t n);
char *sg_xstrdup(const char *s);
/* qsort / bsearch comparison of two `char *` elements by strcmp. */
int sg_cmp_strp(const void *a, const void *b);
/* 64-byte aligned, zeroed; free with free(). */
float *sg_xalloc_floats(size_t n);

/* ---- log --------------------------------------------------------------- */
typedef enum sg_log_level { SG_LOG_DEBUG = 0, SG_LOG_INFO = 1, SG_LOG_WARN = 2, SG_LOG_ERROR = 3 } sg_log_level;
typedef void (*sg_log_fn)(sg_log_level level, const char *line, void *user);

void sg_log_set(sg_log_fn fn, void *user); /* NULL restores the stderr sink */
void sg_log_set_rank(int rank);            /* -1: no rank prefix */
void sg_log_set_level(sg_log_level min_level);
void sg_log(sg_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- PRNG -------------------------------------------------------------- */
/* xoshiro256** seeded by splitmix64: the same numbers on every machine.
 * Normal deviates use a Box-Muller pair computed in double. */
typedef struct sg_rng {
    uint64_t s[4];
} sg_rng;

void sg_rng_seed(sg_rng *r, uint64_t seed);
/* Derive an independent stream, e.g. per episode: seed mixed with a stream id. */
void sg_rng_seed2(sg_rng *r, uint64_t seed, uint64_t stream);
uint64_t sg_rng_u64(sg_rng *r);
uint32_t sg_rng_below(sg_rng *r, uint32_t n); /* uniform in [0, n), n > 0 */
float sg_rng_uniform(sg_rng *r);              /* [0, 1) */
float sg_rng_normal(sg_rng *r);               /* N(0, 1) */
void sg_rng_shuffle_int(sg_rng *r, int *a, size_t n);

/* ---- checksums --------------------------------------------------------- */
uint32_t sg_crc32(uint32_t crc, const void *data, size_t n); /* start with crc = 0 */

typedef struct sg_sha256 {
    uint32_t h[8];
    uint64_t len;
    uint8_t buf[64];
    size_t nbuf;
} sg_sha256;
void sg_sha256_init(sg_sha256 *c);
void sg_sha256_update(sg_sha256 *c, const void *data, size_t n);
void sg_sha256_final(sg_sha256 *c, uint8_t out[32]);
void sg_sha256_hex(const uint8_t digest[32], char out[65]);
/* SHA-256 of a whole file as 64 hex chars + NUL. */
sg_status sg_sha256_file(const char *path, char out[65], sg_err *err);

/* FNV-1a 64-bit, for hashing tokens and keys. */
uint64_t sg_fnv1a64(const void *data, size_t n);

/* ---- little-endian bytes ----------------------------------------------- */
void sg_put_u32le(uint8_t *p, uint32_t v);
void sg_put_u64le(uint8_t *p, uint64_t v);
void sg_put_f32le(uint8_t *p, float v);
uint32_t sg_get_u32le(const uint8_t *p);
uint64_t sg_get_u64le(const uint8_t *p);
float sg_get_f32le(const uint8_t *p);

/* A growable byte buffer for building files in memory. */
typedef struct sg_buf {
    uint8_t *data;
    size_t len, cap;
} sg_buf;
void sg_buf_reserve(sg_buf *b, size_t extra);
void sg_buf_append(sg_buf *b, const void *data, size_t n);
/* Appends s as one CSV field: quoted (quotes doubled) when it holds a comma or
 * a quote; control characters become '?', so a row stays one line. */
void sg_buf_csv_field(sg_buf *b, const char *s);
/* Appends s as a quoted JSON string (quote, backslash and control characters
 * escaped). */
void sg_buf_json_str(sg_buf *b, const char *s);
void sg_buf_u32(sg_buf *b, uint32_t v);
void sg_buf_u64(sg_buf *b, uint64_t v);
void sg_buf_f32(sg_buf *b, float v);
void sg_buf_f32s(sg_buf *b, const float *v, size_t n);
void sg_buf_str(sg_buf *b, const char *s); /* u32 length + bytes, no NUL */
void sg_buf_printf(sg_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sg_buf_free(sg_buf *b);

/* A bounds-checked reader over bytes: every get fails (returns nonzero and
 * sets r->bad) instead of reading past the end. */
typedef struct sg_rd {
    const uint8_t *p;
    size_t len, pos;
    int bad;
} sg_rd;
int sg_rd_u32(sg_rd *r, uint32_t *v);
int sg_rd_u64(sg_rd *r, uint64_t *v);
int sg_rd_f32(sg_rd *r, float *v);
int sg_rd_f32s(sg_rd *r, float *v, size_t n);
/* Reads a length-prefixed string into a malloc'd NUL-terminated copy; refuses
 * lengths above maxlen. */
int sg_rd_str(sg_rd *r, char **out, size_t maxlen);

/* ---- files ------------------------------------------------------------- */
/* Whole file into memory (adds a NUL after the end); refuses files above max_bytes. */
sg_status sg_file_read_all(const char *path, uint8_t **data, size_t *len, size_t max_bytes, sg_err *err);
/* Writes to "<path>.tmp.<16 hex digits>" (a hash of host, pid, a per-process
 * counter and the time: unique across the ranks of a job on a shared file
 * system; created with O_EXCL), fsyncs, renames over path, fsyncs the folder.
 * The suffix is SG_FILE_TMP_SUFFIX_LEN bytes whatever the host, so any final
 * name of up to 255 - SG_FILE_TMP_SUFFIX_LEN bytes can be written.
 * On failure the final name is untouched and the temp file removed. */
#define SG_FILE_TMP_SUFFIX_LEN 21
sg_status sg_file_write_atomic(const char *path, const void *data, size_t len, sg_err *err);
/* mkdir -p */
sg_status sg_mkdir_p(const char *path, sg_err *err);

/* Monotonic seconds. */
double sg_now(void);

/* ---- stop signals ------------------------------------------------------ */
/* SIGTERM and SIGUSR1 (Slurm's pre-emption and time-limit warnings) set a
 * flag that long jobs poll between steps to stop cleanly and resumably. So
 * does the first SIGINT (Ctrl-C), unless SIGINT was ignored when the process
 * started (a background job of a script); a second SIGINT ends the process at
 * once, as Ctrl-C always does. */
void sg_stop_signals_install(void);
int sg_stop_requested(void);

#ifdef __cplusplus
}
#endif
#endif
