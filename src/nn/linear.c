/* Linear layer: both directions are one sgemm each (see linear.h for shapes). The bias is
 * written into y first so the product can accumulate onto it (beta = 1), saving a second pass
 * over y.
 *
 * The sgemm is oneDNN's, not OpenBLAS's: Debian's OpenBLAS 0.3.21 (DYNAMIC_ARCH) does not
 * recognise recent Xeons (it picks its "Prescott" SSE3 kernels, ~4x slower here), and
 * oneDNN's threads are OpenMP's, the same pool as our loops and the convolutions, so the two
 * runtimes never spin against each other on the cores. */
#include "nn/linear.h"

#include "nn/gemm_half.h"
#include "nn/nn_context_internal.h"

#include <oneapi/dnnl/dnnl.h>
#include <string.h>

static int check_sizes(const char *where, int rows, int in, int out, Error *err) {
    if (rows < 0 || in <= 0 || out <= 0)
        return error_set(err, "%s: bad sizes rows=%d in=%d out=%d (rows >= 0, in and out > 0)",
                         where, rows, in, out);
    return 0;
}

/* Writes the bias into every row of y; returns the beta that adds the product onto it. */
static float bias_rows(int rows, int out, const float *bias, float *y) {
    if (!bias)
        return 0.0f;
    for (int r = 0; r < rows; r++)
        memcpy(y + (size_t)r * out, bias, (size_t)out * sizeof *y);
    return 1.0f;
}

int linear_forward(NnContext *ctx, int rows, int in, int out, const float *x, const float *w,
                   const float *bias, float *y, Error *err) {
    (void)ctx;
    if (check_sizes("linear_forward", rows, in, out, err))
        return -1;
    if (rows == 0)
        return 0;
    float beta = bias_rows(rows, out, bias, y);
    if (dnnl_sgemm('N', 'T', rows, out, in, 1.0f, x, in, w, in, beta, y, out) != dnnl_success)
        return error_set(err, "linear_forward: oneDNN sgemm failed (rows=%d in=%d out=%d)", rows,
                         in, out);
    return 0;
}

int linear_backward_input(NnContext *ctx, int rows, int in, int out, const float *dy,
                          const float *w, float *dx, int accumulate, Error *err) {
    (void)ctx;
    if (check_sizes("linear_backward_input", rows, in, out, err))
        return -1;
    if (rows == 0)
        return 0;
    if (dnnl_sgemm('N', 'N', rows, in, out, 1.0f, dy, out, w, in, accumulate ? 1.0f : 0.0f, dx,
                   in) != dnnl_success)
        return error_set(err, "linear_backward_input: oneDNN sgemm failed (rows=%d in=%d out=%d)",
                         rows, in, out);
    return 0;
}

int linear_forward_typed(NnContext *ctx, int rows, int in, int out, const float *x, const void *w,
                         DType wt, const float *bias, float *y, Error *err) {
    if (wt == DTYPE_F32)
        return linear_forward(ctx, rows, in, out, x, w, bias, y, err);
    if (check_sizes("linear_forward", rows, in, out, err))
        return -1;
    if (rows == 0)
        return 0;
    float beta = bias_rows(rows, out, bias, y);
    if (gemm_half(ctx, 'T', rows, out, in, x, in, w, wt, in, beta, y, out, NULL, err))
        return error_prefix(err, "linear_forward: ");
    return 0;
}

int linear_backward_input_typed(NnContext *ctx, int rows, int in, int out, const float *dy,
                                const void *w, DType wt, float *dx, int accumulate, Error *err) {
    if (wt == DTYPE_F32)
        return linear_backward_input(ctx, rows, in, out, dy, w, dx, accumulate, err);
    if (check_sizes("linear_backward_input", rows, in, out, err))
        return -1;
    if (rows == 0)
        return 0;
    if (gemm_half(ctx, 'N', rows, in, out, dy, out, w, wt, in, accumulate ? 1.0f : 0.0f, dx, in,
                  NULL, err))
        return error_prefix(err, "linear_backward_input: ");
    return 0;
}
