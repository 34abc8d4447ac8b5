/* sdti convert IN OUT: an embedding from any layout sdti reads into the layout OUT's extension
 * (or --format) names: kohya .safetensors, A1111 .pt, diffusers learned_embeds .bin/.safetensors.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/file_util.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "text/embedding_file.h"

typedef struct ConvertArgs {
    const char *format;
    const char *token;
    const char *save_precision;
} ConvertArgs;

static const char *const FORMATS[] = {"kohya", "a1111", "diffusers", NULL};
static const char *const PRECISIONS[] = {"float", "fp16", "bf16", NULL};

/* kohya's modelspec for a file that has none: the family from the width, the title from the
 * output name, the date from SOURCE_DATE_EPOCH (reproducible builds) or now. */
static int add_kohya_metadata(Embedding *e, const char *out, Error *err) {
    const char *base = path_basename(out);
    const char *dot = strrchr(base, '.');
    char title[256];
    snprintf(title, sizeof title, "%.*s",
             (int)(dot && dot != base ? dot - base : (long)strlen(base)), base);
    const char *epoch = getenv("SOURCE_DATE_EPOCH");
    KohyaMetadataArgs a = {.v2 = e->dim == 1024,
                           .title = title,
                           .timestamp = epoch ? strtoll(epoch, NULL, 10) : (int64_t)time(NULL),
                           .clip_skip = -1,
                           .min_timestep = -1,
                           .max_timestep = -1,
                           .implementation_version = "sdti/" SDTI_VERSION};
    return embedding_set_kohya_metadata(e, &a, err);
}

int cmd_convert(int argc, char **argv) {
    ConvertArgs args = {0};
    OptionSpec options[] = {
        {"format", OPT_STRING, &args.format,
         "layout to write: kohya ({\"emb_params\"}), a1111 (string_to_param) or diffusers "
         "({token: tensor}); default from OUT: .safetensors kohya, .pt/.ckpt a1111, .bin diffusers",
         FORMATS, false},
        {"token", OPT_STRING, &args.token,
         "token name for --format diffusers (default: the input's diffusers token, else its file "
         "name)",
         NULL, false},
        {"save_precision", OPT_STRING, &args.save_precision,
         "dtype of the written vectors (default: as stored in IN)", PRECISIONS, false},
    };
    CommandSpec cmd = {"convert",
                       "sdti convert [options] IN OUT",
                       "Converts a textual-inversion embedding between layouts: kohya "
                       ".safetensors/.pt, A1111 .pt (zip or legacy), diffusers learned_embeds "
                       ".bin/.safetensors, single-tensor .safetensors. The input's layout is "
                       "found from its bytes. A1111 and kohya use an embedding by its file name.",
                       options,
                       (int)(sizeof options / sizeof options[0]),
                       2,
                       2};
    const char *positional[2];
    int npos;
    Error err = {{0}};
    int parse_exit;
    if (!options_parse_command(&cmd, argc, argv, positional, &npos, &parse_exit))
        return parse_exit;
    const char *in = positional[0], *out = positional[1];
    bool st = path_has_suffix(out, ".safetensors");
    bool torch = path_has_suffix(out, ".pt") || path_has_suffix(out, ".ckpt") ||
                 path_has_suffix(out, ".bin");
    if (!st && !torch) {
        fprintf(stderr,
                "sdti convert: %s: the output must end in .safetensors, .pt, .ckpt or "
                ".bin\n",
                out);
        return 2;
    }
    const char *format = args.format;
    if (!format)
        format = st ? "kohya" : path_has_suffix(out, ".bin") ? "diffusers" : "a1111";
    if (st && strcmp(format, "a1111") == 0) {
        fprintf(stderr, "sdti convert: A1111 writes embeddings only as .pt; its loader reads "
                        "kohya's .safetensors: use --format kohya, or an OUT ending in .pt\n");
        return 2;
    }

    Embedding e;
    if (embedding_load(in, &e, &err) != 0) {
        fprintf(stderr, "sdti convert: %s\n", err.message);
        return 1;
    }
    DType dtype = e.dtype == DTYPE_F64 ? DTYPE_F32 : e.dtype;
    if (args.save_precision)
        dtype = strcmp(args.save_precision, "fp16") == 0   ? DTYPE_F16
                : strcmp(args.save_precision, "bf16") == 0 ? DTYPE_BF16
                                                           : DTYPE_F32;
    int rc;
    if (strcmp(format, "kohya") == 0 && st) {
        rc = embedding_get_meta(&e, "modelspec.architecture") ? 0
                                                              : add_kohya_metadata(&e, out, &err);
        if (rc == 0)
            rc = embedding_save_kohya_safetensors(&e, out, dtype, &err);
    } else if (strcmp(format, "kohya") == 0) {
        rc = embedding_save_kohya_pt(&e, out, dtype, &err);
    } else if (strcmp(format, "a1111") == 0) {
        rc = embedding_save_a1111_pt(&e, out, dtype, &err);
    } else {
        /* a diffusers file's key is its token; "*" (A1111's placeholder) is a CLIP word */
        bool keyed =
            (e.format == EMBEDDING_DIFFUSERS_BIN || e.format == EMBEDDING_DIFFUSERS_SAFETENSORS) &&
            strcmp(e.key, "*") != 0;
        const char *token = args.token ? args.token : keyed ? e.key : e.name;
        rc = embedding_save_diffusers(&e, out, token, dtype, &err);
    }
    if (rc != 0) {
        fprintf(stderr, "sdti convert: %s\n", err.message);
        embedding_free(&e);
        return 1;
    }
    printf("%s: %d vector%s x %d, %s -> %s (%s layout)\n", in, e.num_vectors,
           e.num_vectors == 1 ? "" : "s", e.dim, dtype_display_name(dtype), out, format);
    embedding_free(&e);
    return 0;
}
