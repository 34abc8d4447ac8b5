/* See prompt_embeddings.h. */
#define _POSIX_C_SOURCE 200809L
#include "generate/prompt_embeddings.h"

#include <stdlib.h>
#include <string.h>

#include "base/file_util.h"
#include "base/log.h"
#include "text/embedding_file.h"

int prompt_embeddings_load(PromptEmbeddings *pe, Tokenizer *tok, const char *const *paths,
                           int count, int width, Error *err) {
    memset(pe, 0, sizeof *pe);
    pe->width = width;
    pe->first_id = tokenizer_vocab_size(tok);
    if (count == 0)
        return 0;
    pe->tokens = calloc((size_t)count, sizeof *pe->tokens);
    pe->paths = calloc((size_t)count, sizeof *pe->paths);
    pe->prompts_used = calloc((size_t)count, sizeof *pe->prompts_used);
    if (!pe->tokens || !pe->paths || !pe->prompts_used) {
        prompt_embeddings_free(pe);
        return error_set(err, "out of memory");
    }
    int rc = 0;
    for (int i = 0; rc == 0 && i < count; i++) {
        Embedding e;
        embedding_init(&e);
        if (!file_exists(paths[i]))
            rc = error_set(err,
                           "--textual_inversion_embeddings: %s: no such file (give the path "
                           "of a .safetensors / .pt / .bin embedding)",
                           paths[i]);
        if (rc == 0)
            rc = embedding_load(paths[i], &e, err);
        if (rc == 0)
            rc = embedding_check_for_model(&e, paths[i], width, err);
        if (rc == 0 && ti_tokens_add_embedding(tok, &e, &pe->tokens[i], err) != 0)
            rc = error_prefix(err, "%s: ", paths[i]);
        if (rc == 0) {
            pe->count = i + 1;
            pe->paths[i] = strdup(paths[i]);
            float *rows = realloc(pe->rows, (size_t)(pe->n_rows + e.num_vectors) * (size_t)width *
                                                sizeof *rows);
            if (rows)
                pe->rows = rows;
            if (!rows || !pe->paths[i]) {
                rc = error_set(err, "out of memory");
            } else {
                memcpy(rows + (size_t)pe->n_rows * (size_t)width, e.data,
                       (size_t)e.num_vectors * (size_t)width * sizeof *rows);
                pe->n_rows += e.num_vectors;
            }
        }
        if (rc == 0 && pe->tokens[i].ids[0] != pe->first_id + pe->n_rows - e.num_vectors)
            rc = error_set(err, "%s: the embedding's tokens did not get the next ids", paths[i]);
        if (rc == 0)
            log_info("embedding %s: %d vector%s from %s (%s)", e.name, e.num_vectors,
                     e.num_vectors == 1 ? "" : "s", paths[i], embedding_format_name(e.format));
        embedding_free(&e);
    }
    if (rc != 0)
        prompt_embeddings_free(pe);
    return rc;
}

void prompt_embeddings_free(PromptEmbeddings *pe) {
    for (int i = 0; i < pe->count; i++) {
        ti_tokens_free(&pe->tokens[i]);
        free(pe->paths[i]);
    }
    free(pe->tokens);
    free(pe->paths);
    free(pe->prompts_used);
    free(pe->rows);
    memset(pe, 0, sizeof *pe);
}

void prompt_embeddings_count_use(PromptEmbeddings *pe, const int *ids, int n) {
    for (int e = 0; e < pe->count; e++)
        for (int i = 0; i < n; i++)
            if (ids[i] == pe->tokens[e].ids[0]) {
                pe->prompts_used[e]++;
                break;
            }
}

void prompt_embeddings_report(const PromptEmbeddings *pe) {
    for (int e = 0; e < pe->count; e++) {
        int n = pe->tokens[e].num_vectors, used = pe->prompts_used[e];
        if (used == 0)
            log_warning("embedding %s: %d vector%s, used in no prompt (write \"%s\" in a prompt "
                        "to use it)",
                        pe->tokens[e].token_string, n, n == 1 ? "" : "s",
                        pe->tokens[e].token_string);
        else
            log_info("embedding %s: %d vector%s, used in %d prompt%s", pe->tokens[e].token_string,
                     n, n == 1 ? "" : "s", used, used == 1 ? "" : "s");
    }
}
