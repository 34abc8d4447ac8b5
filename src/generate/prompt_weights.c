/* See prompt_weights.h. The scanner follows kohya's re_attention alternatives in order:
 *   \( \) \[ \] \\  (escaped),  \ (lone backslash),  (  [  :NUMBER)  )  ]
 *   a run of anything but \ ( ) [ ] :,   a lone ':'. */
#define _POSIX_C_SOURCE 200809L
#include "generate/prompt_weights.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"

#define ROUND_MULTIPLIER  1.1
#define SQUARE_MULTIPLIER (1 / 1.1)

typedef struct PieceList {
    WeightedText *items;
    int count, cap;
} PieceList;

static int piece_add(PieceList *l, const char *text, size_t n, Error *err) {
    if (l->count == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        WeightedText *items = realloc(l->items, (size_t)cap * sizeof *items);
        if (!items)
            return error_set(err, "out of memory");
        l->items = items;
        l->cap = cap;
    }
    char *copy = malloc(n + 1);
    if (!copy)
        return error_set(err, "out of memory");
    memcpy(copy, text, n);
    copy[n] = '\0';
    l->items[l->count++] = (WeightedText){copy, 1.0};
    return 0;
}

static void multiply_range(PieceList *l, int start, double m) {
    for (int p = start; p < l->count; p++)
        l->items[p].weight *= m;
}

/* text.replace("BREAK", "\\BREAK\\"): keeps BREAK a piece of its own. */
static char *mark_breaks(const char *text) {
    size_t count = 0;
    for (const char *p = strstr(text, "BREAK"); p; p = strstr(p + 5, "BREAK"))
        count++;
    char *out = malloc(strlen(text) + 2 * count + 1), *o = out;
    if (!out)
        return NULL;
    const char *s = text;
    for (const char *p = strstr(s, "BREAK"); p; p = strstr(s, "BREAK")) {
        memcpy(o, s, (size_t)(p - s));
        o += p - s;
        memcpy(o, "\\BREAK\\", 7);
        o += 7;
        s = p + 5;
    }
    strcpy(o, s);
    return out;
}

/* Python's str.strip() == "BREAK" for ASCII whitespace. */
static bool is_break(const char *s) {
    while (*s == ' ' || (*s >= '\t' && *s <= '\r'))
        s++;
    if (strncmp(s, "BREAK", 5) != 0)
        return false;
    s += 5;
    while (*s == ' ' || (*s >= '\t' && *s <= '\r'))
        s++;
    return *s == '\0';
}

/* ":([+-]?[.\d]+)\)" at s: the length of the match (0: none) and the number's span. */
static size_t match_weight(const char *s, const char **num, size_t *num_len) {
    if (s[0] != ':')
        return 0;
    size_t i = 1;
    if (s[i] == '+' || s[i] == '-')
        i++;
    size_t digits = 0;
    while (s[i + digits] == '.' || (s[i + digits] >= '0' && s[i + digits] <= '9'))
        digits++;
    if (digits == 0 || s[i + digits] != ')')
        return 0;
    *num = s + 1;
    *num_len = i - 1 + digits;
    return i + digits + 1;
}

static int scan(const char *text, PieceList *res, int *round, int *square, int *n_round,
                int *n_square, Error *err) {
    const char *s = text;
    while (*s) {
        const char *num = NULL;
        size_t num_len = 0, wlen;
        if (s[0] == '\\' && s[1] && strchr("()[]\\", s[1])) {
            if (piece_add(res, s + 1, 1, err) != 0)
                return -1;
            s += 2;
        } else if (s[0] == '\\') {
            if (piece_add(res, "", 0, err) != 0)
                return -1;
            s += 1;
        } else if (s[0] == '(') {
            round[(*n_round)++] = res->count;
            s++;
        } else if (s[0] == '[') {
            square[(*n_square)++] = res->count;
            s++;
        } else if ((wlen = match_weight(s, &num, &num_len)) > 0) {
            if (*n_round > 0) {
                char buf[64];
                char *end = NULL;
                double w = NAN;
                if (num_len < sizeof buf) {
                    memcpy(buf, num, num_len);
                    buf[num_len] = '\0';
                    errno = 0;
                    w = strtod(buf, &end);
                }
                if (num_len >= sizeof buf || errno || *end || end == buf)
                    return error_set(err,
                                     "prompt weight '%.*s' is not a number (write "
                                     "(text:1.2))",
                                     (int)num_len, num);
                multiply_range(res, round[--(*n_round)], w);
            } else if (piece_add(res, s, wlen, err) != 0) {
                return -1;
            }
            s += wlen;
        } else if (s[0] == ')' && *n_round > 0) {
            multiply_range(res, round[--(*n_round)], ROUND_MULTIPLIER);
            s++;
        } else if (s[0] == ']' && *n_square > 0) {
            multiply_range(res, square[--(*n_square)], SQUARE_MULTIPLIER);
            s++;
        } else if (s[0] == ')' || s[0] == ']' || s[0] == ':') {
            if (piece_add(res, s, 1, err) != 0)
                return -1;
            s++;
        } else {
            size_t n = strcspn(s, "\\()[]:");
            if (piece_add(res, s, n, err) != 0)
                return -1;
            s += n;
        }
    }
    return 0;
}

int prompt_attention_parse(const char *text, WeightedText **out, int *count, Error *err) {
    *out = NULL;
    *count = 0;
    char *marked = mark_breaks(text);
    size_t len = marked ? strlen(marked) : 0;
    int *round = malloc((len + 1) * sizeof *round);
    int *square = malloc((len + 1) * sizeof *square);
    PieceList res = {0};
    int n_round = 0, n_square = 0;
    int rc = marked && round && square ? 0 : error_set(err, "out of memory");
    if (rc == 0)
        rc = scan(marked, &res, round, square, &n_round, &n_square, err);
    if (rc == 0) {
        for (int i = 0; i < n_round; i++)
            multiply_range(&res, round[i], ROUND_MULTIPLIER);
        for (int i = 0; i < n_square; i++)
            multiply_range(&res, square[i], SQUARE_MULTIPLIER);
        if (res.count == 0)
            rc = piece_add(&res, "", 0, err);
    }
    /* merge runs of identical weights, never across a BREAK */
    for (int i = 0; rc == 0 && i + 1 < res.count;) {
        WeightedText *a = &res.items[i], *b = &res.items[i + 1];
        if (a->weight == b->weight && !is_break(a->text) && !is_break(b->text)) {
            size_t la = strlen(a->text), lb = strlen(b->text);
            char *joined = realloc(a->text, la + lb + 1);
            if (!joined) {
                rc = error_set(err, "out of memory");
                break;
            }
            memcpy(joined + la, b->text, lb + 1);
            a->text = joined;
            free(b->text);
            memmove(b, b + 1, (size_t)(res.count - i - 2) * sizeof *b);
            res.count--;
        } else {
            i++;
        }
    }
    free(marked);
    free(round);
    free(square);
    if (rc != 0) {
        weighted_text_free(res.items, res.count);
        return -1;
    }
    *out = res.items;
    *count = res.count;
    return 0;
}

void weighted_text_free(WeightedText *w, int count) {
    for (int i = 0; w && i < count; i++)
        free(w[i].text);
    free(w);
}

static int tokens_append(PromptTokens *p, int *cap, const int *ids, int n, double weight,
                         Error *err) {
    if (p->count + n > *cap) {
        int c = *cap ? *cap : 64;
        while (c < p->count + n)
            c *= 2;
        int *ni = realloc(p->ids, (size_t)c * sizeof *ni);
        if (ni)
            p->ids = ni;
        double *nw = realloc(p->weights, (size_t)c * sizeof *nw);
        if (nw)
            p->weights = nw;
        if (!ni || !nw)
            return error_set(err, "out of memory");
        *cap = c;
    }
    for (int i = 0; i < n; i++) {
        p->ids[p->count] = ids[i];
        p->weights[p->count++] = weight;
    }
    return 0;
}

/* Each embedding's first id becomes all of its ids (kohya's replace_token). */
static int expand_embeddings(const TiTokens *embeddings, int n_embeddings, int **ids, int *count,
                             Error *err) {
    for (int e = 0; e < n_embeddings; e++) {
        if (embeddings[e].num_vectors < 2)
            continue;
        int *expanded = NULL, n = 0;
        if (ti_tokens_expand_ids(&embeddings[e], *ids, *count, &expanded, &n, err) != 0)
            return -1;
        free(*ids);
        *ids = expanded;
        *count = n;
    }
    return 0;
}

int prompt_tokens_build(const Tokenizer *tok, const TiTokens *embeddings, int n_embeddings,
                        const char *prompt, int max_tokens, PromptTokens *out, Error *err) {
    memset(out, 0, sizeof *out);
    WeightedText *pieces = NULL;
    int n_pieces = 0, cap = 0, rc = 0;
    if (prompt_attention_parse(prompt, &pieces, &n_pieces, err) != 0)
        return -1;
    const int chunk = 77; /* kohya: tokenizer.model_max_length */
    for (int i = 0; rc == 0 && i < n_pieces; i++) {
        if (is_break(pieces[i].text)) {
            int pad_len = chunk - out->count % chunk;
            int pad = tokenizer_pad_id(tok);
            for (int k = 0; rc == 0 && k < pad_len; k++)
                rc = tokens_append(out, &cap, &pad, 1, 1.0, err);
            continue;
        }
        int *ids = NULL, n = 0;
        rc = tokenizer_encode(tok, pieces[i].text, &ids, &n, err);
        if (rc == 0)
            rc = expand_embeddings(embeddings, n_embeddings, &ids, &n, err);
        if (rc == 0)
            rc = tokens_append(out, &cap, ids, n, pieces[i].weight, err);
        free(ids);
        if (out->count > max_tokens)
            break;
    }
    weighted_text_free(pieces, n_pieces);
    if (rc != 0) {
        prompt_tokens_free(out);
        return -1;
    }
    if (out->count > max_tokens) {
        out->truncated = true;
        out->count = max_tokens;
    }
    return 0;
}

void prompt_tokens_free(PromptTokens *p) {
    free(p->ids);
    free(p->weights);
    memset(p, 0, sizeof *p);
}
