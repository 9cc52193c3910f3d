/* test_synth_resume.c — `train-engine --resume`: a training run stopped in
 * stage 1 and again in stage 2, then resumed from PREFIX.state, ends with the
 * very same weights as the run that was never stopped; a state written for
 * other settings, or damaged, is refused with a message naming the file. */
#include "sg_synth_fixtures.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

enum { RS_CLASSES = 8, RS_PER_CLASS = 20 }; /* 20: validation draws 5 shots + 15 queries */


static sg_engine *make_engine(const sg_dataset *d) {
    sg_engine_config c;
    sg_engine_config_default(&c);
    c.img = 16;
    c.store = 20;
    c.width = 8;
    c.stages = 2;
    c.rank = 2;
    c.text_buckets = 256;
    c.text_dim = 8;
    c.text_hidden = 8;
    c.code_dim = 8;
    return fx_engine_for(d, c, 3);
}

static const int rs_val[2] = {6, 7};
enum { RS_STAGE1_STEPS = 21 };

static void make_opts(sg_train_opts *o, const char *prefix) {
    sg_train_opts_default(o);
    o->stage1_epochs = 3; /* 120 training images / batch 16 = 7 steps per epoch: RS_STAGE1_STEPS */
    o->batch = 16;
    o->stage2_episodes = 20; /* 10 steps of 2 episodes; validation and state every 2 steps */
    o->episodes_per_step = 2;
    o->way = 3;
    o->max_shot = 2;
    o->queries = 3;
    o->val_classes = rs_val;
    o->n_val_classes = 2;
    o->val_episodes = 4;
    o->seed = 5;
    o->log_every = 1000;
    o->checkpoint = prefix;
    o->calib_episodes = 0; /* it does not change the trajectory; left out for time */
}

static void build_data(sg_dataset *d) {
    int combos[2 * RS_CLASSES];
    for (int k = 0; k < RS_CLASSES; k++) {
        combos[2 * k] = k % FX_N_SHAPES;
        combos[2 * k + 1] = (k / 2) % FX_N_COLOURS;
    }
    fx_dataset_build(d, combos, RS_CLASSES, RS_PER_CLASS, 20, 0, 99);
}

static char *tmp_prefix(void) {
    char tmpl[] = "/tmp/sgps-resume-XXXXXX";
    char *dir = mkdtemp(tmpl);
    cr_assert(dir);
    char *p = sg_xmalloc(strlen(dir) + 16);
    sprintf(p, "%s/ck", dir);
    return p;
}

/* val_episodes = 0: no checkpoint selection, so the final weights are the
 * end of the trajectory (optimizer moments and step counts must be restored
 * exactly); > 0: the best-so-far bookkeeping must survive the stops too. */
static void stop_resume_equals_uninterrupted(int val_episodes, int sgd, int first_stop) {
    fx_init_mpi();
    sg_dataset d;
    build_data(&d);
    char *pa = tmp_prefix(), *pb = tmp_prefix();
    sg_train_opts o;
    sg_err err = {{0}};

    /* A: never stopped */
    sg_engine *a = make_engine(&d);
    make_opts(&o, pa);
    o.val_episodes = val_episodes;
    o.sgd1 = sgd;
    cr_assert(sg_engine_train(a, &d, &o, MPI_COMM_WORLD, &err) == SG_OK, "%s", err.msg);

    /* B: stopped after first_stop steps (5: mid stage-1 epoch 1; RS_STAGE1_STEPS:
     * the last stage-1 step, before the best epoch's weights are restored),
     * then in stage 2 (its step 4), then finished */
    sg_engine *b = make_engine(&d);
    make_opts(&o, pb);
    o.val_episodes = val_episodes;
    o.sgd1 = sgd;
    o.stop_after = first_stop;
    cr_assert_eq(sg_engine_train(b, &d, &o, MPI_COMM_WORLD, &err), SG_ERR_INTERRUPTED, "%s", err.msg);
    sg_engine_free(b);
    b = make_engine(&d); /* a fresh process: nothing but the files survives */
    o.resume = 1;
    o.stop_after = RS_STAGE1_STEPS + 4 - first_stop;
    cr_assert_eq(sg_engine_train(b, &d, &o, MPI_COMM_WORLD, &err), SG_ERR_INTERRUPTED, "%s", err.msg);
    cr_assert(strstr(err.msg, "stage 2"), "second stop should fall in stage 2: %s", err.msg);
    sg_engine_free(b);
    b = make_engine(&d);
    o.stop_after = 0;
    cr_assert(sg_engine_train(b, &d, &o, MPI_COMM_WORLD, &err) == SG_OK, "%s", err.msg);

    cr_assert_eq(sg_engine_n_params(a), sg_engine_n_params(b));
    cr_assert(memcmp(sg_engine_params(a), sg_engine_params(b), sizeof(float) * sg_engine_n_params(a)) == 0,
              "resumed weights differ from the uninterrupted run (crc %08x vs %08x)", sg_engine_params_crc(a),
              sg_engine_params_crc(b));
    cr_assert_eq(sg_engine_params_crc(a), sg_engine_params_crc(b));
    cr_assert(memcmp(a->state, b->state, sizeof(float) * a->base.n_state) == 0,
              "resumed running statistics differ from the uninterrupted run");
    sg_engine_free(a);
    sg_engine_free(b);
    sg_dataset_free(&d);
    free(pa);
    free(pb);
    MPI_Finalize(); /* each Criterion test is its own process */
}

Test(synth_resume, stopped_twice_then_resumed_equals_uninterrupted) {
    stop_resume_equals_uninterrupted(0, 0, 5);
}
Test(synth_resume, with_validation_selection_equals_uninterrupted) {
    stop_resume_equals_uninterrupted(4, 0, 5);
}
/* A state saved after the last stage-1 step: the resumed run must still go
 * on from the best validated epoch, not from the last one. */
Test(synth_resume, stopped_at_the_end_of_stage1_equals_uninterrupted) {
    stop_resume_equals_uninterrupted(4, 0, RS_STAGE1_STEPS);
}
/* SGD keeps its momentum in the first-moment buffer of the state file. */
Test(synth_resume, sgd_stage1_stopped_twice_then_resumed_equals_uninterrupted) {
    stop_resume_equals_uninterrupted(0, 1, 5);
}

/* The stage-1 optimizer is a real switch: the same run under SGD and AdamW
 * ends with different, finite base weights. */
Test(synth_resume, sgd_and_adamw_train_differently) {
    fx_init_mpi();
    sg_dataset d;
    build_data(&d);
    sg_train_opts o;
    sg_err err = {{0}};
    sg_engine *e[2];
    for (int k = 0; k < 2; k++) {
        e[k] = make_engine(&d);
        make_opts(&o, NULL);
        o.stage2_episodes = 0;
        o.val_episodes = 0;
        o.sgd1 = k;
        o.lr1 = k ? 0.05f : 2e-3f;
        cr_assert(sg_engine_train(e[k], &d, &o, MPI_COMM_WORLD, &err) == SG_OK, "%s", err.msg);
        const float *w = sg_engine_params(e[k]);
        for (size_t i = 0; i < sg_engine_n_params(e[k]); i++) cr_assert(isfinite(w[i]), "weight %zu not finite", i);
    }
    cr_assert(memcmp(sg_engine_params(e[0]), sg_engine_params(e[1]), sizeof(float) * sg_engine_n_params(e[0])) != 0,
              "SGD and AdamW gave the same weights");
    sg_engine_free(e[0]);
    sg_engine_free(e[1]);
    sg_dataset_free(&d);
    MPI_Finalize();
}

/* Stops once to leave a state file, then tries to resume it under `mutate`
 * (of the options) and `mutate_data` (of the training set; NULL: none). */
static void expect_resume_refused_data(void (*mutate)(sg_train_opts *o, const char *state_path),
                                       void (*mutate_data)(sg_dataset *d), sg_status want, const char *needle) {
    fx_init_mpi();
    sg_dataset d;
    build_data(&d);
    char *p = tmp_prefix();
    sg_train_opts o;
    sg_err err = {{0}};
    sg_engine *e = make_engine(&d);
    make_opts(&o, p);
    o.stop_after = 3;
    cr_assert_eq(sg_engine_train(e, &d, &o, MPI_COMM_WORLD, &err), SG_ERR_INTERRUPTED, "%s", err.msg);
    sg_engine_free(e);
    char state[512];
    snprintf(state, sizeof state, "%s.state", p);
    cr_assert(access(state, R_OK) == 0, "no %s after a stop", state);
    o.resume = 1;
    o.stop_after = 0;
    if (mutate) mutate(&o, state);
    if (mutate_data) mutate_data(&d);
    e = make_engine(&d);
    sg_status s = sg_engine_train(e, &d, &o, MPI_COMM_WORLD, &err);
    cr_assert_eq(s, want, "status %d: %s", s, err.msg);
    cr_assert(strstr(err.msg, state), "message should name %s: %s", state, err.msg);
    cr_assert(strstr(err.msg, needle), "message should say '%s': %s", needle, err.msg);
    sg_engine_free(e);
    sg_dataset_free(&d);
    free(p);
    MPI_Finalize();
}

static void expect_resume_refused(void (*mutate)(sg_train_opts *o, const char *state_path), sg_status want,
                                  const char *needle) {
    expect_resume_refused_data(mutate, NULL, want, needle);
}

/* The same labels over other images, or another description: other data. */
static void swap_two_images(sg_dataset *d) {
    size_t sz = (size_t)3 * d->store * d->store;
    uint8_t *t = sg_xmalloc(sz);
    int j = d->n - 1;
    while (j > 0 && d->label[j] == d->label[0]) j--;
    memcpy(t, d->pix, sz);
    memcpy(d->pix, d->pix + (size_t)j * sz, sz);
    memcpy(d->pix + (size_t)j * sz, t, sz);
    free(t);
}
static void other_description(sg_dataset *d) {
    free(d->class_text[1]);
    d->class_text[1] = sg_xstrdup("an entirely different finding");
}
Test(synth_resume, refuses_state_of_other_images) {
    expect_resume_refused_data(NULL, swap_two_images, SG_ERR_ARG, "different training settings or data");
}
Test(synth_resume, refuses_state_of_other_descriptions) {
    expect_resume_refused_data(NULL, other_description, SG_ERR_ARG, "different training settings or data");
}

static void other_seed(sg_train_opts *o, const char *path) {
    (void)path;
    o->seed = 6;
}

static void other_optimizer(sg_train_opts *o, const char *path) {
    (void)path;
    o->sgd1 = 1;
}

static void other_bn_group(sg_train_opts *o, const char *path) {
    (void)path;
    o->bn_group = 4;
}

static void flip_byte(sg_train_opts *o, const char *path) {
    (void)o;
    FILE *f = fopen(path, "r+b");
    cr_assert(f);
    fseek(f, 100, SEEK_SET);
    int c = fgetc(f);
    fseek(f, 100, SEEK_SET);
    fputc(c ^ 0x40, f);
    fclose(f);
}

static void truncate_file(sg_train_opts *o, const char *path) {
    (void)o;
    cr_assert(truncate(path, 200) == 0);
}

static void garbage(sg_train_opts *o, const char *path) {
    (void)o;
    FILE *f = fopen(path, "wb");
    fputs("not a training state at all, just text\n", f);
    fclose(f);
}

Test(synth_resume, refuses_state_of_other_settings) {
    expect_resume_refused(other_seed, SG_ERR_ARG, "different training settings");
}
Test(synth_resume, refuses_state_of_other_optimizer) {
    expect_resume_refused(other_optimizer, SG_ERR_ARG, "different training settings");
}
Test(synth_resume, refuses_state_of_other_bn_group) {
    expect_resume_refused(other_bn_group, SG_ERR_ARG, "different training settings");
}
Test(synth_resume, refuses_flipped_byte) { expect_resume_refused(flip_byte, SG_ERR_CHECKSUM, "checksum"); }
Test(synth_resume, refuses_truncated_state) {
    expect_resume_refused(truncate_file, SG_ERR_CHECKSUM, "truncated");
}
Test(synth_resume, refuses_wrong_magic) { expect_resume_refused(garbage, SG_ERR_FORMAT, "not an sgps training state"); }
