/* fuzz_engine_load.c — libFuzzer target for the .sgpe parser: any bytes must
 * load or be refused with a status, never crash, leak, abort or allocate
 * more than the file can describe. */
#include "sg_synth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sg_engine *e = NULL;
    sg_err err;
    if (sg_engine_deserialize(data, size, "fuzz", &e, &err) == SG_OK) {
        sg_buf b = {0};
        sg_engine_serialize(e, &b);
        sg_buf_free(&b);
        sg_engine_free(e);
    }
    return 0;
}
