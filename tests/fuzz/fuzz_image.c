/* libFuzzer target: any bytes given to image_load_memory (PNG, JPEG, WebP, with and without
 * alpha and EXIF orientation) must decode to a consistent image or fail with a message that
 * names the input, never crash, leak or read out of bounds. The pixel count is capped here
 * so that huge declared sizes do not exhaust the fuzzer's memory. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    /* The first byte picks the options; the rest is the file. */
    ImageLoadOptions opts = {.keep_alpha = data[0] & 1, .apply_exif_orientation = data[0] & 2};
    data++;
    size--;
    Error err = {{0}};
    int w, h;
    if (image_read_size_memory("fuzz", data, size, &w, &h, &err) == 0 &&
        (long long)w * h > 4096LL * 4096)
        return 0; /* a header promising a huge image: only the allocation would be tested */
    Image im;
    if (image_load_memory("fuzz", data, size, &opts, &im, &err) == 0) {
        if (im.width <= 0 || im.height <= 0 || (im.channels != 3 && im.channels != 4) ||
            im.exif_orientation < 1 || im.exif_orientation > 8)
            abort();
        unsigned sum = 0; /* touch the buffer so ASan checks its extent */
        size_t n = (size_t)im.width * im.height * im.channels;
        for (size_t i = 0; i < n; i += 4096)
            sum += im.pixels[i];
        sum += im.pixels[n - 1];
        if (sum > 255u * (n / 4096 + 2))
            abort();
        image_free(&im);
    } else if (strncmp(err.message, "fuzz", 4) != 0) {
        abort(); /* every message names the input */
    }
    image_exif_parse_orientation(data, size);
    return 0;
}
