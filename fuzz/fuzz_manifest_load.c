/* fuzz_manifest_load.c — libFuzzer target for the run manifest and disease
 * registry loader (sgps run / validate / submit; pipeline/sg_manifest.c).
 *
 * An input is up to three files separated by a NUL byte: the manifest, the
 * registry (registry.json) and a shard index (index.json); the manifest can
 * name engine.sgpe (an existing file) and any of them. They are written to a
 * folder of this process and loaded as `sgps run` loads them (deep = 0: the
 * shard files themselves are not opened, which the shard reader's own fuzzer
 * covers). Any bytes must load or be refused with diagnostics, never crash,
 * leak or read out of bounds; a loaded manifest's units, shards and
 * exemplars must be consistent. */
#include "fuzz_files.h"
#include "sg_pipeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The next NUL-separated part of [*p, end). */
static size_t part(const uint8_t **p, const uint8_t *end, const uint8_t **start) {
    *start = *p;
    const uint8_t *z = memchr(*p, 0, (size_t)(end - *p));
    size_t n = (size_t)((z ? z : end) - *p);
    *p = z ? z + 1 : end;
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *dir = fuzz_dir("manifest", "");
    static int once;
    if (!once++) fuzz_put(dir, "engine.sgpe", "not an engine", 13);
    const uint8_t *p = data, *end = data + size, *s;
    size_t n = part(&p, end, &s);
    fuzz_put(dir, "manifest.json", s, n);
    n = part(&p, end, &s);
    fuzz_put(dir, "registry.json", s, n);
    n = part(&p, end, &s);
    fuzz_put(dir, "index.json", s, n);
    char mp[512];
    snprintf(mp, sizeof mp, "%s/manifest.json", dir);
    sg_diag d = {0};
    sg_manifest *m = NULL;
    sg_status st = sg_manifest_load(mp, 0, &m, &d);
    if (getenv("SGPS_FUZZ_VERBOSE")) { /* to read what a reproducer does */
        fprintf(stderr, "status %d, %d tasks, %zu units\n", (int)st, m ? m->n_tasks : 0, m ? m->n_units : 0);
        for (size_t i = 0; i < d.n; i++) fprintf(stderr, "  %s\n", d.msgs[i]);
    }
    if (st == SG_OK) {
        if (!m || sg_diag_count(&d, SG_DIAG_ERROR) != 0) abort();
        size_t units = 0;
        for (int t = 0; t < m->n_tasks; t++) {
            const sg_run_task *rt = &m->tasks[t];
            if (!rt->id || rt->n_classes < 2) abort();
            for (size_t k = 0; k < sg_task_n_units(rt); k++) {
                const sg_shard_file *f = sg_task_shard(m, rt, k);
                if (!f->path || !f->name) abort();
            }
            for (int c = 0; c < rt->n_classes; c++) {
                if (rt->disease[c] < 0 || rt->disease[c] >= m->n_diseases) abort();
                const sg_disease *dz = &m->diseases[rt->disease[c]];
                if (dz->n_exemplars > 0 && !sg_task_exemplar(m, rt, rt->class_ids[c], 0)) abort();
                if (sg_task_exemplar(m, rt, rt->class_ids[c], dz->n_exemplars)) abort();
            }
            units += sg_task_n_units(rt);
        }
        if (units != m->n_units) abort();
        for (size_t u = 0; u < m->n_units && u < 100000; u++) {
            int t;
            size_t k;
            sg_manifest_unit(m, u, &t, &k);
            if (m->unit_start[t] + k != u) abort();
        }
    }
    sg_manifest_free(m);
    sg_diag_free(&d);
    return 0;
}
