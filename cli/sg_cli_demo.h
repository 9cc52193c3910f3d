/* sg_cli_demo.h — `sgps demo-world`: a seeded synthetic rare-disease world
 * (docs/demo.md). Every disease is a combination of visual attributes; its
 * images are rendered from them and its clinical description is composed from
 * them, so text carries the same information as the pictures.
 *
 * Lifecycle:
 *   1) sg_demo_opts o; sg_demo_opts_default(&o); set seed, sizes
 *   2) sg_demo_world w; sg_demo_world_plan(&o, &w, &err)   diseases, split, texts
 *   3) sg_demo_world_write(&o, &w, out_dir, &err)          every file under out_dir
 *   4) sg_demo_world_free(&w)                              (accepts a zeroed world)
 * Rendering alone: sg_demo_render(&attrs, seed, stream, side, rgb).
 *
 * Everything is a function of the options: the same seed gives byte-identical
 * files (PNG without time chunks, shards through io's deterministic writer,
 * JSON and CSV printed in a fixed order).
 */
#ifndef SG_CLI_DEMO_H
#define SG_CLI_DEMO_H

#include "sg_core.h"

#include <stdint.h>

int sg_cmd_demo_world(int argc, char **argv);

/* ---- attributes -------------------------------------------------------- */

typedef enum sg_demo_kind {
    SG_DEMO_SHAPE = 0,  /* round, oval, irregular, star, ring, linear */
    SG_DEMO_BORDER,     /* smooth, jagged */
    SG_DEMO_COLOUR,     /* brown, dark brown, black, red, pink, blue-grey, yellow, white */
    SG_DEMO_TEXTURE,    /* uniform, dotted, streaks, reticular, concentric */
    SG_DEMO_SIZE,       /* small, medium, large */
    SG_DEMO_BACKGROUND, /* pale, pink, tan, dark */
    SG_DEMO_KINDS
} sg_demo_kind;

/* Attribute slots of a disease; colour2 is -1 for a one-colour lesion. */
typedef enum sg_demo_slot {
    SG_DEMO_S_SHAPE = 0,
    SG_DEMO_S_BORDER,
    SG_DEMO_S_COLOUR1,
    SG_DEMO_S_COLOUR2,
    SG_DEMO_S_TEXTURE,
    SG_DEMO_S_SIZE,
    SG_DEMO_S_BACKGROUND,
    SG_DEMO_SLOTS
} sg_demo_slot;

typedef struct sg_demo_attrs {
    int v[SG_DEMO_SLOTS]; /* value per slot */
} sg_demo_attrs;

sg_demo_kind sg_demo_slot_kind(sg_demo_slot s);
int sg_demo_kind_count(sg_demo_kind k);
const char *sg_demo_kind_name(sg_demo_kind k);          /* "shape", "border", ... */
const char *sg_demo_value_name(sg_demo_kind k, int v);  /* canonical: "irregular", "blue-grey" */
/* The words a description uses for value v: synonym syn (0 or 1). */
#define SG_DEMO_SYNONYMS 2
const char *sg_demo_phrase(sg_demo_kind k, int v, int syn);

/* ---- rendering (sg_demo_render.c) -------------------------------------- */

/* One dermoscopy-like image of a lesion with these attributes, random pose,
 * colour jitter, illumination gradient, vignette, hairs and noise drawn from
 * (seed, stream). rgb: (side, side, 3) interleaved. */
void sg_demo_render(const sg_demo_attrs *a, uint64_t seed, uint64_t stream, int side, uint8_t *rgb);
/* 8-bit RGB PNG (no time or text chunks) appended to out. */
sg_status sg_demo_png_encode(const uint8_t *rgb, int w, int h, sg_buf *out, sg_err *err);

/* ---- the world (sg_demo_world.c, texts in sg_demo_text.c) --------------- */

typedef struct sg_demo_opts {
    uint64_t seed;
    int n_diseases;   /* 12..500 (default 60); about a fifth are held out */
    int per_class;    /* training images per training disease (default 40) */
    int size;         /* image side in pixels (default 56) */
    int progress;     /* 1: progress lines through sg_log */
} sg_demo_opts;

void sg_demo_opts_default(sg_demo_opts *o);

typedef struct sg_demo_disease {
    char id[40];    /* registry id: "train/d007", "heldout/d051" (= ImageFolder SET/LABEL) */
    char label[16]; /* "d007" */
    char name[64];  /* an invented eponym, for people */
    int heldout;
    sg_demo_attrs a;
    int syn[SG_DEMO_SLOTS]; /* synonym chosen per slot */
    int tmpl;               /* sentence template */
    char *description;
    int n_exemplars;        /* held out: 3..5; training: 0 */
} sg_demo_disease;

typedef struct sg_demo_task {
    char id[48];
    int screen;        /* 0: evaluate (labelled val shards), 1: screen (screen shards) */
    int n_classes;
    int cls[8];        /* disease indices; screen tasks: cls[0] = the disease, the reference is implicit */
    int shots;
    int text;
    int open_set;      /* evaluate tasks: "open_set": true, the other held-out diseases labelled none */
} sg_demo_task;

typedef struct sg_demo_world {
    sg_demo_disease *d; /* (n) training diseases first, then held out */
    int n, n_train, n_heldout;
    int per_val;        /* labelled validation images per held-out disease */
    int n_screen;       /* screening cohort size */
    int n_screened;     /* held-out diseases with screen tasks: the first n_screened of screened[] */
    int screened[4];    /* disease indices with positives in the screening cohort */
    int screen_pos[4];  /* positives of each in the cohort */
    sg_demo_task tasks[8];
    int n_tasks;
} sg_demo_world;

sg_status sg_demo_world_plan(const sg_demo_opts *o, sg_demo_world *w, sg_err *err);
void sg_demo_world_free(sg_demo_world *w);
/* Number of attribute slots in which a and b differ. */
int sg_demo_attrs_distance(const sg_demo_attrs *a, const sg_demo_attrs *b);

/* Writes the world into out_dir (created; must not hold an older world's
 * files — the command checks that). */
sg_status sg_demo_world_write(const sg_demo_opts *o, const sg_demo_world *w, const char *out_dir, sg_err *err);

/* Texts (sg_demo_text.c): the description of disease d (malloc'd) and an
 * invented eponymous name drawn from rng. */
char *sg_demo_describe(const sg_demo_disease *d, uint64_t filler);
void sg_demo_name(sg_rng *r, int shape, char *out, size_t cap);

#endif
