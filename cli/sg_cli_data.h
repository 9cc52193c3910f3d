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

#endif
