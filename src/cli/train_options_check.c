/* `sdti train` option validation: kohya's checks (train_util.verify_training_args,
 * prepare_dataset_args, get_optimizer, get_scheduler_fix, the TI script's asserts) with
 * kohya's messages where it has one, sdti's refusals of what it does not run yet, and the
 * derived settings the training step uses. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/log.h"
#include "cli/train_options.h"

bool train_option_differs(const TrainOptions *o, const TrainOptionDef *d) {
    const void *v = (const char *)o + d->offset;
    if (d->has_offset != TRAIN_OPTION_NO_HAS)
        return *(const bool *)((const char *)o + d->has_offset);
    switch (d->type) {
    case OPT_FLAG:
        return *(const bool *)v;
    case OPT_INT:
        return *(const long *)v != (d->default_text ? strtol(d->default_text, NULL, 10) : 0);
    case OPT_FLOAT:
        return *(const double *)v != (d->default_text ? strtod(d->default_text, NULL) : 0.0);
    case OPT_STRING: {
        const char *s = *(const char *const *)v;
        if (!s || !d->default_text)
            return s != d->default_text;
        return strcmp(s, d->default_text) != 0;
    }
    case OPT_LIST:
        return ((const StringList *)v)->count > 0;
    }
    return false;
}

static int refuse_unsupported(const TrainOptions *o, Error *err) {
    for (int i = 0; i < train_option_count; i++) {
        const TrainOptionDef *d = &train_option_defs[i];
        if (d->status == TRAIN_OPT_NOT_YET && train_option_differs(o, d))
            return error_set(err, "--%s is not supported yet by sdti", d->name);
    }
    /* kohya (prepare_accelerator): "all" is tensorboard and wandb together, and stops when
     * wandb is not installed; sdti has no wandb, so both are refused rather than half-run */
    if (o->log_with && strcmp(o->log_with, "tensorboard") != 0)
        return error_set(err,
                         "--log_with %s is not supported yet by sdti: it has no Weights & Biases "
                         "(wandb) logging; use --log_with tensorboard with --logging_dir, or "
                         "leave --log_with out",
                         o->log_with);
    if (o->log_with && !o->logging_dir)
        return error_set(err, "logging_dir is required when log_with is tensorboard (kohya's "
                              "check): add --logging_dir DIR");
    return 0;
}

/* "512" or "512,768" (kohya: tuple(int(r) for r in text.split(","))). */
static int parse_resolution(TrainOptions *o, Error *err) {
    if (!o->resolution)
        return 0;
    long v[3];
    int n = 0;
    const char *s = o->resolution;
    while (n < 3) {
        char *end;
        errno = 0;
        v[n++] = strtol(s, &end, 10);
        while (*end == ' ')
            end++;
        if (end == s || errno || (*end && *end != ','))
            return error_set(err, "--resolution: '%s' is not 'size' or 'width,height'",
                             o->resolution);
        if (!*end)
            break;
        s = end + 1;
    }
    if (n > 2 || v[0] < 1 || v[n - 1] < 1)
        return error_set(err, "--resolution: '%s' is not 'size' or 'width,height'", o->resolution);
    o->resolution_width = (int)v[0];
    o->resolution_height = (int)v[n - 1];
    return 0;
}

typedef struct Minimum {
    const char *name;
    long min;
} Minimum;

static int check_ranges(const TrainOptions *o, Error *err) {
    const Minimum mins[] = {{"num_vectors_per_token", 1},
                            {"train_batch_size", 1},
                            {"gradient_accumulation_steps", 1},
                            {"max_train_steps", 1},
                            {"max_train_epochs", 1},
                            {"keep_tokens", 0},
                            {"clip_skip", 1},
                            {"vae_batch_size", 1},
                            {"dataset_repeats", 1},
                            {"save_every_n_epochs", 1},
                            {"save_every_n_steps", 1},
                            {"save_n_epoch_ratio", 1},
                            {"save_last_n_epochs", 1},
                            {"save_last_n_epochs_state", 1},
                            {"save_last_n_steps", 1},
                            {"save_last_n_steps_state", 1},
                            {"max_data_loader_n_workers", 0},
                            {"multires_noise_iterations", 0},
                            {"min_bucket_reso", 1},
                            {"max_bucket_reso", 1},
                            {"bucket_reso_steps", 1},
                            {"lr_scheduler_num_cycles", 1},
                            {"min_timestep", 0},
                            {"max_timestep", 0},
                            {"lr_scheduler_timescale", 1}};
    for (size_t i = 0; i < sizeof mins / sizeof *mins; i++) {
        const TrainOptionDef *d = train_option_find(mins[i].name);
        long v = *(const long *)((const char *)o + d->offset);
        bool present = d->has_offset == TRAIN_OPTION_NO_HAS ||
                       *(const bool *)((const char *)o + d->has_offset);
        if (present && v < mins[i].min)
            return error_set(err, "--%s must be at least %ld (got %ld)", d->name, mins[i].min, v);
    }
    if (o->has_max_timestep && o->max_timestep > NOISE_SCHEDULE_STEPS)
        return error_set(err, "--max_timestep must be at most %d (got %ld)", NOISE_SCHEDULE_STEPS,
                         o->max_timestep);
    long min_t = o->has_min_timestep ? o->min_timestep : 0;
    long max_t = o->has_max_timestep ? o->max_timestep : NOISE_SCHEDULE_STEPS;
    if (min_t >= max_t && max_t >= NOISE_SCHEDULE_STEPS)
        return error_set(err,
                         "--min_timestep %ld >= --max_timestep %ld: kohya then uses timestep "
                         "%ld for every sample, which is outside 0..%d",
                         min_t, max_t, max_t, NOISE_SCHEDULE_STEPS - 1);
    if (o->has_max_token_length && o->max_token_length != 150 && o->max_token_length != 225)
        return error_set(err, "--max_token_length: %ld is not one of 150, 225 (unset: 75)",
                         o->max_token_length);
    if (o->zero_stage < 0 || o->zero_stage > 3)
        return error_set(err, "--zero_stage: %ld is not one of 0, 1, 2, 3", o->zero_stage);
    if (o->bucket_reso_steps % 64 != 0)
        return error_set(err,
                         "bucket_reso_steps is %ld. it must be divisible by 64 (kohya's "
                         "textual inversion requires it)",
                         o->bucket_reso_steps);
    if (o->max_grad_norm < 0.0)
        return error_set(err, "--max_grad_norm must not be negative (0 turns clipping off)");
    if (o->prior_loss_weight < 0.0)
        return error_set(err, "--prior_loss_weight must not be negative");
    if ((strcmp(o->loss_type, "huber") == 0 || strcmp(o->loss_type, "smooth_l1") == 0) &&
        !(o->huber_c > 0.0))
        return error_set(err, "--huber_c must be above 0 for --loss_type %s", o->loss_type);
    if (o->has_min_snr_gamma && o->min_snr_gamma < 0.0)
        return error_set(err, "--min_snr_gamma must not be negative");
    return 0;
}

/* kohya's verify_training_args and the asserts the TI script runs before training. */
static int kohya_rules(TrainOptions *o, Error *err) {
    if (o->v2 && o->has_clip_skip)
        log_warning("v2 with clip_skip will be unexpected (kohya's warning)");
    if (o->cache_latents_to_disk && !o->cache_latents) {
        o->cache_latents = true;
        log_warning("cache_latents_to_disk is enabled, so cache_latents is also enabled");
    }
    if (o->has_adaptive_noise_scale && !o->has_noise_offset)
        return error_set(err, "adaptive_noise_scale requires noise_offset");
    if (o->scale_v_pred_loss_like_noise_pred && !o->v_parameterization)
        return error_set(err, "scale_v_pred_loss_like_noise_pred can be enabled only with "
                              "v_parameterization");
    if (o->has_v_pred_like_loss && o->v_pred_like_loss != 0.0 && o->v_parameterization)
        return error_set(err, "v_pred_like_loss cannot be enabled with v_parameterization");
    if (o->zero_terminal_snr && !o->v_parameterization)
        log_warning("zero_terminal_snr is enabled, but v_parameterization is not enabled. "
                    "training will be unexpected");
    if (o->has_sample_every_n_epochs && o->sample_every_n_epochs <= 0) {
        log_warning("sample_every_n_epochs is less than or equal to 0, so it will be disabled");
        o->has_sample_every_n_epochs = false;
    }
    if (o->has_sample_every_n_steps && o->sample_every_n_steps <= 0) {
        log_warning("sample_every_n_steps is less than or equal to 0, so it will be disabled");
        o->has_sample_every_n_steps = false;
    }
    if (o->caption_extention) { /* the old spelling wins, as in prepare_dataset_args */
        o->caption_extension = o->caption_extention;
        o->caption_extention = NULL;
    }
    if (o->cache_latents && (o->color_aug || o->random_crop))
        return error_set(err, "when caching latents, either color_aug or random_crop cannot be "
                              "used");
    if (o->fused_backward_pass) {
        if (!o->optimizer_type || strcasecmp(o->optimizer_type, "adafactor") != 0)
            return error_set(err, "fused_backward_pass currently only works with optimizer_type "
                                  "Adafactor");
        if (o->gradient_accumulation_steps != 1)
            return error_set(err, "fused_backward_pass does not work with "
                                  "gradient_accumulation_steps > 1");
    }
    if (o->dataset_config && (o->train_data_dir || o->reg_data_dir || o->in_json))
        log_info("--dataset_config is given: train_data_dir, reg_data_dir and in_json are "
                 "ignored (as kohya does)");
    return 0;
}

static int required(const TrainOptions *o, Error *err) {
    if (!o->pretrained_model_name_or_path)
        return error_set(err, "--pretrained_model_name_or_path is required (the base model)");
    if (!o->token_string)
        return error_set(err, "--token_string is required (the new token the embedding "
                              "teaches)");
    if (!*o->token_string)
        return error_set(err, "--token_string must not be empty");
    if (!o->dataset_config && !o->train_data_dir && !o->in_json)
        return error_set(err, "no training data: give --dataset_config or --train_data_dir");
    if (!o->output_dir && !o->debug_dataset)
        return error_set(err, "--output_dir is required (where the embedding is written)");
    return 0;
}

static int steps_or_ratio(const TrainOptions *o, const char *text, bool file_set,
                          StepsOrRatio file_value, const char *name, StepsOrRatio *out,
                          Error *err) {
    /* argparse runs the type function on given text only: the default is the integer 0 */
    if (text && o->given[train_option_find(name) - train_option_defs])
        return steps_or_ratio_parse(text, name, out, err);
    *out = file_set ? file_value : (StepsOrRatio){false, 0};
    return 0;
}

static int derived(TrainOptions *o, Error *err) {
    if (parse_resolution(o, err) != 0)
        return -1;
    if (steps_or_ratio(o, o->lr_warmup_steps, o->file_warmup_set, o->file_warmup, "lr_warmup_steps",
                       &o->warmup, err) != 0 ||
        steps_or_ratio(o, o->lr_decay_steps, o->file_decay_set, o->file_decay, "lr_decay_steps",
                       &o->decay, err) != 0)
        return -1;
    if (!o->output_name)
        o->output_name = o->token_string; /* kohya's TI default */

    TrainNoiseOptions *n = &o->noise;
    train_noise_options_default(n);
    n->noise_offset = o->has_noise_offset ? o->noise_offset : 0.0;
    n->noise_offset_random_strength = o->noise_offset_random_strength;
    n->has_adaptive_noise_scale = o->has_adaptive_noise_scale;
    n->adaptive_noise_scale = o->adaptive_noise_scale;
    n->multires_noise_iterations =
        o->has_multires_noise_iterations ? (int)o->multires_noise_iterations : 0;
    n->multires_noise_discount = o->multires_noise_discount;
    n->ip_noise_gamma = o->has_ip_noise_gamma ? o->ip_noise_gamma : 0.0;
    n->ip_noise_gamma_random_strength = o->ip_noise_gamma_random_strength;
    n->min_timestep = o->has_min_timestep ? (int)o->min_timestep : 0;
    n->max_timestep = o->has_max_timestep ? (int)o->max_timestep : NOISE_SCHEDULE_STEPS;

    TrainLossOptions *l = &o->loss;
    train_loss_options_default(l);
    if (loss_type_from_name(o->loss_type, &l->loss_type, err) != 0 ||
        huber_schedule_from_name(o->huber_schedule, &l->huber_schedule, err) != 0)
        return -1;
    l->huber_c = o->huber_c;
    l->huber_scale = o->huber_scale;
    l->v_parameterization = o->v_parameterization;
    l->min_snr_gamma = o->has_min_snr_gamma ? o->min_snr_gamma : 0.0;
    l->scale_v_pred_loss_like_noise_pred = o->scale_v_pred_loss_like_noise_pred;
    l->v_pred_like_loss = o->has_v_pred_like_loss ? o->v_pred_like_loss : 0.0;
    l->debiased_estimation_loss = o->debiased_estimation_loss;

    if (optimizer_config_resolve(&o->optimizer, o->optimizer_type, o->use_8bit_adam,
                                 o->use_lion_optimizer, o->learning_rate, o->optimizer_args.items,
                                 o->optimizer_args.count, err) != 0)
        return -1;
    /* the scheduler as kohya would build it for --max_train_steps (with --max_train_epochs the
     * trainer builds it again once the dataset gives the real count) */
    LrSchedulerSettings st;
    LrScheduler sched;
    train_options_lr_settings(o, o->max_train_steps, &st);
    return lr_scheduler_resolve(&sched, &st, err);
}

void train_options_lr_settings(const TrainOptions *o, int64_t max_train_steps,
                               LrSchedulerSettings *out) {
    memset(out, 0, sizeof *out);
    out->name = o->lr_scheduler;
    out->scheduler_type = o->lr_scheduler_type;
    out->learning_rate = o->learning_rate;
    out->warmup = o->warmup;
    out->max_train_steps = max_train_steps;
    out->num_cycles = o->lr_scheduler_num_cycles;
    out->power = o->lr_scheduler_power;
    out->has_timescale = o->has_lr_scheduler_timescale;
    out->timescale = o->lr_scheduler_timescale;
    out->has_min_lr_ratio = o->has_lr_scheduler_min_lr_ratio;
    out->min_lr_ratio = o->lr_scheduler_min_lr_ratio;
    out->args = o->lr_scheduler_args.items;
    out->arg_count = o->lr_scheduler_args.count;
    out->adafactor_relative_step =
        o->optimizer.kind == OPTIMIZER_ADAFACTOR && o->optimizer.relative_step;
}

int train_options_finish(TrainOptions *o, Error *err) {
    if (refuse_unsupported(o, err) != 0 || required(o, err) != 0 || check_ranges(o, err) != 0 ||
        kohya_rules(o, err) != 0 || derived(o, err) != 0)
        return -1;
    return 0;
}
