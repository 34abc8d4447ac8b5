/* Shared between conv2d.c (oneDNN) and conv2d_gemm.c (im2col + sgemm); src/nn only. */
#ifndef SDTI_NN_CONV2D_INTERNAL_H
#define SDTI_NN_CONV2D_INTERNAL_H

#include "nn/conv2d.h"

int conv2d_check_shape(const Conv2dShape *s, Error *err);
int conv2d_gemm_forward(NnContext *ctx, const Conv2dShape *s, const float *x, const float *w,
                        const float *bias, float *y, Error *err);
int conv2d_gemm_backward_input(NnContext *ctx, const Conv2dShape *s, const float *dy,
                               const float *w, float *dx, Error *err);

#endif
