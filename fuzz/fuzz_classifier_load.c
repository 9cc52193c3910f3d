/* fuzz_classifier_load.c — libFuzzer target for the .sgpm parser: any bytes
 * must load or be refused with a status, never crash, leak or abort. */
#include "sg_model.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sg_classifier *c = NULL;
    sg_err err;
    if (sg_classifier_deserialize(data, size, "fuzz", &c, &err) == SG_OK) {
        sg_buf b = {0};
        sg_classifier_serialize(c, &b);
        sg_buf_free(&b);
        sg_classifier_free(c);
    }
    return 0;
}
