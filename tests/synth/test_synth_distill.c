/* test_synth_distill.c — stage-1 distillation (sg_train_opts.teachers,
 * train-engine --teacher): the student moves toward its teachers' class
 * probabilities; weight 0 trains exactly what no teacher trains; a teacher of
 * other classes, input side or input statistics is refused before anything
 * moves; which teachers taught is part of the training state's identity.
 * The gradient of the distillation loss is checked in tests/model/test_grad.c,
 * the 1-rank = 2-rank equality of a distilled stage 1 in mpi_dataparallel. */
#include "sg_synth_fixtures.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

enum { KD_CLASSES = 4, KD_PER_CLASS = 12 };

static void build_data(sg_dataset *d) {
    const int combos[2 * KD_CLASSES] = {0, 0, 1, 1, 2, 2, 3, 3};
    fx_dataset_build(d, combos, KD_CLASSES, KD_PER_CLASS, fx_tiny_config().store, 0, 21);
}

static sg_engine *make_engine(const sg_dataset *d, uint64_t seed) {
    sg_engine_config c = fx_tiny_config();
    c.width = 8;
    return fx_engine_for(d, c, seed);
}

/* Mean over the data's images of KL(teacher || student), both stage-1
 * classifiers at temperature t, eval mode. */
static double mean_kl(const sg_engine *teacher, const sg_engine *student, const sg_dataset *d, float t) {
    int K = d->n_classes, n = d->n;
    size_t isz = (size_t)3 * student->cfg.img * student->cfg.img;
    float *x = sg_xalloc_floats((size_t)n * isz);
    sg_engine_prepare_images(student, n, d->pix, x);
    const sg_engine *who[2] = {teacher, student};
    float *p[2];
    for (int k = 0; k < 2; k++) {
        sg_ctx *ctx = sg_ctx_create(&who[k]->base_cls, n);
        const float *z = sg_net_forward(&who[k]->base_cls, ctx, who[k]->params, who[k]->state, x, n, 0);
        float *zt = sg_xalloc_floats((size_t)n * K);
        for (size_t i = 0; i < (size_t)n * K; i++) zt[i] = z[i] / t;
        p[k] = sg_xalloc_floats((size_t)n * K);
        sg_softmax(n, K, zt, p[k]);
        free(zt);
        sg_ctx_free(ctx);
    }
    double kl = 0;
    for (size_t i = 0; i < (size_t)n * K; i++)
        if (p[0][i] > 0) kl += p[0][i] * (log(p[0][i]) - log(fmax(p[1][i], 1e-30)));
    free(p[0]);
    free(p[1]);
    free(x);
    return kl / n;
}

Test(synth_distill, student_moves_toward_its_teacher) {
    fx_init_mpi();
    sg_dataset d;
    build_data(&d);
    sg_err err = {{0}};
    /* the teacher: a longer stage 1 of its own seed */
    sg_engine *teacher = make_engine(&d, 5);
    sg_train_opts o;
    fx_stage1_opts(&o, 6, 5);
    cr_assert_eq(sg_engine_train(teacher, &d, &o, MPI_COMM_WORLD, &err), SG_OK, "%s", err.msg);
    const sg_engine *tl[1] = {teacher};
    /* three students from the same start and batches: no teacher, a teacher at
       weight 0, and the teacher alone (weight 1: the labels are not used) */
    sg_engine *s[3];
    for (int k = 0; k < 3; k++) {
        s[k] = make_engine(&d, 7);
        fx_stage1_opts(&o, 2, 8);
        if (k > 0) {
            o.teachers = tl;
            o.n_teachers = 1;
            o.kd_weight = k == 1 ? 0.0f : 1.0f;
            o.kd_temp = 2.0f;
        }
        cr_assert_eq(sg_engine_train(s[k], &d, &o, MPI_COMM_WORLD, &err), SG_OK, "%s", err.msg);
        const float *w = sg_engine_params(s[k]);
        for (size_t i = 0; i < sg_engine_n_params(s[k]); i++) cr_assert(isfinite(w[i]), "student %d: weight %zu", k, i);
    }
    size_t nb = sg_engine_stage2_offset(s[0]);
    cr_assert(memcmp(sg_engine_params(s[0]), sg_engine_params(s[1]), sizeof(float) * nb) == 0,
              "a teacher at weight 0 changed what stage 1 trains");
    cr_assert(memcmp(sg_engine_params(s[0]), sg_engine_params(s[2]), sizeof(float) * nb) != 0,
              "the teacher changed nothing");
    double kl_plain = mean_kl(teacher, s[0], &d, 2.0f), kl_taught = mean_kl(teacher, s[2], &d, 2.0f);
    cr_assert(kl_taught < 0.7 * kl_plain, "KL(teacher || student) %.4g taught against %.4g untaught", kl_taught,
              kl_plain);
    /* the teacher is read only */
    sg_engine *t2 = make_engine(&d, 5);
    fx_stage1_opts(&o, 6, 5);
    cr_assert_eq(sg_engine_train(t2, &d, &o, MPI_COMM_WORLD, &err), SG_OK, "%s", err.msg);
    cr_assert_eq(sg_engine_params_crc(t2), sg_engine_params_crc(teacher), "teaching changed the teacher");
    for (int k = 0; k < 3; k++) sg_engine_free(s[k]);
    sg_engine_free(t2);
    sg_engine_free(teacher);
    sg_dataset_free(&d);
    MPI_Finalize(); /* each Criterion test is its own process */
}

Test(synth_distill, teacher_that_does_not_fit_is_refused) {
    fx_init_mpi();
    sg_dataset d;
    build_data(&d);
    sg_err err = {{0}};
    sg_engine *e = make_engine(&d, 7);
    size_t np = sg_engine_n_params(e);
    float *before = sg_xalloc_floats(np);
    memcpy(before, sg_engine_params(e), sizeof(float) * np);
    /* other classes; other input side; other input statistics; a fitting one
       with an out-of-range weight */
    sg_engine_config c = fx_tiny_config();
    c.width = 8;
    c.n_base_classes = KD_CLASSES + 1;
    sg_engine *bad[4];
    bad[0] = sg_engine_create(&c, 1);
    c.n_base_classes = KD_CLASSES;
    c.img = 10;
    c.store = 12;
    bad[1] = sg_engine_create(&c, 1);
    bad[2] = make_engine(&d, 1);
    const float m[3] = {0.1f, 0.2f, 0.3f}, sd[3] = {0.3f, 0.3f, 0.3f};
    sg_engine_set_normalization(bad[2], m, sd);
    bad[3] = make_engine(&d, 1);
    const char *why[4] = {"classes", "px", "statistics", "weight"};
    for (int k = 0; k < 4; k++) {
        const sg_engine *tl[2] = {make_engine(&d, 2), bad[k]}; /* the second of two */
        sg_train_opts o;
        fx_stage1_opts(&o, 1, 3);
        o.teachers = tl;
        o.n_teachers = 2;
        if (k == 3) o.kd_weight = 1.5f;
        cr_assert_eq(sg_engine_train(e, &d, &o, MPI_COMM_WORLD, &err), SG_ERR_ARG, "case %d", k);
        cr_assert(strstr(err.msg, why[k]) && (k == 3 || strstr(err.msg, "teacher 2 of 2")), "case %d: %s", k, err.msg);
        cr_assert(memcmp(before, sg_engine_params(e), sizeof(float) * np) == 0, "case %d: a refused run moved weights", k);
        cr_assert_eq(sg_train_teacher_fits(e, bad[k], d.n_classes, &err), k == 3 ? SG_OK : SG_ERR_ARG, "case %d", k);
        sg_engine_free((sg_engine *)tl[0]);
        sg_engine_free(bad[k]);
    }
    free(before);
    sg_engine_free(e);
    sg_dataset_free(&d);
    MPI_Finalize();
}

/* A training state written under one set of teachers is not resumed under
 * another (its hash names them); weight 0 is training without them. */
Test(synth_distill, teachers_are_part_of_the_training_state) {
    sg_dataset d;
    build_data(&d);
    sg_engine *e = make_engine(&d, 7), *t1 = make_engine(&d, 1), *t2 = make_engine(&d, 2);
    const sg_engine *one[1] = {t1}, *other[1] = {t2}, *both[2] = {t1, t2};
    sg_train_opts o;
    fx_stage1_opts(&o, 1, 3);
    uint64_t plain = sg_train_config_hash(e, &d, &o);
    o.teachers = one;
    o.n_teachers = 1;
    uint64_t h1 = sg_train_config_hash(e, &d, &o);
    o.teachers = other;
    uint64_t h2 = sg_train_config_hash(e, &d, &o);
    o.teachers = both;
    o.n_teachers = 2;
    uint64_t h12 = sg_train_config_hash(e, &d, &o);
    o.kd_temp = 3.0f;
    uint64_t h12t = sg_train_config_hash(e, &d, &o);
    o.kd_weight = 0;
    uint64_t h0 = sg_train_config_hash(e, &d, &o);
    cr_assert(plain != h1 && h1 != h2 && h1 != h12 && h12 != h12t, "teachers or their settings not in the hash");
    cr_assert_eq(h0, plain, "weight 0 should be training without teachers");
    sg_engine_free(e);
    sg_engine_free(t1);
    sg_engine_free(t2);
    sg_dataset_free(&d);
}
