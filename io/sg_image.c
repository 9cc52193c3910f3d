/* sg_image.c — decoding JPEG (libjpeg-turbo), PNG (libpng) and binary PGM/PPM
 * into 8-bit RGB, and resizing + normalizing into planar float tensors.
 *
 * Every decoder reads the dimensions first and refuses images above the pixel
 * limit before any pixel buffer is allocated (decompression bombs). Library
 * errors longjmp back into the decoder that set them up, so a corrupt image
 * returns SG_ERR_FORMAT and never aborts the process. JPEG warnings that mean
 * damaged data (premature end, corrupt entropy data, bad progression) count as
 * errors: a truncated file must not become a grey image that silently enters
 * an evaluation. Other warnings (an unknown JFIF revision, a bad ICC marker,
 * an unknown Adobe transform) leave the pixels intact and are ignored. */
#include "sg_io.h"

#include <jpeglib.h>
#include <jerror.h> /* after jpeglib.h: the JWRN_* codes */
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

/* Progressive JPEGs with thousands of scans take quadratic time: cap them. */
#define SG_JPEG_MAX_SCANS 256

sg_image_limits sg_image_limits_default(void) {
    sg_image_limits l = {SG_IMAGE_DEFAULT_MAX_PIXELS};
    return l;
}

void sg_image_free(sg_image *img) {
    if (!img) return;
    free(img->rgb);
    img->rgb = NULL;
    img->w = img->h = 0;
}

sg_image_format sg_image_detect(const uint8_t *d, size_t n) {
    if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return SG_IMAGE_JPEG;
    if (n >= 8 && memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0) return SG_IMAGE_PNG;
    if (n >= 3 && d[0] == 'P' && (d[1] == '5' || d[1] == '6') &&
        (d[2] == ' ' || d[2] == '\n' || d[2] == '\r' || d[2] == '\t' || d[2] == '#'))
        return SG_IMAGE_PNM;
    return SG_IMAGE_UNKNOWN;
}

const char *sg_image_format_ext(const uint8_t *d, size_t n) {
    switch (sg_image_detect(d, n)) {
    case SG_IMAGE_JPEG: return "jpg";
    case SG_IMAGE_PNG: return "png";
    case SG_IMAGE_PNM: return d[1] == '5' ? "pgm" : "ppm";
    default: return NULL;
    }
}

static const char *nm(const char *name) { return name ? name : "image"; }

static sg_status check_dims(uint64_t w, uint64_t h, const char *name, const sg_image_limits *lim, sg_err *err) {
    if (w == 0 || h == 0) return sg_err_set(err, SG_ERR_FORMAT, "%s: empty image (%llux%llu)", nm(name),
                                            (unsigned long long)w, (unsigned long long)h);
    if (w > INT32_MAX / 4 || h > INT32_MAX / 4 || w * h > lim->max_pixels)
        return sg_err_set(err, SG_ERR_LIMIT, "%s: %llux%llu pixels is above the limit of %llu", nm(name),
                          (unsigned long long)w, (unsigned long long)h, (unsigned long long)lim->max_pixels);
    return SG_OK;
}

/* ---- JPEG ---------------------------------------------------------------- */

typedef struct jpeg_guard {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
    int bad; /* a warning that means damaged data */
} jpeg_guard;

static void jpeg_on_error(j_common_ptr c) {
    jpeg_guard *g = (jpeg_guard *)c->err;
    c->err->format_message(c, g->msg);
    longjmp(g->jb, 1);
}

static int jpeg_warning_is_damage(int code) {
    switch (code) {
    case JWRN_JPEG_EOF:
    case JWRN_HIT_MARKER:
    case JWRN_MUST_RESYNC:
    case JWRN_HUFF_BAD_CODE:
#if JPEG_LIB_VERSION >= 70 || defined(D_ARITH_CODING_SUPPORTED)
    case JWRN_ARITH_BAD_CODE:
#endif
    case JWRN_EXTRANEOUS_DATA:
    case JWRN_BOGUS_PROGRESSION:
    case JWRN_NOT_SEQUENTIAL: return 1;
    default: return 0;
    }
}

static void jpeg_on_message(j_common_ptr c, int level) {
    jpeg_guard *g = (jpeg_guard *)c->err;
    if (level < 0 && !g->bad && jpeg_warning_is_damage(c->err->msg_code)) {
        g->bad = 1;
        c->err->format_message(c, g->msg);
    }
}

typedef struct jpeg_scan_guard {
    struct jpeg_progress_mgr pub;
} jpeg_scan_guard;

static void jpeg_on_progress(j_common_ptr c) {
    if (!c->is_decompressor) return;
    j_decompress_ptr d = (j_decompress_ptr)c;
    if (d->input_scan_number > SG_JPEG_MAX_SCANS) {
        jpeg_guard *g = (jpeg_guard *)c->err;
        snprintf(g->msg, sizeof g->msg, "more than %d progressive scans", SG_JPEG_MAX_SCANS);
        longjmp(g->jb, 1);
    }
}

static sg_status decode_jpeg(const uint8_t *data, size_t len, const char *name, const sg_image_limits *lim, int min_w,
                             int min_h, sg_image *out, sg_err *err) {
    struct jpeg_decompress_struct c;
    jpeg_guard g;
    jpeg_scan_guard pg;
    uint8_t *volatile rgb = NULL;
    uint8_t *volatile row = NULL;
    memset(&g, 0, sizeof g);
    c.err = jpeg_std_error(&g.pub);
    g.pub.error_exit = jpeg_on_error;
    g.pub.emit_message = jpeg_on_message;
    if (setjmp(g.jb)) {
        jpeg_destroy_decompress(&c);
        free(rgb);
        free(row);
        return sg_err_set(err, SG_ERR_FORMAT, "%s: corrupt JPEG: %s", nm(name), g.msg);
    }
    jpeg_create_decompress(&c);
    memset(&pg, 0, sizeof pg);
    pg.pub.progress_monitor = jpeg_on_progress;
    c.progress = &pg.pub;
    jpeg_mem_src(&c, data, (unsigned long)len);
    jpeg_read_header(&c, TRUE);
    sg_status s = check_dims(c.image_width, c.image_height, name, lim, err);
    if (s != SG_OK) {
        jpeg_destroy_decompress(&c);
        return s;
    }
    int cmyk = c.jpeg_color_space == JCS_CMYK || c.jpeg_color_space == JCS_YCCK;
    c.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    c.scale_num = 1;
    c.scale_denom = 1;
    if (min_w > 0 || min_h > 0) {
        for (unsigned d = 8; d >= 2; d /= 2) {
            uint64_t sw = (c.image_width + d - 1) / d, sh = (c.image_height + d - 1) / d;
            if (sw >= (uint64_t)min_w && sh >= (uint64_t)min_h) {
                c.scale_denom = d;
                break;
            }
        }
    }
    jpeg_start_decompress(&c);
    int w = (int)c.output_width, h = (int)c.output_height, nc = c.output_components;
    if (w <= 0 || h <= 0 || (nc != 3 && nc != 4)) longjmp(g.jb, 1);
    rgb = malloc((size_t)w * (size_t)h * 3);
    row = malloc((size_t)w * (size_t)nc);
    if (!rgb || !row) {
        jpeg_destroy_decompress(&c);
        free(rgb);
        free(row);
        return sg_err_set(err, SG_ERR_NOMEM, "%s: out of memory for %dx%d pixels", nm(name), w, h);
    }
    while (c.output_scanline < c.output_height) {
        unsigned y = c.output_scanline;
        if (nc == 3) {
            JSAMPROW rp = rgb + (size_t)y * (size_t)w * 3;
            if (jpeg_read_scanlines(&c, &rp, 1) != 1) break;
        } else {
            JSAMPROW rp = row;
            if (jpeg_read_scanlines(&c, &rp, 1) != 1) break;
            uint8_t *o = rgb + (size_t)y * (size_t)w * 3;
            /* Adobe CMYK JPEGs store inverted values: R = C*K/255. */
            for (int x = 0; x < w; x++) {
                unsigned k = row[4 * x + 3];
                for (int ch = 0; ch < 3; ch++) o[3 * x + ch] = (uint8_t)((row[4 * x + ch] * k + 127) / 255);
            }
        }
        if (g.bad) break;
    }
    if (!g.bad && c.output_scanline == c.output_height) jpeg_finish_decompress(&c);
    int complete = c.output_scanline == c.output_height;
    jpeg_destroy_decompress(&c);
    free(row);
    if (g.bad || !complete) {
        free(rgb);
        return sg_err_set(err, SG_ERR_FORMAT, "%s: corrupt JPEG: %s", nm(name), g.bad ? g.msg : "short read");
    }
    out->w = w;
    out->h = h;
    out->rgb = rgb;
    return SG_OK;
}

/* ---- PNG ----------------------------------------------------------------- */

typedef struct png_src {
    const uint8_t *p;
    size_t len, pos;
    char msg[256];
} png_src;

static void png_read_mem(png_structp png, png_bytep dst, png_size_t n) {
    png_src *s = png_get_io_ptr(png);
    if (n > s->len - s->pos) png_error(png, "truncated data");
    memcpy(dst, s->p + s->pos, n);
    s->pos += n;
}

static void png_on_error(png_structp png, png_const_charp msg) {
    png_src *s = png_get_error_ptr(png);
    snprintf(s->msg, sizeof s->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

static sg_status decode_png(const uint8_t *data, size_t len, const char *name, const sg_image_limits *lim,
                            sg_image *out, sg_err *err) {
    png_src src = {data, len, 0, "unknown error"};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_on_error, png_on_warning);
    if (!png) return sg_err_set(err, SG_ERR_NOMEM, "%s: cannot create PNG reader", nm(name));
    png_infop info = png_create_info_struct(png);
    uint8_t *volatile rgb = NULL;
    png_bytep *volatile rows = NULL;
    if (!info || setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, info ? &info : NULL, NULL);
        free(rgb);
        free(rows);
        return sg_err_set(err, SG_ERR_FORMAT, "%s: corrupt PNG: %s", nm(name), src.msg);
    }
    png_set_read_fn(png, &src, png_read_mem);
    /* Our own pixel limit is the one that counts; raise libpng's defaults. */
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    png_set_chunk_cache_max(png, 1000);
    png_set_chunk_malloc_max(png, 8u << 20);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    sg_status s = check_dims(w, h, name, lim, err);
    if (s != SG_OK) {
        png_destroy_read_struct(&png, &info, NULL);
        return s;
    }
    int ct = png_get_color_type(png, info);
    if (png_get_bit_depth(png, info) == 16) png_set_scale_16(png);
    if (ct == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (ct == PNG_COLOR_TYPE_GRAY || ct == PNG_COLOR_TYPE_GRAY_ALPHA) {
        png_set_expand_gray_1_2_4_to_8(png);
        png_set_gray_to_rgb(png);
    }
    png_set_strip_alpha(png); /* also drops tRNS alpha that the palette expansion made */
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_channels(png, info) != 3 || png_get_bit_depth(png, info) != 8 ||
        png_get_rowbytes(png, info) != (size_t)w * 3)
        png_error(png, "unexpected layout after transforms");
    rgb = malloc((size_t)w * h * 3);
    rows = malloc(sizeof(png_bytep) * h);
    if (!rgb || !rows) png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < h; y++) rows[y] = rgb + (size_t)y * w * 3;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    out->w = (int)w;
    out->h = (int)h;
    out->rgb = rgb;
    return SG_OK;
}

/* ---- PGM / PPM ------------------------------------------------------------ */

/* Reads one header number, skipping whitespace and # comments. */
static int pnm_num(const uint8_t *d, size_t n, size_t *pos, uint64_t *v) {
    size_t p = *pos;
    for (;;) {
        while (p < n && (d[p] == ' ' || d[p] == '\t' || d[p] == '\n' || d[p] == '\r' || d[p] == '\v' || d[p] == '\f'))
            p++;
        if (p < n && d[p] == '#') {
            while (p < n && d[p] != '\n' && d[p] != '\r') p++;
            continue;
        }
        break;
    }
    if (p >= n || d[p] < '0' || d[p] > '9') return 0;
    uint64_t x = 0;
    while (p < n && d[p] >= '0' && d[p] <= '9') {
        x = x * 10 + (uint64_t)(d[p] - '0');
        if (x > 0xFFFFFFFFull) return 0;
        p++;
    }
    *v = x;
    *pos = p;
    return 1;
}

static sg_status decode_pnm(const uint8_t *d, size_t n, const char *name, const sg_image_limits *lim, sg_image *out,
                            sg_err *err) {
    int ch = d[1] == '6' ? 3 : 1;
    size_t pos = 2;
    uint64_t w, h, maxval;
    if (!pnm_num(d, n, &pos, &w) || !pnm_num(d, n, &pos, &h) || !pnm_num(d, n, &pos, &maxval))
        return sg_err_set(err, SG_ERR_FORMAT, "%s: corrupt PNM header", nm(name));
    if (maxval < 1 || maxval > 65535) return sg_err_set(err, SG_ERR_FORMAT, "%s: PNM maxval %llu out of range",
                                                        nm(name), (unsigned long long)maxval);
    sg_status s = check_dims(w, h, name, lim, err);
    if (s != SG_OK) return s;
    if (pos >= n) return sg_err_set(err, SG_ERR_FORMAT, "%s: truncated PNM", nm(name));
    pos++; /* the single whitespace after maxval */
    size_t bps = maxval > 255 ? 2 : 1;
    size_t need = (size_t)w * (size_t)h * (size_t)ch * bps;
    if (n - pos < need)
        return sg_err_set(err, SG_ERR_FORMAT, "%s: truncated PNM: %zu of %zu pixel bytes", nm(name), n - pos, need);
    uint8_t *rgb = malloc((size_t)w * (size_t)h * 3);
    if (!rgb) return sg_err_set(err, SG_ERR_NOMEM, "%s: out of memory", nm(name));
    const uint8_t *p = d + pos;
    size_t np = (size_t)w * (size_t)h;
    for (size_t i = 0; i < np; i++) {
        for (int c = 0; c < 3; c++) {
            size_t k = i * (size_t)ch + (ch == 3 ? (size_t)c : 0);
            uint32_t v = bps == 2 ? ((uint32_t)p[2 * k] << 8 | p[2 * k + 1]) : p[k];
            if (v > maxval) v = (uint32_t)maxval;
            rgb[3 * i + (size_t)c] = maxval == 255 ? (uint8_t)v : (uint8_t)((v * 255u + (uint32_t)maxval / 2) / maxval);
        }
    }
    out->w = (int)w;
    out->h = (int)h;
    out->rgb = rgb;
    return SG_OK;
}

/* ---- entry points --------------------------------------------------------- */

sg_status sg_image_decode_hint(const uint8_t *data, size_t len, const char *name, const sg_image_limits *lim,
                               int min_w, int min_h, sg_image *out, sg_err *err) {
    SG_ASSERT(out);
    SG_ASSERT(data || len == 0);
    memset(out, 0, sizeof *out);
    sg_image_limits dl = sg_image_limits_default();
    if (!lim) lim = &dl;
    switch (sg_image_detect(data, len)) {
    case SG_IMAGE_JPEG: return decode_jpeg(data, len, name, lim, min_w, min_h, out, err);
    case SG_IMAGE_PNG: return decode_png(data, len, name, lim, out, err);
    case SG_IMAGE_PNM: return decode_pnm(data, len, name, lim, out, err);
    default:
        return sg_err_set(err, SG_ERR_UNSUPPORTED, "%s: not a JPEG, PNG or binary PGM/PPM image", nm(name));
    }
}

sg_status sg_image_decode(const uint8_t *data, size_t len, const char *name, const sg_image_limits *lim,
                          sg_image *out, sg_err *err) {
    return sg_image_decode_hint(data, len, name, lim, 0, 0, out, err);
}

sg_status sg_image_load_file(const char *path, const sg_image_limits *lim, sg_image *out, sg_err *err) {
    uint8_t *d;
    size_t n;
    memset(out, 0, sizeof *out);
    sg_status s = sg_file_read_all(path, &d, &n, (size_t)1 << 30, err);
    if (s != SG_OK) return s;
    s = sg_image_decode(d, n, path, lim, out, err);
    free(d);
    return s;
}

/* ---- resize + normalize ---------------------------------------------------- */

/* Resampling along one axis as a band matrix with a fixed number of taps:
 * output o reads src[first[o] .. first[o] + span) with weights w[o * span ..],
 * zero where a tap lies outside the output's footprint. A fixed span keeps
 * the inner loops branch-free. */
typedef struct axis_map {
    int *first;
    float *w; /* (n_out, span) */
    int span;
} axis_map;

static void axis_build(axis_map *m, int n_in, int n_out) {
    m->first = sg_xmalloc(sizeof(int) * (size_t)n_out);
    if (n_out < n_in) {
        /* Area averaging: output o covers [o*s, (o+1)*s) of the input. */
        double s = (double)n_in / n_out;
        m->span = (int)s + 2;
        if (m->span > n_in) m->span = n_in;
        m->w = sg_xcalloc((size_t)n_out * (size_t)m->span, sizeof(float));
        for (int o = 0; o < n_out; o++) {
            double a = o * s, b = (o + 1) * s;
            int i0 = (int)a, i1 = (int)b;
            if (i1 >= n_in) i1 = n_in - 1;
            int f = i0 + m->span > n_in ? n_in - m->span : i0;
            m->first[o] = f;
            SG_ASSERT(i1 - f < m->span);
            for (int i = i0; i <= i1; i++) {
                double lo = a > i ? a : i, hi = b < i + 1 ? b : i + 1;
                m->w[(size_t)o * (size_t)m->span + (size_t)(i - f)] = hi > lo ? (float)((hi - lo) / s) : 0.f;
            }
        }
    } else if (n_out > n_in) {
        /* Bilinear with half-pixel centres, clamped at the edges. */
        m->span = n_in >= 2 ? 2 : 1;
        m->w = sg_xcalloc((size_t)n_out * (size_t)m->span, sizeof(float));
        double s = (double)n_in / n_out;
        for (int o = 0; o < n_out; o++) {
            double x = (o + 0.5) * s - 0.5;
            if (x < 0) x = 0;
            if (x > n_in - 1) x = n_in - 1;
            int i0 = (int)x;
            if (m->span == 1) {
                m->first[o] = 0;
                m->w[o] = 1.f;
            } else if (i0 >= n_in - 1) {
                m->first[o] = n_in - 2;
                m->w[(size_t)o * 2 + 1] = 1.f;
            } else {
                float f = (float)(x - i0);
                m->first[o] = i0;
                m->w[(size_t)o * 2] = 1.f - f;
                m->w[(size_t)o * 2 + 1] = f;
            }
        }
    } else {
        m->span = 1;
        m->w = sg_xmalloc(sizeof(float) * (size_t)n_out);
        for (int o = 0; o < n_out; o++) {
            m->first[o] = o;
            m->w[o] = 1.f;
        }
    }
}

static void axis_free(axis_map *m) {
    free(m->first);
    free(m->w);
}

/* acc = w * row and acc += w * row, in blocks of 8 written out so that -O2's
 * straight-line (SLP) vectorizer turns each block into SIMD. */
static void row_scale(float *restrict acc, const uint8_t *restrict r, float w, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        acc[i + 0] = w * (float)r[i + 0];
        acc[i + 1] = w * (float)r[i + 1];
        acc[i + 2] = w * (float)r[i + 2];
        acc[i + 3] = w * (float)r[i + 3];
        acc[i + 4] = w * (float)r[i + 4];
        acc[i + 5] = w * (float)r[i + 5];
        acc[i + 6] = w * (float)r[i + 6];
        acc[i + 7] = w * (float)r[i + 7];
    }
    for (; i < n; i++) acc[i] = w * (float)r[i];
}

static void row_axpy(float *restrict acc, const uint8_t *restrict r, float w, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        acc[i + 0] += w * (float)r[i + 0];
        acc[i + 1] += w * (float)r[i + 1];
        acc[i + 2] += w * (float)r[i + 2];
        acc[i + 3] += w * (float)r[i + 3];
        acc[i + 4] += w * (float)r[i + 4];
        acc[i + 5] += w * (float)r[i + 5];
        acc[i + 6] += w * (float)r[i + 6];
        acc[i + 7] += w * (float)r[i + 7];
    }
    for (; i < n; i++) acc[i] += w * (float)r[i];
}

void sg_image_to_tensor(const sg_image *img, int out_h, int out_w, const float mean[3], const float std[3],
                        float *restrict out) {
    SG_ASSERT(img && img->rgb && img->w > 0 && img->h > 0);
    SG_ASSERT(out_h > 0 && out_w > 0 && out);
    const int iw = img->w, ih = img->h;
    axis_map mx, my;
    axis_build(&mx, iw, out_w);
    axis_build(&my, ih, out_h);
    float sc[3], sh[3];
    for (int c = 0; c < 3; c++) {
        sc[c] = 1.f / (255.f * std[c]);
        sh[c] = -mean[c] / std[c];
    }
    const size_t rowlen = (size_t)iw * 3, plane = (size_t)out_h * (size_t)out_w;
    const int spx = mx.span;
    /* Vertical first: one output row from `span` contiguous input rows (this
     * is the vectorizable part), then horizontal taps into planar CHW. */
    float *restrict acc = sg_xmalloc(sizeof(float) * rowlen);
    for (int oy = 0; oy < out_h; oy++) {
        const float *wy = my.w + (size_t)oy * (size_t)my.span;
        const uint8_t *restrict r0 = img->rgb + (size_t)my.first[oy] * rowlen;
        row_scale(acc, r0, wy[0], rowlen);
        for (int k = 1; k < my.span; k++)
            if (wy[k] != 0.f) row_axpy(acc, r0 + (size_t)k * rowlen, wy[k], rowlen);
        float *restrict o0 = out + (size_t)oy * (size_t)out_w;
        float *restrict o1 = o0 + plane;
        float *restrict o2 = o1 + plane;
        for (int ox = 0; ox < out_w; ox++) {
            const float *wx = mx.w + (size_t)ox * (size_t)spx;
            const float *p = acc + (size_t)mx.first[ox] * 3;
            float r = 0, g = 0, b = 0;
            for (int k = 0; k < spx; k++) {
                r += wx[k] * p[3 * k];
                g += wx[k] * p[3 * k + 1];
                b += wx[k] * p[3 * k + 2];
            }
            o0[ox] = r * sc[0] + sh[0];
            o1[ox] = g * sc[1] + sh[1];
            o2[ox] = b * sc[2] + sh[2];
        }
    }
    free(acc);
    axis_free(&mx);
    axis_free(&my);
}

sg_status sg_image_load_u8_planar(const char *path, int side, uint8_t *out, sg_err *err) {
    uint8_t *data;
    size_t len;
    sg_status s = sg_file_read_all(path, &data, &len, (size_t)1 << 30, err);
    if (s != SG_OK) return s;
    s = sg_image_decode_u8_planar(data, len, path, side, out, err);
    free(data);
    return s;
}

sg_status sg_image_decode_u8_planar(const uint8_t *data, size_t len, const char *name, int side, uint8_t *out,
                                    sg_err *err) {
    sg_image im;
    sg_image_limits lim = sg_image_limits_default();
    sg_status s = sg_image_decode_hint(data, len, name, &lim, side, side, &im, err);
    if (s != SG_OK) return s;
    static const float zero[3] = {0, 0, 0}, unit[3] = {1.0f / 255, 1.0f / 255, 1.0f / 255};
    float *t = sg_xalloc_floats((size_t)3 * side * side);
    sg_image_to_tensor(&im, side, side, zero, unit, t);
    for (size_t i = 0; i < (size_t)3 * side * side; i++) {
        float v = t[i] + 0.5f;
        out[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
    free(t);
    sg_image_free(&im);
    return SG_OK;
}
