/* Shared between conv2d.c (oneDNN) and conv2d_gemm.c (im2col + sgemm); src/nn only. */
#ifndef SDTI_NN_CONV2D_INTERNAL_H
#define SDTI_NN_CONV2D_INTERNAL_H

#include "nn/conv2d.h"

/* Seconds spent per stage of the oneDNN path, summed over calls while enabled (benchmarks
 * only: tells the reorder cost apart from the convolution itself). */
typedef struct Conv2dProfile {
    double reorder_in, reorder_weights, convolution, reorder_out;
} Conv2dProfile;
/* NULL disables. The context keeps the pointer; the caller keeps the struct alive. */
int conv2d_profile_enable(NnContext *ctx, Conv2dProfile *profile, Error *err);

/* The algorithm a forward (backward 0) or backward-data (1) call with this shape runs: `a`
 * itself, or CONV2D_ALGO_AUTO's choice. */
Conv2dAlgorithm conv2d_resolve_algorithm(Conv2dAlgorithm a, int backward, const Conv2dShape *s);

int conv2d_check_shape(const Conv2dShape *s, Error *err);
int conv2d_gemm_forward(NnContext *ctx, const Conv2dShape *s, const float *x, const float *w,
                        const float *bias, float *y, Error *err);
int conv2d_gemm_backward_input(NnContext *ctx, const Conv2dShape *s, const float *dy,
                               const float *w, float *dx, Error *err);

#endif
