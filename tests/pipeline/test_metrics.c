/* test_metrics.c — per-task metrics against hand-computed values: AUROC
 * (ties, perfect, inverted, undefined), balanced accuracy and macro-F1,
 * sensitivity/specificity at the operating point, ECE bins, and the seeded
 * bootstrap interval. */
#include "sg_jobs.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

Test(pipeline, auroc_hand_values) {
    float s1[] = {0.1f, 0.4f, 0.35f, 0.8f};
    uint8_t p1[] = {0, 0, 1, 1};
    cr_assert_float_eq(sg_auroc(4, s1, 1, p1), 0.75, 1e-12); /* the sklearn doc example */
    float s2[] = {0.1f, 0.2f, 0.3f, 0.4f};
    uint8_t p2[] = {0, 0, 1, 1}, p3[] = {1, 1, 0, 0};
    cr_assert_float_eq(sg_auroc(4, s2, 1, p2), 1.0, 1e-12);
    cr_assert_float_eq(sg_auroc(4, s2, 1, p3), 0.0, 1e-12);
    float s4[] = {0.5f, 0.5f, 0.5f, 0.5f};
    cr_assert_float_eq(sg_auroc(4, s4, 1, p2), 0.5, 1e-12); /* all tied: half credit */
    uint8_t none[] = {0, 0, 0, 0};
    cr_assert(isnan(sg_auroc(4, s2, 1, none)));
    /* stride: second column of a (4, 2) matrix */
    float m[] = {9, 0.1f, 9, 0.4f, 9, 0.35f, 9, 0.8f};
    cr_assert_float_eq(sg_auroc(4, m + 1, 2, p1), 0.75, 1e-12);
}

/* 3 classes, 6 labelled rows + 1 unlabelled. */
static const int lab[] = {0, 0, 1, 1, 2, 2, -1};
static const int pred[] = {0, 1, 1, 1, 2, 0, 2};
static const float sc[] = {
    0.7f, 0.2f, 0.1f, /* 0 → 0 */
    0.3f, 0.6f, 0.1f, /* 0 → 1 */
    0.1f, 0.8f, 0.1f, /* 1 → 1 */
    0.2f, 0.5f, 0.3f, /* 1 → 1 */
    0.1f, 0.1f, 0.8f, /* 2 → 2 */
    0.5f, 0.1f, 0.4f, /* 2 → 0 */
    0.0f, 0.1f, 0.9f, /* unlabelled */
};

Test(pipeline, metrics_hand_values) {
    sg_metrics m;
    sg_metrics_compute(7, 3, lab, pred, sc, 0.5, 1000, 1, 0, &m);
    cr_assert_eq(m.n_total, 7);
    cr_assert_eq(m.n, 6);
    int64_t cm[9] = {1, 1, 0, 0, 2, 0, 1, 0, 1};
    for (int i = 0; i < 9; i++) cr_assert_eq(m.confusion[i], cm[i], "confusion[%d]", i);
    cr_assert_eq(m.support[0], 2);
    cr_assert_float_eq(m.accuracy, 4.0 / 6, 1e-12);
    cr_assert_float_eq(m.balanced_accuracy, (0.5 + 1.0 + 0.5) / 3, 1e-12);
    /* F1: class 0 P=1/2 R=1/2 → .5; class 1 P=2/3 R=1 → .8; class 2 P=1 R=1/2 → 2/3 */
    cr_assert_float_eq(m.macro_f1, (0.5 + 0.8 + 2.0 / 3) / 3, 1e-12);
    /* class 0 at threshold .5: positives rows 0,1 (scores .7,.3) → sens 1/2; negatives 2..5 (.1,.2,.1,.5) → one ≥ .5 → spec 3/4 */
    cr_assert_float_eq(m.sensitivity[0], 0.5, 1e-12);
    cr_assert_float_eq(m.specificity[0], 0.75, 1e-12);
    /* flagged counts every row, labelled or not: class 2 scores ≥ .5: .8, .9 */
    cr_assert_eq(m.flagged[2], 2);
    /* AUROC class 0: pos {.7,.3} vs neg {.1,.2,.1,.5}: .7 beats 4, .3 beats 3 → 7/8 */
    cr_assert_float_eq(m.auroc[0], 7.0 / 8, 1e-12);
    cr_assert(m.auroc_lo[0] <= m.auroc[0] && m.auroc[0] <= m.auroc_hi[0]);
    cr_assert(m.auroc_lo[0] < m.auroc_hi[0], "a 6-row bootstrap must have a wide interval");
    /* ECE: confidences .7,.6,.8,.5,.8,.5 (top-class), correct 1,0,1,1,1,0; 15 bins of width 1/15 */
    double ece = 0;
    /* bins: .5→7 (.5 and .5: rows 3 and 5: acc 1/2, conf .5), .6→9 (acc 0), .7→10 (acc 1), .8→12 (two rows, acc 1) */
    ece += 2.0 / 6 * fabs(0.5 - 0.5) + 1.0 / 6 * fabs(0 - 0.6) + 1.0 / 6 * fabs(1 - 0.7) + 2.0 / 6 * fabs(1 - 0.8);
    cr_assert_float_eq(m.ece, ece, 1e-6);
    cr_assert_eq(m.ece_count[7] + m.ece_count[9] + m.ece_count[10] + m.ece_count[12], 6);
    sg_metrics_free(&m);
}

Test(pipeline, bootstrap_is_seeded) {
    sg_metrics a, b, c;
    sg_metrics_compute(7, 3, lab, pred, sc, 0.5, 1000, 42, 7, &a);
    sg_metrics_compute(7, 3, lab, pred, sc, 0.5, 1000, 42, 7, &b);
    sg_metrics_compute(7, 3, lab, pred, sc, 0.5, 1000, 43, 7, &c);
    int differs = 0;
    for (int k = 0; k < 3; k++) {
        cr_assert_eq(a.auroc_lo[k], b.auroc_lo[k]);
        cr_assert_eq(a.auroc_hi[k], b.auroc_hi[k]);
        differs |= a.auroc_lo[k] != c.auroc_lo[k] || a.auroc_hi[k] != c.auroc_hi[k];
    }
    cr_assert(differs, "another seed should move some interval bound");
    sg_metrics_free(&a);
    sg_metrics_free(&b);
    sg_metrics_free(&c);
}

Test(pipeline, metrics_without_labels) {
    int l[] = {-1, -1};
    int p[] = {0, 1};
    float s[] = {0.9f, 0.1f, 0.2f, 0.8f};
    sg_metrics m;
    sg_metrics_compute(2, 2, l, p, s, 0.5, 1000, 1, 0, &m);
    cr_assert_eq(m.n, 0);
    cr_assert(isnan(m.balanced_accuracy) && isnan(m.auroc[0]) && isnan(m.ece));
    cr_assert_eq(m.flagged[0], 1);
    cr_assert_eq(m.hist[0 * SG_HIST_BINS + 18], 1); /* 0.9 → bin 18 of 20 */
    sg_metrics_free(&m);
}

Test(pipeline, auroc_class_absent_is_undefined) {
    int l[] = {0, 0, 1};
    int p[] = {0, 0, 1};
    float s[] = {0.8f, 0.1f, 0.1f, 0.7f, 0.2f, 0.1f, 0.1f, 0.8f, 0.1f};
    sg_metrics m;
    sg_metrics_compute(3, 3, l, p, s, 0.5, 1000, 1, 0, &m);
    cr_assert(isnan(m.auroc[2]) && isnan(m.auroc_lo[2]));
    cr_assert(isnan(m.recall[2]));
    cr_assert_float_eq(m.balanced_accuracy, 1.0, 1e-12); /* over classes with support */
    sg_metrics_free(&m);
}

/* Worklist file names tell every pair of class ids apart (':' and '/' used to
 * become '_', so orpha:2, orpha_2 and orpha/2 shared one file), and stay within
 * SG_WORKLIST_NAME_MAX bytes for the longest ids validation lets through. */
Test(pipeline, worklist_names_injective_and_bounded) {
    char a[SG_WORKLIST_NAME_MAX + 1], b[SG_WORKLIST_NAME_MAX + 1], c[SG_WORKLIST_NAME_MAX + 1];
    sg_jobs_worklist_name("orpha:2", a);
    sg_jobs_worklist_name("orpha_2", b);
    sg_jobs_worklist_name("orpha/2", c);
    cr_assert_str_eq(a, "worklist-orpha%3A2.csv");
    cr_assert_str_eq(b, "worklist-orpha_2.csv");
    cr_assert_str_eq(c, "worklist-orpha%2F2.csv");
    sg_jobs_worklist_name("ham10000/mel.v2-x", a);
    cr_assert_str_eq(a, "worklist-ham10000%2Fmel.v2-x.csv");
    /* 200 characters (the most an id may have), most of them escaped */
    char id1[201], id2[201];
    for (int i = 0; i < 200; i++) id1[i] = i % 2 ? ':' : 'a';
    id1[200] = 0;
    memcpy(id2, id1, sizeof id1);
    id2[198] = 'b';
    sg_jobs_worklist_name(id1, a);
    sg_jobs_worklist_name(id2, b);
    cr_assert_leq(strlen(a), SG_WORKLIST_NAME_MAX, "%zu bytes", strlen(a));
    cr_assert_leq(strlen(a) + SG_FILE_TMP_SUFFIX_LEN, 255);
    cr_assert(strchr(a, '~') && strncmp(a, "worklist-a%3Aa", 14) == 0 && strcmp(a + strlen(a) - 4, ".csv") == 0, "%s", a);
    cr_assert_str_neq(a, b, "ids that differ past the cut still get two files");
    /* 200 plain characters need no cut */
    memset(id1, 'z', 200);
    sg_jobs_worklist_name(id1, a);
    cr_assert_eq(strlen(a), 213);
    cr_assert_null(strchr(a, '~'));
}

/* The temporary name of an atomic write has a fixed-length suffix: a final
 * name of 255 - SG_FILE_TMP_SUFFIX_LEN bytes (a worklist of the longest class
 * id) can be written on a host with a 64-character name, and nothing is left
 * beside it. Needs a UTS namespace for the host name (skipped without). */
Test(pipeline, atomic_write_long_name_long_host) {
    if (unshare(CLONE_NEWUTS) != 0) cr_skip_test("no UTS namespace here (unshare: %s)", strerror(errno));
    char host[65];
    memset(host, 'h', 64);
    host[64] = 0;
    if (sethostname(host, 64) != 0) cr_skip_test("sethostname: %s", strerror(errno));
    char dir[] = "/tmp/sgpipe-atomic-XXXXXX";
    cr_assert(mkdtemp(dir));
    char name[SG_WORKLIST_NAME_MAX + 1], path[512];
    memset(name, 'w', SG_WORKLIST_NAME_MAX);
    name[SG_WORKLIST_NAME_MAX] = 0;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    sg_err err;
    for (int i = 0; i < 3; i++) cr_assert_eq(sg_file_write_atomic(path, "x\n", 2, &err), SG_OK, "%s", err.msg);
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) n += de->d_name[0] != '.';
    closedir(d);
    cr_assert_eq(n, 1, "only the final file is left");
    unlink(path);
    rmdir(dir);
}
