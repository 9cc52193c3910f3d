/* sgps_main.c — the sgps binary: dispatches to subcommands. */
#include "sg_cli.h"

#include <cblas.h>
#include "sg_cli_demo.h"

#include <stdio.h>
#include <string.h>

static const sg_command commands[] = {
    /* one line per command, in workflow order */
    {"pack", "pack an image folder or CSV list into WebDataset shards", sg_cmd_pack},
    {"shards", "verify packed shards against their index, list samples", sg_cmd_shards},
    {"train-engine", "meta-train an engine (MPI data-parallel)", sg_cmd_train_engine},
    {"synth", "synthesize a classifier for one task, with no training", sg_cmd_synth},
    {"classify", "run a classifier (.sgpm) over image files", sg_cmd_classify},
    {"adapt-engine", "adapt an engine's normalization to unlabelled images of a new domain", sg_cmd_adapt_engine},
    {"eval-fewshot", "few-shot evaluation: SGPS against ProtoNet, linear probe, fine-tuning", sg_cmd_eval_fewshot},
    {"demo-world", "generate a seeded synthetic rare-disease world (images, texts, shards, manifest)", sg_cmd_demo_world},
    {"validate", "check a run manifest and its registry, reporting every problem", sg_cmd_validate},
    {"run", "run a manifest's tasks over their shards (MPI batch job)", sg_cmd_run},
    {"submit", "submit a manifest as a Slurm batch job, sized to its work units", sg_cmd_submit},
    {"selftest", "train a small CNN on a generated task, end to end", sg_cmd_selftest},
};

static void usage(FILE *f) {
    fprintf(f, "usage: sgps <command> [options]   (sgps <command> --help for details)\n\n"
               "sgps synthesizes task-specific image classifiers for rare diseases from\n"
               "1-5 example images and a clinical description, with no training on the task.\n\n"
               "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n  --version      print the version and git hash\n  --help         this text\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (sg_cli_is_help(argv[1])) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("sgps %s (git %s)\n", SG_VERSION_STRING, sg_git_hash);
        return 0;
    }
    /* One BLAS thread per process whatever OPENBLAS_NUM_THREADS says: the
     * convolution kernel depends on the thread count, so this keeps synth,
     * classify and run byte-identical to each other; ranks are the parallelism
     * (train-engine --threads overrides it). */
    openblas_set_num_threads(1);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "sgps: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
