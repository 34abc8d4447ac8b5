/* See pipeline.h. */
#define _POSIX_C_SOURCE 200809L
#include "generate/pipeline.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "base/phase_timer.h"
#include "generate/text_condition.h"

int gen_model_open(GenModel *m, const GenModelOptions *opts, Error *err) {
    memset(m, 0, sizeof *m);
    if (nn_context_create(opts->threads, &m->ctx, err) != 0)
        return -1;
    ModelOpenOptions mo = {.v2 = opts->v2};
    if (model_files_open(opts->ckpt, &mo, &m->mf, err) != 0)
        return -1;
    m->mf_open = true;
    const ModelConfig *cfg = &m->mf.config;
    if (cfg->inpainting)
        return error_set(err,
                         "%s: an inpainting model (UNet in_channels 9): inpainting is not "
                         "supported yet by sdti generate",
                         m->mf.path);
    m->v_prediction = opts->v_parameterization;
    if (cfg->prediction_known && (cfg->prediction == PREDICTION_V) != opts->v_parameterization)
        log_warning("%s: the model's config says %s but --v_parameterization is %s; following "
                    "the option as kohya does",
                    m->mf.path, cfg->prediction == PREDICTION_V ? "v-prediction" : "epsilon",
                    opts->v_parameterization ? "given" : "not given");
    /* kohya loads the CLIP tokenizer of the model's version whatever folder the weights are in */
    if (tokenizer_create_builtin(cfg->version == SD_VERSION_2 ? TOKENIZER_SD2_PAD_ID
                                                              : TOKENIZER_SD1_PAD_ID,
                                 &m->tok, err) != 0)
        return -1;
    if (tokenizer_vocab_size(m->tok) != cfg->clip.vocab_size)
        return error_set(err, "%s: the text encoder has %d token rows, the tokenizer %d",
                         m->mf.path, cfg->clip.vocab_size, tokenizer_vocab_size(m->tok));
    if (clip_text_bind(&m->clip, &m->mf.components[COMPONENT_TEXT_ENCODER], &cfg->clip,
                       opts->storage, err) != 0)
        return error_prefix(err, "%s: ", m->mf.path);
    m->clip_bound = true;
    if (prompt_embeddings_load(&m->embeddings, m->tok, opts->embeddings, opts->n_embeddings,
                               cfg->clip.hidden_size, err) != 0)
        return -1;
    if (unet_load(&m->mf.components[COMPONENT_UNET], &cfg->unet, opts->storage, &m->unet, err) != 0)
        return error_prefix(err, "%s: ", m->mf.path);
    const TensorSet *vae_set = &m->mf.components[COMPONENT_VAE];
    const char *vae_path = m->mf.path;
    if (opts->vae) {
        /* kohya's --vae: the same architecture, other weights */
        if (vae_file_open(opts->vae, &m->vae_file, err) != 0)
            return -1;
        m->vae_file_open = true;
        vae_set = &m->vae_file.vae;
        vae_path = m->vae_file.path;
        log_info("VAE from %s", vae_path);
    }
    if (vae_load(&m->vae, vae_set, &cfg->vae, VAE_DECODER, opts->storage, err) != 0)
        return error_prefix(err, "%s: ", vae_path);
    m->vae_loaded = true;
    m->latent_channels = cfg->unet.in_channels;
    m->vae_factor = vae_downscale_factor(&cfg->vae);
    torch_rng_init(&m->rng, 0);
    return 0;
}

void gen_model_close(GenModel *m) {
    unet_arena_free(m->arena);
    unet_free(m->unet);
    if (m->vae_loaded)
        vae_free(&m->vae);
    if (m->vae_file_open)
        vae_file_close(&m->vae_file);
    prompt_embeddings_free(&m->embeddings);
    if (m->clip_bound)
        clip_text_free(&m->clip);
    tokenizer_free(m->tok);
    if (m->mf_open)
        model_files_close(&m->mf);
    nn_context_free(m->ctx);
    memset(m, 0, sizeof *m);
}

void gen_image_to_rgb8(const float *img, int h, int w, uint8_t *rgb) {
    size_t plane = (size_t)h * (size_t)w;
    for (size_t p = 0; p < plane; p++)
        for (int c = 0; c < 3; c++) {
            float v = img[(size_t)c * plane + p] / 2.0f + 0.5f;
            v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
            /* numpy's round: half to even, as rintf in the default rounding mode */
            rgb[p * 3 + (size_t)c] = (uint8_t)rintf(v * 255.0f);
        }
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int ensure_arena(GenModel *m, const UnetShape *shape, Error *err) {
    if (m->arena && memcmp(&m->arena_shape, shape, sizeof *shape) == 0)
        return 0;
    unet_arena_free(m->arena);
    m->arena = NULL;
    if (unet_arena_create(m->unet, shape, UNET_INFERENCE, &m->arena, err) != 0)
        return -1;
    m->arena_shape = *shape;
    return 0;
}

/* The text embeddings in kohya's order: [negative, prompt (, "")] per guidance half. */
static int encode_text(GenModel *m, const GenBatchParams *p, const GenImageSpec *items, int n,
                       int halves, int *k, float **hidden, Error *err) {
    const char **texts = malloc((size_t)(halves * n) * sizeof *texts);
    if (!texts)
        return error_set(err, "out of memory");
    for (int i = 0; i < n; i++) {
        if (halves == 1) {
            texts[i] = items[i].prompt;
            continue;
        }
        texts[i] = items[i].negative_prompt ? items[i].negative_prompt : "";
        texts[n + i] = items[i].prompt;
        if (halves == 3)
            texts[2 * n + i] = "";
    }
    TextConditioner tc = {&m->clip,
                          m->tok,
                          &m->embeddings,
                          p->clip_skip,
                          p->max_multiples < 1 ? 1 : p->max_multiples,
                          p->kohya_training_sample};
    int rc = text_condition_encode(m->ctx, &tc, texts, halves * n, k, hidden, err);
    free(texts);
    return rc;
}

/* Start latents as kohya draws them, one image at a time from the global generator. */
static void draw_start(GenModel *m, const GenBatchParams *p, const GenImageSpec *items, int n,
                       size_t per_image, float *x, float *scratch) {
    /* kohya's training pipeline draws only the start latents */
    int extra = p->kohya_training_sample ? 0 : p->steps * sampler_kohya_noises_per_step(p->sampler);
    for (int i = 0; i < n; i++) {
        torch_rng_seed(&m->rng, (uint64_t)items[i].seed);
        torch_randn(&m->rng, x + (size_t)i * per_image, per_image);
        for (int j = 0; j < extra; j++)
            torch_randn(&m->rng, scratch, per_image);
    }
}

static void guide(const GenBatchParams *p, int halves, size_t count, const float *out, float *eps) {
    if (halves == 1) {
        memcpy(eps, out, count * sizeof *eps);
        return;
    }
    float g = (float)p->scale;
    const float *first = out, *text = out + count;
    if (halves == 2) {
        for (size_t i = 0; i < count; i++)
            eps[i] = first[i] + g * (text[i] - first[i]);
        return;
    }
    /* kohya: [negative, text, real uncond]:
     * uncond + g (text - uncond) - negative_scale (negative - uncond) */
    float ns = (float)p->negative_scale;
    const float *uncond = out + 2 * count;
    for (size_t i = 0; i < count; i++)
        eps[i] = uncond[i] + g * (text[i] - uncond[i]) - ns * (first[i] - uncond[i]);
}

static int denoise(GenModel *m, const GenBatchParams *p, Sampler *s, int n, int halves, int k,
                   const float *hidden, float *x, size_t count, GenProgressFn progress, void *user,
                   Error *err) {
    int lh = p->height / m->vae_factor, lw = p->width / m->vae_factor;
    UnetShape shape = {halves * n, lh, lw, 77 * k};
    if (ensure_arena(m, &shape, err) != 0)
        return -1;
    float *x_in = malloc((size_t)halves * count * sizeof *x_in);
    float *out = malloc((size_t)halves * count * sizeof *out);
    float *eps = malloc(count * sizeof *eps);
    float *t = malloc((size_t)(halves * n) * sizeof *t);
    int rc = x_in && out && eps && t ? 0 : error_set(err, "out of memory");
    int calls = sampler_num_model_calls(s);
    PhaseTimer prof; /* SDTI_PROFILE: time per part of a sampling step */
    phase_timer_init(&prof, "sampling step");
    for (int i = 0; rc == 0 && i < calls; i++) {
        double t0 = now_seconds();
        phase_timer_start(&prof);
        for (int h = 0; h < halves; h++)
            sampler_scale_model_input(s, i, x, x_in + (size_t)h * count, count);
        float ts = sampler_timestep(s, i);
        for (int b = 0; b < halves * n; b++)
            t[b] = ts;
        phase_timer_mark(&prof, "scale_input");
        rc = unet_forward(m->ctx, m->unet, m->arena, x_in, t, hidden, out, err);
        phase_timer_mark(&prof, "unet");
        if (rc == 0) {
            guide(p, halves, count, out, eps);
            phase_timer_mark(&prof, "guidance");
            rc = sampler_step(s, i, eps, x, count, &m->rng, err);
            phase_timer_mark(&prof, "sampler");
        }
        if (rc == 0 && progress)
            progress(user, i, calls, now_seconds() - t0);
        phase_timer_mark(&prof, "progress");
        phase_timer_end_run(&prof);
    }
    phase_timer_print(&prof);
    if (prof.on) {
        double f[4], b[4];
        unet_arena_block_seconds(m->arena, f, b);
        fprintf(stderr,
                "profile unet (all calls on this arena): conv/sampling %.2f s, resnets %.2f s, "
                "transformers %.2f s\n",
                f[0], f[1], f[2]);
    }
    free(x_in);
    free(out);
    free(eps);
    free(t);
    return rc;
}

static int decode(GenModel *m, const GenBatchParams *p, int n, const float *x, uint8_t *rgb,
                  Error *err) {
    int lh = p->height / m->vae_factor, lw = p->width / m->vae_factor;
    int C = m->latent_channels;
    size_t per_latent = (size_t)C * lh * lw, per_image = (size_t)3 * p->height * p->width;
    /* kohya: 1 / 0.18215 * latents, a float32 multiply (not a division) */
    float inv = (float)(1.0 / (double)m->mf.config.vae.scaling_factor);
    float *lat = malloc(per_latent * sizeof *lat);
    float *img = malloc(per_image * sizeof *img);
    float *work = malloc(vae_decode_workspace_floats(&m->vae, lh, lw) * sizeof *work);
    int rc = lat && img && work ? 0 : error_set(err, "out of memory decoding");
    for (int i = 0; rc == 0 && i < n; i++) {
        for (size_t j = 0; j < per_latent; j++)
            lat[j] = x[(size_t)i * per_latent + j] * inv;
        rc = vae_decode(m->ctx, &m->vae, 1, lh, lw, lat, img, work, err);
        if (rc == 0)
            gen_image_to_rgb8(img, p->height, p->width, rgb + (size_t)i * per_image);
    }
    free(lat);
    free(img);
    free(work);
    return rc;
}

int gen_pipeline_run(GenModel *m, const GenBatchParams *p, const GenImageSpec *items, int n,
                     float *final_latents, uint8_t *rgb, GenProgressFn progress, void *user,
                     Error *err) {
    /* multiples of 8, as kohya and diffusers; the UNet takes any latent size (odd ones round
     * up level by level and its upsamplers go back to the skips' sizes) */
    int f = m->vae_factor;
    if (p->width <= 0 || p->height <= 0 || p->width % 8 != 0 || p->height % 8 != 0 ||
        p->width % f != 0 || p->height % f != 0)
        return error_set(err, "image size %dx%d: width and height must be positive multiples of 8",
                         p->width, p->height);
    if (p->steps < 1)
        return error_set(err, "steps %d: give at least 1 sampling step", p->steps);
    bool cfg_on = p->scale > 1.0;
    int halves = !cfg_on ? 1 : p->has_negative_scale ? 3 : 2;
    if (!cfg_on && p->has_negative_scale)
        log_warning("negative_scale is ignored if guidance scale <= 1.0");
    int lh = p->height / f, lw = p->width / f;
    size_t per_image = (size_t)m->latent_channels * lh * lw, count = per_image * (size_t)n;
    SamplerConfig sc;
    if (p->kohya_training_sample)
        sampler_config_kohya_training(&sc, p->sampler, p->steps, m->v_prediction);
    else
        sampler_config_kohya(&sc, p->sampler, p->steps, m->v_prediction);
    Sampler *s = NULL;
    float *hidden = NULL;
    int k = 1;
    float *x = malloc(count * sizeof *x), *scratch = malloc(per_image * sizeof *scratch);
    int rc = x && scratch ? 0 : error_set(err, "out of memory");
    PhaseTimer prof; /* SDTI_PROFILE: time per part of the batch */
    phase_timer_init(&prof, "generation batch");
    phase_timer_start(&prof);
    rc = rc ? rc : sampler_create(&sc, &s, err);
    rc = rc ? rc : encode_text(m, p, items, n, halves, &k, &hidden, err);
    phase_timer_mark(&prof, "text");
    if (rc == 0) {
        draw_start(m, p, items, n, per_image, x, scratch);
        float sigma = sampler_init_noise_sigma(s);
        for (size_t i = 0; i < count; i++)
            x[i] *= sigma;
        phase_timer_mark(&prof, "start_noise");
        rc = denoise(m, p, s, n, halves, k, hidden, x, count, progress, user, err);
        phase_timer_mark(&prof, "denoise");
    }
    if (rc == 0 && final_latents)
        memcpy(final_latents, x, count * sizeof *x);
    if (rc == 0 && rgb)
        rc = decode(m, p, n, x, rgb, err);
    phase_timer_mark(&prof, "decode");
    phase_timer_end_run(&prof);
    sampler_free(s);
    free(hidden);
    free(x);
    free(scratch);
    return rc;
}
