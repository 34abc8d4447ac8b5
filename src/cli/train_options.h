/* `sdti train` options: every option of kohya-ss sd-scripts' train_textual_inversion.py
 * (its own and those of kohya's shared argument groups), with kohya's names, types and
 * defaults, from one table (train_options_table.c) that also prints --help and feeds
 * docs/options.md. `--config_file` reads a kohya .toml of options the way kohya's
 * read_config_from_file does: sections are flattened, file values replace the defaults and
 * values given on the command line replace file values.
 *
 * Validation applies kohya's own checks (verify_training_args, prepare_dataset_args, the
 * optimizer and scheduler setup) and sdti's: an option sdti does not run yet is refused with
 * "--X is not supported yet by sdti" when it is given a non-default value; options whose
 * meaning is GPU-only are accepted with their CPU meaning (see docs/options.md). */
#ifndef SDTI_CLI_TRAIN_OPTIONS_H
#define SDTI_CLI_TRAIN_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"
#include "cli/options.h"
#include "formats/toml.h"
#include "train/loss.h"
#include "train/lr_scheduler.h"
#include "train/noise_schedule.h"
#include "train/optimizer.h"

/* Every kohya option, named as kohya names it. A numeric option whose kohya default is None
 * has a has_<name> flag; a string None is NULL; a list None is empty. */
#define TRAIN_OPTION_MAX 176

typedef struct TrainOptions {
    const char *console_log_level;
    const char *console_log_file;
    bool console_log_simple;
    bool v2;
    bool v_parameterization;
    const char *pretrained_model_name_or_path;
    const char *tokenizer_cache_dir;
    const char *metadata_title;
    const char *metadata_author;
    const char *metadata_description;
    const char *metadata_license;
    const char *metadata_tags;
    const char *metadata_usage_hint;
    const char *metadata_thumbnail;
    const char *metadata_merged_from;
    const char *metadata_trigger_phrase;
    const char *metadata_preprocessor;
    const char *metadata_is_negative_embedding;
    const char *train_data_dir;
    bool cache_info;
    bool shuffle_caption;
    const char *caption_separator;
    const char *caption_extension;
    const char *caption_extention;
    long keep_tokens;
    const char *keep_tokens_separator;
    const char *secondary_separator;
    bool enable_wildcard;
    const char *caption_prefix;
    const char *caption_suffix;
    bool color_aug;
    bool flip_aug;
    const char *face_crop_aug_range;
    bool random_crop;
    bool debug_dataset;
    const char *resolution;
    bool cache_latents;
    long vae_batch_size;
    bool cache_latents_to_disk;
    bool skip_cache_check;
    bool enable_bucket;
    long min_bucket_reso;
    long max_bucket_reso;
    long bucket_reso_steps;
    bool bucket_no_upscale;
    const char *resize_interpolation;
    long token_warmup_min;
    double token_warmup_step;
    bool alpha_mask;
    const char *dataset_class;
    const char *reg_data_dir;
    const char *in_json;
    long dataset_repeats;
    const char *output_dir;
    const char *output_name;
    const char *huggingface_repo_id;
    const char *huggingface_repo_type;
    const char *huggingface_path_in_repo;
    const char *huggingface_token;
    const char *huggingface_repo_visibility;
    bool save_state_to_huggingface;
    bool resume_from_huggingface;
    bool async_upload;
    const char *save_precision;
    long save_every_n_epochs;
    bool has_save_every_n_epochs;
    long save_every_n_steps;
    bool has_save_every_n_steps;
    long save_n_epoch_ratio;
    bool has_save_n_epoch_ratio;
    long save_last_n_epochs;
    bool has_save_last_n_epochs;
    long save_last_n_epochs_state;
    bool has_save_last_n_epochs_state;
    long save_last_n_steps;
    bool has_save_last_n_steps;
    long save_last_n_steps_state;
    bool has_save_last_n_steps_state;
    bool save_state;
    bool save_state_on_train_end;
    const char *resume;
    long train_batch_size;
    long max_token_length;
    bool has_max_token_length;
    bool mem_eff_attn;
    bool torch_compile;
    const char *dynamo_backend;
    bool xformers;
    bool sdpa;
    const char *vae;
    long max_train_steps;
    long max_train_epochs;
    bool has_max_train_epochs;
    long max_data_loader_n_workers;
    bool persistent_data_loader_workers;
    long seed;
    bool has_seed;
    bool gradient_checkpointing;
    long gradient_accumulation_steps;
    const char *mixed_precision;
    bool full_fp16;
    bool full_bf16;
    bool fp8_base;
    long ddp_timeout;
    bool has_ddp_timeout;
    bool ddp_gradient_as_bucket_view;
    bool ddp_static_graph;
    long clip_skip;
    bool has_clip_skip;
    const char *logging_dir;
    const char *log_with;
    const char *log_prefix;
    const char *log_tracker_name;
    const char *wandb_run_name;
    const char *log_tracker_config;
    const char *wandb_api_key;
    bool log_config;
    /* --log_config's values (cli/train_log_config.h), set by cmd_train before the run */
    const struct TbHParam *log_config_values;
    int log_config_count;
    double noise_offset;
    bool has_noise_offset;
    bool noise_offset_random_strength;
    long multires_noise_iterations;
    bool has_multires_noise_iterations;
    double ip_noise_gamma;
    bool has_ip_noise_gamma;
    bool ip_noise_gamma_random_strength;
    double multires_noise_discount;
    double adaptive_noise_scale;
    bool has_adaptive_noise_scale;
    bool zero_terminal_snr;
    long min_timestep;
    bool has_min_timestep;
    long max_timestep;
    bool has_max_timestep;
    const char *loss_type;
    const char *huber_schedule;
    double huber_c;
    double huber_scale;
    bool lowram;
    bool highvram;
    long sample_every_n_steps;
    bool has_sample_every_n_steps;
    bool sample_at_first;
    long sample_every_n_epochs;
    bool has_sample_every_n_epochs;
    const char *sample_prompts;
    const char *sample_sampler;
    const char *config_file;
    bool output_config;
    double prior_loss_weight;
    const char *conditioning_data_dir;
    bool masked_loss;
    bool deepspeed;
    long zero_stage;
    const char *offload_optimizer_device;
    const char *offload_optimizer_nvme_path;
    const char *offload_param_device;
    const char *offload_param_nvme_path;
    bool zero3_init_flag;
    bool zero3_save_16bit_model;
    bool fp16_master_weights_and_gradients;
    const char *optimizer_type;
    bool use_8bit_adam;
    bool use_lion_optimizer;
    double learning_rate;
    double max_grad_norm;
    StringList optimizer_args;
    const char *lr_scheduler_type;
    StringList lr_scheduler_args;
    const char *lr_scheduler;
    const char *lr_warmup_steps;
    const char *lr_decay_steps;
    long lr_scheduler_num_cycles;
    double lr_scheduler_power;
    bool fused_backward_pass;
    long lr_scheduler_timescale;
    bool has_lr_scheduler_timescale;
    double lr_scheduler_min_lr_ratio;
    bool has_lr_scheduler_min_lr_ratio;
    const char *dataset_config;
    double min_snr_gamma;
    bool has_min_snr_gamma;
    bool scale_v_pred_loss_like_noise_pred;
    double v_pred_like_loss;
    bool has_v_pred_like_loss;
    bool debiased_estimation_loss;
    const char *save_model_as;
    const char *weights;
    long num_vectors_per_token;
    const char *token_string;
    const char *init_word;
    bool use_object_template;
    bool use_style_template;
    bool no_half_vae;
    /* sdti's own options (after kohya's in the table) */
    const char *replay; /* --replay: testing aid, trainer_replay.h */

    /* --- derived by train_options_finish -------------------------------------------------- */
    int resolution_width, resolution_height; /* 0 when --resolution is not given */
    double face_crop_lo, face_crop_hi;
    StepsOrRatio warmup;     /* --lr_warmup_steps */
    StepsOrRatio decay;      /* --lr_decay_steps */
    TrainNoiseOptions noise; /* for train_noise_draw */
    TrainLossOptions loss;   /* for train_loss_forward_backward */
    OptimizerConfig optimizer;

    /* --- bookkeeping ---------------------------------------------------------------------- */
    bool given[TRAIN_OPTION_MAX]; /* on the command line or in the config file */
    bool from_cli[TRAIN_OPTION_MAX];
    StepsOrRatio file_warmup, file_decay; /* numeric values from the config file */
    bool file_warmup_set, file_decay_set;
    TomlValue *config;      /* the --config_file tree (strings point into it) */
    char config_path[4096]; /* --config_file with ".toml" appended as kohya does */
} TrainOptions;

typedef enum TrainOptionStatus {
    TRAIN_OPT_SUPPORTED, /* sdti does what kohya does */
    TRAIN_OPT_CPU,       /* accepted, mapped to its CPU meaning */
    TRAIN_OPT_NO_EFFECT, /* accepted; means nothing here (single process, compiled C, ...) */
    TRAIN_OPT_NOT_YET,   /* refused when given a non-default value */
    TRAIN_OPT_SDTI,      /* sdti's own option, not kohya's (the table's last entries) */
} TrainOptionStatus;

typedef struct TrainOptionDef {
    const char *name;
    OptionType type;
    size_t offset;              /* of the value in TrainOptions */
    size_t has_offset;          /* of has_<name>, or TRAIN_OPTION_NO_HAS */
    const char *default_text;   /* kohya's default as text (NULL: None / false / empty) */
    const char *const *choices; /* allowed strings, NULL-terminated, or NULL */
    TrainOptionStatus status;
    const char *help;
} TrainOptionDef;

#define TRAIN_OPTION_NO_HAS ((size_t)-1)

extern const TrainOptionDef train_option_defs[];
extern const int train_option_count;

/* kohya's defaults. */
void train_options_init(TrainOptions *o);
void train_options_free(TrainOptions *o);

/* Parses argv (argv[0] is "train") and, when --config_file is given, merges the file in.
 * *wants_help is set for -h/--help (nothing else is done then). */
int train_options_parse(TrainOptions *o, int argc, char **argv, bool *wants_help, Error *err);
/* Prints --help from the table. */
void train_options_print_help(void);

/* kohya's and sdti's checks, then the derived fields. Warnings (kohya's) are logged. */
int train_options_finish(TrainOptions *o, Error *err);

/* --output_config: writes every option that differs from its default (except config_file,
 * output_config and wandb_api_key) to o->config_path as TOML; refuses to overwrite. */
int train_options_write_config(const TrainOptions *o, Error *err);

/* The scheduler settings for the real step count (kohya recomputes max_train_steps from
 * --max_train_epochs and the dataset, then builds the scheduler). */
void train_options_lr_settings(const TrainOptions *o, int64_t max_train_steps,
                               LrSchedulerSettings *out);

/* Whether option `d` holds something other than kohya's default (a None option: given). */
bool train_option_differs(const TrainOptions *o, const TrainOptionDef *d);

/* The definition of an option by name, or NULL. */
const TrainOptionDef *train_option_find(const char *name);

#endif
