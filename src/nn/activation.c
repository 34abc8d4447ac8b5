/* Element-wise activations and GEGLU with their input gradients (formulas in activation.h).
 * Computed in float with the C library's expf/erff: their error (an ulp or two) is far inside
 * the 1e-4 budget. Loops split over the OpenMP threads when the array is large enough to pay
 * for the fork. In-place use is safe: each element reads its inputs before writing. */
#include "nn/activation.h"

#include <math.h>

/* Below this many elements one thread is faster than waking the others. */
#define PARALLEL_MIN 32768

#define INV_SQRT2 0.70710678118654752440f
/* 1 / sqrt(2 pi), the normal density's constant in gelu's derivative. */
#define INV_SQRT_2PI 0.39894228040143267794f
#define QUICK_GELU_K 1.702f

static inline float sigmoidf(float x) {
    return 1.0f / (1.0f + expf(-x));
}

static inline float gelu1(float x) {
    return 0.5f * x * (1.0f + erff(x * INV_SQRT2));
}

static inline float gelu_grad1(float x) {
    return 0.5f * (1.0f + erff(x * INV_SQRT2)) + x * INV_SQRT_2PI * expf(-0.5f * x * x);
}

void silu_forward(size_t n, const float *x, float *y) {
    long long len = (long long)n;
#pragma omp parallel for schedule(static) if (len >= PARALLEL_MIN)
    for (long long i = 0; i < len; i++)
        y[i] = x[i] * sigmoidf(x[i]);
}

void silu_backward_input(size_t n, const float *x, const float *dy, float *dx) {
    long long len = (long long)n;
#pragma omp parallel for schedule(static) if (len >= PARALLEL_MIN)
    for (long long i = 0; i < len; i++) {
        float s = sigmoidf(x[i]);
        dx[i] = dy[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

void gelu_forward(size_t n, const float *x, float *y) {
    long long len = (long long)n;
#pragma omp parallel for schedule(static) if (len >= PARALLEL_MIN)
    for (long long i = 0; i < len; i++)
        y[i] = gelu1(x[i]);
}

void gelu_backward_input(size_t n, const float *x, const float *dy, float *dx) {
    long long len = (long long)n;
#pragma omp parallel for schedule(static) if (len >= PARALLEL_MIN)
    for (long long i = 0; i < len; i++)
        dx[i] = dy[i] * gelu_grad1(x[i]);
}

void quick_gelu_forward(size_t n, const float *x, float *y) {
    long long len = (long long)n;
#pragma omp parallel for schedule(static) if (len >= PARALLEL_MIN)
    for (long long i = 0; i < len; i++)
        y[i] = x[i] * sigmoidf(QUICK_GELU_K * x[i]);
}

void quick_gelu_backward_input(size_t n, const float *x, const float *dy, float *dx) {
    long long len = (long long)n;
#pragma omp parallel for schedule(static) if (len >= PARALLEL_MIN)
    for (long long i = 0; i < len; i++) {
        float s = sigmoidf(QUICK_GELU_K * x[i]);
        dx[i] = dy[i] * s * (1.0f + QUICK_GELU_K * x[i] * (1.0f - s));
    }
}

void geglu_forward(int rows, int dim, const float *x, float *y) {
#pragma omp parallel for schedule(static) if ((long long)rows * dim >= PARALLEL_MIN)
    for (int r = 0; r < rows; r++) {
        const float *a = x + (size_t)r * 2 * dim, *g = a + dim;
        float *yr = y + (size_t)r * dim;
        for (int i = 0; i < dim; i++)
            yr[i] = a[i] * gelu1(g[i]);
    }
}

void geglu_backward_input(int rows, int dim, const float *x, const float *dy, float *dx) {
#pragma omp parallel for schedule(static) if ((long long)rows * dim >= PARALLEL_MIN)
    for (int r = 0; r < rows; r++) {
        const float *a = x + (size_t)r * 2 * dim, *g = a + dim;
        const float *dyr = dy + (size_t)r * dim;
        float *da = dx + (size_t)r * 2 * dim, *dg = da + dim;
        for (int i = 0; i < dim; i++) {
            float gi = g[i], ai = a[i], d = dyr[i];
            da[i] = d * gelu1(gi);
            dg[i] = d * ai * gelu_grad1(gi);
        }
    }
}
