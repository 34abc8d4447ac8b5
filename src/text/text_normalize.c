/* ftfy-like repairs, whitespace_clean and Python's lower-casing on code points. The rules
 * follow ftfy 6.3.1 (ftfy/__init__.py fix_text / fix_and_explain, ftfy/fixes.py,
 * ftfy/chardata.py) and CPython 3.11 (html.unescape, str.lower); the data comes from
 * text_normalize_tables.c, generated from that environment. */
#include "text/text_normalize.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "text/text_normalize_tables.h"

/* ---- code point arrays ---------------------------------------------------------------- */

static int codepoints_reserve(CodePoints *cps, size_t extra) {
    if (cps->len + extra <= cps->cap)
        return 0;
    size_t cap = cps->cap ? cps->cap : 64;
    while (cap < cps->len + extra)
        cap *= 2;
    uint32_t *data = realloc(cps->data, cap * sizeof *data);
    if (!data)
        return -1;
    cps->data = data;
    cps->cap = cap;
    return 0;
}

int codepoints_push(CodePoints *cps, uint32_t c) {
    if (codepoints_reserve(cps, 1) != 0)
        return -1;
    cps->data[cps->len++] = c;
    return 0;
}

int codepoints_append(CodePoints *cps, const uint32_t *c, size_t n) {
    if (n == 0)
        return 0;
    if (codepoints_reserve(cps, n) != 0)
        return -1;
    memcpy(cps->data + cps->len, c, n * sizeof *c);
    cps->len += n;
    return 0;
}

void codepoints_free(CodePoints *cps) {
    free(cps->data);
    memset(cps, 0, sizeof *cps);
}

/* ---- UTF-8 ----------------------------------------------------------------------------- */

/* Length of the valid sequence at s[0..avail), or 0 when it is not valid UTF-8. */
static size_t utf8_sequence(const unsigned char *s, size_t avail, uint32_t *cp) {
    unsigned char b = s[0];
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    size_t len;
    uint32_t c, min;
    if (b >= 0xC2 && b <= 0xDF) {
        len = 2, c = b & 0x1F, min = 0x80;
    } else if (b >= 0xE0 && b <= 0xEF) {
        len = 3, c = b & 0x0F, min = 0x800;
    } else if (b >= 0xF0 && b <= 0xF4) {
        len = 4, c = b & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (avail < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return len;
}

int text_utf8_decode(const char *text, size_t size, CodePoints *out, Error *err) {
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < size;) {
        uint32_t cp;
        size_t len = utf8_sequence(s + i, size - i, &cp);
        if (len == 0)
            return error_set(err, "invalid UTF-8 at byte %zu (0x%02X): prompts must be UTF-8 text",
                             i, s[i]);
        if (codepoints_push(out, cp) != 0)
            return error_set(err, "out of memory decoding text");
        i += len;
    }
    return 0;
}

size_t text_utf8_encode(uint32_t c, unsigned char out[4]) {
    if (c < 0x80) {
        out[0] = (unsigned char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (unsigned char)(0xC0 | (c >> 6));
        out[1] = (unsigned char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (c >> 12));
        out[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | (c >> 18));
    out[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
    out[3] = (unsigned char)(0x80 | (c & 0x3F));
    return 4;
}

int codepoints_append_utf8(CodePoints *cps, const char *utf8) {
    size_t n = strlen(utf8);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t len = utf8_sequence((const unsigned char *)utf8 + i, n - i, &cp);
        if (len == 0 || codepoints_push(cps, cp) != 0)
            return -1;
        i += len;
    }
    return 0;
}

/* ---- table look-ups ---------------------------------------------------------------------- */

static bool in_ranges(const TextRange *r, size_t count, uint32_t c) {
    size_t lo = 0, hi = count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c < r[mid].first)
            hi = mid;
        else if (c > r[mid].last)
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

static const char *char_map_find(const TextCharMap *m, size_t count, uint32_t c) {
    size_t lo = 0, hi = count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c < m[mid].cp)
            hi = mid;
        else if (c > m[mid].cp)
            lo = mid + 1;
        else
            return m[mid].value;
    }
    return NULL;
}

bool text_is_letter(uint32_t c) {
    if (c < 0x80)
        return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
    return in_ranges(text_regex_letter, text_regex_letter_count, c);
}

bool text_is_number(uint32_t c) {
    if (c < 0x80)
        return c >= '0' && c <= '9';
    return in_ranges(text_regex_number, text_regex_number_count, c);
}

bool text_is_other(uint32_t c) {
    return in_ranges(text_regex_other, text_regex_other_count, c);
}

bool text_is_regex_space(uint32_t c) {
    return in_ranges(text_regex_space, text_regex_space_count, c);
}

bool text_is_python_space(uint32_t c) {
    return in_ranges(text_python_space, text_python_space_count, c);
}

static uint32_t simple_lower(uint32_t c) {
    if (c < 0x80)
        return (c >= 'A' && c <= 'Z') ? c + 32 : c;
    size_t lo = 0, hi = text_lower_map_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c < text_lower_map[mid].from)
            hi = mid;
        else if (c > text_lower_map[mid].from)
            lo = mid + 1;
        else
            return text_lower_map[mid].to;
    }
    return c;
}

/* ---- the ftfy fixers, each one pass from `in` to `out` --------------------------------------- */

static bool is_ascii_alnum(uint32_t c) {
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
}

static int hex_value(uint32_t c) {
    if (c >= '0' && c <= '9')
        return (int)(c - '0');
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
        return (int)((c | 0x20) - 'a' + 10);
    return -1;
}

static int entity_compare(const char *name, const uint32_t *body, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char a = (unsigned char)name[i];
        if (a == 0)
            return -1;
        if (a != body[i])
            return a < body[i] ? -1 : 1;
    }
    return name[n] ? 1 : 0;
}

/* ftfy's _unescape_fixup for a matched "&[#]body;": the replacement, or NULL to keep it. A
 * numeric reference follows html.unescape and is kept when the result would hold a ';'. */
static const char *entity_replacement(const uint32_t *body, size_t n, bool numeric, char buf[8]) {
    if (!numeric) {
        size_t lo = 0, hi = text_html_entities_count;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            int cmp = entity_compare(text_html_entities[mid].name, body, n);
            if (cmp > 0)
                hi = mid;
            else if (cmp < 0)
                lo = mid + 1;
            else
                return text_html_entities[mid].value;
        }
        return NULL;
    }
    /* html.unescape converts "&#digits;" and "&#xhex;" only when the digits run to the ';'. */
    bool hex = body[0] == 'x' || body[0] == 'X';
    size_t start = hex ? 1 : 0;
    if (start >= n)
        return NULL;
    uint64_t num = 0;
    for (size_t i = start; i < n; i++) {
        int v = hex ? hex_value(body[i])
                    : (body[i] >= '0' && body[i] <= '9' ? (int)(body[i] - '0') : -1);
        if (v < 0)
            return NULL;
        if (num <= 0x10FFFF)
            num = num * (hex ? 16 : 10) + (uint64_t)v; /* saturates above */
    }
    const char *fixed = num <= 0x10FFFF
                            ? char_map_find(text_html_invalid_charrefs,
                                            text_html_invalid_charrefs_count, (uint32_t)num)
                            : NULL;
    if (fixed)
        return fixed;
    if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF)
        return "\xEF\xBF\xBD";
    for (size_t i = 0; i < text_html_invalid_codepoints_count; i++)
        if (text_html_invalid_codepoints[i] == num)
            return "";
    if (num == ';')
        return NULL;
    unsigned char utf8[4];
    size_t len = text_utf8_encode((uint32_t)num, utf8);
    memcpy(buf, utf8, len);
    buf[len] = 0;
    return buf;
}

/* HTML_ENTITY_RE = &#?[0-9A-Za-z]{1,24}; replaced left to right without overlaps. */
static int fix_html(const uint32_t *in, size_t n, CodePoints *out) {
    for (size_t i = 0; i < n;) {
        if (in[i] == '&') {
            bool numeric = i + 1 < n && in[i + 1] == '#';
            size_t body = i + 1 + (numeric ? 1 : 0), end = body;
            while (end < n && is_ascii_alnum(in[end]))
                end++;
            size_t len = end - body;
            if (len >= 1 && len <= 24 && end < n && in[end] == ';') {
                char buf[8];
                const char *rep = entity_replacement(in + body, len, numeric, buf);
                if (rep) {
                    if (codepoints_append_utf8(out, rep) != 0)
                        return -1;
                } else if (codepoints_append(out, in + i, end + 1 - i) != 0) {
                    return -1;
                }
                i = end + 1;
                continue;
            }
        }
        if (codepoints_push(out, in[i]) != 0)
            return -1;
        i++;
    }
    return 0;
}

/* One pass of the character-wise fixers: C1 controls as sloppy windows-1252, Latin
 * ligatures, character width, curly quotes, in ftfy's order. */
static int fix_characters(const uint32_t *in, size_t n, CodePoints *out) {
    CodePoints a = {0}, b = {0};
    int rc = -1;
    const struct {
        const TextCharMap *map;
        size_t count;
    } maps[] = {{text_c1_windows1252, text_c1_windows1252_count},
                {text_ligatures, text_ligatures_count},
                {text_width_map, text_width_map_count}};
    if (codepoints_append(&a, in, n) != 0)
        goto done;
    for (size_t m = 0; m < sizeof maps / sizeof maps[0]; m++) {
        b.len = 0;
        for (size_t i = 0; i < a.len; i++) {
            const char *rep =
                a.data[i] >= 0x80 ? char_map_find(maps[m].map, maps[m].count, a.data[i]) : NULL;
            if (rep ? codepoints_append_utf8(&b, rep) : codepoints_push(&b, a.data[i]))
                goto done;
        }
        CodePoints t = a;
        a = b;
        b = t;
    }
    for (size_t i = 0; i < a.len; i++) {
        uint32_t c = a.data[i];
        if (c == 0x2BC || (c >= 0x2018 && c <= 0x201B))
            c = '\'';
        else if (c >= 0x201C && c <= 0x201F)
            c = '"';
        if (codepoints_push(out, c) != 0)
            goto done;
    }
    rc = 0;
done:
    codepoints_free(&a);
    codepoints_free(&b);
    return rc;
}

static bool is_removed_control(uint32_t c) {
    return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F ||
           (c >= 0x206A && c <= 0x206F) || c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC);
}

/* Python re's \d in a str pattern: any decimal digit (Nd). */
static bool is_decimal_digit(uint32_t c) {
    if (c < 0x80)
        return c >= '0' && c <= '9';
    return utf8proc_category((utf8proc_int32_t)c) == UTF8PROC_CATEGORY_ND;
}

/* fix_line_breaks, remove_terminal_escapes (ESC [ (\d|;)* [a-zA-Z]) and
 * remove_control_chars, in that order, as one pass: each looks at the previous one's output
 * only through characters the previous one leaves alone. */
static int fix_breaks_and_controls(const uint32_t *in, size_t n, CodePoints *out) {
    CodePoints lines = {0};
    int rc = -1;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = in[i];
        if (c == '\r') {
            if (i + 1 < n && in[i + 1] == '\n')
                i++;
            c = '\n';
        } else if (c == 0x2028 || c == 0x2029 || c == 0x85) {
            c = '\n';
        }
        if (codepoints_push(&lines, c) != 0)
            goto done;
    }
    for (size_t i = 0; i < lines.len; i++) {
        if (lines.data[i] == 0x1B && i + 1 < lines.len && lines.data[i + 1] == '[') {
            size_t j = i + 2;
            while (j < lines.len && (lines.data[j] == ';' || is_decimal_digit(lines.data[j])))
                j++;
            if (j < lines.len && lines.data[j] < 0x80 && (lines.data[j] | 0x20) >= 'a' &&
                (lines.data[j] | 0x20) <= 'z') {
                i = j;
                continue;
            }
        }
        if (!is_removed_control(lines.data[i]) && codepoints_push(out, lines.data[i]) != 0)
            goto done;
    }
    rc = 0;
done:
    codepoints_free(&lines);
    return rc;
}

static int normalize_nfc(const uint32_t *in, size_t n, CodePoints *out) {
    bool trivial = true; /* below U+0300 nothing composes or reorders */
    for (size_t i = 0; i < n && trivial; i++)
        trivial = in[i] < 0x300;
    if (trivial)
        return codepoints_append(out, in, n);
    unsigned char *utf8 = malloc(n * 4 + 1);
    if (!utf8)
        return -1;
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += text_utf8_encode(in[i], utf8 + len);
    utf8proc_uint8_t *nfc = NULL;
    utf8proc_ssize_t got =
        utf8proc_map(utf8, (utf8proc_ssize_t)len, &nfc, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    free(utf8);
    if (got < 0)
        return -1;
    int rc = 0;
    for (utf8proc_ssize_t i = 0; i < got && rc == 0;) {
        uint32_t cp;
        size_t l = utf8_sequence(nfc + i, (size_t)(got - i), &cp);
        if (l == 0)
            rc = -1;
        else
            rc = codepoints_push(out, cp), i += (utf8proc_ssize_t)l;
    }
    free(nfc);
    return rc;
}

/* fix_and_explain on one line: every fixer in order, repeated until nothing changes. */
static int fix_segment(const uint32_t *in, size_t n, bool unescape_html, CodePoints *out) {
    CodePoints cur = {0}, next = {0};
    int rc = -1;
    if (codepoints_append(&cur, in, n) != 0)
        goto done;
    for (int pass = 0; pass < 1000; pass++) {
        CodePoints orig = {0};
        if (codepoints_append(&orig, cur.data, cur.len) != 0)
            goto done;
        int step_rc = 0;
        if (unescape_html) {
            next.len = 0;
            step_rc = fix_html(cur.data, cur.len, &next);
            CodePoints t = cur;
            cur = next, next = t;
        }
        if (step_rc == 0) {
            next.len = 0;
            step_rc = fix_characters(cur.data, cur.len, &next);
            CodePoints t = cur;
            cur = next, next = t;
        }
        if (step_rc == 0) {
            next.len = 0;
            step_rc = fix_breaks_and_controls(cur.data, cur.len, &next);
            CodePoints t = cur;
            cur = next, next = t;
        }
        if (step_rc == 0) {
            next.len = 0;
            step_rc = normalize_nfc(cur.data, cur.len, &next);
            CodePoints t = cur;
            cur = next, next = t;
        }
        bool same = step_rc == 0 && orig.len == cur.len &&
                    (cur.len == 0 || memcmp(orig.data, cur.data, cur.len * sizeof *cur.data) == 0);
        codepoints_free(&orig);
        if (step_rc != 0)
            goto done;
        if (same)
            break;
    }
    rc = codepoints_append(out, cur.data, cur.len);
done:
    codepoints_free(&cur);
    codepoints_free(&next);
    return rc;
}

int text_fix(const uint32_t *in, size_t n, CodePoints *out, Error *err) {
    /* fix_text works line by line (each segment keeps its '\n'); unescape_html="auto" turns
     * off for the first line holding a '<' and stays off for the rest of the text. */
    bool unescape_html = true;
    for (size_t pos = 0; pos < n;) {
        size_t end = pos;
        while (end < n && in[end] != '\n')
            end++;
        if (end < n)
            end++;
        for (size_t i = pos; i < end && unescape_html; i++)
            if (in[i] == '<')
                unescape_html = false;
        if (fix_segment(in + pos, end - pos, unescape_html, out) != 0)
            return error_set(err, "out of memory normalising text");
        pos = end;
    }
    return 0;
}

/* CPython's final-sigma context: a cased letter before (skipping case-ignorables) and none
 * after. Only non-ignorable characters are ever tested for being cased. */
static bool final_sigma(const uint32_t *s, size_t n, size_t i) {
    size_t j = i;
    while (j > 0 && in_ranges(text_case_ignorable, text_case_ignorable_count, s[j - 1]))
        j--;
    if (j == 0 || !in_ranges(text_cased, text_cased_count, s[j - 1]))
        return false;
    j = i + 1;
    while (j < n && in_ranges(text_case_ignorable, text_case_ignorable_count, s[j]))
        j++;
    return j == n || !in_ranges(text_cased, text_cased_count, s[j]);
}

int text_clean_lower(const uint32_t *in, size_t n, CodePoints *out, Error *err) {
    CodePoints spaced = {0};
    for (size_t i = 0; i < n;) {
        int rc;
        if (text_is_regex_space(in[i])) {
            while (i < n && text_is_regex_space(in[i]))
                i++;
            rc = codepoints_push(&spaced, ' ');
        } else {
            rc = codepoints_push(&spaced, in[i++]);
        }
        if (rc != 0)
            goto oom;
    }
    size_t first = 0, last = spaced.len;
    while (first < last && text_is_python_space(spaced.data[first]))
        first++;
    while (last > first && text_is_python_space(spaced.data[last - 1]))
        last--;
    for (size_t i = first; i < last; i++) {
        uint32_t c = spaced.data[i];
        int rc;
        if (c == 0x130) { /* the one multi-character lower-case mapping */
            rc = codepoints_push(out, 'i') || codepoints_push(out, 0x307);
        } else if (c == 0x3A3) {
            bool fin = final_sigma(spaced.data + first, last - first, i - first);
            rc = codepoints_push(out, fin ? 0x3C2 : 0x3C3);
        } else {
            rc = codepoints_push(out, simple_lower(c));
        }
        if (rc != 0)
            goto oom;
    }
    codepoints_free(&spaced);
    return 0;
oom:
    codepoints_free(&spaced);
    return error_set(err, "out of memory normalising text");
}
