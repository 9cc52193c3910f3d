/* test_core.c — core's pinned behaviour: the PRNG sequence for a seed (the
 * same on every machine), its ranges and rough unbiasedness, SHA-256 and
 * CRC-32 against published vectors, little-endian helpers, the bounded
 * reader, and atomic file writes. */
#include "sg_core.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>

/* Expected values from an independent implementation of splitmix64-seeded
 * xoshiro256** (Blackman & Vigna's reference algorithm). */
Test(rng, pinned_sequence) {
    static const uint64_t want0[4] = {0x99ec5f36cb75f2b4ull, 0xbf6e1f784956452aull, 0x1a5f849d4933e6e0ull,
                                      0x6aa594f1262d2d2cull};
    static const uint64_t want42[4] = {0x15780b2e0c2ec716ull, 0x6104d9866d113a7eull, 0xae17533239e499a1ull,
                                       0xecb8ad4703b360a1ull};
    sg_rng r;
    sg_rng_seed(&r, 0);
    for (int i = 0; i < 4; i++) cr_assert_eq(sg_rng_u64(&r), want0[i], "seed 0, draw %d", i);
    sg_rng_seed(&r, 42);
    for (int i = 0; i < 4; i++) cr_assert_eq(sg_rng_u64(&r), want42[i], "seed 42, draw %d", i);
    /* uniform = top 24 bits / 2^24 */
    cr_assert_eq(sg_rng_uniform(&r), (float)0xfde6dc / 16777216.0f);
}

Test(rng, streams_differ_and_repeat) {
    sg_rng a, b, c;
    sg_rng_seed2(&a, 7, 1);
    sg_rng_seed2(&b, 7, 2);
    sg_rng_seed2(&c, 7, 1);
    uint64_t xa = sg_rng_u64(&a), xb = sg_rng_u64(&b), xc = sg_rng_u64(&c);
    cr_assert_neq(xa, xb);
    cr_assert_eq(xa, xc);
}

Test(rng, uniform_range_and_moments) {
    sg_rng r;
    sg_rng_seed(&r, 1);
    double s = 0;
    const int n = 200000;
    for (int i = 0; i < n; i++) {
        float u = sg_rng_uniform(&r);
        cr_assert(u >= 0.0f && u < 1.0f, "uniform %g out of [0, 1)", u);
        s += u;
    }
    cr_assert(fabs(s / n - 0.5) < 0.005, "uniform mean %g", s / n);
    double m = 0, v = 0;
    for (int i = 0; i < n; i++) {
        double z = sg_rng_normal(&r);
        cr_assert(isfinite(z));
        m += z;
        v += z * z;
    }
    m /= n;
    v = v / n - m * m;
    cr_assert(fabs(m) < 0.01 && fabs(v - 1) < 0.02, "normal mean %g var %g", m, v);
}

/* Chi-square over n buckets; 99.9 % quantiles: df 5 → 20.5, df 2 → 13.8. */
static double chi2_below(sg_rng *r, uint32_t n, int draws) {
    long cnt[8] = {0};
    for (int i = 0; i < draws; i++) {
        uint32_t v = sg_rng_below(r, n);
        cr_assert(v < n);
        cnt[v]++;
    }
    double e = (double)draws / n, x = 0;
    for (uint32_t i = 0; i < n; i++) x += (cnt[i] - e) * (cnt[i] - e) / e;
    return x;
}

Test(rng, below_unbiased) {
    sg_rng r;
    sg_rng_seed(&r, 3);
    cr_assert(chi2_below(&r, 6, 120000) < 20.5);
    cr_assert(chi2_below(&r, 3, 90000) < 13.8);
    for (int i = 0; i < 1000; i++) cr_assert_eq(sg_rng_below(&r, 1), 0u);
    /* A range just above 2^31 takes the rejection path often: halves must balance. */
    uint32_t big = 0x80000001u;
    long lo = 0;
    for (int i = 0; i < 40000; i++) lo += sg_rng_below(&r, big) < big / 2;
    cr_assert(labs(lo - 20000) < 600, "lower half drawn %ld of 40000 times", lo);
}

Test(rng, shuffle_is_permutation) {
    sg_rng r;
    sg_rng_seed(&r, 9);
    int a[50], seen[50] = {0};
    for (int i = 0; i < 50; i++) a[i] = i;
    sg_rng_shuffle_int(&r, a, 50);
    int moved = 0;
    for (int i = 0; i < 50; i++) {
        seen[a[i]]++;
        moved += a[i] != i;
    }
    for (int i = 0; i < 50; i++) cr_assert_eq(seen[i], 1);
    cr_assert(moved > 25);
}

static void sha_hex(const void *d, size_t n, char out[65]) {
    sg_sha256 c;
    uint8_t dg[32];
    sg_sha256_init(&c);
    sg_sha256_update(&c, d, n);
    sg_sha256_final(&c, dg);
    sg_sha256_hex(dg, out);
}

Test(hash, sha256_vectors) {
    char h[65];
    sha_hex("", 0, h);
    cr_assert_str_eq(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sha_hex("abc", 3, h);
    cr_assert_str_eq(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha_hex(two, strlen(two), h);
    cr_assert_str_eq(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

Test(hash, sha256_million_a_in_uneven_chunks) {
    char *a = malloc(1000000);
    memset(a, 'a', 1000000);
    char h[65];
    sha_hex(a, 1000000, h);
    cr_assert_str_eq(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    sg_sha256 c;
    uint8_t dg[32];
    sg_sha256_init(&c);
    size_t pos = 0, step = 1;
    while (pos < 1000000) {
        size_t n = step < 1000000 - pos ? step : 1000000 - pos;
        sg_sha256_update(&c, a + pos, n);
        pos += n;
        step = step * 3 % 997 + 1;
    }
    sg_sha256_final(&c, dg);
    sg_sha256_hex(dg, h);
    cr_assert_str_eq(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(a);
}

Test(hash, crc32_check_value) {
    cr_assert_eq(sg_crc32(0, "123456789", 9), 0xCBF43926u);
    cr_assert_eq(sg_crc32(0, "", 0), 0u);
    /* Chaining equals one pass. */
    cr_assert_eq(sg_crc32(sg_crc32(0, "1234", 4), "56789", 5), 0xCBF43926u);
}

Test(bytes, little_endian_and_reader) {
    uint8_t b[8];
    sg_put_u32le(b, 0x11223344u);
    cr_assert(b[0] == 0x44 && b[3] == 0x11);
    cr_assert_eq(sg_get_u32le(b), 0x11223344u);
    sg_put_u64le(b, 0x0102030405060708ull);
    cr_assert(b[0] == 8 && b[7] == 1);
    cr_assert_eq(sg_get_u64le(b), 0x0102030405060708ull);
    sg_put_f32le(b, -1.5f);
    cr_assert_eq(sg_get_f32le(b), -1.5f);
    sg_buf buf = {0};
    sg_buf_u32(&buf, 7);
    sg_buf_str(&buf, "hey");
    sg_buf_f32(&buf, 2.0f);
    sg_rd r = {buf.data, buf.len, 0, 0};
    uint32_t v;
    char *s;
    float f;
    cr_assert_eq(sg_rd_u32(&r, &v), 0);
    cr_assert_eq(v, 7u);
    cr_assert_eq(sg_rd_str(&r, &s, 2), 1, "a string longer than maxlen must be refused");
    cr_assert(r.bad);
    free(s);
    r = (sg_rd){buf.data, buf.len, 4, 0};
    cr_assert_eq(sg_rd_str(&r, &s, 16), 0);
    cr_assert_str_eq(s, "hey");
    free(s);
    cr_assert_eq(sg_rd_f32(&r, &f), 0);
    cr_assert_eq(f, 2.0f);
    cr_assert_neq(sg_rd_u32(&r, &v), 0, "read past the end must fail");
    cr_assert(r.bad);
    sg_buf_free(&buf);
}

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

Test(files, write_atomic_replaces_and_leaves_no_temp) {
    char dir[] = "/tmp/sg_test_core_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/out.bin", dir);
    sg_err e;
    cr_assert_eq(sg_file_write_atomic(path, "first version", 13, &e), SG_OK, "%s", e.msg);
    cr_assert_eq(sg_file_write_atomic(path, "second", 6, &e), SG_OK, "%s", e.msg);
    uint8_t *d;
    size_t n;
    cr_assert_eq(sg_file_read_all(path, &d, &n, 1024, &e), SG_OK);
    cr_assert_eq(n, 6u);
    cr_assert_eq(memcmp(d, "second", 6), 0);
    cr_assert_eq(d[6], 0, "read_all appends a NUL");
    free(d);
    cr_assert_eq(count_entries(dir), 1, "temp file left behind");
    cr_assert_eq(sg_file_read_all(path, &d, &n, 3, &e), SG_ERR_LIMIT);
    cr_assert_eq(sg_file_write_atomic(path, "", 0, &e), SG_OK);
    cr_assert_eq(sg_file_read_all(path, &d, &n, 16, &e), SG_OK);
    cr_assert_eq(n, 0u);
    free(d);
    unlink(path);
    rmdir(dir);
}

Test(files, write_atomic_failure_reports_path) {
    sg_err e = {{0}};
    const char *p = "/nonexistent_sg_dir/sub/out.bin";
    cr_assert_eq(sg_file_write_atomic(p, "x", 1, &e), SG_ERR_IO);
    cr_assert_not_null(strstr(e.msg, "/nonexistent_sg_dir/sub/out.bin"), "%s", e.msg);
}

Test(files, mkdir_p_nested) {
    char dir[] = "/tmp/sg_test_mk_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/a/b/c", dir);
    sg_err e;
    cr_assert_eq(sg_mkdir_p(path, &e), SG_OK, "%s", e.msg);
    cr_assert_eq(sg_mkdir_p(path, &e), SG_OK, "idempotent");
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert(S_ISDIR(st.st_mode));
}

Test(status, strings_and_err) {
    cr_assert_str_eq(sg_status_str(SG_OK), "ok");
    cr_assert_str_eq(sg_status_str(SG_ERR_CHECKSUM), "checksum mismatch");
    sg_err e;
    cr_assert_eq(sg_err_set(&e, SG_ERR_FORMAT, "%s: bad %d", "f.bin", 3), SG_ERR_FORMAT);
    cr_assert_str_eq(e.msg, "f.bin: bad 3");
    cr_assert_eq(sg_err_set(NULL, SG_ERR_IO, "x"), SG_ERR_IO);
}
