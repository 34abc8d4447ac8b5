/* Image dispatch by magic number, EXIF orientation, and the size-only read. The decoders
 * themselves are in image_codecs.c. */
#define _POSIX_C_SOURCE 200809L
#include "formats/image.h"

#include <stdlib.h>
#include <string.h>

#include "base/file_util.h"
#include "formats/image_internal.h"

ImageFormat image_format_from_path(const char *path) {
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    if (!dot || (slash && dot < slash))
        return IMAGE_FORMAT_UNKNOWN;
    /* kohya globs each extension in all-lower and all-upper case only. */
    static const struct {
        const char *lower, *upper;
        ImageFormat format;
    } table[] = {
        {".png", ".PNG", IMAGE_FORMAT_PNG},    {".jpg", ".JPG", IMAGE_FORMAT_JPEG},
        {".jpeg", ".JPEG", IMAGE_FORMAT_JPEG}, {".webp", ".WEBP", IMAGE_FORMAT_WEBP},
        {".bmp", ".BMP", IMAGE_FORMAT_BMP},    {".avif", ".AVIF", IMAGE_FORMAT_AVIF},
        {".jxl", ".JXL", IMAGE_FORMAT_JXL},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strcmp(dot, table[i].lower) || !strcmp(dot, table[i].upper))
            return table[i].format;
    return IMAGE_FORMAT_UNKNOWN;
}

const char *image_format_name(ImageFormat format) {
    switch (format) {
    case IMAGE_FORMAT_PNG:
        return "PNG";
    case IMAGE_FORMAT_JPEG:
        return "JPEG";
    case IMAGE_FORMAT_WEBP:
        return "WebP";
    case IMAGE_FORMAT_BMP:
        return "BMP";
    case IMAGE_FORMAT_AVIF:
        return "AVIF";
    case IMAGE_FORMAT_JXL:
        return "JPEG XL";
    default:
        return "unknown";
    }
}

ImageFormat image_format_sniff(const uint8_t *d, size_t n) {
    if (n >= 8 && !memcmp(d, "\x89PNG\r\n\x1a\n", 8))
        return IMAGE_FORMAT_PNG;
    if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF)
        return IMAGE_FORMAT_JPEG;
    if (n >= 12 && !memcmp(d, "RIFF", 4) && !memcmp(d + 8, "WEBP", 4))
        return IMAGE_FORMAT_WEBP;
    if (n >= 2 && d[0] == 'B' && d[1] == 'M')
        return IMAGE_FORMAT_BMP;
    if (n >= 12 && !memcmp(d + 4, "ftypavif", 8))
        return IMAGE_FORMAT_AVIF;
    if ((n >= 2 && d[0] == 0xFF && d[1] == 0x0A) ||
        (n >= 12 && !memcmp(d, "\0\0\0\x0cJXL \r\n\x87\n", 12)))
        return IMAGE_FORMAT_JXL;
    return IMAGE_FORMAT_UNKNOWN;
}

int image_alloc_pixels(const char *name, Image *image, int width, int height, int channels,
                       Error *err) {
    if (width <= 0 || height <= 0)
        return error_set(err, "%s: image has no pixels (%dx%d)", name, width, height);
    if ((unsigned long long)width * (unsigned long long)height > IMAGE_MAX_PIXELS)
        return error_set(err,
                         "%s: image is %dx%d, more than %llu pixels (PIL refuses it as a "
                         "decompression bomb); shrink it first",
                         name, width, height, IMAGE_MAX_PIXELS);
    image->pixels = malloc((size_t)width * (size_t)height * (size_t)channels);
    if (!image->pixels)
        return error_set(err, "%s: out of memory for a %dx%d image", name, width, height);
    image->width = width;
    image->height = height;
    image->channels = channels;
    return 0;
}

void image_free(Image *image) {
    if (!image)
        return;
    free(image->pixels);
    image->pixels = NULL;
}

static int unsupported(const char *name, ImageFormat f, Error *err) {
    return error_set(err,
                     "%s: %s images are not supported (kohya reads them through PIL plugins; "
                     "sdti decodes PNG, JPEG and WebP): convert the file to PNG",
                     name, image_format_name(f));
}

static int decode(const char *name, const uint8_t *data, size_t size, bool keep_alpha,
                  bool header_only, ImageDecodeResult *res, Error *err) {
    memset(res, 0, sizeof *res);
    ImageFormat f = image_format_sniff(data, size);
    switch (f) {
    case IMAGE_FORMAT_PNG:
        return image_decode_png(name, data, size, keep_alpha, header_only, res, err);
    case IMAGE_FORMAT_JPEG:
        return image_decode_jpeg(name, data, size, keep_alpha, header_only, res, err);
    case IMAGE_FORMAT_WEBP:
        return image_decode_webp(name, data, size, keep_alpha, header_only, res, err);
    case IMAGE_FORMAT_UNKNOWN:
        if (size == 0)
            return error_set(err, "%s: empty file, not an image", name);
        return error_set(err, "%s: not a PNG, JPEG or WebP file (unrecognised first bytes)", name);
    default:
        return unsupported(name, f, err);
    }
}

int image_load_memory(const char *name, const uint8_t *data, size_t size,
                      const ImageLoadOptions *opts, Image *out, Error *err) {
    ImageLoadOptions none = {0};
    if (!opts)
        opts = &none;
    memset(out, 0, sizeof *out);
    ImageDecodeResult res;
    if (decode(name, data, size, opts->keep_alpha, false, &res, err) != 0)
        return -1;
    *out = res.image;
    out->exif_orientation = res.exif ? image_exif_parse_orientation(res.exif, res.exif_size) : 1;
    free(res.exif);
    if (opts->apply_exif_orientation && out->exif_orientation != 1 &&
        image_apply_orientation(out, out->exif_orientation, err) != 0) {
        image_free(out);
        return error_prefix(err, "%s: ", name);
    }
    return 0;
}

int image_load_file(const char *path, const ImageLoadOptions *opts, Image *out, Error *err) {
    char *data = NULL;
    size_t size = 0;
    memset(out, 0, sizeof *out);
    if (file_read_all(path, &data, &size, err) != 0)
        return -1;
    int rc = image_load_memory(path, (const uint8_t *)data, size, opts, out, err);
    free(data);
    return rc;
}

int image_read_size_memory(const char *name, const uint8_t *data, size_t size, int *width,
                           int *height, Error *err) {
    ImageDecodeResult res;
    if (decode(name, data, size, false, true, &res, err) != 0)
        return -1;
    *width = res.image.width;
    *height = res.image.height;
    return 0;
}

int image_read_size(const char *path, int *width, int *height, Error *err) {
    char *data = NULL;
    size_t size = 0;
    if (file_read_all(path, &data, &size, err) != 0)
        return -1;
    int rc = image_read_size_memory(path, (const uint8_t *)data, size, width, height, err);
    free(data);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * EXIF */

static unsigned rd16(const uint8_t *p, bool le) {
    return le ? (unsigned)(p[0] | p[1] << 8) : (unsigned)(p[0] << 8 | p[1]);
}

static uint32_t rd32(const uint8_t *p, bool le) {
    return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
              : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

int image_exif_parse_orientation(const uint8_t *exif, size_t size) {
    if (size >= 6 && !memcmp(exif, "Exif\0\0", 6)) {
        exif += 6;
        size -= 6;
    }
    if (size < 8)
        return 1;
    bool le;
    if (!memcmp(exif, "II*\0", 4))
        le = true;
    else if (!memcmp(exif, "MM\0*", 4))
        le = false;
    else
        return 1;
    uint32_t ifd = rd32(exif + 4, le);
    if (ifd > size - 2)
        return 1;
    unsigned count = rd16(exif + ifd, le);
    for (unsigned i = 0; i < count; i++) {
        size_t off = (size_t)ifd + 2 + (size_t)i * 12;
        if (off + 12 > size)
            return 1;
        const uint8_t *e = exif + off;
        if (rd16(e, le) == 0x0112 && rd16(e + 2, le) == 3 /* SHORT */) {
            unsigned v = rd16(e + 8, le);
            return v >= 1 && v <= 8 ? (int)v : 1;
        }
    }
    return 1;
}

/* Orientation o maps a stored pixel to its displayed place. Written as: displayed (x, y) in a
 * W' x H' image takes the stored pixel at (sx, sy). Same transforms as exif_transpose:
 * 2 mirror, 3 rotate 180, 4 flip, 5 transpose, 6 rotate 270 (CW 90), 7 transverse,
 * 8 rotate 90 (CCW 90). */
int image_apply_orientation(Image *image, int o, Error *err) {
    if (o == 1)
        return 0;
    if (o < 1 || o > 8)
        return error_set(err, "EXIF orientation %d is not 1..8", o);
    int w = image->width, h = image->height, c = image->channels;
    bool swap = o >= 5;
    int ow = swap ? h : w, oh = swap ? w : h;
    uint8_t *dst = malloc((size_t)w * h * c);
    if (!dst)
        return error_set(err, "out of memory reorienting a %dx%d image", w, h);
    for (int y = 0; y < oh; y++) {
        for (int x = 0; x < ow; x++) {
            int sx, sy;
            switch (o) {
            case 2:
                sx = w - 1 - x;
                sy = y;
                break;
            case 3:
                sx = w - 1 - x;
                sy = h - 1 - y;
                break;
            case 4:
                sx = x;
                sy = h - 1 - y;
                break;
            case 5:
                sx = y;
                sy = x;
                break;
            case 6:
                sx = y;
                sy = h - 1 - x;
                break;
            case 7:
                sx = w - 1 - y;
                sy = h - 1 - x;
                break;
            default:
                sx = w - 1 - y;
                sy = x;
                break; /* 8 */
            }
            memcpy(dst + ((size_t)y * ow + x) * c, image->pixels + ((size_t)sy * w + sx) * c,
                   (size_t)c);
        }
    }
    free(image->pixels);
    image->pixels = dst;
    image->width = ow;
    image->height = oh;
    image->exif_orientation = 1;
    return 0;
}
