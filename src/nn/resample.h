/* Nearest-neighbour 2x upsampling (the UNet's and VAE decoder's Upsample2D before their conv)
 * and its input gradient (the sum over each 2x2 block); and the sinusoidal timestep embedding
 * of diffusers' Timesteps (forward only: nothing trains through the timestep). */
#ifndef SDTI_NN_RESAMPLE_H
#define SDTI_NN_RESAMPLE_H

#include <stdbool.h>

/* x [planes, h, w] -> y [planes, 2h, 2w]; planes = batch * channels. */
void upsample_nearest2x_forward(int planes, int h, int w, const float *x, float *y);
void upsample_nearest2x_backward_input(int planes, int h, int w, const float *dy, float *dx);

/* x [planes, h, w] -> y [planes, oh, ow] as PyTorch's F.interpolate(size=(oh, ow),
 * mode="nearest") (diffusers' Upsample2D given an output_size, when the latent size does not
 * halve evenly at every UNet level); exact doublings take the 2x path. The backward is the
 * scatter-add of dy onto each output pixel's source pixel (dx overwritten). */
void upsample_nearest_size_forward(int planes, int h, int w, int oh, int ow, const float *x,
                                   float *y);
void upsample_nearest_size_backward_input(int planes, int h, int w, int oh, int ow, const float *dy,
                                          float *dx);

/* out [batch, dim]: half sines, half cosines of t * exp(-ln(10000) * i / (half - freq_shift)),
 * cos first when flip_sin_to_cos (SD: flip true, shift 0). */
void timestep_embedding(int batch, int dim, const float *timesteps, bool flip_sin_to_cos,
                        float freq_shift, float *out);

#endif
