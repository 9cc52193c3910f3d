/* fuzz_make_seeds.c — writes the seed corpora for the fuzz targets:
 *   fuzz_make_seeds OUT_DIR  ->  OUT_DIR/image/, shard/, engine/, classifier/
 * Images: small JPEGs (RGB, grey, progressive), PNGs of every colour type and
 * depth, PGM/PPM (8 and 16 bit). Shards: the same samples as .tar, .tar.zst
 * and .tar.gz, with .cls and .json labels. Engines: the tests' tiny one with
 * one convolution per stage (10 configuration values), a deeper one (11) and
 * an adapted one (12: the flags value, bit 0) and one also marked as trained
 * with batch-norm groups (bits 0 and 1); classifiers: what each synthesizes
 * for a task with images and for a text-only one. So the loaders' fuzzers
 * begin past the magic and the header. Manifests: manifest + registry +
 * shard index as fuzz_manifest_load reads them; data sets: registry +
 * labels.csv as fuzz_dataset_load reads them. */
#include "sg_io.h"
#include "sg_synth_fixtures.h" /* the tests' tiny engine configuration */

#include <jpeglib.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put(const char *dir, const char *name, const void *d, size_t n) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(d, 1, n, f) != n) {
        fprintf(stderr, "cannot write %s\n", p);
        exit(1);
    }
    fclose(f);
}

static void jpeg(int w, int h, int grey, int progressive, sg_buf *out) {
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
    jpeg_set_quality(&c, 75, TRUE);
    if (progressive) jpeg_simple_progression(&c);
    jpeg_start_compress(&c, TRUE);
    uint8_t row[3 * 64];
    while (c.next_scanline < c.image_height) {
        for (int x = 0; x < w * (grey ? 1 : 3); x++) row[x] = (uint8_t)(x * 5 + (int)c.next_scanline * 3);
        JSAMPROW rp = row;
        jpeg_write_scanlines(&c, &rp, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    sg_buf_append(out, buf, n);
    free(buf);
}

static void png_w(png_structp p, png_bytep d, png_size_t n) { sg_buf_append(png_get_io_ptr(p), d, n); }
static void png_f(png_structp p) { (void)p; }

static void png(int w, int h, int ct, int depth, int interlace, sg_buf *out) {
    png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(p);
    png_set_write_fn(p, out, png_w, png_f);
    png_set_IHDR(p, info, (png_uint_32)w, (png_uint_32)h, depth, ct,
                 interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (ct == PNG_COLOR_TYPE_PALETTE) {
        png_color pal[4] = {{0, 0, 0}, {255, 0, 0}, {0, 255, 0}, {0, 0, 255}};
        png_set_PLTE(p, info, pal, 4);
        png_byte trns[1] = {0};
        png_set_tRNS(p, info, trns, 1, NULL);
    }
    png_write_info(p, info);
    size_t rb = png_get_rowbytes(p, info);
    uint8_t *rows = calloc(rb * (size_t)h, 1);
    png_bytep *rp = malloc(sizeof(png_bytep) * (size_t)h);
    for (int y = 0; y < h; y++) {
        rp[y] = rows + rb * (size_t)y;
        for (size_t i = 0; i < rb; i++) rp[y][i] = ct == PNG_COLOR_TYPE_PALETTE ? (uint8_t)(i % 2 ? 0x1B : 0xE4)
                                                                                 : (uint8_t)(i * 9 + (size_t)y);
    }
    png_write_image(p, rp);
    png_write_end(p, info);
    png_destroy_write_struct(&p, &info);
    free(rows);
    free(rp);
}

static int model_seeds(const char *out) {
    char edir[1024], cdir[1024];
    snprintf(edir, sizeof edir, "%s/engine", out);
    snprintf(cdir, sizeof cdir, "%s/classifier", out);
    if (sg_mkdir_p(edir, NULL) != SG_OK || sg_mkdir_p(cdir, NULL) != SG_OK) return 1;
    sg_engine_config c = fx_tiny_config();
    int rc = 0;
    size_t ssz = (size_t)3 * c.store * c.store;
    uint8_t *pix = malloc(ssz * 4);
    for (size_t i = 0; i < ssz * 4; i++) pix[i] = (uint8_t)(i * 37 + i / 7);
    sg_task_class cls[2] = {{"a", "a small red disc", 2, pix}, {"b", "a large blue ring", 2, pix + 2 * ssz}};
    sg_task task = {2, cls};
    for (int k = 0; k < 4; k++) {
        sg_engine_config ck = c;
        if (k == 1) ck.convs[1] = 2;
        sg_engine *e = sg_engine_create(&ck, 7 + (uint64_t)k);
        sg_err err;
        e->bn_by_source = k == 3;
        if (k >= 2 && sg_engine_adapt_norm(e, 4, pix, 0.5f, &err) != SG_OK) {
            fprintf(stderr, "%s\n", err.msg);
            rc = 1;
        }
        sg_buf b = {0};
        sg_engine_serialize(e, &b);
        static const char *names[4] = {"plain.sgpe", "deep.sgpe", "adapted.sgpe", "grouped-adapted.sgpe"};
        put(edir, names[k], b.data, b.len);
        sg_buf_free(&b);
        for (int images = 0; images < 2; images++) {
            sg_synth_opts o;
            sg_synth_opts_default(&o);
            o.use_images = images;
            sg_classifier *cl;
            if (sg_engine_synthesize(e, &task, &o, &cl, &err) != SG_OK) {
                fprintf(stderr, "%s\n", err.msg);
                rc = 1;
                continue;
            }
            sg_buf cb = {0};
            sg_classifier_serialize(cl, &cb);
            char name[64];
            snprintf(name, sizeof name, "%s-%s.sgpm", names[k], images ? "images" : "text");
            put(cdir, name, cb.data, cb.len);
            sg_buf_free(&cb);
            sg_classifier_free(cl);
        }
        sg_engine_free(e);
    }
    free(pix);
    return rc;
}

/* Manifest seeds for fuzz_manifest_load: manifest, registry and shard index,
 * separated by NUL bytes (the fixture world's shapes: labels, open set,
 * reference class, brace patterns, an index, a bad task). */
static int manifest_seeds(const char *root) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/manifest", root);
    if (sg_mkdir_p(dir, NULL) != SG_OK) return 1;
    static const char reg[] =
        "{\"version\": 1, \"diseases\": ["
        " {\"id\": \"orpha:1\", \"name\": \"disease A\", \"codes\": {\"orpha\": \"ORPHA:1\", \"icd10\": \"Q00.1\"},"
        "  \"modality\": \"photo\", \"description\": \"a red round lesion\", \"exemplars\": [\"e/a0.png\", \"e/a1.jpg\"]},"
        " {\"id\": \"orpha:2\", \"name\": \"disease B\", \"description\": \"a green lesion\","
        "  \"exemplars\": [\"e/b0.png\", \"e/b1.png\", \"e/b2.png\"]},"
        " {\"id\": \"ref:normal\", \"name\": \"no finding\", \"exemplars\": [\"e/n0.png\", \"e/n1.png\", \"e/n2.png\"]}]}";
    static const char idx[] =
        "{\"format\": \"sgps-shards\", \"version\": 1, \"classes\": [\"a\", \"b\", \"n\"], \"shards\": ["
        "{\"path\": \"s/x-000000.tar.zst\", \"samples\": 10, \"bytes\": 100, \"sha256\": \"0000000000000000000000000000000000000000000000000000000000000000\"},"
        "{\"path\": \"s/x-000001.tar.zst\", \"samples\": 3, \"bytes\": 30, \"sha256\": \"0000000000000000000000000000000000000000000000000000000000000001\"}], \"total_samples\": 13}";
    static const char m0[] =
        "{\"version\": 1, \"engine\": \"engine.sgpe\", \"registry\": \"registry.json\", \"output\": \"run\","
        " \"seed\": 5, \"batch\": 16, \"bootstrap\": 2000, \"support_check\": false, \"tasks\": ["
        " {\"id\": \"diff3\", \"kind\": \"evaluate\", \"classes\": [\"orpha:1\", \"orpha:2\", \"ref:normal\"],"
        "  \"shots\": 2, \"text\": true, \"shards\": \"s/lab-{000000..000003}.tar\", \"threshold\": 0.5,"
        "  \"labels\": {\"0\": \"orpha:1\", \"1\": \"orpha:2\", \"2\": \"ref:normal\"}},"
        " {\"id\": \"a-vs-ref\", \"kind\": \"evaluate\", \"classes\": [\"orpha:1\", \"ref:normal\"],"
        "  \"reference\": \"ref:normal\", \"shots\": 1, \"text\": false, \"support_norm\": 0,"
        "  \"shards\": \"s/lab-{000000..000003}.tar\", \"threshold\": 0.4, \"labels\": {\"a\": 0, \"n\": 1}},"
        " {\"id\": \"open-eval\", \"kind\": \"evaluate\", \"classes\": [\"orpha:1\", \"orpha:2\"], \"shots\": 2,"
        "  \"shards\": \"s/lab-{0..10..5}.tar\", \"labels\": {\"a\": \"orpha:1\", \"b\": \"orpha:2\", \"n\": null},"
        "  \"open_set\": {\"reference\": \"s/ref-{a,b}.tar\", \"labels\": {\"0\": 0, \"1\": \"orpha:2\", \"2\": null}}},"
        " {\"id\": \"screen-b\", \"kind\": \"screen\", \"classes\": [\"orpha:2\", \"ref:normal\"],"
        "  \"reference\": \"ref:normal\", \"shots\": 3, \"shards\": \"s/cohort-{000000..000001}.tar.zst\","
        "  \"threshold\": 0.5, \"open_set\": {\"threshold\": 0.9}}]}";
    static const char m1[] =
        "{\"engine\": \"engine.sgpe\", \"registry\": \"registry.json\", \"output\": \"o\", \"tasks\": ["
        " {\"id\": \"idx\", \"kind\": \"evaluate\", \"classes\": [\"orpha:1\", \"orpha:2\", \"ref:normal\"],"
        "  \"shots\": 1, \"shards\": \"index.json\", \"labels\": {\"a\": 0, \"b\": 1, \"n\": 2},"
        "  \"open_set\": {\"reference\": \"index.json\", \"accept\": 0.9}},"
        " {\"id\": \"scr\", \"kind\": \"screen\", \"classes\": [\"orpha:1\", \"orpha:2\"], \"shots\": 2,"
        "  \"shards\": \"index.json\", \"open_set\": true}]}";
    static const char m2[] =
        "{\"version\": 2, \"engine\": \"missing.sgpe\", \"registry\": \"registry.json\", \"tasks\": ["
        " {\"id\": \"x\", \"classes\": [\"orpha:1\", \"orpha:9\"], \"shots\": 7, \"shards\": \"{1..2\"}]}";
    static const char *const man[3] = {m0, m1, m2};
    for (int i = 0; i < 3; i++) {
        sg_buf b = {0};
        sg_buf_append(&b, man[i], strlen(man[i]));
        sg_buf_append(&b, "", 1);
        sg_buf_append(&b, reg, strlen(reg));
        sg_buf_append(&b, "", 1);
        sg_buf_append(&b, idx, strlen(idx));
        char name[32];
        snprintf(name, sizeof name, "m%d.bin", i);
        put(dir, name, b.data, b.len);
        sg_buf_free(&b);
    }
    return 0;
}

/* Dataset seeds for fuzz_dataset_load: a class registry and a labels.csv
 * separated by a NUL byte (a.ppm is the one image that exists there). */
static int dataset_seeds(const char *root) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/dataset", root);
    if (sg_mkdir_p(dir, NULL) != SG_OK) return 1;
    static const char reg[] = "{\"diseases\": [{\"id\": \"set/mel\", \"description\": \"a dark irregular lesion\"},"
                              " {\"id\": \"set/nv\", \"description\": \"a round brown mole\"}]}";
    static const char csv[] = "path,label,site\na.ppm,mel,x\n\"a.ppm\",nv,\"y, z\"\nmissing.png,nv,\n,mel,\na.ppm,,\n";
    static const char csv2[] = "label,path\nnv,a.ppm\n";
    sg_buf b = {0};
    sg_buf_append(&b, reg, strlen(reg));
    sg_buf_append(&b, "", 1);
    sg_buf_append(&b, csv, strlen(csv));
    put(dir, "d0.bin", b.data, b.len);
    b.len = 0;
    static const char reg2[] = "{\"diseases\": [{\"id\": 1}]}";
    sg_buf_append(&b, reg2, strlen(reg2));
    sg_buf_append(&b, "", 1);
    sg_buf_append(&b, csv2, strlen(csv2));
    put(dir, "d1.bin", b.data, b.len);
    sg_buf_free(&b);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_make_seeds OUT_DIR\n");
        return 2;
    }
    char img[1024], shd[1024];
    snprintf(img, sizeof img, "%s/image", argv[1]);
    snprintf(shd, sizeof shd, "%s/shard", argv[1]);
    if (sg_mkdir_p(img, NULL) != SG_OK || sg_mkdir_p(shd, NULL) != SG_OK) return 1;
    sg_buf ims[16];
    const char *names[16];
    int n = 0;
    memset(ims, 0, sizeof ims);
    jpeg(24, 16, 0, 0, &ims[n]), names[n++] = "rgb.jpg";
    jpeg(17, 9, 1, 0, &ims[n]), names[n++] = "grey.jpg";
    jpeg(32, 32, 0, 1, &ims[n]), names[n++] = "prog.jpg";
    png(9, 7, PNG_COLOR_TYPE_GRAY, 8, 0, &ims[n]), names[n++] = "g8.png";
    png(9, 7, PNG_COLOR_TYPE_GRAY, 16, 0, &ims[n]), names[n++] = "g16.png";
    png(9, 7, PNG_COLOR_TYPE_GRAY, 1, 0, &ims[n]), names[n++] = "g1.png";
    png(9, 7, PNG_COLOR_TYPE_GRAY_ALPHA, 8, 0, &ims[n]), names[n++] = "ga8.png";
    png(9, 7, PNG_COLOR_TYPE_RGB, 8, 1, &ims[n]), names[n++] = "rgb8i.png";
    png(9, 7, PNG_COLOR_TYPE_RGB_ALPHA, 16, 0, &ims[n]), names[n++] = "rgba16.png";
    png(9, 7, PNG_COLOR_TYPE_PALETTE, 2, 0, &ims[n]), names[n++] = "pal2.png";
    sg_buf_printf(&ims[n], "P6\n# c\n3 2\n255\n");
    for (int i = 0; i < 18; i++) sg_buf_append(&ims[n], &(uint8_t){(uint8_t)(i * 13)}, 1);
    names[n++] = "rgb.ppm";
    sg_buf_printf(&ims[n], "P5 2 2 65535\n");
    for (int i = 0; i < 8; i++) sg_buf_append(&ims[n], &(uint8_t){(uint8_t)(i * 31)}, 1);
    names[n++] = "g16.pgm";
    for (int i = 0; i < n; i++) put(img, names[i], ims[i].data, ims[i].len);

    const char *kinds[3] = {"seed.tar", "seed.tar.zst", "seed.tar.gz"};
    for (int k = 0; k < 3; k++) {
        char p[1100];
        snprintf(p, sizeof p, "%s/%s", shd, kinds[k]);
        sg_err e;
        sg_shard_writer *w = sg_shard_writer_open(p, sg_compression_from_path(p), 0, &e);
        if (!w) {
            fprintf(stderr, "%s\n", e.msg);
            return 1;
        }
        for (int i = 0; i < n; i++) {
            char key[32], cls[8], js[64];
            snprintf(key, sizeof key, "d/s%02d", i);
            snprintf(cls, sizeof cls, "%d", i % 4);
            snprintf(js, sizeof js, "{\"label\":\"c%d\",\"site\":\"x\"}", i % 4);
            const char *ext = strrchr(names[i], '.') + 1;
            sg_member m[3] = {{ext, ims[i].data, ims[i].len}, {"cls", (const uint8_t *)cls, strlen(cls)},
                              {"json", (const uint8_t *)js, strlen(js)}};
            if (sg_shard_writer_add(w, key, m, 3, &e) != SG_OK) {
                fprintf(stderr, "%s\n", e.msg);
                return 1;
            }
        }
        if (sg_shard_writer_close(w, NULL, &e) != SG_OK) {
            fprintf(stderr, "%s\n", e.msg);
            return 1;
        }
        sg_shard_writer_free(w);
    }
    for (int i = 0; i < n; i++) sg_buf_free(&ims[i]);
    if (model_seeds(argv[1]) || manifest_seeds(argv[1]) || dataset_seeds(argv[1])) return 1;
    printf("seeds: %d images, 3 shards, 3 engines, 6 classifiers, 3 manifests, 2 data sets in %s\n", n, argv[1]);
    return 0;
}
