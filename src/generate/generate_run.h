/* The generation job of kohya's gen_img_diffusers.py main loop (txt2img): the prompt list
 * (--prompt or --from_file), --n_iter iterations (optionally shuffled), --images_per_prompt
 * images per prompt, seeds chosen as kohya chooses them with Python's `random` (per-prompt
 * --d seeds first, then the seeds drawn from --seed, then --iter_same_seed's per-iteration
 * seed, else a fresh random one), images gathered into batches of --batch_size that share size,
 * steps and scales, and each image written as a PNG named and tagged as kohya does, plus an
 * A1111-style "parameters" chunk. */
#ifndef SDTI_GENERATE_GENERATE_RUN_H
#define SDTI_GENERATE_GENERATE_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"
#include "generate/pipeline.h"

typedef struct GenerateJob {
    const char *prompt;    /* --prompt, or NULL */
    const char *from_file; /* --from_file, or NULL */
    const char *outdir;
    long images_per_prompt, n_iter, batch_size;
    bool has_seed;
    int64_t seed;
    bool iter_same_seed, shuffle_prompts, sequential_file_name;
    bool interactive; /* prompts from the console instead of prompt / from_file */
    int width, height; /* --W / --H (512 when unset) */
    int steps;
    double scale;
    bool has_negative_scale;
    double negative_scale;
    const char *sampler_name; /* as given (written to the PNG) */
    SamplerKind sampler;
    int clip_skip, max_multiples;
    const char *model_name; /* for the "parameters" chunk */
} GenerateJob;

int generate_run(GenModel *m, const GenerateJob *job, Error *err);

/* --from_file: kohya's reading (UTF-8, str.splitlines, blank lines and lines starting with '#'
 * dropped). Non-UTF-8 bytes are an error naming the line and byte. *lines is malloc'd, each
 * line too (free with generate_free_lines). */
int generate_read_prompt_file(const char *path, char ***lines, int *count, Error *err);
void generate_free_lines(char **lines, int count);

/* Python's repr of a float ("7.5", "7.0", "1e-05"), as kohya's str(scale) writes it. */
void generate_format_py_float(double v, char *out, size_t size);

#endif
