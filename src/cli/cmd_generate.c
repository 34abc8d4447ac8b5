/* sdti generate: kohya's gen_img_diffusers.py options, checked, then the txt2img job
 * (src/generate/generate_run.h). */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/file_util.h"
#include "base/log.h"
#include "cli/commands.h"
#include "cli/generate_options.h"
#include "generate/generate_run.h"

static LogLevel log_level_of(const char *name) {
    if (!name || strcasecmp(name, "INFO") == 0)
        return LOG_INFO;
    if (strcasecmp(name, "DEBUG") == 0)
        return LOG_DEBUG;
    if (strcasecmp(name, "WARNING") == 0)
        return LOG_WARNING;
    return LOG_ERROR;
}

/* The model's name for A1111's "Model:" field: the file or folder name without extension. */
static void model_name(const char *ckpt, char *out, size_t size) {
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s", ckpt);
    size_t n = strlen(tmp);
    while (n > 1 && tmp[n - 1] == '/')
        tmp[--n] = '\0';
    const char *base = path_basename(tmp);
    snprintf(out, size, "%s", base);
    char *dot = strrchr(out, '.');
    if (dot && dot != out)
        *dot = '\0';
}

static int run(const GenerateOptions *o, Error *err) {
    GenerateJob job = {0};
    if (sampler_kind_from_name(o->sampler, &job.sampler, err) != 0)
        return -1;
    if (o->v2 && generate_option_given(o, "clip_skip"))
        log_warning("v2 with clip_skip will be unexpected");
    char name[256];
    model_name(o->ckpt, name, sizeof name);
    job.prompt = o->prompt;
    job.from_file = o->from_file;
    job.outdir = o->outdir;
    job.images_per_prompt = o->images_per_prompt;
    job.n_iter = o->n_iter;
    job.batch_size = o->batch_size;
    job.has_seed = generate_option_given(o, "seed");
    job.seed = o->seed;
    job.iter_same_seed = o->iter_same_seed;
    job.shuffle_prompts = o->shuffle_prompts;
    job.sequential_file_name = o->sequential_file_name;
    job.interactive = o->interactive;
    job.width = generate_option_given(o, "W") ? (int)o->W : 512;
    job.height = generate_option_given(o, "H") ? (int)o->H : 512;
    job.steps = (int)o->steps;
    job.scale = o->scale;
    job.has_negative_scale = generate_option_given(o, "negative_scale");
    job.negative_scale = o->negative_scale;
    job.sampler_name = o->sampler;
    job.clip_skip = generate_option_given(o, "clip_skip") ? (int)o->clip_skip : 0;
    job.max_multiples =
        generate_option_given(o, "max_embeddings_multiples") ? (int)o->max_embeddings_multiples : 1;
    job.model_name = name;

    GenModelOptions mo = {
        .ckpt = o->ckpt,
        .v2 = o->v2,
        .v_parameterization = o->v_parameterization,
        .vae = o->vae,
        .storage = o->fp16   ? DTYPE_F16
                   : o->bf16 ? DTYPE_BF16
                             : DTYPE_F32,
        .embeddings = o->textual_inversion_embeddings.items,
        .n_embeddings = o->textual_inversion_embeddings.count,
        .threads = (int)o->threads,
    };
    GenModel m;
    int rc = gen_model_open(&m, &mo, err);
    if (rc == 0)
        rc = generate_run(&m, &job, err);
    gen_model_close(&m);
    return rc;
}

int cmd_generate(int argc, char **argv) {
    GenerateOptions o;
    Error err = {{0}};
    bool help = false;
    int rc = 1;
    generate_options_init(&o);
    if (generate_options_parse(&o, argc, argv, &help, &err) != 0) {
        fprintf(stderr, "%s\n", err.message);
        rc = 2;
        goto done;
    }
    if (help) {
        generate_options_print_help();
        rc = 0;
        goto done;
    }
    log_set_level(log_level_of(o.console_log_level));
    if (generate_options_check(&o, &err) != 0) {
        fprintf(stderr, "sdti generate: %s\n", err.message);
        rc = 2;
        goto done;
    }
    if (run(&o, &err) != 0) {
        fprintf(stderr, "sdti generate: %s\n", err.message);
        goto done;
    }
    rc = 0;
done:
    generate_options_free(&o);
    return rc;
}
