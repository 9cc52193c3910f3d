/* sg_open_set.c — open-set ("none of these") decisions: the threshold of a
 * task (fixed, default, or calibrated on labelled reference shards) and how
 * rejection performed when the images' labels are known. Rules: sg_jobs.h
 * and docs/formats-manifest.md. */
#include "sg_jobs.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void sg_open_set_best(size_t n, int k, const float *score, float *best) {
    for (size_t i = 0; i < n; i++) {
        const float *s = score + i * (size_t)k;
        float b = s[0];
        for (int c = 1; c < k; c++)
            if (s[c] > b) b = s[c];
        best[i] = b;
    }
}

static int cmp_float_desc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x > y ? -1 : x < y;
}

typedef struct scored {
    float s;
    uint8_t in;
} scored;

static int cmp_scored(const void *a, const void *b) {
    const scored *x = a, *y = b;
    return x->s < y->s ? -1 : x->s > y->s;
}

void sg_open_set_calibrate(const sg_open_set *os, int k, size_t n, const float *best, const int *label,
                           sg_open_calibration *out) {
    memset(out, 0, sizeof *out);
    out->ref_accept_rate = out->ref_reject_rate = NAN;
    out->rule = os->rule;
    if (os->fixed) {
        out->threshold = os->threshold;
        out->source = "fixed";
        return;
    }
    out->threshold = sg_open_set_default_threshold(k);
    out->source = "default";
    if (!os->n_ref_shards) return;
    float *in = sg_xmalloc((n ? n : 1) * sizeof *in);
    scored *all = sg_xmalloc((n ? n : 1) * sizeof *all);
    size_t n_all = 0;
    for (size_t i = 0; i < n; i++) {
        if (label[i] >= 0) {
            in[out->ref_in_set++] = best[i];
            all[n_all++] = (scored){best[i], 1};
        } else if (label[i] == SG_LABEL_NONE) {
            out->ref_out_of_set++;
            all[n_all++] = (scored){best[i], 0};
        }
    }
    size_t n_in = out->ref_in_set, n_out = out->ref_out_of_set;
    if (n_in == 0) {
        snprintf(out->note, sizeof out->note,
                 "the reference shards gave no image labelled with one of the task's classes: default threshold used");
        free(in);
        free(all);
        return;
    }
    sg_open_rule rule = os->rule;
    if (rule == SG_OPEN_RULE_AUTO) rule = n_out ? SG_OPEN_RULE_BALANCED : SG_OPEN_RULE_ACCEPT;
    if (rule == SG_OPEN_RULE_BALANCED && !n_out) {
        snprintf(out->note, sizeof out->note,
                 "rule balanced needs reference images labelled out of set (null); there were none: rule accept used");
        rule = SG_OPEN_RULE_ACCEPT;
    }
    out->rule = rule;
    out->source = "reference";
    float thr;
    if (rule == SG_OPEN_RULE_ACCEPT) {
        qsort(in, n_in, sizeof *in, cmp_float_desc);
        double want = ceil(os->accept * (double)n_in - 1e-9);
        size_t m = want < 1 ? 1 : want > (double)n_in ? n_in : (size_t)want;
        thr = in[m - 1];
    } else {
        /* sweep the distinct scores upward: at candidate c, in-set accepted
         * = in-set with s >= c, out-of-set rejected = out-of-set with s < c */
        qsort(all, n_all, sizeof *all, cmp_scored);
        size_t in_below = 0, out_below = 0;
        double best_ba = -1;
        thr = all[0].s;
        for (size_t i = 0; i < n_all;) {
            float c = all[i].s;
            double ba = 0.5 * ((double)(n_in - in_below) / (double)n_in + (double)out_below / (double)n_out);
            if (ba > best_ba) {
                best_ba = ba;
                thr = c;
            }
            while (i < n_all && all[i].s == c) {
                if (all[i].in) in_below++;
                else out_below++;
                i++;
            }
        }
    }
    out->threshold = (double)thr;
    size_t acc = 0, rej = 0;
    for (size_t i = 0; i < n_all; i++) {
        if (all[i].in) acc += all[i].s >= thr;
        else rej += all[i].s < thr;
    }
    out->ref_accept_rate = (double)acc / (double)n_in;
    if (n_out) out->ref_reject_rate = (double)rej / (double)n_out;
    free(in);
    free(all);
}

void sg_open_metrics_compute(size_t n, int k, const int *label, const int *pred, const float *best, double threshold,
                             uint8_t *rejected, sg_open_metrics *m) {
    memset(m, 0, sizeof *m);
    m->k = k;
    m->threshold = threshold;
    m->images = n;
    size_t K1 = (size_t)k + 1;
    m->confusion = sg_xcalloc(K1 * K1, sizeof *m->confusion);
    float *lb = sg_xmalloc((n ? n : 1) * sizeof *lb);
    uint8_t *pos = sg_xmalloc(n ? n : 1);
    size_t nl = 0;
    for (size_t i = 0; i < n; i++) {
        int rej = (double)best[i] < threshold;
        rejected[i] = (uint8_t)rej;
        m->rejected += (size_t)rej;
        int col = rej ? k : pred[i];
        if (label[i] >= 0) {
            m->in_set++;
            m->in_set_accepted += (size_t)!rej;
            m->in_set_correct += (size_t)(!rej && pred[i] == label[i]);
            m->confusion[(size_t)label[i] * K1 + (size_t)col]++;
            lb[nl] = best[i];
            pos[nl++] = 1;
        } else if (label[i] == SG_LABEL_NONE) {
            m->out_of_set++;
            m->out_of_set_rejected += (size_t)rej;
            m->confusion[(size_t)k * K1 + (size_t)col]++;
            lb[nl] = best[i];
            pos[nl++] = 0;
        }
    }
    m->rejected_fraction = n ? (double)m->rejected / (double)n : NAN;
    m->true_accept_rate = m->in_set ? (double)m->in_set_accepted / (double)m->in_set : NAN;
    m->true_reject_rate = m->out_of_set ? (double)m->out_of_set_rejected / (double)m->out_of_set : NAN;
    double sum = 0;
    int present = 0;
    for (size_t c = 0; c < K1; c++) {
        int64_t support = 0;
        for (size_t j = 0; j < K1; j++) support += m->confusion[c * K1 + j];
        if (!support) continue;
        sum += (double)m->confusion[c * K1 + c] / (double)support;
        present++;
    }
    m->open_balanced_accuracy = present ? sum / present : NAN;
    m->auroc = sg_auroc(nl, lb, 1, pos);
    free(lb);
    free(pos);
}

void sg_open_metrics_free(sg_open_metrics *m) {
    free(m->confusion);
    memset(m, 0, sizeof *m);
}
