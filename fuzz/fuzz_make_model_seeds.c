/* fuzz_make_model_seeds.c — writes small valid engines and classifiers as
 * starting points for fuzz_engine_load and fuzz_classifier_load, so the
 * fuzzers begin past the magic and the header: an engine with one
 * convolution per stage (10 configuration values), a deeper one (11), an
 * adapted one (12: the flags value), and the classifiers they synthesize for
 * a text-only task and a task with images. */
#include "sg_synth_fixtures.h" /* the tests' tiny engine configuration */

static int put(const char *dir, const char *name, const sg_buf *b) {
    char p[1100];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    sg_err err;
    if (sg_file_write_atomic(p, b->data, b->len, &err) != SG_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_make_model_seeds OUT_DIR\n");
        return 2;
    }
    char edir[1024], cdir[1024];
    snprintf(edir, sizeof edir, "%s/engine", argv[1]);
    snprintf(cdir, sizeof cdir, "%s/classifier", argv[1]);
    if (sg_mkdir_p(edir, NULL) != SG_OK || sg_mkdir_p(cdir, NULL) != SG_OK) return 1;
    sg_engine_config c = fx_tiny_config();
    int rc = 0;
    size_t ssz = (size_t)3 * c.store * c.store;
    uint8_t *pix = malloc(ssz * 4);
    for (size_t i = 0; i < ssz * 4; i++) pix[i] = (uint8_t)(i * 37 + i / 7);
    sg_task_class cls[2] = {{"a", "a small red disc", 2, pix}, {"b", "a large blue ring", 2, pix + 2 * ssz}};
    sg_task task = {2, cls};
    for (int k = 0; k < 3; k++) {
        sg_engine_config ck = c;
        if (k == 1) ck.convs[1] = 2;
        sg_engine *e = sg_engine_create(&ck, 7 + (uint64_t)k);
        sg_err err;
        if (k == 2 && sg_engine_adapt_norm(e, 4, pix, 0.5f, &err) != SG_OK) {
            fprintf(stderr, "%s\n", err.msg);
            rc = 1;
        }
        sg_buf b = {0};
        sg_engine_serialize(e, &b);
        static const char *names[3] = {"conv4.sgpe", "deep.sgpe", "adapted.sgpe"};
        rc |= put(edir, names[k], &b);
        sg_buf_free(&b);
        for (int images = 0; images < 2; images++) {
            sg_synth_opts o;
            sg_synth_opts_default(&o);
            o.use_images = images;
            sg_classifier *cl;
            if (sg_engine_synthesize(e, &task, &o, &cl, &err) != SG_OK) {
                fprintf(stderr, "%s\n", err.msg);
                rc = 1;
                continue;
            }
            sg_buf cb = {0};
            sg_classifier_serialize(cl, &cb);
            char name[64];
            snprintf(name, sizeof name, "%s-%s.sgpm", names[k], images ? "images" : "text");
            rc |= put(cdir, name, &cb);
            sg_buf_free(&cb);
            sg_classifier_free(cl);
        }
        sg_engine_free(e);
    }
    free(pix);
    if (!rc) printf("seeds: 3 engines, 6 classifiers in %s\n", argv[1]);
    return rc;
}
