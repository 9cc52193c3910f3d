/* test_classifier.c — the .sgpm classifier file: byte-exact round trip, equal
 * forward outputs after loading, and one test per refusal (status, file name
 * and reason in the message). */
#include "sg_model.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A fresh folder per test (Criterion runs tests in parallel processes). */
static void tmp_path(char *out, size_t n, const char *file) {
    char dir[] = "/tmp/sg_test_clf_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    snprintf(out, n, "%s/%s", dir, file);
}

/* Conv(8, 3×3, bias) → BN → ReLU → maxpool 2 → conv(6, 1×1, stride 2) → affine → SiLU
 * → avgpool 2 → GAP → linear 3. Input 3×12×12. */
static sg_classifier *make_classifier(uint64_t seed) {
    sg_arch a;
    sg_arch_init(&a, 3, 12, 12);
    sg_arch_add_conv(&a, 8, 3, 1, 1, 1);
    sg_arch_add_batchnorm(&a);
    sg_arch_add_relu(&a);
    sg_arch_add_maxpool(&a, 2, 2);
    sg_arch_add_conv(&a, 6, 1, 2, 0, 0);
    sg_arch_add_affine(&a);
    sg_arch_add_silu(&a);
    sg_arch_add_avgpool(&a, 2, 1);
    sg_arch_add_gap(&a);
    sg_arch_add_linear(&a, 3, 1);
    sg_rng r;
    sg_rng_seed(&r, seed);
    float *p = sg_xalloc_floats(a.n_params), *s = sg_xalloc_floats(a.n_state);
    sg_arch_init_params(&a, p, &r);
    for (size_t i = 0; i < a.n_params; i++) p[i] += 0.1f * sg_rng_normal(&r);
    for (size_t i = 0; i < a.n_state; i++) s[i] = 0.5f + sg_rng_uniform(&r);
    const float mean[3] = {0.5f, 0.4f, 0.3f}, sd[3] = {0.2f, 0.25f, 0.3f};
    const char *names[3] = {"melanoma", "nevus", "keratosis"};
    sg_classifier *c = sg_classifier_create(&a, mean, sd, 3, names, p, s);
    c->meta_json = sg_xstrdup("{\"task\":\"t1\"}");
    free(p);
    free(s);
    return c;
}

static void write_bytes(const char *path, const uint8_t *d, size_t n) {
    sg_err e;
    cr_assert_eq(sg_file_write_atomic(path, d, n, &e), SG_OK, "%s", e.msg);
}

/* Serializes the reference classifier, lets `edit` change the bytes, then
 * optionally re-seals the CRC, writes it and loads it, expecting `want`. */
static void expect_refusal(void (*edit)(sg_buf *b), int reseal, sg_status want, const char *reason) {
    char path[256];
    tmp_path(path, sizeof path, "broken.sgpm");
    sg_classifier *c = make_classifier(7);
    sg_buf b = {0};
    sg_classifier_serialize(c, &b);
    sg_classifier_free(c);
    edit(&b);
    if (reseal && b.len >= 4) sg_put_u32le(b.data + b.len - 4, sg_crc32(0, b.data, b.len - 4));
    write_bytes(path, b.data, b.len);
    sg_buf_free(&b);
    sg_err e = {{0}};
    sg_classifier *got = (sg_classifier *)1;
    sg_status s = sg_classifier_load(path, &got, &e);
    cr_assert_eq(s, want, "status %d (%s), want %d: %s", s, sg_status_str(s), want, e.msg);
    cr_assert_null(got);
    cr_assert_not_null(strstr(e.msg, path), "message lacks the file name: %s", e.msg);
    cr_assert_not_null(strstr(e.msg, reason), "message lacks '%s': %s", reason, e.msg);
    unlink(path);
}

/* Offsets: header 28 bytes, then 7 u32 per layer. */
static size_t layer_field(int layer, int field) { return 28 + (size_t)layer * 28 + (size_t)field * 4; }

Test(classifier, round_trip_bytes_and_outputs) {
    char p1[256], p2[256];
    tmp_path(p1, sizeof p1, "a.sgpm");
    tmp_path(p2, sizeof p2, "b.sgpm");
    sg_classifier *c = make_classifier(1);
    sg_err e;
    cr_assert_eq(sg_classifier_save(c, p1, &e), SG_OK, "%s", e.msg);
    sg_classifier *d = NULL;
    cr_assert_eq(sg_classifier_load(p1, &d, &e), SG_OK, "%s", e.msg);
    cr_assert_eq(sg_classifier_save(d, p2, &e), SG_OK, "%s", e.msg);
    uint8_t *b1, *b2;
    size_t n1, n2;
    cr_assert_eq(sg_file_read_all(p1, &b1, &n1, 1 << 24, &e), SG_OK);
    cr_assert_eq(sg_file_read_all(p2, &b2, &n2, 1 << 24, &e), SG_OK);
    cr_assert_eq(n1, n2);
    cr_assert_eq(memcmp(b1, b2, n1), 0, "bytes differ after save → load → save");

    cr_assert_eq(d->n_classes, 3);
    cr_assert_str_eq(d->class_names[1], "nevus");
    cr_assert_str_eq(d->meta_json, "{\"task\":\"t1\"}");
    cr_assert_eq(d->arch.n_layers, c->arch.n_layers);
    cr_assert_eq(d->arch.n_params, c->arch.n_params);
    cr_assert_eq(d->std[2], 0.3f);

    const int n = 4;
    size_t in = 3 * 12 * 12;
    float *x = sg_xalloc_floats(n * in);
    sg_rng r;
    sg_rng_seed(&r, 3);
    for (size_t i = 0; i < n * in; i++) x[i] = sg_rng_normal(&r);
    sg_ctx *k1 = sg_ctx_create(&c->arch, n), *k2 = sg_ctx_create(&d->arch, n);
    const float *y1 = sg_net_forward(&c->arch, k1, c->params, c->state, x, n, 0);
    const float *y2 = sg_net_forward(&d->arch, k2, d->params, d->state, x, n, 0);
    for (int i = 0; i < n * 3; i++) cr_assert_eq(y1[i], y2[i], "output %d: %g vs %g", i, y1[i], y2[i]);
    sg_ctx_free(k1);
    sg_ctx_free(k2);
    free(x);
    free(b1);
    free(b2);
    sg_classifier_free(c);
    sg_classifier_free(d);
    unlink(p1);
    unlink(p2);
}

Test(classifier, serialize_without_meta_and_defaults) {
    sg_arch a;
    sg_arch_conv4(&a, 3, 16, 4, 2, SG_LAYER_AFFINE, 2);
    float *p = sg_xalloc_floats(a.n_params);
    const float m[3] = {0, 0, 0}, s[3] = {1, 1, 1};
    sg_classifier *c = sg_classifier_create(&a, m, s, 2, NULL, p, NULL);
    sg_buf b = {0};
    sg_classifier_serialize(c, &b);
    sg_classifier *d = NULL;
    sg_err e;
    cr_assert_eq(sg_classifier_deserialize(b.data, b.len, "mem", &d, &e), SG_OK, "%s", e.msg);
    cr_assert_null(d->meta_json);
    cr_assert_str_eq(d->class_names[0], "class0");
    sg_classifier_free(c);
    sg_classifier_free(d);
    sg_buf_free(&b);
    free(p);
}

static void edit_magic(sg_buf *b) { memcpy(b->data, "PK\3\4", 4); }
Test(classifier, refuses_wrong_magic) { expect_refusal(edit_magic, 0, SG_ERR_FORMAT, "magic"); }

static void edit_version(sg_buf *b) { sg_put_u32le(b->data + 4, SG_SGPM_VERSION + 1); }
Test(classifier, refuses_newer_version) { expect_refusal(edit_version, 1, SG_ERR_VERSION, "newer"); }

static void edit_truncate(sg_buf *b) { b->len -= 37; }
Test(classifier, refuses_truncation) { expect_refusal(edit_truncate, 0, SG_ERR_FORMAT, "truncated"); }

static void edit_truncate_header(sg_buf *b) { b->len = 40; }
Test(classifier, refuses_truncated_header) { expect_refusal(edit_truncate_header, 0, SG_ERR_FORMAT, "truncated"); }

static void edit_flip(sg_buf *b) { b->data[b->len - 100] ^= 0x10; }
Test(classifier, refuses_checksum_mismatch) { expect_refusal(edit_flip, 0, SG_ERR_CHECKSUM, "checksum"); }

static void edit_trailing(sg_buf *b) { sg_buf_u32(b, 0); }
Test(classifier, refuses_trailing_bytes) { expect_refusal(edit_trailing, 0, SG_ERR_FORMAT, "unexpected bytes"); }

/* The last float before n_state (u64), the state and the CRC is a linear bias. */
static void edit_nan(sg_buf *b) {
    size_t n_state = 2 * 8;
    sg_put_f32le(b->data + b->len - 4 - 4 * n_state - 8 - 4, NAN);
}
Test(classifier, refuses_nonfinite_weights) { expect_refusal(edit_nan, 1, SG_ERR_NONFINITE, "non-finite"); }

Test(classifier, refuses_nonfinite_from_saved_nan) {
    char path[256];
    tmp_path(path, sizeof path, "nan.sgpm");
    sg_classifier *c = make_classifier(2);
    c->params[5] = INFINITY;
    sg_err e;
    cr_assert_eq(sg_classifier_save(c, path, &e), SG_OK);
    sg_classifier *d = NULL;
    cr_assert_eq(sg_classifier_load(path, &d, &e), SG_ERR_NONFINITE);
    cr_assert_not_null(strstr(e.msg, path));
    cr_assert_not_null(strstr(e.msg, "non-finite"));
    sg_classifier_free(c);
    unlink(path);
}

static void edit_cout(sg_buf *b) { sg_put_u32le(b->data + layer_field(0, 2), 9); }
Test(classifier, refuses_inconsistent_channels) {
    expect_refusal(edit_cout, 1, SG_ERR_FORMAT, "inconsistent architecture");
}

static void edit_kernel(sg_buf *b) { sg_put_u32le(b->data + layer_field(0, 3), 99); }
Test(classifier, refuses_kernel_out_of_range) { expect_refusal(edit_kernel, 1, SG_ERR_FORMAT, "out of range"); }

static void edit_stride0(sg_buf *b) { sg_put_u32le(b->data + layer_field(3, 4), 0); }
Test(classifier, refuses_zero_stride) { expect_refusal(edit_stride0, 1, SG_ERR_FORMAT, "out of range"); }

static void edit_kind(sg_buf *b) { sg_put_u32le(b->data + layer_field(2, 0), 77); }
Test(classifier, refuses_unknown_layer_kind) { expect_refusal(edit_kind, 1, SG_ERR_FORMAT, "unknown layer kind"); }

static void edit_nlayers(sg_buf *b) { sg_put_u32le(b->data + 24, 1000); }
Test(classifier, refuses_too_many_layers) { expect_refusal(edit_nlayers, 1, SG_ERR_FORMAT, "layers"); }

static void edit_input(sg_buf *b) { sg_put_u32le(b->data + 16, 0); }
Test(classifier, refuses_zero_input_size) { expect_refusal(edit_input, 1, SG_ERR_FORMAT, "inconsistent architecture"); }

/* One input channel: classifiers read RGB images, three planes. */
static void edit_in_c(sg_buf *b) { sg_put_u32le(b->data + 12, 1); }
Test(classifier, refuses_other_than_three_input_channels) {
    expect_refusal(edit_in_c, 1, SG_ERR_FORMAT, "3 channels");
}

/* 1024 × 1024 input into a first convolution of 4096 channels: 4 G values per
 * image, refused before anything that size is allocated. */
static void edit_huge_activation(sg_buf *b) {
    sg_put_u32le(b->data + 16, 1024);
    sg_put_u32le(b->data + 20, 1024);
    sg_put_u32le(b->data + layer_field(0, 2), 4096);
}
Test(classifier, refuses_huge_activations) {
    expect_refusal(edit_huge_activation, 1, SG_ERR_FORMAT, "output too large");
}

/* An input side beyond 1024 px. */
static void edit_input_side(sg_buf *b) { sg_put_u32le(b->data + 20, 8192); }
Test(classifier, refuses_input_side_out_of_range) { expect_refusal(edit_input_side, 1, SG_ERR_FORMAT, "1..1024 px"); }

/* A 2-output head under 3 stored class names. */
static void edit_classes(sg_buf *b) { sg_put_u32le(b->data + layer_field(9, 2), 2); }
Test(classifier, refuses_class_count_mismatch) {
    expect_refusal(edit_classes, 1, SG_ERR_FORMAT, "inconsistent architecture");
}

static void edit_bias_flag(sg_buf *b) { sg_put_u32le(b->data + layer_field(4, 6), 1); }
Test(classifier, refuses_param_count_mismatch) {
    expect_refusal(edit_bias_flag, 1, SG_ERR_FORMAT, "inconsistent architecture");
}

/* A class name over the limit: saving refuses it (nothing is written that
 * loading would refuse), and a file holding one is refused for that reason. */
Test(classifier, long_class_name_refused_on_save_and_load) {
    char path[256];
    tmp_path(path, sizeof path, "long.sgpm");
    sg_classifier *c = make_classifier(5);
    free(c->class_names[1]);
    c->class_names[1] = sg_xmalloc(SG_MAX_NAME + 2);
    memset(c->class_names[1], 'n', SG_MAX_NAME + 1);
    c->class_names[1][SG_MAX_NAME + 1] = 0;
    sg_err e = {{0}};
    cr_assert_eq(sg_classifier_save(c, path, &e), SG_ERR_ARG);
    cr_assert_not_null(strstr(e.msg, "longer than 256 bytes"), "%s", e.msg);
    cr_assert_eq(access(path, F_OK), -1, "a refused classifier was written");
    sg_buf b = {0};
    sg_classifier_serialize(c, &b);
    write_bytes(path, b.data, b.len);
    sg_classifier *d = (sg_classifier *)1;
    cr_assert_eq(sg_classifier_load(path, &d, &e), SG_ERR_FORMAT);
    cr_assert_null(d);
    cr_assert_not_null(strstr(e.msg, "class name 1 is longer than 256 bytes"), "%s", e.msg);
    c->class_names[1][SG_MAX_NAME] = 0; /* exactly the limit: kept */
    cr_assert_eq(sg_classifier_save(c, path, &e), SG_OK, "%s", e.msg);
    cr_assert_eq(sg_classifier_load(path, &d, &e), SG_OK, "%s", e.msg);
    cr_assert_str_eq(d->class_names[1], c->class_names[1]);
    sg_classifier_free(d);
    sg_buf_free(&b);
    sg_classifier_free(c);
    unlink(path);
}

Test(classifier, missing_file_is_io_error) {
    sg_classifier *d = NULL;
    sg_err e;
    cr_assert_eq(sg_classifier_load("/nonexistent/x.sgpm", &d, &e), SG_ERR_IO);
    cr_assert_not_null(strstr(e.msg, "/nonexistent/x.sgpm"));
}

/* Every prefix of a valid file is refused without crashing. */
Test(classifier, every_prefix_is_refused) {
    sg_classifier *c = make_classifier(4);
    sg_buf b = {0};
    sg_classifier_serialize(c, &b);
    for (size_t n = 0; n < b.len; n += (n < 400 ? 1 : 97)) {
        sg_classifier *d = NULL;
        sg_err e;
        cr_assert_neq(sg_classifier_deserialize(b.data, n, "prefix", &d, &e), SG_OK, "prefix %zu accepted", n);
        cr_assert_null(d);
    }
    sg_buf_free(&b);
    sg_classifier_free(c);
}
