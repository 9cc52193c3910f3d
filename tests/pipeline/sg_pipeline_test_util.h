/* sg_pipeline_test_util.h — helpers shared by the Criterion tests of
 * pipeline/: a generated world in a temporary folder, its removal, and
 * looking up diagnostics. */
#ifndef SG_PIPELINE_TEST_UTIL_H
#define SG_PIPELINE_TEST_UTIL_H

#include "sg_pipeline.h"
#include "sg_pipeline_fixtures.h"

#include <criterion/criterion.h>

/* A fixture world (fxp_make_world) in a new folder under /tmp. */
static inline char *world(const fxp_opts *o) {
    char *t = strdup("/tmp/sgpipe-test-XXXXXX");
    cr_assert(mkdtemp(t));
    fxp_make_world(t, o);
    return t;
}

static inline void rmrf(const char *dir) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* Whether a diagnostic of this kind contains needle. */
static inline int has(const sg_diag *d, const char *needle, sg_diag_kind kind) {
    for (size_t i = 0; i < d->n; i++)
        if (strstr(d->msgs[i], needle) && d->kind[i] == kind) return 1;
    return 0;
}

static inline void dump(const sg_diag *d) {
    for (size_t i = 0; i < d->n; i++) fprintf(stderr, "  [%d] %s\n", d->kind[i], d->msgs[i]);
}

#endif
