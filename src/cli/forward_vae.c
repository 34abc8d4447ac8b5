/* sdti forward --component vae-encode: image -> mean, logvar;
 *                          vae-decode: latents -> image. */
#include <stdlib.h>
#include <string.h>

#include "cli/forward.h"
#include "models/vae.h"

/* The named 4-D input with `channels` channels, widened to float32 (owned by *owned). */
static int input_4d(const ForwardRequest *req, const TensorSet *in, const char *name, int channels,
                    int min_size, const char *meaning, int64_t shape[4], float **owned,
                    Error *err) {
    const NamedTensor *t = tensor_set_find(in, name);
    if (!t)
        return error_set(err, "%s: no tensor '%s' (--component %s needs %s [batch, %d, H, W])",
                         req->inputs_path, name, req->component, name, channels);
    char s[128];
    if (t->ndim != 4 || t->shape[1] != channels || t->shape[0] < 1 || t->shape[2] < min_size ||
        t->shape[3] < min_size || t->shape[2] > 1 << 16 || t->shape[3] > 1 << 16)
        return error_set(err,
                         "%s: tensor '%s' has shape %s; --component %s needs %s [batch, %d, H, "
                         "W] with H, W >= %d",
                         req->inputs_path, name, tensor_shape_string(t, s, sizeof s),
                         req->component, meaning, channels, min_size);
    if (t->dtype != DTYPE_F32 && t->dtype != DTYPE_F16 && t->dtype != DTYPE_BF16)
        return error_set(err, "%s: tensor '%s' is %s; float32 expected", req->inputs_path, name,
                         dtype_display_name(t->dtype));
    size_t n = (size_t)tensor_numel(t);
    *owned = malloc(n * sizeof(float));
    if (!*owned)
        return error_set(err, "%s: out of memory reading '%s'", req->inputs_path, name);
    memcpy(shape, t->shape, 4 * sizeof *shape);
    return tensor_to_f32(t, *owned, err);
}

static float *output(TensorSet *out, const char *name, const int64_t shape[4], Error *err) {
    size_t n = (size_t)(shape[0] * shape[1] * shape[2] * shape[3]);
    float *p = tensor_set_alloc(out, n * sizeof *p, err);
    if (!p || tensor_set_add(out, name, DTYPE_F32, 4, shape, p, err) != 0)
        return NULL;
    return p;
}

static int encode(NnContext *ctx, const ForwardRequest *req, const Vae *vae, const TensorSet *in,
                  TensorSet *out, Error *err) {
    const VaeConfig *cfg = &vae->cfg;
    int64_t shape[4];
    float *image = NULL;
    int rc = input_4d(req, in, "image", cfg->in_channels, vae_downscale_factor(cfg),
                      "an image in [-1, 1]", shape, &image, err);
    if (rc == 0) {
        int lh, lw;
        vae_latent_size(cfg, (int)shape[2], (int)shape[3], &lh, &lw);
        int64_t lshape[4] = {shape[0], cfg->latent_channels, lh, lw};
        float *mean = output(out, "mean", lshape, err);
        float *logvar = mean ? output(out, "logvar", lshape, err) : NULL;
        rc = logvar ? vae_encode(ctx, vae, (int)shape[0], (int)shape[2], (int)shape[3], image, mean,
                                 logvar, NULL, err)
                    : -1;
    }
    free(image);
    return rc;
}

static int decode(NnContext *ctx, const ForwardRequest *req, const Vae *vae, const TensorSet *in,
                  TensorSet *out, Error *err) {
    const VaeConfig *cfg = &vae->cfg;
    int64_t shape[4];
    float *latents = NULL;
    int rc = input_4d(req, in, "latents", cfg->latent_channels, 1,
                      "latents already divided by the scaling factor", shape, &latents, err);
    if (rc == 0) {
        int f = vae_downscale_factor(cfg);
        int64_t ishape[4] = {shape[0], cfg->out_channels, shape[2] * f, shape[3] * f};
        float *image = output(out, "image", ishape, err);
        rc = image ? vae_decode(ctx, vae, (int)shape[0], (int)shape[2], (int)shape[3], latents,
                                image, NULL, err)
                   : -1;
    }
    free(latents);
    return rc;
}

int forward_vae(NnContext *ctx, const ForwardRequest *req, const ModelFiles *mf,
                const TensorSet *in, TensorSet *out, Error *err) {
    DType storage = DTYPE_F32;
    if (strcmp(req->mixed_precision, "fp16") == 0)
        storage = DTYPE_F16;
    else if (strcmp(req->mixed_precision, "bf16") == 0)
        storage = DTYPE_BF16;
    int encoding = strcmp(req->component, "vae-encode") == 0;
    Vae vae;
    if (vae_load(&vae, &mf->components[COMPONENT_VAE], &mf->config.vae,
                 encoding ? VAE_ENCODER : VAE_DECODER, storage, err) != 0)
        return error_prefix(err, "%s: ", mf->path);
    int rc = encoding ? encode(ctx, req, &vae, in, out, err) : decode(ctx, req, &vae, in, out, err);
    vae_free(&vae);
    return rc;
}
