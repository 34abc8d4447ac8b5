/* --textual_inversion_embeddings for generation, as kohya's gen_img_diffusers.py loads them:
 * each file (any format src/text/embedding_file.h reads) adds tokens stem, stem1, ...,
 * stem{N-1} at the next ids (the stem is the file name without extension), and its N vectors
 * serve those ids as the text encoder's extra rows. A prompt needs only the stem: its first
 * token expands to all N. A width that does not fit the model, a stem the tokenizer already
 * knows (a word, or another embedding's token) and a missing file are errors, never a silent
 * skip. Usage is counted per prompt so each embedding is reported once at the end. */
#ifndef SDTI_GENERATE_PROMPT_EMBEDDINGS_H
#define SDTI_GENERATE_PROMPT_EMBEDDINGS_H

#include "base/error.h"
#include "text/ti_tokens.h"
#include "text/tokenizer.h"

typedef struct PromptEmbeddings {
    int count;
    TiTokens *tokens;  /* [count] */
    char **paths;      /* [count] */
    int *prompts_used; /* [count]: prompts whose ids held the embedding's first token */
    float *rows;       /* [n_rows, width]: every embedding's vectors, in id order */
    int n_rows, width;
    int first_id; /* id of rows[0] (the vocabulary size before the embeddings) */
} PromptEmbeddings;

/* Loads `paths`, adds their tokens to `tok` (whose vocabulary must match the text encoder's
 * rows: first_id = tokenizer_vocab_size before the call) and checks every width against
 * `width`. On failure nothing is kept (the tokenizer may hold some of the tokens). */
int prompt_embeddings_load(PromptEmbeddings *pe, Tokenizer *tok, const char *const *paths,
                           int count, int width, Error *err);
void prompt_embeddings_free(PromptEmbeddings *pe);

/* Counts the embeddings whose first token appears in ids (one prompt). */
void prompt_embeddings_count_use(PromptEmbeddings *pe, const int *ids, int n);
/* "embedding mychar4: 4 vectors, used in 2 prompts", one log line per embedding. */
void prompt_embeddings_report(const PromptEmbeddings *pe);

#endif
