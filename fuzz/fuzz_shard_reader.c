/* fuzz_shard_reader.c — libFuzzer target: arbitrary bytes as a shard (tar,
 * tar.zst, tar.gz by content) through the streaming reader with image
 * decoding on. Must never crash, leak or hang; every sample it returns must
 * be self-consistent. */
#include "sg_io.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sg_shard_reader_opts o;
    sg_shard_reader_opts_default(&o);
    o.decode = 1;
    o.min_w = o.min_h = 16;
    o.log_skips = 0;
    o.max_member_bytes = (size_t)4 << 20;
    o.limits.max_pixels = 1u << 22; /* keep decoded images small under ASan */
    sg_shard_reader *r = sg_shard_reader_open_memory(data, size, "fuzz.tar", &o, NULL);
    sg_sample *s;
    const float mean[3] = {0.5f, 0.5f, 0.5f}, sd[3] = {0.25f, 0.25f, 0.25f};
    float t[3 * 8 * 8];
    while (sg_shard_reader_next(r, &s) == SG_OK && s) {
        SG_ASSERT(s->key && s->n_members > 0);
        if (s->image) SG_ASSERT(s->img.w > 0 && s->img.h > 0 && s->img.rgb);
        if (s->img.rgb) sg_image_to_tensor(&s->img, 8, 8, mean, sd, t);
    }
    SG_ASSERT(sg_shard_reader_done(r));
    for (size_t i = 0; i < sg_shard_reader_n_messages(r); i++) SG_ASSERT(sg_shard_reader_message(r, i));
    sg_shard_reader_free(r);
    return 0;
}
