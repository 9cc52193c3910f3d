/* sg_cmd_adapt.c — sgps adapt-engine: an engine's normalization statistics
 * re-estimated on unlabelled images of the target domain (AdaBN). */
#include "sg_cli.h"
#include "sg_cli_data.h"

#include <stdio.h>
#include <stdlib.h>

static const char adapt_help[] =
    "usage: sgps adapt-engine --engine E.sgpe --images LIST -o OUT.sgpe [--alpha A] [--max-images N]\n\n"
    "Adapts an engine to a new image domain with unlabelled images of it (AdaBN):\n"
    "every batch norm of the base network takes the statistics of those images,\n"
    "measured norm by norm. Nothing is trained and no label is read; the weights\n"
    "stay, so synthesis, its speed and the engine size are unchanged. Use images\n"
    "of the cohort to be screened, not the images a result is measured on.\n\n"
    "  --images LIST    a CSV with a path column (paths relative to the CSV's folder),\n"
    "                   or an image set folder (its labels.csv; labels are ignored)\n"
    "  --alpha A        weight of the new statistics, in (0, 1]; the rest stays the\n"
    "                   engine's (default 0.5: better than 1 on two held-out domains,\n"
    "                   docs/results.md)\n"
    "  --max-images N   use the first N listed images (default all)\n"
    "  -o, --out FILE   the adapted engine (written atomically)\n"
    "Exit status: 0 written; 1 a file could not be read or written; 2 bad arguments.\n";

int sg_cmd_adapt_engine(int argc, char **argv) {
    const char *engine = NULL, *images = NULL, *out = NULL;
    double alpha = 0.5;
    long max_images = 0;
    for (int i = 1; i < argc; i++) {
        int i0 = i;
        const char *v;
        long l;
        if (sg_cli_is_help(argv[i])) {
            fputs(adapt_help, stdout);
            return 0;
        } else if (sg_cli_opt(argc, argv, &i, "--engine", &v)) engine = v;
        else if (sg_cli_opt(argc, argv, &i, "--images", &v)) images = v;
        else if (sg_cli_opt(argc, argv, &i, "-o", &v) || sg_cli_opt(argc, argv, &i, "--out", &v)) out = v;
        else if (sg_cli_opt(argc, argv, &i, "--max-images", &v) && sg_cli_parse_int(v, 2, 100000000, &l)) max_images = l;
        else if (sg_cli_opt(argc, argv, &i, "--alpha", &v) && sg_cli_parse_float(v, &alpha) && alpha > 0 && alpha <= 1) {
        } else return sg_cli_bad_arg("adapt-engine", argv, i0, i);
    }
    if (!engine || !images || !out) return fprintf(stderr, "sgps adapt-engine: --engine, --images and -o are required\n"), 2;
    sg_err err;
    sg_engine *e;
    if (sg_engine_load(engine, &e, &err) != SG_OK) return fprintf(stderr, "sgps adapt-engine: %s\n", err.msg), 1;
    uint8_t *pix;
    int n;
    double t0 = sg_now();
    if (sg_cli_load_images(images, sg_engine_get_config(e)->store, max_images, &pix, &n, &err) != SG_OK) {
        fprintf(stderr, "sgps adapt-engine: %s\n", err.msg);
        sg_engine_free(e);
        return 1;
    }
    sg_log(SG_LOG_INFO, "%s: %d images read (%.1f s)", images, n, sg_now() - t0);
    int code = 0;
    if (sg_engine_adapt_norm(e, n, pix, (float)alpha, &err) != SG_OK) {
        fprintf(stderr, "sgps adapt-engine: %s: %s\n", images, err.msg);
        code = 1;
    } else if (sg_engine_save(e, out, &err) != SG_OK) {
        fprintf(stderr, "sgps adapt-engine: %s\n", err.msg);
        code = 1;
    } else
        sg_log(SG_LOG_INFO, "adapted the normalization of %s to %d images (alpha %g): %s (%.1f s)", engine, n, alpha, out,
               sg_now() - t0);
    free(pix);
    sg_engine_free(e);
    return code;
}
