/* Linear layer: both directions are one sgemm each (see linear.h for shapes). The bias is
 * written into y first so the product can accumulate onto it (beta = 1), saving a second pass
 * over y.
 *
 * The sgemm is oneDNN's, not OpenBLAS's: Debian's OpenBLAS 0.3.21 (DYNAMIC_ARCH) does not
 * recognise recent Xeons (it picks its "Prescott" SSE3 kernels, ~4x slower here), and
 * oneDNN's threads are OpenMP's, the same pool as our loops and the convolutions, so the two
 * runtimes never spin against each other on the cores. */
#include "nn/linear.h"

#include "nn/nn_context_internal.h"

#include <oneapi/dnnl/dnnl.h>
#include <string.h>

static int check_sizes(const char *where, int rows, int in, int out, Error *err) {
    if (rows < 0 || in <= 0 || out <= 0)
        return error_set(err, "%s: bad sizes rows=%d in=%d out=%d (rows >= 0, in and out > 0)",
                         where, rows, in, out);
    return 0;
}

int linear_forward(NnContext *ctx, int rows, int in, int out, const float *x, const float *w,
                   const float *bias, float *y, Error *err) {
    (void)ctx;
    if (check_sizes("linear_forward", rows, in, out, err))
        return -1;
    if (rows == 0)
        return 0;
    float beta = 0.0f;
    if (bias) {
        for (int r = 0; r < rows; r++)
            memcpy(y + (size_t)r * out, bias, (size_t)out * sizeof *y);
        beta = 1.0f;
    }
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
