/* GroupNorm and LayerNorm forward and input gradient (see norm.h).
 *
 * Statistics are accumulated in double: a GroupNorm group at 64x64 latents holds 40,960
 * values and a float running sum would lose digits that the 1e-4 tolerance needs; one pass of
 * sum and sum of squares in double is as accurate as torch's two-level float reduction and
 * reads x once. The backward uses the standard closed form
 *   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),   g = gamma * dy,
 * with both means over the group (row), again accumulated in double.
 * Work is split over (batch, group) pairs or rows with OpenMP. */
#include "nn/norm.h"

#include <math.h>

/* Mean and 1/sqrt(var + eps) of n values, var biased (divided by n) as torch does. */
static void moments(const float *x, size_t n, float eps, float *mean_out, float *rstd_out) {
    double sum = 0.0, sumsq = 0.0;
#pragma omp simd reduction(+ : sum, sumsq)
    for (size_t i = 0; i < n; i++) {
        double v = x[i];
        sum += v;
        sumsq += v * v;
    }
    double mean = sum / (double)n;
    double var = sumsq / (double)n - mean * mean;
    if (var < 0.0)
        var = 0.0;
    *mean_out = (float)mean;
    *rstd_out = (float)(1.0 / sqrt(var + (double)eps));
}

void group_norm_forward(NnContext *ctx, int batch, int channels, int spatial, int groups, float eps,
                        const float *x, const float *gamma, const float *beta, float *y,
                        float *stats) {
    (void)ctx;
    int cpg = channels / groups;
    size_t group_size = (size_t)cpg * spatial;
#pragma omp parallel for schedule(static)
    for (int bg = 0; bg < batch * groups; bg++) {
        const float *xg = x + (size_t)bg * group_size;
        float *yg = y + (size_t)bg * group_size;
        float mean, rstd;
        moments(xg, group_size, eps, &mean, &rstd);
        stats[2 * bg] = mean;
        stats[2 * bg + 1] = rstd;
        int c0 = (bg % groups) * cpg;
        for (int c = 0; c < cpg; c++) {
            /* y = (x - mean) * rstd * gamma + beta folded into one multiply-add per value. */
            float scale = rstd * (gamma ? gamma[c0 + c] : 1.0f);
            float shift = (beta ? beta[c0 + c] : 0.0f) - mean * scale;
            const float *xc = xg + (size_t)c * spatial;
            float *yc = yg + (size_t)c * spatial;
#pragma omp simd
            for (int i = 0; i < spatial; i++)
                yc[i] = xc[i] * scale + shift;
        }
    }
}

void group_norm_backward_input(NnContext *ctx, int batch, int channels, int spatial, int groups,
                               const float *x, const float *gamma, const float *stats,
                               const float *dy, float *dx) {
    (void)ctx;
    int cpg = channels / groups;
    size_t group_size = (size_t)cpg * spatial;
#pragma omp parallel for schedule(static)
    for (int bg = 0; bg < batch * groups; bg++) {
        const float *xg = x + (size_t)bg * group_size;
        const float *dyg = dy + (size_t)bg * group_size;
        float *dxg = dx + (size_t)bg * group_size;
        float mean = stats[2 * bg], rstd = stats[2 * bg + 1];
        int c0 = (bg % groups) * cpg;
        /* Per channel: sum(dy) and sum(dy * x); gamma is constant within a channel. */
        double sum_g = 0.0, sum_gx = 0.0;
        for (int c = 0; c < cpg; c++) {
            const float *xc = xg + (size_t)c * spatial;
            const float *dyc = dyg + (size_t)c * spatial;
            double s = 0.0, sx = 0.0;
#pragma omp simd reduction(+ : s, sx)
            for (int i = 0; i < spatial; i++) {
                s += dyc[i];
                sx += (double)dyc[i] * xc[i];
            }
            double gm = gamma ? gamma[c0 + c] : 1.0;
            sum_g += gm * s;
            sum_gx += gm * sx;
        }
        double n = (double)group_size;
        /* mean(g * xhat) = rstd * (mean(g * x) - mean * mean(g)). */
        double mg = sum_g / n;
        double mgxh = rstd * (sum_gx / n - mean * mg);
        /* dx = rstd * gamma * dy - rstd * mg - rstd * xhat * mgxh, xhat = (x - mean) * rstd:
         * dx = a_c * dy + b * (x - mean) + d (x - mean kept apart: folding mean into d would
         * cancel digits when the mean is large against the spread). */
        float b = (float)(-(double)rstd * rstd * mgxh);
        float d = (float)(-(double)rstd * mg);
        for (int c = 0; c < cpg; c++) {
            float a = rstd * (gamma ? gamma[c0 + c] : 1.0f);
            const float *xc = xg + (size_t)c * spatial;
            const float *dyc = dyg + (size_t)c * spatial;
            float *dxc = dxg + (size_t)c * spatial;
#pragma omp simd
            for (int i = 0; i < spatial; i++)
                dxc[i] = a * dyc[i] + b * (xc[i] - mean) + d;
        }
    }
}

void layer_norm_forward(NnContext *ctx, int rows, int dim, float eps, const float *x,
                        const float *gamma, const float *beta, float *y, float *stats) {
    (void)ctx;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * dim;
        float *yr = y + (size_t)r * dim;
        float mean, rstd;
        moments(xr, (size_t)dim, eps, &mean, &rstd);
        stats[2 * r] = mean;
        stats[2 * r + 1] = rstd;
#pragma omp simd
        for (int i = 0; i < dim; i++) {
            float v = (xr[i] - mean) * rstd;
            yr[i] = v * (gamma ? gamma[i] : 1.0f) + (beta ? beta[i] : 0.0f);
        }
    }
}

void layer_norm_backward_input(NnContext *ctx, int rows, int dim, const float *x,
                               const float *gamma, const float *stats, const float *dy, float *dx) {
    (void)ctx;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * dim;
        const float *dyr = dy + (size_t)r * dim;
        float *dxr = dx + (size_t)r * dim;
        float mean = stats[2 * r], rstd = stats[2 * r + 1];
        double sum_g = 0.0, sum_gxh = 0.0;
#pragma omp simd reduction(+ : sum_g, sum_gxh)
        for (int i = 0; i < dim; i++) {
            double g = (double)dyr[i] * (gamma ? gamma[i] : 1.0f);
            sum_g += g;
            sum_gxh += g * (((double)xr[i] - mean) * rstd);
        }
        float mg = (float)(sum_g / dim), mgxh = (float)(sum_gxh / dim);
#pragma omp simd
        for (int i = 0; i < dim; i++) {
            float g = dyr[i] * (gamma ? gamma[i] : 1.0f);
            float xh = (xr[i] - mean) * rstd;
            dxr[i] = rstd * (g - mg - xh * mgxh);
        }
    }
}
