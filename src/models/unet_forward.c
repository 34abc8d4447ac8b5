#define _POSIX_C_SOURCE 200809L
/* The UNet's forward and input-gradient backward: a flat loop over the block list, and the
 * same loop reversed (see unet.h). */
#include "models/unet_internal.h"

#include <string.h>
#include <time.h>

#include "nn/activation.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "nn/norm.h"
#include "nn/resample.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int kind_bucket(UnetBlockKind k) {
    return k == UB_RESNET ? 1 : k == UB_TRANSFORMER ? 2 : 0;
}

static Conv2dShape conv3(int batch, int in_ch, int out_ch, int h, int w, int stride) {
    Conv2dShape s = {batch, in_ch, out_ch, h, w, 3, 3, stride, 1, 1, 1, 1};
    return s;
}

/* The vector slots of the widening scratch sit after the largest weight. */
static float *vec_slot(const Unet *u, const UnetArena *a, const UnetBlock *b, int i) {
    size_t vec = (size_t)(b->in_ch > b->out_ch ? b->in_ch : b->out_ch);
    return a->wscratch + b->conv_w.numel + (size_t)i * vec;
}

static int block_forward(NnContext *ctx, const Unet *u, UnetArena *a, const UnetBlock *b,
                         const float *x, float *y, float *tape, Error *err) {
    const UnetShape *s = &a->shape;
    int h = unet_dim(s->height, b->scale), w = unet_dim(s->width, b->scale);
    int rc = 0;
    switch (b->kind) {
    case UB_RESNET:
        rc = resnet_block_forward(ctx, &b->resnet, s->batch, h, w, x, a->temb_act, y, tape,
                                  a->scratch, a->wscratch, err);
        break;
    case UB_TRANSFORMER:
        rc = unet_transformer_forward(ctx, &b->transformer, s->batch, h, w, s->tokens, x,
                                      a->context, y, tape, a->scratch, a->wscratch,
                                      a->in_backward ? a->prof_bwd : a->prof_fwd, err);
        break;
    case UB_CONV_IN:
    case UB_DOWNSAMPLE: {
        Conv2dShape cs =
            conv3(s->batch, b->in_ch, b->out_ch, h, w, b->kind == UB_DOWNSAMPLE ? 2 : 1);
        rc = conv2d_forward_typed(ctx, &cs, x, b->conv_w.data, b->conv_w.dtype, a->wscratch,
                                  weight_ref_f32(&b->conv_b, vec_slot(u, a, b, 0)), y, err);
        break;
    }
    case UB_UPSAMPLE: {
        /* to the skip's size: 2x, or less when a downsample rounded an odd size up */
        int oh = unet_dim(s->height, b->out_scale), ow = unet_dim(s->width, b->out_scale);
        upsample_nearest_size_forward(s->batch * b->in_ch, h, w, oh, ow, x, a->scratch);
        Conv2dShape cs = conv3(s->batch, b->in_ch, b->out_ch, oh, ow, 1);
        rc =
            conv2d_forward_typed(ctx, &cs, a->scratch, b->conv_w.data, b->conv_w.dtype, a->wscratch,
                                 weight_ref_f32(&b->conv_b, vec_slot(u, a, b, 0)), y, err);
        break;
    }
    case UB_OUT: {
        size_t n = (size_t)s->batch * b->in_ch * h * w;
        group_norm_forward(ctx, s->batch, b->in_ch, h * w, b->groups, b->eps, x,
                           weight_ref_f32(&b->norm_w, vec_slot(u, a, b, 0)),
                           weight_ref_f32(&b->norm_b, vec_slot(u, a, b, 1)), a->scratch, tape);
        silu_forward(n, a->scratch, a->scratch);
        Conv2dShape cs = conv3(s->batch, b->in_ch, b->out_ch, h, w, 1);
        rc = conv2d_forward(ctx, &cs, a->scratch, weight_ref_f32(&b->conv_w, a->wscratch),
                            weight_ref_f32(&b->conv_b, vec_slot(u, a, b, 0)), y, err);
        break;
    }
    default:
        rc = error_set(err, "unknown block kind");
    }
    return rc ? error_prefix(err, "unet %s: ", b->name) : 0;
}

/* dx may be NULL only for a transformer whose input does not depend on the context. */
static int block_backward(NnContext *ctx, const Unet *u, UnetArena *a, const UnetBlock *b,
                          const float *x, const float *tape, const float *dy, float *dx,
                          float *dcontext, Error *err) {
    const UnetShape *s = &a->shape;
    int h = unet_dim(s->height, b->scale), w = unet_dim(s->width, b->scale);
    int rc = 0;
    switch (b->kind) {
    case UB_RESNET:
        rc = resnet_block_backward_input(ctx, &b->resnet, s->batch, h, w, x, tape, dy, dx,
                                         a->scratch, a->wscratch, err);
        break;
    case UB_TRANSFORMER:
        rc = unet_transformer_backward_input(ctx, &b->transformer, s->batch, h, w, s->tokens, x,
                                             tape, dy, dx, dcontext, a->scratch, a->wscratch,
                                             a->prof_bwd, err);
        break;
    case UB_DOWNSAMPLE: {
        Conv2dShape cs = conv3(s->batch, b->in_ch, b->out_ch, h, w, 2);
        rc = conv2d_backward_input(ctx, &cs, dy, weight_ref_f32(&b->conv_w, a->wscratch), dx, err);
        break;
    }
    case UB_UPSAMPLE: {
        int oh = unet_dim(s->height, b->out_scale), ow = unet_dim(s->width, b->out_scale);
        Conv2dShape cs = conv3(s->batch, b->in_ch, b->out_ch, oh, ow, 1);
        rc = conv2d_backward_input_typed(ctx, &cs, dy, b->conv_w.data, b->conv_w.dtype, a->wscratch,
                                         a->scratch, err);
        if (rc == 0)
            upsample_nearest_size_backward_input(s->batch * b->in_ch, h, w, oh, ow, a->scratch, dx);
        break;
    }
    case UB_OUT: {
        size_t n = (size_t)s->batch * b->in_ch * h * w;
        float *da = a->scratch, *act = a->scratch + n, *stats = act + n;
        Conv2dShape cs = conv3(s->batch, b->in_ch, b->out_ch, h, w, 1);
        rc = conv2d_backward_input(ctx, &cs, dy, weight_ref_f32(&b->conv_w, a->wscratch), da, err);
        if (rc != 0)
            break;
        /* the norm output is recomputed rather than kept */
        const float *gamma = weight_ref_f32(&b->norm_w, vec_slot(u, a, b, 0));
        group_norm_forward(ctx, s->batch, b->in_ch, h * w, b->groups, b->eps, x, gamma,
                           weight_ref_f32(&b->norm_b, vec_slot(u, a, b, 1)), act, stats);
        silu_backward_input(n, act, da, da);
        group_norm_backward_input(ctx, s->batch, b->in_ch, h * w, b->groups, x, gamma, tape, da,
                                  dx);
        break;
    }
    default:
        /* conv_in: its input is the latent sample, which nothing trains */
        rc = error_set(err, "no input gradient for this block");
    }
    return rc ? error_prefix(err, "unet %s backward: ", b->name) : 0;
}

static int time_embedding(NnContext *ctx, const Unet *u, UnetArena *a, const float *timesteps,
                          Error *err) {
    int batch = a->shape.batch;
    float *sinus = a->time_tmp, *hidden = sinus + (size_t)batch * u->time_in_dim;
    timestep_embedding(batch, u->time_in_dim, timesteps, u->cfg.flip_sin_to_cos,
                       (float)u->cfg.freq_shift, sinus);
    float *vec = a->wscratch + u->time2_w.numel;
    if (u->time1_w.numel > u->time2_w.numel)
        vec = a->wscratch + u->time1_w.numel;
    if (linear_forward_typed(ctx, batch, u->time_in_dim, u->time_dim, sinus, u->time1_w.data,
                             u->time1_w.dtype, weight_ref_f32(&u->time1_b, vec), hidden, err) != 0)
        return error_prefix(err, "unet time_embedding.linear_1: ");
    silu_forward((size_t)batch * u->time_dim, hidden, hidden);
    if (linear_forward_typed(ctx, batch, u->time_dim, u->time_dim, hidden, u->time2_w.data,
                             u->time2_w.dtype, weight_ref_f32(&u->time2_b, vec), a->temb_act,
                             err) != 0)
        return error_prefix(err, "unet time_embedding.linear_2: ");
    /* every resnet applies SiLU before its own projection: done once here */
    silu_forward((size_t)batch * u->time_dim, a->temb_act, a->temb_act);
    return 0;
}

/* dst[b] = concat(first[b] (c1 channels), second[b] (c2 channels)) over the batch. */
static void concat_channels(int batch, size_t c1, size_t c2, size_t plane, const float *first,
                            const float *second, float *dst) {
    for (int n = 0; n < batch; n++) {
        memcpy(dst + (size_t)n * (c1 + c2) * plane, first + (size_t)n * c1 * plane,
               c1 * plane * sizeof *dst);
        memcpy(dst + ((size_t)n * (c1 + c2) + c1) * plane, second + (size_t)n * c2 * plane,
               c2 * plane * sizeof *dst);
    }
}

/* The reverse: first / second may be NULL (that part's gradient is not needed). */
static void split_channels(int batch, size_t c1, size_t c2, size_t plane, const float *src,
                           float *first, float *second) {
    for (int n = 0; n < batch; n++) {
        if (first)
            memcpy(first + (size_t)n * c1 * plane, src + (size_t)n * (c1 + c2) * plane,
                   c1 * plane * sizeof *src);
        if (second)
            memcpy(second + (size_t)n * c2 * plane, src + ((size_t)n * (c1 + c2) + c1) * plane,
                   c2 * plane * sizeof *src);
    }
}

static size_t plane_of(const UnetArena *a, int scale) {
    return (size_t)unet_dim(a->shape.height, scale) * unet_dim(a->shape.width, scale);
}

int unet_forward(NnContext *ctx, const Unet *u, UnetArena *a, const float *sample,
                 const float *timesteps, const float *encoder_hidden_states, float *out,
                 Error *err) {
    const UnetShape *s = &a->shape;
    a->forward_done = false;
    a->context = encoder_hidden_states;
    if (time_embedding(ctx, u, a, timesteps, err) != 0)
        return -1;
    memcpy(a->inputs[0], sample,
           (size_t)s->batch * u->blocks[0].in_ch * plane_of(a, 0) * sizeof(float));
    for (int k = 0; k < u->block_count; k++) {
        const UnetBlock *b = &u->blocks[k];
        const UnetBlock *next = k + 1 < u->block_count ? &u->blocks[k + 1] : NULL;
        float *dst = !next ? out : next->skip_ch ? a->out_tmp : a->inputs[k + 1];
        double t0 = now_seconds();
        if (block_forward(ctx, u, a, b, a->inputs[k], dst, a->tapes[k], err) != 0)
            return -1;
        a->fwd_seconds[kind_bucket(b->kind)] += now_seconds() - t0;
        if (next && next->skip_ch) {
            /* up blocks: the running activation first, then the skip (torch.cat order) */
            concat_channels(s->batch, (size_t)b->out_ch, (size_t)next->skip_ch,
                            plane_of(a, next->scale), a->out_tmp, a->inputs[next->skip_src + 1],
                            a->inputs[k + 1]);
        }
    }
    a->forward_done = true;
    return 0;
}

static bool keeps_tape(UnetBlockKind k) {
    return k == UB_RESNET || k == UB_TRANSFORMER || k == UB_OUT;
}

static int backward_blocks(NnContext *ctx, const Unet *u, UnetArena *a, const float *d_out,
                           float *d_encoder_hidden_states, const UnetBlock *last, Error *err);

int unet_backward_input(NnContext *ctx, const Unet *u, UnetArena *a, const float *d_out,
                        float *d_encoder_hidden_states, Error *err) {
    const UnetShape *s = &a->shape;
    if (a->mode == UNET_INFERENCE)
        return error_set(err, "unet backward: the arena was made for inference only");
    if (!a->forward_done)
        return error_set(err, "unet backward: no forward run to go back through");
    memset(d_encoder_hidden_states, 0,
           (size_t)s->batch * s->tokens * u->cfg.cross_attention_dim * sizeof(float));
    const UnetBlock *last = &u->blocks[u->block_count - 1];
    a->in_backward = true; /* re-runs of checkpointed blocks count as backward time */
    int rc = backward_blocks(ctx, u, a, d_out, d_encoder_hidden_states, last, err);
    a->in_backward = false;
    return rc;
}

static int backward_blocks(NnContext *ctx, const Unet *u, UnetArena *a, const float *d_out,
                           float *d_encoder_hidden_states, const UnetBlock *last, Error *err) {
    const UnetShape *s = &a->shape;
    float *g = a->grad[0], *dx = a->grad[1];
    memcpy(g, d_out, (size_t)s->batch * last->out_ch * plane_of(a, last->out_scale) * sizeof *g);
    /* Blocks before the first transformer are skipped: nothing before the first
     * cross-attention depends on encoder_hidden_states, so no gradient there can reach it.
     * The first transformer itself only walks back its cross-attention key/value path. */
    for (int k = u->block_count - 1; k >= u->first_transformer; k--) {
        const UnetBlock *b = &u->blocks[k];
        size_t out_n = (size_t)s->batch * b->out_ch * plane_of(a, b->out_scale);
        if (b->push_skip && a->dskips[k]) {
            const float *ds = a->dskips[k];
#pragma omp parallel for schedule(static) if (out_n > (1 << 15))
            for (size_t i = 0; i < out_n; i++)
                g[i] += ds[i];
        }
        bool need_dx = k > u->first_transformer;
        double t0 = now_seconds();
        if (a->mode == UNET_TRAIN_CHECKPOINTED && keeps_tape(b->kind) &&
            block_forward(ctx, u, a, b, a->inputs[k], a->out_tmp, a->tapes[k], err) != 0)
            return error_prefix(err, "(re-run) ");
        if (block_backward(ctx, u, a, b, a->inputs[k], a->tapes[k], g, need_dx ? dx : NULL,
                           d_encoder_hidden_states, err) != 0)
            return -1;
        a->bwd_seconds[kind_bucket(b->kind)] += now_seconds() - t0;
        if (!need_dx)
            break;
        if (b->skip_ch) {
            /* the running part goes on; the skip's part waits for its source block */
            split_channels(s->batch, (size_t)(b->in_ch - b->skip_ch), (size_t)b->skip_ch,
                           plane_of(a, b->scale), dx, g, a->dskips[b->skip_src]);
        } else {
            float *t = g;
            g = dx;
            dx = t;
        }
    }
    return 0;
}
