/* `sdti forward`: one model component run on tensors from a safetensors file. cmd_forward.c
 * parses the options, opens the model and the inputs and writes the outputs; each component
 * lives in its own file (forward_unet.c, forward_vae.c, forward_text.c). */
#ifndef SDTI_CLI_FORWARD_H
#define SDTI_CLI_FORWARD_H

#include <stdbool.h>

#include "base/error.h"
#include "formats/tensor_set.h"
#include "models/model_files.h"
#include "nn/nn_context.h"

typedef struct ForwardRequest {
    const char *component;       /* unet | vae-encode | vae-decode | text-encoder */
    const char *inputs_path;     /* for error messages */
    const char *mixed_precision; /* "no" | "fp16" | "bf16": weight storage */
    bool gradient_checkpointing;
    long clip_skip;        /* text-encoder: kohya's --clip_skip (0/1 = last layer) */
    long max_token_length; /* text-encoder: 75 | 150 | 225, 0 = as the ids come */
} ForwardRequest;

/* Each reads its named inputs from `in` (a clear error naming a missing or mis-shaped tensor
 * and the inputs file), computes, and adds float32 outputs to `out` (owned by `out`). */
int forward_unet(NnContext *ctx, const ForwardRequest *req, const ModelFiles *mf,
                 const TensorSet *in, TensorSet *out, Error *err);
int forward_vae(NnContext *ctx, const ForwardRequest *req, const ModelFiles *mf,
                const TensorSet *in, TensorSet *out, Error *err);
int forward_text_encoder(NnContext *ctx, const ForwardRequest *req, const ModelFiles *mf,
                         const TensorSet *in, TensorSet *out, Error *err);

#endif
