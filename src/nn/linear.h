/* Linear layer y = x W^T + b (PyTorch nn.Linear) and its input gradient.
 *   x [rows, in]   w [out, in]   b [out] or NULL   y [rows, out]
 * rows = batch * tokens (or batch * pixels for SD2's linear proj_in). */
#ifndef SDTI_NN_LINEAR_H
#define SDTI_NN_LINEAR_H

#include "base/dtype.h"
#include "nn/nn_context.h"

int linear_forward(NnContext *ctx, int rows, int in, int out, const float *x, const float *w,
                   const float *bias, float *y, Error *err);
/* dx [rows, in] = dy [rows, out] W; overwrites dx (accumulate = 0) or adds to it (1). */
int linear_backward_input(NnContext *ctx, int rows, int in, int out, const float *dy,
                          const float *w, float *dx, int accumulate, Error *err);

/* The same with the weight in its storage type wt: DTYPE_F32 (exactly the functions above),
 * DTYPE_F16 or DTYPE_BF16 (model weights kept at half precision). Half weights are widened
 * tile by tile inside the product (gemm_half.h) instead of into a weight-sized float32
 * scratch; the widening is exact, so only sgemm's summation order can differ from
 * widening first. The bias is float32 (it is small: callers widen it). */
int linear_forward_typed(NnContext *ctx, int rows, int in, int out, const float *x, const void *w,
                         DType wt, const float *bias, float *y, Error *err);
int linear_backward_input_typed(NnContext *ctx, int rows, int in, int out, const float *dy,
                                const void *w, DType wt, float *dx, int accumulate, Error *err);

#endif
