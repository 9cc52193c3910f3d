/* sg_cmd_pack.c — `sgps pack SRC OUT_PATTERN`: an ImageFolder or a CSV list
 * into WebDataset shards + index JSON + class list (io/sg_pack.c). */
#include "sg_cli.h"
#include "sg_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void pack_usage(FILE *f) {
    fprintf(f,
            "usage: sgps pack SRC OUT_PATTERN [options]\n\n"
            "Packs images into WebDataset shards (.tar, .tar.zst or .tar.gz, from the\n"
            "pattern's extension). Image bytes are stored unchanged; each sample gets\n"
            "KEY.<jpg|png|ppm|pgm>, KEY.cls (class id) when labelled, and KEY.json\n"
            "({\"label\": NAME, extra CSV columns...}). Output is deterministic.\n\n"
            "  SRC            a folder: SRC/images/<label>/x.jpg or SRC/<label>/x.jpg,\n"
            "                 or a CSV with a header: path,label[,more columns]\n"
            "                 (paths relative to the CSV; no label column = unlabelled)\n"
            "  OUT_PATTERN    shard names with one %%d in the file name, e.g.\n"
            "                 /tmp/ham/ham-%%06d.tar.zst (%%%% for a literal %%)\n"
            "Source files above 64 MiB, labels with line breaks and paths that give no\n"
            "valid WebDataset key are refused before any shard is written; shards appear\n"
            "under their final names only when the whole pack succeeded.\n\n"
            "options:\n"
            "  --max-samples N   samples per shard (default 10000)\n"
            "  --max-bytes M     uncompressed tar bytes per shard, K/M/G suffixes (default 1G)\n"
            "  --level L         zstd 1..19 (default 3), gzip 1..9 (default 6)\n"
            "  --group COL       keep rows sharing COL (e.g. lesion_id) in one shard (CSV only)\n"
            "  --index PATH      index JSON (default: <pattern stem>index.json)\n"
            "  --classes PATH    class list, one name per line, line i = class id i\n"
            "                    (default: <pattern stem>classes.txt)\n"
            "  --quiet           no progress lines\n\n"
            "exit status: 0 packed, 1 failed (the message names the file and the reason),\n"
            "             2 usage error\n");
}

static int parse_size(const char *s, uint64_t *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || !(v > 0)) return 0; /* NaN too */
    double m = 1;
    if (*end == 'k' || *end == 'K') m = 1024.0, end++;
    else if (*end == 'm' || *end == 'M') m = 1024.0 * 1024, end++;
    else if (*end == 'g' || *end == 'G') m = 1024.0 * 1024 * 1024, end++;
    if (*end == 'b' || *end == 'B') end++;
    if (*end || v * m > 1e18) return 0;
    *out = (uint64_t)(v * m);
    return 1;
}

int sg_cmd_pack(int argc, char **argv) {
    sg_pack_opts o;
    memset(&o, 0, sizeof o);
    o.progress = 1;
    const char *pos[2] = {NULL, NULL};
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        long n;
        if (sg_cli_is_help(argv[i])) {
            pack_usage(stdout);
            return 0;
        } else if (sg_cli_opt(argc, argv, &i, "--max-samples", &v)) {
            if (!sg_cli_parse_int(v, 1, 1000000000L, &n)) {
                fprintf(stderr, "sgps pack: --max-samples wants a positive integer, got '%s'\n", v);
                return 2;
            }
            o.max_samples = (uint64_t)n;
        } else if (sg_cli_opt(argc, argv, &i, "--max-bytes", &v)) {
            if (!parse_size(v, &o.max_bytes)) {
                fprintf(stderr, "sgps pack: --max-bytes wants a size such as 500M, got '%s'\n", v);
                return 2;
            }
        } else if (sg_cli_opt(argc, argv, &i, "--level", &v)) {
            if (!sg_cli_parse_int(v, 1, 19, &n)) {
                fprintf(stderr, "sgps pack: --level wants 1..19, got '%s'\n", v);
                return 2;
            }
            o.level = (int)n;
        } else if (sg_cli_opt(argc, argv, &i, "--group", &v)) {
            o.group_col = v;
        } else if (sg_cli_opt(argc, argv, &i, "--index", &v)) {
            o.index_path = v;
        } else if (sg_cli_opt(argc, argv, &i, "--classes", &v)) {
            o.classes_path = v;
        } else if (strcmp(argv[i], "--quiet") == 0) {
            o.progress = 0;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "sgps pack: unknown option '%s' (see sgps pack --help)\n", argv[i]);
            return 2;
        } else if (npos < 2) {
            pos[npos++] = argv[i];
        } else {
            fprintf(stderr, "sgps pack: too many arguments (see sgps pack --help)\n");
            return 2;
        }
    }
    if (npos != 2) {
        pack_usage(stderr);
        return 2;
    }
    o.src = pos[0];
    o.out_pattern = pos[1];
    sg_pack_result res;
    sg_err err = {{0}};
    sg_status s = sg_pack(&o, &res, &err);
    if (s != SG_OK) {
        fprintf(stderr, "sgps pack: %s\n", err.msg);
        sg_pack_result_free(&res);
        return s == SG_ERR_ARG ? 2 : 1;
    }
    printf("packed %llu samples into %llu shards, %.1f MB (images %.1f MB) in %.2f s\n",
           (unsigned long long)res.samples, (unsigned long long)res.shards, res.bytes_out / 1e6, res.bytes_in / 1e6,
           res.seconds);
    for (size_t c = 0; c < res.n_classes; c++)
        printf("  class %zu %-20s %llu\n", c, res.classes[c], (unsigned long long)res.class_counts[c]);
    if (res.unlabelled) printf("  unlabelled %llu\n", (unsigned long long)res.unlabelled);
    printf("index %s\nclasses %s\n", res.index_path, res.classes_path);
    sg_pack_result_free(&res);
    return 0;
}
