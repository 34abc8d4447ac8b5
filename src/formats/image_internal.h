/* Shared between image.c (dispatch, EXIF, orientation) and image_codecs.c (the three
 * library decoders). Each decoder fills `out` with RGB or RGBA pixels as PIL's convert()
 * gives them and stores the raw EXIF block it found (malloc'd, or NULL). */
#ifndef SDTI_FORMATS_IMAGE_INTERNAL_H
#define SDTI_FORMATS_IMAGE_INTERNAL_H

#include "formats/image.h"

typedef struct ImageDecodeResult {
    Image image;
    uint8_t *exif; /* TIFF-structured EXIF payload or NULL */
    size_t exif_size;
} ImageDecodeResult;

int image_decode_png(const char *name, const uint8_t *data, size_t size, bool keep_alpha,
                     bool header_only, ImageDecodeResult *res, Error *err);
int image_decode_jpeg(const char *name, const uint8_t *data, size_t size, bool keep_alpha,
                      bool header_only, ImageDecodeResult *res, Error *err);
int image_decode_webp(const char *name, const uint8_t *data, size_t size, bool keep_alpha,
                      bool header_only, ImageDecodeResult *res, Error *err);

/* Allocates the pixel buffer after checking the size limits. */
int image_alloc_pixels(const char *name, Image *image, int width, int height, int channels,
                       Error *err);

#endif
