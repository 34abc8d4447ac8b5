/* The CLIP BPE tokenizer, giving the ids of transformers 4.x's slow CLIPTokenizer run with
 * ftfy installed (as kohya-ss sd-scripts runs it): added tokens are split out of the raw text
 * first (HF's trie, case-sensitive), every other piece goes through ftfy.fix_text,
 * whitespace_clean, lower(), CLIP's pre-tokenizing pattern, byte-level BPE. docs/tokenizer.md
 * lists what differs (ftfy's mojibake repair is not done).
 *
 * A Tokenizer is read-only while encoding: several threads may encode at once; adding tokens
 * must not run concurrently with anything else. */
#ifndef SDTI_TEXT_TOKENIZER_H
#define SDTI_TEXT_TOKENIZER_H

#include <stddef.h>

#include "base/error.h"

#define TOKENIZER_BOS_ID     49406 /* "<|startoftext|>" in the CLIP vocabulary */
#define TOKENIZER_EOS_ID     49407 /* "<|endoftext|>" */
#define TOKENIZER_SD1_PAD_ID 49407
#define TOKENIZER_SD2_PAD_ID 0 /* "!", stabilityai/stable-diffusion-2's pad token */

typedef struct Tokenizer Tokenizer;

/* The built-in CLIP vocabulary (built from the embedded merges as CLIP builds it: the 256 byte
 * symbols, the same with "</w>", the merges, then <|startoftext|> 49406 and <|endoftext|>
 * 49407). pad_id: TOKENIZER_SD1_PAD_ID or TOKENIZER_SD2_PAD_ID (any vocabulary id). Like HF,
 * the pad token is an added token, so with SD2's "!" every '!' in a prompt becomes id 0. */
int tokenizer_create_builtin(int pad_id, Tokenizer **out, Error *err);

/* A diffusers/transformers tokenizer folder: vocab.json, merges.txt, and the special and added
 * tokens from tokenizer_config.json, special_tokens_map.json and added_tokens.json when
 * present (CLIPTokenizer's defaults otherwise). */
int tokenizer_load_dir(const char *dir, Tokenizer **out, Error *err);

void tokenizer_free(Tokenizer *t);

/* Adds a new token (a TI token) with the next id (tokenizer_vocab_size before the call).
 * Refuses an empty string and a string the tokenizer already knows (vocabulary or added), the
 * case kohya reports as "tokenizer has same word to token string". */
int tokenizer_add_token(Tokenizer *t, const char *token, int *id, Error *err);

/* len(tokenizer) in HF terms: distinct token strings, added tokens included. */
int tokenizer_vocab_size(const Tokenizer *t);
/* The id of an exact token string (added tokens first, then the vocabulary), -1 if unknown. */
int tokenizer_token_id(const Tokenizer *t, const char *token);
/* The token string of an id (byte-level form, e.g. "photo</w>"), NULL if unused; valid until
 * the next tokenizer_add_token. */
const char *tokenizer_id_to_token(const Tokenizer *t, int id);
int tokenizer_bos_id(const Tokenizer *t);
int tokenizer_eos_id(const Tokenizer *t);
int tokenizer_pad_id(const Tokenizer *t);

/* Text -> ids without BOS/EOS and without truncation (HF encode(add_special_tokens=False)).
 * *ids is malloc'd (free it); an empty result gives count 0 and may leave *ids NULL.
 * Non-UTF-8 text fails with the byte offset. _bytes takes a length (NUL bytes allowed). */
int tokenizer_encode(const Tokenizer *t, const char *text, int **ids, int *count, Error *err);
int tokenizer_encode_bytes(const Tokenizer *t, const char *text, size_t size, int **ids, int *count,
                           Error *err);

/* HF tokenizer(text, padding="max_length", truncation=True, max_length=L).input_ids:
 * BOS + ids[:L-2] + EOS + pad up to L. ids_out holds max_length ints; max_length >= 2. */
int tokenizer_encode_padded(const Tokenizer *t, const char *text, int max_length, int *ids_out,
                            Error *err);

#endif
