/* Building the UNet: its block list from the config, each block's weights bound by diffusers
 * name (or random, for benchmarks). */
#include "models/unet_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Either binds weights from a set or makes random ones: the builder walks the architecture
 * once and calls this for every layer. */
typedef struct Builder {
    const TensorSet *set; /* NULL: random */
    unsigned long long seed;
    WeightPool *pool;
    Error *err;
} Builder;

static int conv_weights(Builder *bld, WeightRef *w, WeightRef *b, const char *prefix, int out,
                        int in, int k) {
    if (bld->set) {
        int rc = weight_ref_bindf(w, bld->set, bld->pool, 0, bld->err, 4, out, in, k, k,
                                  "%s.weight", prefix);
        return rc ? rc
                  : weight_ref_bindf(b, bld->set, bld->pool, 0, bld->err, 1, out, 0, 0, 0,
                                     "%s.bias", prefix);
    }
    float bound = 1.0f / sqrtf((float)in * k * k);
    bld->seed += 16;
    int rc = weight_ref_random(w, (size_t)out * in * k * k, bound, bld->seed, bld->pool, bld->err);
    return rc ? rc : weight_ref_random(b, (size_t)out, bound, bld->seed + 1, bld->pool, bld->err);
}

static int norm_weights(Builder *bld, WeightRef *w, WeightRef *b, const char *prefix, int ch) {
    if (bld->set) {
        int rc = weight_ref_bindf(w, bld->set, bld->pool, 0, bld->err, 1, ch, 0, 0, 0, "%s.weight",
                                  prefix);
        return rc ? rc
                  : weight_ref_bindf(b, bld->set, bld->pool, 0, bld->err, 1, ch, 0, 0, 0, "%s.bias",
                                     prefix);
    }
    int rc = weight_ref_fill(w, (size_t)ch, 1.0f, bld->pool, bld->err);
    return rc ? rc : weight_ref_fill(b, (size_t)ch, 0.0f, bld->pool, bld->err);
}

static UnetBlock *add_block(Unet *u, int *cap, UnetBlockKind kind, const char *name, int in_ch,
                            int out_ch, int scale, int out_scale, Error *err) {
    if (u->block_count == *cap) {
        int nc = *cap ? *cap * 2 : 64;
        UnetBlock *nb = realloc(u->blocks, (size_t)nc * sizeof *nb);
        if (!nb) {
            error_set(err, "unet: out of memory");
            return NULL;
        }
        u->blocks = nb;
        *cap = nc;
    }
    UnetBlock *b = &u->blocks[u->block_count++];
    memset(b, 0, sizeof *b);
    b->kind = kind;
    snprintf(b->name, sizeof b->name, "%s", name);
    b->in_ch = in_ch;
    b->out_ch = out_ch;
    b->scale = scale;
    b->out_scale = out_scale;
    return b;
}

static int add_resnet(Unet *u, Builder *bld, int *cap, const char *name, int in_ch, int out_ch,
                      int scale, int skip_ch) {
    const UnetConfig *c = &u->cfg;
    UnetBlock *b =
        add_block(u, cap, UB_RESNET, name, in_ch + skip_ch, out_ch, scale, scale, bld->err);
    if (!b)
        return -1;
    b->skip_ch = skip_ch;
    if (bld->set)
        return resnet_block_bind(&b->resnet, bld->set, name, in_ch + skip_ch, out_ch, u->time_dim,
                                 c->norm_num_groups, c->resnet_norm_eps, bld->pool, bld->err);
    bld->seed += 64;
    return resnet_block_random(&b->resnet, in_ch + skip_ch, out_ch, u->time_dim, c->norm_num_groups,
                               c->resnet_norm_eps, bld->seed, bld->pool, bld->err);
}

static int add_transformer(Unet *u, Builder *bld, int *cap, const char *name, int ch, int heads,
                           int scale) {
    const UnetConfig *c = &u->cfg;
    UnetBlock *b = add_block(u, cap, UB_TRANSFORMER, name, ch, ch, scale, scale, bld->err);
    if (!b)
        return -1;
    int depth = c->transformer_depth > 0 ? c->transformer_depth : 1;
    if (bld->set)
        return unet_transformer_bind(
            &b->transformer, bld->set, name, ch, heads, depth, c->cross_attention_dim,
            c->norm_num_groups, c->transformer_norm_eps, c->layer_norm_eps, bld->pool, bld->err);
    bld->seed += 1024;
    return unet_transformer_random(&b->transformer, ch, heads, depth, c->cross_attention_dim,
                                   c->norm_num_groups, c->transformer_norm_eps, c->layer_norm_eps,
                                   bld->seed, bld->pool, bld->err);
}

static int add_conv_block(Unet *u, Builder *bld, int *cap, UnetBlockKind kind, const char *name,
                          int in_ch, int out_ch, int scale, int out_scale) {
    UnetBlock *b = add_block(u, cap, kind, name, in_ch, out_ch, scale, out_scale, bld->err);
    if (!b)
        return -1;
    const char *conv = kind == UB_OUT ? "conv_out" : name;
    if (kind == UB_OUT) {
        b->groups = u->cfg.norm_num_groups;
        b->eps = u->cfg.resnet_norm_eps; /* conv_norm_out uses the config's norm_eps */
        if (norm_weights(bld, &b->norm_w, &b->norm_b, "conv_norm_out", in_ch) != 0)
            return -1;
    }
    return conv_weights(bld, &b->conv_w, &b->conv_b, conv, out_ch, in_ch, 3);
}

/* The down path, mid block and up path in diffusers' order. */
static int build_blocks(Unet *u, Builder *bld) {
    const UnetConfig *c = &u->cfg;
    int L = c->num_levels, lpb = c->layers_per_block, cap = 0;
    const int *ch = c->block_out_channels;
    char name[64];
    if (add_conv_block(u, bld, &cap, UB_CONV_IN, "conv_in", c->in_channels, ch[0], 0, 0) != 0)
        return -1;
    u->blocks[u->block_count - 1].push_skip = true;
    for (int i = 0; i < L; i++) {
        for (int j = 0; j < lpb; j++) {
            snprintf(name, sizeof name, "down_blocks.%d.resnets.%d", i, j);
            if (add_resnet(u, bld, &cap, name, j == 0 ? (i ? ch[i - 1] : ch[0]) : ch[i], ch[i], i,
                           0) != 0)
                return -1;
            if (c->level_has_attention[i]) {
                snprintf(name, sizeof name, "down_blocks.%d.attentions.%d", i, j);
                if (add_transformer(u, bld, &cap, name, ch[i], c->heads[i], i) != 0)
                    return -1;
            }
            u->blocks[u->block_count - 1].push_skip = true;
        }
        if (i + 1 < L) {
            snprintf(name, sizeof name, "down_blocks.%d.downsamplers.0.conv", i);
            if (add_conv_block(u, bld, &cap, UB_DOWNSAMPLE, name, ch[i], ch[i], i, i + 1) != 0)
                return -1;
            u->blocks[u->block_count - 1].push_skip = true;
        }
    }
    int top = ch[L - 1];
    if (add_resnet(u, bld, &cap, "mid_block.resnets.0", top, top, L - 1, 0) != 0)
        return -1;
    if (c->mid_has_attention &&
        add_transformer(u, bld, &cap, "mid_block.attentions.0", top, c->heads[L - 1], L - 1) != 0)
        return -1;
    if (add_resnet(u, bld, &cap, "mid_block.resnets.1", top, top, L - 1, 0) != 0)
        return -1;
    for (int i = 0; i < L; i++) {
        int level = L - 1 - i;
        int out_c = ch[level];
        int prev_out = ch[i ? level + 1 : level];
        int in_c = ch[level ? level - 1 : 0];
        for (int j = 0; j <= lpb; j++) {
            snprintf(name, sizeof name, "up_blocks.%d.resnets.%d", i, j);
            if (add_resnet(u, bld, &cap, name, j == 0 ? prev_out : out_c, out_c, level,
                           j == lpb ? in_c : out_c) != 0)
                return -1;
            if (c->level_has_attention[level]) {
                snprintf(name, sizeof name, "up_blocks.%d.attentions.%d", i, j);
                if (add_transformer(u, bld, &cap, name, out_c, c->heads[level], level) != 0)
                    return -1;
            }
        }
        if (level > 0) {
            snprintf(name, sizeof name, "up_blocks.%d.upsamplers.0.conv", i);
            if (add_conv_block(u, bld, &cap, UB_UPSAMPLE, name, out_c, out_c, level, level - 1) !=
                0)
                return -1;
        }
    }
    return add_conv_block(u, bld, &cap, UB_OUT, "conv_norm_out", ch[0], c->out_channels, 0, 0);
}

/* Checks that every skip popped by an up block has the channels and size it expects. */
static int check_skips(Unet *u, Error *err) {
    int stack[256], depth = 0;
    u->first_transformer = -1;
    for (int k = 0; k < u->block_count; k++) {
        UnetBlock *b = &u->blocks[k];
        if (b->kind == UB_TRANSFORMER && u->first_transformer < 0)
            u->first_transformer = k;
        if (b->skip_ch > 0) {
            if (depth == 0)
                return error_set(err, "unet: %s expects a skip connection; none is left", b->name);
            b->skip_src = stack[--depth];
            UnetBlock *s = &u->blocks[b->skip_src];
            /* the forward reads a skip from the input slot of the block after its source */
            if (b->skip_src + 1 >= u->block_count || u->blocks[b->skip_src + 1].skip_ch > 0)
                return error_set(err, "unet: the skip from %s is not the next block's input",
                                 s->name);
            if (s->out_ch != b->skip_ch || s->out_scale != b->scale)
                return error_set(err,
                                 "unet: %s expects a %d-channel skip at 1/%d size; %s gives %d "
                                 "channels at 1/%d",
                                 b->name, b->skip_ch, 1 << b->scale, s->name, s->out_ch,
                                 1 << s->out_scale);
        }
        if (b->push_skip) {
            if (depth == 256)
                return error_set(err, "unet: too many skip connections");
            stack[depth++] = k;
        }
    }
    if (depth != 0)
        return error_set(err, "unet: %d skip connections are never used", depth);
    if (u->first_transformer < 0)
        return error_set(err, "unet: no cross-attention block: nothing depends on the text");
    return 0;
}

static size_t refs_numel(const WeightRef *r, size_t n) {
    size_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += r[i].numel;
    return s;
}

static void measure(Unet *u) {
    size_t wf = u->time2_w.numel + 2 * (size_t)u->time_dim;
    if (u->time1_w.numel + 2 * (size_t)u->time_dim > wf)
        wf = u->time1_w.numel + 2 * (size_t)u->time_dim;
    size_t params = u->time1_w.numel + u->time1_b.numel + u->time2_w.numel + u->time2_b.numel;
    for (int k = 0; k < u->block_count; k++) {
        UnetBlock *b = &u->blocks[k];
        size_t need;
        if (b->kind == UB_RESNET) {
            need = resnet_block_weight_floats(&b->resnet);
            params += refs_numel(&b->resnet.norm1_w, 12);
        } else if (b->kind == UB_TRANSFORMER) {
            const UnetTransformer *tf = &b->transformer;
            need = unet_transformer_weight_floats(tf);
            params += refs_numel(&tf->norm_w, 6);
            for (int d = 0; d < tf->depth; d++)
                params +=
                    refs_numel(&tf->blocks[d].norm1_w, sizeof(UnetBasicBlock) / sizeof(WeightRef));
        } else {
            size_t vec = (size_t)(b->in_ch > b->out_ch ? b->in_ch : b->out_ch);
            need = b->conv_w.numel + 2 * vec;
            params += refs_numel(&b->conv_w, 4);
        }
        if (need > wf)
            wf = need;
    }
    u->weight_floats = wf;
    u->parameters = params;
}

static int build(const TensorSet *set, const UnetConfig *cfg, DType storage,
                 unsigned long long seed, Unet **out, Error *err) {
    *out = NULL;
    if (storage != DTYPE_F32 && storage != DTYPE_F16 && storage != DTYPE_BF16)
        return error_set(err, "unet: weight storage must be float32, float16 or bfloat16");
    if (cfg->num_levels < 1 || cfg->num_levels > UNET_MAX_LEVELS || cfg->layers_per_block < 1)
        return error_set(err, "unet: config has %d levels and %d layers per block", cfg->num_levels,
                         cfg->layers_per_block);
    Unet *u = calloc(1, sizeof *u);
    if (!u)
        return error_set(err, "unet: out of memory");
    u->cfg = *cfg;
    weight_pool_init(&u->pool, storage);
    u->time_in_dim = cfg->block_out_channels[0];
    u->time_dim = 4 * cfg->block_out_channels[0]; /* diffusers: time_embed_dim */
    Builder bld = {set, seed, &u->pool, err};
    int rc;
    if (set) {
        /* the embedding width from the weights, where it is stored */
        const NamedTensor *t = tensor_set_find(set, "time_embedding.linear_1.weight");
        if (t && t->ndim == 2)
            u->time_dim = (int)t->shape[0];
        rc = weight_ref_bindf(&u->time1_w, set, &u->pool, 0, err, 2, u->time_dim, u->time_in_dim, 0,
                              0, "time_embedding.linear_1.weight");
        rc = rc ? rc
                : weight_ref_bindf(&u->time1_b, set, &u->pool, 0, err, 1, u->time_dim, 0, 0, 0,
                                   "time_embedding.linear_1.bias");
        rc = rc ? rc
                : weight_ref_bindf(&u->time2_w, set, &u->pool, 0, err, 2, u->time_dim, u->time_dim,
                                   0, 0, "time_embedding.linear_2.weight");
        rc = rc ? rc
                : weight_ref_bindf(&u->time2_b, set, &u->pool, 0, err, 1, u->time_dim, 0, 0, 0,
                                   "time_embedding.linear_2.bias");
    } else {
        float b1 = 1.0f / sqrtf((float)u->time_in_dim), b2 = 1.0f / sqrtf((float)u->time_dim);
        size_t td = (size_t)u->time_dim;
        rc = weight_ref_random(&u->time1_w, td * u->time_in_dim, b1, seed + 1, &u->pool, err);
        rc = rc ? rc : weight_ref_random(&u->time1_b, td, b1, seed + 2, &u->pool, err);
        rc = rc ? rc : weight_ref_random(&u->time2_w, td * td, b2, seed + 3, &u->pool, err);
        rc = rc ? rc : weight_ref_random(&u->time2_b, td, b2, seed + 4, &u->pool, err);
    }
    rc = rc ? rc : build_blocks(u, &bld);
    rc = rc ? rc : check_skips(u, err);
    if (rc != 0) {
        unet_free(u);
        return error_prefix(err, "unet: ");
    }
    measure(u);
    *out = u;
    return 0;
}

int unet_load(const TensorSet *weights, const UnetConfig *cfg, DType storage, Unet **out,
              Error *err) {
    return build(weights, cfg, storage, 0, out, err);
}

int unet_create_random(const UnetConfig *cfg, DType storage, unsigned long long seed, Unet **out,
                       Error *err) {
    return build(NULL, cfg, storage, seed ? seed : 1, out, err);
}

void unet_free(Unet *u) {
    if (!u)
        return;
    for (int k = 0; k < u->block_count; k++)
        if (u->blocks[k].kind == UB_TRANSFORMER)
            unet_transformer_free(&u->blocks[k].transformer);
    free(u->blocks);
    weight_pool_free(&u->pool);
    free(u);
}

size_t unet_weight_bytes(const Unet *u) {
    /* f32 weights bound in place live in the caller's tensor set; count what the model
     * holds in its storage precision either way */
    return u->parameters * dtype_size(u->pool.storage);
}

size_t unet_parameter_count(const Unet *u) {
    return u->parameters;
}
