/* 2-D convolution forward and backward-data on oneDNN (see conv2d.h).
 *
 * The caller's tensors are NCHW / OIHW. CONV2D_ALGO_ONEDNN_NCHW runs oneDNN's convolution on
 * that memory as it is: oneDNN then uses its im2col + JIT sgemm kernel, with no layout
 * conversions and no extra copies. CONV2D_ALGO_ONEDNN_BLOCKED lets oneDNN pick its preferred
 * layouts (NHWC / nChw16c activations, blocked weights) for its faster direct kernels, at the
 * price of reordering x (or dy) and w into them and y (or dx) back on every call. The
 * default, CONV2D_ALGO_AUTO, picks per shape and direction whichever measured faster
 * (conv2d_resolve_algorithm; numbers in docs/kernels.md). Reordered copies and oneDNN's scratchpad
 * live in buffers shared by all cached primitives, so memory grows with the largest layer, not with
 * the number of shapes.
 *
 * Primitives are created once per (direction, shape, algorithm) and kept in the context's
 * ConvPrimitiveCache: creating one costs milliseconds, running a small one less. */
#include "nn/conv2d.h"

#include "nn/conv2d_internal.h"
#include "nn/conv2d_winograd.h"
#include "nn/nn_context_internal.h"

#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { CONV_FORWARD = 0, CONV_BACKWARD_DATA = 1 };
/* Shared buffers: the three reordered tensors, and oneDNN's own scratchpad (im2col columns,
 * Winograd transforms), which would otherwise be allocated per primitive and add up over the
 * dozens of shapes a UNet has; and our Winograd's transformed tiles and weights. */
enum { SCRATCH_IN, SCRATCH_W, SCRATCH_OUT, SCRATCH_PAD, SCRATCH_WINO, SCRATCH_COUNT };

typedef struct ConvKey {
    Conv2dShape shape;
    int direction;
    int has_bias;
    int algorithm;
} ConvKey;

/* One primitive with its reorders. "in" is x (forward) or dy (backward-data); "out" is y or
 * dx. int_* are the primitive's own memories; they alias user_* when the layouts agree (then
 * the reorder is NULL). */
typedef struct ConvEntry {
    ConvKey key;
    dnnl_primitive_t conv;
    dnnl_primitive_t reorder_in, reorder_w, reorder_out;
    dnnl_memory_t user_in, user_w, user_out, user_bias;
    dnnl_memory_t int_in, int_w, int_out;
    dnnl_memory_t pad; /* NULL when the primitive needs no scratchpad */
    size_t scratch_bytes[SCRATCH_COUNT];
} ConvEntry;

struct ConvPrimitiveCache {
    ConvEntry *entries;
    size_t count, capacity;
    void *scratch[SCRATCH_COUNT];
    size_t scratch_capacity[SCRATCH_COUNT];
    Conv2dAlgorithm algorithm;
    Conv2dProfile *profile;
};

int conv2d_out_h(const Conv2dShape *s) {
    return (s->in_h + s->pad_top + s->pad_bottom - s->kernel_h) / s->stride + 1;
}

int conv2d_out_w(const Conv2dShape *s) {
    return (s->in_w + s->pad_left + s->pad_right - s->kernel_w) / s->stride + 1;
}

int conv2d_check_shape(const Conv2dShape *s, Error *err) {
    if (s->batch <= 0 || s->in_ch <= 0 || s->out_ch <= 0 || s->in_h <= 0 || s->in_w <= 0 ||
        s->kernel_h <= 0 || s->kernel_w <= 0 || s->stride <= 0 || s->pad_top < 0 ||
        s->pad_left < 0 || s->pad_bottom < 0 || s->pad_right < 0)
        return error_set(err,
                         "conv2d: invalid shape (batch %d, channels %d -> %d, input %dx%d, "
                         "kernel %dx%d, stride %d, padding %d,%d,%d,%d)",
                         s->batch, s->in_ch, s->out_ch, s->in_h, s->in_w, s->kernel_h, s->kernel_w,
                         s->stride, s->pad_top, s->pad_left, s->pad_bottom, s->pad_right);
    if (s->in_h + s->pad_top + s->pad_bottom < s->kernel_h ||
        s->in_w + s->pad_left + s->pad_right < s->kernel_w)
        return error_set(err, "conv2d: kernel %dx%d larger than the padded input %dx%d",
                         s->kernel_h, s->kernel_w, s->in_h + s->pad_top + s->pad_bottom,
                         s->in_w + s->pad_left + s->pad_right);
    return 0;
}

static void entry_destroy(ConvEntry *e) {
    dnnl_primitive_destroy(e->conv);
    dnnl_primitive_destroy(e->reorder_in);
    dnnl_primitive_destroy(e->reorder_w);
    dnnl_primitive_destroy(e->reorder_out);
    if (e->int_in != e->user_in)
        dnnl_memory_destroy(e->int_in);
    if (e->int_w != e->user_w)
        dnnl_memory_destroy(e->int_w);
    if (e->int_out != e->user_out)
        dnnl_memory_destroy(e->int_out);
    dnnl_memory_destroy(e->user_in);
    dnnl_memory_destroy(e->user_w);
    dnnl_memory_destroy(e->user_out);
    dnnl_memory_destroy(e->user_bias);
    dnnl_memory_destroy(e->pad);
    memset(e, 0, sizeof *e);
}

void conv2d_cache_free(ConvPrimitiveCache *cache) {
    if (!cache)
        return;
    for (size_t i = 0; i < cache->count; i++)
        entry_destroy(&cache->entries[i]);
    free(cache->entries);
    for (int i = 0; i < SCRATCH_COUNT; i++)
        free(cache->scratch[i]);
    free(cache);
}

void conv2d_release_buffers(NnContext *ctx) {
    ConvPrimitiveCache *cache = ctx->conv_cache;
    if (!cache)
        return;
    for (int i = 0; i < SCRATCH_COUNT; i++) {
        free(cache->scratch[i]);
        cache->scratch[i] = NULL;
        cache->scratch_capacity[i] = 0;
    }
}

static ConvPrimitiveCache *cache_get(NnContext *ctx, Error *err) {
    if (!ctx->conv_cache) {
        ctx->conv_cache = calloc(1, sizeof *ctx->conv_cache);
        if (!ctx->conv_cache) {
            error_set(err, "conv2d: out of memory for the primitive cache");
            return NULL;
        }
        ctx->conv_cache->algorithm = CONV2D_ALGO_DEFAULT;
    }
    return ctx->conv_cache;
}

int conv2d_set_algorithm(NnContext *ctx, Conv2dAlgorithm algorithm, Error *err) {
    ConvPrimitiveCache *cache = cache_get(ctx, err);
    if (!cache)
        return -1;
    if ((int)algorithm < 0 || algorithm >= CONV2D_ALGO_COUNT)
        return error_set(err, "conv2d: unknown algorithm %d", (int)algorithm);
    cache->algorithm = algorithm;
    return 0;
}

int conv2d_profile_enable(NnContext *ctx, Conv2dProfile *profile, Error *err) {
    ConvPrimitiveCache *cache = cache_get(ctx, err);
    if (!cache)
        return -1;
    cache->profile = profile;
    return 0;
}

Conv2dAlgorithm conv2d_get_algorithm(NnContext *ctx) {
    return ctx->conv_cache ? ctx->conv_cache->algorithm : CONV2D_ALGO_DEFAULT;
}

/* Grows one shared scratch buffer; 64-byte aligned for oneDNN's vector loads. */
static void *scratch_reserve(ConvPrimitiveCache *cache, int which, size_t bytes, Error *err) {
    if (bytes <= cache->scratch_capacity[which])
        return cache->scratch[which];
    free(cache->scratch[which]);
    cache->scratch_capacity[which] = 0;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    cache->scratch[which] = aligned_alloc(64, rounded);
    if (!cache->scratch[which]) {
        error_set(err, "conv2d: out of memory for a %zu-byte layout buffer", bytes);
        return NULL;
    }
    cache->scratch_capacity[which] = rounded;
    return cache->scratch[which];
}

#define DNNL_TRY(call, what)                                                                       \
    do {                                                                                           \
        dnnl_status_t st_ = (call);                                                                \
        if (st_ != dnnl_success) {                                                                 \
            error_set(err, "conv2d: oneDNN %s failed (status %d)", what, (int)st_);                \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)

/* Makes the primitive's memory for a user memory: the same object when the layouts agree,
 * otherwise a new memory plus a reorder (user -> primitive when to_internal). */
static int make_internal(NnContext *ctx, dnnl_memory_t user, const dnnl_memory_desc_t *user_md,
                         const dnnl_memory_desc_t *int_md, int to_internal, dnnl_memory_t *int_mem,
                         dnnl_primitive_t *reorder, size_t *bytes, Error *err) {
    dnnl_primitive_desc_t rpd = NULL;
    *int_mem = NULL;
    *reorder = NULL;
    *bytes = 0;
    if (dnnl_memory_desc_equal(user_md, int_md)) {
        *int_mem = user;
        return 0;
    }
    *bytes = dnnl_memory_desc_get_size(int_md);
    DNNL_TRY(dnnl_memory_create(int_mem, int_md, ctx->engine, DNNL_MEMORY_NONE), "memory");
    if (to_internal)
        DNNL_TRY(dnnl_reorder_primitive_desc_create(&rpd, user_md, ctx->engine, int_md, ctx->engine,
                                                    NULL),
                 "reorder");
    else
        DNNL_TRY(dnnl_reorder_primitive_desc_create(&rpd, int_md, ctx->engine, user_md, ctx->engine,
                                                    NULL),
                 "reorder");
    DNNL_TRY(dnnl_primitive_create(reorder, rpd), "reorder primitive");
    dnnl_primitive_desc_destroy(rpd);
    return 0;
fail:
    dnnl_primitive_desc_destroy(rpd);
    dnnl_memory_destroy(*int_mem);
    *int_mem = NULL;
    return -1;
}

/* CONV2D_ALGO_AUTO's rule, from bench/bench_conv.py on every convolution of SD1.5's UNet
 * (64x64 latents) and VAE (512x512) against PyTorch (docs/kernels.md). oneDNN's NCHW kernel
 * (im2col + sgemm, no reorders) won the 1x1 layers (where the reorders are 20-60 % of a
 * blocked call), everything at 16x16 and 8x8 (where re-laying out the weights dominates),
 * the layers with fewer than 16 input channels, and most backward-data layers. The blocked
 * direct kernels won 3x3 forward layers from 32x32 up (5-15 % at the UNet's 32x32 / 64x64,
 * 15-30 % at the VAE's 256x256 / 512x512) and any layer with fewer than 16 output channels
 * (conv_out: 2.7x forward, 5.6x backward, the sgemm being 4 rows high). */
Conv2dAlgorithm conv2d_resolve_algorithm(Conv2dAlgorithm a, int backward, const Conv2dShape *s) {
    if (a == CONV2D_ALGO_WINOGRAD_F43 && conv2d_winograd_applies(s))
        return a;
    if (a != CONV2D_ALGO_AUTO && a != CONV2D_ALGO_WINOGRAD_F43)
        return a;
    long pixels = (long)s->in_h * s->in_w;
    /* Our Winograd F(4x4,3x3) (bench_conv, SD1.5 UNet shapes, alternating with this rule's
     * other choices, docs/kernels.md): at batch 2 0.3x-0.5x of their time forward and
     * 0.4x-0.7x backward at 64x64 and 32x32, 0.45x-0.65x forward at 16x16; at batch 1 about
     * 0.4x-0.9x at 32x32 both ways; slower with fewer pixels (the weights are transformed
     * again on every call, which costs more than the sgemms save when there are few tiles). Layers under 64 channels (none in SD's UNet or VAE; the tiny test
     * models have 16-32) stay direct: Winograd's larger rounding (~3e-6 against ~2e-7 per
     * layer) grew to 1.3e-4 over a heun sampling run of the tiny model there. */
    long batch_pixels = pixels * s->batch;
    if (conv2d_winograd_applies(s) && s->in_ch >= 64 && s->out_ch >= 64 &&
        batch_pixels >= (backward ? 32L * 32 : 2L * 16 * 16))
        return CONV2D_ALGO_WINOGRAD_F43;
    int spatial_kernel = s->kernel_h > 1 || s->kernel_w > 1;
    if (spatial_kernel && s->out_ch < 16)
        return CONV2D_ALGO_ONEDNN_BLOCKED;
    /* oneDNN's NCHW backward-data builds the whole column matrix (in_ch * kh * kw x output
     * pixels) in its scratchpad: 141 MB for the UNet's 960->320 layer at 64x64, the largest
     * buffer of a training step. The blocked kernel needs none and measured as fast or faster
     * on the 64x64 layers (0.92x vs 0.99x PyTorch, loaded machine), so it takes those and any
     * layer whose columns would pass 64 MiB (1920->640 at 32x32: equal speed). */
    double col_bytes =
        4.0 * s->in_ch * s->kernel_h * s->kernel_w * conv2d_out_h(s) * conv2d_out_w(s);
    if (backward && spatial_kernel && (pixels >= 64L * 64 || col_bytes > 64.0 * 1048576))
        return CONV2D_ALGO_ONEDNN_BLOCKED;
    if (backward || !spatial_kernel || s->in_ch < 16)
        return CONV2D_ALGO_ONEDNN_NCHW;
    if ((s->stride == 1 && pixels >= 32L * 32) || pixels >= 256L * 256)
        return CONV2D_ALGO_ONEDNN_BLOCKED;
    return CONV2D_ALGO_ONEDNN_NCHW;
}

static dnnl_alg_kind_t algorithm_kind(Conv2dAlgorithm a) {
    return a == CONV2D_ALGO_ONEDNN_WINOGRAD ? dnnl_convolution_winograd : dnnl_convolution_direct;
}

static int entry_create(NnContext *ctx, const ConvKey *key, ConvEntry *e, Error *err) {
    const Conv2dShape *s = &key->shape;
    int oh = conv2d_out_h(s), ow = conv2d_out_w(s);
    int plain = key->algorithm == CONV2D_ALGO_ONEDNN_NCHW;
    dnnl_memory_desc_t x_md, w_md, y_md, b_md, x_any, w_any, y_any, b_any;
    dnnl_dims_t xd = {s->batch, s->in_ch, s->in_h, s->in_w};
    dnnl_dims_t wd = {s->out_ch, s->in_ch, s->kernel_h, s->kernel_w};
    dnnl_dims_t yd = {s->batch, s->out_ch, oh, ow};
    dnnl_dims_t bd = {s->out_ch};
    dnnl_dims_t strides = {s->stride, s->stride};
    dnnl_dims_t pad_l = {s->pad_top, s->pad_left}, pad_r = {s->pad_bottom, s->pad_right};
    dnnl_convolution_desc_t fwd_desc, bwd_desc;
    dnnl_primitive_desc_t fwd_pd = NULL, bwd_pd = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_alg_kind_t alg = algorithm_kind((Conv2dAlgorithm)key->algorithm);

    memset(e, 0, sizeof *e);
    e->key = *key;
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&x_md, 4, xd, dnnl_f32, dnnl_nchw), "memory desc");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&w_md, 4, wd, dnnl_f32, dnnl_oihw), "memory desc");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&y_md, 4, yd, dnnl_f32, dnnl_nchw), "memory desc");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&b_md, 1, bd, dnnl_f32, dnnl_a), "memory desc");
    /* bf16: the convolution's inputs (x or dy, and w) in bf16, its output and the
     * accumulation in f32; the reorders from the caller's f32 round to bf16. */
    int bf16 = key->algorithm == CONV2D_ALGO_ONEDNN_BF16;
    dnnl_data_type_t x_dt = bf16 && key->direction == CONV_FORWARD ? dnnl_bf16 : dnnl_f32;
    dnnl_data_type_t y_dt = bf16 && key->direction != CONV_FORWARD ? dnnl_bf16 : dnnl_f32;
    dnnl_data_type_t w_dt = bf16 ? dnnl_bf16 : dnnl_f32;
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&x_any, 4, xd, x_dt, dnnl_format_tag_any), "desc");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&w_any, 4, wd, w_dt, dnnl_format_tag_any), "desc");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&y_any, 4, yd, y_dt, dnnl_format_tag_any), "desc");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&b_any, 1, bd, dnnl_f32, dnnl_format_tag_any), "desc");
    if (plain) {
        x_any = x_md;
        y_any = y_md;
    }
    /* The forward descriptor (the primitive itself, or the backward's hint): for bf16 its
     * source is bf16 and its destination f32 in both directions. */
    dnnl_memory_desc_t x_fwd = x_any, y_fwd = y_any;
    if (bf16) {
        DNNL_TRY(dnnl_memory_desc_init_by_tag(&x_fwd, 4, xd, dnnl_bf16, dnnl_format_tag_any),
                 "desc");
        DNNL_TRY(dnnl_memory_desc_init_by_tag(&y_fwd, 4, yd, dnnl_f32, dnnl_format_tag_any),
                 "desc");
    }
    DNNL_TRY(dnnl_primitive_attr_create(&attr), "attributes");
    DNNL_TRY(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user),
             "scratchpad mode");
    /* Forward-training for the backward-data hint: oneDNN pairs implementations by it. */
    DNNL_TRY(dnnl_convolution_forward_desc_init(
                 &fwd_desc,
                 key->direction == CONV_FORWARD ? dnnl_forward_inference : dnnl_forward_training,
                 alg, &x_fwd, &w_any, key->has_bias ? &b_any : NULL, &y_fwd, strides, pad_l, pad_r),
             "convolution descriptor");
    DNNL_TRY(dnnl_primitive_desc_create(&fwd_pd, &fwd_desc, attr, ctx->engine, NULL),
             "convolution forward (no implementation for this shape/algorithm)");

    const dnnl_memory_desc_t *in_md, *out_md, *int_in_md, *int_w_md, *int_out_md;
    dnnl_primitive_desc_t pd = fwd_pd;
    if (key->direction == CONV_FORWARD) {
        in_md = &x_md;
        out_md = &y_md;
        int_in_md = dnnl_primitive_desc_query_md(fwd_pd, dnnl_query_src_md, 0);
        int_w_md = dnnl_primitive_desc_query_md(fwd_pd, dnnl_query_weights_md, 0);
        int_out_md = dnnl_primitive_desc_query_md(fwd_pd, dnnl_query_dst_md, 0);
    } else {
        DNNL_TRY(dnnl_convolution_backward_data_desc_init(&bwd_desc, alg, &x_any, &w_any, &y_any,
                                                          strides, pad_l, pad_r),
                 "backward-data descriptor");
        DNNL_TRY(dnnl_primitive_desc_create(&bwd_pd, &bwd_desc, attr, ctx->engine, fwd_pd),
                 "convolution backward-data (no implementation for this shape/algorithm)");
        pd = bwd_pd;
        in_md = &y_md;
        out_md = &x_md;
        int_in_md = dnnl_primitive_desc_query_md(bwd_pd, dnnl_query_diff_dst_md, 0);
        int_w_md = dnnl_primitive_desc_query_md(bwd_pd, dnnl_query_weights_md, 0);
        int_out_md = dnnl_primitive_desc_query_md(bwd_pd, dnnl_query_diff_src_md, 0);
    }
    DNNL_TRY(dnnl_primitive_create(&e->conv, pd), "convolution primitive");
    const dnnl_memory_desc_t *pad_md =
        dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    e->scratch_bytes[SCRATCH_PAD] = pad_md ? dnnl_memory_desc_get_size(pad_md) : 0;
    if (e->scratch_bytes[SCRATCH_PAD])
        DNNL_TRY(dnnl_memory_create(&e->pad, pad_md, ctx->engine, DNNL_MEMORY_NONE), "memory");
    DNNL_TRY(dnnl_memory_create(&e->user_in, in_md, ctx->engine, DNNL_MEMORY_NONE), "memory");
    DNNL_TRY(dnnl_memory_create(&e->user_w, &w_md, ctx->engine, DNNL_MEMORY_NONE), "memory");
    DNNL_TRY(dnnl_memory_create(&e->user_out, out_md, ctx->engine, DNNL_MEMORY_NONE), "memory");
    if (key->has_bias)
        DNNL_TRY(dnnl_memory_create(&e->user_bias, &b_md, ctx->engine, DNNL_MEMORY_NONE), "memory");
    if (make_internal(ctx, e->user_in, in_md, int_in_md, 1, &e->int_in, &e->reorder_in,
                      &e->scratch_bytes[SCRATCH_IN], err) ||
        make_internal(ctx, e->user_w, &w_md, int_w_md, 1, &e->int_w, &e->reorder_w,
                      &e->scratch_bytes[SCRATCH_W], err) ||
        make_internal(ctx, e->user_out, out_md, int_out_md, 0, &e->int_out, &e->reorder_out,
                      &e->scratch_bytes[SCRATCH_OUT], err))
        goto fail;
    dnnl_primitive_desc_destroy(fwd_pd);
    dnnl_primitive_desc_destroy(bwd_pd);
    dnnl_primitive_attr_destroy(attr);
    return 0;
fail:
    dnnl_primitive_desc_destroy(fwd_pd);
    dnnl_primitive_desc_destroy(bwd_pd);
    dnnl_primitive_attr_destroy(attr);
    entry_destroy(e);
    return -1;
}

static ConvEntry *entry_find(NnContext *ctx, const Conv2dShape *s, int direction, int has_bias,
                             Error *err) {
    ConvPrimitiveCache *cache = cache_get(ctx, err);
    if (!cache)
        return NULL;
    ConvKey key;
    memset(&key, 0, sizeof key);
    key.shape = *s;
    key.direction = direction;
    key.has_bias = has_bias;
    key.algorithm = conv2d_resolve_algorithm(cache->algorithm, direction, s);
    for (size_t i = 0; i < cache->count; i++)
        if (memcmp(&cache->entries[i].key, &key, sizeof key) == 0)
            return &cache->entries[i];
    if (cache->count == cache->capacity) {
        size_t cap = cache->capacity ? cache->capacity * 2 : 32;
        ConvEntry *grown = realloc(cache->entries, cap * sizeof *grown);
        if (!grown) {
            error_set(err, "conv2d: out of memory for the primitive cache");
            return NULL;
        }
        cache->entries = grown;
        cache->capacity = cap;
    }
    ConvEntry *e = &cache->entries[cache->count];
    if (entry_create(ctx, &key, e, err) != 0)
        return NULL;
    cache->count++;
    return e;
}

/* Runs one primitive; when profiling, waits for it and adds its time to *stage. */
static int run(NnContext *ctx, dnnl_primitive_t prim, int nargs, const dnnl_exec_arg_t *args,
               double *stage, Error *err) {
    double t0 = stage ? omp_get_wtime() : 0.0;
    dnnl_status_t st = dnnl_primitive_execute(prim, ctx->stream, nargs, args);
    if (st != dnnl_success)
        return error_set(err, "conv2d: oneDNN execute failed (status %d)", (int)st);
    if (stage) {
        dnnl_stream_wait(ctx->stream);
        *stage += omp_get_wtime() - t0;
    }
    return 0;
}

/* Points the entry's memories at the caller's buffers and the shared scratch, then runs
 * reorder(in), reorder(w), the convolution and reorder(out). */
static int entry_execute(NnContext *ctx, ConvEntry *e, const float *in, const float *w,
                         const float *bias, float *out, Error *err) {
    ConvPrimitiveCache *cache = ctx->conv_cache;
    Conv2dProfile *p = cache->profile;
    dnnl_memory_t ints[SCRATCH_COUNT] = {e->int_in, e->int_w, e->int_out, e->pad};
    dnnl_memory_t users[SCRATCH_COUNT] = {e->user_in, e->user_w, e->user_out, NULL};
    for (int i = 0; i < SCRATCH_COUNT; i++) {
        if (ints[i] == users[i] || !ints[i])
            continue;
        void *buf = scratch_reserve(cache, i, e->scratch_bytes[i], err);
        if (!buf)
            return -1;
        dnnl_memory_set_data_handle(ints[i], buf);
    }
    dnnl_memory_set_data_handle(e->user_in, (void *)in);
    dnnl_memory_set_data_handle(e->user_w, (void *)w);
    dnnl_memory_set_data_handle(e->user_out, out);
    if (e->reorder_in) {
        dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, e->user_in}, {DNNL_ARG_TO, e->int_in}};
        if (run(ctx, e->reorder_in, 2, a, p ? &p->reorder_in : NULL, err))
            return -1;
    }
    if (e->reorder_w) {
        dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, e->user_w}, {DNNL_ARG_TO, e->int_w}};
        if (run(ctx, e->reorder_w, 2, a, p ? &p->reorder_weights : NULL, err))
            return -1;
    }
    if (e->key.direction == CONV_FORWARD) {
        dnnl_exec_arg_t a[5] = {{DNNL_ARG_SRC, e->int_in},
                                {DNNL_ARG_WEIGHTS, e->int_w},
                                {DNNL_ARG_DST, e->int_out},
                                {DNNL_ARG_SCRATCHPAD, e->pad},
                                {DNNL_ARG_BIAS, e->user_bias}};
        int n = 3;
        if (e->pad)
            n++;
        else
            a[3] = a[4];
        if (bias) {
            dnnl_memory_set_data_handle(e->user_bias, (void *)bias);
            n++;
        }
        if (run(ctx, e->conv, n, a, p ? &p->convolution : NULL, err))
            return -1;
    } else {
        dnnl_exec_arg_t a[4] = {{DNNL_ARG_DIFF_DST, e->int_in},
                                {DNNL_ARG_WEIGHTS, e->int_w},
                                {DNNL_ARG_DIFF_SRC, e->int_out},
                                {DNNL_ARG_SCRATCHPAD, e->pad}};
        if (run(ctx, e->conv, e->pad ? 4 : 3, a, p ? &p->convolution : NULL, err))
            return -1;
    }
    if (e->reorder_out) {
        dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, e->int_out}, {DNNL_ARG_TO, e->user_out}};
        if (run(ctx, e->reorder_out, 2, a, p ? &p->reorder_out : NULL, err))
            return -1;
    }
    if (dnnl_stream_wait(ctx->stream) != dnnl_success)
        return error_set(err, "conv2d: oneDNN stream wait failed");
    return 0;
}

/* Our Winograd, its scratch in the shared buffers. */
static int winograd_call(NnContext *ctx, const Conv2dShape *s, int backward, const float *in,
                         const void *w, DType w_dtype, const float *bias, float *out, Error *err) {
    ConvPrimitiveCache *cache = cache_get(ctx, err);
    if (!cache)
        return -1;
    float *scratch =
        scratch_reserve(cache, SCRATCH_WINO, conv2d_winograd_scratch_bytes(s, backward, 0), err);
    if (!scratch)
        return -1;
    Conv2dProfile *p = cache->profile;
    double t0 = p ? omp_get_wtime() : 0.0;
    int rc = backward ? conv2d_winograd_backward_input(s, in, w, w_dtype, out, scratch, 0, err)
                      : conv2d_winograd_forward(s, in, w, w_dtype, bias, out, scratch, 0, err);
    if (p)
        p->convolution += omp_get_wtime() - t0;
    return rc;
}

int conv2d_forward(NnContext *ctx, const Conv2dShape *s, const float *x, const float *w,
                   const float *bias, float *y, Error *err) {
    if (conv2d_check_shape(s, err))
        return -1;
    Conv2dAlgorithm a = conv2d_resolve_algorithm(conv2d_get_algorithm(ctx), 0, s);
    if (a == CONV2D_ALGO_WINOGRAD_F43)
        return winograd_call(ctx, s, 0, x, w, DTYPE_F32, bias, y, err);
    if (a == CONV2D_ALGO_IM2COL_SGEMM)
        return conv2d_gemm_forward(ctx, s, x, w, bias, y, err);
    ConvEntry *e = entry_find(ctx, s, CONV_FORWARD, bias != NULL, err);
    if (!e)
        return -1;
    return entry_execute(ctx, e, x, w, bias, y, err);
}

int conv2d_backward_input(NnContext *ctx, const Conv2dShape *s, const float *dy, const float *w,
                          float *dx, Error *err) {
    if (conv2d_check_shape(s, err))
        return -1;
    Conv2dAlgorithm a = conv2d_resolve_algorithm(conv2d_get_algorithm(ctx), 1, s);
    if (a == CONV2D_ALGO_WINOGRAD_F43)
        return winograd_call(ctx, s, 1, dy, w, DTYPE_F32, NULL, dx, err);
    if (a == CONV2D_ALGO_IM2COL_SGEMM)
        return conv2d_gemm_backward_input(ctx, s, dy, w, dx, err);
    ConvEntry *e = entry_find(ctx, s, CONV_BACKWARD_DATA, 0, err);
    if (!e)
        return -1;
    return entry_execute(ctx, e, dy, w, NULL, dx, err);
}

/* Half weights for the algorithms that take float32: widened into the caller's scratch. */
static const float *widen_weights(const Conv2dShape *s, const void *w, DType w_dtype,
                                  float *widen_scratch, Error *err) {
    if (w_dtype == DTYPE_F32)
        return w;
    size_t n = (size_t)s->out_ch * s->in_ch * s->kernel_h * s->kernel_w;
    if ((w_dtype != DTYPE_F16 && w_dtype != DTYPE_BF16) || !widen_scratch) {
        error_set(err,
                  "conv2d: weights of dtype %s (want f32, or f16/bf16 with a widening "
                  "scratch)",
                  dtype_display_name(w_dtype));
        return NULL;
    }
    const uint16_t *src = w;
    const size_t chunk = 1 << 16;
    long chunks = (long)((n + chunk - 1) / chunk);
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (long c = 0; c < chunks; c++) {
        size_t lo = (size_t)c * chunk, len = n - lo < chunk ? n - lo : chunk;
        float *dst = widen_scratch + lo;
        if (w_dtype == DTYPE_BF16) {
#pragma omp simd
            for (size_t i = 0; i < len; i++) {
                uint32_t bits = (uint32_t)src[lo + i] << 16;
                memcpy(dst + i, &bits, sizeof bits);
            }
        } else {
            for (size_t i = 0; i < len; i++)
                dst[i] = f16_to_f32(src[lo + i]);
        }
    }
    return widen_scratch;
}

int conv2d_forward_typed(NnContext *ctx, const Conv2dShape *s, const float *x, const void *w,
                         DType w_dtype, float *widen_scratch, const float *bias, float *y,
                         Error *err) {
    if (conv2d_check_shape(s, err))
        return -1;
    if (conv2d_resolve_algorithm(conv2d_get_algorithm(ctx), 0, s) == CONV2D_ALGO_WINOGRAD_F43)
        return winograd_call(ctx, s, 0, x, w, w_dtype, bias, y, err);
    const float *wf = widen_weights(s, w, w_dtype, widen_scratch, err);
    return wf ? conv2d_forward(ctx, s, x, wf, bias, y, err) : -1;
}

int conv2d_backward_input_typed(NnContext *ctx, const Conv2dShape *s, const float *dy,
                                const void *w, DType w_dtype, float *widen_scratch, float *dx,
                                Error *err) {
    if (conv2d_check_shape(s, err))
        return -1;
    if (conv2d_resolve_algorithm(conv2d_get_algorithm(ctx), 1, s) == CONV2D_ALGO_WINOGRAD_F43)
        return winograd_call(ctx, s, 1, dy, w, w_dtype, NULL, dx, err);
    const float *wf = widen_weights(s, w, w_dtype, widen_scratch, err);
    return wf ? conv2d_backward_input(ctx, s, dy, wf, dx, err) : -1;
}
