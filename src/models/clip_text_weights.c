/* CLIP text encoder weights (binding, random models) and row gradients: see clip_text.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/clip_text.h"

#define P "text_model."

static int bind_layer(ClipTextLayer *l, const TensorSet *set, const ClipConfig *c, int i,
                      WeightPool *pool, Error *err) {
    int64_t w = c->hidden_size, f = c->intermediate_size;
    int rc = 0;
#define B1(field, n, name)                                                                         \
    rc = rc ? rc                                                                                   \
            : weight_ref_bindf(&l->field, set, pool, 0, err, 1, n, 0, 0, 0,                        \
                               P "encoder.layers.%d." name, i)
#define B2(field, o, in, name)                                                                     \
    rc = rc ? rc                                                                                   \
            : weight_ref_bindf(&l->field, set, pool, 0, err, 2, o, in, 0, 0,                       \
                               P "encoder.layers.%d." name, i)
    B1(ln1_w, w, "layer_norm1.weight");
    B1(ln1_b, w, "layer_norm1.bias");
    B2(q_w, w, w, "self_attn.q_proj.weight");
    B1(q_b, w, "self_attn.q_proj.bias");
    B2(k_w, w, w, "self_attn.k_proj.weight");
    B1(k_b, w, "self_attn.k_proj.bias");
    B2(v_w, w, w, "self_attn.v_proj.weight");
    B1(v_b, w, "self_attn.v_proj.bias");
    B2(o_w, w, w, "self_attn.out_proj.weight");
    B1(o_b, w, "self_attn.out_proj.bias");
    B1(ln2_w, w, "layer_norm2.weight");
    B1(ln2_b, w, "layer_norm2.bias");
    B2(fc1_w, f, w, "mlp.fc1.weight");
    B1(fc1_b, f, "mlp.fc1.bias");
    B2(fc2_w, w, f, "mlp.fc2.weight");
    B1(fc2_b, w, "mlp.fc2.bias");
#undef B1
#undef B2
    return rc;
}

static int check_config(const ClipConfig *c, Error *err) {
    if (c->hidden_size <= 0 || c->num_layers < 0 || c->num_heads <= 0 ||
        c->intermediate_size <= 0 || c->max_positions <= 0 || c->vocab_size <= 0)
        return error_set(err,
                         "text encoder config: width %d, %d layers, %d heads, mlp %d, %d "
                         "positions, vocabulary %d: every value must be positive",
                         c->hidden_size, c->num_layers, c->num_heads, c->intermediate_size,
                         c->max_positions, c->vocab_size);
    if (c->hidden_size % c->num_heads != 0)
        return error_set(err, "text encoder config: %d heads do not divide width %d", c->num_heads,
                         c->hidden_size);
    if (!(c->layer_norm_eps > 0.0f))
        return error_set(err, "text encoder config: layer_norm_eps %g must be positive",
                         (double)c->layer_norm_eps);
    return 0;
}

static int alloc_layers(ClipText *m, const ClipConfig *cfg, DType storage, Error *err) {
    memset(m, 0, sizeof *m);
    if (check_config(cfg, err) != 0)
        return -1;
    m->cfg = *cfg;
    weight_pool_init(&m->pool, storage);
    if (cfg->num_layers > 0) {
        m->layers = calloc((size_t)cfg->num_layers, sizeof *m->layers);
        if (!m->layers)
            return error_set(err, "text encoder: out of memory for %d layers", cfg->num_layers);
    }
    return 0;
}

int clip_text_bind(ClipText *m, const TensorSet *set, const ClipConfig *cfg, DType storage,
                   Error *err) {
    if (alloc_layers(m, cfg, storage, err) != 0)
        return -1;
    int64_t w = cfg->hidden_size;
    int rc = weight_ref_bindf(&m->token_embedding, set, &m->pool, 0, err, 2, cfg->vocab_size, w, 0,
                              0, P "embeddings.token_embedding.weight");
    rc = rc ? rc
            : weight_ref_bindf(&m->position_embedding, set, &m->pool, 0, err, 2, cfg->max_positions,
                               w, 0, 0, P "embeddings.position_embedding.weight");
    for (int i = 0; rc == 0 && i < cfg->num_layers; i++)
        rc = bind_layer(&m->layers[i], set, cfg, i, &m->pool, err);
    rc = rc ? rc
            : weight_ref_bindf(&m->final_ln_w, set, &m->pool, 0, err, 1, w, 0, 0, 0,
                               P "final_layer_norm.weight");
    rc = rc ? rc
            : weight_ref_bindf(&m->final_ln_b, set, &m->pool, 0, err, 1, w, 0, 0, 0,
                               P "final_layer_norm.bias");
    if (rc != 0) {
        error_prefix(err, "text encoder");
        clip_text_free(m);
    }
    return rc;
}

int clip_text_random(ClipText *m, const ClipConfig *cfg, uint64_t seed, Error *err) {
    if (alloc_layers(m, cfg, DTYPE_F32, err) != 0)
        return -1;
    size_t w = (size_t)cfg->hidden_size, f = (size_t)cfg->intermediate_size;
    float bw = 1.0f / sqrtf((float)w), bf = 1.0f / sqrtf((float)f);
    WeightPool *pool = &m->pool;
    /* embeddings as transformers initialises them: normal(0, 0.02); a uniform of the same
     * spread is enough for timing */
    int rc = weight_ref_random(&m->token_embedding, (size_t)cfg->vocab_size * w, 0.035f, seed, pool,
                               err);
    rc = rc ? rc
            : weight_ref_random(&m->position_embedding, (size_t)cfg->max_positions * w, 0.035f,
                                seed + 1, pool, err);
    for (int i = 0; rc == 0 && i < cfg->num_layers; i++) {
        ClipTextLayer *l = &m->layers[i];
        uint64_t s = seed + 100 + 20 * (uint64_t)i;
        rc = weight_ref_fill(&l->ln1_w, w, 1.0f, pool, err);
        rc = rc ? rc : weight_ref_fill(&l->ln1_b, w, 0.0f, pool, err);
        rc = rc ? rc : weight_ref_random(&l->q_w, w * w, bw, s + 1, pool, err);
        rc = rc ? rc : weight_ref_random(&l->q_b, w, bw, s + 2, pool, err);
        rc = rc ? rc : weight_ref_random(&l->k_w, w * w, bw, s + 3, pool, err);
        rc = rc ? rc : weight_ref_random(&l->k_b, w, bw, s + 4, pool, err);
        rc = rc ? rc : weight_ref_random(&l->v_w, w * w, bw, s + 5, pool, err);
        rc = rc ? rc : weight_ref_random(&l->v_b, w, bw, s + 6, pool, err);
        rc = rc ? rc : weight_ref_random(&l->o_w, w * w, bw, s + 7, pool, err);
        rc = rc ? rc : weight_ref_random(&l->o_b, w, bw, s + 8, pool, err);
        rc = rc ? rc : weight_ref_fill(&l->ln2_w, w, 1.0f, pool, err);
        rc = rc ? rc : weight_ref_fill(&l->ln2_b, w, 0.0f, pool, err);
        rc = rc ? rc : weight_ref_random(&l->fc1_w, f * w, bw, s + 9, pool, err);
        rc = rc ? rc : weight_ref_random(&l->fc1_b, f, bw, s + 10, pool, err);
        rc = rc ? rc : weight_ref_random(&l->fc2_w, w * f, bf, s + 11, pool, err);
        rc = rc ? rc : weight_ref_random(&l->fc2_b, w, bf, s + 12, pool, err);
    }
    rc = rc ? rc : weight_ref_fill(&m->final_ln_w, w, 1.0f, pool, err);
    rc = rc ? rc : weight_ref_fill(&m->final_ln_b, w, 0.0f, pool, err);
    if (rc != 0)
        clip_text_free(m);
    return rc;
}

void clip_text_free(ClipText *m) {
    if (!m)
        return;
    free(m->layers);
    weight_pool_free(&m->pool);
    memset(m, 0, sizeof *m);
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

int clip_row_grads_gather(const int32_t *ids, int n, int width, const float *d_embed,
                          ClipRowGrads *out, Error *err) {
    memset(out, 0, sizeof *out);
    out->width = width;
    if (n <= 0)
        return 0;
    int32_t *sorted = malloc((size_t)n * sizeof *sorted);
    if (!sorted)
        return error_set(err, "row gradients: out of memory");
    memcpy(sorted, ids, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_i32);
    int count = 0;
    for (int i = 0; i < n; i++)
        if (i == 0 || sorted[i] != sorted[count - 1])
            sorted[count++] = sorted[i];
    out->ids = sorted;
    out->count = count;
    out->rows = calloc((size_t)count * (size_t)width, sizeof *out->rows);
    if (!out->rows) {
        clip_row_grads_free(out);
        return error_set(err, "row gradients: out of memory for %d rows", count);
    }
    /* positions in order, as torch's embedding backward accumulates them */
    for (int r = 0; r < n; r++) {
        float *dst = (float *)clip_row_grads_find(out, ids[r]);
        const float *src = d_embed + (size_t)r * (size_t)width;
        for (int j = 0; j < width; j++)
            dst[j] += src[j];
    }
    return 0;
}

const float *clip_row_grads_find(const ClipRowGrads *g, int32_t id) {
    int lo = 0, hi = g->count - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (g->ids[mid] == id)
            return g->rows + (size_t)mid * (size_t)g->width;
        if (g->ids[mid] < id)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

double clip_row_grads_norm(const ClipRowGrads *g) {
    double s = 0.0;
    size_t n = (size_t)g->count * (size_t)g->width;
    for (size_t i = 0; i < n; i++)
        s += (double)g->rows[i] * (double)g->rows[i];
    return sqrt(s);
}

void clip_row_grads_free(ClipRowGrads *g) {
    if (!g)
        return;
    free(g->ids);
    free(g->rows);
    memset(g, 0, sizeof *g);
}
