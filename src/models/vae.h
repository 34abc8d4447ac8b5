/* The VAE of SD 1.x / 2.x (diffusers AutoencoderKL), forward only.
 *
 * Encoder: conv_in -> per level: layers_per_block resnets (+ a stride-2 downsample conv with
 * (0,1,0,1) padding on every level but the last) -> mid block (resnet, single-head spatial
 * attention, resnet) -> GroupNorm + SiLU -> conv_out (2 * latent channels) -> quant_conv ->
 * mean, logvar (logvar clamped to [-30, 20] as diffusers' DiagonalGaussianDistribution).
 * Decoder: post_quant_conv -> conv_in -> mid block -> per level, widest first:
 * layers_per_block + 1 resnets (+ nearest 2x upsample and a conv on every level but the last)
 * -> GroupNorm + SiLU -> conv_out. Every size comes from VaeConfig; GroupNorm epsilon too.
 *
 *   image   [batch, in_channels, H, W]   in [-1, 1]
 *   mean, logvar, latents   [batch, latent_channels, H / f, W / f],  f = 2^(num_levels - 1)
 *
 * Memory: samples run one at a time (no VAE layer mixes samples), so the activation
 * workspace is sized for one sample whatever the batch: two activation buffers that the
 * layers ping-pong between and one scratch region (vae_*_workspace_floats give the size, in
 * floats, before anything runs; docs/vae.md has the figures). Weights stay in their storage
 * precision (fp32, or fp16 / bf16 with --mixed_precision) and are widened per layer. */
#ifndef SDTI_MODELS_VAE_H
#define SDTI_MODELS_VAE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/dtype.h"
#include "base/error.h"
#include "formats/tensor_set.h"
#include "models/model_config.h"
#include "models/resnet_block.h"
#include "models/weight_ref.h"
#include "nn/nn_context.h"

#define VAE_MAX_LAYERS 4 /* resnets per decoder level: layers_per_block + 1 */

/* The mid block's Attention: GroupNorm, one head over all channels, residual. */
typedef struct VaeAttention {
    int channels, groups;
    float eps;
    WeightRef norm_w, norm_b;
    WeightRef q_w, q_b, k_w, k_b, v_w, v_b, out_w, out_b; /* linear [C, C], [C] */
} VaeAttention;

typedef struct VaeMidBlock {
    ResnetBlock resnet0, resnet1;
    VaeAttention attn;
} VaeMidBlock;

typedef struct VaeConv {
    WeightRef w, b;
    int in_ch, out_ch, kernel;
} VaeConv;

typedef struct VaeEncoder {
    VaeConv conv_in;
    ResnetBlock resnets[UNET_MAX_LEVELS][VAE_MAX_LAYERS];
    VaeConv downsample[UNET_MAX_LEVELS]; /* all levels but the last */
    VaeMidBlock mid;
    WeightRef norm_out_w, norm_out_b;
    VaeConv conv_out, quant_conv;
} VaeEncoder;

typedef struct VaeDecoder {
    VaeConv post_quant_conv, conv_in;
    VaeMidBlock mid;
    ResnetBlock resnets[UNET_MAX_LEVELS][VAE_MAX_LAYERS]; /* up level j: widest first */
    VaeConv upsample[UNET_MAX_LEVELS];                    /* all up levels but the last */
    WeightRef norm_out_w, norm_out_b;
    VaeConv conv_out;
} VaeDecoder;

/* Which halves to bind: training caches latents with the encoder only, generation decodes
 * only, so the other half's weights are never converted or paged in. */
typedef enum VaeParts { VAE_ENCODER = 1, VAE_DECODER = 2, VAE_BOTH = 3 } VaeParts;

typedef struct Vae {
    VaeConfig cfg;
    VaeParts parts;
    WeightPool pool; /* converted weights (half storage, or random benchmark weights) */
    VaeEncoder enc;
    VaeDecoder dec;
} Vae;

/* Binds the weights of `parts` from `set` (diffusers names, as model_files gives the VAE
 * component) with the shapes `cfg` implies. storage: DTYPE_F32 (weights used as loaded),
 * DTYPE_F16 or DTYPE_BF16 (kept half, widened per layer). The set must outlive the Vae. */
int vae_load(Vae *vae, const TensorSet *set, const VaeConfig *cfg, VaeParts parts, DType storage,
             Error *err);
/* Random weights of the shapes cfg implies (benchmarks; no file needed). */
int vae_init_random(Vae *vae, const VaeConfig *cfg, VaeParts parts, DType storage, uint64_t seed,
                    Error *err);
void vae_free(Vae *vae);

/* Latent size for an image size (the encoder's downsampling), and back. */
void vae_latent_size(const VaeConfig *cfg, int h, int w, int *lh, int *lw);
int vae_downscale_factor(const VaeConfig *cfg);

/* Workspace (floats) vae_encode needs for an h x w image / vae_decode for lh x lw latents;
 * independent of the batch. */
size_t vae_encode_workspace_floats(const Vae *vae, int h, int w);
size_t vae_decode_workspace_floats(const Vae *vae, int lh, int lw);

/* image [batch, in_channels, h, w] -> mean, logvar [batch, latent_channels, lh, lw].
 * work: vae_encode_workspace_floats floats, or NULL to allocate (and free) it here. */
int vae_encode(NnContext *ctx, const Vae *vae, int batch, int h, int w, const float *image,
               float *mean, float *logvar, float *work, Error *err);
/* latents [batch, latent_channels, lh, lw] (already divided by the scaling factor) ->
 * image [batch, out_channels, lh * f, lw * f]. work as for vae_encode. */
int vae_decode(NnContext *ctx, const Vae *vae, int batch, int lh, int lw, const float *latents,
               float *image, float *work, Error *err);

/* latents = (mean + exp(logvar / 2) * noise) * scaling_factor: DiagonalGaussianDistribution's
 * sample with the given standard-normal noise, scaled for the UNet (scaling_factor 1: the
 * unscaled sample). n elements; latents may alias mean. */
void vae_sample_latents(size_t n, const float *mean, const float *logvar, const float *noise,
                        float scaling_factor, float *latents);

#endif
