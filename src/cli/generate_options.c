/* See generate_options.h. Parsing goes through the shared option parser (options.c): the
 * table's rows become OptionSpecs pointing into a GenerateOptions. */
#include "cli/generate_options.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void generate_options_init(GenerateOptions *o) {
    memset(o, 0, sizeof *o);
    o->images_per_prompt = 1;
    o->outdir = "outputs";
    o->n_iter = 1;
    o->batch_size = 1;
    o->steps = 50;
    o->sampler = "ddim";
    o->scale = 7.5;
    o->vgg16_guidance_layer = 20;
    o->highres_fix_steps = 28;
    o->ds_timesteps_1 = 650;
    o->ds_timesteps_2 = 650;
    o->ds_ratio = 0.5;
    o->gradual_latent_ratio = 0.5;
    o->gradual_latent_ratio_step = 0.125;
    o->gradual_latent_every_n_steps = 3;
    o->gradual_latent_s_noise = 1.0;
}

void generate_options_free(GenerateOptions *o) {
    for (int i = 0; i < generate_option_count; i++)
        if (generate_option_defs[i].type == OPT_LIST)
            string_list_free((StringList *)((char *)o + generate_option_defs[i].offset));
}

static CommandSpec command_spec(OptionSpec *specs) {
    CommandSpec cmd = {
        "generate",
        "sdti generate --ckpt MODEL (--prompt TEXT | --from_file FILE) [options]",
        "txt2img with textual-inversion embeddings, with the options of kohya-ss sd-scripts'\n"
        "gen_img_diffusers.py (docs/generate.md). Per-prompt options inside a prompt:\n"
        "  --n TEXT negative prompt, --w N / --h N size, --s N steps, --d S[,S..] seeds,\n"
        "  --l F guidance scale, --nl F|none negative scale, --c TEXT clip prompt.\n"
        "Weighting: (word), (word:1.3), [word]; BREAK starts a new 77-token chunk;\n"
        "variants: {a|b}, {2$$a|b|c}, {e$$a|b} (kohya's dynamic prompts).\n"
        "Options marked 'not supported yet' in docs/options.md are refused when given.",
        specs,
        generate_option_count,
        0,
        0,
    };
    return cmd;
}

int generate_options_parse(GenerateOptions *o, int argc, char **argv, bool *wants_help,
                           Error *err) {
    OptionSpec *specs = calloc((size_t)generate_option_count, sizeof *specs);
    if (!specs)
        return error_set(err, "out of memory");
    for (int i = 0; i < generate_option_count; i++) {
        const GenerateOptionDef *d = &generate_option_defs[i];
        specs[i] =
            (OptionSpec){d->name, d->type, (char *)o + d->offset, d->help, d->choices, false};
    }
    CommandSpec cmd = command_spec(specs);
    int positional_count = 0;
    int rc = options_parse(&cmd, argc, argv, NULL, &positional_count, wants_help, err);
    for (int i = 0; i < generate_option_count && i < GENERATE_OPTION_MAX; i++)
        o->given[i] = specs[i].seen;
    free(specs);
    return rc;
}

void generate_options_print_help(void) {
    OptionSpec *specs = calloc((size_t)generate_option_count, sizeof *specs);
    if (!specs)
        return;
    for (int i = 0; i < generate_option_count; i++) {
        const GenerateOptionDef *d = &generate_option_defs[i];
        const char *help = d->help;
        char *owned = NULL;
        if (d->status == GEN_OPT_NOT_YET || d->default_text) {
            size_t size = strlen(help) + 64 + (d->default_text ? strlen(d->default_text) : 0);
            owned = malloc(size);
            if (owned) {
                snprintf(owned, size, "%s%s%s%s%s", help, d->default_text ? " (default " : "",
                         d->default_text ? d->default_text : "", d->default_text ? ")" : "",
                         d->status == GEN_OPT_NOT_YET ? " [not supported yet]" : "");
                help = owned;
            }
        }
        specs[i] = (OptionSpec){d->name, d->type, NULL, help, d->choices, false};
        /* the help text is freed after printing */
        specs[i].target = owned;
    }
    CommandSpec cmd = command_spec(specs);
    options_print_help(&cmd);
    for (int i = 0; i < generate_option_count; i++)
        free(specs[i].target);
    free(specs);
}

bool generate_option_given(const GenerateOptions *o, const char *name) {
    for (int i = 0; i < generate_option_count; i++)
        if (strcmp(generate_option_defs[i].name, name) == 0)
            return o->given[i];
    return false;
}

int generate_options_check(const GenerateOptions *o, Error *err) {
    for (int i = 0; i < generate_option_count; i++) {
        const GenerateOptionDef *d = &generate_option_defs[i];
        if (d->status == GEN_OPT_NOT_YET && o->given[i])
            return error_set(err,
                             "--%s is not supported yet by sdti generate (txt2img with "
                             "embeddings only: no LoRA networks, ControlNet, highres fix, "
                             "img2img / inpainting, guidance models, Deep Shrink or Gradual "
                             "Latent); leave it out",
                             d->name);
    }
    if (!o->ckpt)
        return error_set(err, "--ckpt is required: the model file, diffusers folder or "
                              "Hugging Face id to generate with");
    if (!o->prompt && !o->from_file && !o->interactive)
        return error_set(err, "give --prompt TEXT, --from_file FILE or --interactive");
    if (o->interactive && (o->prompt || o->from_file))
        return error_set(err, "--interactive reads the prompts from the console: leave out "
                              "--prompt and --from_file (kohya fails on the combination)");
    if (o->fp16 && o->bf16)
        return error_set(err, "--fp16 and --bf16 exclude each other; give one");
    if (generate_option_given(o, "W") && (o->W <= 0 || o->W % 8 != 0))
        return error_set(err, "--W %ld: the width must be a positive multiple of 8", o->W);
    if (generate_option_given(o, "H") && (o->H <= 0 || o->H % 8 != 0))
        return error_set(err, "--H %ld: the height must be a positive multiple of 8", o->H);
    if (o->steps < 1 || o->steps > 1000)
        return error_set(err, "--steps %ld: give 1 to 1000 sampling steps", o->steps);
    if (o->batch_size < 1)
        return error_set(err, "--batch_size %ld: must be 1 or more", o->batch_size);
    if (o->images_per_prompt < 1)
        return error_set(err, "--images_per_prompt %ld: must be 1 or more", o->images_per_prompt);
    if (o->n_iter < 1)
        return error_set(err, "--n_iter %ld: must be 1 or more", o->n_iter);
    if (generate_option_given(o, "max_embeddings_multiples") &&
        (o->max_embeddings_multiples < 1 || o->max_embeddings_multiples > 100))
        return error_set(err, "--max_embeddings_multiples %ld: give 1 or more (75 tokens each)",
                         o->max_embeddings_multiples);
    if (generate_option_given(o, "clip_skip") && o->clip_skip < 1)
        return error_set(err, "--clip_skip %ld: must be 1 or more (1 = the last layer)",
                         o->clip_skip);
    if (o->threads < 0)
        return error_set(err, "--threads %ld: must be 0 (every core) or more", o->threads);
    return 0;
}
