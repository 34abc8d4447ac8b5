/* The ResnetBlock2D of diffusers (UNet and VAE), forward and input-gradient backward:
 *
 *   h = conv1(silu(norm1(x)))                    norm: GroupNorm(groups, eps), conv 3x3 pad 1
 *   h = h + time_emb_proj(silu(temb))[:, :, None, None]     (UNet only; VAE: no temb)
 *   y = conv2(silu(norm2(h))) + shortcut(x)      shortcut: 1x1 conv when in != out, else x
 *
 * (dropout 0, output_scale_factor 1, time_embedding_norm "default": what SD1/SD2 use.)
 *   x [batch, in_ch, h, w]   y [batch, out_ch, h, w]   temb_act [batch, temb_dim] = silu(temb)
 *
 * Memory: the caller hands three float regions whose sizes the *_floats functions give:
 *   tape     what the backward needs besides x: norm statistics and the pre-norm2 activation
 *            (the GroupNorm outputs are recomputed in backward, cheap, instead of kept);
 *            NULL in forward-only use;
 *   scratch  temporaries of one call (forward or backward);
 *   wscratch where half-precision weights are widened (resnet_block_weight_floats).
 * No weight gradient and nothing for one is kept: TI trains no convolution. */
#ifndef SDTI_MODELS_RESNET_BLOCK_H
#define SDTI_MODELS_RESNET_BLOCK_H

#include <stddef.h>

#include "base/error.h"
#include "formats/tensor_set.h"
#include "models/weight_ref.h"
#include "nn/nn_context.h"

typedef struct ResnetBlock {
    int in_ch, out_ch;
    int temb_dim; /* 0: no time embedding (VAE) */
    int groups;
    float eps;
    WeightRef norm1_w, norm1_b, conv1_w, conv1_b;
    WeightRef time_w, time_b; /* time_emb_proj [out_ch, temb_dim], [out_ch] */
    WeightRef norm2_w, norm2_b, conv2_w, conv2_b;
    WeightRef shortcut_w, shortcut_b; /* conv_shortcut 1x1; absent when in_ch == out_ch */
} ResnetBlock;

/* Binds "<prefix>.norm1.weight", ".conv1.weight", ".time_emb_proj.weight", ".norm2.*",
 * ".conv2.*", ".conv_shortcut.*" (diffusers names) and checks every shape. */
int resnet_block_bind(ResnetBlock *rb, const TensorSet *set, const char *prefix, int in_ch,
                      int out_ch, int temb_dim, int groups, float eps, WeightPool *pool,
                      Error *err);
/* Random weights of the right shapes (benchmarks); seed varies per block. */
int resnet_block_random(ResnetBlock *rb, int in_ch, int out_ch, int temb_dim, int groups, float eps,
                        unsigned long long seed, WeightPool *pool, Error *err);

size_t resnet_block_tape_floats(const ResnetBlock *rb, int batch, int h, int w);
size_t resnet_block_scratch_floats(const ResnetBlock *rb, int batch, int h, int w);
/* Scratch of a forward without tape (inference: VAE, sampling): smaller than the above. */
size_t resnet_block_forward_scratch_floats(const ResnetBlock *rb, int batch, int h, int w);
size_t resnet_block_weight_floats(const ResnetBlock *rb);

/* tape may be NULL (no backward will follow). temb_act NULL when temb_dim == 0. y must not
 * alias x. */
int resnet_block_forward(NnContext *ctx, const ResnetBlock *rb, int batch, int h, int w,
                         const float *x, const float *temb_act, float *y, float *tape,
                         float *scratch, float *wscratch, Error *err);
/* dx [batch, in_ch, h, w] = d(loss)/dx from dy; x and tape as given to the forward. The time
 * embedding gets no gradient (the timestep is not trained). */
int resnet_block_backward_input(NnContext *ctx, const ResnetBlock *rb, int batch, int h, int w,
                                const float *x, const float *tape, const float *dy, float *dx,
                                float *scratch, float *wscratch, Error *err);

#endif
