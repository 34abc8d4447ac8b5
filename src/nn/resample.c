/* Nearest 2x upsampling, nearest upsampling to a given size, their input gradients; diffusers'
 * sinusoidal timestep embedding (see resample.h). */
#include "nn/resample.h"

#include <math.h>
#include <stddef.h>

void upsample_nearest2x_forward(int planes, int h, int w, const float *x, float *y) {
#pragma omp parallel for schedule(static)
    for (int p = 0; p < planes; p++) {
        const float *xp = x + (size_t)p * h * w;
        float *yp = y + (size_t)p * 4 * h * w;
        for (int i = 0; i < h; i++) {
            float *row = yp + (size_t)2 * i * 2 * w;
            const float *src = xp + (size_t)i * w;
            for (int j = 0; j < w; j++) {
                row[2 * j] = src[j];
                row[2 * j + 1] = src[j];
            }
            for (int j = 0; j < 2 * w; j++)
                row[2 * w + j] = row[j];
        }
    }
}

void upsample_nearest2x_backward_input(int planes, int h, int w, const float *dy, float *dx) {
#pragma omp parallel for schedule(static)
    for (int p = 0; p < planes; p++) {
        const float *dyp = dy + (size_t)p * 4 * h * w;
        float *dxp = dx + (size_t)p * h * w;
        for (int i = 0; i < h; i++) {
            const float *r0 = dyp + (size_t)2 * i * 2 * w;
            const float *r1 = r0 + 2 * w;
            for (int j = 0; j < w; j++)
                dxp[(size_t)i * w + j] = (r0[2 * j] + r0[2 * j + 1]) + (r1[2 * j] + r1[2 * j + 1]);
        }
    }
}

/* PyTorch's nearest source index for an output size (ATen's nearest_idx): exact copies and
 * exact doublings by integer arithmetic, otherwise floor(dst * (float)in / out) in float32,
 * clamped to the last input index. */
static int nearest_source(int dst, int in, int out) {
    if (out == in)
        return dst;
    if (out == 2 * in)
        return dst >> 1;
    float scale = (float)in / (float)out;
    int src = (int)floorf((float)dst * scale);
    return src < in - 1 ? src : in - 1;
}

void upsample_nearest_size_forward(int planes, int h, int w, int oh, int ow, const float *x,
                                   float *y) {
    if (oh == 2 * h && ow == 2 * w) {
        upsample_nearest2x_forward(planes, h, w, x, y);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int p = 0; p < planes; p++) {
        const float *xp = x + (size_t)p * h * w;
        float *yp = y + (size_t)p * oh * ow;
        for (int i = 0; i < oh; i++) {
            const float *src = xp + (size_t)nearest_source(i, h, oh) * w;
            float *row = yp + (size_t)i * ow;
            for (int j = 0; j < ow; j++)
                row[j] = src[nearest_source(j, w, ow)];
        }
    }
}

void upsample_nearest_size_backward_input(int planes, int h, int w, int oh, int ow, const float *dy,
                                          float *dx) {
    if (oh == 2 * h && ow == 2 * w) {
        upsample_nearest2x_backward_input(planes, h, w, dy, dx);
        return;
    }
    /* a scatter-add: each output pixel's gradient goes to its source pixel */
#pragma omp parallel for schedule(static)
    for (int p = 0; p < planes; p++) {
        const float *dyp = dy + (size_t)p * oh * ow;
        float *dxp = dx + (size_t)p * h * w;
        for (size_t k = 0; k < (size_t)h * w; k++)
            dxp[k] = 0.0f;
        for (int i = 0; i < oh; i++) {
            float *dst = dxp + (size_t)nearest_source(i, h, oh) * w;
            const float *row = dyp + (size_t)i * ow;
            for (int j = 0; j < ow; j++)
                dst[nearest_source(j, w, ow)] += row[j];
        }
    }
}

/* The float32 operations of diffusers' get_timestep_embedding in its order:
 * exponent = -ln(max_period) * arange(half) (float multiply), / (half - shift) (float divide),
 * exp, times the timestep, then sin and cos; odd dims get a zero last column. */
void timestep_embedding(int batch, int dim, const float *timesteps, bool flip_sin_to_cos,
                        float freq_shift, float *out) {
    int half = dim / 2;
    const float neg_log_period = (float)-log(10000.0);
    const float denom = (float)half - freq_shift;
    for (int b = 0; b < batch; b++) {
        float *o = out + (size_t)b * dim;
        float *sines = flip_sin_to_cos ? o + half : o;
        float *cosines = flip_sin_to_cos ? o : o + half;
        for (int i = 0; i < half; i++) {
            float exponent = ((float)i * neg_log_period) / denom;
            float arg = timesteps[b] * expf(exponent);
            sines[i] = sinf(arg);
            cosines[i] = cosf(arg);
        }
        if (dim % 2)
            o[dim - 1] = 0.0f;
    }
}
