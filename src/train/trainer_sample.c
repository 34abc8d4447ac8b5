/* Sample images during training with sdti generate's pipeline. See trainer_sample.h. */
#define _POSIX_C_SOURCE 200809L
#include "train/trainer_sample.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "generate/pipeline.h"
#include "generate/png_output.h"
#include "train/dist.h"
#include "train/trainer_internal.h"

struct TrainerSample {
    SamplePromptList prompts;
    SamplerKind default_sampler; /* --sample_sampler */
    Vae decoder;                 /* loaded at the first sample (the trainer has the encoder) */
    bool decoder_loaded;
    PromptEmbeddings embeddings; /* the trained token, its rows the trainer's current ones */
    int prompts_used;
};

static bool sampling_enabled(const TrainOptions *o) {
    return o->sample_at_first || o->has_sample_every_n_steps || o->has_sample_every_n_epochs;
}

bool trainer_sample_due(const TrainOptions *o, int epoch, int64_t steps) {
    if (steps == 0)
        return o->sample_at_first;
    if (!o->has_sample_every_n_steps && !o->has_sample_every_n_epochs)
        return false;
    if (o->has_sample_every_n_epochs) /* overrides the steps */
        return epoch >= 0 && epoch % o->sample_every_n_epochs == 0;
    return steps % o->sample_every_n_steps == 0 && epoch < 0;
}

int trainer_sample_open(Trainer *t, Error *err) {
    const TrainOptions *o = t->o;
    if (!sampling_enabled(o))
        return 0;
    if (!o->sample_prompts)
        return error_set(err, "--sample_every_n_steps, --sample_every_n_epochs and "
                              "--sample_at_first need --sample_prompts (a .txt or .toml prompt "
                              "file)");
    struct TrainerSample *s = calloc(1, sizeof *s);
    if (!s)
        return error_set(err, "out of memory");
    t->sample = s;
    if (sampler_kind_from_name(o->sample_sampler ? o->sample_sampler : "ddim", &s->default_sampler,
                               err) != 0)
        return error_prefix(err, "--sample_sampler: ");
    if (sample_prompts_load(o->sample_prompts, &s->prompts, err) != 0)
        return -1;
    log_info("--sample_prompts %s: %d prompts", o->sample_prompts, s->prompts.count);
    return 0;
}

void trainer_sample_free(Trainer *t) {
    struct TrainerSample *s = t->sample;
    if (!s)
        return;
    sample_prompts_free(&s->prompts);
    if (s->decoder_loaded)
        vae_free(&s->decoder);
    free(s);
    t->sample = NULL;
}

static int load_decoder(Trainer *t, Error *err) {
    struct TrainerSample *s = t->sample;
    if (s->decoder_loaded)
        return 0;
    const TensorSet *set = t->vae_file_open ? &t->vae_file.vae : &t->mf.components[COMPONENT_VAE];
    DType storage = t->o->no_half_vae ? DTYPE_F32 : t->storage;
    if (vae_load(&s->decoder, set, &t->mf.config.vae, VAE_DECODER, storage, err) != 0)
        return error_prefix(err, "sample images: the VAE decoder: ");
    s->decoder_loaded = true;
    return 0;
}

/* kohya's torch.seed(): a fresh seed from outside every training generator. */
static int64_t random_seed(void) {
    uint64_t v = 0;
    FILE *f = fopen("/dev/urandom", "rb");
    if (!f || fread(&v, sizeof v, 1, f) != 1) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        v = (uint64_t)ts.tv_nsec * 6364136223846793005ull ^ (uint64_t)ts.tv_sec ^
            ((uint64_t)getpid() << 32);
    }
    if (f)
        fclose(f);
    return (int64_t)(v & 0x7fffffffffffffffull);
}

static int sample_one(Trainer *t, GenModel *m, const SamplePrompt *p, int index, int epoch,
                      const char *dir, Error *err) {
    struct TrainerSample *s = t->sample;
    GenBatchParams bp = {0};
    bp.width = p->width - p->width % 8; /* kohya: max(64, w - w % 8) */
    bp.height = p->height - p->height % 8;
    if (bp.width < 64)
        bp.width = 64;
    if (bp.height < 64)
        bp.height = 64;
    bp.steps = p->steps;
    bp.scale = p->scale;
    bp.sampler = p->has_sampler ? p->sampler : s->default_sampler;
    bp.clip_skip = t->o->has_clip_skip ? (int)t->o->clip_skip : 0;
    bp.max_multiples = 3; /* kohya's long-prompt pipeline default (max_embeddings_multiples) */
    bp.kohya_training_sample = true; /* the scheduler, noises and padding of kohya's samples */
    int64_t seed = p->has_seed ? p->seed : random_seed();
    GenImageSpec spec = {p->prompt, p->negative_prompt ? p->negative_prompt : "", seed};
    log_info("sample %d: \"%s\"%s%s%s, %dx%d, %d steps, scale %g, %s, seed %lld%s", index,
             p->prompt, p->negative_prompt ? ", negative \"" : "",
             p->negative_prompt ? p->negative_prompt : "", p->negative_prompt ? "\"" : "", bp.width,
             bp.height, bp.steps, bp.scale, sampler_kind_name(bp.sampler), (long long)seed,
             p->has_seed ? "" : " (random)");
    size_t pixels = (size_t)bp.width * (size_t)bp.height * 3;
    uint8_t *rgb = malloc(pixels);
    if (!rgb)
        return error_set(err, "out of memory");
    int rc = gen_pipeline_run(m, &bp, &spec, 1, NULL, rgb, NULL, NULL, err);
    if (rc == 0) {
        char ts[32], num[32], seed_suffix[32] = "", path[8192];
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        strftime(ts, sizeof ts, "%Y%m%d%H%M%S", &tm);
        if (epoch >= 0)
            snprintf(num, sizeof num, "e%06d", epoch);
        else
            snprintf(num, sizeof num, "%06lld", (long long)t->global_step);
        if (p->has_seed)
            snprintf(seed_suffix, sizeof seed_suffix, "_%lld", (long long)p->seed);
        snprintf(path, sizeof path, "%s/%s_%s_%02d_%s%s.png", dir, t->output_name, num, index, ts,
                 seed_suffix);
        rc = png_output_write(path, rgb, bp.width, bp.height, NULL, 0, err);
        if (rc != 0)
            error_prefix(err, "sample image: ");
    } else {
        error_prefix(err, "sample image %d (\"%s\"): ", index, p->prompt);
    }
    free(rgb);
    return rc;
}

int trainer_sample_images(Trainer *t, int epoch, Error *err) {
    struct TrainerSample *s = t->sample;
    if (!s || dist_rank() != 0 || !trainer_sample_due(t->o, epoch, t->global_step))
        return 0;
    log_info("generating sample images at step %lld", (long long)t->global_step);
    /* kohya reads the prompt file anew every time (it may be edited during the run); one that
     * no longer reads keeps the last good prompts */
    SamplePromptList fresh;
    Error read_err = {{0}};
    if (sample_prompts_load(t->o->sample_prompts, &fresh, &read_err) == 0) {
        sample_prompts_free(&s->prompts);
        s->prompts = fresh;
    } else {
        log_warning("%s: sampling the prompts read before", read_err.message);
    }
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/sample", t->o->output_dir);
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return error_set(err, "%s: cannot create the sample folder: %s", dir, strerror(errno));
    if (load_decoder(t, err) != 0)
        return -1;
    s->embeddings = (PromptEmbeddings){
        .count = 1,
        .tokens = &t->ti,
        .prompts_used = &s->prompts_used,
        .rows = t->rows, /* the rows as trained so far */
        .n_rows = t->n_vec,
        .width = t->width,
        .first_id = t->ti.ids[0],
    };
    GenModel m;
    memset(&m, 0, sizeof m);
    m.mf = t->mf; /* borrowed: never closed here */
    m.clip = t->clip;
    m.unet = t->unet;
    m.vae = s->decoder;
    m.tok = t->tok;
    m.embeddings = s->embeddings;
    m.ctx = t->ctx;
    m.v_prediction = t->o->v_parameterization;
    m.latent_channels = t->mf.config.unet.in_channels;
    m.vae_factor = vae_downscale_factor(&t->mf.config.vae);
    torch_rng_init(&m.rng, 0); /* its own generator: seeded per image */
    int rc = 0;
    for (int i = 0; rc == 0 && i < s->prompts.count; i++)
        rc = sample_one(t, &m, &s->prompts.items[i], i, epoch, dir, err);
    unet_arena_free(m.arena); /* the inference arena is not kept between samples */
    return rc;
}
