/* fuzz_dataset_load.c — libFuzzer target for what train-engine and
 * eval-fewshot read before training (cli/sg_cli_data.c): the class registry
 * (sg_registry_load_texts) and a labelled image set's labels.csv
 * (sg_cli_load_sets). An input is the registry and the CSV separated by a NUL
 * byte, written to a folder of this process that also holds one real image,
 * a.ppm, so that rows naming it load. Any bytes must load or be refused with
 * a status, never crash, leak or read out of bounds; a loaded set's labels,
 * classes and descriptions must be consistent. */
#include "sg_cli_data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char g_root[200], g_dir[256];

static void put(const char *name, const uint8_t *d, size_t n) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    FILE *f = fopen(p, "wb");
    if (!f || (n && fwrite(d, 1, n, f) != n)) abort();
    fclose(f);
}

static void cleanup(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_dir[0]) {
        snprintf(g_root, sizeof g_root, "/tmp/sgps-fuzz-dataset-%ld", (long)getpid());
        snprintf(g_dir, sizeof g_dir, "%s/set", g_root);
        char cmd[300];
        snprintf(cmd, sizeof cmd, "mkdir -p %s", g_dir);
        if (system(cmd) != 0) abort();
        atexit(cleanup);
        uint8_t ppm[11 + 12];
        memcpy(ppm, "P6\n2 2\n255\n", 11);
        for (int i = 0; i < 12; i++) ppm[11 + i] = (uint8_t)(i * 20);
        put("a.ppm", ppm, sizeof ppm);
        sg_log_set_level(SG_LOG_ERROR); /* one warning per skipped line otherwise */
    }
    const uint8_t *z = memchr(data, 0, size);
    size_t nreg = z ? (size_t)(z - data) : size;
    put("registry.json", data, nreg);
    put("labels.csv", z ? z + 1 : data + size, z ? size - nreg - 1 : 0);
    char rp[512];
    snprintf(rp, sizeof rp, "%s/registry.json", g_dir);
    sg_registry_texts rt;
    sg_err err;
    int have_rt = sg_registry_load_texts(rp, &rt, &err) == SG_OK;
    if (have_rt)
        for (int i = 0; i < rt.n; i++)
            if (!rt.ids[i] || !rt.texts[i] || sg_registry_text(&rt, rt.ids[i]) == NULL) abort();
    char *dirs[1] = {g_dir};
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
