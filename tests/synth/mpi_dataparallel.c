/* mpi_dataparallel.c — data-parallel equivalence of stage-2 meta-training:
 * the same episodes trained on 1 rank and on 2 ranks must give the same
 * parameters up to float summation order, and every rank must hold
 * identical parameters.
 *
 *   mpirun -n P mpi_dataparallel run OUT   trains a tiny engine (no stage 1,
 *        STEPS steps of E episodes, no validation) on a generated dataset,
 *        checks that the parameters' CRC is equal on all ranks, that the
 *        frozen base did not move and the generator did, and (rank 0)
 *        writes the parameters to OUT.
 *   mpirun -n P mpi_dataparallel run1 OUT  the same for stage 1 with batch-norm
 *        groups (bn_group 4, batch 16, three source sets): the groups, and
 *        so the batch-norm statistics, do not depend on the rank count; the
 *        base must move and the engine be marked.
 *   mpirun -n P mpi_dataparallel run1kd OUT  stage 1 distilled from a teacher
 *        (weight 0.5, T 2; the groups as run1): each rank's teacher targets
 *        are for its own share of the batch.
 *   mpi_dataparallel compare A B           max |a − b| / max(1, |b|) ≤ 1e-5.
 *   mpirun -n P mpi_dataparallel resume DIR  stage 1 stopped mid-epoch and resumed
 *        equals the straight run bit for bit, statistics included (resume_case).
 *
 * E is odd, so the ranks hold unequal shares of a step. Several steps, not
 * one: AdamW's first step is lr·sign(g) and would hide gradients that are
 * wrong in magnitude; later steps mix gradients of different steps.
 * Exit status 0 on success; messages on stderr. Registered in tests.cmake. */
#include "sg_synth_fixtures.h"

enum { E_PER_STEP = 5, STEPS = 3 };

static int fail(const char *what) {
    fprintf(stderr, "mpi_dataparallel: FAIL: %s\n", what);
    return 1;
}

/* The data set of every case: 6 shape × colour classes of 10 images, one
 * domain; the engine configuration that fits it. */
static void tiny_data(sg_dataset *d, sg_engine_config *c) {
    static const int combos[12] = {0, 0, 1, 1, 2, 2, 3, 3, 0, 2, 1, 3};
    *c = fx_tiny_config();
    c->width = 8;
    c->n_base_classes = 6;
    fx_dataset_build(d, combos, 6, 10, c->store, 1, 3);
}

static int run(const char *out, int stage1, int distil) {
    int rank, P;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &P);
    /* 6 shape × colour classes, one domain (stage 1: three, two classes each) */
    sg_dataset d;
    sg_engine_config c;
    tiny_data(&d, &c);
    if (stage1) {
        free(d.domain_names[0]);
        free(d.domain_names);
        d.n_domains = 3;
        d.domain_names = sg_xcalloc(3, sizeof(char *));
        for (int k = 0; k < 3; k++) d.domain_names[k] = sg_xstrdup(k == 0 ? "a" : k == 1 ? "b" : "c");
        for (int k = 0; k < 6; k++) d.class_domain[k] = k / 2;
    }
    sg_engine *e = sg_engine_create(&c, 9);
    fx_engine_perturb(e, 10, 0.1f);
    size_t np = sg_engine_n_params(e), s2 = sg_engine_stage2_offset(e);
    float *init = sg_xalloc_floats(np);
    memcpy(init, sg_engine_params(e), sizeof(float) * np);

    sg_train_opts o;
    sg_train_opts_default(&o);
    o.stage1_epochs = 0;
    o.stage2_episodes = E_PER_STEP * STEPS;
    o.episodes_per_step = E_PER_STEP;
    o.n_val_classes = 0;
    o.val_episodes = 0;
    o.way = 3;
    o.max_shot = 2;
    o.queries = 2;
    o.lr2 = 1e-2f;
    o.seed = 17;
    o.log_every = 1000;
    if (stage1) { /* grouped batch norm: the same groups on any rank count dividing batch / group */
        o.stage1_epochs = 3;
        o.batch = 16;
        o.bn_group = 4;
        o.sgd1 = 1;
        o.lr1 = 0.05f;
        o.stage2_episodes = 0;
        o.calib_episodes = 0;
    }
    sg_engine *teacher = NULL;
    const sg_engine *tl[1];
    if (distil) { /* with the groups too: batch norm over a rank's whole batch would differ with the rank count */
        teacher = sg_engine_create(&c, 4);
        fx_engine_perturb(teacher, 11, 0.1f);
        tl[0] = teacher;
        o.teachers = tl;
        o.n_teachers = 1;
        o.kd_weight = 0.5f;
        o.kd_temp = 2.0f;
    }
    sg_err err = {{0}};
    sg_status st = sg_engine_train(e, &d, &o, MPI_COMM_WORLD, &err);
    int bad = 0;
    if (st != SG_OK) {
        fprintf(stderr, "rank %d: sg_engine_train: %s\n", rank, err.msg);
        bad = 1;
    }
    uint32_t crc = sg_engine_params_crc(e), lo, hi;
    MPI_Allreduce(&crc, &lo, 1, MPI_UINT32_T, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&crc, &hi, 1, MPI_UINT32_T, MPI_MAX, MPI_COMM_WORLD);
    if (lo != hi) bad |= fail("ranks hold different parameters after training");
    const float *p = sg_engine_params(e);
    size_t moved = 0;
    if (stage1) {
        for (size_t i = 0; i < s2; i++) moved += p[i] != init[i];
        if (moved < s2 / 2) bad |= fail("stage 1 barely moved the base");
        if (!sg_engine_bn_by_source(e)) bad |= fail("the grouped stage 1 did not mark the engine");
    } else {
        if (memcmp(p, init, sizeof(float) * s2) != 0) bad |= fail("stage 2 moved the frozen base");
        for (size_t i = s2; i < np; i++) moved += p[i] != init[i];
        if (moved < (np - s2) / 4) bad |= fail("stage 2 barely moved the generator");
    }
    if (rank == 0 && !bad) {
        FILE *f = fopen(out, "wb");
        uint64_t n = np;
        if (!f || fwrite(&n, sizeof n, 1, f) != 1 || fwrite(p, sizeof(float), np, f) != np || fclose(f) != 0)
            bad |= fail("cannot write the parameter dump");
        else
            fprintf(stderr, "mpi_dataparallel: %d rank(s), %zu parameters (%zu moved), CRC %08x -> %s\n", P, np, moved, crc,
                    out);
    }
    int any = 0;
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    sg_engine_free(e);
    sg_engine_free(teacher);
    sg_dataset_free(&d);
    free(init);
    return any;
}

/* resume DIR: stage 1 on P ranks with batch norm over each rank's own batch
 * (so the ranks' running statistics differ between synchronizations), once
 * straight through and once stopped in the middle of an epoch and resumed
 * from DIR/ck.state in a fresh engine: parameters and running statistics must
 * be bit-identical on every rank. Then the state is refused on another rank
 * count (checked by the 1-rank half of the test, which finds a 2-rank state). */
static int resume_case(const char *dir) {
    int rank, P;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &P);
    sg_dataset d;
    sg_engine_config c;
    tiny_data(&d, &c);
    sg_train_opts o;
    sg_train_opts_default(&o);
    o.stage1_epochs = 3; /* 60 images / batch 16: 3 steps an epoch */
    o.batch = 16;
    o.sgd1 = 1;
    o.lr1 = 0.05f;
    o.stage2_episodes = 0;
    o.calib_episodes = 0;
    o.val_episodes = 0;
    o.seed = 23;
    o.log_every = 1000;
    char prefix[4200];
    snprintf(prefix, sizeof prefix, "%s/ck-np%d", dir, P);
    o.checkpoint = prefix;
    sg_err err = {{0}};
    int bad = 0;
    sg_engine *a = sg_engine_create(&c, 9);
    if (sg_engine_train(a, &d, &o, MPI_COMM_WORLD, &err) != SG_OK) bad |= fail(err.msg);
    sg_engine *b = sg_engine_create(&c, 9);
    o.stop_after = 4; /* the middle of epoch 2 */
    if (sg_engine_train(b, &d, &o, MPI_COMM_WORLD, &err) != SG_ERR_INTERRUPTED) bad |= fail("the stop did not stop");
    sg_engine_free(b);
    b = sg_engine_create(&c, 9);
    o.stop_after = 0;
    o.resume = 1;
    if (sg_engine_train(b, &d, &o, MPI_COMM_WORLD, &err) != SG_OK) bad |= fail(err.msg);
    if (memcmp(a->params, b->params, sizeof(float) * a->n_params) != 0)
        bad |= fail("resumed parameters differ from the uninterrupted run's");
    if (memcmp(a->state, b->state, sizeof(float) * a->base.n_state) != 0)
        bad |= fail("resumed running statistics differ from the uninterrupted run's");
    /* the other half's state, written on another rank count, is refused */
    char other[4300];
    snprintf(other, sizeof other, "%s/ck-np%d.state", dir, P == 1 ? 2 : 1);
    FILE *f = fopen(other, "rb");
    if (f) {
        fclose(f);
        snprintf(prefix, sizeof prefix, "%s/ck-np%d", dir, P == 1 ? 2 : 1);
        sg_engine *x = sg_engine_create(&c, 9);
        sg_status st = sg_engine_train(x, &d, &o, MPI_COMM_WORLD, &err);
        /* rank 0 reads the state and says why; the others learn that it failed */
        if (st == SG_OK || (rank == 0 && !strstr(err.msg, "resume it on as many")))
            bad |= fail("a state of another rank count was not refused");
        sg_engine_free(x);
    }
    int any = 0;
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (rank == 0 && !any) fprintf(stderr, "mpi_dataparallel: resume on %d rank(s): bit-identical\n", P);
    sg_engine_free(a);
    sg_engine_free(b);
    sg_dataset_free(&d);
    return any;
}

static float *read_dump(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    uint64_t k = 0;
    if (!f || fread(&k, sizeof k, 1, f) != 1 || k == 0 || k > ((uint64_t)1 << 30)) {
        if (f) fclose(f);
        return NULL;
    }
    float *v = sg_xalloc_floats(k);
    size_t got = fread(v, sizeof(float), k, f);
    fclose(f);
    if (got != k) {
        free(v);
        return NULL;
    }
    *n = k;
    return v;
}

static int compare(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    float *pa = read_dump(a, &na), *pb = read_dump(b, &nb);
    if (!pa || !pb) return fail("cannot read a parameter dump");
    if (na != nb) return fail("dumps differ in size");
    double w = fx_max_rel_diff(pa, pb, na);
    size_t diff = 0;
    for (size_t i = 0; i < na; i++) diff += pa[i] != pb[i];
    fprintf(stderr, "mpi_dataparallel: %zu parameters, %zu not bit-identical, max relative difference %.3g\n", na, diff, w);
    free(pa);
    free(pb);
    return w <= 1e-5 ? 0 : fail("1-rank and 2-rank training differ by more than 1e-5");
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "compare") == 0) return compare(argv[2], argv[3]);
    if (argc == 3 && strcmp(argv[1], "resume") == 0) {
        MPI_Init(&argc, &argv);
        int rc = resume_case(argv[2]);
        MPI_Finalize();
        return rc;
    }
    int mode = argc == 3 ? (!strcmp(argv[1], "run") ? 0 : !strcmp(argv[1], "run1") ? 1 : !strcmp(argv[1], "run1kd") ? 2 : -1)
                         : -1;
    if (mode < 0) {
        fprintf(stderr, "usage: mpirun -n P %s run|run1|run1kd OUT | %s compare A B\n", argv[0], argv[0]);
        return 2;
    }
    MPI_Init(&argc, &argv);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    sg_log_set_rank(rank);
    sg_log_set_level(SG_LOG_WARN);
    int rc = run(argv[2], mode >= 1, mode == 2);
    MPI_Finalize();
    return rc;
}
