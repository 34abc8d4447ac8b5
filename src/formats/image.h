/* Training-image decoding: PNG (libpng), JPEG (libjpeg-turbo) and WebP (libwebp), giving the
 * same 8-bit pixels as kohya's `load_image`, which opens the file with PIL and calls
 * `image.convert("RGB")` (or `convert("RGBA")` for --alpha_mask). PIL's conversions are
 * matched, not improved on:
 *   - RGBA / LA / palette-with-transparency -> RGB DROPS the alpha channel (no compositing
 *     over white or black: the colour under a transparent pixel is what the model sees);
 *   - grayscale and palette images are expanded to RGB; 1/2/4-bit grays scale to 0..255;
 *   - 16-bit RGB(A) and gray+alpha keep the high byte; 16-bit gray (PIL mode "I;16") is
 *     CLAMPED to 0..255, as PIL's I;16 -> L conversion does;
 *   - CMYK/YCCK JPEGs use PIL's CMYK -> RGB formula (Adobe files are stored inverted);
 *   - WebP: the first frame of an animation.
 * EXIF orientation: kohya never calls ImageOps.exif_transpose (nor does imagesize, which it
 * uses for the size), so by default the pixels come as stored. The orientation is still read
 * and reported (`exif_orientation`), and `apply_exif_orientation` rotates like
 * exif_transpose for callers that want it.
 * BMP (in kohya's IMAGE_EXTENSIONS through PIL's own reader) and AVIF/JXL (PIL plugins) have
 * no decoder among our Debian libraries: image_format_from_path names them so the dataset
 * can refuse them with a clear message. */
#ifndef SDTI_FORMATS_IMAGE_H
#define SDTI_FORMATS_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

/* Cap on width*height; PIL's default MAX_IMAGE_PIXELS is 89,478,485 and it raises
 * DecompressionBombError at twice that. */
#define IMAGE_MAX_PIXELS (2ull * 89478485ull)

typedef enum ImageFormat {
    IMAGE_FORMAT_UNKNOWN = 0,
    IMAGE_FORMAT_PNG,
    IMAGE_FORMAT_JPEG,
    IMAGE_FORMAT_WEBP,
    /* In kohya's list but not decodable here (see above). */
    IMAGE_FORMAT_BMP,
    IMAGE_FORMAT_AVIF,
    IMAGE_FORMAT_JXL,
} ImageFormat;

typedef struct Image {
    int width;
    int height;
    int channels;         /* 3 (RGB) or 4 (RGBA) */
    uint8_t *pixels;      /* height rows of width*channels bytes, top row first */
    int exif_orientation; /* 1..8 from the file's EXIF (1 when absent); see apply option */
} Image;

typedef struct ImageLoadOptions {
    bool keep_alpha;             /* convert("RGBA") instead of convert("RGB") */
    bool apply_exif_orientation; /* rotate/flip as ImageOps.exif_transpose (kohya: no) */
} ImageLoadOptions;

/* The format by the file's extension, as kohya's glob decides what is an image (".png",
 * ".jpg", ".jpeg", ".webp", ".bmp" in either all-lower or all-upper case; ".avif", ".jxl"
 * when PIL plugins are present). UNKNOWN for anything else, including mixed case (".Png"),
 * which kohya's case-sensitive glob skips too. */
ImageFormat image_format_from_path(const char *path);
const char *image_format_name(ImageFormat format);
/* The format by the first bytes (magic numbers). */
ImageFormat image_format_sniff(const uint8_t *data, size_t size);

/* Decodes a whole file / buffer. `name` is used in messages. Errors name the file and say
 * what is wrong ("not a PNG/JPEG/WebP file", "truncated", ...). */
int image_load_file(const char *path, const ImageLoadOptions *opts, Image *out, Error *err);
int image_load_memory(const char *name, const uint8_t *data, size_t size,
                      const ImageLoadOptions *opts, Image *out, Error *err);
void image_free(Image *image);

/* Width and height from the header only (what kohya's `imagesize.get` reads: stored size,
 * EXIF orientation ignored). */
int image_read_size(const char *path, int *width, int *height, Error *err);
int image_read_size_memory(const char *name, const uint8_t *data, size_t size, int *width,
                           int *height, Error *err);

/* Reorients `image` in place for an EXIF orientation 2..8 (1 is a no-op). */
int image_apply_orientation(Image *image, int orientation, Error *err);

/* The EXIF orientation (1..8) in a TIFF-structured EXIF block (with or without the
 * "Exif\0\0" prefix); 1 when absent or unreadable. */
int image_exif_parse_orientation(const uint8_t *exif, size_t size);

#endif
