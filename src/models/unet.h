/* The UNet2DConditionModel of Stable Diffusion 1.x / 2.x: forward, and the backward from
 * d(loss)/d(output) to d(loss)/d(encoder_hidden_states) (what textual inversion trains
 * through; no weight gradient is ever computed or prepared for).
 *
 * Usage:
 *   unet_load(weights, &cfg.unet, storage, &u)      weights bound (mmapped f32 kept as is;
 *                                                   fp16/bf16 storage converts once)
 *   unet_arena_create(u, &shape, mode, &arena)      every activation byte, sized up front
 *   unet_forward(ctx, u, arena, sample, t, ehs, out)
 *   unet_backward_input(ctx, u, arena, dout, d_ehs) after a forward in a training mode
 *
 * The model is a flat list of blocks (conv_in, resnets, transformers, down/up samplers,
 * the output head) run in order; backward is the same list reversed. */
#ifndef SDTI_MODELS_UNET_H
#define SDTI_MODELS_UNET_H

#include <stdbool.h>
#include <stddef.h>

#include "base/dtype.h"
#include "base/error.h"
#include "formats/tensor_set.h"
#include "models/model_config.h"
#include "nn/nn_context.h"

typedef struct Unet Unet;
typedef struct UnetArena UnetArena;

/* storage: DTYPE_F32 (weights as loaded), DTYPE_F16 or DTYPE_BF16 (--mixed_precision). The
 * tensor set must outlive the Unet (f32 weights point into it). */
int unet_load(const TensorSet *weights, const UnetConfig *cfg, DType storage, Unet **out,
              Error *err);
/* A UNet of the config's shapes with random weights (benchmarks: no file needed). */
int unet_create_random(const UnetConfig *cfg, DType storage, unsigned long long seed, Unet **out,
                       Error *err);
void unet_free(Unet *u);
/* Bytes the weights occupy in their storage precision, and parameter count. */
size_t unet_weight_bytes(const Unet *u);
size_t unet_parameter_count(const Unet *u);

typedef enum UnetMode {
    UNET_INFERENCE,          /* forward only */
    UNET_TRAIN,              /* forward keeps what unet_backward_input needs */
    UNET_TRAIN_CHECKPOINTED, /* keeps block inputs only; backward re-runs each block */
} UnetMode;

typedef struct UnetShape {
    int batch, height, width; /* latent size: any >= 1 (halved rounding up per level) */
    int tokens;               /* encoder_hidden_states length (77 per chunk) */
} UnetShape;

/* Allocates the whole activation arena; the error on failure gives the byte count. */
int unet_arena_create(const Unet *u, const UnetShape *shape, UnetMode mode, UnetArena **out,
                      Error *err);
void unet_arena_free(UnetArena *a);
size_t unet_arena_bytes(const UnetArena *a);
UnetShape unet_arena_shape(const UnetArena *a);

/* sample [B, in_ch, h, w], timesteps [B] (float), encoder_hidden_states [B, tokens, ctx_dim]
 * -> out [B, out_ch, h, w]. encoder_hidden_states must stay valid until the backward. */
int unet_forward(NnContext *ctx, const Unet *u, UnetArena *a, const float *sample,
                 const float *timesteps, const float *encoder_hidden_states, float *out,
                 Error *err);
/* d_out [B, out_ch, h, w] -> d_encoder_hidden_states [B, tokens, ctx_dim] (overwritten). The
 * arena must hold a forward run in UNET_TRAIN or UNET_TRAIN_CHECKPOINTED mode. */
int unet_backward_input(NnContext *ctx, const Unet *u, UnetArena *a, const float *d_out,
                        float *d_encoder_hidden_states, Error *err);

/* Wall seconds spent per kind of block in the calls since the arena was made (benchmarks'
 * breakdown): [0] conv_in/samplers/output head, [1] resnets, [2] transformers, [3] the rest. */
void unet_arena_block_seconds(const UnetArena *a, double forward[4], double backward[4]);
/* Inside the transformers: [0] linear layers, [1] attention, [2] norms, [3] GEGLU, transposes
 * and residual adds. Re-runs of checkpointed blocks count as backward. */
void unet_arena_transformer_seconds(const UnetArena *a, double forward[4], double backward[4]);

#endif
