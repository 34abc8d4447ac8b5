/* CLIP text transformer forward and input-gradient backward: see clip_text.h. */
#include "models/clip_text.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/activation.h"
#include "nn/attention.h"
#include "nn/linear.h"
#include "nn/norm.h"

int clip_text_layers_run(const ClipConfig *cfg, int clip_skip, int *layers_run, Error *err) {
    if (clip_skip < 0 || clip_skip > cfg->num_layers + 1)
        return error_set(err,
                         "clip_skip %d: the text encoder has %d layers, so clip_skip can be 1..%d "
                         "(1 = the last layer, %d = the embeddings)",
                         clip_skip, cfg->num_layers, cfg->num_layers + 1, cfg->num_layers + 1);
    *layers_run = cfg->num_layers + 1 - (clip_skip < 1 ? 1 : clip_skip);
    return 0;
}

/* Float counts of the run's regions, in the order they are carved. */
typedef struct RunSizes {
    size_t x, stats, qkv, lse, pre, final_stats, s_b, s_g, tmp;
} RunSizes;

static RunSizes run_sizes(const ClipConfig *c, int batch, int seq, int layers_run, bool bwd) {
    RunSizes s;
    size_t rows = (size_t)batch * (size_t)seq, w = (size_t)c->hidden_size,
           f = (size_t)c->intermediate_size, L = bwd ? (size_t)layers_run : 1;
    s.x = (bwd ? (size_t)layers_run + 1 : 2) * rows * w;
    s.stats = L * rows * 2; /* each of stats1, stats2 */
    s.qkv = L * rows * w;   /* each of q, k, v, attn, h */
    s.lse = L * (size_t)batch * (size_t)c->num_heads * (size_t)seq;
    s.pre = L * rows * f;
    s.final_stats = rows * 2;
    s.s_b = f > w ? f : w;
    s.s_g = w;                      /* each of s_g, s_beta */
    s.tmp = rows * (f > w ? f : w); /* each of t0..t3 */
    return s;
}

static size_t run_total(const RunSizes *s) {
    return s->x + 2 * s->stats + 5 * s->qkv + s->lse + s->pre + s->final_stats + s->s_b +
           2 * s->s_g + 4 * s->tmp;
}

size_t clip_text_run_bytes(const ClipText *m, int batch, int seq, int layers_run,
                           bool with_backward) {
    RunSizes s = run_sizes(&m->cfg, batch, seq, layers_run, with_backward);
    return run_total(&s) * sizeof(float) + (size_t)batch * (size_t)seq * sizeof(int32_t);
}

int clip_text_run_init(ClipTextRun *run, const ClipText *m, int batch, int seq, int clip_skip,
                       bool with_backward, Error *err) {
    memset(run, 0, sizeof *run);
    const ClipConfig *c = &m->cfg;
    if (batch <= 0 || seq <= 0 || seq > c->max_positions)
        return error_set(err, "text encoder: batch %d of %d tokens (the model has %d positions)",
                         batch, seq, c->max_positions);
    int layers_run = 0;
    if (clip_text_layers_run(c, clip_skip, &layers_run, err) != 0)
        return -1;
    RunSizes s = run_sizes(c, batch, seq, layers_run, with_backward);
    size_t total = run_total(&s);
    run->block = malloc(total * sizeof(float));
    run->ids = malloc((size_t)batch * (size_t)seq * sizeof(int32_t));
    if (!run->block || !run->ids) {
        clip_text_run_free(run);
        return error_set(err, "text encoder: out of memory for activations (%zu bytes, batch %d)",
                         clip_text_run_bytes(m, batch, seq, layers_run, with_backward), batch);
    }
    run->floats = total;
    run->batch = batch;
    run->seq = seq;
    run->layers_run = layers_run;
    run->with_backward = with_backward;
    run->width = c->hidden_size;
    run->inter = c->intermediate_size;
    run->heads = c->num_heads;
    float *p = run->block;
#define CARVE(field, n)                                                                            \
    run->field = p;                                                                                \
    p += (n)
    CARVE(x, s.x);
    CARVE(stats1, s.stats);
    CARVE(stats2, s.stats);
    CARVE(q, s.qkv);
    CARVE(k, s.qkv);
    CARVE(v, s.qkv);
    CARVE(attn, s.qkv);
    CARVE(h, s.qkv);
    CARVE(lse, s.lse);
    CARVE(pre, s.pre);
    CARVE(final_stats, s.final_stats);
    CARVE(s_b, s.s_b);
    CARVE(s_g, s.s_g);
    CARVE(s_beta, s.s_g);
    CARVE(t0, s.tmp);
    CARVE(t1, s.tmp);
    CARVE(t2, s.tmp);
    CARVE(t3, s.tmp);
#undef CARVE
    return 0;
}

void clip_text_run_free(ClipTextRun *run) {
    if (!run)
        return;
    free(run->block);
    free(run->ids);
    memset(run, 0, sizeof *run);
}

/* Per-layer slices of the run: layer i's saved tensors, or the single rolling set. */
typedef struct LayerSlots {
    float *x_in, *x_out, *stats1, *stats2, *q, *k, *v, *attn, *lse, *h, *pre;
} LayerSlots;

static LayerSlots layer_slots(const ClipTextRun *run, int i) {
    size_t rows = (size_t)run->batch * (size_t)run->seq, rw = rows * (size_t)run->width;
    size_t j = run->with_backward ? (size_t)i : 0;
    LayerSlots s;
    /* without a tape the layer input and output alternate between two buffers */
    size_t xin = run->with_backward ? (size_t)i : (size_t)(i & 1);
    size_t xout = run->with_backward ? (size_t)i + 1 : (size_t)((i + 1) & 1);
    s.x_in = run->x + xin * rw;
    s.x_out = run->x + xout * rw;
    s.stats1 = run->stats1 + j * rows * 2;
    s.stats2 = run->stats2 + j * rows * 2;
    s.q = run->q + j * rw;
    s.k = run->k + j * rw;
    s.v = run->v + j * rw;
    s.attn = run->attn + j * rw;
    s.h = run->h + j * rw;
    s.lse = run->lse + j * (size_t)run->batch * (size_t)run->heads * (size_t)run->seq;
    s.pre = run->pre + j * rows * (size_t)run->inter;
    return s;
}

/* The input of the final norm: the output of the last layer run (x_0 when none runs). */
static float *final_input(const ClipTextRun *run) {
    size_t rw = (size_t)run->batch * (size_t)run->seq * (size_t)run->width;
    size_t slot = run->with_backward ? (size_t)run->layers_run : (size_t)(run->layers_run & 1);
    return run->x + slot * rw;
}

static AttentionShape attn_shape(const ClipTextRun *run) {
    AttentionShape a;
    a.batch = run->batch;
    a.heads = run->heads;
    a.q_len = run->seq;
    a.kv_len = run->seq;
    a.head_dim = run->width / run->heads;
    a.scale = 1.0f / sqrtf((float)a.head_dim);
    a.causal = 1;
    return a;
}

static int lin(NnContext *ctx, const ClipTextRun *run, int rows, int in, int out, const float *x,
               const WeightRef *w, const WeightRef *b, float *y, Error *err) {
    /* half weights are widened tile by tile inside the product (nn/gemm_half.h) */
    const float *bf = weight_ref_f32(b, run->s_b);
    return linear_forward_typed(ctx, rows, in, out, x, w->data, w->dtype, bf, y, err);
}

static int embed(const ClipText *m, ClipTextRun *run, const int32_t *ids, const float *extra_rows,
                 int n_extra, float *x, Error *err) {
    const ClipConfig *c = &m->cfg;
    size_t w = (size_t)c->hidden_size, esz = dtype_size(m->token_embedding.dtype);
    float *pos = run->t0; /* one position row, widened */
    for (int b = 0; b < run->batch; b++) {
        for (int t = 0; t < run->seq; t++) {
            size_t r = (size_t)b * (size_t)run->seq + (size_t)t;
            int32_t id = ids[r];
            float *dst = x + r * w;
            if (id >= 0 && id < c->vocab_size) {
                const char *src = (const char *)m->token_embedding.data + (size_t)id * w * esz;
                dtype_convert_to_f32(m->token_embedding.dtype, src, dst, w);
            } else if (id >= c->vocab_size && id < c->vocab_size + n_extra && extra_rows) {
                memcpy(dst, extra_rows + (size_t)(id - c->vocab_size) * w, w * sizeof(float));
            } else {
                return error_set(err,
                                 "text encoder: token id %d at sequence %d position %d is outside "
                                 "the vocabulary (%d ids) and the %d added token(s)",
                                 id, b, t, c->vocab_size, n_extra);
            }
            size_t psz = dtype_size(m->position_embedding.dtype);
            dtype_convert_to_f32(m->position_embedding.dtype,
                                 (const char *)m->position_embedding.data + (size_t)t * w * psz,
                                 pos, w);
            for (size_t j = 0; j < w; j++)
                dst[j] += pos[j];
            run->ids[r] = id;
        }
    }
    return 0;
}

static void activation_forward(ClipActivation act, size_t n, const float *x, float *y) {
    if (act == CLIP_ACT_GELU)
        gelu_forward(n, x, y);
    else
        quick_gelu_forward(n, x, y);
}

static void activation_backward(ClipActivation act, size_t n, const float *x, const float *dy,
                                float *dx) {
    if (act == CLIP_ACT_GELU)
        gelu_backward_input(n, x, dy, dx);
    else
        quick_gelu_backward_input(n, x, dy, dx);
}

static void add_into(size_t n, const float *a, const float *b, float *y) {
    for (size_t i = 0; i < n; i++)
        y[i] = a[i] + b[i];
}

static int layer_forward(NnContext *ctx, const ClipText *m, ClipTextRun *run,
                         const ClipTextLayer *l, const LayerSlots *s, Error *err) {
    const ClipConfig *c = &m->cfg;
    int rows = run->batch * run->seq, w = c->hidden_size, f = c->intermediate_size;
    size_t rw = (size_t)rows * (size_t)w;
    float *a = run->t0, *t = run->t1;
    layer_norm_forward(ctx, rows, w, c->layer_norm_eps, s->x_in,
                       weight_ref_f32(&l->ln1_w, run->s_g), weight_ref_f32(&l->ln1_b, run->s_beta),
                       a, s->stats1);
    if (lin(ctx, run, rows, w, w, a, &l->q_w, &l->q_b, s->q, err) ||
        lin(ctx, run, rows, w, w, a, &l->k_w, &l->k_b, s->k, err) ||
        lin(ctx, run, rows, w, w, a, &l->v_w, &l->v_b, s->v, err))
        return -1;
    AttentionShape as = attn_shape(run);
    if (attention_forward(ctx, &as, s->q, s->k, s->v, s->attn, s->lse, err) != 0 ||
        lin(ctx, run, rows, w, w, s->attn, &l->o_w, &l->o_b, t, err) != 0)
        return -1;
    add_into(rw, s->x_in, t, s->h);
    layer_norm_forward(ctx, rows, w, c->layer_norm_eps, s->h, weight_ref_f32(&l->ln2_w, run->s_g),
                       weight_ref_f32(&l->ln2_b, run->s_beta), a, s->stats2);
    if (lin(ctx, run, rows, w, f, a, &l->fc1_w, &l->fc1_b, s->pre, err) != 0)
        return -1;
    activation_forward(c->activation, (size_t)rows * (size_t)f, s->pre, t);
    if (lin(ctx, run, rows, f, w, t, &l->fc2_w, &l->fc2_b, a, err) != 0)
        return -1;
    add_into(rw, s->h, a, s->x_out);
    return 0;
}

int clip_text_forward(NnContext *ctx, const ClipText *m, ClipTextRun *run, const int32_t *ids,
                      const float *extra_rows, int n_extra, float *hidden, Error *err) {
    const ClipConfig *c = &m->cfg;
    if (run->width != c->hidden_size || run->inter != c->intermediate_size)
        return error_set(err, "text encoder: the activation run was made for another model");
    if (embed(m, run, ids, extra_rows, n_extra, run->x, err) != 0)
        return -1;
    for (int i = 0; i < run->layers_run; i++) {
        LayerSlots s = layer_slots(run, i);
        if (layer_forward(ctx, m, run, &m->layers[i], &s, err) != 0)
            return error_prefix(err, "text encoder layer %d", i);
    }
    int rows = run->batch * run->seq;
    layer_norm_forward(ctx, rows, c->hidden_size, c->layer_norm_eps, final_input(run),
                       weight_ref_f32(&m->final_ln_w, run->s_g),
                       weight_ref_f32(&m->final_ln_b, run->s_beta), hidden, run->final_stats);
    return 0;
}

static int lin_back(NnContext *ctx, const ClipTextRun *run, int rows, int in, int out,
                    const float *dy, const WeightRef *w, float *dx, int accumulate, Error *err) {
    return linear_backward_input_typed(ctx, rows, in, out, dy, w->data, w->dtype, dx, accumulate,
                                       err);
}

/* dx (d loss / d x_out on entry) becomes d loss / d x_in. */
static int layer_backward(NnContext *ctx, const ClipText *m, const ClipTextRun *run,
                          const ClipTextLayer *l, const LayerSlots *s, float *dx, Error *err) {
    const ClipConfig *c = &m->cfg;
    int rows = run->batch * run->seq, w = c->hidden_size, f = c->intermediate_size;
    size_t rw = (size_t)rows * (size_t)w;
    float *dg = run->t0, *da = run->t1, *dq = run->t2, *dk = run->t3;
    /* x_out = h + fc2(act(fc1(ln2(h)))) */
    if (lin_back(ctx, run, rows, f, w, dx, &l->fc2_w, dg, 0, err) != 0)
        return -1;
    activation_backward(c->activation, (size_t)rows * (size_t)f, s->pre, dg, dg);
    if (lin_back(ctx, run, rows, w, f, dg, &l->fc1_w, da, 0, err) != 0)
        return -1;
    layer_norm_backward_input(ctx, rows, w, s->h, weight_ref_f32(&l->ln2_w, run->s_g), s->stats2,
                              da, dg);
    for (size_t i = 0; i < rw; i++)
        dx[i] += dg[i]; /* dx is now d loss / d h */
    /* h = x_in + out_proj(attention(q, k, v)), q/k/v = proj(ln1(x_in)) */
    if (lin_back(ctx, run, rows, w, w, dx, &l->o_w, da, 0, err) != 0)
        return -1;
    float *dv = dg;
    AttentionShape as = attn_shape(run);
    if (attention_backward_input(ctx, &as, s->q, s->k, s->v, s->attn, s->lse, da, dq, dk, dv,
                                 err) != 0)
        return -1;
    if (lin_back(ctx, run, rows, w, w, dq, &l->q_w, da, 0, err) != 0 ||
        lin_back(ctx, run, rows, w, w, dk, &l->k_w, da, 1, err) != 0 ||
        lin_back(ctx, run, rows, w, w, dv, &l->v_w, da, 1, err) != 0)
        return -1;
    layer_norm_backward_input(ctx, rows, w, s->x_in, weight_ref_f32(&l->ln1_w, run->s_g), s->stats1,
                              da, dq);
    for (size_t i = 0; i < rw; i++)
        dx[i] += dq[i];
    return 0;
}

int clip_text_backward_positions(NnContext *ctx, const ClipText *m, const ClipTextRun *run,
                                 const float *d_hidden, float *d_embed, Error *err) {
    const ClipConfig *c = &m->cfg;
    if (!run->with_backward)
        return error_set(err, "text encoder backward: the run was made for forward only");
    int rows = run->batch * run->seq;
    layer_norm_backward_input(ctx, rows, c->hidden_size, final_input(run),
                              weight_ref_f32(&m->final_ln_w, run->s_g), run->final_stats, d_hidden,
                              d_embed);
    for (int i = run->layers_run - 1; i >= 0; i--) {
        LayerSlots s = layer_slots(run, i);
        if (layer_backward(ctx, m, run, &m->layers[i], &s, d_embed, err) != 0)
            return error_prefix(err, "text encoder layer %d backward", i);
    }
    return 0;
}

int clip_text_backward_input(NnContext *ctx, const ClipText *m, const ClipTextRun *run,
                             const float *d_hidden, ClipRowGrads *out, Error *err) {
    memset(out, 0, sizeof *out);
    size_t n = (size_t)run->batch * (size_t)run->seq * (size_t)run->width;
    float *d_embed = malloc(n * sizeof *d_embed);
    if (!d_embed)
        return error_set(err, "text encoder backward: out of memory");
    int rc = clip_text_backward_positions(ctx, m, run, d_hidden, d_embed, err);
    if (rc == 0)
        rc = clip_row_grads_gather(run->ids, run->batch * run->seq, run->width, d_embed, out, err);
    free(d_embed);
    return rc;
}
