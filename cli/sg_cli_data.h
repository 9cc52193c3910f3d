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

/* Loads labelled image sets, each one of: a folder with labels.csv
 * (path,label,...), a folder of class subfolders (DIR/images/<label>/x or
 * DIR/<label>/x, as sgps pack reads it), or shards (an index JSON or a brace
 * pattern; labels from .cls through the index's class list, or .json "label").
 * Class ids are "<set>/<label>", the set being the folder's name or the
 * shards' stem (ham-index.json, ham-{000000..000003}.tar.zst: "ham");
 * descriptions come from rt (may be NULL). Bad images, unlabelled samples and
 * broken shards are skipped with a warning; two sets of one name, an
 * unreadable set or no image at all are errors. */
sg_status sg_cli_load_sets(char **dirs, int n_dirs, int side, const sg_registry_texts *rt, sg_dataset *d, sg_err *err);

/* Loads unlabelled images (n, 3, side, side) listed by the path column of a
 * CSV (paths relative to its folder), or of FOLDER/labels.csv when spec is a
 * folder, or those of a folder's class subfolders when it has no labels.csv;
 * other columns and labels are ignored. At most max_images (<= 0: all): from a
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
