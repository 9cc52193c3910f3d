/* fuzz_files.h — for the fuzz targets whose parsers take paths: a folder of
 * this process under /tmp (removed at exit) and files written into it. */
#ifndef FUZZ_FILES_H
#define FUZZ_FILES_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fuzz_root[200];

static void fuzz_root_remove(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", fuzz_root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", fuzz_root);
}

/* Creates /tmp/sgps-fuzz-NAME-PID/SUB (once per process) and returns it. */
static inline const char *fuzz_dir(const char *name, const char *sub) {
    static char dir[256];
    if (!dir[0]) {
        snprintf(fuzz_root, sizeof fuzz_root, "/tmp/sgps-fuzz-%s-%ld", name, (long)getpid());
        snprintf(dir, sizeof dir, "%s%s%s", fuzz_root, sub[0] ? "/" : "", sub);
        char cmd[300];
        snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
        if (system(cmd) != 0) abort();
        atexit(fuzz_root_remove);
    }
    return dir;
}

/* Writes n bytes to dir/name. */
static inline void fuzz_put(const char *dir, const char *name, const void *d, size_t n) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f || (n && fwrite(d, 1, n, f) != n)) abort();
    fclose(f);
}

#endif
