/* fuzz_image_list.c — libFuzzer target for the unlabelled image list reader
 * (sgps adapt-engine --images, cli/sg_cli_data.c): any CSV bytes must load or
 * be refused with a status, never crash, leak or read out of bounds. The list
 * is written to a file (the reader takes a path); its paths name no real
 * images, so every line is read, split and skipped. */
#include "sg_cli_data.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64];
static void remove_list(void) { unlink(path); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/fuzz_image_list.%d.csv", (int)getpid());
        atexit(remove_list);
    }
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    fclose(f);
    uint8_t *pix = NULL;
    int n = -1;
    sg_err err;
    sg_log_set_level(SG_LOG_ERROR); /* one warning per skipped line otherwise */
    if (sg_cli_load_images(path, 8, 0, &pix, &n, &err) == SG_OK) {
        if (n < 1 || !pix) abort();
        free(pix);
    } else if (pix || n != 0)
        abort();
    return 0;
}
