/* The two 16-wide Box-Muller transforms behind torch.randn on CPU (internal to rng_torch.c).
 * Each turns 16 uniforms in [0, 1) in place into 16 normal samples: data[j] from
 * (1 - data[j], data[j + 8]) by the cosine, data[j + 8] by the sine, for j in 0..7. */
#ifndef SDTI_BASE_RNG_TORCH_KERNELS_H
#define SDTI_BASE_RNG_TORCH_KERNELS_H

/* torch's scalar NormalFill16<float> (the "default" capability): libm logf and sincosf. */
void torch_box_muller16_scalar(float data[16]);
/* torch's NormalFill16<float> for AVX2 (avx_mathfun.h log256_ps / sincos256_ps), lane by
 * lane, with the fused multiply-adds of the compiled torch binary. */
void torch_box_muller16_avx2(float data[16]);

#endif
