/* sg_metrics.c — per-task classification metrics: confusion matrix, balanced
 * accuracy, macro-F1, sensitivity/specificity at the operating point,
 * one-vs-rest AUROC with a seeded percentile bootstrap interval, expected
 * calibration error and score histograms.
 *
 * The bootstrap resamples rows with replacement as multiplicities w_i and
 * computes each weighted AUROC in one pass over rows pre-sorted by score, so a
 * resample costs O(n k) rather than a sort. Resamples without a positive or
 * a negative of a class are left out for that class. */
#include "sg_jobs.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct sort_item {
    float s;
    uint32_t i;
} sort_item;

static int cmp_item(const void *a, const void *b) {
    const sort_item *x = a, *y = b;
    if (x->s < y->s) return -1;
    if (x->s > y->s) return 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Weighted Mann-Whitney AUROC over rows sorted ascending by score. */
static double auroc_sorted(size_t n, const sort_item *it, const uint8_t *pos, const uint32_t *w) {
    double num = 0, cum_neg = 0, wp_all = 0, wn_all = 0;
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        double wp = 0, wn = 0;
        while (j < n && it[j].s == it[i].s) {
            double wt = w ? w[it[j].i] : 1.0;
            if (pos[it[j].i]) wp += wt;
            else wn += wt;
            j++;
        }
        num += wp * cum_neg + 0.5 * wp * wn;
        cum_neg += wn;
        wp_all += wp;
        wn_all += wn;
        i = j;
    }
    if (wp_all == 0 || wn_all == 0) return NAN;
    return num / (wp_all * wn_all);
}

double sg_auroc(size_t n, const float *score, size_t stride, const uint8_t *positive) {
    sort_item *it = sg_xmalloc((n ? n : 1) * sizeof *it);
    for (size_t i = 0; i < n; i++) it[i] = (sort_item){score[i * stride], (uint32_t)i};
    qsort(it, n, sizeof *it, cmp_item);
    double a = auroc_sorted(n, it, positive, NULL);
    free(it);
    return a;
}

static double quantile(const double *v, size_t n, double q) {
    double h = (double)(n - 1) * q;
    size_t lo = (size_t)floor(h);
    size_t hi = lo + 1 < n ? lo + 1 : lo;
    return v[lo] + (h - (double)lo) * (v[hi] - v[lo]);
}

void sg_metrics_compute(size_t n_rows, int k, const int *label, const int *pred, const float *score, double threshold,
                        int bootstrap, uint64_t seed, uint64_t stream, sg_metrics *m) {
    memset(m, 0, sizeof *m);
    m->k = k;
    m->n_total = n_rows;
    m->threshold = threshold;
    m->bootstrap = bootstrap;
    m->seed = seed;
    size_t K = (size_t)k;
    m->confusion = sg_xcalloc(K * K, sizeof(int64_t));
    m->support = sg_xcalloc(K, sizeof(int64_t));
    m->flagged = sg_xcalloc(K, sizeof(int64_t));
    m->hist = sg_xcalloc(K * SG_HIST_BINS, sizeof(int64_t));
    double **arr[] = {&m->precision, &m->recall, &m->f1, &m->sensitivity, &m->specificity, &m->auroc, &m->auroc_lo,
                      &m->auroc_hi};
    for (size_t a = 0; a < sizeof arr / sizeof arr[0]; a++) {
        *arr[a] = sg_xmalloc(K * sizeof(double));
        for (size_t c = 0; c < K; c++) (*arr[a])[c] = NAN;
    }
    for (size_t i = 0; i < n_rows; i++)
        for (size_t c = 0; c < K; c++) {
            float s = score[i * K + c];
            if (s >= threshold) m->flagged[c]++;
            int b = (int)(s * SG_HIST_BINS);
            b = b < 0 ? 0 : b >= SG_HIST_BINS ? SG_HIST_BINS - 1 : b;
            m->hist[c * SG_HIST_BINS + (size_t)b]++;
        }

    /* labelled rows */
    uint32_t *idx = sg_xmalloc((n_rows ? n_rows : 1) * sizeof *idx);
    size_t n = 0;
    for (size_t i = 0; i < n_rows; i++)
        if (label[i] >= 0 && label[i] < k) idx[n++] = (uint32_t)i;
    m->n = n;
    m->accuracy = m->balanced_accuracy = m->macro_f1 = m->ece = NAN;
    if (n == 0) {
        free(idx);
        return;
    }
    int64_t correct = 0;
    for (size_t j = 0; j < n; j++) {
        size_t i = idx[j];
        m->confusion[(size_t)label[i] * K + (size_t)pred[i]]++;
        m->support[label[i]]++;
        correct += label[i] == pred[i];
    }
    m->accuracy = (double)correct / (double)n;
    double bacc = 0, mf1 = 0;
    int present = 0;
    for (size_t c = 0; c < K; c++) {
        int64_t tp = m->confusion[c * K + c], col = 0;
        for (size_t r = 0; r < K; r++) col += m->confusion[r * K + c];
        if (col) m->precision[c] = (double)tp / (double)col;
        if (m->support[c]) m->recall[c] = (double)tp / (double)m->support[c];
        double p = col ? m->precision[c] : 0, r = m->support[c] ? m->recall[c] : 0;
        m->f1[c] = p + r > 0 ? 2 * p * r / (p + r) : 0;
        if (m->support[c]) {
            bacc += m->recall[c];
            mf1 += m->f1[c];
            present++;
        }
        int64_t stp = 0, sfn = 0, stn = 0, sfp = 0;
        for (size_t j = 0; j < n; j++) {
            size_t i = idx[j];
            int pos = (size_t)label[i] == c, dec = score[i * K + c] >= threshold;
            stp += pos && dec;
            sfn += pos && !dec;
            sfp += !pos && dec;
            stn += !pos && !dec;
        }
        if (stp + sfn) m->sensitivity[c] = (double)stp / (double)(stp + sfn);
        if (stn + sfp) m->specificity[c] = (double)stn / (double)(stn + sfp);
    }
    m->balanced_accuracy = bacc / present;
    m->macro_f1 = mf1 / present;

    /* calibration: top-class probability */
    double ece = 0;
    for (size_t j = 0; j < n; j++) {
        size_t i = idx[j];
        double conf = score[i * K + (size_t)pred[i]];
        int b = (int)(conf * SG_ECE_BINS);
        b = b < 0 ? 0 : b >= SG_ECE_BINS ? SG_ECE_BINS - 1 : b;
        m->ece_count[b]++;
        m->ece_conf[b] += conf;
        m->ece_acc[b] += label[i] == pred[i];
    }
    for (int b = 0; b < SG_ECE_BINS; b++)
        if (m->ece_count[b]) {
            m->ece_conf[b] /= (double)m->ece_count[b];
            m->ece_acc[b] /= (double)m->ece_count[b];
            ece += (double)m->ece_count[b] / (double)n * fabs(m->ece_acc[b] - m->ece_conf[b]);
        }
    m->ece = ece;

    /* AUROC and its bootstrap interval over the labelled rows (indices 0..n-1) */
    sort_item **sorted = sg_xcalloc(K, sizeof *sorted);
    uint8_t **pos = sg_xcalloc(K, sizeof *pos);
    for (size_t c = 0; c < K; c++) {
        sorted[c] = sg_xmalloc(n * sizeof(sort_item));
        pos[c] = sg_xmalloc(n);
        for (size_t j = 0; j < n; j++) {
            sorted[c][j] = (sort_item){score[(size_t)idx[j] * K + c], (uint32_t)j};
            pos[c][j] = (size_t)label[idx[j]] == c;
        }
        qsort(sorted[c], n, sizeof(sort_item), cmp_item);
        m->auroc[c] = auroc_sorted(n, sorted[c], pos[c], NULL);
    }
    uint32_t *w = sg_xmalloc(n * sizeof *w);
    double *boot = sg_xmalloc(K * (size_t)(bootstrap > 0 ? bootstrap : 1) * sizeof(double));
    size_t *nb = sg_xcalloc(K, sizeof *nb);
    sg_rng rng;
    sg_rng_seed2(&rng, seed, stream);
    for (int b = 0; b < bootstrap; b++) {
        memset(w, 0, n * sizeof *w);
        for (size_t j = 0; j < n; j++) w[sg_rng_below(&rng, (uint32_t)n)]++;
        for (size_t c = 0; c < K; c++) {
            double a = auroc_sorted(n, sorted[c], pos[c], w);
            if (!isnan(a)) boot[c * (size_t)bootstrap + nb[c]++] = a;
        }
    }
    for (size_t c = 0; c < K; c++) {
        if (!nb[c] || isnan(m->auroc[c])) continue;
        double *v = boot + c * (size_t)bootstrap;
        qsort(v, nb[c], sizeof(double), cmp_double);
        m->auroc_lo[c] = quantile(v, nb[c], 0.025);
        m->auroc_hi[c] = quantile(v, nb[c], 0.975);
    }
    for (size_t c = 0; c < K; c++) {
        free(sorted[c]);
        free(pos[c]);
    }
    free(sorted);
    free(pos);
    free(w);
    free(boot);
    free(nb);
    free(idx);
}

void sg_metrics_free(sg_metrics *m) {
    free(m->confusion);
    free(m->support);
    free(m->flagged);
    free(m->hist);
    free(m->precision);
    free(m->recall);
    free(m->f1);
    free(m->sensitivity);
    free(m->specificity);
    free(m->auroc);
    free(m->auroc_lo);
    free(m->auroc_hi);
    memset(m, 0, sizeof *m);
}
