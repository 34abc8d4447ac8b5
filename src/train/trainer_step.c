/* One micro-batch of kohya's textual-inversion step, and the latent cache before the loop.
 * See trainer.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/file_util.h"
#include "base/log.h"
#include "models/clip_text_chunks.h"
#include "nn/conv2d.h"
#include "train/latent_cache.h"
#include "train/masked_loss.h"
#include "train/trainer_internal.h"
#include "train/trainer_replay.h"

void row_grad_acc_free(RowGradAcc *a) {
    free(a->ids);
    free(a->rows);
    memset(a, 0, sizeof *a);
}

int row_grad_acc_add(RowGradAcc *a, const ClipRowGrads *g, Error *err) {
    a->width = g->width;
    for (int i = 0; i < g->count; i++) {
        int at = -1;
        for (int j = 0; j < a->count; j++)
            if (a->ids[j] == g->ids[i]) {
                at = j;
                break;
            }
        if (at < 0) {
            if (a->count == a->cap) {
                int cap = a->cap ? a->cap * 2 : 64;
                int32_t *ids = realloc(a->ids, sizeof *ids * (size_t)cap);
                if (!ids)
                    return error_set(err, "out of memory");
                a->ids = ids;
                float *rows = realloc(a->rows, sizeof *rows * (size_t)cap * (size_t)a->width);
                if (!rows)
                    return error_set(err, "out of memory");
                a->rows = rows;
                a->cap = cap;
            }
            at = a->count++;
            a->ids[at] = g->ids[i];
            memset(a->rows + (size_t)at * a->width, 0, sizeof(float) * (size_t)a->width);
        }
        float *dst = a->rows + (size_t)at * a->width;
        const float *src = g->rows + (size_t)i * g->width;
        for (int k = 0; k < a->width; k++)
            dst[k] += src[k];
    }
    return 0;
}

/* kohya's latent_dist.sample() * scaling_factor for one image [3, h, w]; the sample's noise is
 * randn from torch's global generator, as diffusers draws it. */
static int encode_one(Trainer *t, int h, int w, const float *pixels, float *latents, Error *err) {
    int lh, lw;
    vae_latent_size(&t->vae.cfg, h, w, &lh, &lw);
    size_t n = (size_t)t->vae.cfg.latent_channels * lh * lw;
    float *mean = malloc(sizeof(float) * n * 3);
    if (!mean)
        return error_set(err, "out of memory");
    float *logvar = mean + n, *noise = mean + 2 * n;
    int rc = vae_encode(t->ctx, &t->vae, 1, h, w, pixels, mean, logvar, NULL, err);
    if (rc == 0) {
        torch_randn(&t->g, noise, n);
        vae_sample_latents(n, mean, logvar, noise, t->vae.cfg.scaling_factor, latents);
    }
    free(mean);
    return rc;
}

static size_t latent_floats(const Trainer *t, int h, int w) {
    int lh, lw;
    vae_latent_size(&t->vae.cfg, h, w, &lh, &lw);
    return (size_t)t->vae.cfg.latent_channels * lh * lw;
}

static int cache_image(Trainer *t, const Dataset *ds, size_t i, CachedLatents *c, Error *err) {
    const DatasetImage *im = &ds->images[i];
    const SubsetConfig *s = &ds->config->subsets[im->subset];
    int w = im->bucket.width, h = im->bucket.height;
    size_t n = latent_floats(t, h, w);
    char *npz = NULL;
    if (t->o->cache_latents_to_disk) {
        npz = latent_cache_path(im->path, im->width, im->height);
        if (!npz)
            return error_set(err, "out of memory");
        /* kohya's conditions (latent_cache_is_valid), for this VAE's downscale factor */
        bool valid = false;
        LatentCacheEntry e;
        memset(&e, 0, sizeof e);
        if (file_exists(npz)) {
            if (latent_cache_read(npz, &e, err) != 0) {
                free(npz);
                return -1;
            }
            int lh, lw;
            vae_latent_size(&t->vae.cfg, h, w, &lh, &lw);
            valid = latent_cache_entry_fits(&e, t->vae.cfg.latent_channels, lh, lw, s->flip_aug,
                                            s->alpha_mask, w, h);
        }
        if (valid) {
            c->latents = e.latents;
            c->flipped = s->flip_aug ? e.latents_flipped : NULL;
            c->alpha_mask = s->alpha_mask ? e.alpha_mask : NULL;
            e.latents = NULL;
            if (s->flip_aug)
                e.latents_flipped = NULL;
            if (s->alpha_mask)
                e.alpha_mask = NULL;
        }
        latent_cache_entry_free(&e);
        if (valid) {
            free(npz);
            return 0;
        }
    }
    float *pixels = malloc(sizeof(float) * 3 * (size_t)w * h);
    c->latents = malloc(sizeof(float) * n);
    c->flipped = s->flip_aug ? malloc(sizeof(float) * n) : NULL;
    /* kohya keeps the unflipped alpha mask with the latents and flips it per sample */
    c->alpha_mask = s->alpha_mask ? malloc(sizeof(float) * (size_t)w * h) : NULL;
    int rc = 0;
    if (!pixels || !c->latents || (s->flip_aug && !c->flipped) ||
        (s->alpha_mask && !c->alpha_mask))
        rc = error_set(err, "out of memory");
    if (rc == 0)
        rc = dataset_load_for_cache(ds, i, false, pixels, c->alpha_mask, err);
    if (rc == 0)
        rc = encode_one(t, h, w, pixels, c->latents, err);
    if (rc == 0 && s->flip_aug) {
        rc = dataset_load_for_cache(ds, i, true, pixels, NULL, err);
        if (rc == 0)
            rc = encode_one(t, h, w, pixels, c->flipped, err);
    }
    if (rc == 0 && npz) {
        int lh, lw;
        vae_latent_size(&t->vae.cfg, h, w, &lh, &lw);
        LatentCacheEntry e = {.channels = t->vae.cfg.latent_channels,
                              .height = lh,
                              .width = lw,
                              .latents = c->latents,
                              .latents_flipped = c->flipped,
                              .original_size = {im->width, im->height},
                              .alpha_mask = c->alpha_mask,
                              .mask_height = h,
                              .mask_width = w};
        bucket_crop_ltrb(im->bucket, im->width, im->height, e.crop_ltrb);
        rc = latent_cache_write(npz, &e, err);
    }
    free(pixels);
    free(npz);
    return rc;
}

int trainer_cache_latents(Trainer *t, Error *err) {
    t->cache = calloc(t->dataset_count, sizeof *t->cache);
    if (!t->cache)
        return error_set(err, "out of memory");
    size_t total = 0, done = 0;
    for (size_t d = 0; d < t->dataset_count; d++)
        total += t->datasets[d].image_count;
    log_info("caching latents of %zu images", total);
    for (size_t d = 0; d < t->dataset_count; d++) {
        const Dataset *ds = &t->datasets[d];
        t->cache[d] = calloc(ds->image_count ? ds->image_count : 1, sizeof **t->cache);
        if (!t->cache[d])
            return error_set(err, "out of memory");
        for (size_t i = 0; i < ds->image_count; i++, done++)
            if (cache_image(t, ds, i, &t->cache[d][i], err) != 0)
                return -1;
    }
    conv2d_release_buffers(t->ctx);
    return 0;
}

/* kohya: tokenizer(caption, padding="max_length", truncation=True, max_length=75 n + 2), cut
 * into n rows of 77. */
static int tokenize_caption(const Trainer *t, const char *caption, int32_t *chunked, Error *err) {
    int *ids = NULL, n = 0;
    if (tokenizer_encode(t->tok, caption, &ids, &n, err) != 0)
        return error_prefix(err, "caption \"%s\": ", caption);
    int len = clip_chunked_length(t->chunks), limit = len - 2;
    int32_t *row = malloc(sizeof *row * (size_t)len);
    if (!row) {
        free(ids);
        return error_set(err, "out of memory");
    }
    int used = n < limit ? n : limit;
    row[0] = tokenizer_bos_id(t->tok);
    for (int i = 0; i < used; i++)
        row[1 + i] = ids[i];
    row[1 + used] = tokenizer_eos_id(t->tok);
    for (int i = used + 2; i < len; i++)
        row[i] = tokenizer_pad_id(t->tok);
    clip_chunk_ids(row, t->chunks, tokenizer_eos_id(t->tok), tokenizer_pad_id(t->tok), chunked);
    free(row);
    free(ids);
    return 0;
}

/* The text run and UNet arena for this batch shape (the last batch of a bucket may be
 * smaller; buckets differ in size). */
static int ensure_shapes(Trainer *t, int batch, int lh, int lw, Error *err) {
    if (!t->run_made || t->run.batch != batch * t->chunks) {
        if (t->run_made)
            clip_text_run_free(&t->run);
        t->run_made = false;
        long skip = t->o->has_clip_skip ? t->o->clip_skip : 0;
        if (clip_text_run_init(&t->run, &t->clip, batch * t->chunks, CLIP_CHUNK_TOKENS, (int)skip,
                               true, err) != 0)
            return -1;
        t->run_made = true;
    }
    UnetShape want = {
        .batch = batch, .height = lh, .width = lw, .tokens = clip_chunked_length(t->chunks)};
    if (t->arena) {
        UnetShape have = unet_arena_shape(t->arena);
        if (have.batch == want.batch && have.height == want.height && have.width == want.width &&
            have.tokens == want.tokens)
            return 0;
        unet_arena_free(t->arena);
        t->arena = NULL;
    }
    UnetMode mode = t->o->gradient_checkpointing ? UNET_TRAIN_CHECKPOINTED : UNET_TRAIN;
    return unet_arena_create(t->unet, &want, mode, &t->arena, err);
}

typedef struct StepBuffers {
    DatasetSample *samples;
    int count;
    int32_t *ids;
    float *latents, *noise, *noisy, *target, *pred, *dpred, *hidden, *dhidden, *weights;
    float *tsf;
    int64_t *timesteps;
} StepBuffers;

static void step_buffers_free(StepBuffers *b) {
    for (int i = 0; i < b->count; i++)
        dataset_sample_free(&b->samples[i]);
    free(b->samples);
    free(b->ids);
    free(b->latents);
    free(b->hidden);
    free(b->weights);
    free(b->timesteps);
}

/* The loss masks of this rank's share [lo, lo + m) of the batch (masked_loss.h), [m, h, w],
 * or *out NULL when it has none: conditioning images for a ControlNet-style dataset, else
 * alpha masks when an image of the share has one (kohya's collator gives the others ones). */
static int batch_masks(const Trainer *t, size_t d, const size_t *idx, const DatasetSample *samples,
                       int lo, int m, int h, int w, float **out, Error *err) {
    const Dataset *ds = &t->datasets[d];
    size_t plane = (size_t)h * w;
    bool any = ds->config->is_controlnet;
    for (int k = 0; k < m && !any; k++)
        any = ds->config->subsets[ds->images[idx[lo + k]].subset].alpha_mask;
    *out = NULL;
    if (!any)
        return 0;
    float *masks = malloc(sizeof(float) * plane * (size_t)m), *pixels = NULL;
    int rc = masks ? 0 : error_set(err, "out of memory");
    for (int k = 0; k < m && rc == 0; k++) {
        size_t i = idx[lo + k];
        const DatasetSample *s = &samples[lo + k];
        const CachedLatents *c = t->cache ? &t->cache[d][i] : NULL;
        float *dst = masks + plane * (size_t)k;
        if (ds->config->is_controlnet) {
            rc = masked_loss_conditioning_mask(ds, i, s->flipped, dst, err);
        } else if (!ds->config->subsets[ds->images[i].subset].alpha_mask) {
            for (size_t p = 0; p < plane; p++)
                dst[p] = 1.0f;
        } else if (s->alpha_mask) { /* loaded with the pixels: resized, cropped, flipped */
            memcpy(dst, s->alpha_mask, sizeof(float) * plane);
        } else if (c && c->alpha_mask) { /* cached unflipped, flipped per sample */
            if (s->flipped)
                masked_loss_flip(h, w, c->alpha_mask, dst);
            else
                memcpy(dst, c->alpha_mask, sizeof(float) * plane);
        } else { /* a rank that did not cache it: from the image, as the cache makes it */
            pixels = pixels ? pixels : malloc(sizeof(float) * 3 * plane);
            rc = pixels ? dataset_load_for_cache(ds, i, s->flipped, pixels, dst, err)
                        : error_set(err, "out of memory");
        }
    }
    free(pixels);
    if (rc != 0) {
        free(masks);
        return rc;
    }
    *out = masks;
    return 0;
}

int trainer_micro_step(Trainer *t, size_t d, size_t batch, float grad_scale, float *loss,
                       Error *err) {
    const Dataset *ds = &t->datasets[d];
    const size_t *idx;
    phase_timer_mark(&t->prof, "loop");
    int bsz = (int)dataset_batch_images(ds, batch, &idx);
    if (t->replay) /* --replay: the batch's images come from the file */
        bsz = trainer_replay_images(t, &idx);
    const DatasetImage *first = &ds->images[idx[0]];
    int h = first->bucket.height, w = first->bucket.width, lh, lw;
    /* data parallel: every rank makes the whole global batch's random draws, in the order of a
     * one-process run, and computes its share [lo, lo + m) (trainer_dist.c) */
    int lo, m;
    trainer_dist_share(bsz, &lo, &m);
    vae_latent_size(&t->vae.cfg, h, w, &lh, &lw);
    int C = t->vae.cfg.latent_channels;
    size_t per = (size_t)C * lh * lw, n = per * (size_t)bsz;
    int len = clip_chunked_length(t->chunks);
    size_t hid = (size_t)(m ? m : 1) * len * t->width;
    StepBuffers b = {0};
    b.samples = calloc((size_t)bsz, sizeof *b.samples);
    b.ids = malloc(sizeof *b.ids * (size_t)(m ? m : 1) * t->chunks * CLIP_CHUNK_TOKENS);
    b.latents = calloc(n * 6, sizeof(float));
    b.hidden = malloc(sizeof(float) * hid * 2);
    b.weights = malloc(sizeof(float) * (size_t)bsz * 2);
    b.timesteps = malloc(sizeof(int64_t) * (size_t)bsz);
    int rc = 0;
    if (!b.samples || !b.ids || !b.latents || !b.hidden || !b.weights || !b.timesteps) {
        step_buffers_free(&b);
        return error_set(err, "out of memory");
    }
    b.noise = b.latents + n;
    b.noisy = b.noise + n;
    b.target = b.noisy + n;
    b.pred = b.target + n;
    b.dpred = b.pred + n;
    b.dhidden = b.hidden + hid;
    b.tsf = b.weights + bsz;
    CaptionStep cstep = {.current_step = t->dataset_step, .max_train_steps = t->max_train_steps};
    bool cached = t->cache != NULL;
    /* __getitem__: per image the flip, crop, colour and caption draws, in kohya's order */
    for (int i = 0; i < bsz && rc == 0; i++) {
        bool mine = i >= lo && i < lo + m;
        /* another rank's sample: its pixels only for the draws random_crop / color_aug make */
        const SubsetConfig *sub = &ds->config->subsets[ds->images[idx[i]].subset];
        bool pixels = !cached && (mine || sub->random_crop || sub->color_aug);
        rc = dataset_load_sample(ds, idx[i], pixels, t->repl.count ? &t->repl.entry : NULL,
                                 t->repl.count, &cstep, &t->py, &b.samples[i], err);
        if (rc != 0)
            break;
        b.count = i + 1;
        DatasetSample *s = &b.samples[i];
        if (mine)
            b.weights[i - lo] = s->loss_weight;
        if (s->width != w || s->height != h)
            rc = error_set(err, "%s: sample of %dx%d in a %dx%d batch", ds->images[idx[i]].path,
                           s->width, s->height, w, h);
        if (rc == 0 && cached) {
            const CachedLatents *c = &t->cache[d][idx[i]];
            memcpy(b.latents + per * i, s->flipped && c->flipped ? c->flipped : c->latents,
                   sizeof(float) * per);
        }
        if (rc == 0 && mine)
            rc = tokenize_caption(
                t, s->caption, b.ids + (size_t)(i - lo) * t->chunks * CLIP_CHUNK_TOKENS, err);
    }
    /* kohya's collator (max_data_loader_n_workers 0) runs after __getitem__ and sets the
     * epoch then: the first batch of an epoch still comes from the previous epoch's order, and
     * the reshuffle (which reseeds Python's random) happens before the step's own draws */
    for (size_t k = 0; k < t->dataset_count && rc == 0; k++)
        dataset_set_epoch(&t->datasets[k], t->epoch + 1, &t->py);
    t->dataset_step = t->shared_step; /* the collator's set_current_step */
    t->shared_step = t->global_step;  /* current_step.value = global_step */
    /* without a cache: vae.encode(images).latent_dist.sample() * scaling, per batch */
    for (int i = 0; i < bsz && rc == 0 && !cached; i++) {
        if (i >= lo && i < lo + m)
            rc = encode_one(t, h, w, b.samples[i].pixels, b.latents + per * i, err);
        else
            torch_randn(&t->g, b.noise, per); /* another rank's sample noise, drawn to skip it */
    }
    if (rc == 0 && !cached)
        conv2d_release_buffers(t->ctx);
    if (rc == 0)
        rc = train_noise_draw(&t->schedule, &t->o->noise, &t->g, &t->py, bsz, C, lh, lw, b.latents,
                              b.noise, b.noisy, b.timesteps, err);
    if (rc == 0 && t->replay) /* --replay: latents, noise and timesteps from the file */
        trainer_replay_draws(t, bsz, per, b.latents, b.noise, b.noisy, b.timesteps);
    phase_timer_mark(&t->prof, "data+noise");
    *loss = 0;
    if (m == 0) { /* a bucket's last, short batch left this rank nothing */
        step_buffers_free(&b);
        return rc;
    }
    /* this rank's share; the loss is the one-process batch mean's part (m of bsz samples) */
    float *latents = b.latents + per * lo, *noise = b.noise + per * lo;
    float *noisy = b.noisy + per * lo;
    const int64_t *timesteps = b.timesteps + lo;
    float share = (float)m / (float)bsz;
    if (rc == 0)
        rc = ensure_shapes(t, m, lh, lw, err);
    phase_timer_mark(&t->prof, "shapes");
    if (rc == 0)
        rc = clip_text_forward_chunked(t->ctx, &t->clip, &t->run, m, t->chunks, b.ids, t->rows,
                                       t->n_vec, b.hidden, err);
    phase_timer_mark(&t->prof, "text_fwd");
    for (int i = 0; i < m; i++)
        b.tsf[i] = (float)timesteps[i];
    if (rc == 0)
        rc = unet_forward(t->ctx, t->unet, t->arena, noisy, b.tsf, b.hidden, b.pred, err);
    phase_timer_mark(&t->prof, "unet_fwd");
    float *masks = NULL;
    if (rc == 0)
        rc = batch_masks(t, d, idx, b.samples, lo, m, h, w, &masks, err);
    if (rc == 0) {
        if (t->o->v_parameterization)
            noise_schedule_velocity(&t->schedule, m, per, latents, noise, timesteps, b.target);
        else
            memcpy(b.target, noise, sizeof(float) * per * m);
        TrainLossBatch lb = {.batch = m,
                             .channels = C,
                             .height = lh,
                             .width = lw,
                             .pred = b.pred,
                             .target = b.target,
                             .timesteps = timesteps,
                             .loss_weights = b.weights,
                             .alpha_masks = masks,
                             .mask_height = h,
                             .mask_width = w};
        rc = train_loss_forward_backward(&t->schedule, &t->o->loss, &lb,
                                         m == bsz ? grad_scale : grad_scale * share, NULL, loss,
                                         b.dpred, err);
        if (m != bsz)
            *loss *= share;
    }
    free(masks);
    if (rc == 0 && !isfinite(*loss))
        rc = error_set(err,
                       "the loss is %s at step %lld (epoch %d): training stopped, nothing written "
                       "for this step; lower --learning_rate or check the images",
                       isnan(*loss) ? "NaN" : "infinite", (long long)t->global_step + 1,
                       t->epoch + 1);
    phase_timer_mark(&t->prof, "loss");
    if (rc == 0)
        rc = unet_backward_input(t->ctx, t->unet, t->arena, b.dpred, b.dhidden, err);
    phase_timer_mark(&t->prof, "unet_bwd");
    ClipRowGrads g = {0};
    if (rc == 0)
        rc = clip_text_backward_chunked(t->ctx, &t->clip, &t->run, m, t->chunks, b.dhidden, &g,
                                        err);
    phase_timer_mark(&t->prof, "text_bwd");
    if (rc == 0)
        rc = row_grad_acc_add(&t->acc, &g, err);
    clip_row_grads_free(&g);
    step_buffers_free(&b);
    phase_timer_mark(&t->prof, "grad_acc");
    return rc;
}
