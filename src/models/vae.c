/* VAE weights: binding diffusers names with the shapes VaeConfig implies, random benchmark
 * weights, and the latent sampling helper. The passes are in vae_forward.c. */
#include "models/vae.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "models/vae_internal.h"

static int check_config(const VaeConfig *cfg, Error *err) {
    if (cfg->num_levels < 1 || cfg->num_levels > UNET_MAX_LEVELS)
        return error_set(err, "VAE config: %d levels (1..%d supported)", cfg->num_levels,
                         UNET_MAX_LEVELS);
    if (cfg->layers_per_block < 1 || cfg->layers_per_block + 1 > VAE_MAX_LAYERS)
        return error_set(err, "VAE config: layers_per_block %d (1..%d supported)",
                         cfg->layers_per_block, VAE_MAX_LAYERS - 1);
    if (cfg->norm_num_groups < 1)
        return error_set(err, "VAE config: norm_num_groups %d", cfg->norm_num_groups);
    if (cfg->in_channels < 1 || cfg->out_channels < 1 || cfg->latent_channels < 1)
        return error_set(err, "VAE config: channels in %d, out %d, latent %d", cfg->in_channels,
                         cfg->out_channels, cfg->latent_channels);
    for (int i = 0; i < cfg->num_levels; i++)
        if (cfg->block_out_channels[i] < 1 ||
            cfg->block_out_channels[i] % cfg->norm_num_groups != 0)
            return error_set(err,
                             "VAE config: level %d has %d channels, not a multiple of the %d "
                             "GroupNorm groups",
                             i, cfg->block_out_channels[i], cfg->norm_num_groups);
    return 0;
}

/* The whole structure is walked once, either binding weights from `set` or (set NULL)
 * filling them with random values, so the two cannot disagree on a shape. */
typedef struct Binder {
    const TensorSet *set;
    WeightPool *pool;
    uint64_t seed;
} Binder;

static int conv(Binder *b, VaeConv *c, const char *name, int in_ch, int out_ch, int kernel,
                Error *err) {
    if (b->set)
        return vae_conv_bind(c, b->set, b->pool, name, in_ch, out_ch, kernel, err);
    return vae_conv_random(c, b->pool, in_ch, out_ch, kernel, b->seed += 2, err);
}

static int resnet(Binder *b, ResnetBlock *rb, const VaeConfig *cfg, const char *name, int in_ch,
                  int out_ch, Error *err) {
    if (b->set)
        return resnet_block_bind(rb, b->set, name, in_ch, out_ch, 0, cfg->norm_num_groups,
                                 cfg->norm_eps, b->pool, err);
    return resnet_block_random(rb, in_ch, out_ch, 0, cfg->norm_num_groups, cfg->norm_eps,
                               b->seed += 16, b->pool, err);
}

static int mid(Binder *b, VaeMidBlock *m, const VaeConfig *cfg, const char *name, Error *err) {
    if (b->set)
        return vae_mid_bind(m, b->set, b->pool, name, cfg, err);
    int ch = cfg->block_out_channels[cfg->num_levels - 1];
    return vae_mid_random(m, b->pool, cfg, ch, b->seed += 64, err);
}

static int norm(Binder *b, WeightRef *w, WeightRef *bias, const char *name, int ch, Error *err) {
    if (b->set)
        return weight_ref_bindf(w, b->set, b->pool, 0, err, 1, ch, 0, 0, 0, "%s.weight", name) ||
               weight_ref_bindf(bias, b->set, b->pool, 0, err, 1, ch, 0, 0, 0, "%s.bias", name);
    return weight_ref_fill(w, ch, 1.0f, b->pool, err) ||
           weight_ref_fill(bias, ch, 0.0f, b->pool, err);
}

static int build_encoder(Binder *b, VaeEncoder *e, const VaeConfig *cfg, Error *err) {
    const int *ch = cfg->block_out_channels;
    int L = cfg->num_levels, lat2 = 2 * cfg->latent_channels;
    char name[160];
    if (conv(b, &e->conv_in, "encoder.conv_in", cfg->in_channels, ch[0], 3, err) != 0)
        return -1;
    int prev = ch[0];
    for (int i = 0; i < L; i++) {
        for (int j = 0; j < cfg->layers_per_block; j++) {
            snprintf(name, sizeof name, "encoder.down_blocks.%d.resnets.%d", i, j);
            if (resnet(b, &e->resnets[i][j], cfg, name, j == 0 ? prev : ch[i], ch[i], err) != 0)
                return -1;
        }
        prev = ch[i];
        if (i < L - 1) {
            snprintf(name, sizeof name, "encoder.down_blocks.%d.downsamplers.0.conv", i);
            if (conv(b, &e->downsample[i], name, ch[i], ch[i], 3, err) != 0)
                return -1;
        }
    }
    if (mid(b, &e->mid, cfg, "encoder.mid_block", err) != 0 ||
        norm(b, &e->norm_out_w, &e->norm_out_b, "encoder.conv_norm_out", ch[L - 1], err) != 0 ||
        conv(b, &e->conv_out, "encoder.conv_out", ch[L - 1], lat2, 3, err) != 0 ||
        conv(b, &e->quant_conv, "quant_conv", lat2, lat2, 1, err) != 0)
        return -1;
    return 0;
}

static int build_decoder(Binder *b, VaeDecoder *d, const VaeConfig *cfg, Error *err) {
    const int *ch = cfg->block_out_channels;
    int L = cfg->num_levels, lat = cfg->latent_channels;
    char name[160];
    if (conv(b, &d->post_quant_conv, "post_quant_conv", lat, lat, 1, err) != 0 ||
        conv(b, &d->conv_in, "decoder.conv_in", lat, ch[L - 1], 3, err) != 0 ||
        mid(b, &d->mid, cfg, "decoder.mid_block", err) != 0)
        return -1;
    int prev = ch[L - 1];
    for (int j = 0; j < L; j++) {
        int out = ch[L - 1 - j];
        for (int r = 0; r < cfg->layers_per_block + 1; r++) {
            snprintf(name, sizeof name, "decoder.up_blocks.%d.resnets.%d", j, r);
            if (resnet(b, &d->resnets[j][r], cfg, name, r == 0 ? prev : out, out, err) != 0)
                return -1;
        }
        prev = out;
        if (j < L - 1) {
            snprintf(name, sizeof name, "decoder.up_blocks.%d.upsamplers.0.conv", j);
            if (conv(b, &d->upsample[j], name, out, out, 3, err) != 0)
                return -1;
        }
    }
    if (norm(b, &d->norm_out_w, &d->norm_out_b, "decoder.conv_norm_out", ch[0], err) != 0 ||
        conv(b, &d->conv_out, "decoder.conv_out", ch[0], cfg->out_channels, 3, err) != 0)
        return -1;
    return 0;
}

static int build(Vae *vae, const TensorSet *set, const VaeConfig *cfg, VaeParts parts,
                 DType storage, uint64_t seed, Error *err) {
    memset(vae, 0, sizeof *vae);
    if (storage != DTYPE_F32 && storage != DTYPE_F16 && storage != DTYPE_BF16)
        return error_set(err, "VAE: weight storage must be float32, float16 or bfloat16, not %s",
                         dtype_display_name(storage));
    if (check_config(cfg, err) != 0)
        return -1;
    if ((parts & VAE_BOTH) == 0)
        return error_set(err, "VAE: neither encoder nor decoder asked for");
    vae->cfg = *cfg;
    vae->parts = parts;
    weight_pool_init(&vae->pool, storage);
    Binder b = {set, &vae->pool, seed};
    if (((parts & VAE_ENCODER) && build_encoder(&b, &vae->enc, cfg, err) != 0) ||
        ((parts & VAE_DECODER) && build_decoder(&b, &vae->dec, cfg, err) != 0)) {
        weight_pool_free(&vae->pool);
        return error_prefix(err, "VAE: ");
    }
    return 0;
}

int vae_load(Vae *vae, const TensorSet *set, const VaeConfig *cfg, VaeParts parts, DType storage,
             Error *err) {
    return build(vae, set, cfg, parts, storage, 0, err);
}

int vae_init_random(Vae *vae, const VaeConfig *cfg, VaeParts parts, DType storage, uint64_t seed,
                    Error *err) {
    return build(vae, NULL, cfg, parts, storage, seed, err);
}

void vae_free(Vae *vae) {
    weight_pool_free(&vae->pool);
    memset(vae, 0, sizeof *vae);
}

int vae_downscale_factor(const VaeConfig *cfg) {
    return 1 << (cfg->num_levels - 1);
}

void vae_latent_size(const VaeConfig *cfg, int h, int w, int *lh, int *lw) {
    /* each downsample: pad bottom/right by 1, 3x3 kernel, stride 2 */
    for (int i = 0; i < cfg->num_levels - 1; i++) {
        h = (h + 1 - 3) / 2 + 1;
        w = (w + 1 - 3) / 2 + 1;
    }
    *lh = h;
    *lw = w;
}

void vae_sample_latents(size_t n, const float *mean, const float *logvar, const float *noise,
                        float scaling_factor, float *latents) {
    for (size_t i = 0; i < n; i++)
        latents[i] = (mean[i] + expf(0.5f * logvar[i]) * noise[i]) * scaling_factor;
}
