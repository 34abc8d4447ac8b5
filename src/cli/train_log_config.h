/* --log_config: kohya's train_util.get_sanitized_config_or_none(args) as TensorBoard hparams
 * (src/train/tb_hparams.h): every argument of kohya's parser in its order, minus the
 * sensitive ones (wandb_api_key, huggingface_token) and the paths (pretrained_model_name_or_path,
 * vae, tokenizer_cache_dir, train_data_dir, conditioning_data_dir, reg_data_dir, output_dir,
 * logging_dir); None values left out (torch's add_hparams skips them); flags and ints as
 * numbers (a Python bool is an int there); strings as they are; lists and tuples as Python's
 * str() of them ("['a=1', 'b']", "(512, 512)"). With the changes kohya makes to args before
 * init_trackers: output_name defaults to token_string, caption_extention moves to
 * caption_extension, resolution and face_crop_aug_range become tuples, cache_latents is set
 * by cache_latents_to_disk, sample_every_n_* <= 0 become None, config_file loses its
 * extension; max_train_steps (from max_train_epochs) is the trainer's to set. sdti's own
 * options are not kohya's and are left out. */
#ifndef SDTI_CLI_TRAIN_LOG_CONFIG_H
#define SDTI_CLI_TRAIN_LOG_CONFIG_H

#include "base/error.h"
#include "cli/train_options.h"
#include "train/tb_hparams.h"

typedef struct TrainLogConfig {
    TbHParam *items;
    int count;
    char **owned; /* the strings made here */
    int owned_count;
} TrainLogConfig;

int train_log_config_build(const TrainOptions *o, TrainLogConfig *c, Error *err);
void train_log_config_free(TrainLogConfig *c);

#endif
