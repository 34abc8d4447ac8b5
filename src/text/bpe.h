/* Byte-level BPE as CLIP's tokenizer runs it: a word's UTF-8 bytes become byte symbols
 * (bytes_to_unicode), the last one with "</w>", then the adjacent pair of lowest merge rank
 * is merged everywhere, again and again, until no pair has a rank.
 *
 * Every string the model knows (vocabulary tokens, merge operands and results, added
 * tokens) is interned once as a "symbol"; encoding only reads the tables, so one BpeModel can
 * serve several threads. */
#ifndef SDTI_TEXT_BPE_H
#define SDTI_TEXT_BPE_H

#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"

typedef struct BpeModel BpeModel;

BpeModel *bpe_model_new(void);
void bpe_model_free(BpeModel *m);

/* Interns the byte string; returns its symbol index, or -1 when out of memory. */
int bpe_intern(BpeModel *m, const char *s, size_t len);
/* The symbol index of a string, or -1 when the model has never seen it. */
int bpe_find(const BpeModel *m, const char *s, size_t len);
/* NUL-terminated; valid until the next bpe_intern (the strings live in one growing buffer). */
const char *bpe_symbol_string(const BpeModel *m, int sym, size_t *len);

/* Per-symbol ids: the vocabulary id and the added-token id (-1 when none). */
void bpe_set_vocab_id(BpeModel *m, int sym, int id);
int bpe_vocab_id(const BpeModel *m, int sym);
void bpe_set_added_id(BpeModel *m, int sym, int id);
int bpe_added_id(const BpeModel *m, int sym);

/* Adds the merge (left, right) with this rank; a pair given twice keeps the later rank, as
 * Python's dict(zip(merges, range(...))) does. */
int bpe_add_merge(BpeModel *m, const char *left, size_t left_len, const char *right,
                  size_t right_len, int rank, Error *err);
/* Call once after the merges: interns the 512 initial byte symbols and decides whether the
 * fast (priority queue) merge order is provably the same as the reference's (it is when every
 * merge ranks after all merges that produce its operands, as in CLIP's file). */
int bpe_finish(BpeModel *m, Error *err);
bool bpe_uses_fast_path(const BpeModel *m);

/* Runs BPE on one pre-token (its UTF-8 bytes); appends the resulting symbol indices to
 * *syms (realloc'd; *count and *cap track it). `reference` forces the direct transcription
 * of the Python loop (for tests). */
int bpe_encode_word(const BpeModel *m, const unsigned char *bytes, size_t n, bool reference,
                    int **syms, size_t *count, size_t *cap, Error *err);

#endif
