/* 2-D convolution (PyTorch Conv2d, groups = 1, dilation 1, zero padding) and its input
 * gradient (backward-data). No weight gradient: TI never trains a convolution.
 *   x  [batch, in_ch, in_h, in_w]      w  [out_ch, in_ch, kernel_h, kernel_w]
 *   y  [batch, out_ch, out_h, out_w]   out_h = (in_h + pad_top + pad_bottom - kernel_h) / stride +
 * 1 Asymmetric padding exists for the VAE encoder's downsample (pad right/bottom by 1, stride 2).
 */
#ifndef SDTI_NN_CONV2D_H
#define SDTI_NN_CONV2D_H

#include "nn/nn_context.h"

typedef struct Conv2dShape {
    int batch, in_ch, out_ch;
    int in_h, in_w;
    int kernel_h, kernel_w;
    int stride;
    int pad_top, pad_left, pad_bottom, pad_right;
} Conv2dShape;

int conv2d_out_h(const Conv2dShape *s);
int conv2d_out_w(const Conv2dShape *s);

/* bias may be NULL. */
int conv2d_forward(NnContext *ctx, const Conv2dShape *s, const float *x, const float *w,
                   const float *bias, float *y, Error *err);
/* dx = d(loss)/dx from dy = d(loss)/dy; overwrites dx. */
int conv2d_backward_input(NnContext *ctx, const Conv2dShape *s, const float *dy, const float *w,
                          float *dx, Error *err);

#endif
