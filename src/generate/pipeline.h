/* txt2img for one batch, as kohya's gen_img_diffusers.py pipeline runs it (on the CPU):
 *
 *   text:    text_condition_encode([negatives..., prompts..., ""...]) -> [uncond, cond
 *            (, real uncond with --negative_scale)] hidden states, one kohya call;
 *   noise:   for each image: generator.manual_seed(seed); start = randn(C, h, w); then
 *            steps * sampler_kohya_noises_per_step more randn(C, h, w) that kohya draws and
 *            never uses (they advance the generator); the ancestral samplers then draw from
 *            the same generator, whole batch at once;
 *   loop:    x = start * init_noise_sigma; per scheduler timestep: the latents repeated for
 *            each guidance half, scale_model_input, one UNet call on the whole stack,
 *            uncond + scale * (cond - uncond) (or kohya's three-way form with
 *            --negative_scale), scheduler step;
 *   decode:  vae.decode(x * float32(1 / scaling_factor)), (img / 2 + 0.5).clamp(0, 1),
 *            (img * 255) rounded half to even -> uint8 RGB.
 * Guidance needs scale > 1 (kohya: do_classifier_free_guidance); at 1 or less the UNet sees
 * the prompt alone and the negative prompt is not encoded. */
#ifndef SDTI_GENERATE_PIPELINE_H
#define SDTI_GENERATE_PIPELINE_H

#include <stdbool.h>
#include <stdint.h>

#include "base/dtype.h"
#include "base/error.h"
#include "base/rng_torch.h"
#include "generate/prompt_embeddings.h"
#include "models/clip_text.h"
#include "models/model_files.h"
#include "models/unet.h"
#include "models/vae.h"
#include "models/vae_file.h"
#include "nn/nn_context.h"
#include "sample/sampler.h"
#include "text/tokenizer.h"

typedef struct GenModelOptions {
    const char *ckpt;
    bool v2;
    bool v_parameterization;
    DType storage;   /* DTYPE_F32, or F16 / BF16 (--fp16 / --bf16: half weight storage) */
    const char *vae; /* --vae: a separate VAE file or folder (NULL: the model's own) */
    const char *const *embeddings; /* --textual_inversion_embeddings */
    int n_embeddings;
    int threads; /* 0: every core */
} GenModelOptions;

typedef struct GenModel {
    ModelFiles mf;
    bool mf_open;
    ClipText clip;
    bool clip_bound;
    Unet *unet;
    Vae vae;
    bool vae_loaded;
    VaeFile vae_file; /* --vae */
    bool vae_file_open;
    Tokenizer *tok;
    PromptEmbeddings embeddings;
    NnContext *ctx;
    bool v_prediction;
    int latent_channels;
    int vae_factor;   /* image pixels per latent pixel (8 for SD) */
    UnetArena *arena; /* reused while the batch shape stays */
    UnetShape arena_shape;
    TorchGenerator rng; /* torch's global generator */
} GenModel;

int gen_model_open(GenModel *m, const GenModelOptions *opts, Error *err);
void gen_model_close(GenModel *m);

typedef struct GenImageSpec {
    const char *prompt;
    const char *negative_prompt; /* "" for none */
    int64_t seed;
} GenImageSpec;

typedef struct GenBatchParams {
    int width, height, steps;
    double scale;
    bool has_negative_scale;
    double negative_scale;
    SamplerKind sampler;
    int clip_skip;     /* 0: None */
    int max_multiples; /* 1 when unset */
    /* kohya's training samples (train_util.sample_images with its long-prompt pipeline)
     * instead of gen_img_diffusers.py: the scheduler of sampler_config_kohya_training, no
     * unused pre-drawn noises (the ancestral noise follows the start latents directly), and
     * token rows padded with EOS (SD2 too, whose tokenizer pads with "!" elsewhere). */
    bool kohya_training_sample;
} GenBatchParams;

/* Called after each model call: call index (0-based), calls in all, seconds of that call. */
typedef void (*GenProgressFn)(void *user, int call, int total_calls, double seconds);

/* One batch of n images of the same size / steps / scale. final_latents [n, C, h, w] (may be
 * NULL) receives the latents before decoding; rgb [n, height, width, 3] the images. */
int gen_pipeline_run(GenModel *m, const GenBatchParams *p, const GenImageSpec *items, int n,
                     float *final_latents, uint8_t *rgb, GenProgressFn progress, void *user,
                     Error *err);

/* Converts a decoded image [3, h, w] in [-1, 1] to uint8 RGB [h, w, 3] as kohya does. */
void gen_image_to_rgb8(const float *img, int h, int w, uint8_t *rgb);

#endif
