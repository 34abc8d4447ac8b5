/* Convolution as im2col + OpenBLAS sgemm (forward) and sgemm + col2im (backward-data): the
 * portable fallback and the benchmark's baseline (CONV2D_ALGO_IM2COL_SGEMM).
 *
 * Per image, the column matrix col [in_ch*kh*kw, out_h*out_w] is built for a band of output
 * rows at a time, so its size stays bounded (VAE layers at 512x512 would otherwise need
 * gigabytes). Forward: y[:, band] = W [out_ch, K] * col + bias. Backward-data:
 * col = W^T * dy[:, band], then each column entry is added back to the input pixel it came
 * from. A 1x1 stride-1 unpadded convolution needs no column matrix at all. */
#include "nn/conv2d_internal.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

/* Column-buffer budget in floats (32 MiB). */
#define COL_BUDGET ((size_t)8 << 20)

static int is_pointwise(const Conv2dShape *s) {
    return s->kernel_h == 1 && s->kernel_w == 1 && s->stride == 1 && s->pad_top == 0 &&
           s->pad_left == 0 && s->pad_bottom == 0 && s->pad_right == 0;
}

/* Output rows per band so that K * rows * out_w floats fit the budget (at least one). */
static int band_rows(const Conv2dShape *s, int oh, int ow) {
    size_t k = (size_t)s->in_ch * s->kernel_h * s->kernel_w;
    size_t rows = COL_BUDGET / (k * (size_t)ow);
    if (rows < 1)
        rows = 1;
    return rows > (size_t)oh ? oh : (int)rows;
}

/* col[k, (oy - oy0) * ow + ox] for k = (c, ki, kj), output rows oy0 .. oy0 + rows - 1. */
static void im2col(const Conv2dShape *s, const float *x, int oy0, int rows, int ow, float *col) {
    int kk = s->kernel_h * s->kernel_w, n = s->in_ch * kk;
    size_t pc = (size_t)rows * ow;
#pragma omp parallel for schedule(static)
    for (int k = 0; k < n; k++) {
        int c = k / kk, ki = (k % kk) / s->kernel_w, kj = k % s->kernel_w;
        const float *plane = x + (size_t)c * s->in_h * s->in_w;
        float *dst = col + (size_t)k * pc;
        for (int r = 0; r < rows; r++) {
            int iy = (oy0 + r) * s->stride - s->pad_top + ki;
            float *d = dst + (size_t)r * ow;
            if (iy < 0 || iy >= s->in_h) {
                memset(d, 0, (size_t)ow * sizeof *d);
                continue;
            }
            const float *src = plane + (size_t)iy * s->in_w;
            for (int ox = 0; ox < ow; ox++) {
                int ix = ox * s->stride - s->pad_left + kj;
                d[ox] = (ix >= 0 && ix < s->in_w) ? src[ix] : 0.0f;
            }
        }
    }
}

/* The adjoint of im2col: dx[c, iy, ix] += col[k, p]. Parallel over channels, each of which
 * owns its own dx plane. */
static void col2im_add(const Conv2dShape *s, const float *col, int oy0, int rows, int ow,
                       float *dx) {
    int kk = s->kernel_h * s->kernel_w;
    size_t pc = (size_t)rows * ow;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < s->in_ch; c++) {
        float *plane = dx + (size_t)c * s->in_h * s->in_w;
        for (int kq = 0; kq < kk; kq++) {
            int ki = kq / s->kernel_w, kj = kq % s->kernel_w;
            const float *src = col + ((size_t)c * kk + kq) * pc;
            for (int r = 0; r < rows; r++) {
                int iy = (oy0 + r) * s->stride - s->pad_top + ki;
                if (iy < 0 || iy >= s->in_h)
                    continue;
                float *d = plane + (size_t)iy * s->in_w;
                const float *sr = src + (size_t)r * ow;
                for (int ox = 0; ox < ow; ox++) {
                    int ix = ox * s->stride - s->pad_left + kj;
                    if (ix >= 0 && ix < s->in_w)
                        d[ix] += sr[ox];
                }
            }
        }
    }
}

int conv2d_gemm_forward(NnContext *ctx, const Conv2dShape *s, const float *x, const float *w,
                        const float *bias, float *y, Error *err) {
    (void)ctx;
    int oh = conv2d_out_h(s), ow = conv2d_out_w(s);
    int k = s->in_ch * s->kernel_h * s->kernel_w;
    size_t p = (size_t)oh * ow, in_plane = (size_t)s->in_ch * s->in_h * s->in_w;
    int pointwise = is_pointwise(s), rows = band_rows(s, oh, ow);
    float *col = NULL;
    if (!pointwise) {
        col = malloc((size_t)k * rows * ow * sizeof *col);
        if (!col)
            return error_set(err, "conv2d: out of memory for the column matrix");
    }
    for (int n = 0; n < s->batch; n++) {
        const float *xn = x + n * in_plane;
        float *yn = y + n * (size_t)s->out_ch * p;
        if (bias) {
            for (int o = 0; o < s->out_ch; o++)
                for (size_t i = 0; i < p; i++)
                    yn[o * p + i] = bias[o];
        }
        for (int oy0 = 0; oy0 < oh; oy0 += rows) {
            int r = oh - oy0 < rows ? oh - oy0 : rows;
            int pc = r * ow;
            const float *b = xn + (size_t)oy0 * ow;
            if (!pointwise) {
                im2col(s, xn, oy0, r, ow, col);
                b = col;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->out_ch, pc, k, 1.0f, w, k, b,
                        pointwise ? (int)p : pc, bias ? 1.0f : 0.0f, yn + (size_t)oy0 * ow, (int)p);
        }
    }
    free(col);
    return 0;
}

int conv2d_gemm_backward_input(NnContext *ctx, const Conv2dShape *s, const float *dy,
                               const float *w, float *dx, Error *err) {
    (void)ctx;
    int oh = conv2d_out_h(s), ow = conv2d_out_w(s);
    int k = s->in_ch * s->kernel_h * s->kernel_w;
    size_t p = (size_t)oh * ow, in_plane = (size_t)s->in_ch * s->in_h * s->in_w;
    int pointwise = is_pointwise(s), rows = band_rows(s, oh, ow);
    float *col = NULL;
    if (!pointwise) {
        col = malloc((size_t)k * rows * ow * sizeof *col);
        if (!col)
            return error_set(err, "conv2d: out of memory for the column matrix");
    }
    for (int n = 0; n < s->batch; n++) {
        const float *dyn = dy + n * (size_t)s->out_ch * p;
        float *dxn = dx + n * in_plane;
        if (pointwise) {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, (int)p, s->out_ch, 1.0f, w, k,
                        dyn, (int)p, 0.0f, dxn, (int)p);
            continue;
        }
        memset(dxn, 0, in_plane * sizeof *dxn);
        for (int oy0 = 0; oy0 < oh; oy0 += rows) {
            int r = oh - oy0 < rows ? oh - oy0 : rows;
            int pc = r * ow;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, pc, s->out_ch, 1.0f, w, k,
                        dyn + (size_t)oy0 * ow, (int)p, 0.0f, col, pc);
            col2im_add(s, col, oy0, r, ow, dxn);
        }
    }
    free(col);
    return 0;
}
