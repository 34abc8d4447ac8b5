/* sdti inspect PATH: what a model file, folder or Hugging Face id is, as sdti will load it. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/inspect_embedding.h"
#include "cli/options.h"
#include "models/model_files.h"

typedef struct InspectArgs {
    bool v2;
    bool keys;
    bool checksum;
} InspectArgs;

/* FNV-1a over every tensor's bytes in set order: reads the whole model (load benchmarks) and
 * gives a fingerprint that is the same for every layout of the same weights. */
static void print_checksums(const ModelFiles *mf) {
    for (int c = 0; c < COMPONENT_COUNT; c++) {
        const TensorSet *s = &mf->components[c];
        unsigned long long h = 1469598103934665603ull;
        for (size_t i = 0; i < s->count; i++) {
            const unsigned char *p = s->items[i].data;
            for (size_t k = 0; k < s->items[i].nbytes; k++)
                h = (h ^ p[k]) * 1099511628211ull;
        }
        printf("checksum %-12s %016llx\n", model_component_name((ModelComponent)c), h);
    }
}

static void print_dtypes_and_params(const TensorSet *set) {
    long long per_dtype[DTYPE_COUNT] = {0};
    long long total = 0;
    for (size_t i = 0; i < set->count; i++) {
        long long n = (long long)tensor_numel(&set->items[i]);
        per_dtype[set->items[i].dtype] += n;
        total += n;
    }
    printf("%lld parameters in %zu tensors, ", total, set->count);
    bool first = true;
    for (int d = 0; d < DTYPE_COUNT; d++) {
        if (!per_dtype[d])
            continue;
        printf("%s%s", first ? "" : " + ", dtype_display_name((DType)d));
        if (per_dtype[d] != total)
            printf(" (%lld)", per_dtype[d]);
        first = false;
    }
    printf("\n");
}

static void print_levels(const char *label, const int *values, int n) {
    printf("%s [", label);
    for (int i = 0; i < n; i++)
        printf("%s%d", i ? ", " : "", values[i]);
    printf("]");
}

static void print_model(const ModelFiles *mf, bool list_keys) {
    const ModelConfig *c = &mf->config;
    printf("path:          %s\n", mf->path);
    if (strcmp(mf->path, mf->requested) != 0)
        printf("requested:     %s (resolved from the Hugging Face cache)\n", mf->requested);
    printf("format:        %s\n", model_layout_name(mf->layout));
    printf("architecture:  %s%s\n", sd_version_name(c->version),
           c->version == SD_VERSION_2 ? " (OpenCLIP ViT-H-style text encoder)"
                                      : " (CLIP ViT-L-style text encoder)");
    if (c->prediction_known)
        printf("prediction:    %s (from the model's %s)\n",
               c->prediction == PREDICTION_V ? "v-prediction" : "epsilon",
               mf->layout == LAYOUT_DIFFUSERS ? "scheduler config" : ".yaml");
    else
        printf("prediction:    not stated by the files; epsilon unless you pass "
               "--v_parameterization (SD2 768-v models need it)\n");

    const UnetConfig *u = &c->unet;
    printf("unet:          ");
    print_dtypes_and_params(&mf->components[COMPONENT_UNET]);
    printf("               ");
    print_levels("channels", u->block_out_channels, u->num_levels);
    printf(", %d layers per block, ", u->layers_per_block);
    print_levels("heads", u->heads, u->num_levels);
    printf(", attention at levels [");
    for (int i = 0, first = 1; i < u->num_levels; i++)
        if (u->level_has_attention[i]) {
            printf("%s%d", first ? "" : ", ", i);
            first = 0;
        }
    printf("], cross-attention width %d, %s projection, in_channels %d\n", u->cross_attention_dim,
           u->use_linear_projection ? "linear" : "1x1 conv", u->in_channels);

    const VaeConfig *v = &c->vae;
    printf("vae:           ");
    print_dtypes_and_params(&mf->components[COMPONENT_VAE]);
    printf("               ");
    print_levels("channels", v->block_out_channels, v->num_levels);
    printf(", %d latent channels, scaling factor %g\n", v->latent_channels, v->scaling_factor);

    const ClipConfig *t = &c->clip;
    printf("text encoder:  ");
    print_dtypes_and_params(&mf->components[COMPONENT_TEXT_ENCODER]);
    printf("               vocabulary %d, width %d, %d layers, %d heads, %s, %d positions\n",
           t->vocab_size, t->hidden_size, t->num_layers, t->num_heads,
           t->activation == CLIP_ACT_GELU ? "gelu" : "quick_gelu", t->max_positions);
    if (mf->tokenizer_dir)
        printf("tokenizer:     %s\n", mf->tokenizer_dir);
    else
        printf("tokenizer:     built-in CLIP BPE (%s)\n",
               c->version == SD_VERSION_2 ? "SD2: pads with \"!\" (id 0)"
                                          : "SD1: pads with <|endoftext|> (id 49407)");
    if (mf->layout != LAYOUT_DIFFUSERS) {
        printf("keys:          %zu ignored (EMA copies, DDPM buffers, unused text layers), %zu "
               "unexpected\n",
               mf->report.ignored_count, mf->report.unexpected_count);
        for (size_t i = 0; i < mf->report.unexpected_count && i < 20; i++)
            printf("  unexpected:  %s\n", mf->report.unexpected[i]);
        if (mf->yaml_path)
            printf("config:        %s\n", mf->yaml_path);
    } else {
        for (int i = 0; i < COMPONENT_COUNT; i++)
            printf("%-14s %s\n", i == 0 ? "files:" : "", mf->component_files[i]);
    }
    if (c->notes[0])
        printf("defaults:      %s\n", c->notes);
    if (list_keys) {
        for (int i = 0; i < COMPONENT_COUNT; i++) {
            const TensorSet *s = &mf->components[i];
            for (size_t k = 0; k < s->count; k++) {
                char shape[128];
                printf("%s\t%s\t%s\t%s\n", model_component_name((ModelComponent)i),
                       s->items[k].name, dtype_display_name(s->items[k].dtype),
                       tensor_shape_string(&s->items[k], shape, sizeof shape));
            }
        }
    }
}

int cmd_inspect(int argc, char **argv) {
    InspectArgs args = {0};
    OptionSpec options[] = {
        {"v2", OPT_FLAG, &args.v2, "the model is SD 2.x (checked against the weights)", NULL,
         false},
        {"keys", OPT_FLAG, &args.keys, "also list every tensor: component, name, dtype, shape",
         NULL, false},
        {"checksum", OPT_FLAG, &args.checksum,
         "read every weight and print a checksum per component (order-dependent)", NULL, false},
    };
    CommandSpec cmd = {"inspect",
                       "sdti inspect [options] PATH",
                       "Shows what a model is as sdti loads it: a single-file LDM checkpoint "
                       "(.safetensors/.ckpt), a diffusers folder, or a Hugging Face model id "
                       "from the local cache; or a textual-inversion embedding file (layout, "
                       "vectors, width, dtype, training metadata).",
                       options,
                       (int)(sizeof options / sizeof options[0]),
                       1,
                       1};
    const char *positional[1];
    int npos;
    Error err = {{0}};
    int parse_exit;
    if (!options_parse_command(&cmd, argc, argv, positional, &npos, &parse_exit))
        return parse_exit;
    int exit_code;
    Error emb_err;
    if (inspect_embedding(positional[0], &emb_err, &exit_code))
        return exit_code;
    ModelOpenOptions open_opts = {.v2 = args.v2};
    ModelFiles mf;
    if (model_files_open(positional[0], &open_opts, &mf, &err) != 0) {
        if (emb_err.message[0])
            fprintf(stderr, "sdti inspect: as an embedding: %s\nsdti inspect: as a model: ",
                    emb_err.message);
        else
            fprintf(stderr, "sdti inspect: ");
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    print_model(&mf, args.keys);
    if (args.checksum)
        print_checksums(&mf);
    model_files_close(&mf);
    return 0;
}
