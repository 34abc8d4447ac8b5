/* See image_ops.h. The resamplers follow the published algorithms of OpenCV
 * (imgproc/resize.cpp: computeResizeAreaTab, ResizeArea_Invoker, ResizeAreaFastVec) and
 * Pillow (libImaging/Resample.c: precompute_coeffs, normalize_coeffs_8bpc) step by step,
 * including where they round, so the bytes match; float arithmetic is kept in the same
 * precision and order, without FMA contraction. */
#include "train/image_ops.h"

/* OpenCV's and Pillow's x86-64 builds have no FMA at their baseline, so their a * b + c
 * round twice; clang would fuse them under -march=native (GCC in -std=c11 mode does not). */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int new_image(Image *out, int w, int h, int c, Error *err) {
    memset(out, 0, sizeof *out);
    out->pixels = malloc((size_t)w * h * c);
    if (!out->pixels)
        return error_set(err, "out of memory for a %dx%d image", w, h);
    out->width = w;
    out->height = h;
    out->channels = c;
    out->exif_orientation = 1;
    return 0;
}

static uint8_t round_float_u8(float v) {
    /* saturate_cast<uchar>(float): cvRound (half to even), then clamp. */
    long r = lrintf(v);
    return (uint8_t)(r < 0 ? 0 : r > 255 ? 255 : r);
}

/* ------------------------------------------------------------------------------------------
 * OpenCV INTER_AREA */

typedef struct AreaTab {
    int di, si;
    float alpha;
} AreaTab;

static int area_tab(int ssize, int dsize, int cn, double scale, AreaTab *tab) {
    int k = 0;
    for (int dx = 0; dx < dsize; dx++) {
        double fsx1 = dx * scale, fsx2 = fsx1 + scale;
        double cell = fmin(scale, ssize - fsx1);
        int sx1 = (int)ceil(fsx1), sx2 = (int)floor(fsx2);
        if (sx2 > ssize - 1)
            sx2 = ssize - 1;
        if (sx1 > sx2)
            sx1 = sx2;
        if (sx1 - fsx1 > 1e-3)
            tab[k++] = (AreaTab){dx * cn, (sx1 - 1) * cn, (float)((sx1 - fsx1) / cell)};
        for (int sx = sx1; sx < sx2; sx++)
            tab[k++] = (AreaTab){dx * cn, sx * cn, (float)(1.0 / cell)};
        if (fsx2 - sx2 > 1e-3)
            tab[k++] =
                (AreaTab){dx * cn, sx2 * cn, (float)(fmin(fmin(fsx2 - sx2, 1.), cell) / cell)};
    }
    return k;
}

static int resize_area_fast(const Image *in, int sx, int sy, Image *out) {
    int cn = in->channels, w = out->width, h = out->height;
    int area = sx * sy;
    float scale = 1.f / (float)area;
    bool fast2x2 = sx == 2 && sy == 2;
    for (int y = 0; y < h; y++) {
        uint8_t *d = out->pixels + (size_t)y * w * cn;
        for (int x = 0; x < w; x++) {
            for (int c = 0; c < cn; c++) {
                int sum = 0;
                for (int j = 0; j < sy; j++) {
                    const uint8_t *s =
                        in->pixels + ((size_t)(y * sy + j) * in->width + x * sx) * cn;
                    for (int i = 0; i < sx; i++)
                        sum += s[i * cn + c];
                }
                d[x * cn + c] =
                    fast2x2 ? (uint8_t)((sum + 2) >> 2) : round_float_u8((float)sum * scale);
            }
        }
    }
    return 0;
}

int image_resize_area(const Image *in, int width, int height, Image *out, Error *err) {
    if (width <= 0 || height <= 0 || width > in->width || height > in->height)
        return error_set(err, "area resize from %dx%d to %dx%d: only shrinking is supported",
                         in->width, in->height, width, height);
    if (new_image(out, width, height, in->channels, err) != 0)
        return -1;
    if (width == in->width && height == in->height) {
        memcpy(out->pixels, in->pixels, (size_t)width * height * in->channels);
        return 0;
    }
    /* cv::resize derives the scale as 1 / (dst / src), not src / dst. */
    double scale_x = 1. / ((double)width / in->width);
    double scale_y = 1. / ((double)height / in->height);
    int isx = (int)lrint(scale_x), isy = (int)lrint(scale_y);
    if (fabs(scale_x - isx) < 2.220446049250313e-16 && fabs(scale_y - isy) < 2.220446049250313e-16)
        return resize_area_fast(in, isx, isy, out);

    int cn = in->channels;
    AreaTab *xtab = malloc(sizeof(AreaTab) * (size_t)in->width * 2 * 1);
    AreaTab *ytab = malloc(sizeof(AreaTab) * (size_t)in->height * 2);
    float *buf = malloc(sizeof(float) * (size_t)width * cn * 2);
    if (!xtab || !ytab || !buf) {
        free(xtab);
        free(ytab);
        free(buf);
        image_free(out);
        return error_set(err, "out of memory resizing %dx%d", in->width, in->height);
    }
    int xn = area_tab(in->width, width, cn, scale_x, xtab);
    int yn = area_tab(in->height, height, 1, scale_y, ytab);
    int dw = width * cn;
    float *sum = buf + dw;
    for (int dx = 0; dx < dw; dx++)
        sum[dx] = 0.f;
    int prev_dy = ytab[0].di;
    for (int j = 0; j < yn; j++) {
        float beta = ytab[j].alpha;
        int dy = ytab[j].di, sy = ytab[j].si;
        const uint8_t *s = in->pixels + (size_t)sy * in->width * cn;
        for (int dx = 0; dx < dw; dx++)
            buf[dx] = 0.f;
        for (int k = 0; k < xn; k++) {
            int sxn = xtab[k].si, dxn = xtab[k].di;
            float alpha = xtab[k].alpha;
            for (int c = 0; c < cn; c++)
                buf[dxn + c] = buf[dxn + c] + (float)s[sxn + c] * alpha;
        }
        if (dy != prev_dy) {
            uint8_t *d = out->pixels + (size_t)prev_dy * dw;
            for (int dx = 0; dx < dw; dx++) {
                d[dx] = round_float_u8(sum[dx]);
                sum[dx] = beta * buf[dx];
            }
            prev_dy = dy;
        } else {
            for (int dx = 0; dx < dw; dx++)
                sum[dx] += beta * buf[dx];
        }
    }
    uint8_t *d = out->pixels + (size_t)prev_dy * dw;
    for (int dx = 0; dx < dw; dx++)
        d[dx] = round_float_u8(sum[dx]);
    free(xtab);
    free(ytab);
    free(buf);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Pillow LANCZOS */

#define PIL_PRECISION_BITS (32 - 8 - 2)
#define PIL_PI             3.14159265358979323846 /* M_PI, which strict C11 headers hide */

static double sinc(double x) {
    if (x == 0.0)
        return 1.0;
    x = x * PIL_PI;
    return sin(x) / x;
}

static double lanczos(double x) {
    if (-3.0 <= x && x < 3.0)
        return sinc(x) * sinc(x / 3);
    return 0.0;
}

/* Returns ksize; fills bounds (xmin, count per output) and fixed-point weights. */
static int pil_coeffs(int in_size, int out_size, int **bounds_out, int **kk_out) {
    double scale = (double)((float)in_size - 0.f) / out_size, filterscale = scale;
    if (filterscale < 1.0)
        filterscale = 1.0;
    double support = 3.0 * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    double *pre = malloc(sizeof(double) * (size_t)out_size * ksize);
    int *kk = malloc(sizeof(int) * (size_t)out_size * ksize);
    int *bounds = malloc(sizeof(int) * (size_t)out_size * 2);
    if (!pre || !kk || !bounds) {
        free(pre);
        free(kk);
        free(bounds);
        return -1;
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = 0.f + (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0)
            xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size)
            xmax = in_size;
        xmax -= xmin;
        double *k = pre + (size_t)xx * ksize;
        int x;
        for (x = 0; x < xmax; x++) {
            double w = lanczos((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0.0)
                k[x] /= ww;
        for (; x < ksize; x++)
            k[x] = 0;
        bounds[xx * 2] = xmin;
        bounds[xx * 2 + 1] = xmax;
    }
    for (size_t i = 0; i < (size_t)out_size * ksize; i++)
        kk[i] = pre[i] < 0 ? (int)(-0.5 + pre[i] * (1 << PIL_PRECISION_BITS))
                           : (int)(0.5 + pre[i] * (1 << PIL_PRECISION_BITS));
    free(pre);
    *bounds_out = bounds;
    *kk_out = kk;
    return ksize;
}

static uint8_t pil_clip8(int v) {
    if (v >= (1 << PIL_PRECISION_BITS << 8))
        return 255;
    if (v <= 0)
        return 0;
    return (uint8_t)(v >> PIL_PRECISION_BITS);
}

/* One separable pass of Pillow's 8-bit resampler: along x (horizontal) or y. */
static void pil_pass(const uint8_t *src, int sw, int sh, int cn, bool horizontal, int out_len,
                     const int *bounds, const int *kk, int ksize, uint8_t *dst) {
    int dw = horizontal ? out_len : sw, dh = horizontal ? sh : out_len;
    for (int y = 0; y < dh; y++)
        for (int x = 0; x < dw; x++) {
            int o = horizontal ? x : y;
            int min = bounds[o * 2], n = bounds[o * 2 + 1];
            const int *k = kk + (size_t)o * ksize;
            for (int c = 0; c < cn; c++) {
                int ss = 1 << (PIL_PRECISION_BITS - 1);
                for (int i = 0; i < n; i++) {
                    int sx = horizontal ? min + i : x, sy = horizontal ? y : min + i;
                    ss += src[((size_t)sy * sw + sx) * cn + c] * k[i];
                }
                dst[((size_t)y * dw + x) * cn + c] = pil_clip8(ss);
            }
        }
}

static int resize_lanczos_straight(const Image *in, int width, int height, Image *out, Error *err);

/* Pillow resizes RGBA premultiplied (RGBA -> RGBa, resize, RGBa -> RGBA; Convert.c's
 * rounding: c * a / 255 rounded, back as min(255, 255 * c / a) truncated). */
int image_resize_lanczos(const Image *in, int width, int height, Image *out, Error *err) {
    if (in->channels != 4)
        return resize_lanczos_straight(in, width, height, out, err);
    size_t n = (size_t)in->width * in->height;
    Image pre = *in;
    pre.pixels = malloc(n * 4 + 1);
    if (!pre.pixels)
        return error_set(err, "out of memory resizing %dx%d", in->width, in->height);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = in->pixels + i * 4;
        unsigned a = p[3];
        for (int c = 0; c < 3; c++) {
            unsigned t = p[c] * a + 128;
            pre.pixels[i * 4 + c] = (uint8_t)(((t >> 8) + t) >> 8);
        }
        pre.pixels[i * 4 + 3] = (uint8_t)a;
    }
    int rc = resize_lanczos_straight(&pre, width, height, out, err);
    free(pre.pixels);
    if (rc != 0)
        return rc;
    size_t m = (size_t)width * height;
    for (size_t i = 0; i < m; i++) {
        uint8_t *p = out->pixels + i * 4;
        unsigned a = p[3];
        if (a != 0 && a != 255)
            for (int c = 0; c < 3; c++) {
                unsigned v = 255u * p[c] / a;
                p[c] = (uint8_t)(v > 255 ? 255 : v);
            }
    }
    return 0;
}

static int resize_lanczos_straight(const Image *in, int width, int height, Image *out, Error *err) {
    if (width <= 0 || height <= 0)
        return error_set(err, "resize to %dx%d: empty size", width, height);
    int cn = in->channels, iw = in->width, ih = in->height;
    bool need_h = width != iw, need_v = height != ih;
    /* Pillow 13 (ImagingResampleInner) runs the vertical pass first when the height loses
     * more than twice as many pixels as the width does; Pillow 12 and older always ran the
     * horizontal pass first. The two orders round differently. */
    bool v_first = need_h && need_v && ih - height > 0 && ih - height > (iw - width) * 2;
    int *bh = NULL, *kh = NULL, *bv = NULL, *kv = NULL;
    int ksh = pil_coeffs(iw, width, &bh, &kh);
    int ksv = ksh < 0 ? -1 : pil_coeffs(ih, height, &bv, &kv);
    uint8_t *tmp = NULL;
    size_t tmp_size = v_first ? (size_t)iw * height * cn : (size_t)width * ih * cn;
    if (ksv < 0 || !(tmp = malloc(tmp_size + 1)) || new_image(out, width, height, cn, err) != 0) {
        free(bh), free(kh), free(bv), free(kv), free(tmp);
        return error_set(err, "out of memory resizing %dx%d", iw, ih);
    }
    if (!need_h && !need_v) {
        memcpy(out->pixels, in->pixels, (size_t)width * height * cn);
    } else if (!need_v) {
        pil_pass(in->pixels, iw, ih, cn, true, width, bh, kh, ksh, out->pixels);
    } else if (!need_h) {
        pil_pass(in->pixels, iw, ih, cn, false, height, bv, kv, ksv, out->pixels);
    } else if (v_first) {
        pil_pass(in->pixels, iw, ih, cn, false, height, bv, kv, ksv, tmp);
        pil_pass(tmp, iw, height, cn, true, width, bh, kh, ksh, out->pixels);
    } else {
        /* (Pillow only resamples the rows the vertical pass reads; the values are the same.) */
        pil_pass(in->pixels, iw, ih, cn, true, width, bh, kh, ksh, tmp);
        pil_pass(tmp, width, ih, cn, false, height, bv, kv, ksv, out->pixels);
    }
    free(tmp);
    free(bh);
    free(kh);
    free(bv);
    free(kv);
    return 0;
}

int image_resize_kohya(const Image *in, int width, int height, ResizeMethod method, Image *out,
                       Error *err) {
    if (method == RESIZE_AUTO)
        method = in->width >= width && in->height >= height ? RESIZE_AREA : RESIZE_LANCZOS;
    if (method == RESIZE_AREA && (width > in->width || height > in->height))
        return error_set(err,
                         "resize_interpolation 'area' cannot enlarge %dx%d to %dx%d here; use "
                         "lanczos",
                         in->width, in->height, width, height);
    return method == RESIZE_AREA ? image_resize_area(in, width, height, out, err)
                                 : image_resize_lanczos(in, width, height, out, err);
}

/* ------------------------------------------------------------------------------------------ */

int image_crop(Image *image, int x0, int y0, int w, int h, Error *err) {
    if (x0 < 0 || y0 < 0 || w <= 0 || h <= 0 || x0 + w > image->width || y0 + h > image->height)
        return error_set(err, "crop %dx%d at (%d, %d) lies outside the %dx%d image", w, h, x0, y0,
                         image->width, image->height);
    Image out;
    if (new_image(&out, w, h, image->channels, err) != 0)
        return -1;
    size_t row = (size_t)w * image->channels;
    for (int y = 0; y < h; y++)
        memcpy(out.pixels + y * row,
               image->pixels + ((size_t)(y + y0) * image->width + x0) * image->channels, row);
    image_free(image);
    *image = out;
    return 0;
}

int image_trim_and_resize(Image *image, int bucket_w, int bucket_h, int resized_w, int resized_h,
                          bool random_crop, PyRandom *rng, ResizeMethod method, Error *err) {
    if (image->width != resized_w || image->height != resized_h) {
        Image r;
        if (image_resize_kohya(image, resized_w, resized_h, method, &r, err) != 0)
            return -1;
        image_free(image);
        *image = r;
    }
    int x0 = 0, y0 = 0, w = image->width, h = image->height;
    if (w > bucket_w) {
        int trim = w - bucket_w;
        x0 = random_crop ? (int)py_random_randint(rng, 0, trim) : trim / 2;
        w = bucket_w;
    }
    if (h > bucket_h) {
        int trim = h - bucket_h;
        y0 = random_crop ? (int)py_random_randint(rng, 0, trim) : trim / 2;
        h = bucket_h;
    }
    if (w != bucket_w || h != bucket_h)
        return error_set(err, "image is %dx%d after resizing, smaller than its bucket %dx%d", w, h,
                         bucket_w, bucket_h);
    if (x0 || y0 || w != image->width || h != image->height)
        return image_crop(image, x0, y0, w, h, err);
    return 0;
}

void image_flip_horizontal(Image *image) {
    int c = image->channels;
    for (int y = 0; y < image->height; y++) {
        uint8_t *row = image->pixels + (size_t)y * image->width * c;
        for (int a = 0, b = image->width - 1; a < b; a++, b--)
            for (int k = 0; k < c; k++) {
                uint8_t t = row[a * c + k];
                row[a * c + k] = row[b * c + k];
                row[b * c + k] = t;
            }
    }
}

/* ------------------------------------------------------------------------------------------
 * color_aug. kohya hands RGB pixels to cv2's BGR2HSV, so OpenCV's "red" is our blue; the
 * HSV2BGR conversion back undoes the swap, and only the hue direction is mirrored. */

static void hue_shift_pixel(uint8_t *p, double shift) {
    int b = p[0], g = p[1], r = p[2]; /* OpenCV's view of our RGB */
    int v = r > g ? r : g;
    v = v > b ? v : b;
    int mn = r < g ? r : g;
    mn = mn < b ? mn : b;
    int diff = v - mn;
    const int shift_bits = 12;
    int s =
        v ? (int)((diff * (int)lrint((255 << shift_bits) / (1. * v)) + (1 << (shift_bits - 1))) >>
                  shift_bits)
          : 0;
    int h = 0;
    if (diff) {
        int hd = (int)lrint((180. * (1 << shift_bits)) / (6. * diff));
        int num = v == r ? g - b : v == g ? b - r + 2 * diff : r - g + 4 * diff;
        h = (num * hd + (1 << (shift_bits - 1))) >> shift_bits;
        if (h < 0)
            h += 180;
    }
    /* hsv[..., 0] = (h + shift) % 180, stored back into uint8 (truncation). */
    double hf = fmod((double)h + shift, 180.0);
    int hn = (int)hf;
    float hh = (float)hn * (6.f / 180.f), sf = (float)s * (1.f / 255.f),
          vf = (float)v * (1.f / 255.f);
    float out[3];
    if (sf == 0.f) {
        out[0] = out[1] = out[2] = vf;
    } else {
        static const int sector_data[6][3] = {{1, 3, 0}, {1, 0, 2}, {3, 0, 1},
                                              {0, 2, 1}, {0, 1, 3}, {2, 1, 0}};
        hh = fmodf(hh, 6.f);
        int sector = (int)floorf(hh);
        hh -= (float)sector;
        if ((unsigned)sector >= 6u) {
            sector = 0;
            hh = 0.f;
        }
        float tab[4] = {vf, vf * (1.f - sf), vf * (1.f - sf * hh), vf * (1.f - sf * (1.f - hh))};
        for (int c = 0; c < 3; c++)
            out[c] = tab[sector_data[sector][c]];
    }
    for (int c = 0; c < 3; c++)
        p[c] = round_float_u8(out[c] * 255.f);
}

void image_hue_shift(Image *image, double shift) {
    size_t n = (size_t)image->width * image->height;
    for (size_t i = 0; i < n; i++)
        hue_shift_pixel(image->pixels + i * image->channels, shift);
}

void image_color_aug(Image *image, PyRandom *rng) {
    if (!(py_random_random(rng) <= 0.33))
        return;
    size_t n = (size_t)image->width * image->height;
    int c = image->channels;
    if (py_random_random(rng) > 0.5) {
        double shift = py_random_uniform(rng, -8, 8);
        if (shift < 0)
            shift += 180;
        image_hue_shift(image, shift);
    } else {
        double gamma = py_random_uniform(rng, 0.95, 1.05);
        uint8_t lut[256];
        for (int v = 0; v < 256; v++) {
            double x = pow((double)v, gamma);
            lut[v] = (uint8_t)(x < 0 ? 0 : x > 255 ? 255 : x);
        }
        for (size_t i = 0; i < n; i++)
            for (int k = 0; k < 3; k++)
                image->pixels[i * c + k] = lut[image->pixels[i * c + k]];
    }
}

void image_to_tensor(const Image *image, float *out) {
    size_t hw = (size_t)image->width * image->height;
    int c = image->channels;
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < hw; i++) {
            float x = (float)image->pixels[i * c + k] / 255.f;
            out[k * hw + i] = (x - 0.5f) / 0.5f;
        }
}
