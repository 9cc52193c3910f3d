/* sg_core.c — status strings, error buffer, log sink, allocation, PRNG,
 * byte helpers and files. The SHA-256 and CRC-32 live in sg_hash.c. */
#define _POSIX_C_SOURCE 200809L
#include "sg_core.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *sg_status_str(sg_status s) {
    switch (s) {
    case SG_OK: return "ok";
    case SG_ERR_IO: return "i/o error";
    case SG_ERR_FORMAT: return "malformed or truncated data";
    case SG_ERR_VERSION: return "incompatible version";
    case SG_ERR_CHECKSUM: return "checksum mismatch";
    case SG_ERR_NOMEM: return "out of memory";
    case SG_ERR_ARG: return "invalid argument";
    case SG_ERR_LIMIT: return "limit exceeded";
    case SG_ERR_UNSUPPORTED: return "unsupported";
    case SG_ERR_NONFINITE: return "non-finite value";
    case SG_ERR_MPI: return "MPI error";
    case SG_ERR_INTERRUPTED: return "interrupted";
    }
    return "unknown status";
}

sg_status sg_err_set(sg_err *err, sg_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

void sg_abort_at(const char *file, int line, const char *expr) {
    fprintf(stderr, "sgps: internal error at %s:%d: assertion failed: %s\n", file, line, expr);
    fflush(stderr);
    abort();
}

void *sg_xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) sg_abort_at(__FILE__, __LINE__, "out of memory");
    return p;
}
void *sg_xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) sg_abort_at(__FILE__, __LINE__, "out of memory");
    return p;
}
void *sg_xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) sg_abort_at(__FILE__, __LINE__, "out of memory");
    return q;
}
char *sg_xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = sg_xmalloc(n);
    memcpy(d, s, n);
    return d;
}

int sg_cmp_strp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
float *sg_xalloc_floats(size_t n) {
    void *p = NULL;
    size_t bytes = (n ? n : 1) * sizeof(float);
    bytes = (bytes + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, bytes) != 0) sg_abort_at(__FILE__, __LINE__, "out of memory");
    memset(p, 0, bytes);
    return p;
}

/* ---- log ---- */
static sg_log_fn g_log_fn;
static void *g_log_user;
static int g_log_rank = -1;
static sg_log_level g_log_min = SG_LOG_INFO;

void sg_log_set(sg_log_fn fn, void *user) { g_log_fn = fn; g_log_user = user; }
void sg_log_set_rank(int rank) { g_log_rank = rank; }
void sg_log_set_level(sg_log_level min_level) { g_log_min = min_level; }

void sg_log(sg_log_level level, const char *fmt, ...) {
    if (level < g_log_min) return;
    char line[2048];
    int off = 0;
    if (g_log_rank >= 0) off = snprintf(line, sizeof line, "[rank %d] ", g_log_rank);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + off, sizeof line - (size_t)off, fmt, ap);
    va_end(ap);
    if (g_log_fn) {
        g_log_fn(level, line, g_log_user);
    } else {
        static const char *tag[] = {"debug: ", "", "warning: ", "error: "};
        fprintf(stderr, "%s%s\n", tag[level], line);
        fflush(stderr);
    }
}

/* ---- PRNG: xoshiro256** ---- */
static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
void sg_rng_seed(sg_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}
void sg_rng_seed2(sg_rng *r, uint64_t seed, uint64_t stream) {
    uint64_t x = seed ^ (stream * 0xD1B54A32D192ED03ull + 0x8CB92BA72F3D8DD7ull);
    splitmix64(&x);
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}
static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
uint64_t sg_rng_u64(sg_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}
uint32_t sg_rng_below(sg_rng *r, uint32_t n) {
    SG_ASSERT(n > 0);
    /* Lemire's multiply-shift with rejection: unbiased. */
    uint64_t m = (uint64_t)(uint32_t)(sg_rng_u64(r) >> 32) * n;
    uint32_t lo = (uint32_t)m;
    if (lo < n) {
        uint32_t t = (uint32_t)(-n) % n;
        while (lo < t) {
            m = (uint64_t)(uint32_t)(sg_rng_u64(r) >> 32) * n;
            lo = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}
float sg_rng_uniform(sg_rng *r) { return (float)(sg_rng_u64(r) >> 40) * (1.0f / 16777216.0f); }
float sg_rng_normal(sg_rng *r) {
    double u1 = ((double)(sg_rng_u64(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    double u2 = (double)(sg_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}
void sg_rng_shuffle_int(sg_rng *r, int *a, size_t n) {
    for (size_t i = n; i > 1; i--) {
        size_t j = sg_rng_below(r, (uint32_t)i);
        int t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

/* ---- little endian ---- */
void sg_put_u32le(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
void sg_put_u64le(uint8_t *p, uint64_t v) {
    sg_put_u32le(p, (uint32_t)v);
    sg_put_u32le(p + 4, (uint32_t)(v >> 32));
}
void sg_put_f32le(uint8_t *p, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    sg_put_u32le(p, u);
}
uint32_t sg_get_u32le(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
uint64_t sg_get_u64le(const uint8_t *p) { return (uint64_t)sg_get_u32le(p) | (uint64_t)sg_get_u32le(p + 4) << 32; }
float sg_get_f32le(const uint8_t *p) {
    uint32_t u = sg_get_u32le(p);
    float v;
    memcpy(&v, &u, 4);
    return v;
}

void sg_buf_reserve(sg_buf *b, size_t extra) {
    if (b->len + extra <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra) cap *= 2;
    b->data = sg_xrealloc(b->data, cap);
    b->cap = cap;
}
void sg_buf_append(sg_buf *b, const void *data, size_t n) {
    sg_buf_reserve(b, n);
    if (n) memcpy(b->data + b->len, data, n);
    b->len += n;
}
void sg_buf_csv_field(sg_buf *b, const char *s) {
    int q = strpbrk(s, ",\"") != NULL;
    if (q) sg_buf_append(b, "\"", 1);
    for (const char *p = s; *p; p++) {
        char c = (unsigned char)*p < 0x20 ? '?' : *p;
        if (c == '"') sg_buf_append(b, "\"", 1);
        sg_buf_append(b, &c, 1);
    }
    if (q) sg_buf_append(b, "\"", 1);
}
void sg_buf_json_str(sg_buf *b, const char *s) {
    sg_buf_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') sg_buf_printf(b, "\\%c", *p);
        else if (*p < 0x20) sg_buf_printf(b, "\\u%04x", *p);
        else sg_buf_append(b, p, 1);
    }
    sg_buf_append(b, "\"", 1);
}
void sg_buf_u32(sg_buf *b, uint32_t v) { sg_buf_reserve(b, 4); sg_put_u32le(b->data + b->len, v); b->len += 4; }
void sg_buf_u64(sg_buf *b, uint64_t v) { sg_buf_reserve(b, 8); sg_put_u64le(b->data + b->len, v); b->len += 8; }
void sg_buf_f32(sg_buf *b, float v) { sg_buf_reserve(b, 4); sg_put_f32le(b->data + b->len, v); b->len += 4; }
void sg_buf_f32s(sg_buf *b, const float *v, size_t n) {
    sg_buf_reserve(b, 4 * n);
    for (size_t i = 0; i < n; i++) sg_put_f32le(b->data + b->len + 4 * i, v[i]);
    b->len += 4 * n;
}
void sg_buf_str(sg_buf *b, const char *s) {
    size_t n = strlen(s);
    sg_buf_u32(b, (uint32_t)n);
    sg_buf_append(b, s, n);
}
void sg_buf_printf(sg_buf *b, const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n > 0) {
        sg_buf_reserve(b, (size_t)n + 1);
        vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap2);
        b->len += (size_t)n;
    }
    va_end(ap2);
}
void sg_buf_free(sg_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int sg_rd_u32(sg_rd *r, uint32_t *v) {
    if (r->bad || r->len - r->pos < 4) return r->bad = 1;
    *v = sg_get_u32le(r->p + r->pos);
    r->pos += 4;
    return 0;
}
int sg_rd_u64(sg_rd *r, uint64_t *v) {
    if (r->bad || r->len - r->pos < 8) return r->bad = 1;
    *v = sg_get_u64le(r->p + r->pos);
    r->pos += 8;
    return 0;
}
int sg_rd_f32(sg_rd *r, float *v) {
    if (r->bad || r->len - r->pos < 4) return r->bad = 1;
    *v = sg_get_f32le(r->p + r->pos);
    r->pos += 4;
    return 0;
}
int sg_rd_f32s(sg_rd *r, float *v, size_t n) {
    if (r->bad || n > (r->len - r->pos) / 4) return r->bad = 1;
    for (size_t i = 0; i < n; i++) v[i] = sg_get_f32le(r->p + r->pos + 4 * i);
    r->pos += 4 * n;
    return 0;
}
int sg_rd_str(sg_rd *r, char **out, size_t maxlen) {
    uint32_t n;
    *out = NULL;
    if (sg_rd_u32(r, &n)) return 1;
    if (n > maxlen || n > r->len - r->pos) return r->bad = 1;
    char *s = sg_xmalloc((size_t)n + 1);
    memcpy(s, r->p + r->pos, n);
    s[n] = 0;
    r->pos += n;
    *out = s;
    return 0;
}

/* ---- files ---- */
sg_status sg_file_read_all(const char *path, uint8_t **data, size_t *len, size_t max_bytes, sg_err *err) {
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return sg_err_set(err, SG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return sg_err_set(err, SG_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        fclose(f);
        return sg_err_set(err, SG_ERR_LIMIT, "%s: file is %lld bytes, above the limit of %zu", path,
                          (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = sg_xmalloc(n + 1);
    size_t got = fread(buf, 1, n, f);
    int rerr = ferror(f);
    fclose(f);
    if (got != n || rerr) {
        free(buf);
        return sg_err_set(err, SG_ERR_IO, "%s: read failed", path);
    }
    buf[n] = 0;
    *data = buf;
    *len = n;
    return SG_OK;
}

sg_status sg_file_write_atomic(const char *path, const void *data, size_t len, sg_err *err) {
    /* host + pid + a per-process counter + the time, hashed to a fixed-length
     * suffix (a long host name must not push the temporary name past 255
     * bytes): unique across the ranks of a job on a shared file system and
     * across threads of one process; O_EXCL makes a collision a retry, not a
     * shared file */
    static _Atomic unsigned long counter;
    char host[256] = "host";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = 0;
    size_t plen = strlen(path), tlen = plen + SG_FILE_TMP_SUFFIX_LEN + 1;
    char *tmp = sg_xmalloc(tlen);
    int fd = -1;
    for (int attempt = 0; attempt < 16 && fd < 0; attempt++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        char id[384];
        int n = snprintf(id, sizeof id, "%s/%ld/%lu/%lld.%ld", host, (long)getpid(), counter++, (long long)ts.tv_sec,
                         ts.tv_nsec);
        snprintf(tmp, tlen, "%s.tmp.%016llx", path, (unsigned long long)sg_fnv1a64(id, n > 0 && (size_t)n < sizeof id ? (size_t)n : strlen(id)));
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        /* the user named path, not the temporary beside it */
        sg_status s = sg_err_set(err, SG_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
        free(tmp);
        return s;
    }
    const uint8_t *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            close(fd);
            unlink(tmp);
            free(tmp);
            return sg_err_set(err, SG_ERR_IO, "%s: write failed: %s", path, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    int fs = fsync(fd), fe = errno, cl = close(fd); /* closed whether or not fsync failed */
    if (fs != 0 || cl != 0) {
        int e = fs != 0 ? fe : errno;
        unlink(tmp);
        free(tmp);
        return sg_err_set(err, SG_ERR_IO, "%s: fsync/close failed: %s", path, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        free(tmp);
        return sg_err_set(err, SG_ERR_IO, "%s: rename failed: %s", path, strerror(e));
    }
    free(tmp);
    char *dcopy = sg_xstrdup(path);
    int dfd = open(dirname(dcopy), O_RDONLY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(dcopy);
    return SG_OK;
}

sg_status sg_mkdir_p(const char *path, sg_err *err) {
    char *p = sg_xstrdup(path);
    size_t n = strlen(p);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] == '/' || p[i] == 0) {
            char c = p[i];
            p[i] = 0;
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                sg_status s = sg_err_set(err, SG_ERR_IO, "%s: cannot create folder: %s", p, strerror(errno));
                free(p);
                return s;
            }
            p[i] = c;
        }
    }
    free(p);
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return sg_err_set(err, SG_ERR_IO, "%s: not a folder", path);
    return SG_OK;
}

double sg_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- stop signals ---- */

static volatile sig_atomic_t g_stop_flag;

static void on_stop_signal(int sig) {
    (void)sig;
    g_stop_flag = 1;
}

void sg_stop_signals_install(void) {
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    /* Ctrl-C: the first stops cleanly, the handler then gives way to the default */
    if (sigaction(SIGINT, NULL, &old) == 0 && old.sa_handler != SIG_IGN) {
        sa.sa_flags = SA_RESETHAND;
        sigaction(SIGINT, &sa, NULL);
    }
}

int sg_stop_requested(void) { return g_stop_flag != 0; }
