/* Nearest 2x upsampling and its input gradient; diffusers' sinusoidal timestep embedding
 * (see resample.h). */
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
