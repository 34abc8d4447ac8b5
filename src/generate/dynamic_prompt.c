/* See dynamic_prompt.h. The pattern is kohya's RE_DYNAMIC_PROMPT, matched with PCRE2 (the same
 * lazy-quantifier semantics as Python's re for this pattern). */
#define _POSIX_C_SOURCE       200809L
#define PCRE2_CODE_UNIT_WIDTH 8
#include "generate/dynamic_prompt.h"

#include <errno.h>
#include <math.h>
#include <pcre2.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"

static const char PATTERN[] =
    "\\{((e|E)\\$\\$)?(([\\d\\-]+)\\$\\$)?(([^\\|\\}]+?)\\$\\$)?(.+?((\\|).+?)*?)\\}";

/* The most prompts one line may expand to: kohya has no limit (enumerating a few dozen
 * variants runs it out of memory); past this sdti stops with an error instead. */
#define DYNAMIC_PROMPT_MAX 10000

typedef struct Variant {
    char *whole;     /* group 0: the text replaced */
    bool enumerate;  /* group 2 */
    char *separator; /* group 6, or ", " */
    char **items;    /* group 7 split on '|' */
    int n_items;
    int lo, hi; /* count range */
} Variant;

typedef struct StrList {
    char **items;
    int count, cap;
} StrList;

static char *copy_span(const char *s, size_t n) {
    char *out = malloc(n + 1);
    if (out) {
        memcpy(out, s, n);
        out[n] = '\0';
    }
    return out;
}

static int list_push(StrList *l, char *s, Error *err) {
    if (!s)
        return error_set(err, "out of memory");
    if (l->count == l->cap) {
        int cap = l->cap ? 2 * l->cap : 8;
        char **items = realloc(l->items, (size_t)cap * sizeof *items);
        if (!items) {
            free(s);
            return error_set(err, "out of memory");
        }
        l->items = items;
        l->cap = cap;
    }
    l->items[l->count++] = s;
    return 0;
}

static void list_free(StrList *l) {
    for (int i = 0; i < l->count; i++)
        free(l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}

static void variant_free(Variant *v) {
    free(v->whole);
    free(v->separator);
    for (int i = 0; i < v->n_items; i++)
        free(v->items[i]);
    free(v->items);
}

/* Python int() of a run of digits (kohya's count range); -1 when not a number. */
static long parse_count(const char *s, size_t n) {
    if (n == 0 || n > 9)
        return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static int make_variant(const char *prompt, const PCRE2_SIZE *ov, Variant *v, Error *err) {
    memset(v, 0, sizeof *v);
    v->whole = copy_span(prompt + ov[0], ov[1] - ov[0]);
    v->enumerate = ov[4] != PCRE2_UNSET;
    v->separator =
        ov[12] != PCRE2_UNSET ? copy_span(prompt + ov[12], ov[13] - ov[12]) : copy_span(", ", 2);
    if (!v->whole || !v->separator)
        return error_set(err, "out of memory");
    const char *items = prompt + ov[14];
    size_t len = ov[15] - ov[14];
    v->n_items = 1;
    for (size_t i = 0; i < len; i++)
        v->n_items += items[i] == '|';
    v->items = calloc((size_t)v->n_items, sizeof *v->items);
    if (!v->items)
        return error_set(err, "out of memory");
    for (int i = 0, start = 0; i < v->n_items; i++) {
        size_t end = (size_t)start;
        while (end < len && items[end] != '|')
            end++;
        v->items[i] = copy_span(items + start, end - (size_t)start);
        if (!v->items[i])
            return error_set(err, "out of memory");
        start = (int)end + 1;
    }
    v->lo = v->hi = 1;
    if (ov[8] != PCRE2_UNSET) {
        const char *r = prompt + ov[8];
        size_t n = ov[9] - ov[8];
        const char *dash = memchr(r, '-', n);
        const char *dash2 = dash ? memchr(dash + 1, '-', n - (size_t)(dash + 1 - r)) : NULL;
        if (dash2) {
            log_warning("invalid count range: %.*s", (int)n, r);
        } else {
            long a = parse_count(r, dash ? (size_t)(dash - r) : n);
            long b = dash ? parse_count(dash + 1, n - (size_t)(dash + 1 - r)) : a;
            if (a < 0 || b < 0)
                return error_set(err,
                                 "dynamic prompt %s: count range '%.*s' is not N or N-M (kohya "
                                 "fails with ValueError)",
                                 v->whole, (int)n, r);
            if (a > b) {
                long t = a;
                a = b;
                b = t;
            }
            if (b > v->n_items)
                b = v->n_items;
            v->lo = (int)a;
            v->hi = (int)b;
        }
    }
    return 0;
}

/* random.sample(items, k) joined by the separator (CPython's two algorithms by set size).
 * NULL when out of memory. */
static char *pick(const Variant *v, PyRandom *py) {
    int k = (int)py_random_randint(py, v->lo, v->hi); /* lo <= hi: check_pick_range */
    int n = v->n_items;
    int *chosen = malloc((size_t)(k > 0 ? k : 1) * sizeof *chosen);
    int *pool = malloc((size_t)n * sizeof *pool);
    if (!chosen || !pool) {
        free(chosen);
        free(pool);
        return NULL;
    }
    int setsize = 21;
    if (k > 5)
        setsize += (int)pow(4, ceil(log(k * 3) / log(4)));
    if (n <= setsize) {
        for (int i = 0; i < n; i++)
            pool[i] = i;
        for (int i = 0; i < k; i++) {
            int j = (int)py_random_randbelow(py, (uint64_t)(n - i));
            chosen[i] = pool[j];
            pool[j] = pool[n - i - 1];
        }
    } else {
        memset(pool, 0, (size_t)n * sizeof *pool); /* pool[j]: j selected */
        for (int i = 0; i < k; i++) {
            int j = (int)py_random_randbelow(py, (uint64_t)n);
            while (pool[j])
                j = (int)py_random_randbelow(py, (uint64_t)n);
            pool[j] = 1;
            chosen[i] = j;
        }
    }
    size_t size = 1;
    for (int i = 0; i < k; i++)
        size += strlen(v->items[chosen[i]]) + strlen(v->separator);
    char *out = malloc(size);
    if (out) {
        out[0] = '\0';
        for (int i = 0; i < k; i++) {
            if (i)
                strcat(out, v->separator);
            strcat(out, v->items[chosen[i]]);
        }
    }
    free(chosen);
    free(pool);
    return out;
}

/* A count above the number of variants ({3$$a|b}: kohya clamps only the top of the range):
 * random.randint(3, 2) raises ValueError in kohya; enumerating gives no prompts there. */
static int check_pick_range(const Variant *v, Error *err) {
    if (v->lo > v->hi)
        return error_set(err,
                         "dynamic prompt %s: a count of %d, but only %d variants (kohya fails "
                         "with ValueError)",
                         v->whole, v->lo, v->n_items);
    return 0;
}

static int too_many(Error *err) {
    return error_set(err,
                     "dynamic prompt: more than %d prompts from one line; enumerate fewer "
                     "variants ({e$$...})",
                     DYNAMIC_PROMPT_MAX);
}

/* Every combination (itertools.combinations order) of counts lo..hi, joined. */
static int enumerate_all(const Variant *v, StrList *out, Error *err) {
    int n = v->n_items;
    int *idx = malloc((size_t)(n + 1) * sizeof *idx);
    if (!idx)
        return error_set(err, "out of memory");
    int rc = 0;
    for (int k = v->lo; rc == 0 && k <= v->hi; k++) {
        for (int i = 0; i < k; i++)
            idx[i] = i;
        while (rc == 0) {
            size_t size = 1;
            for (int i = 0; i < k; i++)
                size += strlen(v->items[idx[i]]) + strlen(v->separator);
            char *s = malloc(size);
            if (s) {
                s[0] = '\0';
                for (int i = 0; i < k; i++) {
                    if (i)
                        strcat(s, v->separator);
                    strcat(s, v->items[idx[i]]);
                }
            }
            rc = list_push(out, s, err);
            if (rc == 0 && out->count > DYNAMIC_PROMPT_MAX)
                rc = too_many(err);
            int i = k - 1;
            while (i >= 0 && idx[i] == i + n - k)
                i--;
            if (i < 0)
                break;
            idx[i]++;
            for (int j = i + 1; j < k; j++)
                idx[j] = idx[j - 1] + 1;
        }
    }
    free(idx);
    return rc;
}

/* str.replace(old, new, 1). */
static char *replace_first(const char *s, const char *old, const char *with) {
    const char *p = strstr(s, old);
    if (!p)
        return strdup(s);
    size_t lo = strlen(old), lw = strlen(with), ls = strlen(s);
    char *out = malloc(ls - lo + lw + 1);
    if (!out)
        return NULL;
    memcpy(out, s, (size_t)(p - s));
    memcpy(out + (p - s), with, lw);
    strcpy(out + (p - s) + lw, p + lo);
    return out;
}

static int find_variants(const char *prompt, Variant **out, int *count, Error *err) {
    *out = NULL;
    *count = 0;
    int code;
    PCRE2_SIZE off;
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)PATTERN, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &code, &off, NULL);
    if (!re)
        return error_set(err, "dynamic prompt pattern failed to compile");
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    size_t len = strlen(prompt), start = 0;
    int rc = md ? 0 : error_set(err, "out of memory");
    while (rc == 0 && start <= len) {
        int m = pcre2_match(re, (PCRE2_SPTR)prompt, len, start, 0, md, NULL);
        if (m == PCRE2_ERROR_NOMATCH)
            break;
        if (m < 0) {
            rc = error_set(err, "dynamic prompt: matching failed (PCRE2 error %d)", m);
            break;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        /* unset groups beyond the highest matched one */
        PCRE2_SIZE groups[20];
        for (int g = 0; g < 10; g++) {
            groups[2 * g] = g < m ? ov[2 * g] : PCRE2_UNSET;
            groups[2 * g + 1] = g < m ? ov[2 * g + 1] : PCRE2_UNSET;
        }
        Variant *grown = realloc(*out, (size_t)(*count + 1) * sizeof *grown);
        if (!grown) {
            rc = error_set(err, "out of memory");
            break;
        }
        *out = grown;
        rc = make_variant(prompt, groups, &grown[*count], err);
        (*count)++;
        start = ov[1] > ov[0] ? ov[1] : ov[1] + 1;
    }
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return rc;
}

int dynamic_prompt_expand(const char *prompt, int repeat_count, PyRandom *py, char ***out,
                          int *count, Error *err) {
    *out = NULL;
    *count = 0;
    Variant *vs = NULL;
    int nv = 0;
    StrList prompts = {0};
    int rc = find_variants(prompt, &vs, &nv, err);
    bool enumerating = false;
    for (int i = 0; rc == 0 && i < nv; i++) {
        enumerating = enumerating || vs[i].enumerate;
        if (!vs[i].enumerate)
            rc = check_pick_range(&vs[i], err);
    }
    if (rc == 0 && nv == 0) {
        rc = list_push(&prompts, strdup(prompt), err);
    } else if (rc == 0 && !enumerating) {
        for (int r = 0; rc == 0 && r < repeat_count; r++) {
            char *current = strdup(prompt);
            for (int i = 0; current && i < nv; i++) {
                char *choice = pick(&vs[i], py);
                char *next = choice ? replace_first(current, vs[i].whole, choice) : NULL;
                free(choice);
                free(current);
                current = next;
            }
            rc = list_push(&prompts, current, err);
        }
    } else if (rc == 0) {
        rc = list_push(&prompts, strdup(prompt), err);
        for (int i = 0; rc == 0 && i < nv; i++) {
            if (!vs[i].enumerate)
                continue;
            StrList all = {0}, next = {0};
            rc = enumerate_all(&vs[i], &all, err);
            if (rc == 0 && (int64_t)prompts.count * all.count > DYNAMIC_PROMPT_MAX)
                rc = too_many(err);
            for (int p = 0; rc == 0 && p < prompts.count; p++)
                for (int a = 0; rc == 0 && a < all.count; a++)
                    rc = list_push(&next,
                                   replace_first(prompts.items[p], vs[i].whole, all.items[a]), err);
            if (rc != 0)
                list_free(&next);
            list_free(&all);
            list_free(&prompts);
            prompts = next;
        }
        for (int i = 0; rc == 0 && i < nv; i++) {
            if (vs[i].enumerate)
                continue;
            for (int p = 0; rc == 0 && p < prompts.count; p++) {
                char *choice = pick(&vs[i], py);
                char *next = choice ? replace_first(prompts.items[p], vs[i].whole, choice) : NULL;
                free(choice);
                if (!next) {
                    rc = error_set(err, "out of memory");
                    break;
                }
                free(prompts.items[p]);
                prompts.items[p] = next;
            }
        }
    }
    for (int i = 0; i < nv; i++)
        variant_free(&vs[i]);
    free(vs);
    if (rc != 0) {
        list_free(&prompts);
        return -1;
    }
    *out = prompts.items;
    *count = prompts.count;
    return 0;
}

void dynamic_prompt_free(char **prompts, int count) {
    for (int i = 0; prompts && i < count; i++)
        free(prompts[i]);
    free(prompts);
}
