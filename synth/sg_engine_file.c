/* sg_engine_file.c — the engine file (.sgpe): magic "SGPE", format version,
 * configuration, input normalization, all parameters and the base network's
 * running statistics, then a CRC-32 of everything before it. Little-endian.
 * The configuration is 10 values, or 11 when a stage has more than one
 * convolution: the 11th packs the convolutions per stage, 4 bits each. A
 * Conv4 engine is therefore written exactly as before the 11th existed. A
 * 12th value holds flags when any is set (bit 0: the normalization was
 * adapted to a new domain, sgps adapt-engine; bit 1: the backbone was trained
 * with batch-norm statistics per source set, train-engine --bn-group);
 * unknown bits are refused.
 * Loading checks every field before building anything from it. */
#include "sg_synth_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SGPE_MAGIC "SGPE"

static uint32_t pack_convs(const sg_engine_config *c) {
    uint32_t p = 0;
    int deep = 0;
    for (int s = 0; s < c->stages; s++) {
        p |= (uint32_t)c->convs[s] << (4 * s);
        deep |= c->convs[s] != 1;
    }
    return deep ? p : 0;
}

/* Fills c->convs from the packed value (0: one per stage); -1 when out of range. */
static int unpack_convs(uint32_t p, sg_engine_config *c) {
    for (int s = 0; s < SG_ENGINE_MAX_STAGES; s++) c->convs[s] = 1;
    if (p == 0) return 0;
    if (c->stages < 1 || c->stages > SG_ENGINE_MAX_STAGES || (p >> (4 * c->stages)) != 0) return -1;
    for (int s = 0; s < c->stages; s++) {
        c->convs[s] = (int)((p >> (4 * s)) & 15u);
        if (c->convs[s] < 1 || c->convs[s] > SG_ENGINE_MAX_CONVS) return -1;
    }
    return 0;
}

#define SGPE_FLAG_NORM_ADAPTED 1u
#define SGPE_FLAG_BN_BY_SOURCE 2u
#define SGPE_FLAGS_KNOWN (SGPE_FLAG_NORM_ADAPTED | SGPE_FLAG_BN_BY_SOURCE)

/* Reads the configuration count and values (10, 11 or 12); the ones not
 * written are 0. An 11th is written only when nonzero, a 12th only when
 * nonzero. -1: malformed; -2: flags this version does not know (a newer
 * sgps wrote the file). */
static int read_config(sg_rd *r, uint32_t v[12]) {
    uint32_t nv;
    if (sg_rd_u32(r, &nv) || nv < 10 || nv > 12) return -1;
    v[10] = v[11] = 0;
    for (uint32_t i = 0; i < nv; i++)
        if (sg_rd_u32(r, &v[i])) return -1;
    if (nv == 11 && v[10] == 0) return -1;
    if (nv == 12 && v[11] == 0) return -1;
    if (nv == 12 && (v[11] & ~SGPE_FLAGS_KNOWN)) return -2;
    return 0;
}

/* read_config's -2: a newer sgps wrote the file. */
static sg_status unknown_flags(sg_err *err, const char *name, uint32_t flags) {
    return sg_err_set(err, SG_ERR_VERSION, "%s: engine flags 0x%x name features this sgps does not know; upgrade sgps", name,
                      flags);
}

void sg_engine_serialize(const sg_engine *e, sg_buf *b) {
    const sg_engine_config *c = &e->cfg;
    sg_buf_append(b, SGPE_MAGIC, 4);
    sg_buf_u32(b, SG_SGPE_VERSION);
    uint32_t packed = pack_convs(c);
    uint32_t flags = (e->norm_adapted ? SGPE_FLAG_NORM_ADAPTED : 0) | (e->bn_by_source ? SGPE_FLAG_BN_BY_SOURCE : 0);
    int32_t v[12] = {c->img, c->store, c->width, c->stages, c->rank, c->text_buckets,
                     c->text_dim, c->text_hidden, c->code_dim, c->n_base_classes, (int32_t)packed, (int32_t)flags};
    int nv = flags ? 12 : packed ? 11 : 10;
    sg_buf_u32(b, (uint32_t)nv);
    for (int i = 0; i < nv; i++) sg_buf_u32(b, (uint32_t)v[i]);
    sg_buf_f32s(b, e->mean, 3);
    sg_buf_f32s(b, e->std, 3);
    sg_buf_u64(b, e->n_params);
    sg_buf_f32s(b, e->params, e->n_params);
    sg_buf_u64(b, e->base.n_state);
    sg_buf_f32s(b, e->state, e->base.n_state);
    sg_buf_u32(b, sg_crc32(0, b->data, b->len));
}

sg_status sg_engine_save(const sg_engine *e, const char *path, sg_err *err) {
    sg_buf b = {0};
    sg_engine_serialize(e, &b);
    sg_status s = sg_file_write_atomic(path, b.data, b.len, err);
    sg_buf_free(&b);
    return s;
}

static int in_range(int v, int lo, int hi) { return v >= lo && v <= hi; }

/* NULL when the base network's running statistics are usable, else why not. */
const char *sg_engine_check_state(const sg_engine *e) {
    for (int i = 0; i < e->base.n_layers; i++) {
        const sg_layer *l = &e->base.layers[i];
        if (l->kind != SG_LAYER_BATCHNORM) continue;
        for (int c = 0; c < 2 * l->cin; c++) {
            float v = e->state[l->state_off + (size_t)c];
            if (!isfinite(v)) return "a batch-norm running statistic is not finite";
            if (c >= l->cin && v < 0) return "a batch-norm running variance is negative";
        }
    }
    return NULL;
}

sg_status sg_engine_deserialize(const uint8_t *data, size_t len, const char *name, sg_engine **out, sg_err *err) {
    *out = NULL;
    if (len < 12 || memcmp(data, SGPE_MAGIC, 4) != 0)
        return sg_err_set(err, SG_ERR_FORMAT, "%s: not an sgps engine file (bad magic)", name);
    uint32_t crc = sg_get_u32le(data + len - 4);
    /* the checksum first (every version ends with it): a damaged header is
     * reported as damage, not as a version or a configuration it does not hold */
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    if (sg_crc32(0, data, len - 4) != crc)
        return sg_err_set(err, SG_ERR_CHECKSUM, "%s: checksum mismatch: the file is corrupt or truncated", name);
#endif
    uint32_t ver = sg_get_u32le(data + 4);
    if (ver > SG_SGPE_VERSION)
        return sg_err_set(err, SG_ERR_VERSION, "%s: engine format version %u is newer than this sgps reads (%d); upgrade sgps",
                          name, ver, SG_SGPE_VERSION);
    if (ver < SG_SGPE_VERSION)
        return sg_err_set(err, SG_ERR_VERSION,
                          "%s: engine format version %u has an older generator layout; retrain the generator from its backbone "
                          "(sgps train-engine --init-backbone %s --epochs 0)", name, ver, name);
    sg_rd r = {data, len - 4, 8, 0};
    uint32_t v[12];
    int rc = read_config(&r, v);
    if (rc == -2) return unknown_flags(err, name, v[11]);
    if (rc) return sg_err_set(err, SG_ERR_FORMAT, "%s: truncated or malformed header", name);
    sg_engine_config c = {(int)v[0], (int)v[1], (int)v[2], (int)v[3], (int)v[4],
                          (int)v[5], (int)v[6], (int)v[7], (int)v[8], (int)v[9], {0}};
    if (unpack_convs(v[10], &c) ||!in_range(c.img, 8, 1024) || !in_range(c.store, c.img, 2048) || !in_range(c.width, 1, SG_ENGINE_MAX_WIDTH) ||
        !in_range(c.stages, 1, SG_ENGINE_MAX_STAGES) || (c.img >> c.stages) < 1 || !in_range(c.rank, 1, SG_ENGINE_MAX_RANK) ||
        !in_range(c.text_buckets, 1, 1 << 22) || !in_range(c.text_dim, 1, SG_TEXT_MAX_DIM) ||
        !in_range(c.text_hidden, 1, SG_TEXT_MAX_DIM) || !in_range(c.code_dim, 1, SG_TEXT_MAX_DIM) ||
        !in_range(c.n_base_classes, 1, 100000))
        return sg_err_set(err, SG_ERR_FORMAT, "%s: engine configuration out of range", name);
    float mean[3], std[3];
    if (sg_rd_f32s(&r, mean, 3) || sg_rd_f32s(&r, std, 3)) return sg_err_set(err, SG_ERR_FORMAT, "%s: truncated", name);
    (void)crc;
    /* The sizes the configuration implies must fit in the file before anything is allocated. */
    sg_engine *probe = sg_xcalloc(1, sizeof *probe);
    probe->cfg = c;
    sg_engine_layout(probe);
    size_t need = (probe->n_params + probe->base.n_state) * 4;
    free(probe);
    if (need > len)
        return sg_err_set(err, SG_ERR_FORMAT, "%s: truncated: the configuration needs %zu bytes of parameters, the file has %zu",
                          name, need, len);
    sg_engine *e = sg_engine_alloc(&c);
    uint64_t np, ns;
    if (sg_rd_u64(&r, &np) || np != e->n_params || sg_rd_f32s(&r, e->params, e->n_params) || sg_rd_u64(&r, &ns) ||
        ns != e->base.n_state || sg_rd_f32s(&r, e->state, e->base.n_state) || r.pos != r.len) {
        sg_engine_free(e);
        return sg_err_set(err, SG_ERR_FORMAT, "%s: parameter block does not match the configuration", name);
    }
    for (size_t i = 0; i < e->n_params; i++)
        if (!isfinite(e->params[i])) {
            sg_engine_free(e);
            return sg_err_set(err, SG_ERR_NONFINITE, "%s: parameter %zu is not finite", name, i);
        }
    const char *bad = sg_engine_check_state(e);
    if (bad) {
        sg_status code = strstr(bad, "negative") ? SG_ERR_FORMAT : SG_ERR_NONFINITE;
        sg_engine_free(e);
        return sg_err_set(err, code, "%s: %s", name, bad);
    }
    for (int i = 0; i < 3; i++)
        if (!isfinite(mean[i]) || !isfinite(std[i]) || std[i] <= 0) {
            sg_engine_free(e);
            return sg_err_set(err, SG_ERR_FORMAT, "%s: invalid normalization statistics", name);
        }
    sg_engine_set_normalization(e, mean, std);
    e->norm_adapted = (v[11] & SGPE_FLAG_NORM_ADAPTED) != 0;
    e->bn_by_source = (v[11] & SGPE_FLAG_BN_BY_SOURCE) != 0;
    *out = e;
    return SG_OK;
}

sg_status sg_engine_load(const char *path, sg_engine **out, sg_err *err) {
    uint8_t *data;
    size_t len;
    *out = NULL;
    sg_status s = sg_file_read_all(path, &data, &len, (size_t)4 << 30, err);
    if (s != SG_OK) return s;
    s = sg_engine_deserialize(data, len, path, out, err);
    free(data);
    return s;
}

sg_status sg_engine_read_backbone_config(const char *path, sg_engine_config *out, sg_err *err) {
    uint8_t *data;
    size_t len;
    sg_status s = sg_file_read_all(path, &data, &len, (size_t)4 << 30, err);
    if (s != SG_OK) return s;
    sg_rd r = {data, len >= 4 ? len - 4 : 0, 8, 0};
    uint32_t v[12];
    int rc = 0;
    sg_engine_config c;
    sg_engine_config_default(&c);
    if (len < 12 || memcmp(data, SGPE_MAGIC, 4) != 0)
        s = sg_err_set(err, SG_ERR_FORMAT, "%s: not an sgps engine file (bad magic)", path);
    else if (sg_crc32(0, data, len - 4) != sg_get_u32le(data + len - 4))
        s = sg_err_set(err, SG_ERR_CHECKSUM, "%s: checksum mismatch: the file is corrupt or truncated", path);
    else if (sg_get_u32le(data + 4) > SG_SGPE_VERSION)
        s = sg_err_set(err, SG_ERR_VERSION, "%s: engine format version %u is newer than this sgps reads", path,
                       sg_get_u32le(data + 4));
    else if ((rc = read_config(&r, v)) != 0)
        s = rc == -2 ? unknown_flags(err, path, v[11]) : sg_err_set(err, SG_ERR_FORMAT, "%s: malformed header", path);
    else {
        c.img = (int)v[0];
        c.store = (int)v[1];
        c.width = (int)v[2];
        c.stages = (int)v[3];
        if (!in_range(c.img, 8, 1024) || !in_range(c.store, c.img, 2048) || !in_range(c.width, 1, SG_ENGINE_MAX_WIDTH) ||
            !in_range(c.stages, 1, SG_ENGINE_MAX_STAGES) || unpack_convs(v[10], &c))
            s = sg_err_set(err, SG_ERR_FORMAT, "%s: backbone configuration out of range", path);
        else *out = c;
    }
    free(data);
    return s;
}

sg_status sg_engine_load_backbone(sg_engine *e, const char *path, sg_err *err) {
    uint8_t *data;
    size_t len;
    sg_status s = sg_file_read_all(path, &data, &len, (size_t)4 << 30, err);
    if (s != SG_OK) return s;
    s = SG_ERR_FORMAT;
    sg_rd r = {data, len >= 4 ? len - 4 : 0, 8, 0};
    uint32_t v[12];
    float mean[3], std[3];
    uint64_t np, nst;
    int rc = 0;
    if (len < 12 || memcmp(data, SGPE_MAGIC, 4) != 0) {
        s = sg_err_set(err, SG_ERR_FORMAT, "%s: not an sgps engine file (bad magic)", path);
    } else if (sg_get_u32le(data + 4) > SG_SGPE_VERSION) {
        s = sg_err_set(err, SG_ERR_VERSION, "%s: engine format version %u is newer than this sgps reads", path,
                       sg_get_u32le(data + 4));
    } else if (sg_crc32(0, data, len - 4) != sg_get_u32le(data + len - 4)) {
        s = sg_err_set(err, SG_ERR_CHECKSUM, "%s: checksum mismatch: the file is corrupt or truncated", path);
    } else if ((rc = read_config(&r, v)) != 0) {
        s = rc == -2 ? unknown_flags(err, path, v[11]) : sg_err_set(err, SG_ERR_FORMAT, "%s: malformed header", path);
    } else {
        sg_rd_f32s(&r, mean, 3);
        sg_rd_f32s(&r, std, 3);
        const sg_engine_config *c = &e->cfg;
        if (r.bad || (int)v[0] != c->img || (int)v[1] != c->store || (int)v[2] != c->width || (int)v[3] != c->stages ||
            (int)v[9] != c->n_base_classes || v[10] != pack_convs(c)) {
            sg_engine_config fc = *c;
            fc.stages = (int)v[3];
            char convs[32] = "unreadable";
            if (fc.stages >= 1 && fc.stages <= SG_ENGINE_MAX_STAGES && unpack_convs(v[10], &fc) == 0)
                sg_engine_convs_str(&fc, convs, sizeof convs);
            s = sg_err_set(err, SG_ERR_ARG,
                           "%s: its backbone (img %u, store %u, width %u, stages %u, convolutions %s, %u classes) does "
                           "not match", path, v[0], v[1], v[2], v[3], convs, v[9]);
        } else if (sg_rd_u64(&r, &np) || np < e->off_s2 || np > (r.len - r.pos) / 4) {
            s = sg_err_set(err, SG_ERR_FORMAT, "%s: truncated parameter block", path);
        } else {
            sg_rd_f32s(&r, e->params, e->off_s2);
            r.pos += (size_t)(np - e->off_s2) * 4;
            const char *bad = NULL;
            if (sg_rd_u64(&r, &nst) || nst != e->base.n_state || sg_rd_f32s(&r, e->state, e->base.n_state)) {
                s = sg_err_set(err, SG_ERR_FORMAT, "%s: malformed running statistics", path);
            } else if ((bad = sg_engine_check_state(e)) != NULL) {
                s = sg_err_set(err, SG_ERR_NONFINITE, "%s: %s", path, bad);
            } else {
                sg_engine_set_normalization(e, mean, std);
                e->norm_adapted = (v[11] & SGPE_FLAG_NORM_ADAPTED) != 0; /* the statistics came along */
                e->bn_by_source = (v[11] & SGPE_FLAG_BN_BY_SOURCE) != 0;  /* and how the backbone was trained */
                s = SG_OK;
            }
        }
    }
    free(data);
    return s;
}
