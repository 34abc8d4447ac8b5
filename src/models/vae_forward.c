/* The VAE encoder and decoder passes, one sample at a time through a workspace planned by
 * walking the same structure first. */
#include <stdlib.h>
#include <string.h>

#include "models/vae_internal.h"

static void plan_common(VaePlan *p, const VaeConfig *cfg) {
    int widest = 0;
    for (int i = 0; i < cfg->num_levels; i++)
        if (cfg->block_out_channels[i] > widest)
            widest = cfg->block_out_channels[i];
    p->stats = 2 * (size_t)cfg->norm_num_groups;
    if (p->wscratch < 2 * (size_t)widest)
        p->wscratch = 2 * (size_t)widest;
}

static void encode_plan(const Vae *vae, int h, int w, VaePlan *p) {
    const VaeEncoder *e = &vae->enc;
    const VaeConfig *cfg = &vae->cfg;
    memset(p, 0, sizeof *p);
    plan_common(p, cfg);
    /* conv_in reads the caller's image and writes act[0] */
    p->cur = 1;
    vae_plan_write(p, (size_t)e->conv_in.out_ch * h * w);
    p->wscratch = p->wscratch > e->conv_in.w.numel + e->conv_in.b.numel
                      ? p->wscratch
                      : e->conv_in.w.numel + e->conv_in.b.numel;
    for (int i = 0; i < cfg->num_levels; i++) {
        for (int j = 0; j < cfg->layers_per_block; j++)
            vae_plan_resnet(p, &e->resnets[i][j], h, w);
        if (i < cfg->num_levels - 1) {
            int oh = (h - 2) / 2 + 1, ow = (w - 2) / 2 + 1;
            vae_plan_conv(p, &e->downsample[i], h, w, oh, ow);
            h = oh;
            w = ow;
        }
    }
    vae_plan_mid(p, &e->mid, h, w);
    size_t top = (size_t)cfg->block_out_channels[cfg->num_levels - 1] * h * w;
    vae_plan_step(p, top, top); /* GroupNorm + SiLU */
    vae_plan_conv(p, &e->conv_out, h, w, h, w);
    vae_plan_conv(p, &e->quant_conv, h, w, h, w);
}

static void decode_plan(const Vae *vae, int h, int w, VaePlan *p) {
    const VaeDecoder *d = &vae->dec;
    const VaeConfig *cfg = &vae->cfg;
    memset(p, 0, sizeof *p);
    plan_common(p, cfg);
    /* post_quant_conv reads the caller's latents and writes act[0] */
    p->cur = 1;
    vae_plan_write(p, (size_t)d->post_quant_conv.out_ch * h * w);
    vae_plan_conv(p, &d->conv_in, h, w, h, w);
    vae_plan_mid(p, &d->mid, h, w);
    for (int j = 0; j < cfg->num_levels; j++) {
        for (int r = 0; r < cfg->layers_per_block + 1; r++)
            vae_plan_resnet(p, &d->resnets[j][r], h, w);
        if (j < cfg->num_levels - 1) {
            const VaeConv *up = &d->upsample[j];
            vae_plan_conv(p, up, h, w, 2 * h, 2 * w);
            if (p->scratch < vae_upsample_conv_scratch_floats(up, h, w))
                p->scratch = vae_upsample_conv_scratch_floats(up, h, w);
            if (p->wscratch < vae_upsample_conv_weight_floats(up))
                p->wscratch = vae_upsample_conv_weight_floats(up);
            h *= 2;
            w *= 2;
        }
    }
    size_t bottom = (size_t)cfg->block_out_channels[0] * h * w;
    vae_plan_step(p, bottom, bottom); /* GroupNorm + SiLU */
    /* conv_out writes the caller's image directly; only its input is an activation */
    vae_plan_conv(p, &d->conv_out, h, w, 0, 0);
}

size_t vae_encode_workspace_floats(const Vae *vae, int h, int w) {
    VaePlan p;
    encode_plan(vae, h, w, &p);
    return vae_plan_total(&p);
}

size_t vae_decode_workspace_floats(const Vae *vae, int lh, int lw) {
    VaePlan p;
    decode_plan(vae, lh, lw, &p);
    return vae_plan_total(&p);
}

/* The caller's workspace, or one allocated here (freed by the caller through *owned). */
static int workspace(const VaePlan *p, float *given, float **owned, VaeWork *work, const char *what,
                     Error *err) {
    float *mem = given;
    *owned = NULL;
    if (!mem) {
        size_t floats = vae_plan_total(p);
        mem = malloc(floats * sizeof *mem);
        if (!mem)
            return error_set(err, "%s: out of memory allocating the %.1f MiB activation workspace",
                             what, floats * sizeof(float) / 1048576.0);
        *owned = mem;
    }
    vae_work_carve(p, mem, work);
    return 0;
}

static int encode_sample(NnContext *ctx, const Vae *vae, int h, int w, const float *image,
                         VaeWork *work, float *mean, float *logvar, Error *err) {
    const VaeEncoder *e = &vae->enc;
    const VaeConfig *cfg = &vae->cfg;
    int cur = 0;
    if (vae_conv_forward(ctx, &e->conv_in, 1, h, w, image, work->act[0], work, err) != 0)
        return error_prefix(err, "encoder.conv_in: ");
    for (int i = 0; i < cfg->num_levels; i++) {
        for (int j = 0; j < cfg->layers_per_block; j++)
            if (vae_resnet_forward(ctx, &e->resnets[i][j], h, w, work, &cur, err) != 0)
                return error_prefix(err, "encoder.down_blocks.%d.resnets.%d: ", i, j);
        if (i < cfg->num_levels - 1) {
            if (vae_conv_forward(ctx, &e->downsample[i], 2, h, w, work->act[cur],
                                 work->act[1 - cur], work, err) != 0)
                return error_prefix(err, "encoder.down_blocks.%d.downsamplers.0: ", i);
            cur = 1 - cur;
            h = (h - 2) / 2 + 1;
            w = (w - 2) / 2 + 1;
        }
    }
    if (vae_mid_block_forward(ctx, &e->mid, h, w, work, &cur, err) != 0)
        return error_prefix(err, "encoder.");
    int top = cfg->block_out_channels[cfg->num_levels - 1];
    if (vae_norm_silu(ctx, cfg, &e->norm_out_w, &e->norm_out_b, top, h, w, work->act[cur],
                      work->act[1 - cur], work, err) != 0)
        return error_prefix(err, "encoder.conv_norm_out: ");
    cur = 1 - cur;
    if (vae_conv_forward(ctx, &e->conv_out, 1, h, w, work->act[cur], work->act[1 - cur], work,
                         err) != 0)
        return error_prefix(err, "encoder.conv_out: ");
    cur = 1 - cur;
    if (vae_conv_forward(ctx, &e->quant_conv, 1, h, w, work->act[cur], work->act[1 - cur], work,
                         err) != 0)
        return error_prefix(err, "quant_conv: ");
    cur = 1 - cur;
    /* moments = [mean | logvar] along channels; diffusers clamps logvar to [-30, 20] */
    size_t n = (size_t)cfg->latent_channels * h * w;
    const float *moments = work->act[cur];
    memcpy(mean, moments, n * sizeof *mean);
    for (size_t i = 0; i < n; i++) {
        float v = moments[n + i];
        logvar[i] = v < -30.0f ? -30.0f : v > 20.0f ? 20.0f : v;
    }
    return 0;
}

static int check_size(int batch, int h, int w, int min, const char *what, Error *err) {
    if (batch < 1 || h < min || w < min)
        return error_set(err, "%s: batch %d, size %dx%d (at least %dx%d needed)", what, batch, h, w,
                         min, min);
    return 0;
}

int vae_encode(NnContext *ctx, const Vae *vae, int batch, int h, int w, const float *image,
               float *mean, float *logvar, float *work_mem, Error *err) {
    if (!(vae->parts & VAE_ENCODER))
        return error_set(err, "VAE encode: the encoder was not loaded");
    if (check_size(batch, h, w, vae_downscale_factor(&vae->cfg), "VAE encode", err) != 0)
        return -1;
    VaePlan plan;
    encode_plan(vae, h, w, &plan);
    VaeWork work;
    float *owned;
    if (workspace(&plan, work_mem, &owned, &work, "VAE encode", err) != 0)
        return -1;
    int lh, lw;
    vae_latent_size(&vae->cfg, h, w, &lh, &lw);
    size_t in_n = (size_t)vae->cfg.in_channels * h * w;
    size_t lat_n = (size_t)vae->cfg.latent_channels * lh * lw;
    int rc = 0;
    for (int b = 0; b < batch && rc == 0; b++) {
        rc = encode_sample(ctx, vae, h, w, image + b * in_n, &work, mean + b * lat_n,
                           logvar + b * lat_n, err);
        if (rc != 0)
            error_prefix(err, "VAE encode, sample %d: ", b);
    }
    free(owned);
    return rc;
}

static int decode_sample(NnContext *ctx, const Vae *vae, int h, int w, const float *latents,
                         VaeWork *work, float *image, Error *err) {
    const VaeDecoder *d = &vae->dec;
    const VaeConfig *cfg = &vae->cfg;
    int L = cfg->num_levels, cur = 1;
    if (vae_conv_forward(ctx, &d->post_quant_conv, 1, h, w, latents, work->act[0], work, err) != 0)
        return error_prefix(err, "post_quant_conv: ");
    if (vae_conv_forward(ctx, &d->conv_in, 1, h, w, work->act[0], work->act[1], work, err) != 0)
        return error_prefix(err, "decoder.conv_in: ");
    if (vae_mid_block_forward(ctx, &d->mid, h, w, work, &cur, err) != 0)
        return error_prefix(err, "decoder.");
    for (int j = 0; j < L; j++) {
        for (int r = 0; r < cfg->layers_per_block + 1; r++)
            if (vae_resnet_forward(ctx, &d->resnets[j][r], h, w, work, &cur, err) != 0)
                return error_prefix(err, "decoder.up_blocks.%d.resnets.%d: ", j, r);
        if (j < L - 1) {
            if (vae_upsample_conv_forward(ctx, &d->upsample[j], h, w, work->act[cur],
                                          work->act[1 - cur], work, err) != 0)
                return error_prefix(err, "decoder.up_blocks.%d.upsamplers.0: ", j);
            cur = 1 - cur;
            h *= 2;
            w *= 2;
        }
    }
    if (vae_norm_silu(ctx, cfg, &d->norm_out_w, &d->norm_out_b, cfg->block_out_channels[0], h, w,
                      work->act[cur], work->act[1 - cur], work, err) != 0)
        return error_prefix(err, "decoder.conv_norm_out: ");
    cur = 1 - cur;
    if (vae_conv_forward(ctx, &d->conv_out, 1, h, w, work->act[cur], image, work, err) != 0)
        return error_prefix(err, "decoder.conv_out: ");
    return 0;
}

int vae_decode(NnContext *ctx, const Vae *vae, int batch, int lh, int lw, const float *latents,
               float *image, float *work_mem, Error *err) {
    if (!(vae->parts & VAE_DECODER))
        return error_set(err, "VAE decode: the decoder was not loaded");
    if (check_size(batch, lh, lw, 1, "VAE decode", err) != 0)
        return -1;
    VaePlan plan;
    decode_plan(vae, lh, lw, &plan);
    VaeWork work;
    float *owned;
    if (workspace(&plan, work_mem, &owned, &work, "VAE decode", err) != 0)
        return -1;
    int f = vae_downscale_factor(&vae->cfg);
    size_t lat_n = (size_t)vae->cfg.latent_channels * lh * lw;
    size_t out_n = (size_t)vae->cfg.out_channels * lh * f * lw * f;
    int rc = 0;
    for (int b = 0; b < batch && rc == 0; b++) {
        rc = decode_sample(ctx, vae, lh, lw, latents + b * lat_n, &work, image + b * out_n, err);
        if (rc != 0)
            error_prefix(err, "VAE decode, sample %d: ", b);
    }
    free(owned);
    return rc;
}
