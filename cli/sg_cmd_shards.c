/* sg_cmd_shards.c — `sgps shards verify INDEX` and `sgps shards ls SHARD...`:
 * checking packed shards against their index and listing their samples. */
#include "sg_cli.h"
#include "sg_io.h"

#include <stdio.h>
#include <string.h>

static void shards_usage(FILE *f) {
    fprintf(f,
            "usage: sgps shards verify INDEX\n"
            "       sgps shards ls [--decode] [--quiet] SHARD...\n\n"
            "  verify   checks every shard listed in INDEX (the JSON written by sgps pack):\n"
            "           size, sha256, and the sample count found by reading it.\n"
            "  ls       lists the samples of shards (.tar, .tar.zst, .tar.gz, detected from\n"
            "           content); SHARD may be a brace pattern (a-{000..007}.tar.zst) or an\n"
            "           index JSON. One line per sample: key, label, image, members;\n"
            "           skipped samples are reported on stderr as SHARD: key K: reason.\n"
            "           --decode also decodes each image and prints its size.\n"
            "           --quiet prints only the per-shard summary.\n\n"
            "exit status: 0 all good, 1 verification failed / samples skipped / stream\n"
            "             broken / a shard cannot be opened (ls goes on with the others),\n"
            "             2 usage error, unreadable index or bad shard pattern\n");
}

static int cmd_verify(int argc, char **argv) {
    if (argc != 2) {
        shards_usage(stderr);
        return 2;
    }
    size_t bad = 0;
    sg_err err = {{0}};
    sg_shard_index *ix;
    sg_status s = sg_shard_index_load(argv[1], &ix, &err);
    if (s != SG_OK) {
        fprintf(stderr, "sgps shards verify: %s\n", err.msg);
        return 2;
    }
    size_t n = ix->n_shards;
    uint64_t total = ix->total_samples;
    sg_shard_index_free(ix);
    double t0 = sg_now();
    s = sg_shard_index_verify(argv[1], &bad, &err);
    if (s != SG_OK) {
        fprintf(stderr, "sgps shards verify: %s\n", err.msg);
        return 1;
    }
    printf("ok: %zu shards, %llu samples verified in %.2f s\n", n, (unsigned long long)total, sg_now() - t0);
    return 0;
}

static int cmd_ls(int argc, char **argv) {
    int decode = 0, quiet = 0, rc = 0, nspec = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--decode") == 0) decode = 1;
        else if (strcmp(argv[i], "--quiet") == 0) quiet = 1;
        else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "sgps shards ls: unknown option '%s'\n", argv[i]);
            return 2;
        } else nspec++;
    }
    if (!nspec) {
        shards_usage(stderr);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-' && argv[i][1]) continue;
        char **paths;
        size_t np;
        sg_err err = {{0}};
        if (sg_shard_list_resolve(argv[i], &paths, &np, &err) != SG_OK) {
            fprintf(stderr, "sgps shards ls: %s\n", err.msg);
            return 2;
        }
        for (size_t k = 0; k < np; k++) {
            sg_shard_reader_opts o;
            sg_shard_reader_opts_default(&o);
            o.decode = decode;
            o.require_image = 0;
            o.log_skips = 0;
            sg_shard_reader *r = sg_shard_reader_open(paths[k], &o, &err);
            if (!r) { /* reported; the other shards are still listed */
                fprintf(stderr, "sgps shards ls: %s\n", err.msg);
                printf("# %s: unreadable\n", paths[k]);
                rc = 1;
                continue;
            }
            sg_sample *smp;
            uint64_t n = 0;
            while (sg_shard_reader_next(r, &smp) == SG_OK && smp) {
                n++;
                if (quiet) continue;
                printf("%s\t", smp->key);
                if (smp->label >= 0) printf("%d", smp->label);
                else printf("-");
                if (smp->label_str) printf(" (%s)", smp->label_str);
                if (smp->image) printf("\t%s %zu B", smp->image_ext, smp->image_len);
                else printf("\t-");
                if (decode && smp->img.rgb) printf(" %dx%d", smp->img.w, smp->img.h);
                printf("\t");
                for (size_t m = 0; m < smp->n_members; m++) printf("%s.%s", m ? "," : "", smp->members[m].ext);
                printf("\n");
            }
            uint64_t sk = sg_shard_reader_n_skipped(r);
            for (size_t m = 0; m < sg_shard_reader_n_messages(r); m++)
                fprintf(stderr, "%s\n", sg_shard_reader_message(r, m));
            uint64_t counts[SG_SKIP__COUNT];
            sg_shard_reader_skips(r, counts);
            printf("# %s: %llu samples, %llu skipped", paths[k], (unsigned long long)n, (unsigned long long)sk);
            for (int c = 0; c < SG_SKIP__COUNT; c++)
                if (counts[c]) printf(", %s %llu", sg_skip_reason_str((sg_skip_reason)c), (unsigned long long)counts[c]);
            printf("\n");
            if (sk) rc = 1;
            sg_shard_reader_free(r);
        }
        sg_strv_free(paths, np);
    }
    return rc;
}

int sg_cmd_shards(int argc, char **argv) {
    if (argc < 2 || sg_cli_is_help(argv[1])) {
        shards_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (int i = 2; i < argc; i++)
        if (sg_cli_is_help(argv[i])) {
            shards_usage(stdout);
            return 0;
        }
    if (strcmp(argv[1], "verify") == 0) return cmd_verify(argc - 1, argv + 1);
    if (strcmp(argv[1], "ls") == 0) return cmd_ls(argc - 1, argv + 1);
    fprintf(stderr, "sgps shards: unknown subcommand '%s' (verify, ls)\n", argv[1]);
    return 2;
}
