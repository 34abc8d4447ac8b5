/* The VAE's building steps on one sample: convolutions with widened weights, GroupNorm + SiLU,
 * the mid block's single-head attention, and the workspace plan they share. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "models/vae_internal.h"
#include "nn/activation.h"
#include "nn/attention.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "nn/norm.h"

static size_t max_sz(size_t a, size_t b) {
    return a > b ? a : b;
}

size_t vae_plan_total(const VaePlan *p) {
    return p->act[0] + p->act[1] + p->scratch + p->wscratch + p->stats;
}

void vae_work_carve(const VaePlan *p, float *mem, VaeWork *w) {
    w->act[0] = mem;
    w->act[1] = mem + p->act[0];
    w->scratch = w->act[1] + p->act[1];
    w->wscratch = w->scratch + p->scratch;
    w->stats = w->wscratch + p->wscratch;
    w->size[0] = p->act[0];
    w->size[1] = p->act[1];
    w->size[2] = p->scratch;
    w->size[3] = p->wscratch;
    w->size[4] = p->stats;
}

int vae_work_check(const VaeWork *w, const float *p, size_t floats, const char *what, Error *err) {
    const float *base[5] = {w->act[0], w->act[1], w->scratch, w->wscratch, w->stats};
    for (int i = 0; i < 5; i++) {
        if (p >= base[i] && p < base[i] + w->size[i]) {
            size_t off = (size_t)(p - base[i]);
            if (floats > w->size[i] - off)
                return error_set(err,
                                 "%s: needs %zu floats at offset %zu of a %zu-float "
                                 "workspace region (workspace plan out of step: a bug)",
                                 what, floats, off, w->size[i]);
            return 0;
        }
    }
    return 0;
}

void vae_plan_write(VaePlan *p, size_t floats) {
    p->cur = 1 - p->cur;
    p->act[p->cur] = max_sz(p->act[p->cur], floats);
}

void vae_plan_step(VaePlan *p, size_t in_floats, size_t out_floats) {
    p->act[p->cur] = max_sz(p->act[p->cur], in_floats);
    vae_plan_write(p, out_floats);
}

void vae_plan_resnet(VaePlan *p, const ResnetBlock *rb, int h, int w) {
    size_t px = (size_t)h * w;
    vae_plan_step(p, px * (size_t)rb->in_ch, px * (size_t)rb->out_ch);
    p->scratch = max_sz(p->scratch, resnet_block_forward_scratch_floats(rb, 1, h, w));
    p->wscratch = max_sz(p->wscratch, resnet_block_weight_floats(rb));
}

/* Attention scratch: the normed input [C, N], its transpose [N, C], q, k, v [N, C] (the
 * attention output and the projection reuse the first two), lse [N]. */
static size_t attention_scratch_floats(int ch, size_t n) {
    return 5 * n * (size_t)ch + n;
}

void vae_plan_mid(VaePlan *p, const VaeMidBlock *mid, int h, int w) {
    int ch = mid->attn.channels;
    size_t n = (size_t)h * w;
    vae_plan_resnet(p, &mid->resnet0, h, w);
    vae_plan_step(p, n * ch, n * ch);
    p->scratch = max_sz(p->scratch, attention_scratch_floats(ch, n));
    p->wscratch = max_sz(p->wscratch, (size_t)ch * ch + 2 * (size_t)ch);
    p->stats = max_sz(p->stats, 2 * (size_t)mid->attn.groups);
    vae_plan_resnet(p, &mid->resnet1, h, w);
}

/* out_h == 0: the output goes to the caller's memory, not a buffer. */
void vae_plan_conv(VaePlan *p, const VaeConv *c, int in_h, int in_w, int out_h, int out_w) {
    size_t in = (size_t)c->in_ch * in_h * in_w, out = (size_t)c->out_ch * out_h * out_w;
    if (out_h > 0)
        vae_plan_step(p, in, out);
    else
        p->act[p->cur] = max_sz(p->act[p->cur], in);
    p->wscratch = max_sz(p->wscratch, c->w.numel + c->b.numel);
}

int vae_conv_forward(NnContext *ctx, const VaeConv *c, int stride, int h, int w, const float *x,
                     float *y, const VaeWork *work, Error *err) {
    int k = c->kernel, pad = k / 2;
    Conv2dShape s = {1, c->in_ch, c->out_ch, h, w, k, k, stride, pad, pad, pad, pad};
    if (stride == 2) {
        /* diffusers' Downsample2D with padding 0 pads right and bottom by one instead */
        s.pad_top = s.pad_left = 0;
        s.pad_bottom = s.pad_right = 1;
    }
    size_t out = (size_t)c->out_ch * conv2d_out_h(&s) * conv2d_out_w(&s);
    if (vae_work_check(work, y, out, "conv output", err) != 0 ||
        vae_work_check(work, work->wscratch, c->w.numel + c->b.numel, "conv weights", err) != 0)
        return -1;
    const float *wf = weight_ref_f32(&c->w, work->wscratch);
    const float *bf = weight_ref_f32(&c->b, work->wscratch + c->w.numel);
    return conv2d_forward(ctx, &s, x, wf, bf, y, err);
}

/* Nearest 2x upsampling followed by a 3x3 "same" convolution, as one 2x2 convolution on the
 * low-resolution input: output row 2i + a sees input rows i - 1 + a and i + a only, with the
 * 3x3 kernel's rows summed onto those two (a = 0: w0 | w1 + w2; a = 1: w0 + w1 | w2), and
 * likewise for columns. The four phases (a, b) become four groups of output channels of one
 * convolution with padding 1 and a (h + 1) x (w + 1) output, interleaved afterwards:
 *   y[c, 2i + a, 2j + b] = z[(2a + b) * C + c, i + a, j + b]
 * 16 instead of 36 multiply-adds per output pixel and channel pair, and no upsampled copy. */
static void phase_weights(int co, int ci, const float *w3, float *w2) {
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++)
            for (int o = 0; o < co; o++)
                for (int i = 0; i < ci; i++) {
                    const float *k = w3 + ((size_t)o * ci + i) * 9;
                    float rows[2][3];
                    for (int c = 0; c < 3; c++) {
                        rows[0][c] = a == 0 ? k[c] : k[c] + k[3 + c];
                        rows[1][c] = a == 0 ? k[3 + c] + k[6 + c] : k[6 + c];
                    }
                    float *d = w2 + (((size_t)(2 * a + b) * co + o) * ci + i) * 4;
                    for (int r = 0; r < 2; r++) {
                        d[2 * r] = b == 0 ? rows[r][0] : rows[r][0] + rows[r][1];
                        d[2 * r + 1] = b == 0 ? rows[r][1] + rows[r][2] : rows[r][2];
                    }
                }
}

size_t vae_upsample_conv_scratch_floats(const VaeConv *c, int h, int w) {
    return 4 * (size_t)c->out_ch * (h + 1) * (w + 1);
}

size_t vae_upsample_conv_weight_floats(const VaeConv *c) {
    return c->w.numel + 16 * (size_t)c->out_ch * c->in_ch + 4 * (size_t)c->out_ch;
}

int vae_upsample_conv_forward(NnContext *ctx, const VaeConv *c, int h, int w, const float *x,
                              float *y, const VaeWork *work, Error *err) {
    int co = c->out_ch, ci = c->in_ch;
    if (vae_work_check(work, y, (size_t)co * 4 * h * w, "upsample output", err) != 0 ||
        vae_work_check(work, work->scratch, vae_upsample_conv_scratch_floats(c, h, w),
                       "upsample phases", err) != 0 ||
        vae_work_check(work, work->wscratch, vae_upsample_conv_weight_floats(c), "upsample weights",
                       err) != 0)
        return -1;
    const float *w3 = weight_ref_f32(&c->w, work->wscratch);
    float *w2 = work->wscratch + c->w.numel, *b4 = w2 + 16 * (size_t)co * ci;
    phase_weights(co, ci, w3, w2);
    const float *bias = weight_ref_f32(&c->b, b4); /* widened (or pointed at), then repeated */
    for (int p = 3; p >= 0; p--)
        memmove(b4 + (size_t)p * co, bias, (size_t)co * sizeof *b4);
    Conv2dShape s = {1, ci, 4 * co, h, w, 2, 2, 1, 1, 1, 1, 1};
    float *z = work->scratch;
    if (conv2d_forward(ctx, &s, x, w2, b4, z, err) != 0)
        return -1;
    size_t zh = (size_t)h + 1, zw = (size_t)w + 1, W2 = 2 * (size_t)w;
#pragma omp parallel for schedule(static)
    for (int o = 0; o < co; o++)
        for (int a = 0; a < 2; a++)
            for (int i = 0; i < h; i++) {
                float *dst = y + ((size_t)o * 2 * h + 2 * (size_t)i + a) * W2;
                const float *z0 = z + (((size_t)(2 * a) * co + o) * zh + i + a) * zw;
                const float *z1 = z + (((size_t)(2 * a + 1) * co + o) * zh + i + a) * zw;
                for (int j = 0; j < w; j++) {
                    dst[2 * j] = z0[j];
                    dst[2 * j + 1] = z1[j + 1];
                }
            }
    return 0;
}

int vae_norm_silu(NnContext *ctx, const VaeConfig *cfg, const WeightRef *gamma,
                  const WeightRef *beta, int ch, int h, int w, const float *x, float *y,
                  const VaeWork *work, Error *err) {
    size_t n = (size_t)ch * h * w;
    if (vae_work_check(work, y, n, "norm output", err) != 0 ||
        vae_work_check(work, work->stats, 2 * (size_t)cfg->norm_num_groups, "norm stats", err) != 0)
        return -1;
    group_norm_forward(ctx, 1, ch, h * w, cfg->norm_num_groups, cfg->norm_eps, x,
                       weight_ref_f32(gamma, work->wscratch),
                       weight_ref_f32(beta, work->wscratch + ch), y, work->stats);
    silu_forward(n, y, y);
    return 0;
}

int vae_resnet_forward(NnContext *ctx, const ResnetBlock *rb, int h, int w, VaeWork *work, int *cur,
                       Error *err) {
    const float *x = work->act[*cur];
    float *y = work->act[1 - *cur];
    size_t px = (size_t)h * w;
    if (vae_work_check(work, x, px * rb->in_ch, "resnet input", err) != 0 ||
        vae_work_check(work, y, px * rb->out_ch, "resnet output", err) != 0 ||
        vae_work_check(work, work->scratch, resnet_block_forward_scratch_floats(rb, 1, h, w),
                       "resnet scratch", err) != 0 ||
        vae_work_check(work, work->wscratch, resnet_block_weight_floats(rb), "resnet weights",
                       err) != 0)
        return -1;
    if (resnet_block_forward(ctx, rb, 1, h, w, x, NULL, y, NULL, work->scratch, work->wscratch,
                             err) != 0)
        return -1;
    *cur = 1 - *cur;
    return 0;
}

static int linear_w(NnContext *ctx, int rows, int ch, const float *x, const WeightRef *w,
                    const WeightRef *b, float *y, const VaeWork *work, Error *err) {
    const float *wf = weight_ref_f32(w, work->wscratch);
    const float *bf = weight_ref_f32(b, work->wscratch + w->numel);
    return linear_forward(ctx, rows, ch, ch, x, wf, bf, y, err);
}

/* x [C, N] -> y [N, C] */
static void transpose(int rows, int cols, const float *x, float *y) {
    enum { T = 32 };
    for (int r0 = 0; r0 < rows; r0 += T)
        for (int c0 = 0; c0 < cols; c0 += T)
            for (int r = r0; r < r0 + T && r < rows; r++)
                for (int c = c0; c < c0 + T && c < cols; c++)
                    y[(size_t)c * rows + r] = x[(size_t)r * cols + c];
}

/* y = x + to_out(attention(to_q(n), to_k(n), to_v(n))) with n = group_norm(x) over tokens. */
static int attention_forward_sample(NnContext *ctx, const VaeAttention *a, int h, int w,
                                    const float *x, float *y, const VaeWork *work, Error *err) {
    int ch = a->channels, n = h * w;
    size_t cn = (size_t)ch * n;
    float *normed = work->scratch, *xt = normed + cn, *q = xt + cn, *k = q + cn, *v = k + cn;
    float *lse = v + cn;
    if (vae_work_check(work, y, cn, "attention output", err) != 0 ||
        vae_work_check(work, work->scratch, attention_scratch_floats(ch, (size_t)n),
                       "attention scratch", err) != 0 ||
        vae_work_check(work, work->wscratch, (size_t)ch * ch + ch, "attention weights", err) != 0 ||
        vae_work_check(work, work->stats, 2 * (size_t)a->groups, "attention stats", err) != 0)
        return -1;
    group_norm_forward(ctx, 1, ch, n, a->groups, a->eps, x,
                       weight_ref_f32(&a->norm_w, work->wscratch),
                       weight_ref_f32(&a->norm_b, work->wscratch + ch), normed, work->stats);
    transpose(ch, n, normed, xt);
    if (linear_w(ctx, n, ch, xt, &a->q_w, &a->q_b, q, work, err) != 0 ||
        linear_w(ctx, n, ch, xt, &a->k_w, &a->k_b, k, work, err) != 0 ||
        linear_w(ctx, n, ch, xt, &a->v_w, &a->v_b, v, work, err) != 0)
        return error_prefix(err, "VAE attention projection: ");
    AttentionShape s = {1, 1, n, n, ch, 1.0f / sqrtf((float)ch), 0};
    float *o = normed;
    if (attention_forward(ctx, &s, q, k, v, o, lse, err) != 0)
        return error_prefix(err, "VAE attention: ");
    float *proj = xt;
    if (linear_w(ctx, n, ch, o, &a->out_w, &a->out_b, proj, work, err) != 0)
        return error_prefix(err, "VAE attention to_out: ");
    transpose(n, ch, proj, y);
    for (size_t i = 0; i < cn; i++)
        y[i] += x[i];
    return 0;
}

int vae_mid_block_forward(NnContext *ctx, const VaeMidBlock *mid, int h, int w, VaeWork *work,
                          int *cur, Error *err) {
    if (vae_resnet_forward(ctx, &mid->resnet0, h, w, work, cur, err) != 0)
        return error_prefix(err, "mid_block.resnets.0: ");
    if (attention_forward_sample(ctx, &mid->attn, h, w, work->act[*cur], work->act[1 - *cur], work,
                                 err) != 0)
        return error_prefix(err, "mid_block.attentions.0: ");
    *cur = 1 - *cur;
    if (vae_resnet_forward(ctx, &mid->resnet1, h, w, work, cur, err) != 0)
        return error_prefix(err, "mid_block.resnets.1: ");
    return 0;
}

int vae_conv_bind(VaeConv *c, const TensorSet *set, WeightPool *pool, const char *prefix, int in_ch,
                  int out_ch, int kernel, Error *err) {
    c->in_ch = in_ch;
    c->out_ch = out_ch;
    c->kernel = kernel;
    if (weight_ref_bindf(&c->w, set, pool, 0, err, 4, out_ch, in_ch, kernel, kernel, "%s.weight",
                         prefix) != 0)
        return -1;
    return weight_ref_bindf(&c->b, set, pool, 0, err, 1, out_ch, 0, 0, 0, "%s.bias", prefix);
}

int vae_conv_random(VaeConv *c, WeightPool *pool, int in_ch, int out_ch, int kernel, uint64_t seed,
                    Error *err) {
    c->in_ch = in_ch;
    c->out_ch = out_ch;
    c->kernel = kernel;
    size_t fan_in = (size_t)in_ch * kernel * kernel;
    float bound = 1.0f / sqrtf((float)fan_in); /* torch's default Conv2d init bound */
    if (weight_ref_random(&c->w, fan_in * out_ch, bound, seed, pool, err) != 0)
        return -1;
    return weight_ref_random(&c->b, out_ch, bound, seed + 1, pool, err);
}

static int attention_bind(VaeAttention *a, const TensorSet *set, WeightPool *pool,
                          const char *prefix, int ch, Error *err) {
    struct {
        WeightRef *w, *b;
        const char *name;
    } lin[] = {{&a->q_w, &a->q_b, "to_q"},
               {&a->k_w, &a->k_b, "to_k"},
               {&a->v_w, &a->v_b, "to_v"},
               {&a->out_w, &a->out_b, "to_out.0"}};
    if (weight_ref_bindf(&a->norm_w, set, pool, 0, err, 1, ch, 0, 0, 0, "%s.group_norm.weight",
                         prefix) != 0 ||
        weight_ref_bindf(&a->norm_b, set, pool, 0, err, 1, ch, 0, 0, 0, "%s.group_norm.bias",
                         prefix) != 0)
        return -1;
    for (int i = 0; i < 4; i++) {
        if (weight_ref_bindf(lin[i].w, set, pool, 0, err, 2, ch, ch, 0, 0, "%s.%s.weight", prefix,
                             lin[i].name) != 0 ||
            weight_ref_bindf(lin[i].b, set, pool, 0, err, 1, ch, 0, 0, 0, "%s.%s.bias", prefix,
                             lin[i].name) != 0)
            return -1;
    }
    return 0;
}

int vae_mid_bind(VaeMidBlock *mid, const TensorSet *set, WeightPool *pool, const char *prefix,
                 const VaeConfig *cfg, Error *err) {
    int ch = cfg->block_out_channels[cfg->num_levels - 1];
    char name[160];
    snprintf(name, sizeof name, "%s.resnets.0", prefix);
    if (resnet_block_bind(&mid->resnet0, set, name, ch, ch, 0, cfg->norm_num_groups, cfg->norm_eps,
                          pool, err) != 0)
        return -1;
    snprintf(name, sizeof name, "%s.resnets.1", prefix);
    if (resnet_block_bind(&mid->resnet1, set, name, ch, ch, 0, cfg->norm_num_groups, cfg->norm_eps,
                          pool, err) != 0)
        return -1;
    mid->attn.channels = ch;
    mid->attn.groups = cfg->norm_num_groups;
    mid->attn.eps = cfg->norm_eps;
    snprintf(name, sizeof name, "%s.attentions.0", prefix);
    return attention_bind(&mid->attn, set, pool, name, ch, err);
}

int vae_mid_random(VaeMidBlock *mid, WeightPool *pool, const VaeConfig *cfg, int ch, uint64_t seed,
                   Error *err) {
    int g = cfg->norm_num_groups;
    if (resnet_block_random(&mid->resnet0, ch, ch, 0, g, cfg->norm_eps, seed, pool, err) != 0 ||
        resnet_block_random(&mid->resnet1, ch, ch, 0, g, cfg->norm_eps, seed + 16, pool, err) != 0)
        return -1;
    VaeAttention *a = &mid->attn;
    a->channels = ch;
    a->groups = g;
    a->eps = cfg->norm_eps;
    float bound = 1.0f / sqrtf((float)ch);
    WeightRef *ws[] = {&a->q_w, &a->k_w, &a->v_w, &a->out_w};
    WeightRef *bs[] = {&a->q_b, &a->k_b, &a->v_b, &a->out_b};
    if (weight_ref_fill(&a->norm_w, ch, 1.0f, pool, err) != 0 ||
        weight_ref_fill(&a->norm_b, ch, 0.0f, pool, err) != 0)
        return -1;
    for (int i = 0; i < 4; i++)
        if (weight_ref_random(ws[i], (size_t)ch * ch, bound, seed + 32 + 2 * i, pool, err) != 0 ||
            weight_ref_random(bs[i], ch, bound, seed + 33 + 2 * i, pool, err) != 0)
            return -1;
    return 0;
}
