/* test_synth_bngroup.c — stage 1 with batch-norm statistics per source set
 * (sg_train_opts.bn_group, train-engine --bn-group): every group of a batch
 * is drawn from one source set while the classes stay balanced; group 0 draws
 * what stage 1 always drew; the engine records how its backbone was trained
 * (file flag bit 1), and synthesis from it leaves the support normalization
 * off by default; a group that does not divide the batch is refused. The
 * 1-rank = 2-rank equality of a grouped stage 1 is mpi_dataparallel's. */
#include "sg_synth_fixtures.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

enum { BG_CLASSES = 7, BG_PER_CLASS = 10 };


/* 7 classes in 3 source sets: 0-2 in set 0, 3-4 in set 1, 5-6 in set 2. */
static const int bg_domain[BG_CLASSES] = {0, 0, 0, 1, 1, 2, 2};

static void build_data(sg_dataset *d, int S) {
    const int combos[2 * BG_CLASSES] = {0, 0, 1, 1, 2, 2, 3, 3, 0, 2, 1, 3, 2, 0};
    fx_dataset_build(d, combos, BG_CLASSES, BG_PER_CLASS, S, 0, 8);
    free(d->domain_names[0]);
    free(d->domain_names);
    d->n_domains = 3;
    d->domain_names = sg_xcalloc(3, sizeof(char *));
    for (int k = 0; k < 3; k++) {
        char n[16];
        snprintf(n, sizeof n, "set%d", k);
        d->domain_names[k] = sg_xstrdup(n);
    }
    for (int c = 0; c < BG_CLASSES; c++) d->class_domain[c] = bg_domain[c];
}

/* Stage-1 classes: all but class 6, so set 2 has a single one. */
static const int bg_cls[6] = {0, 1, 2, 3, 4, 5};

Test(synth_bngroup, groups_share_a_source_set_and_classes_stay_balanced) {
    sg_dataset d;
    build_data(&d, 12);
    enum { G = 4, N = 16, DRAWS = 3000 };
    sg_batch_sampler *s = sg_batch_sampler_create(&d, bg_cls, 6, G);
    int lab[N], img[N];
    long count[BG_CLASSES] = {0};
    sg_rng r;
    sg_rng_seed(&r, 3);
    for (int t = 0; t < DRAWS; t++) {
        sg_batch_sampler_draw(s, &r, N, lab, img);
        for (int i = 0; i < N; i++) {
            cr_assert(lab[i] >= 0 && lab[i] <= 5, "label %d is not a stage-1 class", lab[i]);
            cr_assert_eq(d.label[img[i]], lab[i], "image %d is not of its label's class", img[i]);
            cr_assert_eq(bg_domain[lab[i]], bg_domain[lab[i - i % G]], "draw %d: image %d left its group's source set",
                         t, i);
            count[lab[i]]++;
        }
    }
    /* the first image of a group draws its class among all six, the set with it;
       the others draw among that set's: each class 1/6 overall */
    double want = (double)DRAWS * N / 6;
    for (int c = 0; c < 6; c++)
        cr_assert(fabs(count[c] - want) < 0.05 * want, "class %d drawn %ld times, expected about %.0f", c, count[c],
                  want);
    cr_assert_eq(count[6], 0);
    sg_batch_sampler_free(s);
    sg_dataset_free(&d);
}

/* Without groups the sampler draws class, then image, from one stream, as
 * stage 1 did before groups (so engines trained before retrain the same),
 * and batches mix the source sets. */
Test(synth_bngroup, group_zero_draws_as_before) {
    sg_dataset d;
    build_data(&d, 12);
    enum { N = 64 };
    sg_batch_sampler *s = sg_batch_sampler_create(&d, bg_cls, 6, 0);
    int lab[N], img[N];
    sg_rng r, q;
    sg_rng_seed(&r, 11);
    sg_rng_seed(&q, 11);
    sg_batch_sampler_draw(s, &r, N, lab, img);
    int mixed = 0;
    for (int i = 0; i < N; i++) {
        int c = bg_cls[sg_rng_below(&q, 6)];
        int k = (int)sg_rng_below(&q, BG_PER_CLASS);
        cr_assert_eq(lab[i], c, "image %d: class %d, the old draw gives %d", i, lab[i], c);
        cr_assert_eq(img[i], c * BG_PER_CLASS + k, "image %d: index %d, the old draw gives %d", i, img[i],
                     c * BG_PER_CLASS + k);
        mixed |= i % 4 && bg_domain[lab[i]] != bg_domain[lab[i - i % 4]];
    }
    cr_assert(mixed, "ungrouped batches never mixed source sets");
    sg_batch_sampler_free(s);
    sg_dataset_free(&d);
}

static sg_engine *make_engine(const sg_dataset *d) {
    sg_engine_config c = fx_tiny_config();
    c.width = 8;
    return fx_engine_for(d, c, 3);
}

static void stage1_opts(sg_train_opts *o, int group) {
    fx_stage1_opts(o, 2, 9);
    o->bn_group = group;
}

Test(synth_bngroup, grouped_stage1_marks_the_engine) {
    fx_init_mpi();
    sg_dataset d;
    sg_engine_config tc = fx_tiny_config();
    build_data(&d, tc.store);
    sg_engine *e[2];
    sg_err err = {{0}};
    for (int k = 0; k < 2; k++) {
        e[k] = make_engine(&d);
        sg_train_opts o;
        stage1_opts(&o, k ? 4 : 0);
        cr_assert_eq(sg_engine_train(e[k], &d, &o, MPI_COMM_WORLD, &err), SG_OK, "%s", err.msg);
        const float *w = sg_engine_params(e[k]);
        for (size_t i = 0; i < sg_engine_n_params(e[k]); i++) cr_assert(isfinite(w[i]), "weight %zu not finite", i);
        cr_assert_eq(sg_engine_bn_by_source(e[k]), k, "grouping %d: mark %d", k, sg_engine_bn_by_source(e[k]));
    }
    cr_assert(memcmp(sg_engine_params(e[0]), sg_engine_params(e[1]),
                     sizeof(float) * sg_engine_stage2_offset(e[0])) != 0,
              "grouped batch norm trained the same weights as the ungrouped");
    /* the default support normalization: on for the ungrouped backbone, off for the grouped */
    cr_assert_eq(sg_engine_support_norm(e[0], SG_SUPPORT_NORM_AUTO), SG_SUPPORT_NORM_DEFAULT);
    cr_assert_eq(sg_engine_support_norm(e[1], SG_SUPPORT_NORM_AUTO), 0.0f);
    cr_assert_eq(sg_engine_support_norm(e[1], 0.5f), 0.5f, "an explicit weight was overridden");
    /* the mark is the 12th configuration value, bit 1, and survives the file */
    sg_buf a = {0}, b = {0};
    sg_engine_serialize(e[0], &a);
    sg_engine_serialize(e[1], &b);
    cr_assert_eq(b.len, a.len + 8, "the mark is two more configuration values (%zu vs %zu bytes)", b.len, a.len);
    cr_assert_eq(sg_get_u32le(b.data + 12 + 4 * 11), 2u, "flags value");
    sg_engine *l = NULL;
    cr_assert_eq(sg_engine_deserialize(b.data, b.len, "grouped.sgpe", &l, &err), SG_OK, "%s", err.msg);
    cr_assert_eq(sg_engine_bn_by_source(l), 1, "the mark did not survive the file");
    cr_assert_eq(sg_engine_norm_adapted(l), 0);
    /* adapting it keeps both marks */
    uint8_t *pix = d.pix;
    cr_assert_eq(sg_engine_adapt_norm(l, 8, pix, 0.5f, &err), SG_OK, "%s", err.msg);
    sg_buf c = {0};
    sg_engine_serialize(l, &c);
    cr_assert_eq(sg_get_u32le(c.data + 12 + 4 * 11), 3u, "flags value of an adapted grouped engine");
    sg_engine *l2 = NULL;
    cr_assert_eq(sg_engine_deserialize(c.data, c.len, "both.sgpe", &l2, &err), SG_OK, "%s", err.msg);
    cr_assert(sg_engine_bn_by_source(l2) && sg_engine_norm_adapted(l2));
    /* an unknown bit is refused as the work of a newer sgps */
    sg_put_u32le(c.data + 12 + 4 * 11, 7u);
    sg_put_u32le(c.data + c.len - 4, sg_crc32(0, c.data, c.len - 4));
    sg_engine *x = (sg_engine *)1;
    cr_assert_eq(sg_engine_deserialize(c.data, c.len, "flags.sgpe", &x, &err), SG_ERR_VERSION);
    cr_assert(x == NULL && strstr(err.msg, "flags.sgpe") && strstr(err.msg, "0x7") && strstr(err.msg, "upgrade"), "%s",
              err.msg);
    /* and so when only the backbone is taken (train-engine --init-backbone) */
    char path[] = "/tmp/sgps-bngroup-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, c.data, c.len), (ssize_t)c.len);
    close(fd);
    cr_assert_eq(sg_engine_load_backbone(e[0], path, &err), SG_ERR_VERSION, "%s", err.msg);
    cr_assert(strstr(err.msg, path) && strstr(err.msg, "upgrade"), "%s", err.msg);
    unlink(path);
    sg_buf_free(&a); sg_buf_free(&b); sg_buf_free(&c);
    sg_engine_free(l);
    sg_engine_free(l2);
    sg_engine_free(e[0]);
    sg_engine_free(e[1]);
    sg_dataset_free(&d);
    MPI_Finalize(); /* each Criterion test is its own process */
}

Test(synth_bngroup, group_not_dividing_the_batch_is_refused) {
    fx_init_mpi();
    sg_dataset d;
    sg_engine_config tc = fx_tiny_config();
    build_data(&d, tc.store);
    sg_engine *e = make_engine(&d);
    size_t np = sg_engine_n_params(e);
    float *before = sg_xalloc_floats(np);
    memcpy(before, sg_engine_params(e), sizeof(float) * np);
    sg_train_opts o;
    stage1_opts(&o, 3);
    sg_err err = {{0}};
    cr_assert_eq(sg_engine_train(e, &d, &o, MPI_COMM_WORLD, &err), SG_ERR_ARG);
    cr_assert(strstr(err.msg, "batch-norm group 3") && strstr(err.msg, "16"), "%s", err.msg);
    cr_assert(memcmp(before, sg_engine_params(e), sizeof(float) * np) == 0, "a refused run changed the weights");
    free(before);
    sg_engine_free(e);
    sg_dataset_free(&d);
    MPI_Finalize();
}
