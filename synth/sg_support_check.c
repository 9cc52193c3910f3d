/* sg_support_check.c — a leave-one-out check of a task's support images.
 *
 * Each support image of a class that has at least two is left out, the
 * classifier is synthesized from the rest of the task with the same options,
 * and the left-out image is classified by it. A few exemplars decide the
 * whole classifier, and one that its own class's other exemplars do not
 * recognize (a mislabelled, atypical or poorly taken image) can turn it
 * around; this is the one quality signal a task without labelled images has.
 * On ham10000 mel-vs-nv tasks the check's accuracy follows the classifier's
 * accuracy on unseen images (docs/engine.md). Cost: one synthesis per
 * checked image; a task of more than exact_max support images takes the fast
 * check instead (about one synthesis in all; sg_synth.h). */
#include "sg_synth_impl.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void sg_support_check_free(sg_support_check *c) {
    if (!c) return;
    free(c->pred);
    free(c->p_own);
    memset(c, 0, sizeof *c);
}

/* Records image k (of class c) given its logits. */
static void record(sg_support_check *out, int k, int c, const float *logit) {
    int N = out->n_classes, best = 0;
    for (int j = 1; j < N; j++)
        if (logit[j] > logit[best]) best = j;
    double z = 0;
    for (int j = 0; j < N; j++) z += exp((double)logit[j] - logit[best]);
    out->p_own[k] = (float)(exp((double)logit[c] - logit[best]) / z);
    out->mean_p_own += out->p_own[k];
    out->pred[k] = best;
    out->checked++;
    out->correct += best == c;
}

/* The exact check: one synthesis per checked image. */
static sg_status check_exact(const sg_engine *e, const sg_task *task, const sg_synth_opts *o, sg_support_check *out,
                             sg_err *err) {
    int N = task->n_classes;
    const sg_engine_config *cf = &e->cfg;
    size_t ssz = (size_t)3 * cf->store * cf->store, isz = (size_t)3 * cf->img * cf->img;
    int kmax = 0;
    for (int c = 0; c < N; c++)
        if (task->classes[c].n_shots > kmax) kmax = task->classes[c].n_shots;
    sg_task_class *cls = sg_xmalloc(sizeof *cls * (size_t)N);
    uint8_t *rest = sg_xmalloc(ssz * (size_t)(kmax > 1 ? kmax - 1 : 1));
    float *x = sg_xalloc_floats(isz);
    sg_status st = SG_OK;
    sg_ctx *ctx = NULL;
    sg_arch arch = {0};
    for (int c = 0, first = 0; c < N && st == SG_OK; first += task->classes[c].n_shots, c++) {
        const sg_task_class *k = &task->classes[c];
        if (k->n_shots < 2) continue; /* leaving out its only image would change what the class is */
        for (int i = 0; i < k->n_shots && st == SG_OK; i++) {
            memcpy(cls, task->classes, sizeof *cls * (size_t)N);
            if (i > 0) memcpy(rest, k->images, ssz * (size_t)i);
            if (i + 1 < k->n_shots)
                memcpy(rest + ssz * (size_t)i, k->images + ssz * (size_t)(i + 1), ssz * (size_t)(k->n_shots - i - 1));
            cls[c].n_shots = k->n_shots - 1;
            cls[c].images = rest;
            sg_task t = {N, cls};
            sg_classifier *m;
            if ((st = sg_engine_synthesize(e, &t, o, &m, err)) != SG_OK) break;
            if (!ctx || memcmp(&arch, &m->arch, sizeof arch) != 0) {
                sg_ctx_free(ctx);
                ctx = sg_ctx_create(&m->arch, 1);
                arch = m->arch;
            }
            sg_engine_prepare_image(e, k->images + ssz * (size_t)i, 0, x);
            record(out, first + i, c, sg_net_forward(&m->arch, ctx, m->params, m->state, x, 1, 0));
            sg_classifier_free(m);
        }
    }
    sg_ctx_free(ctx);
    free(x);
    free(rest);
    free(cls);
    return st;
}

sg_status sg_engine_support_check(const sg_engine *e, const sg_task *task, const sg_synth_opts *o, int exact_max,
                                  sg_support_check *out, sg_err *err) {
    memset(out, 0, sizeof *out);
    int N = task->n_classes;
    out->n_classes = N;
    for (int c = 0; c < N; c++) out->n_images += task->classes[c].n_shots;
    out->pred = sg_xmalloc(sizeof(int) * (size_t)(out->n_images ? out->n_images : 1));
    out->p_own = sg_xmalloc(sizeof(float) * (size_t)(out->n_images ? out->n_images : 1));
    for (int i = 0; i < out->n_images; i++) {
        out->pred[i] = -1;
        out->p_own[i] = NAN;
    }
    if (!o->use_images) return SG_OK;
    sg_status st;
    if (out->n_images <= exact_max) {
        st = check_exact(e, task, o, out, err);
    } else {
        out->fast = 1;
        float *logits = sg_xalloc_floats((size_t)out->n_images * (N > 0 ? N : 1));
        if ((st = sg_engine_support_loo_fast(e, task, o, logits, err)) == SG_OK)
            for (int c = 0, first = 0; c < N; first += task->classes[c].n_shots, c++)
                for (int i = 0; task->classes[c].n_shots >= 2 && i < task->classes[c].n_shots; i++)
                    record(out, first + i, c, logits + (size_t)(first + i) * N);
        free(logits);
    }
    out->mean_p_own = out->checked ? out->mean_p_own / out->checked : NAN;
    if (st != SG_OK) sg_support_check_free(out);
    return st;
}

int sg_support_check_method(const char *name) {
    static const char *const names[4] = {NULL, "auto", "exact", "fast"};
    for (int m = SG_CHECK_AUTO; m <= SG_CHECK_FAST; m++)
        if (name && strcmp(name, names[m]) == 0) return m;
    return -1;
}

int sg_support_check_exact_max(int method) {
    return method == SG_CHECK_EXACT ? INT_MAX : method == SG_CHECK_FAST ? -1 : SG_SUPPORT_CHECK_EXACT_MAX;
}

int sg_support_check_failed(int correct, int checked, int n_classes) {
    return checked > 0 && n_classes > 0 && (double)correct / checked <= 1.0 / n_classes;
}

char *sg_support_check_json(const sg_support_check *c, const sg_task *task) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "checked", c->checked);
    cJSON_AddNumberToObject(j, "correct", c->correct);
    if (c->checked) cJSON_AddNumberToObject(j, "accuracy", (double)c->correct / c->checked);
    else cJSON_AddNullToObject(j, "accuracy");
    cJSON_AddNumberToObject(j, "chance", 1.0 / (c->n_classes > 0 ? c->n_classes : 1));
    cJSON_AddStringToObject(j, "method", c->fast ? "fast" : "exact");
    if (c->checked) cJSON_AddNumberToObject(j, "mean_own_probability", c->mean_p_own);
    else cJSON_AddNullToObject(j, "mean_own_probability");
    /* The first SG_SUPPORT_CHECK_MAX_LISTED misclassified exemplars, so the
     * classifier's metadata stays far below its 1 MiB limit. */
    cJSON *mis = cJSON_AddArrayToObject(j, "misclassified");
    for (int ci = 0, first = 0, listed = 0; ci < task->n_classes; first += task->classes[ci].n_shots, ci++)
        for (int i = 0; i < task->classes[ci].n_shots && listed < SG_SUPPORT_CHECK_MAX_LISTED; i++) {
            int p = c->pred[first + i];
            if (p < 0 || p == ci) continue;
            listed++;
            cJSON *m = cJSON_CreateObject();
            cJSON_AddStringToObject(m, "class", task->classes[ci].name ? task->classes[ci].name : "");
            cJSON_AddNumberToObject(m, "image", i);
            cJSON_AddStringToObject(m, "predicted", task->classes[p].name ? task->classes[p].name : "");
            cJSON_AddNumberToObject(m, "own_probability", c->p_own[first + i]);
            cJSON_AddItemToArray(mis, m);
        }
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    char *r = sg_xstrdup(s);
    cJSON_free(s);
    return r;
}
