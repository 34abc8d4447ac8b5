/* sdti forward --model PATH --component C --inputs IN.safetensors --out OUT.safetensors */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/forward.h"
#include "cli/options.h"
#include "formats/safetensors.h"

typedef struct ForwardArgs {
    const char *model;
    const char *component;
    const char *inputs;
    const char *out;
    const char *mixed_precision;
    bool gradient_checkpointing;
    bool v2;
    long clip_skip;
    long max_token_length;
    long threads;
} ForwardArgs;

static const char *const COMPONENTS[] = {"unet", "vae-encode", "vae-decode", "text-encoder", NULL};
static const char *const PRECISIONS[] = {"no", "fp16", "bf16", NULL};

static int run(const ForwardArgs *a, Error *err) {
    ForwardRequest req = {a->component,       a->inputs,
                          a->mixed_precision, a->gradient_checkpointing,
                          a->clip_skip,       a->max_token_length};
    ModelOpenOptions open_opts = {.v2 = a->v2};
    ModelFiles mf;
    if (model_files_open(a->model, &open_opts, &mf, err) != 0)
        return -1;
    TensorSet in, out;
    tensor_set_init(&in);
    tensor_set_init(&out);
    if (safetensors_open(a->inputs, &in, err) != 0) {
        model_files_close(&mf);
        return -1;
    }
    NnContext *ctx = NULL;
    int rc = nn_context_create((int)a->threads, &ctx, err);
    if (rc == 0) {
        if (strcmp(a->component, "unet") == 0)
            rc = forward_unet(ctx, &req, &mf, &in, &out, err);
        else if (strncmp(a->component, "vae-", 4) == 0)
            rc = forward_vae(ctx, &req, &mf, &in, &out, err);
        else
            rc = forward_text_encoder(ctx, &req, &mf, &in, &out, err);
    }
    if (rc == 0)
        rc = safetensors_write(a->out, &out, err);
    nn_context_free(ctx);
    tensor_set_free(&out);
    tensor_set_free(&in);
    model_files_close(&mf);
    return rc;
}

int cmd_forward(int argc, char **argv) {
    ForwardArgs args = {.mixed_precision = "no"};
    OptionSpec options[] = {
        {"model", OPT_STRING, &args.model,
         "model: single-file checkpoint, diffusers folder or Hugging Face id (required)", NULL,
         false},
        {"component", OPT_STRING, &args.component, "which part to run (required)", COMPONENTS,
         false},
        {"inputs", OPT_STRING, &args.inputs,
         "safetensors file with the inputs: unet: sample, timestep, encoder_hidden_states "
         "[, grad_output]; vae-encode: image; vae-decode: latents; text-encoder: input_ids "
         "(required)",
         NULL, false},
        {"out", OPT_STRING, &args.out, "safetensors file to write the outputs to (required)", NULL,
         false},
        {"mixed_precision", OPT_STRING, &args.mixed_precision,
         "weight storage: no (fp32), fp16 or bf16; compute stays fp32", PRECISIONS, false},
        {"gradient_checkpointing", OPT_FLAG, &args.gradient_checkpointing,
         "unet backward: keep block inputs only and recompute", NULL, false},
        {"clip_skip", OPT_INT, &args.clip_skip, "text-encoder: use the N-th layer from the end",
         NULL, false},
        {"max_token_length", OPT_INT, &args.max_token_length,
         "text-encoder: 75, 150 or 225 (ids in chunks of 77, as kohya)", NULL, false},
        {"v2", OPT_FLAG, &args.v2, "the model is SD 2.x (checked against the weights)", NULL,
         false},
        {"threads", OPT_INT, &args.threads, "compute threads (default: all cores)", NULL, false},
    };
    CommandSpec cmd = {"forward",
                       "sdti forward --model PATH --component C --inputs IN --out OUT [options]",
                       "Runs one model component on float32 tensors from a safetensors file and "
                       "writes its outputs: the tool for parity checks against PyTorch.",
                       options,
                       (int)(sizeof options / sizeof options[0]),
                       0,
                       0};
    int npos;
    Error err = {{0}};
    int parse_exit;
    if (!options_parse_command(&cmd, argc, argv, NULL, &npos, &parse_exit))
        return parse_exit;
    const char *missing = !args.model       ? "--model"
                          : !args.component ? "--component"
                          : !args.inputs    ? "--inputs"
                          : !args.out       ? "--out"
                                            : NULL;
    if (missing) {
        fprintf(stderr, "sdti forward: %s is required (see sdti forward --help)\n", missing);
        return 2;
    }
    if (run(&args, &err) != 0) {
        fprintf(stderr, "sdti forward: %s\n", err.message);
        return 1;
    }
    return 0;
}
