/* sg_nightly.c — the nightly job: compare a finished run with an earlier run
 * folder of the same tasks and flag drops beyond noise.
 *
 * Noise model, per task (both runs' metrics.json):
 * - balanced accuracy: a drop is flagged when current < baseline − 1.96·SE,
 *   SE = sqrt(b0(1−b0)/n0 + b1(1−b1)/n1) over the labelled images (a normal
 *   approximation that treats balanced accuracy like a proportion);
 * - AUROC per class: flagged when the baseline value lies above the upper
 *   end of the current run's bootstrap 95 % interval.
 * Tasks missing from the baseline are listed as new, never flagged. */
#include "sg_jobs.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static cJSON *load_metrics(const char *dir, const char *task) {
    char path[8192];
    snprintf(path, sizeof path, "%.4000s/tasks/%s/metrics.json", dir, task);
    uint8_t *data;
    size_t len;
    if (sg_file_read_all(path, &data, &len, (size_t)64 << 20, NULL) != SG_OK) return NULL;
    cJSON *j = cJSON_ParseWithLength((const char *)data, len);
    free(data);
    return j;
}

static double num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static void jnum(sg_buf *b, double x) {
    if (isnan(x)) sg_buf_printf(b, "null");
    else sg_buf_printf(b, "%.6f", x);
}

static const cJSON *class_entry(const cJSON *metrics, const char *cls) {
    const cJSON *pc = cJSON_GetObjectItemCaseSensitive(metrics, "per_class"), *it;
    cJSON_ArrayForEach(it, pc) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(it, "class");
        if (cJSON_IsString(c) && strcmp(c->valuestring, cls) == 0) return it;
    }
    return NULL;
}

sg_status sg_jobs_compare(const sg_manifest *m, const char *dir, const char *baseline, int *n_flagged, sg_err *err) {
    *n_flagged = 0;
    sg_buf js = {0}, csv = {0};
    sg_buf_printf(&js, "{\n  \"baseline\": \"");
    for (const char *p = baseline; *p; p++) {
        if (*p == '"' || *p == '\\') sg_buf_printf(&js, "\\%c", *p);
        else if ((unsigned char)*p >= 0x20) sg_buf_append(&js, p, 1);
    }
    sg_buf_printf(&js, "\",\n  \"rule\": \"balanced accuracy below baseline - 1.96 SE; AUROC baseline above the "
                       "current 95%% CI\",\n  \"tasks\": [\n");
    sg_buf_printf(&csv, "task,metric,class,baseline,current,delta,flagged\n");
    int first = 1;
    for (int ti = 0; ti < m->n_tasks; ti++) {
        const sg_run_task *t = &m->tasks[ti];
        if (t->kind != SG_TASK_EVALUATE) continue;
        cJSON *cur = load_metrics(dir, t->id), *base = load_metrics(baseline, t->id);
        sg_buf_printf(&js, "%s    {\"task\": \"%s\"", first ? "" : ",\n", t->id);
        first = 0;
        if (!cur || !base) {
            sg_buf_printf(&js, ", \"compared\": false, \"why\": \"%s\"}", !cur ? "no current metrics" : "not in the baseline");
            cJSON_Delete(cur);
            cJSON_Delete(base);
            continue;
        }
        double b0 = num(base, "balanced_accuracy"), b1 = num(cur, "balanced_accuracy");
        double n0 = num(base, "labelled"), n1 = num(cur, "labelled");
        double se = NAN;
        int flag = 0;
        if (!isnan(b0) && !isnan(b1) && n0 > 0 && n1 > 0) {
            se = sqrt(b0 * (1 - b0) / n0 + b1 * (1 - b1) / n1);
            flag = b1 < b0 - 1.96 * se - 1e-9;
        }
        *n_flagged += flag;
        if (flag)
            sg_log(SG_LOG_WARN, "task %s: balanced accuracy %.3f, baseline %.3f: a drop beyond noise (SE %.3f)", t->id, b1,
                   b0, se);
        sg_buf_printf(&js, ", \"compared\": true, \"balanced_accuracy\": {\"baseline\": ");
        jnum(&js, b0);
        sg_buf_printf(&js, ", \"current\": ");
        jnum(&js, b1);
        sg_buf_printf(&js, ", \"se\": ");
        jnum(&js, se);
        sg_buf_printf(&js, ", \"flagged\": %s}, \"auroc\": [", flag ? "true" : "false");
        sg_buf_printf(&csv, "%s,balanced_accuracy,,", t->id);
        if (!isnan(b0)) sg_buf_printf(&csv, "%.6f", b0);
        sg_buf_printf(&csv, ",");
        if (!isnan(b1)) sg_buf_printf(&csv, "%.6f", b1);
        sg_buf_printf(&csv, ",");
        if (!isnan(b0) && !isnan(b1)) sg_buf_printf(&csv, "%.6f", b1 - b0);
        sg_buf_printf(&csv, ",%d\n", flag);
        for (int c = 0; c < t->n_classes; c++) {
            const cJSON *ec = class_entry(cur, t->class_ids[c]), *eb = class_entry(base, t->class_ids[c]);
            double a0 = eb ? num(eb, "auroc") : NAN, a1 = ec ? num(ec, "auroc") : NAN, hi = NAN;
            const cJSON *ci = ec ? cJSON_GetObjectItemCaseSensitive(ec, "auroc_ci95") : NULL;
            if (cJSON_IsArray(ci) && cJSON_GetArraySize(ci) == 2 && cJSON_IsNumber(cJSON_GetArrayItem(ci, 1)))
                hi = cJSON_GetArrayItem(ci, 1)->valuedouble;
            int fa = !isnan(a0) && !isnan(hi) && a0 > hi + 1e-9;
            *n_flagged += fa;
            if (fa)
                sg_log(SG_LOG_WARN, "task %s, class %s: AUROC %.3f (95%% CI up to %.3f), baseline %.3f: a drop beyond noise",
                       t->id, t->class_ids[c], a1, hi, a0);
            sg_buf_printf(&js, "%s{\"class\": \"%s\", \"baseline\": ", c ? ", " : "", t->class_ids[c]);
            jnum(&js, a0);
            sg_buf_printf(&js, ", \"current\": ");
            jnum(&js, a1);
            sg_buf_printf(&js, ", \"current_ci95_high\": ");
            jnum(&js, hi);
            sg_buf_printf(&js, ", \"flagged\": %s}", fa ? "true" : "false");
            sg_buf_printf(&csv, "%s,auroc,%s,", t->id, t->class_ids[c]);
            if (!isnan(a0)) sg_buf_printf(&csv, "%.6f", a0);
            sg_buf_printf(&csv, ",");
            if (!isnan(a1)) sg_buf_printf(&csv, "%.6f", a1);
            sg_buf_printf(&csv, ",");
            if (!isnan(a0) && !isnan(a1)) sg_buf_printf(&csv, "%.6f", a1 - a0);
            sg_buf_printf(&csv, ",%d\n", fa);
        }
        sg_buf_printf(&js, "]}");
        cJSON_Delete(cur);
        cJSON_Delete(base);
    }
    sg_buf_printf(&js, "\n  ],\n  \"flagged\": %d\n}\n", *n_flagged);
    char p1[8192], p2[8192];
    snprintf(p1, sizeof p1, "%.4000s/comparison.json", dir);
    snprintf(p2, sizeof p2, "%.4000s/comparison.csv", dir);
    sg_status st = sg_file_write_atomic(p1, js.data, js.len, err);
    if (st == SG_OK) st = sg_file_write_atomic(p2, csv.data, csv.len, err);
    sg_buf_free(&js);
    sg_buf_free(&csv);
    return st;
}
