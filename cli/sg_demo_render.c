/* sg_demo_render.c — renders one dermoscopy-like lesion image from its
 * attributes (sg_cli_demo.h) and encodes it as PNG with libpng.
 *
 * The attributes decide what a clinician would name: outline (a radius as a
 * function of angle, or a bar), border sharpness and notching, one or two
 * colours (the second in blotches from smooth value noise), an internal
 * pattern drawn in a contrasting shade, lesion size and skin tone. Everything
 * else is nuisance, drawn per image so no single image shows "the" disease:
 * position, rotation, scale and colour jitter, a skin texture, an
 * illumination gradient, a dark dermoscope vignette, hairs and sensor noise.
 * Coordinates are in units of the image side, so every size renders the
 * same scene. */
#include "sg_cli_demo.h"

#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#define PI_F 3.14159265f

static const float colour_rgb[8][3] = {
    {0.55f, 0.34f, 0.18f}, /* brown */
    {0.30f, 0.17f, 0.09f}, /* dark brown */
    {0.07f, 0.06f, 0.07f}, /* black */
    {0.80f, 0.14f, 0.14f}, /* red */
    {0.95f, 0.46f, 0.62f}, /* pink */
    {0.42f, 0.50f, 0.66f}, /* blue-grey */
    {0.92f, 0.80f, 0.25f}, /* yellow */
    {0.98f, 0.97f, 0.95f}, /* white */
};
static const float background_rgb[4][3] = {
    {0.94f, 0.85f, 0.78f}, /* pale */
    {0.93f, 0.70f, 0.68f}, /* pink */
    {0.78f, 0.60f, 0.42f}, /* tan */
    {0.42f, 0.28f, 0.20f}, /* dark */
};
static const float size_radius[3] = {0.12f, 0.19f, 0.27f}; /* small, medium, large: fraction of the side */

/* Smooth value noise on a G×G grid of random values, sampled at (u, v) in [0, 1]. */
#define NOISE_G 6
typedef struct value_noise {
    float g[NOISE_G][NOISE_G];
} value_noise;

static void noise_init(value_noise *n, sg_rng *r) {
    for (int i = 0; i < NOISE_G; i++)
        for (int j = 0; j < NOISE_G; j++) n->g[i][j] = sg_rng_uniform(r);
}

static float smooth(float t) { return t * t * (3 - 2 * t); }

static float noise_at(const value_noise *n, float u, float v) {
    float x = fminf(fmaxf(u, 0.0f), 0.9999f) * (NOISE_G - 1), y = fminf(fmaxf(v, 0.0f), 0.9999f) * (NOISE_G - 1);
    int i = (int)x, j = (int)y;
    float fx = smooth(x - (float)i), fy = smooth(y - (float)j);
    float a = n->g[j][i] + (n->g[j][i + 1] - n->g[j][i]) * fx;
    float b = n->g[j + 1][i] + (n->g[j + 1][i + 1] - n->g[j + 1][i]) * fx;
    return a + (b - a) * fy;
}

static float clamp01(float x) { return x < 0 ? 0 : x > 1 ? 1 : x; }

static float luminance(const float c[3]) { return 0.3f * c[0] + 0.59f * c[1] + 0.11f * c[2]; }

/* The shade the internal pattern is drawn in: darker on light lesions,
 * lighter on dark ones. */
static void contrast_shade(const float c[3], float out[3]) {
    if (luminance(c) < 0.28f)
        for (int k = 0; k < 3; k++) out[k] = c[k] + 0.38f;
    else
        for (int k = 0; k < 3; k++) out[k] = c[k] * 0.42f;
}

/* Outline radius (in units of the lesion radius) at angle phi, before border notching. */
static float outline_radius(int shape, float phi, const float ph[3]) {
    switch (shape) {
    case 0: return 1.0f;
    case 1: { /* ellipse 1.3 × 0.72 */
        float a = 1.3f, b = 0.72f, c = cosf(phi), s = sinf(phi);
        return a * b / sqrtf(b * b * c * c + a * a * s * s);
    }
    case 2: return 1.0f + 0.24f * sinf(3 * phi + ph[0]) + 0.15f * sinf(5 * phi + ph[1]) + 0.09f * sinf(2 * phi + ph[2]);
    case 3: {
        float t = 0.5f + 0.5f * cosf(5 * phi);
        return 0.42f + 0.8f * t * t * t;
    }
    default: return 1.1f; /* ring: outer radius */
    }
}

typedef struct hair {
    float x[17], y[17]; /* polyline, in pixels */
    float width;
} hair;

static float hair_distance(const hair *h, float px, float py) {
    float best = 1e9f;
    for (int i = 0; i < 16; i++) {
        float ax = h->x[i], ay = h->y[i], bx = h->x[i + 1] - ax, by = h->y[i + 1] - ay;
        float t = ((px - ax) * bx + (py - ay) * by) / (bx * bx + by * by + 1e-9f);
        t = clamp01(t);
        float dx = px - ax - t * bx, dy = py - ay - t * by;
        float d = dx * dx + dy * dy;
        if (d < best) best = d;
    }
    return sqrtf(best);
}

#define MAX_DOTS 40

void sg_demo_render(const sg_demo_attrs *a, uint64_t seed, uint64_t stream, int side, uint8_t *rgb) {
    SG_ASSERT(side >= 8);
    const int *v = a->v;
    sg_rng r;
    sg_rng_seed2(&r, seed, stream);
    const float S = (float)side;

    /* skin */
    float bg[3];
    float tone = 0.06f * (sg_rng_uniform(&r) - 0.5f);
    for (int k = 0; k < 3; k++) bg[k] = background_rgb[v[SG_DEMO_S_BACKGROUND]][k] + tone + 0.04f * (sg_rng_uniform(&r) - 0.5f);
    value_noise skin, blotch, warp;
    noise_init(&skin, &r);
    noise_init(&blotch, &r);
    noise_init(&warp, &r);
    float gang = 2 * PI_F * sg_rng_uniform(&r), gamp = 0.08f + 0.3f * sg_rng_uniform(&r);
    float gx = cosf(gang), gy = sinf(gang);
    int vignette = sg_rng_uniform(&r) < 0.5f;
    float vig = 0.35f + 0.4f * sg_rng_uniform(&r);

    /* lesion pose and colour */
    float rad = size_radius[v[SG_DEMO_S_SIZE]] * (0.88f + 0.24f * sg_rng_uniform(&r));
    int shape = v[SG_DEMO_S_SHAPE];
    float reach = rad * (shape == 5 ? 1.5f : shape == 3 ? 1.2f : 1.3f);
    float slack = fmaxf(0.0f, 0.5f - reach - 0.03f);
    float jit = fminf(0.08f, slack);
    float cx = 0.5f + jit * (2 * sg_rng_uniform(&r) - 1), cy = 0.5f + jit * (2 * sg_rng_uniform(&r) - 1);
    float rot = 2 * PI_F * sg_rng_uniform(&r), cr = cosf(rot), sr = sinf(rot);
    float ph[3], jag[3];
    for (int i = 0; i < 3; i++) ph[i] = 2 * PI_F * sg_rng_uniform(&r);
    for (int i = 0; i < 3; i++) jag[i] = 2 * PI_F * sg_rng_uniform(&r);
    int jagged = v[SG_DEMO_S_BORDER] == 1;
    float edge_px = jagged ? 0.6f : 2.2f; /* soft edge width in pixels */
    float c1[3], c2[3], t1[3], t2[3];
    float cj = 0.05f * (sg_rng_uniform(&r) - 0.5f);
    for (int k = 0; k < 3; k++) {
        c1[k] = colour_rgb[v[SG_DEMO_S_COLOUR1]][k] + cj + 0.03f * (sg_rng_uniform(&r) - 0.5f);
        c2[k] = v[SG_DEMO_S_COLOUR2] >= 0 ? colour_rgb[v[SG_DEMO_S_COLOUR2]][k] + cj : c1[k];
    }
    contrast_shade(c1, t1);
    contrast_shade(c2, t2);
    float blotch_thr = 0.42f + 0.1f * sg_rng_uniform(&r);

    /* pattern parameters */
    int tex = v[SG_DEMO_S_TEXTURE];
    float dots[MAX_DOTS][3];
    int n_dots = 0;
    if (tex == 1) {
        n_dots = 8 + (int)(rad * rad * 500.0f);
        if (n_dots > MAX_DOTS) n_dots = MAX_DOTS;
        for (int i = 0; i < n_dots; i++) {
            float ang = 2 * PI_F * sg_rng_uniform(&r), dd = 0.85f * sqrtf(sg_rng_uniform(&r));
            float rr = outline_radius(shape == 4 ? 0 : shape, ang, ph);
            if (shape == 5) rr = 0.9f;
            dots[i][0] = dd * rr * rad * cosf(ang);
            dots[i][1] = dd * rr * rad * sinf(ang) * (shape == 5 ? 0.3f : 1.0f);
            if (shape == 5) dots[i][0] *= 1.5f;
            dots[i][2] = fmaxf(1.0f / S, 0.022f + 0.012f * sg_rng_uniform(&r));
        }
    }
    int n_streaks = 9 + (int)sg_rng_below(&r, 5);
    float streak_ph = 2 * PI_F * sg_rng_uniform(&r);
    float net_period = 0.085f + 0.02f * sg_rng_uniform(&r), net_ang = PI_F * sg_rng_uniform(&r);
    float net_c = cosf(net_ang), net_s = sinf(net_ang);
    float ring_bands = 2.5f + sg_rng_uniform(&r), ring_ph = 2 * PI_F * sg_rng_uniform(&r);

    /* hairs */
    hair hairs[3];
    int n_hairs = sg_rng_uniform(&r) < 0.3f ? 1 + (int)sg_rng_below(&r, 2) : 0;
    for (int h = 0; h < n_hairs; h++) {
        float x0 = S * sg_rng_uniform(&r), y0 = 0, x1 = S * sg_rng_uniform(&r), y1 = S;
        if (sg_rng_uniform(&r) < 0.5f) {
            y0 = S * sg_rng_uniform(&r);
            x0 = 0;
            y1 = S * sg_rng_uniform(&r);
            x1 = S;
        }
        float bend = S * 0.25f * (sg_rng_uniform(&r) - 0.5f);
        for (int i = 0; i <= 16; i++) {
            float t = (float)i / 16;
            float nx = -(y1 - y0), ny = x1 - x0, nl = sqrtf(nx * nx + ny * ny) + 1e-6f;
            float b = bend * 4 * t * (1 - t);
            hairs[h].x[i] = x0 + (x1 - x0) * t + b * nx / nl;
            hairs[h].y[i] = y0 + (y1 - y0) * t + b * ny / nl;
        }
        hairs[h].width = 0.35f + 0.35f * sg_rng_uniform(&r);
    }
    float noise_sd = 0.012f + 0.025f * sg_rng_uniform(&r);

    for (int y = 0; y < side; y++)
        for (int x = 0; x < side; x++) {
            float u = ((float)x + 0.5f) / S, w = ((float)y + 0.5f) / S;
            float px[3];
            float sk = 0.07f * (noise_at(&skin, u, w) - 0.5f);
            for (int k = 0; k < 3; k++) px[k] = bg[k] + sk;

            /* lesion frame: rotated, centred */
            float dx = u - cx, dy = w - cy;
            float lu = cr * dx + sr * dy, lv = -sr * dx + cr * dy;
            float d = sqrtf(lu * lu + lv * lv), phi = atan2f(lv, lu);
            float notch = 1.0f;
            if (jagged)
                notch = 1.0f + 0.09f * sinf(13 * phi + jag[0]) + 0.06f * sinf(21 * phi + jag[1]) +
                        0.04f * sinf(31 * phi + jag[2]);
            float q, rr_px; /* normalized distance (1 = outline) and the outline radius in pixels */
            if (shape == 5) {
                float qa = fabsf(lu) / (1.5f * rad), qb = fabsf(lv) / (0.36f * rad);
                float p = 6.0f;
                q = powf(powf(qa, p) + powf(qb, p), 1.0f / p) / notch;
                rr_px = 0.36f * rad * S;
            } else {
                float R = outline_radius(shape, phi, ph) * notch;
                q = d / (R * rad);
                rr_px = R * rad * S;
            }
            float cov = clamp01((1.0f - q) * rr_px / edge_px + 0.5f);
            if (shape == 4) { /* annulus: cut the centre out */
                float inner = clamp01((q - 0.55f) * rr_px / edge_px + 0.5f);
                cov *= inner;
            }
            if (cov > 0) {
                float m = v[SG_DEMO_S_COLOUR2] >= 0 ? clamp01((noise_at(&blotch, u, w) - blotch_thr) * 8.0f + 0.5f) : 0;
                float les[3], tc[3];
                for (int k = 0; k < 3; k++) {
                    les[k] = c1[k] + (c2[k] - c1[k]) * m;
                    tc[k] = t1[k] + (t2[k] - t1[k]) * m;
                }
                float t = 0; /* pattern strength at this pixel */
                switch (tex) {
                case 1:
                    for (int i = 0; i < n_dots; i++) {
                        float ex = lu - dots[i][0], ey = lv - dots[i][1];
                        float dd = sqrtf(ex * ex + ey * ey);
                        t = fmaxf(t, clamp01((dots[i][2] - dd) * S / 0.8f + 0.5f));
                    }
                    break;
                case 2: {
                    float s = 0.5f + 0.5f * cosf((float)n_streaks * phi + streak_ph);
                    s = s * s * s * s * s * s;
                    t = 0.9f * s * clamp01((q - 0.3f) * 3.0f);
                    break;
                }
                case 3: {
                    float wu = u + 0.03f * (noise_at(&warp, u, w) - 0.5f), wv = w + 0.03f * (noise_at(&warp, w, u) - 0.5f);
                    float gu = (net_c * wu + net_s * wv) / net_period, gv = (-net_s * wu + net_c * wv) / net_period;
                    float lx = fabsf(sinf(PI_F * gu)), ly = fabsf(sinf(PI_F * gv));
                    t = 0.85f * clamp01((0.38f - fminf(lx, ly)) * 4.0f);
                    break;
                }
                case 4: {
                    float c = 0.5f + 0.5f * cosf(2 * PI_F * ring_bands * q + ring_ph);
                    t = 0.8f * clamp01((c - 0.45f) * 3.0f);
                    break;
                }
                default: t = 0.08f * (noise_at(&warp, u, w) - 0.5f); break;
                }
                for (int k = 0; k < 3; k++) {
                    float val = les[k] + (tc[k] - les[k]) * t;
                    px[k] = px[k] * (1 - cov) + val * cov;
                }
            }
            for (int h = 0; h < n_hairs; h++) {
                float hd = hair_distance(&hairs[h], (float)x + 0.5f, (float)y + 0.5f);
                float hc = clamp01(hairs[h].width + 0.5f - hd);
                for (int k = 0; k < 3; k++) px[k] = px[k] * (1 - hc) + 0.12f * hc;
            }
            float light = 1.0f + gamp * ((u - 0.5f) * gx + (w - 0.5f) * gy);
            if (vignette) {
                float rd = sqrtf((u - 0.5f) * (u - 0.5f) + (w - 0.5f) * (w - 0.5f));
                light *= 1.0f - vig * smooth(clamp01((rd - 0.45f) / 0.27f));
            }
            for (int k = 0; k < 3; k++) {
                float val = clamp01(px[k] * light + noise_sd * sg_rng_normal(&r));
                rgb[((size_t)y * side + x) * 3 + k] = (uint8_t)lrintf(val * 255.0f);
            }
        }
}

static void png_write_to_buf(png_structp p, png_bytep d, png_size_t n) {
    sg_buf_append((sg_buf *)png_get_io_ptr(p), d, n);
}
static void png_flush_nothing(png_structp p) { (void)p; }

sg_status sg_demo_png_encode(const uint8_t *rgb, int w, int h, sg_buf *out, sg_err *err) {
    png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    if (!p) return sg_err_set(err, SG_ERR_NOMEM, "PNG encoder: out of memory");
    png_infop info = png_create_info_struct(p);
    if (!info) {
        png_destroy_write_struct(&p, NULL);
        return sg_err_set(err, SG_ERR_NOMEM, "PNG encoder: out of memory");
    }
    if (setjmp(png_jmpbuf(p))) {
        png_destroy_write_struct(&p, &info);
        return sg_err_set(err, SG_ERR_FORMAT, "PNG encoder failed on a %dx%d image", w, h);
    }
    png_set_write_fn(p, out, png_write_to_buf, png_flush_nothing);
    png_set_IHDR(p, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(p, info);
    for (int y = 0; y < h; y++) png_write_row(p, (png_const_bytep)(rgb + (size_t)y * (size_t)w * 3));
    png_write_end(p, info);
    png_destroy_write_struct(&p, &info);
    return SG_OK;
}
