/* sg_l2norm.c — centred L2 normalization of feature vectors:
 * y = (x - center) / sqrt(|x - center|² + eps). It turns a linear head into
 * a cosine classifier; the centre is a parameter so that a synthesizer can
 * write a task's own feature centre into a classifier. */
#include "sg_model.h"

#include <math.h>

void sg_l2norm_forward(int n, int c, const float *restrict x, const float *restrict center, float eps,
                       float *restrict y) {
    for (int i = 0; i < n; i++) {
        const float *restrict xi = x + (size_t)i * c;
        float *restrict yi = y + (size_t)i * c;
        double ss = 0;
        for (int j = 0; j < c; j++) {
            float v = xi[j] - (center ? center[j] : 0.0f);
            yi[j] = v;
            ss += (double)v * v;
        }
        float r = (float)(1.0 / sqrt(ss + eps));
        for (int j = 0; j < c; j++) yi[j] *= r;
    }
}

void sg_l2norm_backward(int n, int c, const float *restrict x, const float *restrict center, float eps,
                        const float *restrict dy, float *restrict dx, float *restrict dcenter) {
    for (int i = 0; i < n; i++) {
        const float *restrict xi = x + (size_t)i * c;
        const float *restrict gi = dy + (size_t)i * c;
        double ss = 0, yg = 0;
        for (int j = 0; j < c; j++) {
            float v = xi[j] - (center ? center[j] : 0.0f);
            ss += (double)v * v;
            yg += (double)v * gi[j];
        }
        double r = 1.0 / sqrt(ss + eps);
        yg *= r; /* y·dy */
        for (int j = 0; j < c; j++) {
            float v = xi[j] - (center ? center[j] : 0.0f);
            float dv = (float)(r * (gi[j] - v * r * yg));
            if (dx) dx[(size_t)i * c + j] += dv;
            if (dcenter) dcenter[j] -= dv;
        }
    }
}
