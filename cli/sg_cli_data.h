/* sg_cli_data.h — image sets and registry descriptions for the engine commands. */
#ifndef SG_CLI_DATA_H
#define SG_CLI_DATA_H

#include "sg_core.h"
#include "sg_io.h"
#include "sg_synth.h"

typedef struct sg_registry_texts {
    int n;
    char **ids, **texts;
} sg_registry_texts;

/* Reads {"diseases": [{"id": ..., "description": ...}, ...]}. */
sg_status sg_registry_load_texts(const char *path, sg_registry_texts *rt, sg_err *err);
const char *sg_registry_text(const sg_registry_texts *rt, const char *id);
void sg_registry_texts_free(sg_registry_texts *rt);

/* Loads image sets (folders with labels.csv: path,label,...). Class ids are
 * "<folder name>/<label>"; descriptions come from rt (may be NULL). */
sg_status sg_cli_load_sets(char **dirs, int n_dirs, int side, const sg_registry_texts *rt, sg_dataset *d, sg_err *err);

/* Loads unlabelled images (n, 3, side, side) listed by the path column of a
 * CSV (paths relative to its folder), or of FOLDER/labels.csv when spec is a
 * folder; other columns are ignored. At most max_images (<= 0: all): from a
 * longer list every k-th row, spread over the whole list. A bad image is
 * skipped with a warning; none loaded is an error. */
sg_status sg_cli_load_images(const char *spec, int side, long max_images, uint8_t **pix, int *n, sg_err *err);

/* A synthesis task file (sgps synth --task), parsed and checked, nothing read
 * yet: class names, descriptions (NULL when none) and image specs (file paths or
 * SHARD#KEY, as written). The strings belong to the spec. */
typedef struct sg_task_spec {
    int n;
    const char **names, **texts;
    int *n_images;
    const char ***images;
    void *json; /* the parsed document the strings point into */
} sg_task_spec;

/* Reads {"classes": [{"name": S, "description": S?, "images": [S...]?}, ...]}
 * from (data, len); `name` (the file) is used in messages. Names must be
 * non-empty and distinct. SG_ERR_FORMAT with the JSON path of the first problem. */
sg_status sg_task_spec_parse(const char *data, size_t len, const char *name, sg_task_spec *out, sg_err *err);
void sg_task_spec_free(sg_task_spec *t);

#endif
