/* Writing a generated image: 8-bit RGB PNG (libpng) with text chunks, written atomically (temp
 * name + rename). A text value that Latin-1 can hold goes into a tEXt chunk (as PIL's
 * PngInfo.add_text writes it), anything else into an uncompressed iTXt chunk (PIL's fallback),
 * so kohya's readers and A1111's PNG Info see the same strings. */
#ifndef SDTI_GENERATE_PNG_OUTPUT_H
#define SDTI_GENERATE_PNG_OUTPUT_H

#include <stdint.h>

#include "base/error.h"

typedef struct PngTextEntry {
    const char *key;   /* Latin-1 keyword, 1..79 bytes */
    const char *value; /* UTF-8 */
} PngTextEntry;

/* rgb [height, width, 3]. */
int png_output_write(const char *path, const uint8_t *rgb, int width, int height,
                     const PngTextEntry *text, int n_text, Error *err);

#endif
