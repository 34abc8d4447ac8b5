/* Encoding with the slow CLIPTokenizer's exact steps (transformers 4.57):
 * PreTrainedTokenizer.tokenize splits the raw text on added tokens with its Trie (reproduced
 * here with its quirks), CLIPTokenizer._tokenize runs on every other piece, ids come from the
 * added tokens first, then the vocabulary, then unk. */
#include "text/tokenizer.h"

#include <stdlib.h>
#include <string.h>

#include "text/text_normalize.h"
#include "text/tokenizer_internal.h"

typedef struct IdList {
    int *data;
    size_t len, cap;
} IdList;

static int id_list_push(IdList *l, int id) {
    if (l->len == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        int *data = realloc(l->data, cap * sizeof *data);
        if (!data)
            return -1;
        l->data = data;
        l->cap = cap;
    }
    l->data[l->len++] = id;
    return 0;
}

/* ---- construction ------------------------------------------------------------------------- */

Tokenizer *tokenizer_alloc(void) {
    Tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->bpe = bpe_model_new();
    t->trie = malloc(sizeof *t->trie);
    if (!t->bpe || !t->trie) {
        tokenizer_free(t);
        return NULL;
    }
    t->trie[0] = (TrieNode){0, -1, -1, false};
    t->trie_count = t->trie_cap = 1;
    t->bos_id = t->eos_id = t->pad_id = t->unk_id = -1;
    return t;
}

void tokenizer_free(Tokenizer *t) {
    if (!t)
        return;
    bpe_model_free(t->bpe);
    free(t->id_to_sym);
    free(t->added);
    free(t->trie);
    free(t);
}

static int set_id_string(Tokenizer *t, int id, int sym) {
    if (id >= t->id_cap) {
        int cap = t->id_cap ? t->id_cap : 65536;
        while (cap <= id)
            cap *= 2;
        int *grown = realloc(t->id_to_sym, (size_t)cap * sizeof *grown);
        if (!grown)
            return -1;
        for (int i = t->id_cap; i < cap; i++)
            grown[i] = -1;
        t->id_to_sym = grown;
        t->id_cap = cap;
    }
    t->id_to_sym[id] = sym;
    return 0;
}

static bool symbol_known(const Tokenizer *t, int sym) {
    return sym >= 0 && (bpe_vocab_id(t->bpe, sym) >= 0 || bpe_added_id(t->bpe, sym) >= 0);
}

int tokenizer_set_vocab(Tokenizer *t, const char *s, size_t len, int id, Error *err) {
    int sym = bpe_intern(t->bpe, s, len);
    if (sym < 0)
        return error_set(err, "out of memory building the vocabulary");
    if (!symbol_known(t, sym))
        t->distinct_count++;
    bpe_set_vocab_id(t->bpe, sym, id);
    if (set_id_string(t, id, sym) != 0)
        return error_set(err, "out of memory building the vocabulary");
    return 0;
}

static int trie_add(Tokenizer *t, const uint32_t *cps, size_t n) {
    int node = 0;
    for (size_t i = 0; i < n; i++) {
        int child = t->trie[node].first_child;
        while (child >= 0 && t->trie[child].cp != cps[i])
            child = t->trie[child].next_sibling;
        if (child < 0) {
            if (t->trie_count == t->trie_cap) {
                int cap = t->trie_cap * 2;
                TrieNode *grown = realloc(t->trie, (size_t)cap * sizeof *grown);
                if (!grown)
                    return -1;
                t->trie = grown;
                t->trie_cap = cap;
            }
            child = t->trie_count++;
            t->trie[child] = (TrieNode){cps[i], -1, t->trie[node].first_child, false};
            t->trie[node].first_child = child;
        }
        node = child;
    }
    t->trie[node].terminal = true;
    return 0;
}

int tokenizer_register_added(Tokenizer *t, const char *s, size_t len, int id, bool lstrip,
                             bool rstrip, int *out_id, Error *err) {
    CodePoints cps = {0};
    if (text_utf8_decode(s, len, &cps, err) != 0)
        return error_prefix(err, "added token: ");
    int sym = bpe_intern(t->bpe, s, len);
    if (sym < 0 || cps.len == 0) {
        codepoints_free(&cps);
        return error_set(err,
                         sym < 0 ? "out of memory adding a token" : "added tokens cannot be empty");
    }
    int existing = bpe_added_id(t->bpe, sym);
    if (existing >= 0) {
        codepoints_free(&cps);
        if (out_id)
            *out_id = existing;
        return 0;
    }
    if (id < 0)
        id = bpe_vocab_id(t->bpe, sym) >= 0 ? bpe_vocab_id(t->bpe, sym) : t->distinct_count;
    if (!symbol_known(t, sym))
        t->distinct_count++;
    if (t->added_count == t->added_cap) {
        int cap = t->added_cap ? t->added_cap * 2 : 16;
        AddedToken *grown = realloc(t->added, (size_t)cap * sizeof *grown);
        if (!grown) {
            codepoints_free(&cps);
            return error_set(err, "out of memory adding a token");
        }
        t->added = grown;
        t->added_cap = cap;
    }
    int rc = trie_add(t, cps.data, cps.len) == 0 && set_id_string(t, id, sym) == 0 ? 0 : -1;
    codepoints_free(&cps);
    if (rc != 0)
        return error_set(err, "out of memory adding a token");
    t->added[t->added_count++] = (AddedToken){sym, id, lstrip, rstrip};
    bpe_set_added_id(t->bpe, sym, id);
    if (out_id)
        *out_id = id;
    return 0;
}

int tokenizer_add_token(Tokenizer *t, const char *token, int *id, Error *err) {
    size_t len = strlen(token);
    if (len == 0)
        return error_set(err, "cannot add an empty token string");
    int sym = bpe_find(t->bpe, token, len);
    if (symbol_known(t, sym))
        return error_set(
            err,
            "token string \"%s\" is already a token of the tokenizer (kohya: \"tokenizer "
            "has same word to token string\"): choose another token string",
            token);
    return tokenizer_register_added(t, token, len, -1, false, false, id, err);
}

/* ---- look-ups ----------------------------------------------------------------------------- */

int tokenizer_vocab_size(const Tokenizer *t) {
    return t->distinct_count;
}
int tokenizer_bos_id(const Tokenizer *t) {
    return t->bos_id;
}
int tokenizer_eos_id(const Tokenizer *t) {
    return t->eos_id;
}
int tokenizer_pad_id(const Tokenizer *t) {
    return t->pad_id;
}

static int symbol_id(const Tokenizer *t, int sym) {
    if (sym < 0)
        return -1;
    int id = bpe_added_id(t->bpe, sym);
    return id >= 0 ? id : bpe_vocab_id(t->bpe, sym);
}

int tokenizer_token_id(const Tokenizer *t, const char *token) {
    return symbol_id(t, bpe_find(t->bpe, token, strlen(token)));
}

const char *tokenizer_id_to_token(const Tokenizer *t, int id) {
    if (id < 0 || id >= t->id_cap || t->id_to_sym[id] < 0)
        return NULL;
    return bpe_symbol_string(t->bpe, t->id_to_sym[id], NULL);
}

/* ---- the added-token trie split (transformers Trie.split, quirks included) ------------------- */

static int trie_child(const Tokenizer *t, int node, uint32_t cp) {
    for (int c = t->trie[node].first_child; c >= 0; c = t->trie[c].next_sibling)
        if (t->trie[c].cp == cp)
            return c;
    return -1;
}

typedef struct TrieState {
    size_t start;
    int node;
    bool dead; /* stopped matching this step; still seen (stale) by the look-ahead */
} TrieState;

typedef struct Offsets {
    size_t *data, len, cap;
} Offsets;

static int offsets_push(Offsets *o, size_t v) {
    if (o->len == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 16;
        size_t *data = realloc(o->data, cap * sizeof *data);
        if (!data)
            return -1;
        o->data = data;
        o->cap = cap;
    }
    o->data[o->len++] = v;
    return 0;
}

/* The longest match among the states that start no later than `start` (which just matched
 * completely), scanning ahead; updates *start, *end, *skip as the reference does. */
static void trie_lookahead(const Tokenizer *t, const uint32_t *s, size_t n, const TrieState *st,
                           size_t st_count, size_t current, size_t *start, size_t *end,
                           size_t *skip) {
    for (size_t k = 0; k < st_count; k++) {
        size_t lookstart = st[k].start, ahead;
        int node = st[k].node;
        if (lookstart > *start)
            break;
        /* earlier states already consumed s[current]; the matching one has not */
        ahead = lookstart < *start ? current + 1 : current;
        *end = ahead;
        if (t->trie[node].terminal)
            *start = lookstart, *end = ahead, *skip = ahead;
        while (ahead < n) {
            int child = trie_child(t, node, s[ahead]);
            if (child < 0)
                break;
            node = child;
            ahead++;
            if (t->trie[node].terminal)
                *start = lookstart, *end = ahead, *skip = ahead;
        }
    }
}

/* Fills `cuts` with the piece boundaries of s (as Trie.split's offsets). */
static int trie_split(const Tokenizer *t, const uint32_t *s, size_t n, Offsets *cuts) {
    TrieState *st = malloc((n + 1) * sizeof *st);
    size_t st_count = 0, skip = 0;
    if (!st || offsets_push(cuts, 0) != 0)
        goto oom;
    for (size_t current = 0; current < n; current++) {
        if (skip && current < skip)
            continue;
        bool reset = false;
        for (size_t k = 0; k < st_count; k++) {
            if (t->trie[st[k].node].terminal) {
                size_t start = st[k].start, end = current;
                trie_lookahead(t, s, n, st, st_count, current, &start, &end, &skip);
                if (offsets_push(cuts, start) != 0 || offsets_push(cuts, end) != 0)
                    goto oom;
                reset = true;
                break;
            }
            int child = trie_child(t, st[k].node, s[current]);
            if (child >= 0)
                st[k].node = child;
            else
                st[k].dead = true;
        }
        if (reset) {
            st_count = 0;
        } else {
            size_t kept = 0;
            for (size_t k = 0; k < st_count; k++)
                if (!st[k].dead)
                    st[kept++] = st[k];
            st_count = kept;
        }
        int child = trie_child(t, 0, s[current]);
        if (current >= skip && child >= 0)
            st[st_count++] = (TrieState){current, child, false};
    }
    for (size_t k = 0; k < st_count; k++) {
        if (t->trie[st[k].node].terminal) {
            if (offsets_push(cuts, st[k].start) != 0 || offsets_push(cuts, n) != 0)
                goto oom;
            break;
        }
    }
    free(st);
    return offsets_push(cuts, n);
oom:
    free(st);
    return -1;
}

/* ---- encoding ------------------------------------------------------------------------------ */

static bool matches_ignorecase(const uint32_t *s, size_t n, const char *pattern) {
    size_t len = strlen(pattern);
    if (n < len)
        return false;
    for (size_t i = 0; i < len; i++) {
        uint32_t c = s[i], p = (unsigned char)pattern[i];
        if (c == p || (c < 0x80 && (c | 0x20) == p && p >= 'a' && p <= 'z'))
            continue;
        if (p == 's' && c == 0x17F)
            continue; /* regex IGNORECASE: LATIN SMALL LETTER LONG S */
        return false;
    }
    return true;
}

/* CLIP's pattern, first alternative that matches at each position:
 * <|startoftext|> | <|endoftext|> | 's|'t|'re|'ve|'m|'ll|'d | [\p{L}]+ | [\p{N}] |
 * [^\s\p{L}\p{N}]+ ; positions where none matches are skipped, as re.findall does. */
static size_t pretoken_length(const uint32_t *s, size_t n) {
    static const char *const specials[] = {"<|startoftext|>", "<|endoftext|>"};
    static const char *const contractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    for (size_t k = 0; k < 2; k++)
        if (matches_ignorecase(s, n, specials[k]))
            return strlen(specials[k]);
    if (s[0] == '\'')
        for (size_t k = 0; k < 7; k++)
            if (matches_ignorecase(s, n, contractions[k]))
                return strlen(contractions[k]);
    size_t len = 0;
    if (text_is_letter(s[0])) {
        while (len < n && text_is_letter(s[len]))
            len++;
        return len;
    }
    if (text_is_number(s[0]))
        return 1;
    while (len < n && text_is_other(s[len]))
        len++;
    return len;
}

static int push_symbol_id(const Tokenizer *t, int sym, IdList *out) {
    int id = symbol_id(t, sym);
    return id_list_push(out, id >= 0 ? id : t->unk_id);
}

/* CLIPTokenizer._tokenize on one piece that is not an added token. */
static int encode_piece(const Tokenizer *t, const uint32_t *s, size_t n, IdList *out, Error *err) {
    CodePoints fixed = {0}, clean = {0};
    unsigned char *bytes = NULL;
    int *syms = NULL;
    size_t sym_count = 0, sym_cap = 0;
    int rc = -1;
    if (text_fix(s, n, &fixed, err) != 0 ||
        text_clean_lower(fixed.data, fixed.len, &clean, err) != 0)
        goto done;
    bytes = malloc(clean.len * 4 + 1);
    if (!bytes)
        goto oom;
    for (size_t i = 0; i < clean.len;) {
        size_t len = pretoken_length(clean.data + i, clean.len - i);
        if (len == 0) {
            i++;
            continue;
        }
        size_t nb = 0;
        for (size_t k = i; k < i + len; k++)
            nb += text_utf8_encode(clean.data[k], bytes + nb);
        i += len;
        /* the reference's bpe cache starts with the two specials mapped to themselves */
        if ((nb == 15 && memcmp(bytes, "<|startoftext|>", 15) == 0) ||
            (nb == 13 && memcmp(bytes, "<|endoftext|>", 13) == 0)) {
            if (push_symbol_id(t, bpe_find(t->bpe, (const char *)bytes, nb), out) != 0)
                goto oom;
            continue;
        }
        sym_count = 0;
        if (bpe_encode_word(t->bpe, bytes, nb, false, &syms, &sym_count, &sym_cap, err) != 0)
            goto done;
        for (size_t k = 0; k < sym_count; k++)
            if (push_symbol_id(t, syms[k], out) != 0)
                goto oom;
    }
    rc = 0;
    goto done;
oom:
    rc = error_set(err, "out of memory while tokenizing");
done:
    codepoints_free(&fixed);
    codepoints_free(&clean);
    free(bytes);
    free(syms);
    return rc;
}

/* The added token whose string is exactly s[0..n), or NULL. */
static const AddedToken *find_added(const Tokenizer *t, const uint32_t *s, size_t n,
                                    unsigned char *buf) {
    size_t nb = 0;
    for (size_t i = 0; i < n; i++)
        nb += text_utf8_encode(s[i], buf + nb);
    int sym = bpe_find(t->bpe, (const char *)buf, nb);
    if (sym < 0 || bpe_added_id(t->bpe, sym) < 0)
        return NULL;
    for (int k = 0; k < t->added_count; k++)
        if (t->added[k].sym == sym)
            return &t->added[k];
    return NULL;
}

int tokenizer_encode_bytes(const Tokenizer *t, const char *text, size_t size, int **ids, int *count,
                           Error *err) {
    CodePoints s = {0};
    Offsets cuts = {0};
    IdList out = {0};
    size_t *piece = NULL; /* start, end pairs after cutting */
    unsigned char *buf = NULL;
    int rc = -1;
    *ids = NULL;
    *count = 0;
    if (text_utf8_decode(text, size, &s, err) != 0)
        goto done;
    if (trie_split(t, s.data, s.len, &cuts) != 0)
        goto oom;
    piece = malloc((cuts.len + 1) * 2 * sizeof *piece);
    buf = malloc(s.len * 4 + 1);
    if (!piece || !buf)
        goto oom;
    size_t pieces = 0, start = 0; /* Trie.cut_text: skip backwards and empty cuts */
    for (size_t k = 0; k < cuts.len; k++) {
        if (start >= cuts.data[k])
            continue;
        piece[2 * pieces] = start, piece[2 * pieces + 1] = cuts.data[k], pieces++;
        start = cuts.data[k];
    }
    /* lstrip/rstrip of added tokens eat the whitespace of their neighbours */
    for (size_t k = 0; k < pieces; k++) {
        const AddedToken *a =
            find_added(t, s.data + piece[2 * k], piece[2 * k + 1] - piece[2 * k], buf);
        if (!a)
            continue;
        if (a->rstrip && k + 1 < pieces && piece[2 * k + 3] > piece[2 * k + 2])
            while (piece[2 * k + 2] < piece[2 * k + 3] &&
                   text_is_python_space(s.data[piece[2 * k + 2]]))
                piece[2 * k + 2]++;
        if (a->lstrip && k > 0 && piece[2 * k - 1] > piece[2 * k - 2])
            while (piece[2 * k - 1] > piece[2 * k - 2] &&
                   text_is_python_space(s.data[piece[2 * k - 1] - 1]))
                piece[2 * k - 1]--;
    }
    for (size_t k = 0; k < pieces; k++) {
        size_t a = piece[2 * k], b = piece[2 * k + 1];
        if (a >= b)
            continue;
        const AddedToken *added = find_added(t, s.data + a, b - a, buf);
        if (added) {
            if (id_list_push(&out, added->id) != 0)
                goto oom;
        } else if (encode_piece(t, s.data + a, b - a, &out, err) != 0) {
            goto done;
        }
    }
    if (out.len > (size_t)INT32_MAX)
        goto oom;
    *ids = out.data;
    *count = (int)out.len;
    out.data = NULL;
    rc = 0;
    goto done;
oom:
    rc = error_set(err, "out of memory while tokenizing");
done:
    codepoints_free(&s);
    free(cuts.data);
    free(out.data);
    free(piece);
    free(buf);
    return rc;
}

int tokenizer_encode(const Tokenizer *t, const char *text, int **ids, int *count, Error *err) {
    return tokenizer_encode_bytes(t, text, strlen(text), ids, count, err);
}

int tokenizer_encode_padded(const Tokenizer *t, const char *text, int max_length, int *ids_out,
                            Error *err) {
    if (max_length < 2)
        return error_set(err, "max_length %d is too small: it must hold BOS and EOS", max_length);
    int *ids = NULL, count = 0;
    if (tokenizer_encode(t, text, &ids, &count, err) != 0)
        return -1;
    int kept = count < max_length - 2 ? count : max_length - 2;
    if (t->pad_id < 0 && kept + 2 < max_length) {
        free(ids);
        return error_set(err, "the tokenizer has no pad token, so it cannot pad to %d tokens",
                         max_length);
    }
    ids_out[0] = t->bos_id;
    if (kept > 0)
        memcpy(ids_out + 1, ids, (size_t)kept * sizeof *ids);
    ids_out[kept + 1] = t->eos_id;
    for (int i = kept + 2; i < max_length; i++)
        ids_out[i] = t->pad_id;
    free(ids);
    return 0;
}
