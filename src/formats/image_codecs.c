/* The three library decoders behind image.c, each set up to reproduce PIL's pixels (see
 * image.h for the conversion rules). libpng and libjpeg report errors by longjmp, so every
 * allocation a decoder makes before a longjmp can happen is reachable from `res` or from a
 * volatile local and freed on the error path. */
#include "formats/image_internal.h"

#include <setjmp.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */

#include <jpeglib.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <webp/decode.h>
#include <webp/demux.h>

/* ------------------------------------------------------------------------------------------
 * PNG */

typedef struct PngReader {
    const uint8_t *data;
    size_t size, pos;
    char message[256];
} PngReader;

static void png_read_from_memory(png_structp png, png_bytep out, png_size_t n) {
    PngReader *r = png_get_io_ptr(png);
    if (n > r->size - r->pos) {
        snprintf(r->message, sizeof r->message, "truncated (the file ends inside a chunk)");
        png_error(png, "truncated");
    }
    memcpy(out, r->data + r->pos, n);
    r->pos += n;
}

static void png_on_error(png_structp png, png_const_charp msg) {
    PngReader *r = png_get_error_ptr(png);
    if (!r->message[0]) {
        /* libpng quotes a bad chunk's type bytes as they are: keep the message printable. */
        snprintf(r->message, sizeof r->message, "%s", msg);
        for (char *c = r->message; *c; c++)
            if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
                *c = '?';
    }
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg; /* PIL ignores the same warnings (bad CRC in ancillary chunks, ...) */
}

int image_decode_png(const char *name, const uint8_t *data, size_t size, bool keep_alpha,
                     bool header_only, ImageDecodeResult *res, Error *err) {
    PngReader reader = {.data = data, .size = size};
    png_structp png =
        png_create_read_struct(PNG_LIBPNG_VER_STRING, &reader, png_on_error, png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    png_infop end_info = info ? png_create_info_struct(png) : NULL;
    if (!end_info) {
        png_destroy_read_struct(&png, &info, NULL);
        return error_set(err, "%s: out of memory starting the PNG decoder", name);
    }
    uint16_t *volatile rows16 = NULL;
    png_bytep *volatile row_ptrs = NULL;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, &end_info);
        free(rows16);
        free(row_ptrs);
        image_free(&res->image);
        return error_set(err, "%s: broken PNG file: %s", name, reader.message);
    }
    png_set_read_fn(png, &reader, png_read_from_memory);
    png_set_user_limits(png, 1u << 24, 1u << 24);
    /* PIL decodes files whose ancillary chunks have bad CRCs; so do we. */
    png_set_crc_action(png, PNG_CRC_QUIET_USE, PNG_CRC_QUIET_USE);
    png_read_info(png, info);
    png_uint_32 width, height;
    int depth, color_type, interlace;
    png_get_IHDR(png, info, &width, &height, &depth, &color_type, &interlace, NULL, NULL);
    int channels = keep_alpha ? 4 : 3;
    if (header_only) {
        res->image.width = (int)width;
        res->image.height = (int)height;
        png_destroy_read_struct(&png, &info, &end_info);
        return 0;
    }
    if (image_alloc_pixels(name, &res->image, (int)width, (int)height, channels, err) != 0) {
        png_destroy_read_struct(&png, &info, &end_info);
        return -1;
    }
    bool has_trns = png_get_valid(png, info, PNG_INFO_tRNS) != 0;
    /* Everything is expanded to RGBA at the file's depth; the reduction to 8 bits and the
     * dropping of alpha happen below, where PIL's rules are spelled out. */
    png_set_expand(png); /* palette -> RGB, gray 1/2/4 -> 8 (scaled), tRNS -> alpha */
    if (!has_trns && !(color_type & PNG_COLOR_MASK_ALPHA))
        png_set_add_alpha(png, depth == 16 ? 0xffff : 0xff, PNG_FILLER_AFTER);
    png_set_gray_to_rgb(png);
    if (depth == 16)
        png_set_swap(png); /* host order (little-endian machines) for the uint16 view */
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    size_t want = (size_t)width * 4 * (depth == 16 ? 2 : 1);
    if (rowbytes != want)
        png_error(png, "unexpected row layout after expansion");
    rows16 = malloc(rowbytes * height);
    row_ptrs = malloc(sizeof(png_bytep) * height);
    if (!rows16 || !row_ptrs)
        png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < height; y++)
        row_ptrs[y] = (png_bytep)rows16 + rowbytes * y;
    (void)passes;
    png_read_image(png, row_ptrs);
    png_read_end(png, end_info);

    /* PIL opens 16-bit gray without alpha as mode "I;16", whose conversion to 8 bits
     * clamps; every other 16-bit layout is unpacked to its high byte. */
    bool clamp16 = depth == 16 && color_type == PNG_COLOR_TYPE_GRAY;
    const uint8_t *src8 = (const uint8_t *)rows16;
    const uint16_t *src16 = rows16;
    uint8_t *dst = res->image.pixels;
    size_t n = (size_t)width * height;
    for (size_t i = 0; i < n; i++) {
        for (int c = 0; c < channels; c++) {
            uint8_t v;
            if (depth == 16) {
                uint16_t w = src16[i * 4 + c];
                v = clamp16 && c < 3 ? (uint8_t)(w > 255 ? 255 : w) : (uint8_t)(w >> 8);
            } else {
                v = src8[i * 4 + c];
            }
            dst[i * channels + c] = v;
        }
    }

    png_bytep exif = NULL;
    png_uint_32 exif_len = 0;
#ifdef PNG_eXIf_SUPPORTED
    if (png_get_eXIf_1(png, info, &exif_len, &exif) == 0 &&
        png_get_eXIf_1(png, end_info, &exif_len, &exif) == 0)
        exif = NULL;
#endif
    if (exif && exif_len > 0) {
        res->exif = malloc(exif_len);
        if (res->exif) {
            memcpy(res->exif, exif, exif_len);
            res->exif_size = exif_len;
        }
    }
    png_destroy_read_struct(&png, &info, &end_info);
    free(rows16);
    free(row_ptrs);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * JPEG */

typedef struct JpegError {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
} JpegError;

static void jpeg_on_error(j_common_ptr cinfo) {
    JpegError *e = (JpegError *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->message);
    longjmp(e->jump, 1);
}

static void jpeg_on_message(j_common_ptr cinfo, int level) {
    (void)cinfo; /* warnings (corrupt data recovered, ...) are silent in PIL too */
    (void)level;
}

/* PIL's CMYK -> RGB (Convert.c cmyk2rgb): nk = 255 - K; R = nk - C*nk/255 (rounded). */
static uint8_t muldiv255(int a, int b) {
    int t = a * b + 128;
    return (uint8_t)(((t >> 8) + t) >> 8);
}

int image_decode_jpeg(const char *name, const uint8_t *data, size_t size, bool keep_alpha,
                      bool header_only, ImageDecodeResult *res, Error *err) {
    struct jpeg_decompress_struct cinfo;
    JpegError jerr;
    memset(&jerr, 0, sizeof jerr);
    cinfo.err = jpeg_std_error(&jerr.mgr);
    jerr.mgr.error_exit = jpeg_on_error;
    jerr.mgr.emit_message = jpeg_on_message;
    uint8_t *volatile row = NULL;
    if (setjmp(jerr.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(row);
        image_free(&res->image);
        free(res->exif);
        res->exif = NULL;
        return error_set(err, "%s: broken JPEG file: %s", name, jerr.message);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xffff);
    jpeg_read_header(&cinfo, TRUE);
    if (header_only) {
        res->image.width = (int)cinfo.image_width;
        res->image.height = (int)cinfo.image_height;
        jpeg_destroy_decompress(&cinfo);
        return 0;
    }
    for (jpeg_saved_marker_ptr m = cinfo.marker_list; m; m = m->next) {
        if (m->marker == JPEG_APP0 + 1 && m->data_length > 6 && !memcmp(m->data, "Exif\0\0", 6) &&
            !res->exif) {
            res->exif = malloc(m->data_length - 6);
            if (res->exif) {
                memcpy(res->exif, m->data + 6, m->data_length - 6);
                res->exif_size = m->data_length - 6;
            }
        }
    }
    bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    int channels = keep_alpha ? 4 : 3;
    if (image_alloc_pixels(name, &res->image, (int)cinfo.output_width, (int)cinfo.output_height,
                           channels, err) != 0) {
        jpeg_destroy_decompress(&cinfo);
        free(res->exif);
        res->exif = NULL;
        return -1;
    }
    row = malloc((size_t)cinfo.output_width * (size_t)cinfo.output_components);
    if (!row) {
        snprintf(jerr.message, sizeof jerr.message, "out of memory");
        longjmp(jerr.jump, 1);
    }
    bool inverted = cmyk && cinfo.saw_Adobe_marker; /* Adobe writes CMYK inverted */
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW rp = row;
        size_t y = cinfo.output_scanline;
        jpeg_read_scanlines(&cinfo, &rp, 1);
        uint8_t *dst = res->image.pixels + y * cinfo.output_width * (size_t)channels;
        for (size_t x = 0; x < cinfo.output_width; x++) {
            uint8_t *d = dst + x * channels;
            if (cmyk) {
                int k[4];
                for (int c = 0; c < 4; c++)
                    k[c] = inverted ? 255 - row[x * 4 + c] : row[x * 4 + c];
                int nk = 255 - k[3];
                for (int c = 0; c < 3; c++)
                    d[c] = (uint8_t)(nk - muldiv255(k[c], nk));
            } else {
                memcpy(d, row + x * 3, 3);
            }
            if (channels == 4)
                d[3] = 255;
        }
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(row);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * WebP: decoded as Pillow does, through the animation decoder (so an animated file gives
 * its first frame) with straight (not premultiplied) RGBA. */

int image_decode_webp(const char *name, const uint8_t *data, size_t size, bool keep_alpha,
                      bool header_only, ImageDecodeResult *res, Error *err) {
    WebPData wd = {.bytes = data, .size = size};
    WebPDemuxer *demux = WebPDemux(&wd);
    if (!demux)
        return error_set(err, "%s: broken WebP file (its RIFF container does not parse)", name);
    int width = (int)WebPDemuxGetI(demux, WEBP_FF_CANVAS_WIDTH);
    int height = (int)WebPDemuxGetI(demux, WEBP_FF_CANVAS_HEIGHT);
    if (header_only) {
        WebPDemuxDelete(demux);
        res->image.width = width;
        res->image.height = height;
        return 0;
    }
    WebPChunkIterator chunk;
    if (WebPDemuxGetChunk(demux, "EXIF", 1, &chunk)) {
        const uint8_t *p = chunk.chunk.bytes;
        size_t n = chunk.chunk.size;
        if (n > 6 && !memcmp(p, "Exif\0\0", 6)) {
            p += 6;
            n -= 6;
        }
        res->exif = malloc(n ? n : 1);
        if (res->exif) {
            memcpy(res->exif, p, n);
            res->exif_size = n;
        }
        WebPDemuxReleaseChunkIterator(&chunk);
    }
    WebPDemuxDelete(demux);

    WebPAnimDecoderOptions aopts;
    WebPAnimDecoderOptionsInit(&aopts);
    aopts.color_mode = MODE_RGBA;
    aopts.use_threads = 0;
    WebPAnimDecoder *dec = WebPAnimDecoderNew(&wd, &aopts);
    if (!dec) {
        free(res->exif);
        res->exif = NULL;
        return error_set(err, "%s: broken WebP file (the decoder refused its header)", name);
    }
    uint8_t *frame = NULL;
    int timestamp = 0;
    if (!WebPAnimDecoderGetNext(dec, &frame, &timestamp) || !frame) {
        WebPAnimDecoderDelete(dec);
        free(res->exif);
        res->exif = NULL;
        return error_set(err, "%s: broken WebP file (the first frame does not decode)", name);
    }
    int channels = keep_alpha ? 4 : 3;
    if (image_alloc_pixels(name, &res->image, width, height, channels, err) != 0) {
        WebPAnimDecoderDelete(dec);
        free(res->exif);
        res->exif = NULL;
        return -1;
    }
    size_t n = (size_t)width * height;
    for (size_t i = 0; i < n; i++)
        memcpy(res->image.pixels + i * channels, frame + i * 4, (size_t)channels);
    WebPAnimDecoderDelete(dec);
    return 0;
}
