/* Shared by the VAE files only: the per-sample workspace and the layer steps the encoder and
 * decoder are built from. */
#ifndef SDTI_MODELS_VAE_INTERNAL_H
#define SDTI_MODELS_VAE_INTERNAL_H

#include "models/vae.h"

/* One sample's activation memory, carved from the workspace: two activation buffers the
 * layers ping-pong between (each as large as the largest activation), a scratch region
 * (resnet temporaries, attention tensors), the widened-weight region and norm statistics. */
typedef struct VaeWork {
    float *act[2];
    float *scratch;
    float *wscratch;
    float *stats;
    size_t size[5]; /* floats in act[0], act[1], scratch, wscratch, stats */
} VaeWork;

/* Sizes, in floats, of the parts above for one pass. The plan walks the pass step by step
 * and follows which activation buffer each step reads and writes (cur), so each buffer is
 * sized by the activations that actually land in it: at SD1.5's 512x512 decode the widest
 * activation (256 channels at full size) only ever lands in one of them. */
typedef struct VaePlan {
    size_t act[2], scratch, wscratch, stats;
    int cur; /* the buffer holding the current activation */
} VaePlan;

size_t vae_plan_total(const VaePlan *p);
void vae_work_carve(const VaePlan *p, float *mem, VaeWork *w);
/* A step writing `floats` into the other buffer (its input is the caller's, not a buffer). */
void vae_plan_write(VaePlan *p, size_t floats);
/* A step reading act[cur] and writing the other buffer, as the passes run them. */
void vae_plan_step(VaePlan *p, size_t in_floats, size_t out_floats);
void vae_plan_resnet(VaePlan *p, const ResnetBlock *rb, int h, int w);
void vae_plan_mid(VaePlan *p, const VaeMidBlock *mid, int h, int w);
void vae_plan_conv(VaePlan *p, const VaeConv *c, int in_h, int in_w, int out_h, int out_w);

/* Fails when [p, p + floats) overruns the workspace region p starts in (a planning bug, so
 * it is caught before memory is corrupted); memory outside the workspace is not checked. */
int vae_work_check(const VaeWork *w, const float *p, size_t floats, const char *what, Error *err);

/* Convolution with the weights widened into work->wscratch. stride 1: "same" padding
 * kernel / 2; stride 2: the encoder downsample's (0, 1, 0, 1) padding. One sample. */
int vae_conv_forward(NnContext *ctx, const VaeConv *c, int stride, int h, int w, const float *x,
                     float *y, const VaeWork *work, Error *err);
/* Nearest 2x upsampling + 3x3 conv (the decoder's Upsample2D) as one 2x2 convolution over
 * the four output phases: x [C, h, w] -> y [C, 2h, 2w]. Uses work->scratch
 * (vae_upsample_conv_scratch_floats) and work->wscratch (vae_upsample_conv_weight_floats). */
int vae_upsample_conv_forward(NnContext *ctx, const VaeConv *c, int h, int w, const float *x,
                              float *y, const VaeWork *work, Error *err);
size_t vae_upsample_conv_scratch_floats(const VaeConv *c, int h, int w);
size_t vae_upsample_conv_weight_floats(const VaeConv *c);
/* y = silu(group_norm(x)), one sample. */
int vae_norm_silu(NnContext *ctx, const VaeConfig *cfg, const WeightRef *gamma,
                  const WeightRef *beta, int ch, int h, int w, const float *x, float *y,
                  const VaeWork *work, Error *err);
/* The mid block on one sample: x in act[*cur]; the result lands in act[*cur] after the call
 * (cur flips as the buffers ping-pong). */
int vae_mid_block_forward(NnContext *ctx, const VaeMidBlock *mid, int h, int w, VaeWork *work,
                          int *cur, Error *err);
int vae_resnet_forward(NnContext *ctx, const ResnetBlock *rb, int h, int w, VaeWork *work, int *cur,
                       Error *err);

/* Binding helpers used by vae.c. */
int vae_conv_bind(VaeConv *c, const TensorSet *set, WeightPool *pool, const char *prefix, int in_ch,
                  int out_ch, int kernel, Error *err);
int vae_conv_random(VaeConv *c, WeightPool *pool, int in_ch, int out_ch, int kernel, uint64_t seed,
                    Error *err);
int vae_mid_bind(VaeMidBlock *mid, const TensorSet *set, WeightPool *pool, const char *prefix,
                 const VaeConfig *cfg, Error *err);
int vae_mid_random(VaeMidBlock *mid, WeightPool *pool, const VaeConfig *cfg, int ch, uint64_t seed,
                   Error *err);

#endif
