/* sg_cmd_adapt.c — sgps adapt-engine: an engine's normalization statistics
 * re-estimated on unlabelled images of the target domain (AdaBN). */
#include "sg_cli.h"
#include "sg_cli_data.h"
#include "sg_io.h"

#include <stdio.h>
#include <stdlib.h>

static const char adapt_help[] =
    "usage: sgps adapt-engine --engine E.sgpe (--images LIST | --shards SPEC) -o OUT.sgpe [options]\n\n"
    "Adapts an engine to a new image domain with unlabelled images of it (AdaBN):\n"
    "every batch norm of the base network moves its statistics toward those of the\n"
    "images, measured norm by norm. Nothing is trained and no label is read; the weights\n"
    "stay, and synthesis costs the same. The engine is marked as adapted: classifiers\n"
    "synthesized from it skip the support normalization unless --support-norm asks for\n"
    "it (the two did not stack; docs/engine.md). Use images of the cohort to be\n"
    "screened, not the images a result is measured on.\n\n"
    "  --images LIST    a CSV with a path column (paths relative to the CSV's folder),\n"
    "                   or an image set folder (its labels.csv, or its class subfolders;\n"
    "                   labels are ignored)\n"
    "  --shards SPEC    or the images of packed shards: an index file (*.json) or a\n"
    "                   brace pattern ('cohort-{000000..000009}.tar.zst'); labels ignored\n"
    "  --alpha A        weight of the new statistics, in (0, 1]; the rest stays the\n"
    "                   engine's (default 0.5: better than 1 on two held-out domains,\n"
    "                   docs/results.md)\n"
    "  --max-images N   at most N images (N >= 2), spread over the list or the shards:\n"
    "                   N rows evenly spaced over a longer list, an equal share of each\n"
    "                   shard (default 20000; 0: all)\n"
    "  -o, --out FILE   the adapted engine (written atomically)\n"
    "A bad image, or a shard that breaks off, is reported and skipped; the rest are used.\n"
    "Exit status: 0 written; 1 a file could not be read or written; 2 bad arguments.\n";

/* Every sample image of the shards (an index file or a brace pattern), decoded
 * at side; a bad image is skipped with a warning naming SHARD#KEY, a shard that
 * cannot be opened or breaks off is reported and the rest go on. */
static sg_status load_shard_images(const char *spec, int side, long max_images, uint8_t **pix, int *n_out,
                                   sg_err *err) {
    *pix = NULL;
    *n_out = 0;
    char **paths;
    size_t n_paths;
    sg_status s = sg_shard_list_resolve(spec, &paths, &n_paths, err);
    if (s != SG_OK) return s;
    size_t cap = 256, ssz = (size_t)3 * side * side;
    uint8_t *buf = sg_xmalloc(cap * ssz);
    int n = 0;
    long skipped = 0, bad_shards = 0;
    /* a cap: an equal share from every shard, not the first shards only */
    long share = max_images > 0 ? (max_images + (long)n_paths - 1) / (long)n_paths : 0;
    for (size_t i = 0; i < n_paths && (max_images <= 0 || n < max_images); i++) {
        int n0 = n;
        sg_shard_reader_opts o;
        sg_shard_reader_opts_default(&o);
        sg_err e2;
        sg_shard_reader *r = sg_shard_reader_open(paths[i], &o, &e2);
        if (!r) {
            sg_log(SG_LOG_WARN, "%s; shard skipped", e2.msg);
            bad_shards++;
            continue;
        }
        sg_sample *smp = NULL;
        while ((max_images <= 0 || (n < max_images && n - n0 < share)) && sg_shard_reader_next(r, &smp) == SG_OK &&
               smp) {
            if ((size_t)n == cap) {
                cap *= 2;
                buf = sg_xrealloc(buf, cap * ssz);
            }
            char name[4200];
            snprintf(name, sizeof name, "%s#%s", paths[i], smp->key);
            if (sg_image_decode_u8_planar(smp->image, smp->image_len, name, side, buf + (size_t)n * ssz, &e2) != SG_OK) {
                sg_log(SG_LOG_WARN, "%s; image skipped", e2.msg);
                skipped++;
                continue;
            }
            n++;
        }
        bad_shards += sg_shard_reader_status(r, &e2) != SG_OK; /* the reader has logged why */
        skipped += (long)sg_shard_reader_n_skipped(r);
        sg_shard_reader_free(r);
    }
    if (skipped || bad_shards)
        sg_log(SG_LOG_WARN, "%s: samples skipped: %ld; shards unreadable or cut short: %ld (see above)", spec, skipped,
               bad_shards);
    sg_strv_free(paths, n_paths);
    if (n == 0) {
        free(buf);
        return sg_err_set(err, SG_ERR_FORMAT, "%s: no images loaded", spec);
    }
    *pix = buf;
    *n_out = n;
    return SG_OK;
}

int sg_cmd_adapt_engine(int argc, char **argv) {
    const char *engine = NULL, *images = NULL, *shards = NULL, *out = NULL;
    double alpha = 0.5;
    long max_images = 20000;
    for (int i = 1; i < argc; i++) {
        int i0 = i;
        const char *v;
        long l;
        if (sg_cli_is_help(argv[i])) {
            fputs(adapt_help, stdout);
            return 0;
        } else if (sg_cli_opt(argc, argv, &i, "--engine", &v)) engine = v;
        else if (sg_cli_opt(argc, argv, &i, "--images", &v)) images = v;
        else if (sg_cli_opt(argc, argv, &i, "--shards", &v)) shards = v;
        else if (sg_cli_opt(argc, argv, &i, "-o", &v) || sg_cli_opt(argc, argv, &i, "--out", &v)) out = v;
        else if (sg_cli_opt(argc, argv, &i, "--max-images", &v) && sg_cli_parse_int(v, 0, 100000000, &l) && l != 1)
            max_images = l;
        else if (sg_cli_opt(argc, argv, &i, "--alpha", &v) && sg_cli_parse_float(v, &alpha) && alpha > 0 && alpha <= 1) {
        } else return sg_cli_bad_arg("adapt-engine", argv, i0, i);
    }
    if (!engine || !out || !images == !shards)
        return fprintf(stderr, "sgps adapt-engine: --engine, -o and one of --images or --shards are required\n"), 2;
    const char *src = images ? images : shards;
    sg_err err;
    sg_engine *e;
    if (sg_engine_load(engine, &e, &err) != SG_OK) return fprintf(stderr, "sgps adapt-engine: %s\n", err.msg), 1;
    uint8_t *pix;
    int n;
    double t0 = sg_now();
    int side = sg_engine_get_config(e)->store;
    if ((images ? sg_cli_load_images(images, side, max_images, &pix, &n, &err)
                : load_shard_images(shards, side, max_images, &pix, &n, &err)) != SG_OK) {
        fprintf(stderr, "sgps adapt-engine: %s\n", err.msg);
        sg_engine_free(e);
        return 1;
    }
    sg_log(SG_LOG_INFO, "%s: %d images read (%.1f s)", src, n, sg_now() - t0);
    int code = 0;
    if (sg_engine_adapt_norm(e, n, pix, (float)alpha, &err) != SG_OK) {
        fprintf(stderr, "sgps adapt-engine: %s: %s\n", src, err.msg);
        code = 1;
    } else if (sg_engine_save(e, out, &err) != SG_OK) {
        fprintf(stderr, "sgps adapt-engine: %s\n", err.msg);
        code = 1;
    } else
        sg_log(SG_LOG_INFO,
               "adapted the normalization of %s to %d images (alpha %g): %s (%.1f s); classifiers synthesized from it "
               "skip the support normalization unless --support-norm asks for it",
               engine, n, alpha, out, sg_now() - t0);
    free(pix);
    sg_engine_free(e);
    return code;
}
