/* A1111-style prompt weighting and long prompts, as kohya's gen_img_diffusers.py does them
 * (its parse_prompt_attention, get_prompts_with_weights and pad_tokens_and_weights):
 *
 *   (text) x1.1   [text] /1.1   (text:1.3) x1.3   \( \) \[ \] \\ literal   BREAK: pad to the
 *   next multiple of 77 tokens with the pad id (kohya's own rule: 77, not 75).
 * Unclosed brackets apply to the end; ')' or ']' with nothing open is plain text, as is
 * ":1.2)" outside round brackets. Runs of equal weight are merged before tokenizing, and each
 * run is tokenized on its own (BOS/EOS dropped), so "a (b) c" tokenizes "a ", "b" and " c".
 * Each embedding's first token expands to all of its tokens. Token lists are cut at 75 k
 * (k = --max_embeddings_multiples) with kohya's warning. */
#ifndef SDTI_GENERATE_PROMPT_WEIGHTS_H
#define SDTI_GENERATE_PROMPT_WEIGHTS_H

#include <stdbool.h>

#include "base/error.h"
#include "text/ti_tokens.h"
#include "text/tokenizer.h"

typedef struct WeightedText {
    char *text;
    double weight; /* Python float arithmetic: products of 1.1, 1/1.1 and given weights */
} WeightedText;

/* parse_prompt_attention. *out is malloc'd (free with weighted_text_free). A weight that is
 * not a number (":1.2.3)") is an error naming it (kohya raises ValueError). */
int prompt_attention_parse(const char *text, WeightedText **out, int *count, Error *err);
void weighted_text_free(WeightedText *w, int count);

typedef struct PromptTokens {
    int *ids;        /* without BOS / EOS */
    double *weights; /* one per id */
    int count;
    bool truncated;
} PromptTokens;

/* get_prompts_with_weights for one prompt: ids and weights of at most max_tokens (75 k).
 * embeddings[n_embeddings]: the TI token sets whose first id expands. pad_id: the tokenizer's
 * pad (BREAK padding). */
int prompt_tokens_build(const Tokenizer *tok, const TiTokens *embeddings, int n_embeddings,
                        const char *prompt, int max_tokens, PromptTokens *out, Error *err);
void prompt_tokens_free(PromptTokens *p);

#endif
