/* GroupNorm (NCHW) and LayerNorm (last dimension), with their input gradients. The forward
 * saves per-group / per-row statistics (mean, 1/std) which the backward needs besides x.
 * Epsilon always comes from the model config: it differs between sites (UNet resnets 1e-5,
 * UNet transformer and VAE 1e-6). gamma/beta may be NULL (no affine). */
#ifndef SDTI_NN_NORM_H
#define SDTI_NN_NORM_H

#include "nn/nn_context.h"

/* x, y [batch, channels, spatial]; stats [batch * groups * 2] (mean, rstd). */
void group_norm_forward(NnContext *ctx, int batch, int channels, int spatial, int groups, float eps,
                        const float *x, const float *gamma, const float *beta, float *y,
                        float *stats);
/* dx overwritten; x and stats as given to / returned by the forward. */
void group_norm_backward_input(NnContext *ctx, int batch, int channels, int spatial, int groups,
                               const float *x, const float *gamma, const float *stats,
                               const float *dy, float *dx);

/* x, y [rows, dim]; stats [rows * 2] (mean, rstd). */
void layer_norm_forward(NnContext *ctx, int rows, int dim, float eps, const float *x,
                        const float *gamma, const float *beta, float *y, float *stats);
void layer_norm_backward_input(NnContext *ctx, int rows, int dim, const float *x,
                               const float *gamma, const float *stats, const float *dy, float *dx);

#endif
