/* sg_adapt.c — re-estimating the base network's normalization statistics on
 * unlabelled images of a new domain (AdaBN, Li et al. 2018). */
#include "sg_synth_impl.h"

#include <stdlib.h>
#include <string.h>

sg_status sg_engine_adapt_norm(sg_engine *e, int n, const uint8_t *images, float alpha, sg_err *err) {
    if (n < 2) return sg_err_set(err, SG_ERR_ARG, "normalization needs at least 2 images to adapt to (got %d)", n);
    if (!(alpha > 0 && alpha <= 1)) return sg_err_set(err, SG_ERR_ARG, "adaptation weight %g is outside (0, 1]", alpha);
    const sg_arch *a = &e->base;
    int chunk = 64;
    size_t in_sz = (size_t)3 * e->cfg.img * e->cfg.img, st_sz = (size_t)3 * e->cfg.store * e->cfg.store;
    float *x = sg_xalloc_floats((size_t)chunk * in_sz);
    /* Norm by norm, in order: the statistics of norm l's input are measured
     * with every earlier norm already adapted (eval mode), so each layer
     * sees what it will see at inference. */
    for (int l = 0; l < a->n_layers; l++) {
        const sg_layer *L = &a->layers[l];
        if (L->kind != SG_LAYER_BATCHNORM) continue;
        int C = L->cin, hw = L->in_h * L->in_w;
        double *s = sg_xcalloc((size_t)C, sizeof(double)), *ss = sg_xcalloc((size_t)C, sizeof(double));
        sg_arch front = *a; /* the layers before the norm: its output is the norm's input */
        front.n_layers = l;
        sg_ctx *ctx = sg_ctx_create(&front, chunk);
        for (int i = 0; i < n; i += chunk) {
            int b = n - i < chunk ? n - i : chunk;
            for (int k = 0; k < b; k++) sg_engine_prepare_image(e, images + (size_t)(i + k) * st_sz, 0, x + k * in_sz);
            sg_channel_sums(b, C, hw, sg_net_forward(&front, ctx, e->params, e->state, x, b, 0), s, ss);
        }
        double *mean = sg_xcalloc((size_t)C, sizeof(double)), *var = sg_xcalloc((size_t)C, sizeof(double));
        sg_channel_moments(C, (double)n * hw, s, ss, mean, var);
        float *rm = e->state + L->state_off, *rv = rm + C;
        for (int c = 0; c < C; c++) {
            rm[c] = (1 - alpha) * rm[c] + alpha * (float)mean[c];
            rv[c] = (1 - alpha) * rv[c] + alpha * (float)var[c];
        }
        sg_ctx_free(ctx);
        free(s);
        free(ss);
        free(mean);
        free(var);
    }
    free(x);
    e->norm_adapted = 1;
    return SG_OK;
}
