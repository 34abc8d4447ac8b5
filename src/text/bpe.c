/* Byte-level BPE: interned symbols, a pair -> (rank, result) hash table, and two merge loops
 * that give the same result on well-formed merge lists: a priority queue (fast) and the plain
 * "find the lowest-ranked pair, merge it everywhere" loop of transformers' CLIPTokenizer.bpe. */
#include "text/bpe.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text/text_normalize.h"

typedef struct Symbol {
    size_t offset, len; /* in BpeModel.chars */
    int vocab_id, added_id;
    int max_produced_rank; /* highest rank of a merge that yields this symbol, -1 if none */
} Symbol;

typedef struct Merge {
    int left, right, result, rank;
} Merge;

struct BpeModel {
    char *chars;
    size_t chars_len, chars_cap;
    Symbol *symbols;
    int symbol_count, symbol_cap;
    int *symbol_slots; /* open addressing, -1 = empty */
    size_t symbol_slot_cap;
    Merge *merges;
    int merge_count, merge_cap;
    int *merge_slots;
    size_t merge_slot_cap;
    int initial[256], initial_end[256]; /* byte symbols, plain and with "</w>" */
    bool fast_path;
};

static uint64_t hash_bytes(const char *s, size_t len) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static uint64_t hash_pair(int a, int b) {
    uint64_t h = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

BpeModel *bpe_model_new(void) {
    BpeModel *m = calloc(1, sizeof *m);
    return m;
}

void bpe_model_free(BpeModel *m) {
    if (!m)
        return;
    free(m->chars);
    free(m->symbols);
    free(m->symbol_slots);
    free(m->merges);
    free(m->merge_slots);
    free(m);
}

static bool symbol_equals(const BpeModel *m, int sym, const char *s, size_t len) {
    return m->symbols[sym].len == len && memcmp(m->chars + m->symbols[sym].offset, s, len) == 0;
}

int bpe_find(const BpeModel *m, const char *s, size_t len) {
    if (m->symbol_slot_cap == 0)
        return -1;
    size_t mask = m->symbol_slot_cap - 1;
    for (size_t i = hash_bytes(s, len) & mask;; i = (i + 1) & mask) {
        int sym = m->symbol_slots[i];
        if (sym < 0)
            return -1;
        if (symbol_equals(m, sym, s, len))
            return sym;
    }
}

static int grow_symbol_slots(BpeModel *m) {
    size_t cap = m->symbol_slot_cap ? m->symbol_slot_cap * 2 : 1024;
    int *slots = malloc(cap * sizeof *slots);
    if (!slots)
        return -1;
    memset(slots, 0xFF, cap * sizeof *slots);
    for (int sym = 0; sym < m->symbol_count; sym++) {
        const Symbol *y = &m->symbols[sym];
        size_t i = hash_bytes(m->chars + y->offset, y->len) & (cap - 1);
        while (slots[i] >= 0)
            i = (i + 1) & (cap - 1);
        slots[i] = sym;
    }
    free(m->symbol_slots);
    m->symbol_slots = slots;
    m->symbol_slot_cap = cap;
    return 0;
}

int bpe_intern(BpeModel *m, const char *s, size_t len) {
    int found = bpe_find(m, s, len);
    if (found >= 0)
        return found;
    if ((size_t)(m->symbol_count + 1) * 2 > m->symbol_slot_cap && grow_symbol_slots(m) != 0)
        return -1;
    if (m->symbol_count == m->symbol_cap) {
        int cap = m->symbol_cap ? m->symbol_cap * 2 : 1024;
        Symbol *symbols = realloc(m->symbols, (size_t)cap * sizeof *symbols);
        if (!symbols)
            return -1;
        m->symbols = symbols;
        m->symbol_cap = cap;
    }
    if (m->chars_len + len + 1 > m->chars_cap) { /* + 1: each string is NUL-terminated */
        size_t cap = m->chars_cap ? m->chars_cap : 65536;
        while (cap < m->chars_len + len + 1)
            cap *= 2;
        /* s may point at one of our own strings (bpe_symbol_string): keep it valid */
        bool inside = m->chars && s >= m->chars && s < m->chars + m->chars_len;
        size_t s_offset = inside ? (size_t)(s - m->chars) : 0;
        char *chars = realloc(m->chars, cap);
        if (!chars)
            return -1;
        m->chars = chars;
        m->chars_cap = cap;
        if (inside)
            s = chars + s_offset;
    }
    if (len)
        memcpy(m->chars + m->chars_len, s, len);
    m->chars[m->chars_len + len] = 0;
    int sym = m->symbol_count++;
    m->symbols[sym] = (Symbol){m->chars_len, len, -1, -1, -1};
    m->chars_len += len + 1;
    size_t mask = m->symbol_slot_cap - 1;
    size_t i = hash_bytes(s, len) & mask;
    while (m->symbol_slots[i] >= 0)
        i = (i + 1) & mask;
    m->symbol_slots[i] = sym;
    return sym;
}

const char *bpe_symbol_string(const BpeModel *m, int sym, size_t *len) {
    if (sym < 0 || sym >= m->symbol_count)
        return NULL;
    if (len)
        *len = m->symbols[sym].len;
    return m->chars + m->symbols[sym].offset;
}

void bpe_set_vocab_id(BpeModel *m, int sym, int id) {
    m->symbols[sym].vocab_id = id;
}
int bpe_vocab_id(const BpeModel *m, int sym) {
    return m->symbols[sym].vocab_id;
}
void bpe_set_added_id(BpeModel *m, int sym, int id) {
    m->symbols[sym].added_id = id;
}
int bpe_added_id(const BpeModel *m, int sym) {
    return m->symbols[sym].added_id;
}

/* ---- merges ------------------------------------------------------------------------------- */

static int merge_find(const BpeModel *m, int left, int right) {
    if (m->merge_slot_cap == 0)
        return -1;
    size_t mask = m->merge_slot_cap - 1;
    for (size_t i = hash_pair(left, right) & mask;; i = (i + 1) & mask) {
        int k = m->merge_slots[i];
        if (k < 0)
            return -1;
        if (m->merges[k].left == left && m->merges[k].right == right)
            return k;
    }
}

static int grow_merge_slots(BpeModel *m) {
    size_t cap = m->merge_slot_cap ? m->merge_slot_cap * 2 : 1024;
    int *slots = malloc(cap * sizeof *slots);
    if (!slots)
        return -1;
    memset(slots, 0xFF, cap * sizeof *slots);
    for (int k = 0; k < m->merge_count; k++) {
        size_t i = hash_pair(m->merges[k].left, m->merges[k].right) & (cap - 1);
        while (slots[i] >= 0)
            i = (i + 1) & (cap - 1);
        slots[i] = k;
    }
    free(m->merge_slots);
    m->merge_slots = slots;
    m->merge_slot_cap = cap;
    return 0;
}

int bpe_add_merge(BpeModel *m, const char *left, size_t left_len, const char *right,
                  size_t right_len, int rank, Error *err) {
    char stack[256];
    char *joined = left_len + right_len <= sizeof stack ? stack : malloc(left_len + right_len);
    if (!joined)
        return error_set(err, "out of memory reading BPE merges");
    memcpy(joined, left, left_len);
    memcpy(joined + left_len, right, right_len);
    int a = bpe_intern(m, left, left_len), b = a < 0 ? -1 : bpe_intern(m, right, right_len);
    int result = b < 0 ? -1 : bpe_intern(m, joined, left_len + right_len);
    if (joined != stack)
        free(joined);
    if (result < 0)
        return error_set(err, "out of memory reading BPE merges");
    int k = merge_find(m, a, b);
    if (k >= 0) {
        m->merges[k].rank = rank;
        return 0;
    }
    if ((size_t)(m->merge_count + 1) * 2 > m->merge_slot_cap && grow_merge_slots(m) != 0)
        return error_set(err, "out of memory reading BPE merges");
    if (m->merge_count == m->merge_cap) {
        int cap = m->merge_cap ? m->merge_cap * 2 : 1024;
        Merge *merges = realloc(m->merges, (size_t)cap * sizeof *merges);
        if (!merges)
            return error_set(err, "out of memory reading BPE merges");
        m->merges = merges;
        m->merge_cap = cap;
    }
    k = m->merge_count++;
    m->merges[k] = (Merge){a, b, result, rank};
    size_t mask = m->merge_slot_cap - 1;
    size_t i = hash_pair(a, b) & mask;
    while (m->merge_slots[i] >= 0)
        i = (i + 1) & mask;
    m->merge_slots[i] = k;
    return 0;
}

/* bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 bytes map to
 * U+0100.. in byte order, so no symbol is a space or a control character. */
static uint32_t byte_to_unicode(int b) {
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))
        return (uint32_t)b;
    int n = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF)))
            n++;
    return 256u + (uint32_t)n;
}

int bpe_finish(BpeModel *m, Error *err) {
    for (int b = 0; b < 256; b++) {
        char s[8];
        size_t len = text_utf8_encode(byte_to_unicode(b), (unsigned char *)s);
        memcpy(s + len, "</w>", 4);
        m->initial[b] = bpe_intern(m, s, len);
        m->initial_end[b] = bpe_intern(m, s, len + 4);
        if (m->initial[b] < 0 || m->initial_end[b] < 0)
            return error_set(err, "out of memory building the BPE model");
    }
    for (int k = 0; k < m->merge_count; k++) {
        Symbol *r = &m->symbols[m->merges[k].result];
        if (m->merges[k].rank > r->max_produced_rank)
            r->max_produced_rank = m->merges[k].rank;
    }
    m->fast_path = true;
    for (int k = 0; k < m->merge_count && m->fast_path; k++) {
        const Merge *g = &m->merges[k];
        m->fast_path = m->symbols[g->left].max_produced_rank < g->rank &&
                       m->symbols[g->right].max_produced_rank < g->rank;
    }
    return 0;
}

bool bpe_uses_fast_path(const BpeModel *m) {
    return m->fast_path;
}

/* ---- merging ------------------------------------------------------------------------------ */

typedef struct HeapEntry {
    int rank, pos, left, right;
} HeapEntry;

static bool heap_less(const HeapEntry *a, const HeapEntry *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(HeapEntry *h, size_t *n, HeapEntry e) {
    size_t i = (*n)++;
    while (i > 0 && heap_less(&e, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = e;
}

static HeapEntry heap_pop(HeapEntry *h, size_t *n) {
    HeapEntry top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && heap_less(&h[c + 1], &h[c]))
            c++;
        if (!heap_less(&h[c], &last))
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0)
        h[i] = last;
    return top;
}

/* Symbols live in a linked list over positions 0..n-1; a merged pair keeps the left position.
 * The queue holds (rank, left position); entries made stale by a merge are skipped. */
static void merge_fast(const BpeModel *m, int *sym, int *next, int *prev, HeapEntry *heap,
                       size_t n) {
    size_t heap_n = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        int k = merge_find(m, sym[i], sym[i + 1]);
        if (k >= 0)
            heap_push(heap, &heap_n, (HeapEntry){m->merges[k].rank, (int)i, sym[i], sym[i + 1]});
    }
    while (heap_n > 0) {
        HeapEntry e = heap_pop(heap, &heap_n);
        int p = e.pos, q = next[p];
        if (sym[p] != e.left || q < 0 || sym[q] != e.right)
            continue;
        sym[p] = m->merges[merge_find(m, e.left, e.right)].result;
        sym[q] = -1;
        next[p] = next[q];
        if (next[q] >= 0)
            prev[next[q]] = p;
        if (prev[p] >= 0) {
            int k = merge_find(m, sym[prev[p]], sym[p]);
            if (k >= 0)
                heap_push(heap, &heap_n,
                          (HeapEntry){m->merges[k].rank, prev[p], sym[prev[p]], sym[p]});
        }
        if (next[p] >= 0) {
            int k = merge_find(m, sym[p], sym[next[p]]);
            if (k >= 0)
                heap_push(heap, &heap_n, (HeapEntry){m->merges[k].rank, p, sym[p], sym[next[p]]});
        }
    }
}

/* The reference loop on a compact array; returns the new length. */
static size_t merge_reference(const BpeModel *m, int *word, size_t n) {
    while (n > 1) {
        int best = -1;
        for (size_t i = 0; i + 1 < n; i++) {
            int k = merge_find(m, word[i], word[i + 1]);
            if (k >= 0 && (best < 0 || m->merges[k].rank < m->merges[best].rank))
                best = k;
        }
        if (best < 0)
            break;
        const Merge *g = &m->merges[best];
        size_t out = 0;
        for (size_t i = 0; i < n;) {
            if (i + 1 < n && word[i] == g->left && word[i + 1] == g->right) {
                word[out++] = g->result;
                i += 2;
            } else {
                word[out++] = word[i++];
            }
        }
        n = out;
    }
    return n;
}

int bpe_encode_word(const BpeModel *m, const unsigned char *bytes, size_t n, bool reference,
                    int **syms, size_t *count, size_t *cap, Error *err) {
    if (n == 0)
        return 0;
    if (n > SIZE_MAX / (3 * sizeof(HeapEntry) + 4 * sizeof(int)))
        return error_set(err, "pre-token of %zu bytes is too long", n);
    int *sym = malloc(n * 3 * sizeof *sym);
    HeapEntry *heap = malloc(n * 3 * sizeof *heap);
    if (!sym || !heap) {
        free(sym);
        free(heap);
        return error_set(err, "out of memory in BPE");
    }
    int *next = sym + n, *prev = sym + 2 * n;
    for (size_t i = 0; i < n; i++) {
        sym[i] = i + 1 == n ? m->initial_end[bytes[i]] : m->initial[bytes[i]];
        next[i] = i + 1 < n ? (int)i + 1 : -1;
        prev[i] = (int)i - 1;
    }
    size_t kept = n;
    if (reference || !m->fast_path) {
        kept = merge_reference(m, sym, n);
    } else {
        merge_fast(m, sym, next, prev, heap, n);
        kept = 0;
        for (int p = 0; p >= 0; p = next[p])
            sym[kept++] = sym[p];
    }
    int rc = 0;
    if (*count + kept > *cap) {
        size_t new_cap = *cap ? *cap : 64;
        while (new_cap < *count + kept)
            new_cap *= 2;
        int *grown = realloc(*syms, new_cap * sizeof *grown);
        if (!grown)
            rc = error_set(err, "out of memory in BPE");
        else
            *syms = grown, *cap = new_cap;
    }
    if (rc == 0) {
        memcpy(*syms + *count, sym, kept * sizeof *sym);
        *count += kept;
    }
    free(sym);
    free(heap);
    return rc;
}
