/* Element-wise activations and GEGLU, each with its input gradient. In-place use (y == x,
 * dx == dy) is allowed for the forward / backward of the element-wise ones.
 *   silu(x) = x * sigmoid(x)               (UNet, VAE)
 *   gelu(x) = x/2 * (1 + erf(x / sqrt 2))  (exact, as torch's default; SD2 text encoder)
 *   quick_gelu(x) = x * sigmoid(1.702 x)   (SD1 CLIP text encoder)
 *   geglu: x [rows, 2*dim] = [a | g] -> y [rows, dim] = a * gelu(g)   (diffusers GEGLU:
 *          the first half is the value, the second the gate) */
#ifndef SDTI_NN_ACTIVATION_H
#define SDTI_NN_ACTIVATION_H

#include <stddef.h>

void silu_forward(size_t n, const float *x, float *y);
void silu_backward_input(size_t n, const float *x, const float *dy, float *dx);
void gelu_forward(size_t n, const float *x, float *y);
void gelu_backward_input(size_t n, const float *x, const float *dy, float *dx);
void quick_gelu_forward(size_t n, const float *x, float *y);
void quick_gelu_backward_input(size_t n, const float *x, const float *dy, float *dx);
void geglu_forward(int rows, int dim, const float *x, float *y);
void geglu_backward_input(int rows, int dim, const float *x, const float *dy, float *dx);

#endif
