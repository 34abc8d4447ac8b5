/* The UNet's activation arena: every float a forward / backward at one (batch, height,
 * width, tokens) touches, computed from the block list and allocated once, so running out
 * of memory happens here with the byte count, never in the middle of a step. */
#include "models/unet_internal.h"

#include <stdlib.h>
#include <string.h>

#include "base/log.h"

static size_t plane(const UnetShape *s, int scale) {
    return (size_t)unet_dim(s->height, scale) * unet_dim(s->width, scale);
}

static size_t in_floats(const UnetBlock *b, const UnetShape *s) {
    return (size_t)s->batch * b->in_ch * plane(s, b->scale);
}

static size_t out_floats(const UnetBlock *b, const UnetShape *s) {
    return (size_t)s->batch * b->out_ch * plane(s, b->out_scale);
}

size_t unet_block_tape_floats(const UnetBlock *b, const UnetShape *s) {
    int h = unet_dim(s->height, b->scale), w = unet_dim(s->width, b->scale);
    switch (b->kind) {
    case UB_RESNET:
        return resnet_block_tape_floats(&b->resnet, s->batch, h, w);
    case UB_TRANSFORMER:
        return unet_transformer_tape_floats(&b->transformer, s->batch, h, w, s->tokens);
    case UB_OUT:
        return (size_t)s->batch * b->groups * 2;
    default:
        return 0; /* convolutions keep nothing for their input gradient */
    }
}

size_t unet_block_scratch_floats(const UnetBlock *b, const UnetShape *s) {
    int h = unet_dim(s->height, b->scale), w = unet_dim(s->width, b->scale);
    switch (b->kind) {
    case UB_RESNET:
        return resnet_block_scratch_floats(&b->resnet, s->batch, h, w);
    case UB_TRANSFORMER:
        return unet_transformer_scratch_floats(&b->transformer, s->batch, h, w, s->tokens);
    case UB_UPSAMPLE:
        return in_floats(b, s) * 4; /* the upsampled input / its gradient */
    case UB_OUT:
        return 2 * in_floats(b, s) + (size_t)s->batch * b->groups * 2;
    default:
        return 0;
    }
}

/* Whether block k's input must stay in its own slot for the whole pass: always when a
 * backward follows (block inputs are what the backward and the checkpoints re-read), and in
 * inference when it is a skip connection (the output of a block that pushes one). Other
 * inference inputs live in two buffers used in turn. */
static bool input_kept(const Unet *u, int k, UnetMode mode) {
    return mode != UNET_INFERENCE || (k > 0 && u->blocks[k - 1].push_skip);
}

typedef struct Plan {
    size_t inputs, relay, tapes, dskips, scratch, wscratch, time, out_tmp, grad;
} Plan;

static Plan plan_of(const Unet *u, const UnetShape *s, UnetMode mode) {
    Plan p = {0};
    bool train = mode != UNET_INFERENCE;
    size_t max_tape = 0;
    for (int k = 0; k < u->block_count; k++) {
        const UnetBlock *b = &u->blocks[k];
        if (input_kept(u, k, mode))
            p.inputs += in_floats(b, s);
        else if (in_floats(b, s) > p.relay)
            p.relay = in_floats(b, s);
        size_t t = unet_block_tape_floats(b, s);
        if (mode == UNET_TRAIN)
            p.tapes += t;
        if (t > max_tape)
            max_tape = t;
        /* gradients of skips made after the first cross-attention (earlier ones cannot
         * reach the context) */
        if (train && b->push_skip && k >= u->first_transformer)
            p.dskips += out_floats(b, s);
        size_t sc = unet_block_scratch_floats(b, s);
        if (sc > p.scratch)
            p.scratch = sc;
        size_t o = out_floats(b, s);
        if (o > p.out_tmp)
            p.out_tmp = o;
        size_t g = in_floats(b, s) > o ? in_floats(b, s) : o;
        if (train && g > p.grad)
            p.grad = g;
    }
    if (mode != UNET_TRAIN)
        p.tapes = max_tape; /* one region, reused block after block */
    p.wscratch = u->weight_floats;
    p.time = (size_t)s->batch * (2 * (size_t)u->time_dim + u->time_in_dim + 1);
    return p;
}

static size_t plan_total(const Plan *p) {
    return p->inputs + 2 * p->relay + p->tapes + p->dskips + p->scratch + p->wscratch + p->time +
           p->out_tmp + 2 * p->grad;
}

int unet_arena_create(const Unet *u, const UnetShape *shape, UnetMode mode, UnetArena **out,
                      Error *err) {
    *out = NULL;
    /* any size: levels round odd sizes up, upsamplers go back to the skips' sizes */
    if (shape->batch < 1 || shape->tokens < 1 || shape->height < 1 || shape->width < 1)
        return error_set(err,
                         "unet: latent %dx%d (batch %d, %d tokens): batch, tokens, height and "
                         "width must be positive",
                         shape->height, shape->width, shape->batch, shape->tokens);
    Plan p = plan_of(u, shape, mode);
    size_t total = plan_total(&p);
    UnetArena *a = calloc(1, sizeof *a);
    if (!a)
        return error_set(err, "unet: out of memory");
    a->shape = *shape;
    a->mode = mode;
    a->floats = total;
    size_t n = (size_t)u->block_count;
    a->inputs = calloc(n, sizeof *a->inputs);
    a->tapes = calloc(n, sizeof *a->tapes);
    a->dskips = calloc(n, sizeof *a->dskips);
    /* one block, so peak memory is known here; pages are touched as used */
    a->base = malloc(total * sizeof(float));
    if (!a->inputs || !a->tapes || !a->dskips || !a->base) {
        unet_arena_free(a);
        return error_set(err,
                         "unet: cannot allocate the activation arena of %.1f MiB (%zu bytes) for "
                         "batch %d at %dx%d latents: lower the batch size or resolution, or use "
                         "--gradient_checkpointing",
                         total * 4.0 / 1048576.0, total * sizeof(float), shape->batch,
                         shape->height, shape->width);
    }
    float *q = a->base;
    float *relay[2] = {q, q + p.relay};
    q += 2 * p.relay;
    for (size_t k = 0; k < n; k++) {
        if (input_kept(u, (int)k, mode)) {
            a->inputs[k] = q;
            q += in_floats(&u->blocks[k], shape);
        } else {
            /* block k reads relay[k % 2] and writes block k + 1's input, the other one */
            a->inputs[k] = relay[k % 2];
        }
    }
    float *shared_tape = q;
    for (size_t k = 0; k < n; k++) {
        if (mode == UNET_TRAIN) {
            a->tapes[k] = q;
            q += unet_block_tape_floats(&u->blocks[k], shape);
        } else {
            a->tapes[k] = shared_tape;
        }
    }
    if (mode != UNET_TRAIN)
        q += p.tapes;
    if (mode != UNET_INFERENCE)
        for (size_t k = 0; k < n; k++) {
            const UnetBlock *b = &u->blocks[k];
            if (b->push_skip && (int)k >= u->first_transformer) {
                a->dskips[k] = q;
                q += out_floats(b, shape);
            }
        }
    a->scratch = q, q += p.scratch;
    a->wscratch = q, q += p.wscratch;
    a->temb_act = q, q += (size_t)shape->batch * u->time_dim;
    a->time_tmp = q, q += p.time - (size_t)shape->batch * u->time_dim;
    a->out_tmp = q, q += p.out_tmp;
    a->grad[0] = q, q += p.grad;
    a->grad[1] = q, q += p.grad;
    log_info("unet: activation arena %.1f MiB (batch %d, %dx%d latents, %d tokens, %s)",
             total * 4.0 / 1048576.0, shape->batch, shape->height, shape->width, shape->tokens,
             mode == UNET_INFERENCE ? "inference"
             : mode == UNET_TRAIN   ? "training"
                                    : "training, checkpointed");
    *out = a;
    return 0;
}

void unet_arena_free(UnetArena *a) {
    if (!a)
        return;
    free(a->base);
    free(a->inputs);
    free(a->tapes);
    free(a->dskips);
    free(a);
}

size_t unet_arena_bytes(const UnetArena *a) {
    return a->floats * sizeof(float);
}

UnetShape unet_arena_shape(const UnetArena *a) {
    return a->shape;
}

void unet_arena_block_seconds(const UnetArena *a, double forward[4], double backward[4]) {
    memcpy(forward, a->fwd_seconds, sizeof a->fwd_seconds);
    memcpy(backward, a->bwd_seconds, sizeof a->bwd_seconds);
}

void unet_arena_transformer_seconds(const UnetArena *a, double forward[4], double backward[4]) {
    memcpy(forward, a->prof_fwd, sizeof a->prof_fwd);
    memcpy(backward, a->prof_bwd, sizeof a->prof_bwd);
}
