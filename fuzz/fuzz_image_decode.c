/* fuzz_image_decode.c — libFuzzer target: arbitrary bytes through the image
 * decoders (JPEG, PNG, PGM/PPM by magic), at full size and with a DCT scaling
 * hint, then resized both ways. Must never crash, leak or hang. */
#include "sg_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sg_image_limits lim = {1u << 22};
    sg_image im;
    const float mean[3] = {0, 0, 0}, sd[3] = {1, 1, 1};
    float t[3 * 12 * 12];
    for (int hint = 0; hint < 2; hint++) {
        if (sg_image_decode_hint(data, size, "fuzz", &lim, hint ? 12 : 0, hint ? 12 : 0, &im, NULL) == SG_OK) {
            SG_ASSERT(im.w > 0 && im.h > 0 && im.rgb);
            SG_ASSERT((uint64_t)im.w * (uint64_t)im.h <= lim.max_pixels);
            sg_image_to_tensor(&im, 12, 12, mean, sd, t);
            sg_image_to_tensor(&im, 1, 3, mean, sd, t);
            sg_image_free(&im);
        } else {
            SG_ASSERT(im.rgb == NULL);
        }
    }
    return 0;
}
