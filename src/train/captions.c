/* kohya's caption pipeline (see captions.h). Strings are handled as UTF-8 bytes: every
 * separator kohya splits on is a substring match, which bytes reproduce exactly. */
#define _POSIX_C_SOURCE 200809L
#include "train/captions.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file_util.h"
#include "text/ti_tokens.h"

/* ------------------------------------------------------------------------------------------
 * Templates (train_textual_inversion.py, identical to diffusers' example). */

const char *const caption_object_templates[] = {
    "a photo of a {}",           "a rendering of a {}",
    "a cropped photo of the {}", "the photo of a {}",
    "a photo of a clean {}",     "a photo of a dirty {}",
    "a dark photo of the {}",    "a photo of my {}",
    "a photo of the cool {}",    "a close-up photo of a {}",
    "a bright photo of the {}",  "a cropped photo of a {}",
    "a photo of the {}",         "a good photo of the {}",
    "a photo of one {}",         "a close-up photo of the {}",
    "a rendition of the {}",     "a photo of the clean {}",
    "a rendition of a {}",       "a photo of a nice {}",
    "a good photo of a {}",      "a photo of the nice {}",
    "a photo of the small {}",   "a photo of the weird {}",
    "a photo of the large {}",   "a photo of a cool {}",
    "a photo of a small {}",
};
const size_t caption_object_template_count =
    sizeof caption_object_templates / sizeof caption_object_templates[0];

const char *const caption_style_templates[] = {
    "a painting in the style of {}",         "a rendering in the style of {}",
    "a cropped painting in the style of {}", "the painting in the style of {}",
    "a clean painting in the style of {}",   "a dirty painting in the style of {}",
    "a dark painting in the style of {}",    "a picture in the style of {}",
    "a cool painting in the style of {}",    "a close-up painting in the style of {}",
    "a bright painting in the style of {}",  "a cropped painting in the style of {}",
    "a good painting in the style of {}",    "a close-up painting in the style of {}",
    "a rendition in the style of {}",        "a nice painting in the style of {}",
    "a small painting in the style of {}",   "a weird painting in the style of {}",
    "a large painting in the style of {}",
};
const size_t caption_style_template_count =
    sizeof caption_style_templates / sizeof caption_style_templates[0];

/* ------------------------------------------------------------------------------------------
 * A growable string. */

typedef struct Str {
    char *p;
    size_t len, cap;
    bool oom;
} Str;

static void str_add(Str *s, const char *p, size_t n) {
    if (s->oom)
        return;
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 64;
        while (cap < s->len + n + 1)
            cap *= 2;
        char *q = realloc(s->p, cap);
        if (!q) {
            s->oom = true;
            return;
        }
        s->p = q;
        s->cap = cap;
    }
    memcpy(s->p + s->len, p, n);
    s->len += n;
    s->p[s->len] = '\0';
}

static void str_adds(Str *s, const char *p) {
    str_add(s, p, strlen(p));
}

static char *str_take(Str *s) {
    if (s->oom) {
        free(s->p);
        return NULL;
    }
    if (!s->p)
        return strdup("");
    return s->p;
}

/* Replaces every `from` (non-empty) in `src` by `to`; malloc'd. */
static char *replace_all(const char *src, const char *from, const char *to) {
    Str s = {0};
    size_t fl = strlen(from);
    const char *p = src, *hit;
    while ((hit = strstr(p, from))) {
        str_add(&s, p, (size_t)(hit - p));
        str_adds(&s, to);
        p = hit + fl;
    }
    str_adds(&s, p);
    return str_take(&s);
}

/* ------------------------------------------------------------------------------------------
 * Python's str.strip() */

/* Length of the whitespace character at p (0 if none), per Python's str.isspace(). */
static size_t space_len(const unsigned char *p, const unsigned char *end) {
    if (p >= end)
        return 0;
    if (*p == ' ' || (*p >= 0x09 && *p <= 0x0d) || (*p >= 0x1c && *p <= 0x1f))
        return 1;
    if (end - p >= 2 && p[0] == 0xc2 && (p[1] == 0x85 || p[1] == 0xa0))
        return 2;
    if (end - p >= 3) {
        unsigned cp = (unsigned)(p[0] & 0x0f) << 12 | (unsigned)(p[1] & 0x3f) << 6 | (p[2] & 0x3f);
        if ((p[0] & 0xf0) == 0xe0 &&
            (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 ||
             cp == 0x202f || cp == 0x205f || cp == 0x3000))
            return 3;
    }
    return 0;
}

/* The byte length of a trailing whitespace character ending at end (0 if none). */
static size_t space_len_before(const unsigned char *begin, const unsigned char *end) {
    for (size_t n = 1; n <= 3 && (size_t)(end - begin) >= n; n++) {
        const unsigned char *p = end - n;
        if ((n == 1 || (*p & 0xc0) == 0xc0 || *p >= 0xe0) && space_len(p, end) == n)
            return n;
    }
    return 0;
}

const char *caption_strip(const char *begin, const char **end) {
    const unsigned char *b = (const unsigned char *)begin, *e = (const unsigned char *)*end;
    size_t n;
    while ((n = space_len(b, e)))
        b += n;
    while (e > b && (n = space_len_before(b, e)))
        e -= n;
    *end = (const char *)e;
    return (const char *)b;
}

static char *strip_dup(const char *b, const char *e) {
    b = caption_strip(b, &e);
    char *s = malloc((size_t)(e - b) + 1);
    if (s) {
        memcpy(s, b, (size_t)(e - b));
        s[e - b] = '\0';
    }
    return s;
}

/* ------------------------------------------------------------------------------------------
 * Token lists: [t.strip() for t in text.split(sep)], optionally dropping empty pieces. */

typedef struct Tokens {
    char **items;
    size_t count, cap;
    bool oom;
} Tokens;

static void tokens_push(Tokens *t, char *item) {
    if (!item || t->oom) {
        t->oom = true;
        free(item);
        return;
    }
    if (t->count == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 8;
        char **q = realloc(t->items, cap * sizeof *q);
        if (!q) {
            t->oom = true;
            free(item);
            return;
        }
        t->items = q;
        t->cap = cap;
    }
    t->items[t->count++] = item;
}

static void tokens_split(Tokens *t, const char *b, const char *e, const char *sep,
                         bool drop_empty) {
    size_t sl = strlen(sep);
    for (;;) {
        const char *hit = NULL;
        for (const char *p = b; p + sl <= e; p++)
            if (!memcmp(p, sep, sl)) {
                hit = p;
                break;
            }
        const char *pe = hit ? hit : e;
        char *piece = strip_dup(b, pe);
        if (piece && drop_empty && !piece[0])
            free(piece);
        else
            tokens_push(t, piece);
        if (!hit)
            break;
        b = hit + sl;
    }
}

static void tokens_free(Tokens *t) {
    for (size_t i = 0; i < t->count; i++)
        free(t->items[i]);
    free(t->items);
    memset(t, 0, sizeof *t);
}

/* ------------------------------------------------------------------------------------------
 * Wildcards: "{a|b|c}" -> one of a, b, c; "{{" and "}}" are literal braces. */

static char *pick_line(const char *caption, PyRandom *rng) {
    size_t lines = 1;
    for (const char *p = caption; *p; p++)
        lines += *p == '\n';
    size_t pick = (size_t)py_random_randbelow(rng, lines);
    const char *b = caption;
    for (size_t i = 0; i < pick; i++)
        b = strchr(b, '\n') + 1;
    const char *e = strchr(b, '\n');
    if (!e)
        e = b + strlen(b);
    return strndup(b, (size_t)(e - b));
}

static char *expand_wildcards(const char *caption, PyRandom *rng) {
    /* kohya's escape markers: "⦅"/"⦆", lengthened until absent from the caption. */
    Str open = {0}, close = {0};
    do {
        str_adds(&open, "\xe2\xa6\x85");
        str_adds(&close, "\xe2\xa6\x86");
    } while (!open.oom && !close.oom && (strstr(caption, open.p) || strstr(caption, close.p)));
    char *o = str_take(&open), *c = str_take(&close);
    char *t1 = o ? replace_all(caption, "{{", o) : NULL;
    char *t2 = t1 && c ? replace_all(t1, "}}", c) : NULL;
    free(t1);
    Str out = {0};
    if (t2) {
        /* re.sub(r"\{([^}]+)\}"): a "{" up to the first "}" with at least one byte between. */
        const char *p = t2;
        while (*p) {
            const char *close_brace = *p == '{' ? strchr(p + 1, '}') : NULL;
            if (!close_brace || close_brace == p + 1) {
                str_add(&out, p, 1);
                p++;
                continue;
            }
            size_t options = 1;
            for (const char *q = p + 1; q < close_brace; q++)
                options += *q == '|';
            size_t pick = (size_t)py_random_randbelow(rng, options);
            const char *b = p + 1;
            for (size_t i = 0; i < pick; i++)
                b = memchr(b, '|', (size_t)(close_brace - b)) + 1;
            const char *e = memchr(b, '|', (size_t)(close_brace - b));
            str_add(&out, b, (size_t)((e ? e : close_brace) - b));
            p = close_brace + 1;
        }
    }
    char *t3 = str_take(&out);
    char *t4 = t3 && o ? replace_all(t3, o, "{") : NULL;
    char *t5 = t4 && c ? replace_all(t4, c, "}") : NULL;
    free(t2);
    free(t3);
    free(t4);
    free(o);
    free(c);
    return t5;
}

/* ------------------------------------------------------------------------------------------
 * process_caption */

static char *shuffle_pieces(const CaptionRules *rules, const CaptionStep *step, PyRandom *rng,
                            const char *caption) {
    const char *sep = rules->caption_separator;
    const char *kts = rules->keep_tokens_separator;
    Tokens fixed = {0}, flex = {0}, suffix = {0};
    const char *end = caption + strlen(caption);
    const char *hit = kts && kts[0] ? strstr(caption, kts) : NULL;
    if (hit) {
        const char *flex_b = hit + strlen(kts), *flex_e = end;
        const char *hit2 = strstr(flex_b, kts);
        if (hit2) {
            flex_e = hit2;
            tokens_split(&suffix, hit2 + strlen(kts), end, sep, true);
        }
        tokens_split(&fixed, caption, hit, sep, true);
        tokens_split(&flex, flex_b, flex_e, sep, true);
    } else {
        const char *b = caption_strip(caption, &end);
        Tokens all = {0};
        tokens_split(&all, b, end, sep, false);
        size_t keep = rules->keep_tokens > 0 ? (size_t)rules->keep_tokens : 0;
        if (keep > all.count)
            keep = all.count;
        for (size_t i = 0; i < all.count; i++)
            tokens_push(i < keep ? &fixed : &flex, all.items[i]);
        free(all.items);
        if (all.oom)
            flex.oom = true;
    }

    /* Token warm-up: only the first pieces until token_warmup_step. */
    double warm = rules->token_warmup_step;
    if (warm < 1)
        warm = floor(warm * (double)step->max_train_steps);
    if (warm != 0 && (double)step->current_step < warm) {
        double n = floor((double)step->current_step *
                         (((double)flex.count - rules->token_warmup_min) / warm)) +
                   rules->token_warmup_min;
        /* Python slicing: a negative end counts from the back. */
        long long keep = (long long)n;
        if (keep < 0)
            keep += (long long)flex.count;
        if (keep < 0)
            keep = 0;
        while ((long long)flex.count > keep)
            free(flex.items[--flex.count]);
    }
    if (rules->shuffle_caption)
        py_random_shuffle(rng, flex.items, flex.count, sizeof(char *));

    Str s = {0};
    bool first = true;
    Tokens *parts[3] = {&fixed, &flex, &suffix};
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < parts[k]->count; i++) {
            if (!first)
                str_adds(&s, ", "); /* kohya joins with ", " whatever the separator */
            str_adds(&s, parts[k]->items[i]);
            first = false;
        }
    bool oom = fixed.oom || flex.oom || suffix.oom;
    tokens_free(&fixed);
    tokens_free(&flex);
    tokens_free(&suffix);
    char *out = str_take(&s);
    if (oom) {
        free(out);
        return NULL;
    }
    return out;
}

int caption_process(const CaptionRules *rules, const CaptionReplacement *repl, size_t repl_count,
                    const CaptionStep *step, PyRandom *rng, const char *caption, char **out,
                    Error *err) {
    *out = NULL;
    if (!rules->caption_separator || !rules->caption_separator[0])
        return error_set(err, "caption_separator is empty (Python's str.split refuses it)");
    CaptionStep no_step = {0};
    if (!step)
        step = &no_step;
    Str s = {0};
    if (rules->caption_prefix && rules->caption_prefix[0]) {
        str_adds(&s, rules->caption_prefix);
        str_adds(&s, " ");
    }
    str_adds(&s, caption);
    if (rules->caption_suffix && rules->caption_suffix[0]) {
        str_adds(&s, " ");
        str_adds(&s, rules->caption_suffix);
    }
    char *cur = str_take(&s), *next;
    if (!cur)
        goto oom;
    if (rules->enable_wildcard) {
        if (strchr(cur, '\n')) {
            next = pick_line(cur, rng);
            free(cur);
            if (!(cur = next))
                goto oom;
        }
        next = expand_wildcards(cur, rng);
        free(cur);
        if (!(cur = next))
            goto oom;
    } else {
        char *nl = strchr(cur, '\n');
        if (nl)
            *nl = '\0';
    }

    if (rules->shuffle_caption || rules->token_warmup_step > 0) {
        next = shuffle_pieces(rules, step, rng, cur);
        free(cur);
        if (!(cur = next))
            goto oom;
    }
    if (rules->secondary_separator && rules->secondary_separator[0]) {
        next = replace_all(cur, rules->secondary_separator, rules->caption_separator);
        free(cur);
        if (!(cur = next))
            goto oom;
    }
    for (size_t i = 0; i < repl_count; i++) {
        const CaptionReplacement *r = &repl[i];
        if (!r->from[0]) {
            if (r->choices && r->choice_count > 0)
                next = strdup(r->choices[py_random_randbelow(rng, r->choice_count)]);
            else
                next = strdup(r->to ? r->to : "");
        } else {
            next = replace_all(cur, r->from, r->to ? r->to : "");
        }
        free(cur);
        if (!(cur = next))
            goto oom;
    }
    *out = cur;
    return 0;
oom:
    return error_set(err, "out of memory processing a caption");
}

/* ------------------------------------------------------------------------------------------
 * Caption files */

static bool valid_utf8(const unsigned char *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!len || i + len > n)
            return false;
        unsigned cp = len == 1 ? c : c & (0x7f >> len);
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

static int read_caption_file(const char *path, bool enable_wildcard, char **out, Error *err) {
    char *data = NULL;
    size_t size = 0;
    if (file_read_all(path, &data, &size, err) != 0)
        return -1;
    if (size == 0) {
        free(data);
        return error_set(err, "%s: caption file is empty (kohya stops on this too)", path);
    }
    if (!valid_utf8((const unsigned char *)data, size) || memchr(data, '\0', size)) {
        free(data);
        return error_set(err, "%s: caption file is not UTF-8 text; save it as UTF-8", path);
    }
    /* Python's text mode reads "\r\n" and "\r" as "\n". */
    size_t w = 0;
    for (size_t r = 0; r < size; r++) {
        if (data[r] == '\r') {
            data[w++] = '\n';
            if (r + 1 < size && data[r + 1] == '\n')
                r++;
        } else {
            data[w++] = data[r];
        }
    }
    data[w] = '\0';
    Str s = {0};
    const char *p = data, *end = data + w;
    bool first = true;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *e = le;
        const char *b = caption_strip(p, &e);
        if (!enable_wildcard) {
            str_add(&s, b, (size_t)(e - b));
            break;
        }
        if (e > b) {
            if (!first)
                str_adds(&s, "\n");
            str_add(&s, b, (size_t)(e - b));
            first = false;
        }
        p = nl ? nl + 1 : end;
    }
    free(data);
    *out = str_take(&s);
    return *out ? 0 : error_set(err, "out of memory reading %s", path);
}

int caption_read_for_image(const char *image_path, const char *caption_extension,
                           bool enable_wildcard, char **out, Error *err) {
    *out = NULL;
    const char *slash = strrchr(image_path, '/');
    const char *dot = strrchr(image_path, '.');
    size_t base_len =
        dot && (!slash || dot > slash) ? (size_t)(dot - image_path) : strlen(image_path);
    /* os.path.splitext keeps a leading dot of the file name in the stem (".png" has no
     * extension). */
    if (dot && (slash ? dot == slash + 1 : dot == image_path))
        base_len = strlen(image_path);
    /* The face-crop name: the base path split on "_" minus its last four parts. */
    size_t face_len = base_len, parts = 1;
    for (size_t i = 0; i < base_len; i++)
        parts += image_path[i] == '_';
    if (parts >= 5) {
        size_t seen = 0;
        for (size_t i = base_len; i-- > 0;)
            if (image_path[i] == '_' && ++seen == 4) {
                face_len = i;
                break;
            }
    }
    size_t lens[2] = {base_len, face_len};
    for (int k = 0; k < 2; k++) {
        size_t n = lens[k] + strlen(caption_extension) + 1;
        char *path = malloc(n);
        if (!path)
            return error_set(err, "out of memory");
        snprintf(path, n, "%.*s%s", (int)lens[k], image_path, caption_extension);
        if (file_exists(path) && !file_is_dir(path)) {
            int rc = read_caption_file(path, enable_wildcard, out, err);
            free(path);
            return rc;
        }
        free(path);
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */

int caption_make_template_list(bool style, const char *tokens, char ***out, size_t *count,
                               Error *err) {
    const char *const *list = style ? caption_style_templates : caption_object_templates;
    size_t n = style ? caption_style_template_count : caption_object_template_count;
    char **items = calloc(n, sizeof *items);
    if (!items)
        return error_set(err, "out of memory");
    for (size_t i = 0; i < n; i++) {
        items[i] = replace_all(list[i], "{}", tokens);
        if (!items[i]) {
            caption_list_free(items, i);
            return error_set(err, "out of memory");
        }
    }
    *out = items;
    *count = n;
    return 0;
}

void caption_list_free(char **list, size_t count) {
    if (!list)
        return;
    for (size_t i = 0; i < count; i++)
        free(list[i]);
    free(list);
}

char *caption_join_token_strings(const char *token_string, int num_vectors) {
    Str s = {0};
    str_adds(&s, token_string);
    for (int i = 1; i < num_vectors; i++) {
        char num[16];
        snprintf(num, sizeof num, "%d", i);
        str_adds(&s, " ");
        str_adds(&s, token_string);
        str_adds(&s, num);
    }
    return str_take(&s);
}

int caption_ti_replacements(const TiTokens *t, bool use_object_template, bool use_style_template,
                            CaptionTiReplacements *out, Error *err) {
    memset(out, 0, sizeof *out);
    if (use_object_template || use_style_template) {
        /* kohya: the object list when --use_object_template is given, else the style list. */
        if (caption_make_template_list(!use_object_template, t->replacement, &out->templates,
                                       &out->template_count, err) != 0)
            return -1;
        out->entry = (CaptionReplacement){.from = "",
                                          .choices = (const char *const *)out->templates,
                                          .choice_count = out->template_count};
        out->count = 1;
    } else if (t->num_vectors > 1) {
        out->entry = (CaptionReplacement){.from = t->token_string, .to = t->replacement};
        out->count = 1;
    }
    return 0;
}

void caption_ti_replacements_free(CaptionTiReplacements *r) {
    caption_list_free(r->templates, r->template_count);
    memset(r, 0, sizeof *r);
}
