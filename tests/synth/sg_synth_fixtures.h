/* sg_synth_fixtures.h — fixtures the synth tests generate themselves: tiny
 * engine configurations, engines whose generators are moved off their zero
 * initialization, and a seeded synthetic image-task distribution (shape ×
 * colour classes with random position, scale, background and noise, and a
 * description built from the attribute words) packed as an sg_dataset.
 * Shared by the Criterion tests and the plain MPI programs (no Criterion here). */
#ifndef SG_SYNTH_FIXTURES_H
#define SG_SYNTH_FIXTURES_H

#include "sg_synth_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* img 8, store 10, width 4, 2 stages, rank 2: every loss evaluation takes
 * microseconds, so finite differences can visit every parameter. */
static inline sg_engine_config fx_tiny_config(void) {
    sg_engine_config c;
    sg_engine_config_default(&c);
    c.img = 8;
    c.store = 10;
    c.width = 4;
    c.stages = 2;
    c.rank = 2;
    c.text_buckets = 64;
    c.text_dim = 6;
    c.text_hidden = 5;
    c.code_dim = 4;
    c.n_base_classes = 3;
    return c;
}

/* Moves the engine off its initialization: random FiLM γ/β and α generators
 * (zero at creation), a non-zero centring weight κ and ridge-head weight ρ
 * (both zero at creation), and a base batch norm with non-trivial affine
 * parameters and running statistics (so the folded scale and shift are
 * neither 1 nor 0 and every term of the generator backward matters). */
static inline void fx_engine_perturb(sg_engine *e, uint64_t seed, float sd) {
    sg_rng r;
    sg_rng_seed(&r, seed);
    float *p = e->params;
    int C = e->cfg.width, Z = e->zdim, R = e->cfg.rank;
    p[e->off_kappa] = 0.6f;
    p[e->off_rho] = 0.5f; /* ridge head on (off at creation) */
    p[e->off_loglam] = -0.5f;
    for (int s = 0; s < e->n_units; s++) {
        for (size_t i = 0; i < (size_t)C * Z + C; i++) {
            p[e->off_gg[s] + i] = sd * sg_rng_normal(&r);
            p[e->off_gb[s] + i] = sd * sg_rng_normal(&r);
        }
        for (size_t i = 0; i < (size_t)R * Z + R; i++) p[e->off_A[s] + i] = 3 * sd * sg_rng_normal(&r);
        /* V starts small: bring it up so the kernel delta matters */
        for (size_t i = e->off_V[s]; i < e->off_A[s]; i++) p[i] *= 3;
        const sg_layer *bn = &e->base.layers[e->unit_layer[s] + 1];
        for (int c = 0; c < bn->cin; c++) {
            p[bn->param_off + c] = 1.0f + 0.2f * sg_rng_normal(&r);
            p[bn->param_off + bn->cin + c] = 0.2f * sg_rng_normal(&r);
            e->state[bn->state_off + c] = 0.2f * sg_rng_normal(&r);
            e->state[bn->state_off + bn->cin + c] = 0.5f + sg_rng_uniform(&r);
        }
    }
}

/* ---- a synthetic task distribution: shape × colour ---- */

#define FX_N_SHAPES 6
#define FX_N_COLOURS 6
static const char *const fx_shape_names[FX_N_SHAPES] = {"disc", "bar", "ring", "cross", "square", "triangle"};
static const char *const fx_colour_names[FX_N_COLOURS] = {"red", "green", "blue", "yellow", "magenta", "cyan"};
static const float fx_colour_rgb[FX_N_COLOURS][3] = {{0.9f, 0.15f, 0.1f}, {0.15f, 0.8f, 0.2f}, {0.15f, 0.25f, 0.95f},
                                                     {0.9f, 0.85f, 0.1f}, {0.85f, 0.15f, 0.85f}, {0.1f, 0.85f, 0.85f}};

/* Coverage in [0, 1] of shape `shape` centred at (cx, cy), radius rad, angle ca/sa, at (x, y). */
static inline float fx_shape_cover(int shape, float x, float y, float cx, float cy, float rad, float ca, float sa) {
    float dx = x - cx, dy = y - cy, d = sqrtf(dx * dx + dy * dy);
    float u = ca * dx + sa * dy, v = -sa * dx + ca * dy; /* rotated frame */
    float k;
    switch (shape) {
    case 0: k = rad - d; break;                                       /* disc */
    case 1: k = fminf(rad * 1.2f - fabsf(u), rad * 0.3f - fabsf(v)); break; /* bar */
    case 2: k = rad * 0.28f - fabsf(d - rad * 0.8f); break;            /* ring */
    case 4: k = fminf(rad * 0.8f - fabsf(u), rad * 0.8f - fabsf(v)); break; /* square */
    case 5: k = fminf(fminf(v + rad * 0.5f, rad * 0.9f - v - 1.73f * u), rad * 0.9f - v + 1.73f * u) * 0.5f; break; /* triangle */
    default: /* cross */
        k = fmaxf(fminf(rad - fabsf(u), rad * 0.28f - fabsf(v)), fminf(rad - fabsf(v), rad * 0.28f - fabsf(u))); break;
    }
    k += 0.5f; /* one-pixel soft edge */
    return k < 0 ? 0 : k > 1 ? 1 : k;
}

/* Paints shape `shape` in colour `colour` (random position, size, angle,
 * brightness) into the float planes f (3, S, S). */
static inline void fx_paint(sg_rng *r, int shape, int colour, int S, float scale, float *f) {
    float rad = (float)S * scale * (0.22f + 0.1f * sg_rng_uniform(r));
    float cx = rad + ((float)S - 2 * rad) * sg_rng_uniform(r), cy = rad + ((float)S - 2 * rad) * sg_rng_uniform(r);
    float ang = 3.14159265f * sg_rng_uniform(r), ca = cosf(ang), sa = sinf(ang);
    float amp = 0.75f + 0.25f * sg_rng_uniform(r);
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            float a = fx_shape_cover(shape, (float)x + 0.5f, (float)y + 0.5f, cx, cy, rad, ca, sa);
            for (int c = 0; a > 0 && c < 3; c++) {
                float *v = f + ((size_t)c * S + y) * S + x;
                *v = (1 - a) * *v + a * amp * fx_colour_rgb[colour][c];
            }
        }
}

/* One (3, S, S) uint8 planar image of a coloured shape on a dark, noisy
 * background at a random position, size and angle. With `distractor`, a
 * second, smaller object of another shape and another colour is painted
 * first: one support image alone then does not tell which object is the
 * class, the description does. */
static inline void fx_draw_scene(sg_rng *r, int shape, int colour, int S, int distractor, uint8_t *img) {
    float *f = sg_xalloc_floats((size_t)3 * S * S), bg[3];
    for (int c = 0; c < 3; c++) bg[c] = 0.05f + 0.2f * sg_rng_uniform(r);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < S * S; i++) f[(size_t)c * S * S + i] = bg[c];
    if (distractor) {
        int ds = (shape + 1 + (int)sg_rng_below(r, FX_N_SHAPES - 1)) % FX_N_SHAPES;
        int dc = (colour + 1 + (int)sg_rng_below(r, FX_N_COLOURS - 1)) % FX_N_COLOURS;
        fx_paint(r, ds, dc, S, 0.8f, f);
    }
    fx_paint(r, shape, colour, S, distractor ? 0.8f : 1.0f, f);
    for (size_t i = 0; i < (size_t)3 * S * S; i++) {
        float v = f[i] + 0.06f * sg_rng_normal(r);
        v = v < 0 ? 0 : v > 1 ? 1 : v;
        img[i] = (uint8_t)lrintf(v * 255.0f);
    }
    free(f);
}

static inline void fx_draw(sg_rng *r, int shape, int colour, int S, uint8_t *img) {
    fx_draw_scene(r, shape, colour, S, 0, img);
}

static inline char *fx_describe(int shape, int colour) {
    char buf[128];
    snprintf(buf, sizeof buf, "a %s %s on a dark background", fx_colour_names[colour], fx_shape_names[shape]);
    return sg_xstrdup(buf);
}

/* A dataset of the given (shape, colour) classes (class k = combos[2k],
 * combos[2k+1]), per_class images each (with a distractor object when
 * `distractor`), one domain. */
static inline void fx_dataset_build(sg_dataset *d, const int *combos, int n_classes, int per_class, int S,
                                    int distractor, uint64_t seed) {
    memset(d, 0, sizeof *d);
    d->n = n_classes * per_class;
    d->store = S;
    d->pix = sg_xmalloc((size_t)d->n * 3 * S * S);
    d->label = sg_xcalloc((size_t)d->n, sizeof(int));
    d->n_classes = n_classes;
    d->class_names = sg_xcalloc((size_t)n_classes, sizeof(char *));
    d->class_text = sg_xcalloc((size_t)n_classes, sizeof(char *));
    d->class_domain = sg_xcalloc((size_t)n_classes, sizeof(int));
    d->n_domains = 1;
    d->domain_names = sg_xcalloc(1, sizeof(char *));
    d->domain_names[0] = sg_xstrdup("shapes");
    sg_rng r;
    sg_rng_seed(&r, seed);
    for (int k = 0; k < n_classes; k++) {
        int sh = combos[2 * k], co = combos[2 * k + 1];
        char name[64];
        snprintf(name, sizeof name, "%s_%s", fx_colour_names[co], fx_shape_names[sh]);
        d->class_names[k] = sg_xstrdup(name);
        d->class_text[k] = fx_describe(sh, co);
        for (int i = 0; i < per_class; i++) {
            int idx = k * per_class + i;
            d->label[idx] = k;
            fx_draw_scene(&r, sh, co, S, distractor, d->pix + (size_t)idx * 3 * S * S);
        }
    }
}

/* An engine of configuration c for training on d: one base class per class
 * of d, input normalization from d's images. */
static inline sg_engine *fx_engine_for(const sg_dataset *d, sg_engine_config c, uint64_t seed) {
    c.n_base_classes = d->n_classes;
    sg_engine *e = sg_engine_create(&c, seed);
    float mean[3], sd[3];
    sg_dataset_stats(d, mean, sd);
    sg_engine_set_normalization(e, mean, sd);
    return e;
}

/* Options for a short stage 1 alone on a fixture dataset: SGD at lr 0.05,
 * batch 16, no stage 2, no validation or calibration, quiet. */
static inline void fx_stage1_opts(sg_train_opts *o, int epochs, uint64_t seed) {
    sg_train_opts_default(o);
    o->stage1_epochs = epochs;
    o->batch = 16;
    o->sgd1 = 1;
    o->lr1 = 0.05f;
    o->stage2_episodes = 0;
    o->n_val_classes = 0;
    o->val_episodes = 0;
    o->calib_episodes = 0;
    o->seed = seed;
    o->log_every = 1000;
}

/* MPI for a Criterion test (each test is its own process, which finalizes it);
 * warnings and errors only. */
static inline void fx_init_mpi(void) {
    int inited;
    MPI_Initialized(&inited);
    if (!inited) MPI_Init(NULL, NULL);
    sg_log_set_level(SG_LOG_WARN);
}

/* Largest |a − b| / max(1, |b|) over n floats. */
static inline double fx_max_rel_diff(const float *a, const float *b, size_t n) {
    double w = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / fmax(1.0, fabs((double)b[i]));
        if (isnan(d)) return INFINITY;
        if (d > w) w = d;
    }
    return w;
}

#endif
