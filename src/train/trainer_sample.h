/* Sample images during `sdti train`, as kohya's train_textual_inversion.py does them
 * (train_util.sample_images_common / sample_image_inference / line_to_prompt_dict):
 *   when:    before training with --sample_at_first (kohya's call with epoch 0), after every
 *            optimizer step whose number --sample_every_n_steps divides, or at the end of every
 *            epoch --sample_every_n_epochs divides (which then overrides the steps);
 *   prompts: --sample_prompts, a .txt (one prompt a line, options " --w N --h N --d SEED
 *            --s STEPS --l SCALE --n NEGATIVE --ss SAMPLER") or a .toml ([prompt] defaults plus
 *            [[prompt.subset]] entries, kohya's keys prompt, negative_prompt, width, height,
 *            sample_steps, scale, seed, sample_sampler) or a .json (a list of such lines or
 *            of objects with the .toml keys); checked before the model is loaded;
 *   images:  sdti generate's txt2img pipeline (src/generate/pipeline.h) with the text encoder
 *            holding the current trained rows: the token string's first token expands to all
 *            N tokens, which is what kohya's prompt_replacement ("tok" -> "tok tok1 ...") does;
 *            default 512x512, 30 steps, scale 7.5, --sample_sampler (ddim); width and height
 *            floored to a multiple of 8, at least 64;
 *   seeds:   --d SEED, else a fresh random seed (kohya's torch.seed()) from the system, never
 *            from the training generators, so a run with samples trains the same bytes;
 *   files:   <output_dir>/sample/<output_name>_<step:06d | e<epoch:06d>>_<prompt:02d>_
 *            <YYYYmmddHHMMSS>[_<seed>].png (the seed only when --d gave it), no text chunks.
 * Only rank 0 samples under MPI (kohya spreads the prompts over the processes). */
#ifndef SDTI_TRAIN_TRAINER_SAMPLE_H
#define SDTI_TRAIN_TRAINER_SAMPLE_H

#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"
#include "cli/train_options.h"
#include "sample/sampler.h"

typedef struct SamplePrompt {
    char *prompt;
    char *negative_prompt; /* NULL: none ("") */
    int width, height;     /* as given (kohya floors them when sampling) */
    int steps;
    double scale;
    bool has_seed;
    int64_t seed;
    bool has_sampler; /* --ss / sample_sampler, else --sample_sampler */
    SamplerKind sampler;
} SamplePrompt;

typedef struct SamplePromptList {
    SamplePrompt *items;
    int count;
} SamplePromptList;

/* Reads a prompt file (.txt, .toml or .json by its extension, as kohya decides). Errors name
 * the file and the place (line, subset or list item, key) and the reason. */
int sample_prompts_load(const char *path, SamplePromptList *out, Error *err);
void sample_prompts_free(SamplePromptList *list);

/* Whether kohya's sample_images_common samples at (epoch, steps); epoch < 0 is kohya's None. */
bool trainer_sample_due(const TrainOptions *o, int epoch, int64_t steps);

struct Trainer;
/* Before anything is loaded: with sampling enabled, reads and checks --sample_prompts. */
int trainer_sample_open(struct Trainer *t, Error *err);
/* Rank 0: samples when trainer_sample_due; a no-op otherwise. */
int trainer_sample_images(struct Trainer *t, int epoch, Error *err);
void trainer_sample_free(struct Trainer *t);

#endif
