/* ResnetBlock2D forward and input gradient: see resnet_block.h. */
#include "models/resnet_block.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nn/activation.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "nn/norm.h"

/* Element-wise passes this small are not worth waking the thread pool for. */
#define PARALLEL_MIN (1 << 15)

static void add_into(size_t n, float *y, const float *a) {
#pragma omp parallel for schedule(static) if (n > PARALLEL_MIN)
    for (size_t i = 0; i < n; i++)
        y[i] += a[i];
}

static size_t max_ch(const ResnetBlock *rb) {
    return (size_t)(rb->in_ch > rb->out_ch ? rb->in_ch : rb->out_ch);
}

int resnet_block_bind(ResnetBlock *rb, const TensorSet *set, const char *prefix, int in_ch,
                      int out_ch, int temb_dim, int groups, float eps, WeightPool *pool,
                      Error *err) {
    memset(rb, 0, sizeof *rb);
    rb->in_ch = in_ch;
    rb->out_ch = out_ch;
    rb->temb_dim = temb_dim;
    rb->groups = groups;
    rb->eps = eps;
    const char *p = prefix;
    int rc =
        weight_ref_bindf(&rb->norm1_w, set, pool, 0, err, 1, in_ch, 0, 0, 0, "%s.norm1.weight", p);
    rc = rc ? rc
            : weight_ref_bindf(&rb->norm1_b, set, pool, 0, err, 1, in_ch, 0, 0, 0, "%s.norm1.bias",
                               p);
    rc = rc ? rc
            : weight_ref_bindf(&rb->conv1_w, set, pool, 0, err, 4, out_ch, in_ch, 3, 3,
                               "%s.conv1.weight", p);
    rc = rc ? rc
            : weight_ref_bindf(&rb->conv1_b, set, pool, 0, err, 1, out_ch, 0, 0, 0, "%s.conv1.bias",
                               p);
    if (temb_dim > 0) {
        rc = rc ? rc
                : weight_ref_bindf(&rb->time_w, set, pool, 0, err, 2, out_ch, temb_dim, 0, 0,
                                   "%s.time_emb_proj.weight", p);
        rc = rc ? rc
                : weight_ref_bindf(&rb->time_b, set, pool, 0, err, 1, out_ch, 0, 0, 0,
                                   "%s.time_emb_proj.bias", p);
    }
    rc = rc ? rc
            : weight_ref_bindf(&rb->norm2_w, set, pool, 0, err, 1, out_ch, 0, 0, 0,
                               "%s.norm2.weight", p);
    rc = rc ? rc
            : weight_ref_bindf(&rb->norm2_b, set, pool, 0, err, 1, out_ch, 0, 0, 0, "%s.norm2.bias",
                               p);
    rc = rc ? rc
            : weight_ref_bindf(&rb->conv2_w, set, pool, 0, err, 4, out_ch, out_ch, 3, 3,
                               "%s.conv2.weight", p);
    rc = rc ? rc
            : weight_ref_bindf(&rb->conv2_b, set, pool, 0, err, 1, out_ch, 0, 0, 0, "%s.conv2.bias",
                               p);
    if (in_ch != out_ch) {
        rc = rc ? rc
                : weight_ref_bindf(&rb->shortcut_w, set, pool, 0, err, 4, out_ch, in_ch, 1, 1,
                                   "%s.conv_shortcut.weight", p);
        rc = rc ? rc
                : weight_ref_bindf(&rb->shortcut_b, set, pool, 0, err, 1, out_ch, 0, 0, 0,
                                   "%s.conv_shortcut.bias", p);
    }
    return rc;
}

int resnet_block_random(ResnetBlock *rb, int in_ch, int out_ch, int temb_dim, int groups, float eps,
                        unsigned long long seed, WeightPool *pool, Error *err) {
    memset(rb, 0, sizeof *rb);
    rb->in_ch = in_ch;
    rb->out_ch = out_ch;
    rb->temb_dim = temb_dim;
    rb->groups = groups;
    rb->eps = eps;
    /* bounds as torch's default init: 1/sqrt(fan_in) */
    float b1 = 1.0f / sqrtf(in_ch * 9.0f), b2 = 1.0f / sqrtf(out_ch * 9.0f);
    int rc = weight_ref_fill(&rb->norm1_w, in_ch, 1.0f, pool, err);
    rc = rc ? rc : weight_ref_fill(&rb->norm1_b, in_ch, 0.0f, pool, err);
    rc = rc ? rc
            : weight_ref_random(&rb->conv1_w, (size_t)out_ch * in_ch * 9, b1, seed + 1, pool, err);
    rc = rc ? rc : weight_ref_random(&rb->conv1_b, out_ch, b1, seed + 2, pool, err);
    if (temb_dim > 0) {
        float bt = 1.0f / sqrtf((float)temb_dim);
        rc =
            rc ? rc
               : weight_ref_random(&rb->time_w, (size_t)out_ch * temb_dim, bt, seed + 3, pool, err);
        rc = rc ? rc : weight_ref_random(&rb->time_b, out_ch, bt, seed + 4, pool, err);
    }
    rc = rc ? rc : weight_ref_fill(&rb->norm2_w, out_ch, 1.0f, pool, err);
    rc = rc ? rc : weight_ref_fill(&rb->norm2_b, out_ch, 0.0f, pool, err);
    rc = rc ? rc
            : weight_ref_random(&rb->conv2_w, (size_t)out_ch * out_ch * 9, b2, seed + 5, pool, err);
    rc = rc ? rc : weight_ref_random(&rb->conv2_b, out_ch, b2, seed + 6, pool, err);
    if (in_ch != out_ch) {
        float bs = 1.0f / sqrtf((float)in_ch);
        rc = rc ? rc
                : weight_ref_random(&rb->shortcut_w, (size_t)out_ch * in_ch, bs, seed + 7, pool,
                                    err);
        rc = rc ? rc : weight_ref_random(&rb->shortcut_b, out_ch, bs, seed + 8, pool, err);
    }
    return rc;
}

size_t resnet_block_tape_floats(const ResnetBlock *rb, int batch, int h, int w) {
    /* stats1, stats2, the pre-norm2 activation */
    return (size_t)batch * rb->groups * 4 + (size_t)batch * rb->out_ch * h * w;
}

size_t resnet_block_scratch_floats(const ResnetBlock *rb, int batch, int h, int w) {
    size_t px = (size_t)batch * h * w;
    /* two work tensors of the wider side, the pre-norm2 activation when there is no tape,
     * the projected time embedding and recomputed statistics */
    return 2 * px * max_ch(rb) + px * rb->out_ch + (size_t)batch * rb->out_ch +
           (size_t)batch * rb->groups * 2;
}

size_t resnet_block_forward_scratch_floats(const ResnetBlock *rb, int batch, int h, int w) {
    /* one work tensor, the projected time embedding, statistics */
    return (size_t)batch * h * w * max_ch(rb) + (size_t)batch * rb->out_ch +
           (size_t)batch * rb->groups * 2;
}

size_t resnet_block_weight_floats(const ResnetBlock *rb) {
    size_t m = rb->conv1_w.numel;
    if (rb->conv2_w.numel > m)
        m = rb->conv2_w.numel;
    if (rb->shortcut_w.numel > m)
        m = rb->shortcut_w.numel;
    if (rb->time_w.numel > m)
        m = rb->time_w.numel;
    /* + two vectors (gamma and beta, or a bias) */
    return m + 2 * max_ch(rb);
}

/* Widening slots inside wscratch: the big weight first, then two vectors. */
typedef struct Slots {
    float *w, *v1, *v2;
} Slots;

static Slots slots_of(const ResnetBlock *rb, float *wscratch) {
    size_t vec = max_ch(rb);
    size_t big = resnet_block_weight_floats(rb) - 2 * vec;
    Slots s = {wscratch, wscratch + big, wscratch + big + vec};
    return s;
}

static Conv2dShape conv_shape(int batch, int in_ch, int out_ch, int h, int w, int k) {
    Conv2dShape s = {batch, in_ch, out_ch, h, w, k, k, 1, k / 2, k / 2, k / 2, k / 2};
    return s;
}

/* y = silu(group_norm(x)) */
static void norm_silu(NnContext *ctx, const ResnetBlock *rb, int batch, int ch, size_t hw,
                      const WeightRef *g, const WeightRef *b, const float *x, float *y,
                      float *stats, Slots sl) {
    group_norm_forward(ctx, batch, ch, (int)hw, rb->groups, rb->eps, x, weight_ref_f32(g, sl.v1),
                       weight_ref_f32(b, sl.v2), y, stats);
    silu_forward((size_t)batch * ch * hw, y, y);
}

int resnet_block_forward(NnContext *ctx, const ResnetBlock *rb, int batch, int h, int w,
                         const float *x, const float *temb_act, float *y, float *tape,
                         float *scratch, float *wscratch, Error *err) {
    size_t hw = (size_t)h * w, px = (size_t)batch * hw;
    size_t n_out = px * rb->out_ch;
    Slots sl = slots_of(rb, wscratch);
    float *a = scratch;
    /* Without a tape the pre-norm2 activation is dead once norm2 has read it, so it lives in
     * y until conv2 overwrites it: forward-only use needs one work tensor, not two. */
    float *hmid = y;
    float *tproj = scratch + px * max_ch(rb);
    float *stats1 = tproj + (size_t)batch * rb->out_ch, *stats2 = stats1;
    if (tape) {
        stats1 = tape;
        stats2 = tape + (size_t)batch * rb->groups * 2;
        hmid = stats2 + (size_t)batch * rb->groups * 2;
    }

    norm_silu(ctx, rb, batch, rb->in_ch, hw, &rb->norm1_w, &rb->norm1_b, x, a, stats1, sl);
    Conv2dShape c1 = conv_shape(batch, rb->in_ch, rb->out_ch, h, w, 3);
    if (conv2d_forward_typed(ctx, &c1, a, rb->conv1_w.data, rb->conv1_w.dtype, sl.w,
                             weight_ref_f32(&rb->conv1_b, sl.v1), hmid, err) != 0)
        return error_prefix(err, "resnet conv1: ");
    if (rb->temb_dim > 0) {
        if (linear_forward_typed(ctx, batch, rb->temb_dim, rb->out_ch, temb_act, rb->time_w.data,
                                 rb->time_w.dtype, weight_ref_f32(&rb->time_b, sl.v1), tproj,
                                 err) != 0)
            return error_prefix(err, "resnet time_emb_proj: ");
        long planes = (long)batch * rb->out_ch;
#pragma omp parallel for schedule(static) if (n_out > PARALLEL_MIN)
        for (long bc = 0; bc < planes; bc++) {
            float t = tproj[bc];
            float *p = hmid + bc * hw;
            for (size_t i = 0; i < hw; i++)
                p[i] += t;
        }
    }
    norm_silu(ctx, rb, batch, rb->out_ch, hw, &rb->norm2_w, &rb->norm2_b, hmid, a, stats2, sl);
    Conv2dShape c2 = conv_shape(batch, rb->out_ch, rb->out_ch, h, w, 3);
    if (conv2d_forward_typed(ctx, &c2, a, rb->conv2_w.data, rb->conv2_w.dtype, sl.w,
                             weight_ref_f32(&rb->conv2_b, sl.v1), y, err) != 0)
        return error_prefix(err, "resnet conv2: ");
    const float *shortcut = x;
    if (rb->shortcut_w.data) {
        Conv2dShape cs = conv_shape(batch, rb->in_ch, rb->out_ch, h, w, 1);
        if (conv2d_forward(ctx, &cs, x, weight_ref_f32(&rb->shortcut_w, sl.w),
                           weight_ref_f32(&rb->shortcut_b, sl.v1), a, err) != 0)
            return error_prefix(err, "resnet conv_shortcut: ");
        shortcut = a;
    }
    add_into(n_out, y, shortcut);
    return 0;
}

int resnet_block_backward_input(NnContext *ctx, const ResnetBlock *rb, int batch, int h, int w,
                                const float *x, const float *tape, const float *dy, float *dx,
                                float *scratch, float *wscratch, Error *err) {
    size_t hw = (size_t)h * w, px = (size_t)batch * hw;
    size_t n_in = px * rb->in_ch, n_out = px * rb->out_ch;
    Slots sl = slots_of(rb, wscratch);
    float *a = scratch, *b = scratch + px * max_ch(rb);
    float *stats_tmp = b + px * max_ch(rb) + n_out + (size_t)batch * rb->out_ch;
    const float *stats1 = tape, *stats2 = tape + (size_t)batch * rb->groups * 2;
    const float *hmid = stats2 + (size_t)batch * rb->groups * 2;

    /* the shortcut path */
    if (rb->shortcut_w.data) {
        Conv2dShape cs = conv_shape(batch, rb->in_ch, rb->out_ch, h, w, 1);
        if (conv2d_backward_input(ctx, &cs, dy, weight_ref_f32(&rb->shortcut_w, sl.w), dx, err) !=
            0)
            return error_prefix(err, "resnet conv_shortcut backward: ");
    } else {
        memcpy(dx, dy, n_in * sizeof *dx);
    }
    /* conv2 <- silu <- norm2 (the norm output is recomputed from hmid, not kept) */
    Conv2dShape c2 = conv_shape(batch, rb->out_ch, rb->out_ch, h, w, 3);
    if (conv2d_backward_input_typed(ctx, &c2, dy, rb->conv2_w.data, rb->conv2_w.dtype, sl.w, a,
                                    err) != 0)
        return error_prefix(err, "resnet conv2 backward: ");
    group_norm_forward(ctx, batch, rb->out_ch, (int)hw, rb->groups, rb->eps, hmid,
                       weight_ref_f32(&rb->norm2_w, sl.v1), weight_ref_f32(&rb->norm2_b, sl.v2), b,
                       stats_tmp);
    silu_backward_input(n_out, b, a, a);
    group_norm_backward_input(ctx, batch, rb->out_ch, (int)hw, rb->groups, hmid,
                              weight_ref_f32(&rb->norm2_w, sl.v1), stats2, a, b);
    /* the time embedding is a per-channel constant: no gradient is asked of it */
    Conv2dShape c1 = conv_shape(batch, rb->in_ch, rb->out_ch, h, w, 3);
    if (conv2d_backward_input_typed(ctx, &c1, b, rb->conv1_w.data, rb->conv1_w.dtype, sl.w, a,
                                    err) != 0)
        return error_prefix(err, "resnet conv1 backward: ");
    group_norm_forward(ctx, batch, rb->in_ch, (int)hw, rb->groups, rb->eps, x,
                       weight_ref_f32(&rb->norm1_w, sl.v1), weight_ref_f32(&rb->norm1_b, sl.v2), b,
                       stats_tmp);
    silu_backward_input(n_in, b, a, a);
    group_norm_backward_input(ctx, batch, rb->in_ch, (int)hw, rb->groups, x,
                              weight_ref_f32(&rb->norm1_w, sl.v1), stats1, a, b);
    add_into(n_in, dx, b);
    return 0;
}
