/* The text side of generation, as kohya's get_weighted_text_embeddings (gen_img_diffusers.py)
 * computes it for a batch of prompts:
 *   1. each prompt -> weighted token ids (prompt_weights.h), cut at 75 * max_multiples;
 *   2. k = min(max_multiples, ceil(longest / 75)) chunks (at least 1) for every prompt of the
 *      call; each row is BOS + ids + EOS + pad to 75 k + 2;
 *   3. k == 1: the row goes through the text encoder as it is. k > 1: chunk i is the row's
 *      positions 75 i .. 75 i + 76 with its first id set to BOS and its last to the row's last
 *      id (SD1, pad == EOS) or, SD2, to EOS when it holds an ordinary token (and a chunk
 *      starting with pad gets EOS there); each chunk is encoded on its own and the outputs are
 *      concatenated: 77 k positions, BOS and EOS of every chunk kept (kohya calls it with
 *      no_boseos_middle=False);
 *   4. clip_skip k > 1: hidden_states[-k] through the final layer norm;
 *   5. weights (1 at BOS / EOS / pad, chunk by chunk) multiply the hidden states, which are
 *      then rescaled so their mean over positions and channels is what it was before
 *      (an exact no-op when every weight is 1). */
#ifndef SDTI_GENERATE_TEXT_CONDITION_H
#define SDTI_GENERATE_TEXT_CONDITION_H

#include <stdbool.h>

#include "base/error.h"
#include "generate/prompt_embeddings.h"
#include "models/clip_text.h"
#include "nn/nn_context.h"
#include "text/tokenizer.h"

typedef struct TextConditioner {
    const ClipText *clip;
    const Tokenizer *tok;
    PromptEmbeddings *embeddings; /* their rows serve the ids past the vocabulary */
    int clip_skip;                /* 0: None */
    int max_multiples;            /* --max_embeddings_multiples (1 when unset) */
    bool pad_with_eos; /* kohya's training-sample pipeline (lpw_stable_diffusion.py) fills the
                        * row after the prompt with EOS, not the tokenizer's pad id; the chunk
                        * fix-ups of step 3 still compare with the pad id */
} TextConditioner;

/* Encodes prompts[n] as one kohya call: *k gets the chunk count, *hidden is malloc'd
 * [n, 77 k, width]. */
int text_condition_encode(NnContext *ctx, const TextConditioner *tc, const char *const *prompts,
                          int n, int *k, float **hidden, Error *err);

/* Step 3's ids for one padded row [75 k + 2] -> out [k, 77]. */
void text_condition_chunk_ids(const int *row, int k, int eos, int pad, int *out);
/* Step 5's weights for one prompt's token weights [count] -> out [77 k]. */
void text_condition_chunk_weights(const double *weights, int count, int k, float *out);

#endif
