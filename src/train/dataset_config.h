/* kohya's dataset configuration for textual inversion (library/config_util.py:
 * ConfigSanitizer(support_dreambooth=True, support_finetuning=True,
 * support_controlnet=--masked_loss, support_dropout=False), BlueprintGenerator,
 * generate_dreambooth_subsets_config_by_subdirs;
 * train_textual_inversion.py for how the three sources are chosen):
 *   - a --dataset_config .toml: [general], [[datasets]], [[datasets.subsets]], checked
 *     against kohya's schema (unknown keys, wrong types, missing image_dir/metadata_file,
 *     DreamBooth and fine-tuning subsets mixed in one dataset: an error naming the file, line
 *     and key); caption_dropout_* are unknown, as kohya's TI refuses them;
 *   - --train_data_dir / --reg_data_dir: one DreamBooth dataset whose subsets are the
 *     sub-folders named "<repeats>_<class tokens>";
 *   - --in_json with --train_data_dir: one fine-tuning subset.
 * Every value is looked up as kohya does: subset, then dataset, then [general], then the
 * command line (DatasetArgs, which carries argparse's defaults), then the dataclass default.
 * A JSON dataset config (kohya also reads .json) is refused with a message: write it as TOML. */
#ifndef SDTI_TRAIN_DATASET_CONFIG_H
#define SDTI_TRAIN_DATASET_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"

/* The command-line values the dataset reads (kohya's argparse names in comments when they
 * differ). dataset_args_init sets kohya's argparse defaults. */
typedef struct DatasetArgs {
    const char *train_data_dir, *reg_data_dir, *in_json;
    bool has_resolution;
    int resolution[2]; /* --resolution "512" or "w,h" (width, height) */
    int batch_size;    /* --train_batch_size, 1 */
    int num_repeats;   /* --dataset_repeats, 1 */
    bool enable_bucket;
    int min_bucket_reso, max_bucket_reso, bucket_reso_steps; /* 256, 1024, 64 */
    bool bucket_no_upscale;
    bool shuffle_caption;
    const char *caption_separator;     /* "," */
    const char *caption_extension;     /* ".caption"; --caption_extention overrides it */
    int keep_tokens;                   /* 0 */
    const char *keep_tokens_separator; /* "" */
    const char *secondary_separator;   /* NULL */
    bool enable_wildcard;
    const char *caption_prefix, *caption_suffix; /* NULL */
    bool color_aug, flip_aug, random_crop;
    bool has_face_crop_aug_range;
    double face_crop_aug_range[2];
    int token_warmup_min;             /* 1 */
    double token_warmup_step;         /* 0 */
    bool cache_info, alpha_mask;      /* false */
    bool masked_loss; /* --masked_loss: kohya's support_controlnet (conditioning_data_dir) */
    const char *resize_interpolation; /* NULL: automatic */
    double prior_loss_weight;         /* 1.0 */
    bool debug_dataset;
} DatasetArgs;

void dataset_args_init(DatasetArgs *args);

typedef struct SubsetConfig {
    char *image_dir; /* DreamBooth: required; fine-tuning: optional */
    char *metadata_file;
    bool is_reg;
    char *class_tokens;
    char *caption_extension;
    bool cache_info, alpha_mask;
    int num_repeats;
    bool shuffle_caption;
    char *caption_separator;
    int keep_tokens;
    char *keep_tokens_separator;
    char *secondary_separator; /* NULL when unset */
    bool enable_wildcard;
    bool color_aug, flip_aug, random_crop;
    bool has_face_crop_aug_range;
    double face_crop_aug_range[2];
    char *caption_prefix, *caption_suffix; /* NULL when unset */
    int token_warmup_min;
    double token_warmup_step;
    char *resize_interpolation;  /* NULL when unset */
    char *conditioning_data_dir; /* ControlNet-style subsets (--masked_loss), else NULL */
    char where[96];             /* "file.toml:12" or the folder it came from, for messages */
} SubsetConfig;

typedef struct DatasetConfig {
    bool is_dreambooth; /* false: fine-tuning (every subset has metadata_file) */
    bool is_controlnet; /* --masked_loss and every subset has conditioning_data_dir: kohya's
                           ControlNetDataset (a DreamBooth dataset plus one mask image per
                           image, train/masked_loss.h) */
    int batch_size;
    int resolution[2]; /* width, height */
    bool enable_bucket;
    int min_bucket_reso, max_bucket_reso, bucket_reso_steps;
    bool bucket_no_upscale;
    double network_multiplier;
    double prior_loss_weight;
    char *resize_interpolation;
    SubsetConfig *subsets;
    size_t subset_count;
} DatasetConfig;

typedef struct DatasetGroupConfig {
    DatasetConfig *datasets;
    size_t dataset_count;
} DatasetGroupConfig;

/* --dataset_config FILE (.toml). */
int dataset_config_load(const char *path, const DatasetArgs *args, DatasetGroupConfig *out,
                        Error *err);
/* The same from TOML text; `name` is used in messages. */
int dataset_config_parse(const char *name, const char *text, size_t len, const DatasetArgs *args,
                         DatasetGroupConfig *out, Error *err);
/* No --dataset_config: the folder layout (or --in_json), as train_textual_inversion.py. */
int dataset_config_from_args(const DatasetArgs *args, DatasetGroupConfig *out, Error *err);

void dataset_config_free(DatasetGroupConfig *cfg);

/* "10_sks dog" -> repeats 10, class "sks dog"; false when the name has no integer prefix. */
bool dataset_parse_folder_name(const char *name, int *repeats, const char **class_tokens);

/* The interpolation names kohya accepts for resize_interpolation. */
bool dataset_interpolation_valid(const char *name);

#endif
