/* Linear layer y = x W^T + b (PyTorch nn.Linear) and its input gradient.
 *   x [rows, in]   w [out, in]   b [out] or NULL   y [rows, out]
 * rows = batch * tokens (or batch * pixels for SD2's linear proj_in). */
#ifndef SDTI_NN_LINEAR_H
#define SDTI_NN_LINEAR_H

#include "nn/nn_context.h"

int linear_forward(NnContext *ctx, int rows, int in, int out, const float *x, const float *w,
                   const float *bias, float *y, Error *err);
/* dx [rows, in] = dy [rows, out] W; overwrites dx (accumulate = 0) or adds to it (1). */
int linear_backward_input(NnContext *ctx, int rows, int in, int out, const float *dy,
                          const float *w, float *dx, int accumulate, Error *err);

#endif
