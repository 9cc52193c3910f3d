/* sg_report.c — the end of a run on rank 0: per task predictions.csv,
 * metrics.json and (screen) worklists, then summary.json, summary.csv and a
 * self-contained report.html (inline SVG, no scripts, no network).
 *
 * Everything here is a function of the part files in shard order and the
 * manifest, never of timings or ranks: the outputs are byte-identical for
 * any number of ranks. Numbers are printed with fixed precision (%.6f). */
#include "sg_jobs.h"
#include "sg_model.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- small writers ---- */

static void jnum(sg_buf *b, double x) {
    if (isnan(x) || isinf(x)) sg_buf_printf(b, "null");
    else sg_buf_printf(b, "%.6f", x);
}

static void hstr(sg_buf *b, const char *s) {
    for (const char *p = s; *p; p++) {
        switch (*p) {
        case '<': sg_buf_printf(b, "&lt;"); break;
        case '>': sg_buf_printf(b, "&gt;"); break;
        case '&': sg_buf_printf(b, "&amp;"); break;
        case '"': sg_buf_printf(b, "&quot;"); break;
        default: sg_buf_append(b, p, 1);
        }
    }
}

/* 3 decimals for the report; a dash when undefined. */
static void hnum(sg_buf *b, double x) {
    if (isnan(x)) sg_buf_printf(b, "–");
    else sg_buf_printf(b, "%.3f", x);
}

static void fnum(sg_buf *b, double x) {
    if (!isnan(x)) sg_buf_printf(b, "%.6f", x);
}

static sg_status write_buf(const char *dir, const char *name, const sg_buf *b, sg_err *err) {
    char path[8192];
    snprintf(path, sizeof path, "%.4200s/%.400s", dir, name);
    return sg_file_write_atomic(path, b->data ? (const void *)b->data : "", b->len, err);
}

void sg_jobs_worklist_name(const char *class_id, char out[SG_WORKLIST_NAME_MAX + 1]) {
    static const char hex[] = "0123456789ABCDEF";
    static const char pre[] = "worklist-", suf[] = ".csv";
    /* the prefix of the encoding kept when the id's SHA-256 is added */
    enum { CUT = SG_WORKLIST_NAME_MAX - (sizeof pre - 1) - 17 - (sizeof suf - 1) };
    sg_buf b = {0};
    size_t cut = 0; /* length of the encoding up to the last escape boundary within CUT */
    for (const unsigned char *p = (const unsigned char *)class_id; *p; p++) {
        unsigned char c = *p;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
            c == '-')
            sg_buf_append(&b, p, 1);
        else
            sg_buf_printf(&b, "%%%c%c", hex[c >> 4], hex[c & 15]);
        if (b.len <= CUT) cut = b.len;
    }
    if (b.len + sizeof pre - 1 + sizeof suf - 1 <= SG_WORKLIST_NAME_MAX) {
        snprintf(out, SG_WORKLIST_NAME_MAX + 1, "%s%.*s%s", pre, (int)b.len, b.data ? (const char *)b.data : "", suf);
    } else {
        sg_sha256 c;
        uint8_t dig[32];
        sg_sha256_init(&c);
        sg_sha256_update(&c, class_id, strlen(class_id));
        sg_sha256_final(&c, dig);
        char h[65];
        sg_sha256_hex(dig, h);
        snprintf(out, SG_WORKLIST_NAME_MAX + 1, "%s%.*s~%.16s%s", pre, (int)cut, (const char *)b.data, h, suf);
    }
    sg_buf_free(&b);
}

/* Length of the first two CSV fields of a row (key, shard), quotes honoured. */
static size_t two_fields(const char *line) {
    const char *p = line;
    for (int f = 0; f < 2 && *p; f++) {
        if (*p == '"') {
            p++;
            while (*p && !(*p == '"' && p[1] != '"')) p += *p == '"' ? 2 : 1;
            if (*p) p++;
        } else {
            while (*p && *p != ',') p++;
        }
        if (f == 0 && *p == ',') p++;
    }
    return (size_t)(p - line);
}

static double mean_defined(const double *v, int k) {
    double s = 0;
    int n = 0;
    for (int c = 0; c < k; c++)
        if (!isnan(v[c])) {
            s += v[c];
            n++;
        }
    return n ? s / n : NAN;
}

/* ---- per task ---- */

typedef struct task_out {
    const char *status; /* complete, incomplete, failed */
    sg_task_rows rows;
    sg_metrics met;
    /* open-set tasks */
    sg_task_rows ref;        /* reference rows */
    sg_open_calibration cal;
    sg_open_metrics om;
    uint8_t *rejected;       /* (rows.n) 1: reported as none */
    uint8_t *ref_rejected;   /* (ref.n) */
    /* the support check of the task's classifier (NULL: none was run, or the
       classifier is missing or of another configuration) */
    cJSON *support;
    int support_checked, support_correct, support_failed; /* failed: no better than chance */
    double support_accuracy, support_chance;
} task_out;

/* The support check that synthesis wrote into the task's classifier.sgpm
 * (pipeline/sg_run.c), when that classifier belongs to the task's current
 * configuration (a run removes it when the synthesis fails). */
static void load_support_check(const char *dir, const sg_run_task *t, task_out *o) {
    char path[8192];
    snprintf(path, sizeof path, "%.4200s/tasks/%.1000s/classifier.sgpm", dir, t->id);
    o->support_accuracy = NAN;
    sg_classifier *c = NULL;
    if (sg_classifier_load(path, &c, NULL) != SG_OK) return;
    cJSON *meta = c->meta_json ? cJSON_Parse(c->meta_json) : NULL;
    sg_classifier_free(c);
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(meta, "config");
    cJSON *sc = cJSON_GetObjectItemCaseSensitive(meta, "support_check");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(sc, "checked"), *k = cJSON_GetObjectItemCaseSensitive(sc, "correct"),
                *ch = cJSON_GetObjectItemCaseSensitive(sc, "chance"), *mis = cJSON_GetObjectItemCaseSensitive(sc, "misclassified");
    if (cJSON_IsString(cfg) && strcmp(cfg->valuestring, t->config_hash) == 0 && cJSON_IsNumber(n) && cJSON_IsNumber(k) &&
        cJSON_IsNumber(ch) && cJSON_IsArray(mis)) {
        o->support = cJSON_DetachItemViaPointer(meta, sc);
        o->support_checked = n->valueint;
        o->support_correct = k->valueint;
        o->support_chance = ch->valuedouble;
        if (o->support_checked > 0) o->support_accuracy = (double)o->support_correct / o->support_checked;
        o->support_failed = sg_support_check_failed(o->support_correct, o->support_checked, t->n_classes);
    }
    cJSON_Delete(meta);
}

/* "support_check": {...} of metrics.json, or null. */
static void support_json(const sg_manifest *m, const sg_run_task *t, const task_out *o, sg_buf *b) {
    sg_buf_printf(b, "  \"support_check\": ");
    if (!o->support) {
        sg_buf_printf(b, "null,\n");
        return;
    }
    sg_buf_printf(b, "{\"checked\": %d, \"correct\": %d, \"accuracy\": ", o->support_checked, o->support_correct);
    jnum(b, o->support_accuracy);
    sg_buf_printf(b, ", \"chance\": ");
    jnum(b, o->support_chance);
    const cJSON *me = cJSON_GetObjectItemCaseSensitive(o->support, "method");
    sg_buf_printf(b, ", \"method\": ");
    if (cJSON_IsString(me)) sg_buf_json_str(b, me->valuestring);
    else sg_buf_printf(b, "null");
    const cJSON *mp = cJSON_GetObjectItemCaseSensitive(o->support, "mean_own_probability");
    sg_buf_printf(b, ", \"mean_own_probability\": ");
    jnum(b, cJSON_IsNumber(mp) ? mp->valuedouble : NAN);
    sg_buf_printf(b, ", \"misclassified\": [");
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(o->support, "misclassified")) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(it, "class"), *im = cJSON_GetObjectItemCaseSensitive(it, "image"),
                    *p = cJSON_GetObjectItemCaseSensitive(it, "predicted");
        if (!cJSON_IsString(c) || !cJSON_IsNumber(im) || !cJSON_IsString(p)) continue;
        sg_buf_printf(b, "%s{\"class\": ", i++ ? ", " : "");
        sg_buf_json_str(b, c->valuestring);
        sg_buf_printf(b, ", \"exemplar\": %d, \"path\": ", im->valueint);
        const char *path = sg_task_exemplar(m, t, c->valuestring, im->valueint);
        if (path) sg_buf_json_str(b, path);
        else sg_buf_printf(b, "null");
        sg_buf_printf(b, ", \"predicted\": ");
        sg_buf_json_str(b, p->valuestring);
        const cJSON *po = cJSON_GetObjectItemCaseSensitive(it, "own_probability");
        sg_buf_printf(b, ", \"own_probability\": ");
        jnum(b, cJSON_IsNumber(po) ? po->valuedouble : NAN);
        sg_buf_printf(b, "}");
    }
    sg_buf_printf(b, "]},\n");
}

/* A row as written in the part file with its predicted field (4th from the
 * left, k + 1-th from the right) replaced by pred. */
static void row_with_pred(sg_buf *b, const char *line, int k, const char *pred) {
    const char *end = line + strlen(line), *c = end, *scores = NULL;
    for (int f = 0; f <= k && c > line; f++) {
        c--;
        while (c > line && *c != ',') c--;
        if (f == k - 1) scores = c;
    }
    SG_ASSERT(scores && c < scores);
    sg_buf_append(b, line, (size_t)(c - line) + 1);
    sg_buf_printf(b, "%s", pred);
    sg_buf_append(b, scores, (size_t)(end - scores));
}

static void open_set_json(const sg_run_task *t, const task_out *to, sg_buf *b) {
    const sg_open_calibration *c = &to->cal;
    const sg_open_metrics *o = &to->om;
    int K = t->n_classes, ref = strcmp(c->source, "reference") == 0;
    sg_buf_printf(b, "  \"open_set\": {\n    \"threshold\": ");
    jnum(b, c->threshold);
    sg_buf_printf(b, ",\n    \"source\": \"%s\",\n    \"rule\": ", c->source);
    if (ref) sg_buf_printf(b, "\"%s\"", sg_open_rule_str(c->rule));
    else sg_buf_printf(b, "null");
    sg_buf_printf(b, ",\n    \"accept\": ");
    if (ref && c->rule == SG_OPEN_RULE_ACCEPT) jnum(b, t->open_set.accept);
    else sg_buf_printf(b, "null");
    sg_buf_printf(b, ",\n    \"note\": ");
    if (c->note[0]) sg_buf_json_str(b, c->note);
    else sg_buf_printf(b, "null");
    sg_buf_printf(b, ",\n    \"decision\": \"none when the best class probability < threshold\",\n");
    if (t->open_set.n_ref_shards) {
        sg_buf_printf(b, "    \"reference\": {\"units\": {\"ok\": %zu, \"failed\": %zu, \"missing\": %zu}, \"images\": %zu, "
                         "\"in_set\": %zu, \"out_of_set\": %zu, \"unmapped_labels\": %llu, \"accept_rate\": ",
                      to->ref.units_ok, to->ref.units_failed, to->ref.units_missing, to->ref.n, c->ref_in_set,
                      c->ref_out_of_set, (unsigned long long)to->ref.unmapped);
        jnum(b, c->ref_accept_rate);
        sg_buf_printf(b, ", \"reject_rate\": ");
        jnum(b, c->ref_reject_rate);
        sg_buf_printf(b, "},\n");
    }
    sg_buf_printf(b, "    \"rejected\": %zu,\n    \"rejected_fraction\": ", o->rejected);
    jnum(b, o->rejected_fraction);
    if (t->kind == SG_TASK_EVALUATE) {
        sg_buf_printf(b, ",\n    \"in_set\": {\"images\": %zu, \"accepted\": %zu, \"accepted_correct\": %zu},\n",
                      o->in_set, o->in_set_accepted, o->in_set_correct);
        sg_buf_printf(b, "    \"out_of_set\": {\"images\": %zu, \"rejected\": %zu},\n    \"true_accept_rate\": ",
                      o->out_of_set, o->out_of_set_rejected);
        jnum(b, o->true_accept_rate);
        sg_buf_printf(b, ",\n    \"true_reject_rate\": ");
        jnum(b, o->true_reject_rate);
        sg_buf_printf(b, ",\n    \"open_balanced_accuracy\": ");
        jnum(b, o->open_balanced_accuracy);
        sg_buf_printf(b, ",\n    \"auroc_best_score\": ");
        jnum(b, o->auroc);
        sg_buf_printf(b, ",\n    \"confusion_classes\": [");
        for (int k = 0; k <= K; k++) {
            if (k) sg_buf_printf(b, ", ");
            sg_buf_json_str(b, k < K ? t->class_ids[k] : SG_OPEN_SET_NONE);
        }
        sg_buf_printf(b, "],\n    \"confusion\": [");
        for (int r = 0; r <= K; r++) {
            sg_buf_printf(b, "%s[", r ? ", " : "");
            for (int k = 0; k <= K; k++)
                sg_buf_printf(b, "%s%lld", k ? ", " : "", (long long)o->confusion[(size_t)r * (size_t)(K + 1) + (size_t)k]);
            sg_buf_printf(b, "]");
        }
        sg_buf_printf(b, "]");
    }
    sg_buf_printf(b, "\n  },\n");
}

static void metrics_json(const sg_manifest *m, int ti, const task_out *to, sg_buf *b) {
    const sg_run_task *t = &m->tasks[ti];
    const sg_metrics *x = &to->met;
    int K = t->n_classes;
    sg_buf_printf(b, "{\n  \"task\": ");
    sg_buf_json_str(b, t->id);
    sg_buf_printf(b, ",\n  \"kind\": \"%s\",\n  \"status\": \"%s\",\n  \"complete\": %s,\n", sg_task_kind_str(t->kind),
                  to->status, strcmp(to->status, "complete") == 0 ? "true" : "false");
    sg_buf_printf(b, "  \"units\": {\"ok\": %zu, \"failed\": %zu, \"missing\": %zu},\n", to->rows.units_ok,
                  to->rows.units_failed, to->rows.units_missing);
    sg_buf_printf(b, "  \"images\": %zu,\n  \"labelled\": %zu,\n  \"skipped\": %llu,\n  \"unmapped_labels\": %llu,\n",
                  x->n_total, x->n, (unsigned long long)to->rows.skipped, (unsigned long long)to->rows.unmapped);
    sg_buf_printf(b, "  \"classes\": [");
    for (int c = 0; c < K; c++) {
        if (c) sg_buf_printf(b, ", ");
        sg_buf_json_str(b, t->class_ids[c]);
    }
    sg_buf_printf(b, "],\n  \"threshold\": ");
    jnum(b, t->threshold);
    sg_buf_printf(b, ",\n  \"decision\": \"argmax for confusion, accuracy, F1; score_k >= threshold for sensitivity, "
                     "specificity, flagged\",\n");
    support_json(m, t, to, b);
    if (t->kind == SG_TASK_EVALUATE) {
        sg_buf_printf(b, "  \"accuracy\": ");
        jnum(b, x->accuracy);
        sg_buf_printf(b, ",\n  \"balanced_accuracy\": ");
        jnum(b, x->balanced_accuracy);
        sg_buf_printf(b, ",\n  \"macro_f1\": ");
        jnum(b, x->macro_f1);
        sg_buf_printf(b, ",\n  \"mean_auroc\": ");
        jnum(b, mean_defined(x->auroc, K));
        sg_buf_printf(b, ",\n  \"ece\": ");
        jnum(b, x->ece);
        sg_buf_printf(b, ",\n  \"ece_bins\": %d,\n  \"ece_confidence\": \"top-class probability, equal-width bins on [0, 1]\",\n",
                      SG_ECE_BINS);
        sg_buf_printf(b, "  \"bootstrap\": {\"resamples\": %d, \"seed\": %llu, \"interval\": \"percentile 95%%\"},\n",
                      x->bootstrap, (unsigned long long)x->seed);
        sg_buf_printf(b, "  \"per_class\": [\n");
        for (int c = 0; c < K; c++) {
            sg_buf_printf(b, "    {\"class\": ");
            sg_buf_json_str(b, t->class_ids[c]);
            sg_buf_printf(b, ", \"support\": %lld, \"precision\": ", (long long)x->support[c]);
            jnum(b, x->precision[c]);
            sg_buf_printf(b, ", \"recall\": ");
            jnum(b, x->recall[c]);
            sg_buf_printf(b, ", \"f1\": ");
            jnum(b, x->f1[c]);
            sg_buf_printf(b, ", \"sensitivity\": ");
            jnum(b, x->sensitivity[c]);
            sg_buf_printf(b, ", \"specificity\": ");
            jnum(b, x->specificity[c]);
            sg_buf_printf(b, ", \"auroc\": ");
            jnum(b, x->auroc[c]);
            sg_buf_printf(b, ", \"auroc_ci95\": [");
            jnum(b, x->auroc_lo[c]);
            sg_buf_printf(b, ", ");
            jnum(b, x->auroc_hi[c]);
            sg_buf_printf(b, "], \"flagged\": %lld}%s\n", (long long)x->flagged[c], c + 1 < K ? "," : "");
        }
        sg_buf_printf(b, "  ],\n  \"confusion\": [");
        for (int r = 0; r < K; r++) {
            sg_buf_printf(b, "%s[", r ? ", " : "");
            for (int c = 0; c < K; c++) sg_buf_printf(b, "%s%lld", c ? ", " : "", (long long)x->confusion[r * K + c]);
            sg_buf_printf(b, "]");
        }
        sg_buf_printf(b, "],\n  \"reliability\": [");
        for (int i = 0; i < SG_ECE_BINS; i++) {
            sg_buf_printf(b, "%s{\"count\": %lld, \"confidence\": ", i ? ", " : "", (long long)x->ece_count[i]);
            jnum(b, x->ece_count[i] ? x->ece_conf[i] : NAN);
            sg_buf_printf(b, ", \"accuracy\": ");
            jnum(b, x->ece_count[i] ? x->ece_acc[i] : NAN);
            sg_buf_printf(b, "}");
        }
        sg_buf_printf(b, "],\n");
    } else {
        sg_buf_printf(b, "  \"per_class\": [\n");
        for (int c = 0; c < K; c++) {
            sg_buf_printf(b, "    {\"class\": ");
            sg_buf_json_str(b, t->class_ids[c]);
            sg_buf_printf(b, ", \"flagged\": %lld, \"worklist\": %s}%s\n", (long long)x->flagged[c],
                          c == t->reference ? "false" : "true", c + 1 < K ? "," : "");
        }
        sg_buf_printf(b, "  ],\n");
    }
    if (t->open_set.enabled) open_set_json(t, to, b);
    sg_buf_printf(b, "  \"score_histogram\": {\"bins\": %d, \"counts\": [", SG_HIST_BINS);
    for (int c = 0; c < K; c++) {
        sg_buf_printf(b, "%s[", c ? ", " : "");
        for (int i = 0; i < SG_HIST_BINS; i++)
            sg_buf_printf(b, "%s%lld", i ? ", " : "", (long long)x->hist[(size_t)c * SG_HIST_BINS + (size_t)i]);
        sg_buf_printf(b, "]");
    }
    sg_buf_printf(b, "]}\n}\n");
}

typedef struct wl_item {
    float s;
    size_t i;
} wl_item;

static int cmp_wl(const void *a, const void *b) {
    const wl_item *x = a, *y = b;
    if (x->s != y->s) return x->s > y->s ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static sg_status write_worklists(const sg_run_task *t, const task_out *to, const char *tdir, sg_err *err) {
    const sg_task_rows *r = &to->rows;
    int K = t->n_classes;
    wl_item *it = sg_xmalloc((r->n ? r->n : 1) * sizeof *it);
    sg_status st = SG_OK;
    for (int c = 0; c < K && st == SG_OK; c++) {
        if (c == t->reference) continue;
        size_t n = 0;
        for (size_t i = 0; i < r->n; i++) {
            float s = r->score[i * (size_t)K + (size_t)c];
            if (s >= t->threshold && !(to->rejected && to->rejected[i])) it[n++] = (wl_item){s, i};
        }
        qsort(it, n, sizeof *it, cmp_wl);
        sg_buf b = {0};
        sg_buf_printf(&b, "rank,key,shard,score\n");
        for (size_t j = 0; j < n; j++) {
            const char *line = r->line[it[j].i];
            sg_buf_printf(&b, "%zu,%.*s,%.6f\n", j + 1, (int)two_fields(line), line, (double)it[j].s);
        }
        char fn[SG_WORKLIST_NAME_MAX + 1];
        sg_jobs_worklist_name(t->class_ids[c], fn);
        st = write_buf(tdir, fn, &b, err);
        sg_buf_free(&b);
    }
    free(it);
    return st;
}

/* ---- report.html ---- */

static void svg_auroc(sg_buf *b, const sg_run_task *t, const sg_metrics *x) {
    int K = t->n_classes, W = 520, row = 22, H = K * row + 30, left = 200, pw = W - left - 20;
    sg_buf_printf(b, "<svg width=\"%d\" height=\"%d\" xmlns=\"http://www.w3.org/2000/svg\" font-size=\"11\">", W, H);
    for (int g = 0; g <= 4; g++) {
        double xx = left + pw * g / 4.0;
        sg_buf_printf(b, "<line x1=\"%.1f\" y1=\"0\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/><text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.2f</text>",
                      xx, xx, K * row, xx, K * row + 14, g / 4.0);
    }
    for (int c = 0; c < K; c++) {
        int y = c * row + 4;
        sg_buf_printf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">", left - 6, y + 12);
        hstr(b, t->class_ids[c]);
        sg_buf_printf(b, "</text>");
        if (isnan(x->auroc[c])) continue;
        sg_buf_printf(b, "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"14\" fill=\"#4a7fb5\"/>", left, y,
                      pw * x->auroc[c]);
        if (!isnan(x->auroc_lo[c]))
            sg_buf_printf(b, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#000\" stroke-width=\"1.5\"/>",
                          left + pw * x->auroc_lo[c], y + 7, left + pw * x->auroc_hi[c], y + 7);
    }
    sg_buf_printf(b, "<text x=\"%d\" y=\"%d\">AUROC (one-vs-rest) with bootstrap 95%% CI</text></svg>\n", left,
                  K * row + 27);
}

static void svg_reliability(sg_buf *b, const sg_metrics *x) {
    int S = 220, pad = 30;
    sg_buf_printf(b, "<svg width=\"%d\" height=\"%d\" xmlns=\"http://www.w3.org/2000/svg\" font-size=\"10\">", S + pad + 10,
                  S + pad + 10);
    sg_buf_printf(b, "<rect x=\"%d\" y=\"10\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#999\"/>", pad, S, S);
    sg_buf_printf(b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"10\" stroke=\"#bbb\" stroke-dasharray=\"4\"/>", pad, S + 10,
                  pad + S);
    double bw = (double)S / SG_ECE_BINS;
    for (int i = 0; i < SG_ECE_BINS; i++) {
        if (!x->ece_count[i]) continue;
        double h = S * x->ece_acc[i];
        sg_buf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#4a7fb5\" opacity=\"0.8\"/>",
                      pad + i * bw, 10 + S - h, bw - 1, h);
    }
    sg_buf_printf(b, "<text x=\"%d\" y=\"%d\">confidence (%d bins)</text><text x=\"2\" y=\"20\">acc</text></svg>\n", pad,
                  S + 28, SG_ECE_BINS);
}

static void svg_hist(sg_buf *b, const sg_run_task *t, const sg_metrics *x, int c) {
    int W = 240, H = 80;
    int64_t mx = 1;
    for (int i = 0; i < SG_HIST_BINS; i++)
        if (x->hist[(size_t)c * SG_HIST_BINS + (size_t)i] > mx) mx = x->hist[(size_t)c * SG_HIST_BINS + (size_t)i];
    sg_buf_printf(b, "<div class=\"h\"><div>");
    hstr(b, t->class_ids[c]);
    sg_buf_printf(b, "</div><svg width=\"%d\" height=\"%d\" xmlns=\"http://www.w3.org/2000/svg\">", W, H + 2);
    double bw = (double)W / SG_HIST_BINS;
    for (int i = 0; i < SG_HIST_BINS; i++) {
        double h = (double)H * (double)x->hist[(size_t)c * SG_HIST_BINS + (size_t)i] / (double)mx;
        sg_buf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>", i * bw, H - h, bw - 1,
                      h, (i + 0.5) / SG_HIST_BINS >= t->threshold ? "#c0504d" : "#4a7fb5");
    }
    sg_buf_printf(b, "</svg></div>\n");
}

static void html_task(sg_buf *b, const sg_manifest *m, int ti, const task_out *to) {
    const sg_run_task *t = &m->tasks[ti];
    const sg_metrics *x = &to->met;
    int K = t->n_classes;
    sg_buf_printf(b, "<h2 id=\"t%d\">", ti);
    hstr(b, t->id);
    sg_buf_printf(b, " <small>(%s, %s; %zu images, %zu labelled; units ok %zu, failed %zu, missing %zu)</small></h2>\n",
                  sg_task_kind_str(t->kind), to->status, x->n_total, x->n, to->rows.units_ok, to->rows.units_failed,
                  to->rows.units_missing);
    sg_buf_printf(b, "<p>%d shots per class, text %s, operating point %.3f.</p>\n", t->shots, t->use_text ? "on" : "off",
                  t->threshold);
    if (to->support && to->support_checked > 0) {
        const cJSON *mp = cJSON_GetObjectItemCaseSensitive(to->support, "mean_own_probability");
        sg_buf_printf(b, "<p>Support check: <b>%d of %d</b> exemplars classified as their own class by the classifier "
                         "synthesized without them (chance %.0f %%; mean probability of their own class ",
                      to->support_correct, to->support_checked, 100 * to->support_chance);
        hnum(b, cJSON_IsNumber(mp) ? mp->valuedouble : NAN);
        sg_buf_printf(b, ")");
        const cJSON *it;
        int i = 0;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(to->support, "misclassified")) {
            const cJSON *c = cJSON_GetObjectItemCaseSensitive(it, "class"), *im = cJSON_GetObjectItemCaseSensitive(it, "image"),
                        *p = cJSON_GetObjectItemCaseSensitive(it, "predicted");
            if (!cJSON_IsString(c) || !cJSON_IsNumber(im) || !cJSON_IsString(p)) continue;
            sg_buf_printf(b, "%s exemplar %d of ", i++ ? ";" : ":", im->valueint);
            hstr(b, c->valuestring);
            sg_buf_printf(b, " looks like ");
            hstr(b, p->valuestring);
        }
        sg_buf_printf(b, ".%s</p>\n", to->support_failed
                                           ? " <b style=\"color:#b00\">No better than chance: check the exemplars.</b>"
                                           : "");
    }
    if (t->open_set.enabled) {
        const sg_open_metrics *o = &to->om;
        sg_buf_printf(b, "<p>Open set: <b>%zu</b> of %zu images reported as none of these (best class probability "
                         "below the %s threshold %.6f",
                      o->rejected, o->images, to->cal.source, to->cal.threshold);
        if (strcmp(to->cal.source, "reference") == 0)
            sg_buf_printf(b, ", rule %s on %zu in-set and %zu out-of-set reference images", sg_open_rule_str(to->cal.rule),
                          to->cal.ref_in_set, to->cal.ref_out_of_set);
        sg_buf_printf(b, ")");
        if (t->kind == SG_TASK_EVALUATE && (o->in_set || o->out_of_set)) {
            sg_buf_printf(b, "; in-set accepted ");
            hnum(b, o->true_accept_rate);
            sg_buf_printf(b, ", out-of-set rejected ");
            hnum(b, o->true_reject_rate);
            sg_buf_printf(b, ", open-set balanced accuracy ");
            hnum(b, o->open_balanced_accuracy);
        }
        if (to->cal.note[0]) {
            sg_buf_printf(b, ". ");
            hstr(b, to->cal.note);
        }
        sg_buf_printf(b, ".</p>\n");
    }
    if (t->kind == SG_TASK_EVALUATE && x->n) {
        sg_buf_printf(b, "<p>balanced accuracy <b>%.3f</b>, macro-F1 <b>%.3f</b>, ECE <b>%.3f</b> (%d bins)</p>\n",
                      x->balanced_accuracy, x->macro_f1, x->ece, SG_ECE_BINS);
        sg_buf_printf(b, "<table><tr><th>class</th><th>support</th><th>sensitivity</th><th>specificity</th><th>F1</th>"
                         "<th>AUROC [95%% CI]</th></tr>\n");
        for (int c = 0; c < K; c++) {
            sg_buf_printf(b, "<tr><td>");
            hstr(b, t->class_ids[c]);
            sg_buf_printf(b, "</td><td>%lld</td><td>", (long long)x->support[c]);
            hnum(b, x->sensitivity[c]);
            sg_buf_printf(b, "</td><td>");
            hnum(b, x->specificity[c]);
            sg_buf_printf(b, "</td><td>");
            hnum(b, x->f1[c]);
            sg_buf_printf(b, "</td><td>");
            hnum(b, x->auroc[c]);
            sg_buf_printf(b, " [");
            hnum(b, x->auroc_lo[c]);
            sg_buf_printf(b, ", ");
            hnum(b, x->auroc_hi[c]);
            sg_buf_printf(b, "]</td></tr>\n");
        }
        sg_buf_printf(b, "</table>\n<div class=\"row\">");
        svg_auroc(b, t, x);
        svg_reliability(b, x);
        sg_buf_printf(b, "</div>\n<table class=\"cm\"><tr><th>true \\ predicted</th>");
        for (int c = 0; c < K; c++) {
            sg_buf_printf(b, "<th>");
            hstr(b, t->class_ids[c]);
            sg_buf_printf(b, "</th>");
        }
        sg_buf_printf(b, "</tr>\n");
        for (int r = 0; r < K; r++) {
            sg_buf_printf(b, "<tr><th>");
            hstr(b, t->class_ids[r]);
            sg_buf_printf(b, "</th>");
            for (int c = 0; c < K; c++) {
                int64_t v = x->confusion[r * K + c];
                double f = x->support[r] ? (double)v / (double)x->support[r] : 0;
                sg_buf_printf(b, "<td style=\"background:rgba(74,127,181,%.2f)\">%lld</td>", f, (long long)v);
            }
            sg_buf_printf(b, "</tr>\n");
        }
        sg_buf_printf(b, "</table>\n");
    } else if (t->kind == SG_TASK_EVALUATE) {
        sg_buf_printf(b, "<p>No labelled images: no metrics.</p>\n");
    }
    sg_buf_printf(b, "<p>Score distributions (red: at or above the operating point)");
    if (t->kind == SG_TASK_SCREEN) {
        sg_buf_printf(b, "; flagged for review:");
        for (int c = 0; c < K; c++)
            if (c != t->reference) {
                sg_buf_printf(b, " ");
                hstr(b, t->class_ids[c]);
                sg_buf_printf(b, " %lld", (long long)x->flagged[c]);
            }
    }
    sg_buf_printf(b, "</p><div class=\"row\">");
    for (int c = 0; c < K; c++) svg_hist(b, t, x, c);
    sg_buf_printf(b, "</div>\n");
}

/* ---- finalize ---- */

sg_status sg_jobs_finalize(const sg_manifest *m, const char *dir, sg_err *err) {
    task_out *to = sg_xcalloc((size_t)m->n_tasks, sizeof *to);
    sg_status st = SG_OK;
    for (int ti = 0; ti < m->n_tasks && st == SG_OK; ti++) {
        const sg_run_task *t = &m->tasks[ti];
        task_out *o = &to[ti];
        st = sg_run_load_task(m, dir, ti, &o->rows, err);
        if (st != SG_OK) break;
        if (st == SG_OK && t->open_set.n_ref_shards) st = sg_run_load_reference(m, dir, ti, &o->ref, err);
        if (st != SG_OK) break;
        size_t units_ok = o->rows.units_ok + o->ref.units_ok;
        o->status = !units_ok ? "failed"
                    : o->rows.units_failed || o->rows.units_missing || o->ref.units_failed || o->ref.units_missing
                        ? "incomplete"
                        : "complete";
        sg_metrics_compute(o->rows.n, t->n_classes, o->rows.label, o->rows.pred, o->rows.score, t->threshold,
                           m->bootstrap, m->seed, sg_fnv1a64(t->id, strlen(t->id)), &o->met);
        load_support_check(dir, t, o);
        if (o->support_failed)
            sg_log(SG_LOG_WARN, "task %s: support check: only %d of %d exemplars classified as their own class by the "
                   "classifier synthesized without them (chance %.0f %%): check the exemplars (metrics.json lists them)",
                   t->id, o->support_correct, o->support_checked, 100 * o->support_chance);
        if (t->open_set.enabled) {
            float *best = sg_xmalloc((o->ref.n ? o->ref.n : 1) * sizeof *best);
            sg_open_set_best(o->ref.n, t->n_classes, o->ref.score, best);
            sg_open_set_calibrate(&t->open_set, t->n_classes, o->ref.n, best, o->ref.label, &o->cal);
            sg_open_metrics ref_om;
            o->ref_rejected = sg_xmalloc(o->ref.n ? o->ref.n : 1);
            sg_open_metrics_compute(o->ref.n, t->n_classes, o->ref.label, o->ref.pred, best, o->cal.threshold,
                                    o->ref_rejected, &ref_om);
            sg_open_metrics_free(&ref_om);
            free(best);
            best = sg_xmalloc((o->rows.n ? o->rows.n : 1) * sizeof *best);
            sg_open_set_best(o->rows.n, t->n_classes, o->rows.score, best);
            o->rejected = sg_xmalloc(o->rows.n ? o->rows.n : 1);
            sg_open_metrics_compute(o->rows.n, t->n_classes, o->rows.label, o->rows.pred, best, o->cal.threshold,
                                    o->rejected, &o->om);
            free(best);
            /* flagged: what the worklists hold (images reported as none are not flagged) */
            for (int c = 0; c < t->n_classes; c++) {
                o->met.flagged[c] = 0;
                for (size_t i = 0; i < o->rows.n; i++)
                    o->met.flagged[c] += !o->rejected[i] && o->rows.score[i * (size_t)t->n_classes + (size_t)c] >= t->threshold;
            }
            if (o->cal.note[0]) sg_log(SG_LOG_WARN, "task %s: open set: %s", t->id, o->cal.note);
        }
        char tdir[4200];
        snprintf(tdir, sizeof tdir, "%s/tasks/%s", dir, t->id);
        st = sg_mkdir_p(tdir, err);
        if (st != SG_OK) break;
        sg_buf b = {0};
        char *hdr = sg_run_predictions_header(m, ti);
        sg_buf_printf(&b, "%s", hdr);
        for (size_t i = 0; i < o->rows.n; i++) {
            if (o->rejected && o->rejected[i]) row_with_pred(&b, o->rows.line[i], t->n_classes, SG_OPEN_SET_NONE);
            else sg_buf_printf(&b, "%s", o->rows.line[i]);
            sg_buf_append(&b, "\n", 1);
        }
        st = write_buf(tdir, "predictions.csv", &b, err);
        sg_buf_free(&b);
        if (st == SG_OK && t->open_set.n_ref_shards) {
            sg_buf_printf(&b, "%s", hdr);
            for (size_t i = 0; i < o->ref.n; i++) {
                if (o->ref_rejected[i]) row_with_pred(&b, o->ref.line[i], t->n_classes, SG_OPEN_SET_NONE);
                else sg_buf_printf(&b, "%s", o->ref.line[i]);
                sg_buf_append(&b, "\n", 1);
            }
            st = write_buf(tdir, "reference.csv", &b, err);
            sg_buf_free(&b);
        }
        free(hdr);
        if (st == SG_OK) {
            metrics_json(m, ti, o, &b);
            st = write_buf(tdir, "metrics.json", &b, err);
            sg_buf_free(&b);
        }
        if (st == SG_OK && t->kind == SG_TASK_SCREEN) st = write_worklists(t, o, tdir, err);
    }
    if (st == SG_OK) {
        sg_buf js = {0}, csv = {0}, h = {0};
        sg_buf_printf(&js, "{\n  \"config_hash\": \"%s\",\n  \"tasks\": [\n", m->config_hash);
        sg_buf_printf(&csv, "task,kind,status,units_ok,units_failed,units_missing,images,labelled,balanced_accuracy,"
                            "macro_f1,mean_auroc,ece,flagged,support_check,rejected,open_set_threshold\n");
        sg_buf_printf(&h, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>sgps run report</title><style>"
                          "body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:.5em 0}"
                          "td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px;text-align:right}"
                          ".row{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}.h{font-size:11px}"
                          "</style></head><body>\n<h1>sgps run report</h1>\n<p>configuration ");
        sg_buf_printf(&h, "%s; engine sha256 %s; %d tasks, %zu units.</p>\n<table><tr><th>task</th><th>kind</th>"
                          "<th>status</th><th>images</th><th>balanced acc.</th><th>macro-F1</th><th>mean AUROC</th>"
                          "<th>ECE</th><th>flagged</th><th>support check</th><th>none (open set)</th></tr>\n",
                      m->config_hash, m->engine_sha256, m->n_tasks, m->n_units);
        for (int ti = 0; ti < m->n_tasks; ti++) {
            const sg_run_task *t = &m->tasks[ti];
            const task_out *o = &to[ti];
            const sg_metrics *x = &o->met;
            int K = t->n_classes;
            int64_t flagged = 0;
            for (int c = 0; c < K; c++)
                if (c != t->reference) flagged += x->flagged[c];
            double mauc = mean_defined(x->auroc, K);
            sg_buf_printf(&js, "    {\"task\": ");
            sg_buf_json_str(&js, t->id);
            sg_buf_printf(&js, ", \"kind\": \"%s\", \"status\": \"%s\", \"units_ok\": %zu, \"units_failed\": %zu, "
                               "\"units_missing\": %zu, \"images\": %zu, \"labelled\": %zu, \"balanced_accuracy\": ",
                          sg_task_kind_str(t->kind), o->status, o->rows.units_ok, o->rows.units_failed,
                          o->rows.units_missing, x->n_total, x->n);
            jnum(&js, x->balanced_accuracy);
            sg_buf_printf(&js, ", \"macro_f1\": ");
            jnum(&js, x->macro_f1);
            sg_buf_printf(&js, ", \"mean_auroc\": ");
            jnum(&js, mauc);
            sg_buf_printf(&js, ", \"ece\": ");
            jnum(&js, x->ece);
            sg_buf_printf(&js, ", \"flagged\": %lld, \"support_check\": ", (long long)flagged);
            jnum(&js, o->support_accuracy);
            if (t->open_set.enabled) {
                sg_buf_printf(&js, ", \"open_set\": {\"threshold\": ");
                jnum(&js, o->cal.threshold);
                sg_buf_printf(&js, ", \"source\": \"%s\", \"rejected\": %zu, \"rejected_fraction\": ", o->cal.source,
                              o->om.rejected);
                jnum(&js, o->om.rejected_fraction);
                sg_buf_printf(&js, "}");
            }
            sg_buf_printf(&js, "}%s\n", ti + 1 < m->n_tasks ? "," : "");
            sg_buf_printf(&csv, "%s,%s,%s,%zu,%zu,%zu,%zu,%zu,", t->id, sg_task_kind_str(t->kind), o->status,
                          o->rows.units_ok, o->rows.units_failed, o->rows.units_missing, x->n_total, x->n);
            fnum(&csv, x->balanced_accuracy);
            sg_buf_printf(&csv, ",");
            fnum(&csv, x->macro_f1);
            sg_buf_printf(&csv, ",");
            fnum(&csv, mauc);
            sg_buf_printf(&csv, ",");
            fnum(&csv, x->ece);
            sg_buf_printf(&csv, ",%lld,", (long long)flagged);
            fnum(&csv, o->support_accuracy);
            sg_buf_printf(&csv, ",");
            if (t->open_set.enabled) {
                sg_buf_printf(&csv, "%zu,", o->om.rejected);
                fnum(&csv, o->cal.threshold);
            } else {
                sg_buf_printf(&csv, ",");
            }
            sg_buf_printf(&csv, "\n");
            sg_buf_printf(&h, "<tr><td><a href=\"#t%d\">", ti);
            hstr(&h, t->id);
            sg_buf_printf(&h, "</a></td><td>%s</td><td>%s</td><td>%zu</td>", sg_task_kind_str(t->kind), o->status,
                          x->n_total);
            double v[4] = {x->balanced_accuracy, x->macro_f1, mauc, x->ece};
            for (int i = 0; i < 4; i++) {
                if (isnan(v[i])) sg_buf_printf(&h, "<td>–</td>");
                else sg_buf_printf(&h, "<td>%.3f</td>", v[i]);
            }
            sg_buf_printf(&h, "<td>%lld</td>", (long long)flagged);
            if (o->support && o->support_checked > 0)
                sg_buf_printf(&h, "<td%s>%d/%d</td>", o->support_failed ? " style=\"color:#b00\"" : "",
                              o->support_correct, o->support_checked);
            else sg_buf_printf(&h, "<td>–</td>");
            if (t->open_set.enabled) sg_buf_printf(&h, "<td>%zu</td></tr>\n", o->om.rejected);
            else sg_buf_printf(&h, "<td>–</td></tr>\n");
        }
        sg_buf_printf(&js, "  ]\n}\n");
        sg_buf_printf(&h, "</table>\n");
        for (int ti = 0; ti < m->n_tasks; ti++) html_task(&h, m, ti, &to[ti]);
        sg_buf_printf(&h, "<p><small>AUROC intervals: percentile bootstrap, %d resamples, seed %llu. ECE: %d equal-width "
                          "bins of the top-class probability. Sensitivity/specificity: score of the class at or above "
                          "the task's operating point.</small></p>\n</body></html>\n",
                      m->bootstrap, (unsigned long long)m->seed, SG_ECE_BINS);
        st = write_buf(dir, "summary.json", &js, err);
        if (st == SG_OK) st = write_buf(dir, "summary.csv", &csv, err);
        if (st == SG_OK) st = write_buf(dir, "report.html", &h, err);
        sg_buf_free(&js);
        sg_buf_free(&csv);
        sg_buf_free(&h);
    }
    for (int ti = 0; ti < m->n_tasks; ti++) {
        sg_task_rows_free(&to[ti].rows);
        sg_metrics_free(&to[ti].met);
        sg_task_rows_free(&to[ti].ref);
        sg_open_metrics_free(&to[ti].om);
        free(to[ti].rejected);
        free(to[ti].ref_rejected);
        cJSON_Delete(to[ti].support);
    }
    free(to);
    return st;
}
