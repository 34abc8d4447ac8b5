/* `sdti generate` options: every option of kohya-ss sd-scripts' gen_img_diffusers.py
 * (setup_parser, plus kohya's logging group), with kohya's names, types and defaults, from one
 * table (generate_options_table.c) that also prints --help and matches docs/options.md.
 * Options sdti does not do yet (LoRA networks, ControlNet, highres fix, img2img / inpainting,
 * guidance models, Deep Shrink, Gradual Latent, ...) are refused by name when given, never
 * ignored; GPU-only options are accepted with their CPU meaning. */
#ifndef SDTI_CLI_GENERATE_OPTIONS_H
#define SDTI_CLI_GENERATE_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"
#include "cli/options.h"

#define GENERATE_OPTION_MAX 96

/* Named as kohya names them. A None default is recorded in given[] (not given = None). */
typedef struct GenerateOptions {
    const char *console_log_level;
    const char *console_log_file;
    bool console_log_simple;
    bool v2;
    bool v_parameterization;
    const char *prompt;
    const char *from_file;
    bool interactive;
    bool no_preview;
    const char *image_path;
    const char *mask_path;
    double strength;
    long images_per_prompt;
    const char *outdir;
    bool sequential_file_name;
    bool use_original_file_name;
    long n_iter;
    long H;
    long W;
    long batch_size;
    double vae_batch_size;
    long vae_slices;
    long steps;
    const char *sampler;
    double scale;
    const char *ckpt;
    const char *vae;
    const char *tokenizer_cache_dir;
    long seed;
    bool iter_same_seed;
    bool shuffle_prompts;
    bool fp16;
    bool bf16;
    bool xformers;
    bool sdpa;
    bool diffusers_xformers;
    bool opt_channels_last;
    StringList network_module;
    StringList network_weights;
    StringList network_mul;
    StringList network_args;
    bool network_show_meta;
    long network_merge_n_models;
    bool network_merge;
    bool network_pre_calc;
    long network_regional_mask_max_color_codes;
    StringList textual_inversion_embeddings;
    StringList XTI_embeddings;
    long clip_skip;
    long max_embeddings_multiples;
    double clip_guidance_scale;
    double clip_image_guidance_scale;
    double vgg16_guidance_scale;
    long vgg16_guidance_layer;
    StringList guide_image_path;
    double highres_fix_scale;
    long highres_fix_steps;
    double highres_fix_strength;
    bool highres_fix_save_1st;
    bool highres_fix_latents_upscaling;
    const char *highres_fix_upscaler;
    const char *highres_fix_upscaler_args;
    bool highres_fix_disable_control_net;
    double negative_scale;
    StringList control_net_models;
    StringList control_net_preps;
    StringList control_net_weights;
    StringList control_net_ratios;
    long ds_depth_1;
    long ds_timesteps_1;
    long ds_depth_2;
    long ds_timesteps_2;
    double ds_ratio;
    long gradual_latent_timesteps;
    double gradual_latent_ratio;
    double gradual_latent_ratio_step;
    long gradual_latent_every_n_steps;
    double gradual_latent_s_noise;
    const char *gradual_latent_unsharp_params;
    /* sdti's own */
    long threads;

    bool given[GENERATE_OPTION_MAX]; /* on the command line */
} GenerateOptions;

typedef enum GenerateOptionStatus {
    GEN_OPT_SUPPORTED, /* sdti does what kohya does */
    GEN_OPT_CPU,       /* accepted, mapped to its CPU meaning */
    GEN_OPT_NO_EFFECT, /* accepted; means nothing here */
    GEN_OPT_NOT_YET,   /* refused when given */
    GEN_OPT_SDTI,      /* sdti's own option (kohya has none) */
} GenerateOptionStatus;

typedef struct GenerateOptionDef {
    const char *name;
    OptionType type;
    size_t offset;              /* of the value in GenerateOptions */
    const char *default_text;   /* kohya's default as text; NULL: None / false / empty */
    const char *const *choices; /* NULL-terminated, or NULL */
    GenerateOptionStatus status;
    const char *help;
} GenerateOptionDef;

extern const GenerateOptionDef generate_option_defs[];
extern const int generate_option_count;

/* kohya's defaults. */
void generate_options_init(GenerateOptions *o);
void generate_options_free(GenerateOptions *o);
/* Parses argv (argv[0] is "generate"); *wants_help for -h/--help. */
int generate_options_parse(GenerateOptions *o, int argc, char **argv, bool *wants_help, Error *err);
void generate_options_print_help(void);
/* Whether option `name` was given on the command line. */
bool generate_option_given(const GenerateOptions *o, const char *name);
/* kohya's checks and sdti's: refuses the options sdti does not do yet by name, bad sizes,
 * steps, batch sizes, --fp16 with --bf16, a missing --ckpt or prompt source. */
int generate_options_check(const GenerateOptions *o, Error *err);

#endif
