/* sg_optim.c — SGD with momentum and AdamW over flat buffers laid out like
 * the parameters. */
#include "sg_model.h"

#include <math.h>

void sg_sgd_step(size_t n, float *restrict params, const float *restrict grads, float *restrict mom, float lr,
                 float momentum, float weight_decay, const uint8_t *restrict decay_mask) {
    for (size_t i = 0; i < n; i++) {
        float g = grads[i];
        if (weight_decay != 0 && (!decay_mask || decay_mask[i])) g += weight_decay * params[i];
        mom[i] = momentum * mom[i] + g;
        params[i] -= lr * mom[i];
    }
}

void sg_adamw_step(size_t n, float *restrict params, const float *restrict grads, float *restrict m,
                   float *restrict v, long t, float lr, float beta1, float beta2, float eps, float weight_decay,
                   const uint8_t *restrict decay_mask) {
    SG_ASSERT(t >= 1);
    float bc1 = 1.0f - powf(beta1, (float)t), bc2 = 1.0f - powf(beta2, (float)t);
    float step = lr / bc1, isq = 1.0f / sqrtf(bc2);
    for (size_t i = 0; i < n; i++) {
        float g = grads[i];
        m[i] = beta1 * m[i] + (1 - beta1) * g;
        v[i] = beta2 * v[i] + (1 - beta2) * g * g;
        if (weight_decay != 0 && (!decay_mask || decay_mask[i])) params[i] -= lr * weight_decay * params[i];
        params[i] -= step * m[i] / (sqrtf(v[i]) * isq + eps);
    }
}
