/* fuzz_dataset_load.c — libFuzzer target for what train-engine and
 * eval-fewshot read before training (cli/sg_cli_data.c): the class registry
 * (sg_registry_load_texts) and a labelled image set's labels.csv
 * (sg_cli_load_sets). An input is the registry and the CSV separated by a NUL
 * byte, written to a folder of this process that also holds one real image,
 * a.ppm, so that rows naming it load. Any bytes must load or be refused with
 * a status, never crash, leak or read out of bounds; a loaded set's labels,
 * classes and descriptions must be consistent. */
#include "fuzz_files.h"
#include "sg_cli_data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *dir = fuzz_dir("dataset", "set");
    static int once;
    if (!once++) {
        uint8_t ppm[11 + 12];
        memcpy(ppm, "P6\n2 2\n255\n", 11);
        for (int i = 0; i < 12; i++) ppm[11 + i] = (uint8_t)(i * 20);
        fuzz_put(dir, "a.ppm", ppm, sizeof ppm);
        sg_log_set_level(SG_LOG_ERROR); /* one warning per skipped line otherwise */
    }
    const uint8_t *z = memchr(data, 0, size);
    size_t nreg = z ? (size_t)(z - data) : size;
    fuzz_put(dir, "registry.json", data, nreg);
    fuzz_put(dir, "labels.csv", z ? z + 1 : data + size, z ? size - nreg - 1 : 0);
    char rp[512];
    snprintf(rp, sizeof rp, "%s/registry.json", dir);
    sg_registry_texts rt;
    sg_err err;
    int have_rt = sg_registry_load_texts(rp, &rt, &err) == SG_OK;
    if (have_rt)
        for (int i = 0; i < rt.n; i++)
            if (!rt.ids[i] || !rt.texts[i] || sg_registry_text(&rt, rt.ids[i]) == NULL) abort();
    char *dirs[1] = {(char *)dir};
    sg_dataset d;
    if (sg_cli_load_sets(dirs, 1, 4, have_rt ? &rt : NULL, &d, &err) == SG_OK) {
        if (d.n < 1 || d.n_classes < 1 || d.n_domains != 1 || strcmp(d.domain_names[0], "set") != 0) abort();
        for (int i = 0; i < d.n; i++)
            if (d.label[i] < 0 || d.label[i] >= d.n_classes) abort();
        for (int c = 0; c < d.n_classes; c++) {
            if (strncmp(d.class_names[c], "set/", 4) != 0) abort();
            const char *t = have_rt ? sg_registry_text(&rt, d.class_names[c]) : NULL;
            if ((t == NULL) != (d.class_text[c] == NULL) || (t && strcmp(t, d.class_text[c]) != 0)) abort();
        }
        sg_dataset_free(&d);
    }
    if (have_rt) sg_registry_texts_free(&rt);
    return 0;
}
