/* kohya's textual-inversion run: setup, the epoch/step loop, saving. See trainer.h. */
#define _POSIX_C_SOURCE 200809L
#include "train/trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/file_util.h"
#include "base/log.h"
#include "models/clip_text_chunks.h"
#include "nn/conv2d.h"
#include "train/dist.h"
#include "train/trainer_internal.h"
#include "train/trainer_log.h"
#include "train/trainer_replay.h"
#include "train/trainer_sample.h"

static int check_required(const TrainOptions *o, Error *err) {
    if (o->metadata_thumbnail && strncmp(o->metadata_thumbnail, "data:", 5) != 0)
        return error_set(err, "--metadata_thumbnail with an image file is not supported yet by "
                              "sdti train (kohya turns it into a data: URL); pass the data: URL");
    if (!o->debug_dataset && (!o->output_dir || !o->output_dir[0]))
        return error_set(err, "--output_dir is required (where the embedding is written)");
    if (!o->pretrained_model_name_or_path)
        return error_set(err, "--pretrained_model_name_or_path is required");
    if (!o->token_string || !o->token_string[0])
        return error_set(err, "--token_string is required");
    return 0;
}

static DType storage_of(const char *mixed_precision) {
    if (mixed_precision && strcmp(mixed_precision, "fp16") == 0)
        return DTYPE_F16;
    if (mixed_precision && strcmp(mixed_precision, "bf16") == 0)
        return DTYPE_BF16;
    return DTYPE_F32;
}

static void dataset_args_from(const TrainOptions *o, DatasetArgs *a) {
    dataset_args_init(a);
    a->train_data_dir = o->train_data_dir;
    a->reg_data_dir = o->reg_data_dir;
    a->in_json = o->in_json;
    if (o->resolution_width > 0) {
        a->has_resolution = true;
        a->resolution[0] = o->resolution_width;
        a->resolution[1] = o->resolution_height;
    }
    a->batch_size = (int)o->train_batch_size;
    a->num_repeats = (int)o->dataset_repeats;
    a->enable_bucket = o->enable_bucket;
    a->min_bucket_reso = (int)o->min_bucket_reso;
    a->max_bucket_reso = (int)o->max_bucket_reso;
    a->bucket_reso_steps = (int)o->bucket_reso_steps;
    a->bucket_no_upscale = o->bucket_no_upscale;
    a->shuffle_caption = o->shuffle_caption;
    if (o->caption_separator)
        a->caption_separator = o->caption_separator;
    if (o->caption_extension)
        a->caption_extension = o->caption_extension;
    a->keep_tokens = (int)o->keep_tokens;
    if (o->keep_tokens_separator)
        a->keep_tokens_separator = o->keep_tokens_separator;
    a->secondary_separator = o->secondary_separator;
    a->enable_wildcard = o->enable_wildcard;
    a->caption_prefix = o->caption_prefix;
    a->caption_suffix = o->caption_suffix;
    a->color_aug = o->color_aug;
    a->flip_aug = o->flip_aug;
    a->random_crop = o->random_crop;
    a->token_warmup_min = (int)o->token_warmup_min;
    a->token_warmup_step = o->token_warmup_step;
    a->cache_info = o->cache_info;
    a->alpha_mask = o->alpha_mask;
    a->masked_loss = o->masked_loss;
    a->resize_interpolation = o->resize_interpolation;
    a->prior_loss_weight = o->prior_loss_weight;
    a->debug_dataset = o->debug_dataset;
}

static int setup_model(Trainer *t, Error *err) {
    const TrainOptions *o = t->o;
    ModelOpenOptions mo = {.v2 = o->v2};
    if (model_files_open(o->pretrained_model_name_or_path, &mo, &t->mf, err) != 0)
        return -1;
    t->mf_open = true;
    if (t->mf.config.inpainting)
        return error_set(err, "%s: an inpainting model (UNet in_channels 9) cannot be trained",
                         t->mf.path);
    t->storage = storage_of(o->mixed_precision);
    /* kohya always loads the CLIP tokenizer of the model's version, whatever folder the
     * weights come from */
    if (tokenizer_create_builtin(t->mf.config.version == SD_VERSION_2 ? TOKENIZER_SD2_PAD_ID
                                                                      : TOKENIZER_SD1_PAD_ID,
                                 &t->tok, err) != 0)
        return -1;
    if (clip_text_bind(&t->clip, &t->mf.components[COMPONENT_TEXT_ENCODER], &t->mf.config.clip,
                       t->storage, err) != 0)
        return error_prefix(err, "%s: ", t->mf.path);
    t->clip_bound = true;
    t->width = t->mf.config.clip.hidden_size;
    if (tokenizer_vocab_size(t->tok) != t->mf.config.clip.vocab_size)
        return error_set(err, "%s: the text encoder has %d token rows, the tokenizer %d",
                         t->mf.path, t->mf.config.clip.vocab_size, tokenizer_vocab_size(t->tok));
    if (unet_load(&t->mf.components[COMPONENT_UNET], &t->mf.config.unet, t->storage, &t->unet,
                  err) != 0)
        return error_prefix(err, "%s: ", t->mf.path);
    DType vae_storage = o->no_half_vae ? DTYPE_F32 : t->storage;
    if (o->vae) {
        /* kohya's --vae (load_vae): another VAE's weights with the model's VAE shapes */
        if (vae_file_open(o->vae, &t->vae_file, err) != 0)
            return -1;
        t->vae_file_open = true;
        if (vae_load(&t->vae, &t->vae_file.vae, &t->mf.config.vae, VAE_ENCODER, vae_storage,
                     err) != 0)
            return error_prefix(err, "--vae %s: not a VAE of this model's shape: ", o->vae);
        log_info("VAE: %s (--vae)", t->vae_file.path);
    } else if (vae_load(&t->vae, &t->mf.components[COMPONENT_VAE], &t->mf.config.vae,
                        VAE_ENCODER, vae_storage, err) != 0) {
        return error_prefix(err, "%s: ", t->mf.path);
    }
    t->vae_loaded = true;
    return 0;
}

static int setup_tokens(Trainer *t, Error *err) {
    const TrainOptions *o = t->o;
    if (ti_tokens_add(t->tok, o->token_string, (int)o->num_vectors_per_token, o->init_word, &t->ti,
                      err) != 0)
        return -1;
    t->ti_made = true;
    if (t->ti.init_note[0])
        log_info("%s", t->ti.init_note);
    t->n_vec = t->ti.num_vectors;
    t->rows = calloc((size_t)t->n_vec * t->width, sizeof *t->rows);
    if (!t->rows)
        return error_set(err, "out of memory");
    if (o->init_word) {
        const NamedTensor *te = tensor_set_find(&t->mf.components[COMPONENT_TEXT_ENCODER],
                                                "text_model.embeddings.token_embedding.weight");
        if (!te)
            return error_set(err, "%s: no token embedding", t->mf.path);
        if (ti_tokens_init_rows(&t->ti, te, t->rows, err) != 0)
            return -1;
    } else {
        /* transformers' resize_token_embeddings without an init word: normal(0, 0.02) rows
         * (older transformers; newer ones use the old rows' mean). From a generator of its own
         * so the training draws stay kohya's. */
        TorchGenerator g;
        torch_rng_init(&g, o->has_seed ? (uint64_t)o->seed : 0);
        torch_randn(&g, t->rows, (size_t)t->n_vec * t->width);
        for (size_t i = 0; i < (size_t)t->n_vec * t->width; i++)
            t->rows[i] *= 0.02f;
    }
    if (o->weights) {
        Embedding e;
        embedding_init(&e);
        int rc = embedding_load(o->weights, &e, err);
        if (rc != 0)
            error_prefix(err, "--weights: ");
        else
            rc = ti_tokens_load_weights(&t->ti, &e, o->weights, t->width, t->rows, err);
        embedding_free(&e);
        if (rc != 0)
            return -1;
        log_info("--weights %s: %d vectors loaded", o->weights, t->n_vec);
    }
    if (caption_ti_replacements(&t->ti, o->use_object_template, o->use_style_template, &t->repl,
                                err) != 0)
        return -1;
    t->repl_made = true;
    return clip_chunk_count(o->has_max_token_length ? o->max_token_length : 0, &t->chunks, err);
}

static int setup_datasets(Trainer *t, Error *err) {
    const TrainOptions *o = t->o;
    DatasetArgs a;
    dataset_args_from(o, &a);
    if (o->conditioning_data_dir) /* kohya's TI never passes it to its dataset */
        log_warning("--conditioning_data_dir %s has no effect, as in kohya's "
                    "train_textual_inversion.py: give conditioning_data_dir in every subset of "
                    "a --dataset_config .toml (with --masked_loss) instead",
                    o->conditioning_data_dir);
    int rc = o->dataset_config ? dataset_config_load(o->dataset_config, &a, &t->group, err)
                               : dataset_config_from_args(&a, &t->group, err);
    if (rc != 0)
        return -1;
    /* data parallel: the batches are the global ones (batch_size per rank x ranks), as a
     * one-process run with that batch makes them; each rank computes its share */
    for (size_t d = 0; d < t->group.dataset_count; d++)
        t->group.datasets[d].batch_size *= dist_size();
    t->datasets = calloc(t->group.dataset_count ? t->group.dataset_count : 1, sizeof *t->datasets);
    if (!t->datasets)
        return error_set(err, "out of memory");
    /* kohya (generate_dataset_group_by_blueprint): one seed for every dataset drawn from
     * Python's random, then each dataset's make_buckets (its first shuffle with the dataset's
     * seed still 0), then set_seed */
    int64_t ds_seed = py_random_randint(&t->py, 0, (int64_t)1 << 31);
    for (size_t d = 0; d < t->group.dataset_count; d++) {
        if (dataset_build(&t->group.datasets[d], &t->py, &t->datasets[d], err) != 0)
            return -1;
        t->dataset_count = d + 1;
        dataset_set_seed(&t->datasets[d], ds_seed);
    }
    int64_t images = 0;
    for (size_t d = 0; d < t->dataset_count; d++)
        images += t->datasets[d].num_train_images;
    if (images == 0)
        return error_set(err, "no training images found (see the warnings above; check "
                              "--train_data_dir / the dataset config's image_dir)");
    if (!o->use_object_template && !o->use_style_template &&
        dataset_check_token_string(t->datasets, t->dataset_count, o->token_string, err) != 0)
        return -1;
    if (o->cache_latents || o->cache_latents_to_disk)
        for (size_t d = 0; d < t->dataset_count; d++)
            if (dataset_check_latents_cacheable(&t->datasets[d], err) != 0)
                return -1;
    return 0;
}

static void trainer_free(Trainer *t) {
    if (t->cache) {
        for (size_t d = 0; d < t->dataset_count; d++) {
            for (size_t i = 0; t->cache[d] && i < t->datasets[d].image_count; i++) {
                free(t->cache[d][i].latents);
                free(t->cache[d][i].flipped);
                free(t->cache[d][i].alpha_mask);
            }
            free(t->cache[d]);
        }
        free(t->cache);
    }
    if (t->run_made)
        clip_text_run_free(&t->run);
    unet_arena_free(t->arena);
    row_grad_acc_free(&t->acc);
    if (t->opt_made)
        optimizer_free(&t->opt);
    free(t->rows);
    free(t->full);
    free(t->orig);
    if (t->repl_made)
        caption_ti_replacements_free(&t->repl);
    for (size_t d = 0; d < t->dataset_count; d++)
        dataset_free(&t->datasets[d]);
    free(t->datasets);
    dataset_config_free(&t->group);
    if (t->ti_made)
        ti_tokens_free(&t->ti);
    if (t->vae_loaded)
        vae_free(&t->vae);
    if (t->vae_file_open)
        vae_file_close(&t->vae_file);
    unet_free(t->unet);
    if (t->clip_bound)
        clip_text_free(&t->clip);
    tokenizer_free(t->tok);
    if (t->mf_open)
        model_files_close(&t->mf);
    nn_context_free(t->ctx);
    trainer_replay_free(t);
    trainer_sample_free(t);
}

/* An optimizer step: kohya's clip_grad_norm_ over the whole embedding matrix (every row used
 * since the last step), then the optimizer on the new rows (the other rows' update is undone
 * by kohya's restore, so it is never made here). */
static int optimizer_update(Trainer *t, float *grad, Error *err) {
    RowGradAcc *a = &t->acc;
    if (t->o->max_grad_norm != 0 && a->count > 0) {
        float *span = a->rows;
        size_t size = (size_t)a->count * a->width;
        clip_grad_norm(&span, &size, 1, t->o->max_grad_norm);
    }
    size_t w = (size_t)t->width;
    memset(grad, 0, sizeof(float) * (size_t)t->param_rows * w);
    for (int j = 0; j < a->count; j++) {
        int64_t k = a->ids[j] - t->first_param_id;
        if (k >= 0 && k < t->param_rows)
            memcpy(grad + (size_t)k * w, a->rows + (size_t)j * a->width, sizeof(float) * w);
    }
    a->count = 0;
    double lr = lr_scheduler_lr(&t->sched, t->global_step);
    if (optimizer_step(&t->opt, t->full ? t->full : t->rows, grad, lr, err) != 0)
        return -1;
    if (t->full) {
        size_t vocab = (size_t)t->first_param_id + (size_t)t->param_rows - (size_t)t->n_vec;
        memcpy(t->rows, t->full + vocab * w, sizeof(float) * (size_t)t->n_vec * w);
        memcpy(t->full, t->orig, sizeof(float) * vocab * w); /* kohya's restore */
    }
    if (t->replay)
        trainer_replay_record_step(t, grad + (size_t)(t->ti.ids[0] - t->first_param_id) * w, lr);
    for (size_t i = 0; i < (size_t)t->n_vec * t->width; i++)
        if (!isfinite(t->rows[i]))
            return error_set(err,
                             "the trained rows became NaN or Inf at step %lld: training stopped, "
                             "nothing written for this step (last good save: %s); lower "
                             "--learning_rate",
                             (long long)t->global_step + 1,
                             t->last_saved[0] ? t->last_saved : "none");
    t->global_step++;
    return 0;
}

typedef struct BatchRef {
    uint32_t dataset, batch;
} BatchRef;

static int train_loop(Trainer *t, Error *err) {
    const TrainOptions *o = t->o;
    size_t total = 0;
    for (size_t d = 0; d < t->dataset_count; d++)
        total += t->datasets[d].batch_count;
    BatchRef *refs = malloc(sizeof *refs * total);
    int64_t *perm = malloc(sizeof *perm * total);
    float *grad = malloc(sizeof(float) * (size_t)t->param_rows * t->width);
    if (!refs || !perm || !grad) {
        free(refs);
        free(perm);
        free(grad);
        return error_set(err, "out of memory");
    }
    for (size_t d = 0, k = 0; d < t->dataset_count; d++)
        for (size_t b = 0; b < t->datasets[d].batch_count; b++, k++)
            refs[k] = (BatchRef){(uint32_t)d, (uint32_t)b};
    int64_t accum = o->gradient_accumulation_steps > 0 ? o->gradient_accumulation_steps : 1;
    int64_t per_epoch = lr_steps_per_epoch((int64_t)total, accum);
    int save_epochs = o->has_save_every_n_epochs ? (int)o->save_every_n_epochs : 0;
    if (o->has_save_n_epoch_ratio && o->save_n_epoch_ratio > 0) {
        save_epochs = (int)floor((double)t->epochs / (double)o->save_n_epoch_ratio);
        if (save_epochs < 1)
            save_epochs = 1;
    }
    log_info("%zu batches per epoch, %lld optimizer steps per epoch, %d epochs, %lld steps", total,
             (long long)per_epoch, t->epochs, (long long)t->max_train_steps);
    t->perm = perm;
    t->perm_total = total;
    int first_epoch = 0;
    size_t start = 0; /* batches of first_epoch already done (a resumed state) */
    int rc = 0;
    if (o->resume) /* every rank reads the state (a shared or copied folder) */
        rc = dist_any_error(
            trainer_state_load(t, o->resume, perm, total, &first_epoch, &start, err), err);
    bool save_state = o->save_state;
    bool end_state = o->save_state || o->save_state_on_train_end;
    int end_epoch = 0; /* where the run stops, for the train-end state */
    size_t end_pos = 0;
    Progress p;
    progress_init(&p);
    p.start_step = t->global_step; /* it/s counts this run's steps (a resumed run's too) */
    TrainLog *log = NULL;          /* rank 0's; the others log nothing (NULL) */
    if (rc == 0)
        rc = dist_any_error(dist_rank() == 0 ? trainer_log_open(t, &log, err) : 0, err);
    if (rc == 0) /* --sample_at_first: kohya's call with epoch 0 before the loop (rank 0) */
        rc = dist_any_error(trainer_sample_images(t, 0, err), err);
    phase_timer_init(&t->prof, "train step");
    phase_timer_start(&t->prof);
    for (t->epoch = first_epoch; t->epoch < t->epochs && rc == 0; t->epoch++) {
        end_epoch = t->epoch;
        end_pos = start;
        if (t->global_step >= t->max_train_steps)
            break; /* a resumed state already at the end */
        /* the DataLoader draws its base seed and its sampler's seed from torch's global
         * generator, then randperm (the epoch's reshuffle happens in trainer_micro_step, where
         * kohya's collator does it); a state saved inside the epoch holds that order */
        if (start == 0) {
            (void)torch_random_int64(&t->g);
            TorchGenerator sampler;
            torch_rng_init(&sampler, (uint64_t)torch_random_int64(&t->g));
            sampler.kernel = t->g.kernel;
            if (torch_randperm(&sampler, (int64_t)total, perm, err) != 0) {
                rc = -1;
                break;
            }
        }
        p.loss_sum = 0;
        p.loss_count = 0;
        size_t k0 = start;
        start = 0;
        for (size_t k = k0; k < total && rc == 0; k++) {
            const BatchRef *r = &refs[perm[k]];
            float loss = 0;
            rc = trainer_micro_step(t, r->dataset, r->batch, (float)(1.0 / (double)accum), &loss,
                                    err);
            rc = trainer_dist_after_micro_step(t, rc, &loss, err);
            if (rc != 0)
                break;
            p.loss_sum += loss;
            p.loss_count++;
            if (t->replay)
                trainer_replay_record_loss(t, loss);
            end_pos = k + 1;
            if (!lr_is_sync_step((int64_t)k, (int64_t)total, accum)) {
                /* kohya logs every micro-batch's loss at the global step it has */
                rc = trainer_log_step(log, t, loss, p.loss_sum / (double)p.loss_count, err);
                rc = dist_any_error(rc, err);
                continue;
            }
            rc = trainer_dist_combine_grads(t, err);
            rc = rc ? rc : optimizer_update(t, grad, err);
            if (rc != 0)
                break;
            phase_timer_mark(&t->prof, "optimizer");
            progress_update(&p, t, false);
            rc = trainer_sample_images(t, -1, err); /* kohya samples before it saves */
            if (rc == 0 && o->has_save_every_n_steps && o->save_every_n_steps > 0 &&
                t->global_step % o->save_every_n_steps == 0 && dist_rank() == 0) {
                rc = trainer_save_step(t, err); /* only rank 0 writes */
                if (rc == 0 && save_state)
                    rc = trainer_state_save_step(t, k + 1, err);
            }
            if (rc == 0)
                rc = trainer_log_step(log, t, loss, p.loss_sum / (double)p.loss_count, err);
            rc = dist_any_error(rc, err); /* rank 0's save or log failed: every rank stops */
            phase_timer_mark(&t->prof, "log+save");
            phase_timer_end_run(&t->prof);
            if (t->global_step >= t->max_train_steps)
                break;
        }
        if (rc == 0) /* kohya: loss_total / len(train_dataloader), the last epoch's too */
            rc = dist_any_error(trainer_log_epoch(log, t, p.loss_sum / (double)total, err), err);
        if (rc == 0 && t->global_step >= t->max_train_steps) {
            /* kohya's last epoch ends with its sample too (no epoch save there) */
            rc = dist_any_error(trainer_sample_images(t, t->epoch + 1, err), err);
            break;
        }
        end_epoch = t->epoch + 1;
        end_pos = 0;
        if (rc == 0 && save_epochs > 0 && (t->epoch + 1) % save_epochs == 0 &&
            t->epoch + 1 < t->epochs) {
            if (dist_rank() == 0) {
                rc = trainer_save_epoch(t, t->epoch + 1, save_epochs, err);
                if (rc == 0 && save_state)
                    rc = trainer_state_save_epoch(t, t->epoch + 1, save_epochs, err);
            }
            rc = dist_any_error(rc, err);
        }
        if (rc == 0)
            rc = dist_any_error(trainer_sample_images(t, t->epoch + 1, err), err);
    }
    if (t->epoch >= t->epochs)
        t->epoch = t->epochs - 1;
    /* kohya saves the train-end state before the final model */
    if (rc == 0) {
        if (dist_rank() == 0 && end_state)
            rc = trainer_state_save_end(t, end_epoch, end_pos, err);
        if (rc == 0 && dist_rank() == 0) {
            progress_update(&p, t, true);
            rc = trainer_save(t, t->output_name, err);
        }
        rc = dist_any_error(rc, err);
    }
    rc = dist_any_error(trainer_log_end(log, rc, err), err);
    phase_timer_print(&t->prof);
    if (t->prof.on && t->arena) {
        double f[4], b[4];
        unet_arena_block_seconds(t->arena, f, b);
        fprintf(stderr,
                "profile unet (sum of all steps): fwd conv/sampling %.2f s, resnets %.2f s, "
                "transformers %.2f s; bwd %.2f / %.2f / %.2f s\n",
                f[0], f[1], f[2], b[0], b[1], b[2]);
    }
    t->perm = NULL;
    free(refs);
    free(perm);
    free(grad);
    return rc;
}

static int setup_schedule(Trainer *t, Error *err) {
    const TrainOptions *o = t->o;
    size_t total = 0;
    for (size_t d = 0; d < t->dataset_count; d++)
        total += t->datasets[d].batch_count;
    int64_t accum = o->gradient_accumulation_steps > 0 ? o->gradient_accumulation_steps : 1;
    int64_t per_epoch = lr_steps_per_epoch((int64_t)total, accum);
    t->max_train_steps = o->max_train_steps;
    if (o->has_max_train_epochs && o->max_train_epochs > 0)
        t->max_train_steps = o->max_train_epochs * per_epoch;
    t->epochs = (int)lr_epochs_for(t->max_train_steps, per_epoch);
    LrSchedulerSettings ls = *t->lr;
    ls.max_train_steps = t->max_train_steps;
    if (lr_scheduler_resolve(&t->sched, &ls, err) != 0)
        return -1;
    t->param_rows = t->n_vec;
    t->first_param_id = t->ti.ids[0];
    /* AdamW8bit: kohya hands bitsandbytes the whole embedding matrix, so its state is 8-bit
     * (>= min_8bit_size elements) and blocks of 256 run over the flattened matrix; when the
     * new rows start on a block boundary (CLIP's 49408 = 193 x 256 rows always do) their
     * blocks hold nothing else and stepping them alone gives the same bytes */
    OptimizerConfig oc = o->optimizer;
    oc.whole_numel = ((int64_t)t->ti.ids[0] + t->n_vec) * t->width;
    bool full = oc.kind == OPTIMIZER_ADAFACTOR ||
                (oc.kind == OPTIMIZER_ADAMW8BIT && ((int64_t)t->ti.ids[0] * t->width) % 256 != 0);
    if (full) {
        const NamedTensor *te = tensor_set_find(&t->mf.components[COMPONENT_TEXT_ENCODER],
                                                "text_model.embeddings.token_embedding.weight");
        size_t vocab = (size_t)t->ti.ids[0], w = (size_t)t->width;
        if (!te || (size_t)tensor_numel(te) != vocab * w)
            return error_set(err, "%s: the token embedding is not [%zu, %zu]", t->mf.path, vocab,
                             w);
        t->param_rows = (int64_t)vocab + t->n_vec;
        t->first_param_id = 0;
        t->full = malloc(sizeof(float) * (size_t)t->param_rows * w);
        t->orig = malloc(sizeof(float) * vocab * w);
        if (!t->full || !t->orig)
            return error_set(err,
                             "out of memory (%s keeps kohya's whole %zu x %zu "
                             "embedding matrix)",
                             optimizer_kind_name(oc.kind), vocab + (size_t)t->n_vec, w);
        if (tensor_to_f32(te, t->orig, err) != 0)
            return -1;
        memcpy(t->full, t->orig, sizeof(float) * vocab * w);
        memcpy(t->full + vocab * w, t->rows, sizeof(float) * (size_t)t->n_vec * w);
    }
    int64_t shape[2] = {t->param_rows, t->width};
    if (optimizer_init(&t->opt, &oc, 2, shape, err) != 0)
        return -1;
    t->opt_made = true;
    noise_schedule_init(&t->schedule, o->zero_terminal_snr);
    return 0;
}

int trainer_run(const TrainOptions *o, const LrSchedulerSettings *lr, int threads, Error *err) {
    if (check_required(o, err) != 0)
        return -1;
    Trainer *t = calloc(1, sizeof *t);
    if (!t)
        return error_set(err, "out of memory");
    t->o = o;
    t->lr = lr;
    t->output_name = o->output_name ? o->output_name : o->token_string;
    /* a bad prompt file stops the run before anything is loaded */
    int rc = trainer_sample_open(t, err);
    rc = rc ? rc : nn_context_create(trainer_dist_threads(threads), &t->ctx, err);
    rc = rc ? rc : setup_model(t, err);
    rc = rc ? rc : setup_tokens(t, err);
    if (rc == 0) {
        /* kohya: set_seed(--seed) seeds Python's and torch's global generators before the
         * datasets are made (without --seed nothing is seeded: any seed will do) */
        int64_t seed = o->has_seed ? o->seed : (int64_t)(time(NULL) & 0xffffffff);
        if (!o->has_seed)
            log_info("--seed not given: using %lld", (long long)seed);
        torch_rng_init(&t->g, (uint64_t)seed);
        py_random_seed(&t->py, seed);
    }
    rc = rc ? rc : setup_datasets(t, err);
    rc = dist_any_error(rc, err); /* a rank that failed to set up stops every rank */
    bool stopped = rc != 0;       /* every rank knows (and has the message) */
    if (rc == 0 && o->debug_dataset) {
        t->max_train_steps = o->max_train_steps;
        rc = dist_rank() == 0 ? trainer_debug_dataset(t, err) : 0;
        trainer_free(t);
        free(t);
        return rc;
    }
    if (rc == 0 && dist_rank() == 0 && file_make_dirs(o->output_dir, err) != 0)
        rc = error_prefix(err, "--output_dir: ");
    rc = rc ? rc : setup_schedule(t, err);
    if (rc == 0 && o->replay)
        rc = trainer_replay_open(t, err);
    if (!stopped)
        rc = dist_any_error(rc, err);
    if (rc == 0 && (o->cache_latents || o->cache_latents_to_disk)) {
        rc = trainer_dist_cache_latents(t, err);
        if (rc == 0 && t->vae_loaded) {
            /* every latent is cached: the encoder is never run again, so its weights go
             * (160 MiB in bf16 at SD1.5); the config stays for the latent sizes */
            VaeConfig cfg = t->vae.cfg;
            vae_free(&t->vae);
            t->vae.cfg = cfg;
            t->vae_loaded = false;
        }
    }
    rc = rc ? rc : train_loop(t, err);
    if (rc == 0 && t->replay && dist_rank() == 0)
        rc = trainer_replay_write(t, err);
    if (rc == 0 && dist_rank() == 0)
        fprintf(stderr, "sdti train: the embedding is %s\n", t->last_saved);
    trainer_free(t);
    free(t);
    return rc;
}
