/* The new tokens of a textual-inversion run, with kohya's semantics (train_textual_inversion.py,
 * TextualInversionTrainer.train; ../shared/reference/kohya-ti-facts.md section 2):
 *   --token_string S --num_vectors_per_token N  ->  tokens S, S1, ..., S{N-1} (plain number
 *       suffixes; diffusers would say S_1), added to the tokenizer at ids 49408.. in order;
 *   --init_word W  ->  new row i = token-embedding row of W's token i mod len(W's tokens)
 *       (W encoded without BOS/EOS *before* the new tokens exist; several tokens are cycled
 *       or truncated, kohya only prints a note; a W with no tokens at all is an error here,
 *       where kohya fails with ZeroDivisionError);
 *   --weights FILE  ->  the file's N rows overwrite the initialised ones (after init_word);
 *       the file's own token never enters the tokenizer, so continuing an embedding whose token
 *       is the token string is not refused (load --weights after ti_tokens_add, not as a
 *       prompt embedding);
 *   captions (N > 1)  ->  every occurrence of S, substrings too, becomes "S S1 ... S{N-1}"
 *       (Python str.replace); with N == 1 captions are used as they are. */
#ifndef SDTI_TEXT_TI_TOKENS_H
#define SDTI_TEXT_TI_TOKENS_H

#include <stddef.h>

#include "base/error.h"
#include "formats/tensor_set.h"
#include "text/embedding_file.h"
#include "text/tokenizer.h"

typedef struct TiTokens {
    char *token_string;
    int num_vectors;
    char **names;      /* [num_vectors]: S, S1, ... */
    int *ids;          /* [num_vectors]: consecutive, the last is vocab size - 1 */
    char *replacement; /* the names joined by single spaces (kohya's replace_to) */
    int *init_ids;     /* the init word's token ids (NULL / 0 without --init_word) */
    int init_count;
    /* A note for the log when the init word has several tokens but not N (kohya prints "init
     * words is repeated or truncated"); empty otherwise. */
    char init_note[256];
} TiTokens;

/* Encodes `init_word` (may be NULL) with the tokenizer as it is, then adds the N token names.
 * Fails, adding nothing, when any name is already known to the tokenizer (kohya: "tokenizer
 * has same word to token string. please use another one") or when the init word gives no
 * tokens. `out` is filled on success (free with ti_tokens_free). */
int ti_tokens_add(Tokenizer *tok, const char *token_string, int num_vectors, const char *init_word,
                  TiTokens *out, Error *err);
void ti_tokens_free(TiTokens *t);

/* The new tokens' rows live outside the model's token-embedding matrix, as clip_text_forward's
 * `extra_rows` [N, dim] serving ids t->ids[0].. (the stored matrix is never widened or grown;
 * its rows cannot change, which is kohya's restore of every original row after each step). */

/* Fills new_rows [N, dim] from the init word: row i = the matrix row of init token
 * i mod init_count, read from `token_embedding` (the text encoder's stored [vocab, dim] weight,
 * float32/16/bf16; only those rows are widened). Does nothing without an init word: the rows
 * then keep what the caller put there (kohya: transformers' resize initialization). */
int ti_tokens_init_rows(const TiTokens *t, const NamedTensor *token_embedding, float *new_rows,
                        Error *err);

/* --weights: new_rows [N, dim] = the file's vectors. The vector count must be N and the width
 * `dim`, with an error naming the file, both counts and what to change otherwise; all-zero
 * vectors are refused (embedding_check_for_model). */
int ti_tokens_load_weights(const TiTokens *t, const Embedding *weights, const char *path, int dim,
                           float *new_rows, Error *err);

/* What kohya saves, weight[token_ids]: new_rows [N, dim] as an embedding (float32, named after
 * the token string; the caller sets metadata and the save dtype). `out` is replaced. */
int ti_tokens_extract(const TiTokens *t, const float *new_rows, int dim, Embedding *out,
                      Error *err);

/* An embedding file used in prompts, as kohya's gen_img_diffusers.py
 * --textual_inversion_embeddings does it: token string = the file stem (e->name), tokens
 * stem, stem1, ... for its N vectors, added at the next ids; no init word. Refused like
 * training's tokens (kohya: "tokenizer has same word to token string (filename). please rename
 * the file"). The rows to serve are e->data. */
int ti_tokens_add_embedding(Tokenizer *tok, const Embedding *e, TiTokens *out, Error *err);

/* kohya's replace_token on a prompt's ids: each t->ids[0] becomes t->ids[0..N-1] (the other
 * ids of the set are left alone, as kohya leaves them). *out is malloc'd. For several
 * embeddings apply each set in turn. */
int ti_tokens_expand_ids(const TiTokens *t, const int *ids, int count, int **out, int *out_count,
                         Error *err);

/* Caption rewrite: a malloc'd copy of `caption` with every token_string replaced by
 * t->replacement when N > 1 (an unchanged copy when N == 1). NULL when out of memory. */
char *ti_tokens_rewrite_caption(const TiTokens *t, const char *caption);

#endif
