/* The UNet's structures, shared by unet_weights.c (binding), unet_arena.c (memory plan) and
 * unet_forward.c (forward / backward loops). */
#ifndef SDTI_MODELS_UNET_INTERNAL_H
#define SDTI_MODELS_UNET_INTERNAL_H

#include "models/resnet_block.h"
#include "models/unet.h"
#include "models/unet_transformer.h"
#include "models/weight_ref.h"

typedef enum UnetBlockKind {
    UB_CONV_IN,     /* conv 3x3 */
    UB_RESNET,      /* ResnetBlock2D with the time embedding */
    UB_TRANSFORMER, /* Transformer2DModel */
    UB_DOWNSAMPLE,  /* conv 3x3 stride 2 pad 1 */
    UB_UPSAMPLE,    /* nearest 2x, conv 3x3 */
    UB_OUT,         /* GroupNorm, SiLU, conv 3x3 */
    UB_KIND_COUNT
} UnetBlockKind;

typedef struct UnetBlock {
    UnetBlockKind kind;
    char name[64]; /* diffusers prefix, for messages */
    int in_ch, out_ch;
    int scale;      /* input spatial size = latent size >> scale */
    int out_scale;  /* output spatial size = latent size >> out_scale */
    bool push_skip; /* the output is also a skip connection for an up block */
    int skip_ch;    /* > 0: the input is concat(previous output, skip) with skip_ch channels */
    int skip_src;   /* then: the block whose output that skip is */
    ResnetBlock resnet;
    UnetTransformer transformer;
    WeightRef conv_w, conv_b, norm_w, norm_b; /* samplers, conv_in, the output head */
    int groups;
    float eps;
} UnetBlock;

struct Unet {
    UnetConfig cfg;
    WeightPool pool;
    int time_in_dim, time_dim; /* sinusoid width (block_out[0]) and embedding width (4x) */
    WeightRef time1_w, time1_b, time2_w, time2_b;
    UnetBlock *blocks;
    int block_count;
    int first_transformer; /* index of the first block whose output depends on the context */
    size_t weight_floats;  /* largest widening scratch any block needs */
    size_t parameters;
};

struct UnetArena {
    UnetShape shape;
    UnetMode mode;
    float *base;
    size_t floats;
    float **inputs; /* per block: its input (all kept: skips and checkpoints) */
    float **tapes;  /* per block: its tape (UNET_TRAIN), or all the one shared region */
    float **dskips; /* per block that pushes a skip whose gradient matters: that gradient */
    float *scratch, *wscratch;
    float *temb_act; /* silu(time embedding) [B, time_dim] */
    float *time_tmp; /* [B, time_in_dim + time_dim] */
    float *out_tmp;  /* block output before concatenation / re-run outputs */
    float *grad[2];  /* running gradient ping-pong */
    const float *context;
    bool forward_done;
    double fwd_seconds[4], bwd_seconds[4];
    double prof_fwd[UNET_PROF_COUNT], prof_bwd[UNET_PROF_COUNT]; /* inside transformers */
    bool in_backward;
};

/* Spatial size of a block's input / output for this arena: ceil(latent / 2^scale), what
 * diffusers' stride-2 pad-1 downsample convs give level after level (ceil of a ceil halving
 * is the ceil of the quarter); the upsamplers then go back to the skip's size. */
static inline int unet_dim(int latent, int scale) {
    return (latent + (1 << scale) - 1) >> scale;
}

size_t unet_block_tape_floats(const UnetBlock *b, const UnetShape *s);
size_t unet_block_scratch_floats(const UnetBlock *b, const UnetShape *s);

#endif
