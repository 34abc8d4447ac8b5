/* The UNet's Transformer2DModel, forward and input gradient: see unet_transformer.h. */
#define _POSIX_C_SOURCE 200809L
#include "models/unet_transformer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn/activation.h"
#include "nn/attention.h"
#include "nn/linear.h"
#include "nn/norm.h"

/* ---- weights ------------------------------------------------------------------------------ */

static int bind_attention(UnetAttention *a, const TensorSet *set, const char *p, int c, int kv_in,
                          WeightPool *pool, Error *err) {
    int rc = weight_ref_bindf(&a->to_q, set, pool, 0, err, 2, c, c, 0, 0, "%s.to_q.weight", p);
    rc = rc ? rc
            : weight_ref_bindf(&a->to_k, set, pool, 0, err, 2, c, kv_in, 0, 0, "%s.to_k.weight", p);
    rc = rc ? rc
            : weight_ref_bindf(&a->to_v, set, pool, 0, err, 2, c, kv_in, 0, 0, "%s.to_v.weight", p);
    rc = rc ? rc
            : weight_ref_bindf(&a->to_out_w, set, pool, 0, err, 2, c, c, 0, 0, "%s.to_out.0.weight",
                               p);
    rc = rc ? rc
            : weight_ref_bindf(&a->to_out_b, set, pool, 0, err, 1, c, 0, 0, 0, "%s.to_out.0.bias",
                               p);
    return rc;
}

static void init_shape(UnetTransformer *tf, int channels, int heads, int depth, int context_dim,
                       int groups, float gn_eps, float ln_eps) {
    memset(tf, 0, sizeof *tf);
    tf->channels = channels;
    tf->heads = heads;
    tf->depth = depth;
    tf->context_dim = context_dim;
    tf->ff_dim = 4 * channels; /* diffusers FeedForward mult 4 */
    tf->groups = groups;
    tf->group_norm_eps = gn_eps;
    tf->layer_norm_eps = ln_eps;
}

int unet_transformer_bind(UnetTransformer *tf, const TensorSet *set, const char *prefix,
                          int channels, int heads, int depth, int context_dim, int groups,
                          float group_norm_eps, float layer_norm_eps, WeightPool *pool,
                          Error *err) {
    init_shape(tf, channels, heads, depth, context_dim, groups, group_norm_eps, layer_norm_eps);
    int c = channels;
    const char *p = prefix;
    /* ff_dim from the weights rather than assumed */
    char name[256];
    snprintf(name, sizeof name, "%s.transformer_blocks.0.ff.net.2.weight", p);
    const NamedTensor *ff = tensor_set_find(set, name);
    if (ff && ff->ndim == 2)
        tf->ff_dim = (int)ff->shape[1];
    tf->blocks = calloc((size_t)depth, sizeof *tf->blocks);
    if (!tf->blocks)
        return error_set(err, "%s: out of memory", p);
    int rc = weight_ref_bindf(&tf->norm_w, set, pool, 0, err, 1, c, 0, 0, 0, "%s.norm.weight", p);
    rc = rc ? rc
            : weight_ref_bindf(&tf->norm_b, set, pool, 0, err, 1, c, 0, 0, 0, "%s.norm.bias", p);
    rc = rc ? rc
            : weight_ref_bindf(&tf->proj_in_w, set, pool, 0, err, 2, c, c, 0, 0,
                               "%s.proj_in.weight", p);
    rc = rc ? rc
            : weight_ref_bindf(&tf->proj_in_b, set, pool, 0, err, 1, c, 0, 0, 0, "%s.proj_in.bias",
                               p);
    rc = rc ? rc
            : weight_ref_bindf(&tf->proj_out_w, set, pool, 0, err, 2, c, c, 0, 0,
                               "%s.proj_out.weight", p);
    rc = rc ? rc
            : weight_ref_bindf(&tf->proj_out_b, set, pool, 0, err, 1, c, 0, 0, 0,
                               "%s.proj_out.bias", p);
    for (int d = 0; d < depth && rc == 0; d++) {
        UnetBasicBlock *b = &tf->blocks[d];
        char bp[224];
        snprintf(bp, sizeof bp, "%s.transformer_blocks.%d", p, d);
        WeightRef *norms[6] = {&b->norm1_w, &b->norm1_b, &b->norm2_w,
                               &b->norm2_b, &b->norm3_w, &b->norm3_b};
        for (int i = 0; i < 6 && rc == 0; i++)
            rc = weight_ref_bindf(norms[i], set, pool, 0, err, 1, c, 0, 0, 0, "%s.norm%d.%s", bp,
                                  i / 2 + 1, i % 2 ? "bias" : "weight");
        char ap[240];
        snprintf(ap, sizeof ap, "%s.attn1", bp);
        rc = rc ? rc : bind_attention(&b->attn1, set, ap, c, c, pool, err);
        snprintf(ap, sizeof ap, "%s.attn2", bp);
        rc = rc ? rc : bind_attention(&b->attn2, set, ap, c, context_dim, pool, err);
        int f = tf->ff_dim;
        rc = rc ? rc
                : weight_ref_bindf(&b->ff_in_w, set, pool, 0, err, 2, 2 * f, c, 0, 0,
                                   "%s.ff.net.0.proj.weight", bp);
        rc = rc ? rc
                : weight_ref_bindf(&b->ff_in_b, set, pool, 0, err, 1, 2 * f, 0, 0, 0,
                                   "%s.ff.net.0.proj.bias", bp);
        rc = rc ? rc
                : weight_ref_bindf(&b->ff_out_w, set, pool, 0, err, 2, c, f, 0, 0,
                                   "%s.ff.net.2.weight", bp);
        rc = rc ? rc
                : weight_ref_bindf(&b->ff_out_b, set, pool, 0, err, 1, c, 0, 0, 0,
                                   "%s.ff.net.2.bias", bp);
    }
    return rc;
}

static int random_linear(WeightRef *w, WeightRef *b, int out, int in, unsigned long long seed,
                         WeightPool *pool, Error *err) {
    float bound = 1.0f / sqrtf((float)in);
    int rc = weight_ref_random(w, (size_t)out * in, bound, seed, pool, err);
    if (rc == 0 && b)
        rc = weight_ref_random(b, (size_t)out, bound, seed + 1, pool, err);
    return rc;
}

int unet_transformer_random(UnetTransformer *tf, int channels, int heads, int depth,
                            int context_dim, int groups, float group_norm_eps, float layer_norm_eps,
                            unsigned long long seed, WeightPool *pool, Error *err) {
    init_shape(tf, channels, heads, depth, context_dim, groups, group_norm_eps, layer_norm_eps);
    int c = channels, f = tf->ff_dim;
    tf->blocks = calloc((size_t)depth, sizeof *tf->blocks);
    if (!tf->blocks)
        return error_set(err, "transformer: out of memory");
    int rc = weight_ref_fill(&tf->norm_w, c, 1.0f, pool, err);
    rc = rc ? rc : weight_ref_fill(&tf->norm_b, c, 0.0f, pool, err);
    rc = rc ? rc : random_linear(&tf->proj_in_w, &tf->proj_in_b, c, c, seed + 1, pool, err);
    rc = rc ? rc : random_linear(&tf->proj_out_w, &tf->proj_out_b, c, c, seed + 3, pool, err);
    for (int d = 0; d < depth && rc == 0; d++) {
        UnetBasicBlock *b = &tf->blocks[d];
        unsigned long long s = seed + 100 * (unsigned long long)(d + 1);
        WeightRef *gains[3] = {&b->norm1_w, &b->norm2_w, &b->norm3_w};
        WeightRef *shifts[3] = {&b->norm1_b, &b->norm2_b, &b->norm3_b};
        for (int i = 0; i < 3 && rc == 0; i++) {
            rc = weight_ref_fill(gains[i], c, 1.0f, pool, err);
            rc = rc ? rc : weight_ref_fill(shifts[i], c, 0.0f, pool, err);
        }
        UnetAttention *at[2] = {&b->attn1, &b->attn2};
        for (int i = 0; i < 2 && rc == 0; i++) {
            int kv_in = i ? context_dim : c;
            rc = random_linear(&at[i]->to_q, NULL, c, c, s + 10 * i + 1, pool, err);
            rc = rc ? rc : random_linear(&at[i]->to_k, NULL, c, kv_in, s + 10 * i + 2, pool, err);
            rc = rc ? rc : random_linear(&at[i]->to_v, NULL, c, kv_in, s + 10 * i + 3, pool, err);
            rc = rc ? rc
                    : random_linear(&at[i]->to_out_w, &at[i]->to_out_b, c, c, s + 10 * i + 4, pool,
                                    err);
        }
        rc = rc ? rc : random_linear(&b->ff_in_w, &b->ff_in_b, 2 * f, c, s + 30, pool, err);
        rc = rc ? rc : random_linear(&b->ff_out_w, &b->ff_out_b, c, f, s + 40, pool, err);
    }
    return rc;
}

void unet_transformer_free(UnetTransformer *tf) {
    free(tf->blocks);
    tf->blocks = NULL;
}

/* ---- memory ------------------------------------------------------------------------------- */

typedef struct Dims {
    size_t rows, c, f, ctx_rows, lse, gn_stats;
} Dims;

static Dims dims_of(const UnetTransformer *tf, int batch, int h, int w, int tokens) {
    Dims d;
    d.rows = (size_t)batch * h * w;
    d.c = (size_t)tf->channels;
    d.f = (size_t)tf->ff_dim;
    d.ctx_rows = (size_t)batch * tokens;
    d.lse = (size_t)batch * tf->heads * h * w;
    d.gn_stats = (size_t)batch * tf->groups * 2;
    return d;
}

/* What one BasicTransformerBlock keeps for its backward. The attention inputs that are
 * cheap to rebuild are not kept: the self-attention's q, k, v and the cross-attention's q
 * are recomputed in the backward from the kept block input / residual and layer-norm
 * statistics (four [C, C] products per row, ~3 % of a training step), and the cross-
 * attention's output from q and its 77-token k, v. That saves 5 of the 10 row-sized tensors
 * a block used to keep (236 MiB of SD1.5's training tape at 64x64 latents). */
typedef struct BlockTape {
    float *hin, *s1, *o1, *lse1, *h1, *s2, *k2, *v2, *lse2, *h2, *s3, *ffp;
} BlockTape;

static size_t block_tape_floats(Dims d) {
    return d.rows * d.c * 4 + d.rows * 6 + d.lse * 2 + d.ctx_rows * d.c * 2 + d.rows * 2 * d.f;
}

static BlockTape block_tape_at(float *p, Dims d) {
    BlockTape t;
    size_t rc = d.rows * d.c;
    t.hin = p, p += rc;
    t.s1 = p, p += d.rows * 2;
    t.o1 = p, p += rc;
    t.lse1 = p, p += d.lse;
    t.h1 = p, p += rc;
    t.s2 = p, p += d.rows * 2;
    t.k2 = p, p += d.ctx_rows * d.c;
    t.v2 = p, p += d.ctx_rows * d.c;
    t.lse2 = p, p += d.lse;
    t.h2 = p, p += rc;
    t.s3 = p, p += d.rows * 2;
    t.ffp = p;
    return t;
}

/* The GEGLU output [rows, f], which also holds the attention's q, k, v (and o) while they
 * are used, in the forward and in the backward's recomputation. */
static size_t g_floats(Dims d) {
    size_t geglu = d.rows * d.f, qkv = 3 * d.rows * d.c;
    return geglu > qkv ? geglu : qkv;
}

size_t unet_transformer_tape_floats(const UnetTransformer *tf, int batch, int h, int w,
                                    int tokens) {
    Dims d = dims_of(tf, batch, h, w, tokens);
    return d.gn_stats + (size_t)tf->depth * block_tape_floats(d);
}

size_t unet_transformer_scratch_floats(const UnetTransformer *tf, int batch, int h, int w,
                                       int tokens) {
    Dims d = dims_of(tf, batch, h, w, tokens);
    size_t rc = d.rows * d.c;
    size_t fwd = 2 * rc + g_floats(d);
    /* backward: dh, dn, tmp; the GEGLU input gradient (later reused for the attention
     * gradients, 4 rc <= 2 rows f); the GEGLU output gradient (later the recomputed q, k, v);
     * dk, dv of the context; recomputed layer-norm statistics */
    size_t att = 4 * rc > 2 * d.rows * d.f ? 4 * rc : 2 * d.rows * d.f;
    size_t bwd = 3 * rc + att + g_floats(d) + 2 * d.ctx_rows * d.c + 2 * d.rows;
    return fwd > bwd ? fwd : bwd;
}

/* Only the biases and norm parameters are widened into the model's scratch: the linear
 * layers widen their half weights tile by tile inside the product (linear_forward_typed). */
size_t unet_transformer_weight_floats(const UnetTransformer *tf) {
    size_t c = (size_t)tf->channels, f = (size_t)tf->ff_dim;
    return 2 * (2 * f > c ? 2 * f : c);
}

/* Where half biases and norm parameters are widened, and where kernel time is summed (may be
 * NULL). */
typedef struct Slots {
    float *v1, *v2;
    double *prof;
} Slots;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Runs `call`, adding its wall time to prof[k] (k: one of the PROF_* indices). */
#define TIMED(sl, k, call)                                                                         \
    do {                                                                                           \
        double t0_ = (sl).prof ? now_s() : 0;                                                      \
        call;                                                                                      \
        if ((sl).prof)                                                                             \
            (sl).prof[k] += now_s() - t0_;                                                         \
    } while (0)

static Slots slots_of(const UnetTransformer *tf, float *wscratch, double *prof) {
    size_t c = (size_t)tf->channels, f = (size_t)tf->ff_dim;
    size_t vec = 2 * f > c ? 2 * f : c;
    Slots s = {wscratch, wscratch + vec, prof};
    return s;
}

/* ---- helpers ------------------------------------------------------------------------------ */

/* Element-wise passes this small are not worth waking the thread pool for. */
#define PARALLEL_MIN (1 << 15)

/* [batch, a, b] -> [batch, b, a], in cache-sized tiles. */
static void transpose_batched(int batch, size_t a, size_t b, const float *x, float *y) {
    const size_t tile = 32;
    long row_tiles = (long)((a + tile - 1) / tile), jobs = (long)batch * row_tiles;
#pragma omp parallel for schedule(static) if ((size_t)batch * a * b > PARALLEL_MIN)
    for (long job = 0; job < jobs; job++) {
        size_t n = (size_t)(job / row_tiles), i0 = (size_t)(job % row_tiles) * tile;
        const float *xs = x + n * a * b;
        float *ys = y + n * a * b;
        size_t i1 = i0 + tile < a ? i0 + tile : a;
        for (size_t j0 = 0; j0 < b; j0 += tile) {
            size_t j1 = j0 + tile < b ? j0 + tile : b;
            for (size_t i = i0; i < i1; i++)
                for (size_t j = j0; j < j1; j++)
                    ys[j * a + i] = xs[i * b + j];
        }
    }
}

/* out = a + b (out may be b) */
static void add_to(size_t n, float *out, const float *a, const float *b) {
#pragma omp parallel for schedule(static) if (n > PARALLEL_MIN)
    for (size_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

static void add_into(size_t n, float *y, const float *a) {
    add_to(n, y, y, a);
}

static int lin(NnContext *ctx, size_t rows, int in, int out, const float *x, const WeightRef *w,
               const WeightRef *b, float *y, Slots sl, Error *err) {
    int rc;
    TIMED(sl, UNET_PROF_LINEAR,
          rc = linear_forward_typed(ctx, (int)rows, in, out, x, w->data, w->dtype,
                                    b ? weight_ref_f32(b, sl.v1) : NULL, y, err));
    return rc;
}

static int lin_back(NnContext *ctx, size_t rows, int in, int out, const float *dy,
                    const WeightRef *w, float *dx, int accumulate, Slots sl, Error *err) {
    int rc;
    TIMED(sl, UNET_PROF_LINEAR,
          rc = linear_backward_input_typed(ctx, (int)rows, in, out, dy, w->data, w->dtype, dx,
                                           accumulate, err));
    return rc;
}

static int att_fwd(NnContext *ctx, const AttentionShape *s, const float *q, const float *k,
                   const float *v, float *out, float *lse, Slots sl, Error *err) {
    int rc;
    TIMED(sl, UNET_PROF_ATTENTION, rc = attention_forward(ctx, s, q, k, v, out, lse, err));
    return rc;
}

static int att_bwd(NnContext *ctx, const AttentionShape *s, const float *q, const float *k,
                   const float *v, const float *out, const float *lse, const float *dout, float *dq,
                   float *dk, float *dv, Slots sl, Error *err) {
    int rc;
    TIMED(sl, UNET_PROF_ATTENTION,
          rc = attention_backward_input(ctx, s, q, k, v, out, lse, dout, dq, dk, dv, err));
    return rc;
}

static AttentionShape att_shape(const UnetTransformer *tf, int batch, int q_len, int kv_len) {
    int hd = tf->channels / tf->heads;
    AttentionShape s = {batch, tf->heads, q_len, kv_len, hd, 1.0f / sqrtf((float)hd), 0};
    return s;
}

/* The self-attention's q, k, v from the layer-norm output a (forward, and again in the
 * backward: the same products on the same values, so the same numbers). */
static int self_qkv(NnContext *ctx, const UnetBasicBlock *b, Dims d, const float *a, float *q,
                    float *k, float *v, Slots sl, Error *err) {
    int c = (int)d.c;
    if (lin(ctx, d.rows, c, c, a, &b->attn1.to_q, NULL, q, sl, err) ||
        lin(ctx, d.rows, c, c, a, &b->attn1.to_k, NULL, k, sl, err) ||
        lin(ctx, d.rows, c, c, a, &b->attn1.to_v, NULL, v, sl, err))
        return -1;
    return 0;
}

/* ---- forward ------------------------------------------------------------------------------ */

/* One BasicTransformerBlock: t.hin -> hout (may be scratch or the next block's hin). */
static int block_forward(NnContext *ctx, const UnetTransformer *tf, const UnetBasicBlock *b,
                         int batch, int hw, int tokens, Dims d, const float *context, BlockTape t,
                         float *hout, float *a, float *tmp, float *g, Slots sl, Error *err) {
    int c = (int)d.c, f = (int)d.f;
    size_t rc = d.rows * d.c;
    float eps = tf->layer_norm_eps;
    AttentionShape self = att_shape(tf, batch, hw, hw), cross = att_shape(tf, batch, hw, tokens);

    /* q, k, v (and the cross-attention output) live in g until the GEGLU needs it */
    float *q = g, *k = g + rc, *v = g + 2 * rc;
    TIMED(sl, UNET_PROF_NORM,
          layer_norm_forward(ctx, (int)d.rows, c, eps, t.hin, weight_ref_f32(&b->norm1_w, sl.v1),
                             weight_ref_f32(&b->norm1_b, sl.v2), a, t.s1));
    if (self_qkv(ctx, b, d, a, q, k, v, sl, err) ||
        att_fwd(ctx, &self, q, k, v, t.o1, t.lse1, sl, err) ||
        lin(ctx, d.rows, c, c, t.o1, &b->attn1.to_out_w, &b->attn1.to_out_b, tmp, sl, err))
        return error_prefix(err, "attn1: ");
    TIMED(sl, UNET_PROF_OTHER, add_to(rc, t.h1, t.hin, tmp));

    TIMED(sl, UNET_PROF_NORM,
          layer_norm_forward(ctx, (int)d.rows, c, eps, t.h1, weight_ref_f32(&b->norm2_w, sl.v1),
                             weight_ref_f32(&b->norm2_b, sl.v2), a, t.s2));
    float *o2 = k;
    if (lin(ctx, d.rows, c, c, a, &b->attn2.to_q, NULL, q, sl, err) ||
        lin(ctx, d.ctx_rows, tf->context_dim, c, context, &b->attn2.to_k, NULL, t.k2, sl, err) ||
        lin(ctx, d.ctx_rows, tf->context_dim, c, context, &b->attn2.to_v, NULL, t.v2, sl, err) ||
        att_fwd(ctx, &cross, q, t.k2, t.v2, o2, t.lse2, sl, err) ||
        lin(ctx, d.rows, c, c, o2, &b->attn2.to_out_w, &b->attn2.to_out_b, tmp, sl, err))
        return error_prefix(err, "attn2: ");
    TIMED(sl, UNET_PROF_OTHER, add_to(rc, t.h2, t.h1, tmp));

    TIMED(sl, UNET_PROF_NORM,
          layer_norm_forward(ctx, (int)d.rows, c, eps, t.h2, weight_ref_f32(&b->norm3_w, sl.v1),
                             weight_ref_f32(&b->norm3_b, sl.v2), a, t.s3));
    if (lin(ctx, d.rows, c, 2 * f, a, &b->ff_in_w, &b->ff_in_b, t.ffp, sl, err))
        return error_prefix(err, "ff.net.0: ");
    TIMED(sl, UNET_PROF_OTHER, geglu_forward((int)d.rows, f, t.ffp, g));
    if (lin(ctx, d.rows, f, c, g, &b->ff_out_w, &b->ff_out_b, tmp, sl, err))
        return error_prefix(err, "ff.net.2: ");
    TIMED(sl, UNET_PROF_OTHER, add_to(rc, hout, t.h2, tmp));
    return 0;
}

int unet_transformer_forward(NnContext *ctx, const UnetTransformer *tf, int batch, int h, int w,
                             int tokens, const float *x, const float *context, float *y,
                             float *tape, float *scratch, float *wscratch, double *prof,
                             Error *err) {
    Dims d = dims_of(tf, batch, h, w, tokens);
    Slots sl = slots_of(tf, wscratch, prof);
    size_t rc = d.rows * d.c, hw = (size_t)h * w;
    int c = (int)d.c;
    float *a = scratch, *t = scratch + rc, *g = scratch + 2 * rc;
    float *gn_stats = tape, *blocks = tape + d.gn_stats;
    size_t btf = block_tape_floats(d);

    TIMED(sl, UNET_PROF_NORM,
          group_norm_forward(ctx, batch, c, (int)hw, tf->groups, tf->group_norm_eps, x,
                             weight_ref_f32(&tf->norm_w, sl.v1), weight_ref_f32(&tf->norm_b, sl.v2),
                             a, gn_stats));
    TIMED(sl, UNET_PROF_OTHER, transpose_batched(batch, d.c, hw, a, t));
    BlockTape bt0 = block_tape_at(blocks, d);
    if (lin(ctx, d.rows, c, c, t, &tf->proj_in_w, &tf->proj_in_b, bt0.hin, sl, err))
        return error_prefix(err, "proj_in: ");
    for (int i = 0; i < tf->depth; i++) {
        BlockTape bt = block_tape_at(blocks + (size_t)i * btf, d);
        float *hout = i + 1 < tf->depth ? block_tape_at(blocks + (size_t)(i + 1) * btf, d).hin : t;
        /* the layer-norm output and the projection outputs can share `a`: each is used up
         * before the next is written */
        if (block_forward(ctx, tf, &tf->blocks[i], batch, (int)hw, tokens, d, context, bt, hout, a,
                          a, g, sl, err) != 0)
            return error_prefix(err, "transformer_blocks.%d.", i);
    }
    if (lin(ctx, d.rows, c, c, t, &tf->proj_out_w, &tf->proj_out_b, a, sl, err))
        return error_prefix(err, "proj_out: ");
    TIMED(sl, UNET_PROF_OTHER, transpose_batched(batch, hw, d.c, a, y));
    TIMED(sl, UNET_PROF_OTHER, add_into(rc, y, x));
    return 0;
}

/* The layer norm's output again, for a recomputation in the backward; the statistics
 * come out identical to the kept ones (same input, same kernel) and go to `stats`, a
 * scratch. */
static void layer_norm_again(NnContext *ctx, Dims d, float eps, const float *x,
                             const WeightRef *gamma, const WeightRef *beta, float *y, float *stats,
                             Slots sl) {
    layer_norm_forward(ctx, (int)d.rows, (int)d.c, eps, x, weight_ref_f32(gamma, sl.v1),
                       weight_ref_f32(beta, sl.v2), y, stats);
}

/* ---- backward ----------------------------------------------------------------------------- */

/* dh holds d(loss)/d(block output) and becomes d(loss)/d(block input) (when need_in). */
static int block_backward(NnContext *ctx, const UnetTransformer *tf, const UnetBasicBlock *b,
                          int batch, int hw, int tokens, Dims d, BlockTape t, bool need_in,
                          float *dh, float *dcontext, float *dn, float *tmp, float *big, float *g,
                          float *dk2, float *dv2, float *stats, Slots sl, Error *err) {
    int c = (int)d.c, f = (int)d.f;
    size_t rc = d.rows * d.c;
    AttentionShape self = att_shape(tf, batch, hw, hw), cross = att_shape(tf, batch, hw, tokens);

    /* feed-forward */
    if (lin_back(ctx, d.rows, f, c, dh, &b->ff_out_w, g, 0, sl, err))
        return error_prefix(err, "ff.net.2 backward: ");
    TIMED(sl, UNET_PROF_OTHER, geglu_backward_input((int)d.rows, f, t.ffp, g, big));
    if (lin_back(ctx, d.rows, c, 2 * f, big, &b->ff_in_w, dn, 0, sl, err))
        return error_prefix(err, "ff.net.0 backward: ");
    TIMED(sl, UNET_PROF_NORM,
          layer_norm_backward_input(ctx, (int)d.rows, c, t.h2, weight_ref_f32(&b->norm3_w, sl.v1),
                                    t.s3, dn, tmp));
    TIMED(sl, UNET_PROF_OTHER, add_into(rc, dh, tmp));

    /* cross-attention: the only way into the context. Its q and output are rebuilt from the
     * kept residual h1 and layer-norm statistics (into g, free after the GEGLU gradient). */
    float *d_o = big, *dq = big + rc, *dk = big + 2 * rc, *dv = big + 3 * rc;
    float *q = g, *k = g + rc, *v = g + 2 * rc, *o2 = k;
    TIMED(sl, UNET_PROF_NORM,
          layer_norm_again(ctx, d, tf->layer_norm_eps, t.h1, &b->norm2_w, &b->norm2_b, tmp, stats,
                           sl));
    if (lin(ctx, d.rows, c, c, tmp, &b->attn2.to_q, NULL, q, sl, err) ||
        att_fwd(ctx, &cross, q, t.k2, t.v2, o2, NULL, sl, err))
        return error_prefix(err, "attn2 recompute: ");
    if (lin_back(ctx, d.rows, c, c, dh, &b->attn2.to_out_w, d_o, 0, sl, err) ||
        att_bwd(ctx, &cross, q, t.k2, t.v2, o2, t.lse2, d_o, need_in ? dq : NULL, dk2, dv2, sl,
                err) ||
        lin_back(ctx, d.ctx_rows, tf->context_dim, c, dk2, &b->attn2.to_k, dcontext, 1, sl, err) ||
        lin_back(ctx, d.ctx_rows, tf->context_dim, c, dv2, &b->attn2.to_v, dcontext, 1, sl, err))
        return error_prefix(err, "attn2 backward: ");
    if (!need_in)
        return 0;
    if (lin_back(ctx, d.rows, c, c, dq, &b->attn2.to_q, dn, 0, sl, err))
        return error_prefix(err, "attn2.to_q backward: ");
    TIMED(sl, UNET_PROF_NORM,
          layer_norm_backward_input(ctx, (int)d.rows, c, t.h1, weight_ref_f32(&b->norm2_w, sl.v1),
                                    t.s2, dn, tmp));
    TIMED(sl, UNET_PROF_OTHER, add_into(rc, dh, tmp));

    /* self-attention, q, k, v rebuilt from the block input */
    TIMED(sl, UNET_PROF_NORM,
          layer_norm_again(ctx, d, tf->layer_norm_eps, t.hin, &b->norm1_w, &b->norm1_b, tmp, stats,
                           sl));
    if (self_qkv(ctx, b, d, tmp, q, k, v, sl, err))
        return error_prefix(err, "attn1 recompute: ");
    if (lin_back(ctx, d.rows, c, c, dh, &b->attn1.to_out_w, d_o, 0, sl, err) ||
        att_bwd(ctx, &self, q, k, v, t.o1, t.lse1, d_o, dq, dk, dv, sl, err) ||
        lin_back(ctx, d.rows, c, c, dq, &b->attn1.to_q, dn, 0, sl, err) ||
        lin_back(ctx, d.rows, c, c, dk, &b->attn1.to_k, dn, 1, sl, err) ||
        lin_back(ctx, d.rows, c, c, dv, &b->attn1.to_v, dn, 1, sl, err))
        return error_prefix(err, "attn1 backward: ");
    TIMED(sl, UNET_PROF_NORM,
          layer_norm_backward_input(ctx, (int)d.rows, c, t.hin, weight_ref_f32(&b->norm1_w, sl.v1),
                                    t.s1, dn, tmp));
    TIMED(sl, UNET_PROF_OTHER, add_into(rc, dh, tmp));
    return 0;
}

int unet_transformer_backward_input(NnContext *ctx, const UnetTransformer *tf, int batch, int h,
                                    int w, int tokens, const float *x, const float *tape,
                                    const float *dy, float *dx, float *dcontext, float *scratch,
                                    float *wscratch, double *prof, Error *err) {
    Dims d = dims_of(tf, batch, h, w, tokens);
    Slots sl = slots_of(tf, wscratch, prof);
    size_t rc = d.rows * d.c, hw = (size_t)h * w;
    int c = (int)d.c;
    size_t att = 4 * rc > 2 * d.rows * d.f ? 4 * rc : 2 * d.rows * d.f;
    float *dh = scratch, *dn = dh + rc, *tmp = dn + rc, *big = tmp + rc, *g = big + att;
    float *dk2 = g + g_floats(d), *dv2 = dk2 + d.ctx_rows * d.c, *stats = dv2 + d.ctx_rows * d.c;
    /* the tape is read only; block_tape_at wants a mutable base */
    float *blocks = (float *)tape + d.gn_stats;
    const float *gn_stats = tape;
    size_t btf = block_tape_floats(d);

    TIMED(sl, UNET_PROF_OTHER, transpose_batched(batch, d.c, hw, dy, tmp));
    if (lin_back(ctx, d.rows, c, c, tmp, &tf->proj_out_w, dh, 0, sl, err))
        return error_prefix(err, "proj_out backward: ");
    for (int i = tf->depth - 1; i >= 0; i--) {
        /* block 0's input depends on the context only when x does; later blocks' always */
        bool need_in = i > 0 || dx != NULL;
        BlockTape bt = block_tape_at(blocks + (size_t)i * btf, d);
        if (block_backward(ctx, tf, &tf->blocks[i], batch, (int)hw, tokens, d, bt, need_in, dh,
                           dcontext, dn, tmp, big, g, dk2, dv2, stats, sl, err) != 0)
            return error_prefix(err, "transformer_blocks.%d.", i);
    }
    if (!dx)
        return 0;
    if (lin_back(ctx, d.rows, c, c, dh, &tf->proj_in_w, tmp, 0, sl, err))
        return error_prefix(err, "proj_in backward: ");
    TIMED(sl, UNET_PROF_OTHER, transpose_batched(batch, hw, d.c, tmp, dn));
    TIMED(sl, UNET_PROF_NORM,
          group_norm_backward_input(ctx, batch, c, (int)hw, tf->groups, x,
                                    weight_ref_f32(&tf->norm_w, sl.v1), gn_stats, dn, dx));
    TIMED(sl, UNET_PROF_OTHER, add_into(rc, dx, dy));
    return 0;
}
