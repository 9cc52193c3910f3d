/* sg_cli_util.c — small argument helpers shared by the subcommands. */
#include "sg_cli.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int sg_cli_is_help(const char *arg) { return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0; }

int sg_cli_opt(int argc, char **argv, int *i, const char *name, const char **val) {
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0) return 0;
    if (a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (a[n] != 0) return 0;
    if (*i + 1 >= argc) {
        sg_log(SG_LOG_ERROR, "option %s needs a value", name);
        exit(2);
    }
    *val = argv[++*i];
    return 1;
}

int sg_cli_bad_arg(const char *cmd, char **argv, int i0, int i) {
    if (i > i0) fprintf(stderr, "sgps %s: bad value '%s' for %s (see --help)\n", cmd, argv[i], argv[i0]);
    else fprintf(stderr, "sgps %s: bad or unknown argument '%s' (see --help)\n", cmd, argv[i]);
    return 2;
}

/* A number as typed: no leading space or '+' (strtol and strtod would skip or take them). */
static int plain_number(const char *s) { return s[0] == '-' || s[0] == '.' || (s[0] >= '0' && s[0] <= '9'); }

int sg_cli_parse_int(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    if (!plain_number(s)) return 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

int sg_cli_parse_float(const char *s, double *out) {
    char *end;
    errno = 0;
    if (!plain_number(s)) return 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return 0; /* not nan, inf */
    *out = v;
    return 1;
}

int sg_cli_check_writable(const char *path, sg_err *err) {
    size_t n = strlen(path) + 32;
    char *probe = sg_xmalloc(n);
    snprintf(probe, n, "%s.probe.%ld", path, (long)getpid());
    int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0644);
    int e = errno;
    if (fd >= 0) {
        close(fd);
        unlink(probe);
    }
    free(probe);
    if (fd >= 0) return 0;
    sg_err_set(err, SG_ERR_IO, "%s: cannot be written: %s", path, strerror(e));
    return 1;
}
