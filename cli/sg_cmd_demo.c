/* sg_cmd_demo.c — `sgps demo-world OUT`: writes the seeded synthetic
 * rare-disease world (sg_demo_world.c, docs/demo.md) into a new or empty
 * folder. With --force an existing world is replaced: only the names the
 * generator writes are deleted first, anything else in OUT is left alone. */
#include "sg_cli.h"
#include "sg_cli_demo.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char demo_help[] =
    "usage: sgps demo-world OUT [--seed S] [--diseases N] [--images-per-class M] [--size PX] [--force] [--quiet]\n\n"
    "Generates, deterministically from the seed, a synthetic rare-disease world: about N\n"
    "diseases, each a combination of visual attributes (shape, border, one or two colours,\n"
    "internal pattern, size, skin tone) rendered as dermoscopy-like PNG images and described\n"
    "in clinical-style text. About a fifth are held out: new attribute combinations, with\n"
    "3-5 exemplars each. OUT receives (docs/demo.md):\n"
    "  registry.json, manifest.json, world.json, screen-truth.csv\n"
    "  train/labels.csv + train/images/<label>/*.png     training diseases (train-engine --data)\n"
    "  heldout/labels.csv + heldout/images/...           the validation images (eval-fewshot --data)\n"
    "  exemplars/*.png                                   held-out and reference exemplars\n"
    "  shards/{train,val,screen}-NNNNNN.tar.zst + *-index.json\n\n"
    "  --seed S               world seed (default 1); the same seed gives byte-identical files\n"
    "  --diseases N           12..500 (default 60)\n"
    "  --images-per-class M   training images per training disease, 2..100000 (default 40);\n"
    "                         M/2 validation images per held-out disease, 10*M screening images\n"
    "  --size PX              image side, 24..512 (default 56)\n"
    "  --force                replace the world files in a non-empty OUT\n"
    "  --quiet                no progress lines\n"
    "Exit status: 0 written; 1 a file could not be written; 2 bad arguments or OUT not empty.\n";

static const char *const generated[] = {"train", "heldout", "exemplars", "shards", "registry.json", "manifest.json",
                                        "world.json", "screen-truth.csv"};

/* 1 when path is a folder holding anything, 0 when empty or absent, -1 when not a folder. */
static int folder_has_entries(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return 0;
    if (!S_ISDIR(st.st_mode)) return -1;
    DIR *dir = opendir(path);
    if (!dir) return -1;
    int any = 0;
    struct dirent *e;
    while (!any && (e = readdir(dir)) != NULL) any = strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(dir);
    return any;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

static int remove_generated(const char *out) {
    for (size_t i = 0; i < sizeof generated / sizeof generated[0]; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", out, generated[i]);
        struct stat st;
        if (lstat(path, &st) != 0) continue;
        if (nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) {
            fprintf(stderr, "sgps demo-world: cannot remove %s: %s\n", path, strerror(errno));
            return 0;
        }
    }
    return 1;
}

int sg_cmd_demo_world(int argc, char **argv) {
    sg_demo_opts o;
    sg_demo_opts_default(&o);
    const char *out = NULL;
    int force = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        long l;
        if (sg_cli_is_help(argv[i])) {
            fputs(demo_help, stdout);
            return 0;
        } else if (sg_cli_opt(argc, argv, &i, "--seed", &v)) {
            if (!sg_cli_parse_int(v, 0, 1L << 62, &l)) return fprintf(stderr, "sgps demo-world: bad --seed '%s'\n", v), 2;
            o.seed = (uint64_t)l;
        } else if (sg_cli_opt(argc, argv, &i, "--diseases", &v)) {
            if (!sg_cli_parse_int(v, 12, 500, &l))
                return fprintf(stderr, "sgps demo-world: --diseases must be 12..500 (got '%s')\n", v), 2;
            o.n_diseases = (int)l;
        } else if (sg_cli_opt(argc, argv, &i, "--images-per-class", &v)) {
            if (!sg_cli_parse_int(v, 2, 100000, &l))
                return fprintf(stderr, "sgps demo-world: --images-per-class must be 2..100000 (got '%s')\n", v), 2;
            o.per_class = (int)l;
        } else if (sg_cli_opt(argc, argv, &i, "--size", &v)) {
            if (!sg_cli_parse_int(v, 24, 512, &l))
                return fprintf(stderr, "sgps demo-world: --size must be 24..512 (got '%s')\n", v), 2;
            o.size = (int)l;
        } else if (strcmp(argv[i], "--force") == 0) force = 1;
        else if (strcmp(argv[i], "--quiet") == 0) o.progress = 0;
        else if (argv[i][0] != '-' && !out) out = argv[i];
        else return sg_cli_bad_arg("demo-world", argv, i, i);
    }
    if (!out) return fprintf(stderr, "sgps demo-world: an output folder is required (see --help)\n"), 2;
    int has = folder_has_entries(out);
    if (has < 0) return fprintf(stderr, "sgps demo-world: %s exists and is not a folder\n", out), 2;
    if (has && !force)
        return fprintf(stderr, "sgps demo-world: %s exists and is not empty; use --force to replace the world in it\n", out), 2;
    if (has && !remove_generated(out)) return 1;
    sg_err err;
    sg_demo_world w;
    if (sg_demo_world_plan(&o, &w, &err) != SG_OK) return fprintf(stderr, "sgps demo-world: %s\n", err.msg), 2;
    if (o.progress)
        sg_log(SG_LOG_INFO, "demo-world: seed %llu: %d diseases (%d training, %d held out), %d px images, writing %s",
               (unsigned long long)o.seed, w.n, w.n_train, w.n_heldout, o.size, out);
    double t0 = sg_now();
    sg_status st = sg_demo_world_write(&o, &w, out, &err);
    if (st != SG_OK) {
        fprintf(stderr, "sgps demo-world: %s\n", err.msg);
        sg_demo_world_free(&w);
        return 1;
    }
    printf("wrote %s in %.1f s: %d training diseases x %d images, %d held-out diseases "
           "(%d validation images each), %d screening images, %d tasks in %s/manifest.json\n",
           out, sg_now() - t0, w.n_train, o.per_class, w.n_heldout, w.per_val, w.n_screen, w.n_tasks, out);
    sg_demo_world_free(&w);
    return 0;
}
