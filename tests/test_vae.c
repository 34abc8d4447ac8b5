// labels: unit golden
/* The VAE (AutoencoderKL) against diffusers on both tiny pipelines: encode (mean, clamped
 * logvar, sampled latents for a given noise), decode of fixed latents, batch 2, a square, a
 * non-square size, and 10x14 with odd 5x7 latents (fixtures:
 * tools/reference/make_vae_fixtures.py). Error measure everywhere:
 * max|ours - ref| / max|ref|; fp32 within 1e-4, fp16 / bf16 weight storage within 1e-2, bf16
 * convolutions within 2e-2 (PyTorch's own bf16 is 1e-2 .. 1.8e-2 off here). Also
 * the workspace contract (a caller's buffer of exactly the stated size) and the errors for a
 * missing or mis-shaped weight. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"
#include "models/model_files.h"
#include "models/vae.h"
#include "nn/conv2d.h"
#include "test_util.h"

static const char *const MODELS[] = {"sd1-tiny", "sd2-tiny"};
static const int SIZES[][2] = {{32, 32}, {32, 48}, {10, 14}};

static double rel_error(const float *got, const float *ref, size_t n) {
    double diff = 0, mag = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= diff)) /* NaN counts as the largest error */
            diff = isnan(d) ? INFINITY : d;
        if (fabs(ref[i]) > mag)
            mag = fabs(ref[i]);
    }
    return mag > 0 ? diff / mag : diff;
}

/* A fixture tensor as float32 with the expected shape; NULL (after a failed check) if not. */
static const float *fixture(const TensorSet *set, const char *name, int64_t d0, int64_t d1,
                            int64_t d2, int64_t d3, const char *file) {
    const NamedTensor *t = tensor_set_find(set, name);
    CHECKF(t && t->dtype == DTYPE_F32 && t->ndim == 4 && t->shape[0] == d0 && t->shape[1] == d1 &&
               t->shape[2] == d2 && t->shape[3] == d3,
           "%s: tensor %s missing or not float32 [%lld, %lld, %lld, %lld]", file, name,
           (long long)d0, (long long)d1, (long long)d2, (long long)d3);
    return t && t->dtype == DTYPE_F32 && t->ndim == 4 && tensor_numel(t) == d0 * d1 * d2 * d3
               ? t->data
               : NULL;
}

static void check_size(NnContext *ctx, const Vae *vae, const char *model, int h, int w, double tol,
                       const char *label) {
    char rel[128];
    snprintf(rel, sizeof rel, "vae/%s-%dx%d.safetensors", model, h, w);
    const char *path = test_fixture(rel);
    TensorSet fx;
    tensor_set_init(&fx);
    Error err = {{0}};
    CHECK_OK(safetensors_open(path, &fx, &err), &err);
    const VaeConfig *cfg = &vae->cfg;
    int lh, lw, batch = 2, lc = cfg->latent_channels;
    vae_latent_size(cfg, h, w, &lh, &lw);
    CHECK(lh * vae_downscale_factor(cfg) == h && lw * vae_downscale_factor(cfg) == w);
    const float *image = fixture(&fx, "image", batch, 3, h, w, path);
    const float *mean_ref = fixture(&fx, "mean", batch, lc, lh, lw, path);
    const float *logvar_ref = fixture(&fx, "logvar", batch, lc, lh, lw, path);
    const float *noise = fixture(&fx, "noise", batch, lc, lh, lw, path);
    const float *sampled_ref = fixture(&fx, "sampled", batch, lc, lh, lw, path);
    const float *latents = fixture(&fx, "latents", batch, lc, lh, lw, path);
    const float *decoded_ref = fixture(&fx, "decoded", batch, 3, h, w, path);
    if (!image || !mean_ref || !logvar_ref || !noise || !sampled_ref || !latents || !decoded_ref) {
        tensor_set_free(&fx);
        return;
    }
    size_t nl = (size_t)batch * lc * lh * lw, ni = (size_t)batch * 3 * h * w;
    float *mean = malloc(nl * sizeof *mean), *logvar = malloc(nl * sizeof *logvar);
    float *sampled = malloc(nl * sizeof *sampled), *decoded = malloc(ni * sizeof *decoded);
    /* exactly the stated workspace, so ASan sees any overrun */
    size_t enc_ws = vae_encode_workspace_floats(vae, h, w);
    size_t dec_ws = vae_decode_workspace_floats(vae, lh, lw);
    float *ws = malloc((enc_ws > dec_ws ? enc_ws : dec_ws) * sizeof *ws);
    CHECK_OK(vae_encode(ctx, vae, batch, h, w, image, mean, logvar, ws, &err), &err);
    vae_sample_latents(nl, mean, logvar, noise, cfg->scaling_factor, sampled);
    CHECK_OK(vae_decode(ctx, vae, batch, lh, lw, latents, decoded, ws, &err), &err);
    double e_mean = rel_error(mean, mean_ref, nl), e_logvar = rel_error(logvar, logvar_ref, nl);
    double e_sampled = rel_error(sampled, sampled_ref, nl);
    double e_decoded = rel_error(decoded, decoded_ref, ni);
    printf("%s %s %dx%d: mean %.2e  logvar %.2e  sampled %.2e  decoded %.2e\n", label, model, h, w,
           e_mean, e_logvar, e_sampled, e_decoded);
    CHECKF(e_mean <= tol, "%s %s %dx%d: mean error %.3g > %.0e", label, model, h, w, e_mean, tol);
    CHECKF(e_logvar <= tol, "%s %s %dx%d: logvar error %.3g > %.0e", label, model, h, w, e_logvar,
           tol);
    CHECKF(e_sampled <= tol, "%s %s %dx%d: sampled error %.3g > %.0e", label, model, h, w,
           e_sampled, tol);
    CHECKF(e_decoded <= tol, "%s %s %dx%d: decoded error %.3g > %.0e", label, model, h, w,
           e_decoded, tol);

    /* the internally allocated workspace gives the same bytes */
    float *decoded2 = malloc(ni * sizeof *decoded2);
    CHECK_OK(vae_decode(ctx, vae, batch, lh, lw, latents, decoded2, NULL, &err), &err);
    CHECK(memcmp(decoded, decoded2, ni * sizeof *decoded) == 0);
    free(decoded2);
    free(ws);
    free(mean);
    free(logvar);
    free(sampled);
    free(decoded);
    tensor_set_free(&fx);
}

static void check_model(NnContext *ctx, const char *model) {
    char rel[128];
    snprintf(rel, sizeof rel, "models/%s/diffusers", model);
    ModelFiles mf;
    Error err = {{0}};
    ModelOpenOptions opts = {0};
    if (model_files_open(test_fixture(rel), &opts, &mf, &err) != 0) {
        CHECKF(0, "%s: %s", model, err.message);
        return;
    }
    /* the last: bf16 weights and bf16 convolutions (f32 accumulation), as kohya runs its VAE
     * in the training dtype under --mixed_precision bf16 */
    const DType storages[] = {DTYPE_F32, DTYPE_F16, DTYPE_BF16, DTYPE_BF16};
    const char *labels[] = {"fp32", "fp16", "bf16", "bf16 conv"};
    /* bf16 arithmetic: PyTorch's own bf16 VAE (autocast, or the model cast to bfloat16 as
     * kohya does) is 1.0e-2 .. 1.8e-2 from its fp32 output on these fixtures, so 2e-2 */
    const double tolerances[] = {1e-4, 1e-2, 1e-2, 2e-2};
    for (int s = 0; s < 4; s++) {
        Error aerr = {{0}};
        CHECK_OK(conv2d_set_algorithm(ctx, s == 3 ? CONV2D_ALGO_ONEDNN_BF16 : CONV2D_ALGO_DEFAULT,
                                      &aerr),
                 &aerr);
        Vae vae;
        if (vae_load(&vae, &mf.components[COMPONENT_VAE], &mf.config.vae, VAE_BOTH, storages[s],
                     &err) != 0) {
            CHECKF(0, "%s %s: %s", model, labels[s], err.message);
            continue;
        }
        for (int i = 0; i < 3; i++)
            check_size(ctx, &vae, model, SIZES[i][0], SIZES[i][1], tolerances[s], labels[s]);
        vae_free(&vae);
    }
    conv2d_set_algorithm(ctx, CONV2D_ALGO_DEFAULT, &err);
    model_files_close(&mf);
}

/* A weight missing from the set, or of the wrong shape, is named in the error. */
static void check_bind_errors(void) {
    ModelFiles mf;
    Error err = {{0}};
    ModelOpenOptions opts = {0};
    if (model_files_open(test_fixture("models/sd1-tiny/diffusers"), &opts, &mf, &err) != 0) {
        CHECKF(0, "sd1-tiny: %s", err.message);
        return;
    }
    const TensorSet *full = &mf.components[COMPONENT_VAE];
    TensorSet partial;
    tensor_set_init(&partial);
    for (size_t i = 0; i < full->count; i++) {
        const NamedTensor *t = &full->items[i];
        if (strcmp(t->name, "decoder.mid_block.attentions.0.to_v.weight") == 0)
            continue;
        CHECK_OK(tensor_set_add(&partial, t->name, t->dtype, t->ndim, t->shape, t->data, &err),
                 &err);
    }
    Vae vae;
    CHECK_FAILS_WITH(vae_load(&vae, &partial, &mf.config.vae, VAE_BOTH, DTYPE_F32, &err), &err,
                     "decoder.mid_block.attentions.0.to_v.weight");
    tensor_set_free(&partial);

    VaeConfig wrong = mf.config.vae;
    wrong.latent_channels = 8; /* the weights say 4 */
    CHECK_FAILS_WITH(vae_load(&vae, full, &wrong, VAE_BOTH, DTYPE_F32, &err), &err,
                     "encoder.conv_out.weight has shape");
    wrong = mf.config.vae;
    wrong.norm_num_groups = 5;
    CHECK_FAILS_WITH(vae_load(&vae, full, &wrong, VAE_BOTH, DTYPE_F32, &err), &err,
                     "GroupNorm groups");
    Vae dec_only;
    CHECK_OK(vae_load(&dec_only, full, &mf.config.vae, VAE_DECODER, DTYPE_F16, &err), &err);
    float img[3 * 8 * 8] = {0}, lat[4 * 4 * 4];
    CHECK_FAILS_WITH(vae_encode(NULL, &dec_only, 1, 8, 8, img, lat, lat, NULL, &err), &err,
                     "encoder was not loaded");
    vae_free(&dec_only);
    model_files_close(&mf);
}

/* A 4-level random VAE at square, non-square and odd sizes: every step's buffer must fit the
 * planned workspace (the passes check each write against it and fail otherwise). */
static void check_workspace_plan(NnContext *ctx) {
    VaeConfig cfg = {.in_channels = 3,
                     .out_channels = 3,
                     .latent_channels = 4,
                     .num_levels = 4,
                     .block_out_channels = {8, 16, 24, 24},
                     .layers_per_block = 2,
                     .norm_num_groups = 4,
                     .norm_eps = 1e-6f,
                     .scaling_factor = 0.18215f};
    Vae vae;
    Error err = {{0}};
    if (vae_init_random(&vae, &cfg, VAE_BOTH, DTYPE_F32, 5, &err) != 0) {
        CHECKF(0, "random VAE: %s", err.message);
        return;
    }
    const int sizes[][2] = {{32, 32}, {24, 40}, {33, 17}};
    for (int i = 0; i < 3; i++) {
        int h = sizes[i][0], w = sizes[i][1], lh, lw;
        vae_latent_size(&cfg, h, w, &lh, &lw);
        size_t ni = (size_t)2 * 3 * h * w, nl = (size_t)2 * 4 * lh * lw;
        size_t no = (size_t)2 * 3 * lh * 8 * lw * 8;
        float *img = malloc(ni * sizeof *img), *mean = malloc(nl * sizeof *mean);
        float *logvar = malloc(nl * sizeof *logvar), *out = malloc(no * sizeof *out);
        for (size_t j = 0; j < ni; j++)
            img[j] = (float)((j * 2654435761u) % 2001) / 1000.0f - 1.0f;
        CHECK_OK(vae_encode(ctx, &vae, 2, h, w, img, mean, logvar, NULL, &err), &err);
        CHECK_OK(vae_decode(ctx, &vae, 2, lh, lw, mean, out, NULL, &err), &err);
        bool finite = true;
        for (size_t j = 0; j < no; j++)
            finite = finite && isfinite(out[j]);
        CHECKF(finite, "%dx%d: decoded values not finite", h, w);
        free(img);
        free(mean);
        free(logvar);
        free(out);
    }
    vae_free(&vae);
}

int main(void) {
    NnContext *ctx = NULL;
    Error err = {{0}};
    CHECK_OK(nn_context_create(2, &ctx, &err), &err);
    if (ctx) {
        for (int m = 0; m < 2; m++)
            check_model(ctx, MODELS[m]);
        check_workspace_plan(ctx);
        nn_context_free(ctx);
    }
    check_bind_errors();
    return test_finish();
}
