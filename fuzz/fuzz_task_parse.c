/* fuzz_task_parse.c — libFuzzer target for the synthesis task file parser
 * (sgps synth --task): any bytes must parse or be refused with a status, never
 * crash, leak or read out of bounds; a parsed spec has consistent counts. */
#include "sg_cli_data.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sg_task_spec t;
    sg_err err;
    if (sg_task_spec_parse((const char *)data, size, "fuzz", &t, &err) == SG_OK) {
        for (int i = 0; i < t.n; i++) {
            if (!t.names[i] || t.n_images[i] < 0) abort();
            for (int k = 0; k < t.n_images[i]; k++)
                if (!t.images[i][k]) abort();
        }
        sg_task_spec_free(&t);
    }
    return 0;
}
