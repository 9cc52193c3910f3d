/* sg_pipeline_fixtures.h — a small world the pipeline tests generate
 * themselves: a tiny untrained engine, PNG/JPEG exemplars, a registry, WebDataset
 * shards written with the io writer (labelled and unlabelled), and a manifest
 * with an N-way evaluate task, a disease-vs-reference task with string labels
 * and a screening task. Options add faults: a truncated shard, a task whose
 * exemplar is corrupt; open_set adds labelled reference shards and open-set
 * tasks over the two diseases, where the third (blue) class is out of set.
 * Shared by the Criterion tests and sg_pipeline_fixture. */
#ifndef SG_PIPELINE_FIXTURES_H
#define SG_PIPELINE_FIXTURES_H

#include "sg_io.h"
#include "sg_synth.h"

#include <jpeglib.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct fxp_opts {
    int shards;          /* labelled shards (default 4) */
    int samples;         /* per shard (default 40) */
    int corrupt_shard;   /* index of a labelled shard to truncate, or -1 */
    int bad_exemplar;    /* 1: add a task whose disease has a corrupt exemplar */
    int batch;           /* manifest "batch" (default 16) */
    int open_set;        /* 1: reference shards shards/ref-00000{0,1}.tar and four open-set tasks */
} fxp_opts;

static inline void fxp_opts_default(fxp_opts *o) {
    o->shards = 4;
    o->samples = 40;
    o->corrupt_shard = -1;
    o->bad_exemplar = 0;
    o->batch = 16;
    o->open_set = 0;
}

static inline void fxp_png_write(png_structp p, png_bytep d, png_size_t n) {
    sg_buf_append((sg_buf *)png_get_io_ptr(p), d, n);
}
static inline void fxp_png_flush(png_structp p) { (void)p; }

/* rgb (h, w, 3) → PNG or JPEG bytes in *out (malloc'd). */
static inline void fxp_encode(int jpeg, int w, int h, const uint8_t *rgb, uint8_t **out, size_t *len) {
    if (jpeg) {
        struct jpeg_compress_struct c;
        struct jpeg_error_mgr e;
        c.err = jpeg_std_error(&e);
        jpeg_create_compress(&c);
        unsigned char *buf = NULL;
        unsigned long n = 0;
        jpeg_mem_dest(&c, &buf, &n);
        c.image_width = (JDIMENSION)w;
        c.image_height = (JDIMENSION)h;
        c.input_components = 3;
        c.in_color_space = JCS_RGB;
        jpeg_set_defaults(&c);
        jpeg_set_quality(&c, 90, TRUE);
        jpeg_start_compress(&c, TRUE);
        while (c.next_scanline < c.image_height) {
            JSAMPROW rp = (JSAMPROW)(rgb + (size_t)c.next_scanline * (size_t)w * 3);
            jpeg_write_scanlines(&c, &rp, 1);
        }
        jpeg_finish_compress(&c);
        jpeg_destroy_compress(&c);
        *out = malloc(n);
        memcpy(*out, buf, n);
        free(buf);
        *len = n;
        return;
    }
    png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(p);
    sg_buf b = {0};
    png_set_write_fn(p, &b, fxp_png_write, fxp_png_flush);
    png_set_IHDR(p, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(p, info);
    for (int y = 0; y < h; y++) png_write_row(p, (png_bytep)(rgb + (size_t)y * (size_t)w * 3));
    png_write_end(p, info);
    png_destroy_write_struct(&p, &info);
    *out = b.data;
    *len = b.len;
}

/* A 24×24 image of class c (0, 1, 2): a coloured blob on a noisy background. */
static inline void fxp_image(int c, uint64_t seed, int jpeg, uint8_t **out, size_t *len) {
    enum { S = 24 };
    static const uint8_t col[3][3] = {{220, 60, 50}, {50, 200, 80}, {90, 90, 210}};
    uint8_t rgb[S * S * 3];
    sg_rng r;
    sg_rng_seed(&r, seed);
    int cx = 6 + (int)sg_rng_below(&r, 12), cy = 6 + (int)sg_rng_below(&r, 12), rad = 3 + (int)sg_rng_below(&r, 4);
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            int in = (x - cx) * (x - cx) + (y - cy) * (y - cy) <= rad * rad;
            for (int k = 0; k < 3; k++) {
                int v = in ? col[c % 3][k] : 120;
                v += (int)sg_rng_below(&r, 41) - 20;
                rgb[(y * S + x) * 3 + k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    fxp_encode(jpeg, S, S, rgb, out, len);
}

static inline void fxp_write(const char *path, const void *d, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(d, 1, n, f) != n) abort();
    fclose(f);
}

static inline char *fxp_path(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static inline sg_engine_config fxp_engine_config(void) {
    sg_engine_config c;
    sg_engine_config_default(&c);
    c.img = 16;
    c.store = 18;
    c.width = 8;
    c.stages = 2;
    c.rank = 2;
    c.text_buckets = 256;
    c.text_dim = 8;
    c.text_hidden = 8;
    c.code_dim = 4;
    c.n_base_classes = 3;
    return c;
}

static inline void fxp_write_shard(const char *path, int shard, int samples, int labelled) {
    sg_err err;
    sg_shard_writer *w = sg_shard_writer_open(path, sg_compression_from_path(path), 0, &err);
    if (!w) {
        fprintf(stderr, "%s\n", err.msg);
        abort();
    }
    static const char *const names[3] = {"a", "b", "n"};
    for (int i = 0; i < samples; i++) {
        int c = (i * 7 + shard) % 3;
        uint8_t *img;
        size_t len;
        fxp_image(c, (uint64_t)(shard * 1000 + i + 1), (i % 3) == 0, &img, &len);
        char key[64], cls[8], js[64];
        snprintf(key, sizeof key, "s%02d/img%04d", shard, i);
        snprintf(cls, sizeof cls, "%d", c);
        snprintf(js, sizeof js, "{\"label\": \"%s\"}", names[c]);
        sg_member m[3] = {{(i % 3) == 0 ? "jpg" : "png", img, len}, {"cls", (const uint8_t *)cls, strlen(cls)},
                          {"json", (const uint8_t *)js, strlen(js)}};
        if (sg_shard_writer_add(w, key, m, labelled ? 3 : 1, &err) != SG_OK) {
            fprintf(stderr, "%s\n", err.msg);
            abort();
        }
        free(img);
    }
    if (sg_shard_writer_close(w, NULL, &err) != SG_OK) {
        fprintf(stderr, "%s\n", err.msg);
        abort();
    }
    sg_shard_writer_free(w);
}

/* Builds the world in dir (which exists). Writes dir/manifest.json. */
static inline void fxp_make_world(const char *dir, const fxp_opts *o) {
    char sub[4096];
    snprintf(sub, sizeof sub, "%s/exemplars", dir);
    mkdir(sub, 0755);
    snprintf(sub, sizeof sub, "%s/shards", dir);
    mkdir(sub, 0755);
    sg_engine_config cfg = fxp_engine_config();
    sg_engine *e = sg_engine_create(&cfg, 7);
    sg_err err;
    char *p = fxp_path(dir, "engine.sgpe");
    if (sg_engine_save(e, p, &err) != SG_OK) abort();
    free(p);
    sg_engine_free(e);
    /* exemplars: 3 per disease, PNG and JPEG */
    for (int c = 0; c < 3; c++)
        for (int k = 0; k < 3; k++) {
            uint8_t *img;
            size_t len;
            fxp_image(c, (uint64_t)(900000 + c * 10 + k), k == 1, &img, &len);
            char name[64];
            snprintf(name, sizeof name, "exemplars/d%d-%d.%s", c, k, k == 1 ? "jpg" : "png");
            p = fxp_path(dir, name);
            fxp_write(p, img, len);
            free(p);
            free(img);
        }
    p = fxp_path(dir, "exemplars/broken.png");
    fxp_write(p, "\x89PNG\r\n\x1a\nnot really", 18);
    free(p);
    const char *reg =
        "{\"version\": 1, \"diseases\": [\n"
        " {\"id\": \"orpha:1\", \"name\": \"disease A\", \"codes\": {\"orpha\": \"ORPHA:1\", \"icd10\": \"Q00.1\"},"
        "  \"modality\": \"photo\", \"description\": \"a red round lesion on grey skin\","
        "  \"exemplars\": [\"exemplars/d0-0.png\", \"exemplars/d0-1.jpg\", \"exemplars/d0-2.png\"]},\n"
        " {\"id\": \"orpha:2\", \"name\": \"disease B\", \"codes\": {\"orpha\": \"ORPHA:2\"}, \"modality\": \"photo\","
        "  \"description\": \"a green round lesion\","
        "  \"exemplars\": [\"exemplars/d1-0.png\", \"exemplars/d1-1.jpg\", \"exemplars/d1-2.png\"]},\n"
        " {\"id\": \"ref:normal\", \"name\": \"no finding\", \"modality\": \"photo\","
        "  \"description\": \"normal skin with a bluish mark\","
        "  \"exemplars\": [\"exemplars/d2-0.png\", \"exemplars/d2-1.jpg\", \"exemplars/d2-2.png\"]},\n"
        " {\"id\": \"orpha:9\", \"name\": \"disease with a broken exemplar\", \"description\": \"x\","
        "  \"exemplars\": [\"exemplars/broken.png\"]}\n"
        "]}\n";
    p = fxp_path(dir, "registry.json");
    fxp_write(p, reg, strlen(reg));
    free(p);
    for (int s = 0; s < o->shards; s++) {
        char name[64];
        snprintf(name, sizeof name, "shards/lab-%06d.tar", s);
        p = fxp_path(dir, name);
        fxp_write_shard(p, s, o->samples, 1);
        if (s == o->corrupt_shard) {
            struct stat st;
            if (stat(p, &st) != 0 || truncate(p, st.st_size / 2) != 0) abort();
        }
        free(p);
    }
    for (int s = 0; s < 2; s++) {
        char name[64];
        snprintf(name, sizeof name, "shards/cohort-%06d.tar.zst", s);
        p = fxp_path(dir, name);
        fxp_write_shard(p, 50 + s, o->samples, 0);
        free(p);
    }
    sg_buf m = {0};
    sg_buf_printf(&m,
                  "{\n  \"version\": 1,\n  \"engine\": \"engine.sgpe\",\n  \"registry\": \"registry.json\",\n"
                  "  \"output\": \"run\",\n  \"seed\": 5,\n  \"batch\": %d,\n  \"tasks\": [\n"
                  "    {\"id\": \"diff3\", \"kind\": \"evaluate\", \"classes\": [\"orpha:1\", \"orpha:2\", \"ref:normal\"],"
                  " \"shots\": 2, \"text\": true, \"shards\": \"shards/lab-{000000..%06d}.tar\", \"threshold\": 0.5,"
                  " \"labels\": {\"0\": \"orpha:1\", \"1\": \"orpha:2\", \"2\": \"ref:normal\"}},\n"
                  "    {\"id\": \"a-vs-ref\", \"kind\": \"evaluate\", \"classes\": [\"orpha:1\", \"ref:normal\"],"
                  " \"reference\": \"ref:normal\", \"shots\": 1, \"text\": false,"
                  " \"shards\": \"shards/lab-{000000..%06d}.tar\", \"threshold\": 0.4, \"labels\": {\"a\": 0, \"n\": 1}},\n"
                  "    {\"id\": \"screen-b\", \"kind\": \"screen\", \"classes\": [\"orpha:2\", \"ref:normal\"],"
                  " \"reference\": \"ref:normal\", \"shots\": 3, \"shards\": \"shards/cohort-{000000..000001}.tar.zst\","
                  " \"threshold\": 0.5}%s\n",
                  o->batch, o->shards - 1, o->shards - 1, o->bad_exemplar || o->open_set ? "," : "");
    if (o->bad_exemplar)
        sg_buf_printf(&m, "    {\"id\": \"broken\", \"kind\": \"evaluate\", \"classes\": [\"orpha:9\", \"ref:normal\"],"
                          " \"shots\": 1, \"shards\": \"shards/lab-{000000..000001}.tar\"}%s\n",
                      o->open_set ? "," : "");
    if (o->open_set) {
        for (int s = 0; s < 2; s++) {
            char name[64];
            snprintf(name, sizeof name, "shards/ref-%06d.tar", s);
            p = fxp_path(dir, name);
            fxp_write_shard(p, 70 + s, o->samples, 1);
            free(p);
        }
        /* labels: .json string "a"/"b"/"n" on the evaluated shards, .cls 0/1/2 on the reference */
        sg_buf_printf(&m,
                      "    {\"id\": \"open-eval\", \"kind\": \"evaluate\", \"classes\": [\"orpha:1\", \"orpha:2\"],"
                      " \"shots\": 2, \"shards\": \"shards/lab-{000000..%06d}.tar\","
                      " \"labels\": {\"a\": \"orpha:1\", \"b\": \"orpha:2\", \"n\": null},"
                      " \"open_set\": {\"reference\": \"shards/ref-{000000..000001}.tar\","
                      " \"labels\": {\"0\": 0, \"1\": \"orpha:2\", \"2\": null}}},\n"
                      "    {\"id\": \"open-screen\", \"kind\": \"screen\", \"classes\": [\"orpha:1\", \"orpha:2\"],"
                      " \"shots\": 2, \"shards\": \"shards/cohort-{000000..000001}.tar.zst\", \"threshold\": 0.5,"
                      " \"open_set\": {\"reference\": \"shards/ref-000000.tar\", \"accept\": 0.9}},\n"
                      "    {\"id\": \"open-default\", \"kind\": \"evaluate\", \"classes\": [\"orpha:1\", \"orpha:2\"],"
                      " \"shots\": 2, \"shards\": \"shards/lab-{000000..%06d}.tar\","
                      " \"labels\": {\"a\": \"orpha:1\", \"b\": \"orpha:2\", \"n\": null}, \"open_set\": true},\n"
                      "    {\"id\": \"open-fixed\", \"kind\": \"screen\", \"classes\": [\"orpha:1\", \"orpha:2\"],"
                      " \"shots\": 2, \"shards\": \"shards/cohort-{000000..000001}.tar.zst\", \"open_set\": {\"threshold\": 0.9}}\n",
                      o->shards - 1, o->shards - 1);
    }
    sg_buf_printf(&m, "  ]\n}\n");
    p = fxp_path(dir, "manifest.json");
    fxp_write(p, m.data, m.len);
    free(p);
    sg_buf_free(&m);
}

#endif
