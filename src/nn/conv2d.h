/* 2-D convolution (PyTorch Conv2d, groups = 1, dilation 1, zero padding) and its input
 * gradient (backward-data). No weight gradient: TI never trains a convolution.
 *   x  [batch, in_ch, in_h, in_w]      w  [out_ch, in_ch, kernel_h, kernel_w]
 *   y  [batch, out_ch, out_h, out_w]   out_h = (in_h + pad_top + pad_bottom - kernel_h) / stride +
 * 1 Asymmetric padding exists for the VAE encoder's downsample (pad right/bottom by 1, stride 2).
 */
#ifndef SDTI_NN_CONV2D_H
#define SDTI_NN_CONV2D_H

#include "base/dtype.h"
#include "nn/nn_context.h"

typedef struct Conv2dShape {
    int batch, in_ch, out_ch;
    int in_h, in_w;
    int kernel_h, kernel_w;
    int stride;
    int pad_top, pad_left, pad_bottom, pad_right;
} Conv2dShape;

/* How the convolution is computed; the context's choice applies to every later call. The
 * default is the measured fastest here (docs/kernels.md); the others exist for the benchmark
 * and as fallbacks. */
typedef enum Conv2dAlgorithm {
    CONV2D_ALGO_ONEDNN_BLOCKED,  /* oneDNN direct, its own blocked layouts, reorders per call */
    CONV2D_ALGO_ONEDNN_NCHW,     /* oneDNN direct on the caller's NCHW memory */
    CONV2D_ALGO_ONEDNN_WINOGRAD, /* oneDNN Winograd (3x3 stride 1 only; errors otherwise) */
    CONV2D_ALGO_IM2COL_SGEMM,    /* im2col / col2im + OpenBLAS sgemm */
    CONV2D_ALGO_ONEDNN_BF16,     /* oneDNN direct, inputs and weights rounded to bf16, f32
                                    accumulation and output (--mixed_precision bf16) */
    CONV2D_ALGO_AUTO,            /* per shape and direction, the fastest measured here */
    CONV2D_ALGO_WINOGRAD_F43,    /* our Winograd F(4x4,3x3) for 3x3 stride-1 pad-1 layers,
                                    AUTO's choice for every other shape */
    CONV2D_ALGO_COUNT
} Conv2dAlgorithm;
#define CONV2D_ALGO_DEFAULT CONV2D_ALGO_AUTO

int conv2d_set_algorithm(NnContext *ctx, Conv2dAlgorithm algorithm, Error *err);
Conv2dAlgorithm conv2d_get_algorithm(NnContext *ctx);

/* Frees the layout and scratchpad buffers that calls so far have grown (the blocked kernels
 * of a 512x512 VAE layer leave ~0.5 GB); later calls allocate again as needed. Call it after
 * the VAE when the UNet runs next (training with cached latents, generation), so the VAE's
 * buffers do not stay resident. Cached primitives are kept. */
void conv2d_release_buffers(NnContext *ctx);

int conv2d_out_h(const Conv2dShape *s);
int conv2d_out_w(const Conv2dShape *s);

/* bias may be NULL. */
int conv2d_forward(NnContext *ctx, const Conv2dShape *s, const float *x, const float *w,
                   const float *bias, float *y, Error *err);
/* dx = d(loss)/dx from dy = d(loss)/dy; overwrites dx. */
int conv2d_backward_input(NnContext *ctx, const Conv2dShape *s, const float *dy, const float *w,
                          float *dx, Error *err);

/* The same with the weights as stored: w_dtype DTYPE_F32, DTYPE_F16 or DTYPE_BF16. The
 * Winograd path reads half weights directly (widening inside its weight transform); the
 * other algorithms widen them into widen_scratch (at least out_ch * in_ch * kh * kw floats;
 * unused, and may be NULL, when w_dtype is DTYPE_F32). */
int conv2d_forward_typed(NnContext *ctx, const Conv2dShape *s, const float *x, const void *w,
                         DType w_dtype, float *widen_scratch, const float *bias, float *y,
                         Error *err);
int conv2d_backward_input_typed(NnContext *ctx, const Conv2dShape *s, const float *dy,
                                const void *w, DType w_dtype, float *widen_scratch, float *dx,
                                Error *err);

#endif
