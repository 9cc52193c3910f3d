/* sg_classifier.c — the standalone classifier file (.sgpm): architecture,
 * input normalization, class names, parameters and running statistics.
 *
 * Layout, all integers u32 and floats f32, little-endian:
 *   "SGPM"  version  flags (bit 0: meta JSON present)
 *   in_c in_h in_w  n_layers  { kind cin cout k stride pad has_bias } × n_layers
 *   bn_eps  mean[3]  std[3]
 *   n_classes  { len bytes } × n_classes  [ len bytes ] (meta JSON)
 *   n_params (u64) floats  n_state (u64) floats
 *   CRC-32 of every byte before it.
 *
 * Loading parses with a bounds-checked reader first (truncation), then checks
 * the CRC, then rebuilds the architecture through sg_arch_add_* — only after
 * every field was range-checked, since those functions abort on bad shapes —
 * and compares the rebuilt layers with the stored ones. */
#include "sg_model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SGPM_MAGIC "SGPM"
#define SGPM_FLAG_META 1u
#define SGPM_MAX_CHANNELS 4096
#define SGPM_MAX_K 15
#define SGPM_MAX_STRIDE 15
#define SGPM_MAX_HW 1024 /* the input side: engines go up to 512 px */
#define SGPM_MAX_META (1u << 20)
#define SGPM_MAX_LAYER_FLOATS ((size_t)1 << 27) /* per image, per layer output */
#define SGPM_MAX_LINEAR_IN ((size_t)1 << 24)

static char *dup_or_default(const char *s, int i) {
    if (s) return sg_xstrdup(s);
    char tmp[32];
    snprintf(tmp, sizeof tmp, "class%d", i);
    return sg_xstrdup(tmp);
}

sg_classifier *sg_classifier_create(const sg_arch *arch, const float mean[3], const float std[3], int n_classes,
                                    const char *const *class_names, const float *params, const float *state) {
    SG_ASSERT(arch && mean && std && params);
    SG_ASSERT(n_classes > 0 && n_classes <= SG_MAX_CLASSES && n_classes == sg_arch_out_features(arch));
    sg_classifier *c = sg_xcalloc(1, sizeof *c);
    c->arch = *arch;
    memcpy(c->mean, mean, sizeof c->mean);
    memcpy(c->std, std, sizeof c->std);
    c->n_classes = n_classes;
    c->class_names = sg_xcalloc((size_t)n_classes, sizeof(char *));
    for (int i = 0; i < n_classes; i++) c->class_names[i] = dup_or_default(class_names ? class_names[i] : NULL, i);
    c->params = sg_xalloc_floats(arch->n_params);
    memcpy(c->params, params, sizeof(float) * arch->n_params);
    c->state = sg_xalloc_floats(arch->n_state);
    if (state) memcpy(c->state, state, sizeof(float) * arch->n_state);
    else sg_arch_init_state(arch, c->state);
    return c;
}

void sg_classifier_free(sg_classifier *c) {
    if (!c) return;
    if (c->class_names)
        for (int i = 0; i < c->n_classes; i++) free(c->class_names[i]);
    free(c->class_names);
    free(c->params);
    free(c->state);
    free(c->meta_json);
    free(c);
}

void sg_classifier_serialize(const sg_classifier *c, sg_buf *out) {
    const sg_arch *a = &c->arch;
    size_t start = out->len;
    sg_buf_append(out, SGPM_MAGIC, 4);
    sg_buf_u32(out, SG_SGPM_VERSION);
    sg_buf_u32(out, c->meta_json ? SGPM_FLAG_META : 0);
    sg_buf_u32(out, (uint32_t)a->in_c);
    sg_buf_u32(out, (uint32_t)a->in_h);
    sg_buf_u32(out, (uint32_t)a->in_w);
    sg_buf_u32(out, (uint32_t)a->n_layers);
    for (int i = 0; i < a->n_layers; i++) {
        const sg_layer *l = &a->layers[i];
        const int f[7] = {(int)l->kind, l->cin, l->cout, l->k, l->stride, l->pad, l->has_bias};
        for (int j = 0; j < 7; j++) sg_buf_u32(out, (uint32_t)f[j]);
    }
    sg_buf_f32(out, a->bn_eps);
    sg_buf_f32s(out, c->mean, 3);
    sg_buf_f32s(out, c->std, 3);
    sg_buf_u32(out, (uint32_t)c->n_classes);
    for (int i = 0; i < c->n_classes; i++) sg_buf_str(out, c->class_names[i]);
    if (c->meta_json) sg_buf_str(out, c->meta_json);
    sg_buf_u64(out, a->n_params);
    sg_buf_f32s(out, c->params, a->n_params);
    sg_buf_u64(out, a->n_state);
    sg_buf_f32s(out, c->state, a->n_state);
    sg_buf_u32(out, sg_crc32(0, out->data + start, out->len - start));
}

sg_status sg_classifier_save(const sg_classifier *c, const char *path, sg_err *err) {
    /* Nothing is written that sg_classifier_load would refuse. */
    for (int i = 0; i < c->n_classes; i++)
        if (strlen(c->class_names[i]) > SG_MAX_NAME)
            return sg_err_set(err, SG_ERR_ARG, "%s: class name %d is longer than %d bytes", path, i, SG_MAX_NAME);
    if (c->meta_json && strlen(c->meta_json) > SGPM_MAX_META)
        return sg_err_set(err, SG_ERR_ARG, "%s: metadata of %zu bytes, above the limit of %u", path,
                          strlen(c->meta_json), SGPM_MAX_META);
    sg_buf b = {0};
    sg_classifier_serialize(c, &b);
    sg_status s = sg_file_write_atomic(path, b.data, b.len, err);
    sg_buf_free(&b);
    return s;
}

/* ---- loading ---- */

typedef struct sgpm_layer_rec {
    uint32_t kind, cin, cout, k, stride, pad, has_bias;
} sgpm_layer_rec;

static int all_finite(const float *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return 0;
    return 1;
}

/* Range-checks one stored layer against the shape flowing into it (c, h, w)
 * and adds it to `a`. Returns 0, or 1 with a reason in `why`. */
static int rebuild_layer(sg_arch *a, const sgpm_layer_rec *r, char *why, size_t why_n) {
    const int c = a->n_layers ? a->layers[a->n_layers - 1].cout : a->in_c;
    const int h = a->n_layers ? a->layers[a->n_layers - 1].out_h : a->in_h;
    const int w = a->n_layers ? a->layers[a->n_layers - 1].out_w : a->in_w;
    switch (r->kind) {
    case SG_LAYER_CONV2D: {
        if (r->cout < 1 || r->cout > SGPM_MAX_CHANNELS || r->k < 1 || r->k > SGPM_MAX_K || r->stride < 1 ||
            r->stride > SGPM_MAX_STRIDE || r->pad > SGPM_MAX_K || r->has_bias > 1)
            return snprintf(why, why_n, "conv2d geometry out of range"), 1;
        int k = (int)r->k, s = (int)r->stride, p = (int)r->pad;
        if (h + 2 * p < k || w + 2 * p < k) return snprintf(why, why_n, "conv2d kernel larger than its input"), 1;
        size_t of = (size_t)r->cout * sg_conv2d_out_size(h, k, s, p) * sg_conv2d_out_size(w, k, s, p);
        if (of > SGPM_MAX_LAYER_FLOATS) return snprintf(why, why_n, "conv2d output too large"), 1;
        sg_arch_add_conv(a, (int)r->cout, k, s, p, (int)r->has_bias);
        return 0;
    }
    case SG_LAYER_MAXPOOL:
    case SG_LAYER_AVGPOOL:
        if (r->k < 1 || r->k > SGPM_MAX_K || r->stride < 1 || r->stride > SGPM_MAX_STRIDE)
            return snprintf(why, why_n, "pool geometry out of range"), 1;
        if ((int)r->k > h || (int)r->k > w) return snprintf(why, why_n, "pool window larger than its input"), 1;
        if (r->kind == SG_LAYER_MAXPOOL) sg_arch_add_maxpool(a, (int)r->k, (int)r->stride);
        else sg_arch_add_avgpool(a, (int)r->k, (int)r->stride);
        return 0;
    case SG_LAYER_LINEAR:
        if (r->cout < 1 || r->cout > SGPM_MAX_CHANNELS || r->has_bias > 1)
            return snprintf(why, why_n, "linear geometry out of range"), 1;
        if ((size_t)c * h * w > SGPM_MAX_LINEAR_IN) return snprintf(why, why_n, "linear input too large"), 1;
        sg_arch_add_linear(a, (int)r->cout, (int)r->has_bias);
        return 0;
    case SG_LAYER_L2NORM:
        if ((size_t)c * h * w > SGPM_MAX_LINEAR_IN) return snprintf(why, why_n, "l2norm input too large"), 1;
        sg_arch_add_l2norm(a);
        return 0;
    case SG_LAYER_BATCHNORM: sg_arch_add_batchnorm(a); return 0;
    case SG_LAYER_AFFINE: sg_arch_add_affine(a); return 0;
    case SG_LAYER_RELU: sg_arch_add_relu(a); return 0;
    case SG_LAYER_SILU: sg_arch_add_silu(a); return 0;
    case SG_LAYER_GAP: sg_arch_add_gap(a); return 0;
    default: return snprintf(why, why_n, "unknown layer kind %u", r->kind), 1;
    }
}

sg_status sg_classifier_deserialize(const uint8_t *data, size_t len, const char *name, sg_classifier **out,
                                    sg_err *err) {
    *out = NULL;
    if (!name) name = "(memory)";
    if (len < 4 || memcmp(data, SGPM_MAGIC, 4) != 0)
        return sg_err_set(err, SG_ERR_FORMAT, "%s: not a classifier file (bad magic)", name);
    sg_rd r = {data, len, 4, 0};
    uint32_t version = 0, flags = 0, in_c = 0, in_h = 0, in_w = 0, n_layers = 0;
    sg_rd_u32(&r, &version);
    sg_rd_u32(&r, &flags);
    if (r.bad) return sg_err_set(err, SG_ERR_FORMAT, "%s: truncated classifier file (header)", name);
    if (version > SG_SGPM_VERSION)
        return sg_err_set(err, SG_ERR_VERSION, "%s: classifier format version %u is newer than supported (%d)", name,
                          version, SG_SGPM_VERSION);
    if (version == 0) return sg_err_set(err, SG_ERR_FORMAT, "%s: invalid classifier format version 0", name);
    if (flags & ~SGPM_FLAG_META) return sg_err_set(err, SG_ERR_FORMAT, "%s: unknown header flags 0x%x", name, flags);
    sg_rd_u32(&r, &in_c);
    sg_rd_u32(&r, &in_h);
    sg_rd_u32(&r, &in_w);
    sg_rd_u32(&r, &n_layers);
    if (r.bad) return sg_err_set(err, SG_ERR_FORMAT, "%s: truncated classifier file (architecture)", name);
    if (n_layers < 1 || n_layers > SG_MAX_LAYERS)
        return sg_err_set(err, SG_ERR_FORMAT, "%s: inconsistent architecture: %u layers (1..%d allowed)", name,
                          n_layers, SG_MAX_LAYERS);
    sgpm_layer_rec recs[SG_MAX_LAYERS];
    for (uint32_t i = 0; i < n_layers; i++) {
        sg_rd_u32(&r, &recs[i].kind);
        sg_rd_u32(&r, &recs[i].cin);
        sg_rd_u32(&r, &recs[i].cout);
        sg_rd_u32(&r, &recs[i].k);
        sg_rd_u32(&r, &recs[i].stride);
        sg_rd_u32(&r, &recs[i].pad);
        sg_rd_u32(&r, &recs[i].has_bias);
    }
    float bn_eps = 0, mean[3] = {0}, stdv[3] = {0};
    uint32_t n_classes = 0;
    sg_rd_f32(&r, &bn_eps);
    sg_rd_f32s(&r, mean, 3);
    sg_rd_f32s(&r, stdv, 3);
    sg_rd_u32(&r, &n_classes);
    if (r.bad) return sg_err_set(err, SG_ERR_FORMAT, "%s: truncated classifier file (architecture)", name);
    if (n_classes < 1 || n_classes > SG_MAX_CLASSES)
        return sg_err_set(err, SG_ERR_FORMAT, "%s: inconsistent architecture: %u classes (1..%d allowed)", name,
                          n_classes, SG_MAX_CLASSES);

    /* Everything from here is owned by c and released by sg_classifier_free. */
    sg_classifier *c = sg_xcalloc(1, sizeof *c);
    sg_status st = SG_OK;
    c->n_classes = (int)n_classes;
    c->class_names = sg_xcalloc(n_classes, sizeof(char *));
    /* A stored length above the limit is named as such, not as truncation. */
    for (uint32_t i = 0; i < n_classes && !r.bad; i++) {
        if (r.pos + 4 <= r.len && sg_get_u32le(r.p + r.pos) > SG_MAX_NAME) {
            st = sg_err_set(err, SG_ERR_FORMAT, "%s: class name %u is longer than %d bytes", name, i, SG_MAX_NAME);
            goto fail;
        }
        sg_rd_str(&r, &c->class_names[i], SG_MAX_NAME);
    }
    if (!r.bad && (flags & SGPM_FLAG_META)) {
        if (r.pos + 4 <= r.len && sg_get_u32le(r.p + r.pos) > SGPM_MAX_META) {
            st = sg_err_set(err, SG_ERR_FORMAT, "%s: metadata longer than %u bytes", name, SGPM_MAX_META);
            goto fail;
        }
        sg_rd_str(&r, &c->meta_json, SGPM_MAX_META);
    }
    uint64_t n_params = 0, n_state = 0;
    if (!r.bad) sg_rd_u64(&r, &n_params);
    if (!r.bad && n_params > (r.len - r.pos) / 4) r.bad = 1;
    if (!r.bad) {
        c->params = sg_xalloc_floats((size_t)n_params);
        sg_rd_f32s(&r, c->params, (size_t)n_params);
    }
    if (!r.bad) sg_rd_u64(&r, &n_state);
    if (!r.bad && n_state > (r.len - r.pos) / 4) r.bad = 1;
    if (!r.bad) {
        c->state = sg_xalloc_floats((size_t)n_state);
        sg_rd_f32s(&r, c->state, (size_t)n_state);
    }
    uint32_t crc_stored = 0;
    size_t body = r.pos;
    if (!r.bad) sg_rd_u32(&r, &crc_stored);
    if (r.bad) {
        st = sg_err_set(err, SG_ERR_FORMAT, "%s: truncated classifier file (%zu bytes)", name, len);
        goto fail;
    }
    if (r.pos != len) {
        st = sg_err_set(err, SG_ERR_FORMAT, "%s: %zu unexpected bytes after the end of the classifier", name,
                        len - r.pos);
        goto fail;
    }
    uint32_t crc = sg_crc32(0, data, body);
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    crc = crc_stored; /* let the fuzzer reach the checks behind the checksum */
#endif
    if (crc != crc_stored) {
        st = sg_err_set(err, SG_ERR_CHECKSUM, "%s: checksum mismatch (stored %08x, computed %08x)", name, crc_stored,
                        crc);
        goto fail;
    }

    /* Architecture: range-check, rebuild, compare with what was stored. */
    /* Classifiers read RGB images (sg_image_to_tensor writes three planes). */
    if (in_c != 3 || in_h < 1 || in_h > SGPM_MAX_HW || in_w < 1 || in_w > SGPM_MAX_HW) {
        st = sg_err_set(err, SG_ERR_FORMAT,
                        "%s: inconsistent architecture: input %ux%ux%u (3 channels and 1..%d px a side allowed)", name,
                        in_c, in_h, in_w, SGPM_MAX_HW);
        goto fail;
    }
    if (!isfinite(bn_eps) || !(bn_eps > 0)) {
        st = sg_err_set(err, SG_ERR_FORMAT, "%s: inconsistent architecture: batch-norm eps %g", name, (double)bn_eps);
        goto fail;
    }
    sg_arch_init(&c->arch, (int)in_c, (int)in_h, (int)in_w);
    c->arch.bn_eps = bn_eps;
    for (uint32_t i = 0; i < n_layers; i++) {
        char why[128];
        if (rebuild_layer(&c->arch, &recs[i], why, sizeof why)) {
            st = sg_err_set(err, SG_ERR_FORMAT, "%s: inconsistent architecture: layer %u: %s", name, i, why);
            goto fail;
        }
        const sg_layer *l = &c->arch.layers[i];
        if ((uint32_t)l->cin != recs[i].cin || (uint32_t)l->cout != recs[i].cout || (uint32_t)l->k != recs[i].k ||
            (uint32_t)l->stride != recs[i].stride || (uint32_t)l->pad != recs[i].pad ||
            (uint32_t)l->has_bias != recs[i].has_bias) {
            st = sg_err_set(err, SG_ERR_FORMAT, "%s: inconsistent architecture: layer %u (%s) fields do not match its input",
                            name, i, sg_layer_kind_name(l->kind));
            goto fail;
        }
    }
    if ((uint32_t)sg_arch_out_features(&c->arch) != n_classes) {
        st = sg_err_set(err, SG_ERR_FORMAT, "%s: inconsistent architecture: %u class names but %d outputs", name,
                        n_classes, sg_arch_out_features(&c->arch));
        goto fail;
    }
    if (n_params != c->arch.n_params || n_state != c->arch.n_state) {
        st = sg_err_set(err, SG_ERR_FORMAT,
                        "%s: inconsistent architecture: %llu parameters and %llu state values stored, architecture "
                        "needs %zu and %zu",
                        name, (unsigned long long)n_params, (unsigned long long)n_state, c->arch.n_params,
                        c->arch.n_state);
        goto fail;
    }
    if (!all_finite(mean, 3) || !all_finite(stdv, 3) || !all_finite(c->params, c->arch.n_params) ||
        !all_finite(c->state, c->arch.n_state)) {
        st = sg_err_set(err, SG_ERR_NONFINITE, "%s: non-finite weights (NaN or Inf) in the classifier", name);
        goto fail;
    }
    for (int i = 0; i < 3; i++)
        if (!(stdv[i] > 0)) {
            st = sg_err_set(err, SG_ERR_FORMAT, "%s: input std[%d] = %g is not positive", name, i, (double)stdv[i]);
            goto fail;
        }
    for (int i = 0; i < c->arch.n_layers; i++) {
        const sg_layer *l = &c->arch.layers[i];
        if (l->kind != SG_LAYER_BATCHNORM) continue;
        for (int ch = 0; ch < l->cin; ch++)
            if (c->state[l->state_off + l->cin + ch] < 0) {
                st = sg_err_set(err, SG_ERR_FORMAT, "%s: negative running variance in layer %d", name, i);
                goto fail;
            }
    }
    memcpy(c->mean, mean, sizeof mean);
    memcpy(c->std, stdv, sizeof stdv);
    *out = c;
    return SG_OK;
fail:
    sg_classifier_free(c);
    return st;
}

sg_status sg_classifier_load(const char *path, sg_classifier **out, sg_err *err) {
    *out = NULL;
    uint8_t *data;
    size_t len;
    sg_status s = sg_file_read_all(path, &data, &len, (size_t)1 << 31, err);
    if (s != SG_OK) return s;
    s = sg_classifier_deserialize(data, len, path, out, err);
    free(data);
    return s;
}
