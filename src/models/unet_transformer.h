/* The UNet's Transformer2DModel (LDM's SpatialTransformer) with its BasicTransformerBlocks,
 * forward and input-gradient backward:
 *
 *   t  = proj_in(group_norm(x))              as rows [batch * h * w, C]
 *   per block:  t += attn1(ln1(t))           self-attention
 *               t += attn2(ln2(t), context)  cross-attention on encoder_hidden_states
 *               t += ff(ln3(t))              ff = Linear(GEGLU(Linear)) of width ff_dim
 *   y  = proj_out(t) (back to NCHW) + x
 *
 * SD1's 1x1-conv proj_in/proj_out and SD2's linear ones (use_linear_projection) are the same
 * matrix product on rows of channels, so one code path serves both: the weights bind with
 * either shape. upcast_attention changes nothing in fp32.
 *
 *   x, y [batch, C, h, w]   context [batch, tokens, context_dim]
 *
 * The tape keeps, per block, the block input and the residual after each attention, the
 * norm statistics, the self-attention's output, k and v of the cross-attention, the row
 * log-sum-exp of both attentions and the GEGLU input: what the input gradients need (linear
 * layers keep nothing). The self-attention's q, k, v and the cross-attention's q and output
 * are recomputed in the backward. */
#ifndef SDTI_MODELS_UNET_TRANSFORMER_H
#define SDTI_MODELS_UNET_TRANSFORMER_H

#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"
#include "formats/tensor_set.h"
#include "models/weight_ref.h"
#include "nn/nn_context.h"

typedef struct UnetAttention {
    WeightRef to_q, to_k, to_v; /* [C, C] / [C, context_dim] for k, v of attn2; no bias */
    WeightRef to_out_w, to_out_b;
} UnetAttention;

typedef struct UnetBasicBlock {
    WeightRef norm1_w, norm1_b, norm2_w, norm2_b, norm3_w, norm3_b;
    UnetAttention attn1, attn2;
    WeightRef ff_in_w, ff_in_b;   /* ff.net.0.proj [2 * ff_dim, C] (value | gate) */
    WeightRef ff_out_w, ff_out_b; /* ff.net.2 [C, ff_dim] */
} UnetBasicBlock;

typedef struct UnetTransformer {
    int channels, heads, depth, context_dim, ff_dim, groups;
    float group_norm_eps, layer_norm_eps;
    WeightRef norm_w, norm_b, proj_in_w, proj_in_b, proj_out_w, proj_out_b;
    UnetBasicBlock *blocks; /* depth of them, owned */
} UnetTransformer;

/* Binds "<prefix>.norm", ".proj_in", ".transformer_blocks.N.*", ".proj_out". */
int unet_transformer_bind(UnetTransformer *tf, const TensorSet *set, const char *prefix,
                          int channels, int heads, int depth, int context_dim, int groups,
                          float group_norm_eps, float layer_norm_eps, WeightPool *pool, Error *err);
int unet_transformer_random(UnetTransformer *tf, int channels, int heads, int depth,
                            int context_dim, int groups, float group_norm_eps, float layer_norm_eps,
                            unsigned long long seed, WeightPool *pool, Error *err);
void unet_transformer_free(UnetTransformer *tf);

size_t unet_transformer_tape_floats(const UnetTransformer *tf, int batch, int h, int w, int tokens);
size_t unet_transformer_scratch_floats(const UnetTransformer *tf, int batch, int h, int w,
                                       int tokens);
size_t unet_transformer_weight_floats(const UnetTransformer *tf);

/* Indices of the optional time profile (seconds summed per kernel kind). */
enum { UNET_PROF_LINEAR, UNET_PROF_ATTENTION, UNET_PROF_NORM, UNET_PROF_OTHER, UNET_PROF_COUNT };

/* tape is required (a region of unet_transformer_tape_floats). */
int unet_transformer_forward(NnContext *ctx, const UnetTransformer *tf, int batch, int h, int w,
                             int tokens, const float *x, const float *context, float *y,
                             float *tape, float *scratch, float *wscratch, double *prof,
                             Error *err);
/* Adds d(loss)/d(context) into dcontext. dx may be NULL when x does not depend on the
 * context: then only the cross-attention key/value path is walked back (no query, self-
 * attention or input-projection gradients), which is all the first transformer needs.
 * prof: NULL, or UNET_PROF_COUNT sums to which kernel seconds are added. */
int unet_transformer_backward_input(NnContext *ctx, const UnetTransformer *tf, int batch, int h,
                                    int w, int tokens, const float *x, const float *tape,
                                    const float *dy, float *dx, float *dcontext, float *scratch,
                                    float *wscratch, double *prof, Error *err);

#endif
