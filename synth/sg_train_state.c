/* sg_train_state.c — the resumable training state (`PREFIX.state`) of
 * `sgps train-engine --checkpoint PREFIX [--resume]`.
 *
 * Layout (little-endian): magic "SGTS", u32 version, u64 configuration hash,
 * u32 stage (1 or 2), u64 next step, f64 (as two u32) best validation score,
 * u64 n_params, u64 n_state, u32 ranks P, then params, P × state (each
 * rank's batch-norm running statistics, which differ between two
 * synchronizations), AdamW m, v, best params, best state (f32 each), then a
 * CRC-32 of everything before it. Every step's batch / episodes come from a
 * stream seeded by (seed, step), so resuming at step k on as many ranks
 * replays exactly what an uninterrupted run would have done. */
#include "sg_synth_impl.h"

#include <stdlib.h>
#include <string.h>

#define SGTS_MAGIC "SGTS"
#define SGTS_VERSION 2u /* 2: every rank's statistics */

static void hash_add(uint64_t *h, const void *p, size_t n) {
    uint64_t x = sg_fnv1a64(p, n);
    *h = (*h ^ x) * 0x100000001B3ull + 0x9E3779B97F4A7C15ull;
}

uint64_t sg_train_config_hash(const sg_engine *e, const sg_dataset *d, const sg_train_opts *o) {
    uint64_t h = 0xCBF29CE484222325ull;
    int ints[] = {o->stage1_epochs, o->batch,     o->stage2_episodes, o->episodes_per_step, o->way,
                  o->max_shot,      o->queries,   o->train_gen,       o->train_text,        o->train_head,
                  d->n,             d->n_classes, d->store,           o->val_episodes,      o->sgd1};
    float fl[] = {o->lr1, o->wd1, o->lr2, o->wd2, o->text_dropout};
    uint64_t u[] = {o->seed, (uint64_t)e->n_params, (uint64_t)e->base.n_state};
    hash_add(&h, ints, sizeof ints);
    hash_add(&h, fl, sizeof fl);
    hash_add(&h, u, sizeof u);
    hash_add(&h, &e->cfg, sizeof e->cfg);
    if (o->bn_group) hash_add(&h, &o->bn_group, sizeof o->bn_group); /* states written before it stay valid */
    if (o->n_teachers > 0 && o->kd_weight > 0) { /* which teachers, how much: states written before stay valid */
        float kd[] = {o->kd_weight, o->kd_temp};
        hash_add(&h, kd, sizeof kd);
        for (int t = 0; t < o->n_teachers; t++) {
            uint64_t id[] = {sg_engine_params_crc(o->teachers[t]), (uint64_t)o->teachers[t]->n_params};
            hash_add(&h, id, sizeof id);
        }
    }
    if (o->n_val_classes) hash_add(&h, o->val_classes, sizeof(int) * (size_t)o->n_val_classes);
    if (o->n_s2_classes) hash_add(&h, o->s2_classes, sizeof(int) * (size_t)o->n_s2_classes);
    hash_add(&h, d->label, sizeof(int) * (size_t)d->n);
    /* the data itself and what the engine started from: other images,
     * class names or descriptions, or an --init engine's normalization */
    for (int c = 0; c < d->n_classes; c++) {
        const char *nm = d->class_names ? d->class_names[c] : NULL, *tx = d->class_text ? d->class_text[c] : NULL;
        hash_add(&h, nm ? nm : "", nm ? strlen(nm) + 1 : 1);
        hash_add(&h, tx ? tx : "", tx ? strlen(tx) + 1 : 1);
    }
    uint32_t pix = sg_crc32(0, d->pix, (size_t)d->n * 3 * d->store * d->store);
    hash_add(&h, &pix, sizeof pix);
    hash_add(&h, e->mean, sizeof e->mean);
    hash_add(&h, e->std, sizeof e->std);
    return h;
}

sg_status sg_train_state_save(const char *path, uint64_t hash, const sg_train_snapshot *s, const sg_engine *e,
                              sg_err *err) {
    size_t np = e->n_params, ns = e->base.n_state;
    sg_buf b = {0};
    sg_buf_reserve(&b, 64 + sizeof(float) * (4 * np + ((size_t)s->ranks + 1) * ns));
    sg_buf_append(&b, SGTS_MAGIC, 4);
    sg_buf_u32(&b, SGTS_VERSION);
    sg_buf_u64(&b, hash);
    sg_buf_u32(&b, (uint32_t)s->stage);
    sg_buf_u64(&b, (uint64_t)s->next_step);
    uint64_t bv;
    memcpy(&bv, &s->best_val, sizeof bv);
    sg_buf_u64(&b, bv);
    sg_buf_u64(&b, np);
    sg_buf_u64(&b, ns);
    SG_ASSERT(s->ranks >= 1 && s->rank_state);
    sg_buf_u32(&b, (uint32_t)s->ranks);
    sg_buf_f32s(&b, e->params, np);
    sg_buf_f32s(&b, s->rank_state, (size_t)s->ranks * ns);
    sg_buf_f32s(&b, s->m, np);
    sg_buf_f32s(&b, s->v, np);
    sg_buf_f32s(&b, s->best, np);
    sg_buf_f32s(&b, s->best_state, ns);
    sg_buf_u32(&b, sg_crc32(0, b.data, b.len));
    sg_status st = sg_file_write_atomic(path, b.data, b.len, err);
    sg_buf_free(&b);
    return st;
}

sg_status sg_train_state_load(const char *path, uint64_t hash, sg_train_snapshot *s, sg_engine *e, sg_err *err) {
    size_t np = e->n_params, ns = e->base.n_state;
    uint8_t *data;
    size_t len;
    SG_ASSERT(s->ranks >= 1 && s->rank_state);
    sg_status st =
        sg_file_read_all(path, &data, &len, 64 + sizeof(float) * (4 * np + ((size_t)s->ranks + 1) * ns) + 4096, err);
    if (st != SG_OK) return st;
    if (len < 48 || memcmp(data, SGTS_MAGIC, 4) != 0) {
        free(data);
        return sg_err_set(err, SG_ERR_FORMAT, "%s: not an sgps training state (bad magic or too short)", path);
    }
    uint32_t crc = (uint32_t)data[len - 4] | (uint32_t)data[len - 3] << 8 | (uint32_t)data[len - 2] << 16 |
                   (uint32_t)data[len - 1] << 24;
    if (sg_crc32(0, data, len - 4) != crc) {
        free(data);
        return sg_err_set(err, SG_ERR_CHECKSUM, "%s: checksum mismatch (truncated or corrupt training state)", path);
    }
    sg_rd r = {data, len - 4, 4, 0};
    uint32_t ver = 0, stage = 0, ranks = 0;
    uint64_t h = 0, step = 0, bv = 0, fnp = 0, fns = 0;
    sg_rd_u32(&r, &ver);
    if (ver != SGTS_VERSION) {
        free(data);
        return sg_err_set(err, SG_ERR_VERSION, "%s: training state version %u; this sgps reads version %u", path, ver,
                          SGTS_VERSION);
    }
    sg_rd_u64(&r, &h);
    sg_rd_u32(&r, &stage);
    sg_rd_u64(&r, &step);
    sg_rd_u64(&r, &bv);
    sg_rd_u64(&r, &fnp);
    sg_rd_u64(&r, &fns);
    sg_rd_u32(&r, &ranks);
    if (r.bad || fnp != np || fns != ns) {
        free(data);
        return sg_err_set(err, SG_ERR_FORMAT, "%s: holds %llu parameters / %llu statistics; this engine has %zu / %zu",
                          path, (unsigned long long)fnp, (unsigned long long)fns, np, ns);
    }
    if (ranks != (uint32_t)s->ranks) {
        free(data);
        return sg_err_set(err, SG_ERR_ARG, "%s: written by a run on %u rank(s); resume it on as many (now %d)", path,
                          ranks, s->ranks);
    }
    if (h != hash) {
        free(data);
        return sg_err_set(err, SG_ERR_ARG,
                          "%s: written for different training settings or data (configuration hash %016llx, now "
                          "%016llx); resume with the same command line, or start afresh without --resume",
                          path, (unsigned long long)h, (unsigned long long)hash);
    }
    if (stage != 1 && stage != 2) {
        free(data);
        return sg_err_set(err, SG_ERR_FORMAT, "%s: stage %u is not 1 or 2", path, stage);
    }
    sg_rd_f32s(&r, e->params, np);
    sg_rd_f32s(&r, s->rank_state, (size_t)s->ranks * ns);
    if (!r.bad) memcpy(e->state, s->rank_state, sizeof(float) * ns); /* rank 0's */
    sg_rd_f32s(&r, s->m, np);
    sg_rd_f32s(&r, s->v, np);
    sg_rd_f32s(&r, s->best, np);
    sg_rd_f32s(&r, s->best_state, ns);
    int bad = r.bad || r.pos != r.len;
    free(data);
    if (bad) return sg_err_set(err, SG_ERR_FORMAT, "%s: truncated or oversized training state", path);
    s->stage = (int)stage;
    s->next_step = (long)step;
    memcpy(&s->best_val, &bv, sizeof bv);
    return SG_OK;
}
