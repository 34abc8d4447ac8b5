/* Our Winograd F(4x4, 3x3) convolution for 3x3, stride-1, pad-1 layers (src/nn only; the
 * public entry points are conv2d_forward / conv2d_backward_input and their _typed variants).
 *
 * Each 6x6 input tile (4x4 output pixels plus a one-pixel halo) becomes 36 "points" by
 * V = B^T d B; each 3x3 filter becomes 36 points by U = G g G^T; per point the channels mix
 * in one sgemm M = U V; the output tile is A^T M A. That is 36 multiplies per 16 outputs
 * instead of 144. Backward-data of a 3x3 s1 p1 convolution is the same convolution of dy
 * with the filters flipped spatially and in/out channels swapped: only the weight
 * transform differs. Weights are read as stored (f32, f16 or bf16) and widened inside the
 * weight transform. Scratch is bounded (tiles and channels in chunks): see
 * conv2d_winograd_scratch_bytes. */
#ifndef SDTI_NN_CONV2D_WINOGRAD_H
#define SDTI_NN_CONV2D_WINOGRAD_H

#include "base/dtype.h"
#include "nn/conv2d.h"

/* 1 when the shape is a 3x3, stride-1, pad-1 convolution (the only one this computes). */
int conv2d_winograd_applies(const Conv2dShape *s);

/* Bytes of scratch one call with this shape uses: about budget_bytes (0: the default, 28
 * MiB) or less; more only where even the smallest chunks (16 tiles, 16 channels) need it.
 * Tests pass small budgets to run the chunked paths on small shapes. */
size_t conv2d_winograd_scratch_bytes(const Conv2dShape *s, int backward, size_t budget_bytes);

/* y = conv(x, w) + bias (bias may be NULL); w [out_ch, in_ch, 3, 3] of w_dtype (F32, F16,
 * BF16). scratch: conv2d_winograd_scratch_bytes(s, 0, budget_bytes) bytes. */
int conv2d_winograd_forward(const Conv2dShape *s, const float *x, const void *w, DType w_dtype,
                            const float *bias, float *y, float *scratch, size_t budget_bytes,
                            Error *err);
/* dx = input gradient from dy; same weights as the forward. */
int conv2d_winograd_backward_input(const Conv2dShape *s, const float *dy, const void *w,
                                   DType w_dtype, float *dx, float *scratch, size_t budget_bytes,
                                   Error *err);

#endif
