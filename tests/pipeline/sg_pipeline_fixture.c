/* sg_pipeline_fixture.c — writes the pipeline test world into a folder, for
 * the MPI/CLI tests driven by run_mpi_tests.sh:
 *   sg_pipeline_fixture DIR [--shards N] [--samples N] [--corrupt-shard I] [--bad-exemplar] [--batch N] [--open-set] */
#include "sg_pipeline_fixtures.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: sg_pipeline_fixture DIR [--shards N] [--samples N] [--corrupt-shard I] "
                        "[--bad-exemplar] [--batch N] [--open-set]\n");
        return 2;
    }
    fxp_opts o;
    fxp_opts_default(&o);
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--bad-exemplar") == 0) o.bad_exemplar = 1;
        else if (strcmp(argv[i], "--open-set") == 0) o.open_set = 1;
        else if (i + 1 < argc && strcmp(argv[i], "--shards") == 0) o.shards = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--samples") == 0) o.samples = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--corrupt-shard") == 0) o.corrupt_shard = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--batch") == 0) o.batch = atoi(argv[++i]);
        else {
            fprintf(stderr, "sg_pipeline_fixture: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (mkdir(argv[1], 0755) != 0 && access(argv[1], W_OK) != 0) {
        perror(argv[1]);
        return 1;
    }
    fxp_make_world(argv[1], &o);
    return 0;
}
