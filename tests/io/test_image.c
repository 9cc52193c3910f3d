/* test_image.c — image decoding (JPEG, PNG variants, PGM/PPM), the pixel
 * limit, corrupt inputs, DCT-scaled decoding and resize + normalize. */
#include "sg_io_fixtures.h"

#include <criterion/criterion.h>
#include <math.h>

static const float zero3[3] = {0, 0, 0}, one3[3] = {1, 1, 1};

Test(io, jpeg_rgb_roundtrip_close) {
    uint8_t *j;
    size_t n;
    fx_jpeg(40, 24, 0, 98, &j, &n);
    sg_image im;
    sg_err e;
    cr_assert_eq(sg_image_decode(j, n, "t.jpg", NULL, &im, &e), SG_OK, "%s", e.msg);
    cr_assert_eq(im.w, 40);
    cr_assert_eq(im.h, 24);
    double err = 0;
    for (int y = 0; y < 24; y++)
        for (int x = 0; x < 40; x++)
            for (int c = 0; c < 3; c++) err += fabs((double)im.rgb[(y * 40 + x) * 3 + c] - fx_pix(x, y, c));
    cr_assert_lt(err / (40 * 24 * 3), 6.0, "mean abs error %f", err / (40 * 24 * 3));
    sg_image_free(&im);
    cr_assert_null(im.rgb);
    free(j);
}

Test(io, jpeg_grey_replicated) {
    uint8_t *j;
    size_t n;
    fx_jpeg(16, 16, 1, 95, &j, &n);
    sg_image im;
    cr_assert_eq(sg_image_decode(j, n, NULL, NULL, &im, NULL), SG_OK);
    for (int i = 0; i < 256; i++) {
        cr_assert_eq(im.rgb[3 * i], im.rgb[3 * i + 1]);
        cr_assert_eq(im.rgb[3 * i], im.rgb[3 * i + 2]);
    }
    sg_image_free(&im);
    free(j);
}

Test(io, jpeg_dct_scaling_hint) {
    uint8_t *j;
    size_t n;
    fx_jpeg(256, 200, 0, 90, &j, &n);
    sg_image im;
    cr_assert_eq(sg_image_decode_hint(j, n, NULL, NULL, 64, 48, &im, NULL), SG_OK);
    cr_assert_eq(im.w, 64); /* 1/4 scale: 64x50 >= 64x48 */
    cr_assert_eq(im.h, 50);
    sg_image_free(&im);
    cr_assert_eq(sg_image_decode_hint(j, n, NULL, NULL, 65, 48, &im, NULL), SG_OK);
    cr_assert_eq(im.w, 128); /* 1/4 would be too small */
    sg_image_free(&im);
    cr_assert_eq(sg_image_decode_hint(j, n, NULL, NULL, 0, 0, &im, NULL), SG_OK);
    cr_assert_eq(im.w, 256);
    sg_image_free(&im);
    free(j);
}

static void check_png(int ct, int depth) {
    uint8_t *p;
    size_t n;
    fx_png(19, 7, ct, depth, &p, &n);
    sg_image im;
    sg_err e;
    cr_assert_eq(sg_image_decode(p, n, "t.png", NULL, &im, &e), SG_OK, "ct %d depth %d: %s", ct, depth, e.msg);
    cr_assert_eq(im.w, 19);
    cr_assert_eq(im.h, 7);
    for (int y = 0; y < 7; y++)
        for (int x = 0; x < 19; x++)
            for (int c = 0; c < 3; c++) {
                int want;
                if (ct == PNG_COLOR_TYPE_PALETTE) {
                    int i = x % 16;
                    if (depth < 8) i &= (1 << depth) - 1;
                    want = c == 0 ? i * 16 : c == 1 ? 255 - i * 16 : i;
                } else {
                    want = fx_pix(x, y, (ct & PNG_COLOR_MASK_COLOR) ? c : 0);
                }
                cr_assert_eq(im.rgb[(y * 19 + x) * 3 + c], want, "ct %d depth %d at %d,%d,%d", ct, depth, x, y, c);
            }
    sg_image_free(&im);
    free(p);
}

Test(io, png_all_colour_types) {
    check_png(PNG_COLOR_TYPE_GRAY, 8);
    check_png(PNG_COLOR_TYPE_GRAY, 16);
    check_png(PNG_COLOR_TYPE_GRAY_ALPHA, 8);
    check_png(PNG_COLOR_TYPE_GRAY_ALPHA, 16);
    check_png(PNG_COLOR_TYPE_RGB, 8);
    check_png(PNG_COLOR_TYPE_RGB, 16);
    check_png(PNG_COLOR_TYPE_RGB_ALPHA, 8);
    check_png(PNG_COLOR_TYPE_RGB_ALPHA, 16);
    check_png(PNG_COLOR_TYPE_PALETTE, 8);
    check_png(PNG_COLOR_TYPE_PALETTE, 4);
}

Test(io, pnm_p5_p6_and_16bit) {
    const char p6[] = "P6\n# comment\n2 1\n255\n\x01\x02\x03\xff\x80\x00";
    sg_image im;
    cr_assert_eq(sg_image_decode((const uint8_t *)p6, sizeof p6 - 1, NULL, NULL, &im, NULL), SG_OK);
    cr_assert_eq(im.w, 2);
    cr_assert_eq(im.rgb[0], 1);
    cr_assert_eq(im.rgb[3], 255);
    cr_assert_eq(im.rgb[4], 128);
    sg_image_free(&im);
    const char p5[] = "P5 2 1 65535\n\xff\xff\x80\x00";
    cr_assert_eq(sg_image_decode((const uint8_t *)p5, sizeof p5 - 1, NULL, NULL, &im, NULL), SG_OK);
    cr_assert_eq(im.rgb[0], 255);
    cr_assert_eq(im.rgb[2], 255);
    cr_assert_eq(im.rgb[3], 128);
    cr_assert_eq(im.rgb[5], 128);
    sg_image_free(&im);
    const char p5s[] = "P5 2 2 255\n\x01\x02\x03"; /* one byte short */
    cr_assert_eq(sg_image_decode((const uint8_t *)p5s, sizeof p5s - 1, NULL, NULL, &im, NULL), SG_ERR_FORMAT);
    cr_assert_null(im.rgb);
}

Test(io, pixel_limit_rejects_from_header) {
    /* A PNG header claiming 100000 x 100000 (10 Gpx) with no pixel data:
     * must be refused before any allocation with SG_ERR_LIMIT. */
    uint8_t *p;
    size_t n;
    fx_png(4, 4, PNG_COLOR_TYPE_RGB, 8, &p, &n);
    /* IHDR data starts at byte 16: width, height (big-endian), then CRC at 29. */
    const uint32_t big = 100000;
    for (int k = 0; k < 2; k++)
        for (int b = 0; b < 4; b++) p[16 + 4 * k + b] = (uint8_t)(big >> (24 - 8 * b));
    uint32_t crc = sg_crc32(0, p + 12, 17);
    for (int b = 0; b < 4; b++) p[29 + b] = (uint8_t)(crc >> (24 - 8 * b));
    sg_image im;
    sg_err e;
    cr_assert_eq(sg_image_decode(p, n, "bomb.png", NULL, &im, &e), SG_ERR_LIMIT, "%s", e.msg);
    cr_assert(strstr(e.msg, "bomb.png"));
    free(p);
    /* JPEG: patch the SOF0 dimensions to 60000 x 60000. */
    uint8_t *j;
    fx_jpeg(8, 8, 0, 90, &j, &n);
    size_t i = 2;
    while (i + 9 < n && !(j[i] == 0xFF && j[i + 1] == 0xC0)) i++;
    cr_assert_lt(i + 9, n);
    j[i + 5] = 0xEA, j[i + 6] = 0x60, j[i + 7] = 0xEA, j[i + 8] = 0x60;
    cr_assert_eq(sg_image_decode(j, n, "bomb.jpg", NULL, &im, &e), SG_ERR_LIMIT, "%s", e.msg);
    /* A configurable limit: 8x8 = 64 px refused at max 63 px. */
    free(j);
    fx_jpeg(8, 8, 0, 90, &j, &n);
    sg_image_limits lim = {63};
    cr_assert_eq(sg_image_decode(j, n, NULL, &lim, &im, NULL), SG_ERR_LIMIT);
    lim.max_pixels = 64;
    cr_assert_eq(sg_image_decode(j, n, NULL, &lim, &im, NULL), SG_OK);
    sg_image_free(&im);
    const char pbomb[] = "P6 100000 100000 255\n";
    cr_assert_eq(sg_image_decode((const uint8_t *)pbomb, sizeof pbomb - 1, NULL, NULL, &im, NULL), SG_ERR_LIMIT);
    free(j);
}

Test(io, corrupt_jpeg_rejected) {
    uint8_t *j;
    size_t n;
    fx_jpeg(64, 64, 0, 90, &j, &n);
    sg_image im;
    sg_err e;
    /* truncated in the entropy-coded data */
    cr_assert_eq(sg_image_decode(j, n / 2, "trunc.jpg", NULL, &im, &e), SG_ERR_FORMAT);
    cr_assert(strstr(e.msg, "trunc.jpg"), "%s", e.msg);
    cr_assert_null(im.rgb);
    /* header cut short */
    cr_assert_eq(sg_image_decode(j, 40, "short.jpg", NULL, &im, &e), SG_ERR_FORMAT);
    /* garbage in the quantization tables / huffman tables */
    for (size_t i = 20; i < 200 && i < n; i++) j[i] ^= 0x5A;
    cr_assert_neq(sg_image_decode(j, n, "garbled.jpg", NULL, &im, &e), SG_OK);
    cr_assert_null(im.rgb);
    free(j);
}

/* A libjpeg warning that does not mean damaged data (here an unknown JFIF
 * revision) does not make an undamaged JPEG corrupt. */
Test(io, jpeg_harmless_warning_accepted) {
    uint8_t *j;
    size_t n;
    fx_jpeg(16, 16, 0, 90, &j, &n);
    cr_assert(n > 12 && memcmp(j + 6, "JFIF", 5) == 0);
    j[11] = 2; /* JFIF major version 2: JWRN_JFIF_MAJOR */
    sg_image im;
    sg_err e;
    cr_assert_eq(sg_image_decode(j, n, "jfif2.jpg", NULL, &im, &e), SG_OK, "%s", e.msg);
    cr_assert_eq(im.w, 16);
    sg_image_free(&im);
    /* still damaged when cut short */
    cr_assert_eq(sg_image_decode(j, n - 20, "jfif2-trunc.jpg", NULL, &im, &e), SG_ERR_FORMAT);
    free(j);
}

Test(io, corrupt_png_rejected) {
    uint8_t *p;
    size_t n;
    fx_png(32, 32, PNG_COLOR_TYPE_RGB, 8, &p, &n);
    sg_image im;
    sg_err e;
    cr_assert_eq(sg_image_decode(p, n - 20, "trunc.png", NULL, &im, &e), SG_ERR_FORMAT);
    cr_assert(strstr(e.msg, "trunc.png"), "%s", e.msg);
    p[40] ^= 0xFF; /* inside IDAT: CRC mismatch */
    cr_assert_eq(sg_image_decode(p, n, "crc.png", NULL, &im, &e), SG_ERR_FORMAT);
    cr_assert_null(im.rgb);
    free(p);
    const uint8_t junk[] = "not an image at all";
    cr_assert_eq(sg_image_decode(junk, sizeof junk, "x", NULL, &im, &e), SG_ERR_UNSUPPORTED);
    cr_assert_eq(sg_image_decode(junk, 0, "x", NULL, &im, &e), SG_ERR_UNSUPPORTED);
}

Test(io, resize_area_average_exact) {
    /* 4x2 -> 2x1: each output is the mean of a 2x2 block. */
    uint8_t px[4 * 2 * 3];
    for (int i = 0; i < 8; i++) px[3 * i] = px[3 * i + 1] = px[3 * i + 2] = (uint8_t)(i * 10);
    sg_image im = {4, 2, px};
    float out[3 * 2];
    sg_image_to_tensor(&im, 1, 2, zero3, one3, out);
    /* left block: 0,10,40,50 -> 25; right: 20,30,60,70 -> 45 */
    cr_assert_float_eq(out[0], 25.f / 255, 1e-5);
    cr_assert_float_eq(out[1], 45.f / 255, 1e-5);
    cr_assert_float_eq(out[2], 25.f / 255, 1e-5); /* G plane */
    /* non-integer ratio 3 -> 2: out0 = (p0 + 0.5 p1) / 1.5 */
    uint8_t q[3 * 3] = {0, 0, 0, 90, 90, 90, 180, 180, 180};
    sg_image im3 = {3, 1, q};
    float o3[3 * 2];
    sg_image_to_tensor(&im3, 1, 2, zero3, one3, o3);
    cr_assert_float_eq(o3[0] * 255, 30.f, 1e-3);
    cr_assert_float_eq(o3[1] * 255, 150.f, 1e-3);
}

Test(io, resize_bilinear_and_normalize) {
    /* 2x1 -> 4x1 bilinear, half-pixel centres: 0,100 -> 0,25,75,100 */
    uint8_t px[6] = {0, 0, 0, 100, 100, 100};
    sg_image im = {2, 1, px};
    float out[3 * 4];
    sg_image_to_tensor(&im, 1, 4, zero3, one3, out);
    const float want[4] = {0, 25, 75, 100};
    for (int i = 0; i < 4; i++) cr_assert_float_eq(out[i] * 255, want[i], 1e-3, "x=%d: %f", i, out[i] * 255);
    /* normalization: (v/255 - mean) / std per channel, planar layout */
    uint8_t c[3] = {255, 0, 51};
    sg_image one = {1, 1, c};
    const float mean[3] = {0.5f, 0.25f, 0.2f}, sd[3] = {0.5f, 0.25f, 0.1f};
    float o[3 * 2 * 2];
    sg_image_to_tensor(&one, 2, 2, mean, sd, o);
    for (int i = 0; i < 4; i++) {
        cr_assert_float_eq(o[i], 1.f, 1e-5);
        cr_assert_float_eq(o[4 + i], -1.f, 1e-5);
        cr_assert_float_eq(o[8 + i], 0.f, 1e-5);
    }
}

Test(io, resize_constant_image_stays_constant) {
    int w = 113, h = 71;
    uint8_t *px = malloc((size_t)w * h * 3);
    memset(px, 77, (size_t)w * h * 3);
    sg_image im = {w, h, px};
    float *o = malloc(sizeof(float) * 3 * 64 * 64);
    sg_image_to_tensor(&im, 64, 64, zero3, one3, o); /* shrink x, shrink y */
    for (int i = 0; i < 3 * 64 * 64; i++) cr_assert_float_eq(o[i] * 255, 77.f, 1e-3);
    float *o2 = malloc(sizeof(float) * 3 * 100 * 150);
    sg_image_to_tensor(&im, 100, 150, zero3, one3, o2); /* enlarge both */
    for (int i = 0; i < 3 * 100 * 150; i++) cr_assert_float_eq(o2[i] * 255, 77.f, 1e-3);
    free(o);
    free(o2);
    free(px);
}

Test(io, load_file_names_missing_file) {
    sg_image im;
    sg_err e;
    cr_assert_eq(sg_image_load_file("/nonexistent/x.png", NULL, &im, &e), SG_ERR_IO);
    cr_assert(strstr(e.msg, "/nonexistent/x.png"));
}
