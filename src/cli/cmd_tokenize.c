/* sdti tokenize: a prompt as the text encoder sees it (kohya's --debug_dataset view), and with
 * --encode the hidden states the UNet would receive.
 *
 * Ids are BOS + the prompt's tokens (at most max_token_length of them) + EOS, as kohya's
 * SdTokenizeStrategy makes them; --pad adds the padding and shows kohya's 77-token chunks.
 * Embeddings are loaded by file name as kohya's gen_img_diffusers.py loads them: the file stem
 * is the token, a file of N vectors adds the tokens stem, stem1, ..., stem{N-1}, and the stem
 * in a prompt stands for all N. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/options.h"
#include "cli/text_encode.h"
#include "formats/safetensors.h"
#include "models/clip_text_chunks.h"
#include "models/model_files.h"
#include "text/embedding_file.h"
#include "text/tokenizer.h"

typedef struct TokenizeArgs {
    const char *model;
    bool v2;
    long max_token_length;
    bool pad;
    bool verbose;
    const char *encode;
    long clip_skip;
    const char *mixed_precision;
    StringList embeddings;
    long threads;
} TokenizeArgs;

/* The loaded embeddings: their rows in id order, and which first id stands for how many. */
typedef struct Added {
    int count;     /* files */
    int *first_id; /* [count] */
    int *vectors;  /* [count] */
    float *rows;   /* [total, width] */
    int total;
    int width;
} Added;

static void added_free(Added *a) {
    free(a->first_id);
    free(a->vectors);
    free(a->rows);
    memset(a, 0, sizeof *a);
}

static int load_embeddings(const StringList *files, Tokenizer *tok, const ModelFiles *mf, Added *a,
                           Error *err) {
    memset(a, 0, sizeof *a);
    if (files->count == 0)
        return 0;
    a->first_id = calloc((size_t)files->count, sizeof *a->first_id);
    a->vectors = calloc((size_t)files->count, sizeof *a->vectors);
    if (!a->first_id || !a->vectors)
        return error_set(err, "out of memory");
    for (int f = 0; f < files->count; f++) {
        const char *path = files->items[f];
        Embedding e;
        embedding_init(&e);
        if (embedding_load(path, &e, err) != 0)
            return -1;
        int rc = 0;
        if (mf)
            rc = embedding_check_for_model(&e, path, mf->config.clip.hidden_size, err);
        if (rc == 0 && a->width != 0 && e.dim != a->width)
            rc = error_set(err, "%s: %d wide, but %s is %d wide", path, e.dim, files->items[0],
                           a->width);
        float *grown = rc == 0 ? realloc(a->rows, ((size_t)a->total + (size_t)e.num_vectors) *
                                                      (size_t)e.dim * sizeof *grown)
                               : NULL;
        if (rc == 0 && !grown)
            rc = error_set(err, "out of memory for %s", path);
        if (grown)
            a->rows = grown;
        for (int i = 0; rc == 0 && i < e.num_vectors; i++) {
            char name[1200];
            if (i == 0)
                snprintf(name, sizeof name, "%s", e.name);
            else
                snprintf(name, sizeof name, "%s%d", e.name, i);
            int id = -1;
            if (tokenizer_token_id(tok, name) >= 0) {
                rc = error_set(err,
                               "%s: its token '%s' (from the file name) is already known to the "
                               "tokenizer; rename the file (kohya: \"please rename the file\")",
                               path, name);
                break;
            }
            if (tokenizer_add_token(tok, name, &id, err) != 0) {
                rc = error_prefix(err, "%s: ", path);
                break;
            }
            if (i == 0)
                a->first_id[f] = id;
            memcpy(a->rows + ((size_t)a->total + (size_t)i) * (size_t)e.dim,
                   e.data + (size_t)i * (size_t)e.dim, (size_t)e.dim * sizeof(float));
        }
        if (rc == 0) {
            a->vectors[f] = e.num_vectors;
            a->total += e.num_vectors;
            a->width = e.dim;
            a->count = f + 1;
        }
        embedding_free(&e);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* Prompt ids (no BOS/EOS) with every multi-vector embedding's first id expanded to all its
 * ids (gen_img_diffusers' token replacement). */
static int prompt_ids(const Tokenizer *tok, const Added *a, const char *prompt, int **out,
                      int *count, Error *err) {
    int *ids = NULL, n = 0;
    if (tokenizer_encode(tok, prompt, &ids, &n, err) != 0)
        return error_prefix(err, "the prompt");
    int extra = 0;
    for (int i = 0; i < n; i++)
        for (int f = 0; f < a->count; f++)
            if (ids[i] == a->first_id[f])
                extra += a->vectors[f] - 1;
    int *res = malloc(((size_t)n + (size_t)extra) * sizeof *res + 1);
    if (!res) {
        free(ids);
        return error_set(err, "out of memory");
    }
    int k = 0;
    for (int i = 0; i < n; i++) {
        int f = 0;
        while (f < a->count && ids[i] != a->first_id[f])
            f++;
        int reps = f < a->count ? a->vectors[f] : 1;
        for (int j = 0; j < reps; j++)
            res[k++] = ids[i] + j;
    }
    free(ids);
    *out = res;
    *count = k;
    return 0;
}

static void print_ids(const Tokenizer *tok, const int32_t *ids, int n, bool verbose) {
    for (int i = 0; i < n; i++) {
        if (verbose) {
            const char *piece = tokenizer_id_to_token(tok, ids[i]);
            printf("%d\t%s\n", ids[i], piece ? piece : "?");
        } else {
            printf(i ? " %d" : "%d", ids[i]);
        }
    }
    if (!verbose)
        printf("\n");
}

static int encode_to_file(const TokenizeArgs *args, const ModelFiles *mf, const Added *a,
                          int chunks, const int32_t *ids, Error *err) {
    NnContext *ctx = NULL;
    if (nn_context_create((int)args->threads, &ctx, err) != 0)
        return -1;
    TensorSet out;
    tensor_set_init(&out);
    int width = mf->config.clip.hidden_size;
    int64_t hshape[3] = {1, clip_chunked_length(chunks), width};
    int64_t ishape[3] = {1, chunks, CLIP_CHUNK_TOKENS};
    float *hidden = tensor_set_alloc(&out, (size_t)hshape[1] * (size_t)width * sizeof *hidden, err);
    int64_t *ids64 =
        tensor_set_alloc(&out, (size_t)chunks * CLIP_CHUNK_TOKENS * sizeof *ids64, err);
    int rc = hidden && ids64 ? 0 : -1;
    for (int i = 0; rc == 0 && i < chunks * CLIP_CHUNK_TOKENS; i++)
        ids64[i] = ids[i];
    rc = rc ? rc
            : text_encode_chunked(ctx, mf, args->mixed_precision, args->clip_skip, 1, chunks, ids,
                                  a->rows, a->total, hidden, err);
    rc = rc ? rc : tensor_set_add(&out, "hidden_states", DTYPE_F32, 3, hshape, hidden, err);
    rc = rc ? rc : tensor_set_add(&out, "input_ids", DTYPE_I64, 3, ishape, ids64, err);
    rc = rc ? rc : safetensors_write(args->encode, &out, err);
    tensor_set_free(&out);
    nn_context_free(ctx);
    return rc;
}

static int run(TokenizeArgs *args, const char *prompt, Error *err) {
    int chunks;
    if (clip_chunk_count(args->max_token_length, &chunks, err) != 0)
        return -1;
    if (args->encode && !args->model)
        return error_set(err, "--encode needs --model (the text encoder to run)");
    ModelFiles mf;
    bool have_model = false;
    Tokenizer *tok = NULL;
    Added added = {0};
    int *content = NULL;
    int32_t *row = NULL, *chunked = NULL;
    int rc = 0;
    if (args->model) {
        ModelOpenOptions opts = {.v2 = args->v2};
        if (model_files_open(args->model, &opts, &mf, err) != 0)
            return -1;
        have_model = true;
        if (mf.tokenizer_dir)
            rc = tokenizer_load_dir(mf.tokenizer_dir, &tok, err);
        else
            rc = tokenizer_create_builtin(text_encode_pad_id(&mf), &tok, err);
    } else {
        rc = tokenizer_create_builtin(args->v2 ? TOKENIZER_SD2_PAD_ID : TOKENIZER_SD1_PAD_ID, &tok,
                                      err);
    }
    int n = 0;
    rc = rc ? rc : load_embeddings(&args->embeddings, tok, have_model ? &mf : NULL, &added, err);
    rc = rc ? rc : prompt_ids(tok, &added, prompt, &content, &n, err);
    int limit = chunks * (CLIP_CHUNK_TOKENS - 2);
    int len = clip_chunked_length(chunks);
    row = rc ? NULL : malloc((size_t)len * sizeof *row);
    chunked = rc ? NULL : malloc((size_t)chunks * CLIP_CHUNK_TOKENS * sizeof *chunked);
    if (rc == 0 && (!row || !chunked))
        rc = error_set(err, "out of memory");
    if (rc == 0) {
        /* kohya: tokenizer(text, padding="max_length", truncation=True, max_length=L + 2) */
        int used = n < limit ? n : limit;
        row[0] = tokenizer_bos_id(tok);
        for (int i = 0; i < used; i++)
            row[1 + i] = content[i];
        row[1 + used] = tokenizer_eos_id(tok);
        for (int i = used + 2; i < len; i++)
            row[i] = tokenizer_pad_id(tok);
        clip_chunk_ids(row, chunks, tokenizer_eos_id(tok), tokenizer_pad_id(tok), chunked);
        if (n > limit)
            fprintf(stderr,
                    "sdti tokenize: the prompt has %d tokens; only the first %d are used "
                    "(--max_token_length %d)\n",
                    n, limit, limit);
        if (!args->pad) {
            print_ids(tok, row, used + 2, args->verbose);
        } else {
            for (int c = 0; c < chunks; c++) {
                if (args->verbose && c > 0)
                    printf("\n");
                print_ids(tok, chunked + (size_t)c * CLIP_CHUNK_TOKENS, CLIP_CHUNK_TOKENS,
                          args->verbose);
            }
        }
        if (args->encode)
            rc = encode_to_file(args, &mf, &added, chunks, chunked, err);
    }
    free(row);
    free(chunked);
    free(content);
    added_free(&added);
    tokenizer_free(tok);
    if (have_model)
        model_files_close(&mf);
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    TokenizeArgs args = {.mixed_precision = "no"};
    static const char *const PRECISIONS[] = {"no", "fp16", "bf16", NULL};
    OptionSpec options[] = {
        {"model", OPT_STRING, &args.model,
         "model whose tokenizer (a diffusers folder's tokenizer/) and text encoder to use; "
         "default: the built-in CLIP tokenizer",
         NULL, false},
        {"v2", OPT_FLAG, &args.v2, "SD 2.x: pad with \"!\" (id 0) instead of EOS", NULL, false},
        {"max_token_length", OPT_INT, &args.max_token_length,
         "75 (default), 150 or 225 tokens between BOS and EOS, in chunks of 75 as kohya", NULL,
         false},
        {"pad", OPT_FLAG, &args.pad,
         "show the padded ids the model receives: kohya's rows of 77, one line per chunk", NULL,
         false},
        {"verbose", OPT_FLAG, &args.verbose, "one token per line: id and piece", NULL, false},
        {"encode", OPT_STRING, &args.encode,
         "also run the text encoder and write the hidden states the UNet would receive "
         "(hidden_states [1, tokens, width] float32, and input_ids) to this .safetensors file",
         NULL, false},
        {"clip_skip", OPT_INT, &args.clip_skip,
         "--encode: use the N-th layer from the end, as kohya (1 = the last)", NULL, false},
        {"mixed_precision", OPT_STRING, &args.mixed_precision,
         "--encode: weight storage no (fp32), fp16 or bf16; compute stays fp32", PRECISIONS, false},
        {"embeddings", OPT_LIST, &args.embeddings,
         "TI embedding files (any format), each used by its file name as in gen_img_diffusers; "
         "give the prompt before this option or as its last value",
         NULL, false},
        {"threads", OPT_INT, &args.threads, "--encode: compute threads (default: all cores)", NULL,
         false},
    };
    CommandSpec cmd = {"tokenize",
                       "sdti tokenize [options] \"PROMPT\"",
                       "Prints a prompt's CLIP token ids (BOS ... EOS) as kohya-ss sd-scripts "
                       "tokenizes a caption; --encode also writes the text encoder's hidden "
                       "states.",
                       options,
                       (int)(sizeof options / sizeof options[0]),
                       0,
                       1};
    const char *positional[1] = {NULL};
    int npos = 0;
    bool help = false;
    Error err = {{0}};
    int code = 0;
    if (options_parse(&cmd, argc, argv, positional, &npos, &help, &err) != 0) {
        fprintf(stderr, "%s\n", err.message);
        code = 2;
    } else if (help) {
        options_print_help(&cmd);
    } else {
        const char *prompt = npos == 1 ? positional[0] : NULL;
        /* `--embeddings a.pt b.pt "PROMPT"`: the list took the prompt too */
        if (!prompt && args.embeddings.count > 0)
            prompt = args.embeddings.items[--args.embeddings.count];
        if (!prompt) {
            fprintf(stderr, "sdti tokenize: no prompt (usage: %s)\n", cmd.usage);
            code = 2;
        } else if (run(&args, prompt, &err) != 0) {
            fprintf(stderr, "sdti tokenize: %s\n", err.message);
            code = 1;
        }
    }
    string_list_free(&args.embeddings);
    return code;
}
