/* bench_shards.c — images/s and MB/s of read + decode + resize to 64x64 from
 * one shard (ham10000 packed as .tar and .tar.zst), against a bound measured
 * in the same run: the same shard through `zstd -dc | tar -x` into tmpfs
 * (bench/shards_bound.sh, pinned to one core) plus a plain libjpeg-turbo
 * full-size decode of every extracted file, in this process.
 *
 *   bench_shards [DATA_DIR] [REPEATS]     DATA_DIR defaults to ../shared/data
 *                                          beside the repository
 * Times are process CPU seconds (one core), best of REPEATS (default 5);
 * output goes under /tmp and /dev/shm and is removed afterwards. */
#include "sg_io.h"

#include <ftw.h>
#include <jpeglib.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct run_stats {
    double cpu, wall;
    uint64_t images, bytes;
} run_stats;

/* Ours: stream the shard, decode with the 64x64 size hint, resize+normalize. */
static run_stats run_reader(const char *shard) {
    run_stats st = {0};
    sg_shard_reader_opts o;
    sg_shard_reader_opts_default(&o);
    o.decode = 1;
    o.min_w = o.min_h = 64;
    static float t[3 * 64 * 64];
    const float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
    double c0 = cpu_now(), w0 = sg_now();
    sg_err e;
    sg_shard_reader *r = sg_shard_reader_open(shard, &o, &e);
    if (!r) {
        fprintf(stderr, "%s\n", e.msg);
        exit(1);
    }
    sg_sample *s;
    while (sg_shard_reader_next(r, &s) == SG_OK && s) {
        sg_image_to_tensor(&s->img, 64, 64, mean, sd, t);
        st.images++;
        st.bytes += s->image_len;
    }
    if (sg_shard_reader_n_skipped(r)) fprintf(stderr, "warning: %llu samples skipped\n",
                                              (unsigned long long)sg_shard_reader_n_skipped(r));
    sg_shard_reader_free(r);
    st.cpu = cpu_now() - c0;
    st.wall = sg_now() - w0;
    return st;
}

/* The decode half of the bound: every extracted .jpg decoded at full size
 * with libjpeg-turbo, file read included. */
static char **g_files;
static size_t g_nfiles;
static int collect(const char *p, const struct stat *sb, int flag, struct FTW *f) {
    (void)sb;
    (void)f;
    size_t n = strlen(p);
    if (flag == FTW_F && n > 4 && strcmp(p + n - 4, ".jpg") == 0) {
        g_files = sg_xrealloc(g_files, sizeof(char *) * (g_nfiles + 1));
        g_files[g_nfiles++] = sg_xstrdup(p);
    }
    return 0;
}

static double decode_files(uint64_t *bytes) {
    double c0 = cpu_now();
    uint8_t *buf = NULL;
    *bytes = 0;
    for (size_t i = 0; i < g_nfiles; i++) {
        FILE *f = fopen(g_files[i], "rb");
        if (!f) continue;
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        uint8_t *d = sg_xmalloc((size_t)n);
        if (fread(d, 1, (size_t)n, f) != (size_t)n) n = 0;
        fclose(f);
        *bytes += (uint64_t)n;
        struct jpeg_decompress_struct c;
        struct jpeg_error_mgr je;
        c.err = jpeg_std_error(&je);
        jpeg_create_decompress(&c);
        jpeg_mem_src(&c, d, (unsigned long)n);
        jpeg_read_header(&c, TRUE);
        c.out_color_space = JCS_RGB;
        jpeg_start_decompress(&c);
        buf = sg_xrealloc(buf, (size_t)c.output_width * 3);
        while (c.output_scanline < c.output_height) {
            JSAMPROW rp = buf;
            jpeg_read_scanlines(&c, &rp, 1);
        }
        jpeg_finish_decompress(&c);
        jpeg_destroy_decompress(&c);
        free(d);
    }
    free(buf);
    return cpu_now() - c0;
}

static double bound(const char *script, const char *shard, const char *tmpfs, double *extract_cpu,
                    double *decode_cpu) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s'", script, shard, tmpfs);
    FILE *p = popen(cmd, "r");
    double real = 0, user = 0, sys = 0;
    char line[256];
    while (p && fgets(line, sizeof line, p))
        if (sscanf(line, "extract %lf %lf %lf", &real, &user, &sys) == 3) break;
    if (!p || pclose(p) != 0 || real == 0) {
        fprintf(stderr, "bound script failed: %s\n", cmd);
        exit(1);
    }
    for (size_t i = 0; i < g_nfiles; i++) free(g_files[i]);
    free(g_files);
    g_files = NULL;
    g_nfiles = 0;
    nftw(tmpfs, collect, 16, FTW_PHYS);
    uint64_t b;
    *extract_cpu = user + sys;
    *decode_cpu = decode_files(&b);
    return *extract_cpu + *decode_cpu;
}

int main(int argc, char **argv) {
    char repo[1024];
    snprintf(repo, sizeof repo, "%s", __FILE__);
    char *sl = strrchr(repo, '/');
    if (sl) *sl = 0; /* .../bench */
    sl = strrchr(repo, '/');
    if (sl) *sl = 0; /* repo */
    char data_default[1100];
    snprintf(data_default, sizeof data_default, "%s/../shared/data", repo);
    const char *data = argc > 1 ? argv[1] : data_default;
    int repeats = argc > 2 ? atoi(argv[2]) : 5;
    if (repeats < 1) repeats = 1;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    sched_setaffinity(0, sizeof one, &one);
    sg_log_set_level(SG_LOG_WARN);

    char csv[1200], tmp[] = "/tmp/sgps-bench-shards-XXXXXX", tmpfs[256], script[1100];
    snprintf(csv, sizeof csv, "%s/ham10000/labels.csv", data);
    if (access(csv, R_OK) != 0) {
        fprintf(stderr, "bench_shards: %s not found (pass the data folder as the first argument)\n", csv);
        return 2;
    }
    if (!mkdtemp(tmp)) return 1;
    snprintf(tmpfs, sizeof tmpfs, "%s/sgps-bench-extract-%ld", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp",
             (long)getpid());
    snprintf(script, sizeof script, "%s/bench/shards_bound.sh", repo);

    printf("bench/shards: read + decode + resize to 64x64, one core, CPU seconds, best of %d\n", repeats);
    printf("data %s\n", csv);
    const char *exts[2] = {"tar", "tar.zst"};
    for (int k = 0; k < 2; k++) {
        char pat[1200], shard[1200];
        snprintf(pat, sizeof pat, "%s/ham-%s-%%06d.%s", tmp, k ? "zst" : "tar", exts[k]);
        snprintf(shard, sizeof shard, "%s/ham-%s-000000.%s", tmp, k ? "zst" : "tar", exts[k]);
        sg_pack_opts po = {0};
        po.src = csv;
        po.out_pattern = pat;
        po.max_samples = 1000000;
        sg_pack_result pr;
        sg_err e;
        if (sg_pack(&po, &pr, &e) != SG_OK) {
            fprintf(stderr, "%s\n", e.msg);
            return 1;
        }
        struct stat sst;
        stat(shard, &sst);
        /* Interleaved, best of each: the machine is shared, so noise only
         * ever adds time. */
        run_stats best = {0};
        double bbest = 0, ex = 0, de = 0;
        for (int i = 0; i < repeats; i++) {
            run_stats s = run_reader(shard);
            if (i == 0 || s.cpu < best.cpu) best = s;
            double e1, d1;
            double b = bound(script, shard, tmpfs, &e1, &d1);
            if (i == 0 || b < bbest) bbest = b, ex = e1, de = d1;
        }
        double ips = (double)best.images / best.cpu, bips = (double)g_nfiles / bbest;
        printf("\n.%s  %llu samples, shard %.1f MB (images %.1f MB), pack %.2f s\n", exts[k],
               (unsigned long long)pr.samples, sst.st_size / 1e6, pr.bytes_in / 1e6, pr.seconds);
        printf("  sgps reader : %8.0f images/s  %6.1f MB/s (shard bytes)  cpu %.3f s  wall %.3f s\n", ips,
               sst.st_size / 1e6 / best.cpu, best.cpu, best.wall);
        printf("  bound       : %8.0f images/s  %6.1f MB/s  (extract %.3f s + libjpeg-turbo decode %.3f s, %zu files)\n",
               bips, sst.st_size / 1e6 / bbest, ex, de, g_nfiles);
        printf("  ratio       : %.2fx the bound (target >= 0.9x)\n", ips / bips);
        sg_pack_result_free(&pr);
    }
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", tmp, tmpfs);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", tmp);
    return 0;
}
