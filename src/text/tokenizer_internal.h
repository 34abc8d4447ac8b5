/* What tokenizer.c (encoding, added tokens) and tokenizer_load.c (building vocabularies)
 * share. Not part of the API. */
#ifndef SDTI_TEXT_TOKENIZER_INTERNAL_H
#define SDTI_TEXT_TOKENIZER_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "text/bpe.h"
#include "text/tokenizer.h"

typedef struct AddedToken {
    int sym, id;
    bool lstrip, rstrip; /* HF AddedToken flags (single_word is not supported) */
} AddedToken;

/* HF's added-token trie: nodes keyed by code point, children as a linked list. */
typedef struct TrieNode {
    uint32_t cp;
    int first_child, next_sibling; /* -1 = none */
    bool terminal;
} TrieNode;

struct Tokenizer {
    BpeModel *bpe;
    int *id_to_sym; /* -1 for ids no string has */
    int id_cap;
    int distinct_count; /* len(tokenizer): distinct strings over vocabulary and added tokens */
    int bos_id, eos_id, pad_id, unk_id;
    AddedToken *added;
    int added_count, added_cap;
    TrieNode *trie; /* node 0 is the root */
    int trie_count, trie_cap;
};

Tokenizer *tokenizer_alloc(void);
/* Gives a vocabulary string an id (a string given twice keeps the later id, like json.load). */
int tokenizer_set_vocab(Tokenizer *t, const char *s, size_t len, int id, Error *err);
/* HF _add_tokens for one token: an id from the vocabulary when the string has one, the next
 * new id otherwise (or `id` when >= 0, as tokenizer_config.json's added_tokens_decoder gives
 * it); puts the string in the trie. Adding a string twice keeps the first. */
int tokenizer_register_added(Tokenizer *t, const char *s, size_t len, int id, bool lstrip,
                             bool rstrip, int *out_id, Error *err);

#endif
