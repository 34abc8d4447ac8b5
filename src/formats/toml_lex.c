/* TOML characters: positions for messages, UTF-8 and control-character rules, whitespace and
 * comments, the four string forms with every escape, and (dotted) keys. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/toml_internal.h"

/* ------------------------------------------------------------------------------------------
 * Buffers and keys */

int toml_buf_push(TomlBuf *b, const char *bytes, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 32;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *data = realloc(b->data, cap);
        if (!data)
            return -1;
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, bytes, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

char *toml_buf_take(TomlBuf *b, size_t *len) {
    if (!b->data && toml_buf_push(b, "", 0) != 0)
        return NULL;
    char *data = b->data;
    *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return data;
}

void toml_buf_free(TomlBuf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void toml_key_free(TomlKey *key) {
    for (size_t i = 0; i < key->count; i++)
        free(key->parts[i].text);
    free(key->parts);
    key->parts = NULL;
    key->count = key->cap = 0;
}

static bool is_bare_key_char(int c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

void toml_render_key_text(const char *text, size_t len, char *buf, size_t size) {
    if (size == 0)
        return;
    bool bare = len > 0;
    for (size_t i = 0; i < len && bare; i++)
        bare = is_bare_key_char((unsigned char)text[i]);
    size_t o = 0;
    if (!bare && o + 1 < size)
        buf[o++] = '"';
    for (size_t i = 0; i < len && o + 1 < size; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') {
            char esc[8];
            if (c == '"' || c == '\\')
                snprintf(esc, sizeof esc, "\\%c", c);
            else
                snprintf(esc, sizeof esc, "\\u%04X", c);
            size_t n = strlen(esc);
            if (o + n >= size)
                break;
            memcpy(buf + o, esc, n);
            o += n;
        } else {
            buf[o++] = (char)c;
        }
    }
    if (!bare && o + 1 < size)
        buf[o++] = '"';
    buf[o] = '\0';
}

void toml_key_render(const TomlKey *key, size_t n, char *buf, size_t size) {
    size_t o = 0;
    if (size == 0)
        return;
    buf[0] = '\0';
    for (size_t i = 0; i < n && i < key->count && o + 1 < size; i++) {
        if (i > 0)
            buf[o++] = '.';
        toml_render_key_text(key->parts[i].text, key->parts[i].len, buf + o, size - o);
        o += strlen(buf + o);
    }
    buf[o < size ? o : size - 1] = '\0';
}

/* ------------------------------------------------------------------------------------------
 * Positions and messages */

static bool counts_as_column(const TomlParser *p, size_t i) {
    /* columns count characters, not UTF-8 continuation bytes, and not the byte order mark */
    return ((unsigned char)p->text[i] & 0xC0) != 0x80 && i >= p->bom_len;
}

int toml_index_lines(TomlParser *p) {
    size_t count = 1;
    for (size_t i = 0; i < p->len; i++)
        count += p->text[i] == '\n';
    p->line_starts = malloc(count * sizeof *p->line_starts);
    if (!p->line_starts)
        return toml_fail(p, 0, "out of memory (%zu lines)", count);
    p->line_starts[0] = 0;
    p->line_count = 1;
    for (size_t i = 0; i < p->len; i++)
        if (p->text[i] == '\n')
            p->line_starts[p->line_count++] = i + 1;
    return 0;
}

void toml_line_col(TomlParser *p, size_t offset, int *line, int *column) {
    if (offset > p->len)
        offset = p->len;
    if (!p->line_starts) { /* only before the index exists: a UTF-8 error, reported once */
        int l = 1, c = 1;
        for (size_t i = 0; i < offset; i++) {
            if (p->text[i] == '\n')
                l++, c = 1;
            else if (counts_as_column(p, i))
                c++;
        }
        *line = l;
        *column = c;
        return;
    }
    size_t k = p->cache_line;
    bool same_line = p->cache_valid && offset >= p->line_starts[k] &&
                     (k + 1 == p->line_count || offset < p->line_starts[k + 1]);
    if (!same_line) {
        size_t lo = 0, hi = p->line_count; /* last line start <= offset */
        while (hi - lo > 1) {
            size_t mid = lo + (hi - lo) / 2;
            if (p->line_starts[mid] <= offset)
                lo = mid;
            else
                hi = mid;
        }
        k = lo;
        p->cache_line = k;
        p->cache_offset = p->line_starts[k];
        p->cache_column = 1;
        p->cache_valid = true;
    }
    /* Walk from the cached place on this line, forwards or backwards. */
    for (size_t i = p->cache_offset; i < offset; i++)
        p->cache_column += counts_as_column(p, i);
    for (size_t i = offset; i < p->cache_offset; i++)
        p->cache_column -= counts_as_column(p, i);
    p->cache_offset = offset;
    *line = (int)(k + 1);
    *column = p->cache_column;
}

int toml_fail(TomlParser *p, size_t offset, const char *fmt, ...) {
    char reason[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    int line, column;
    toml_line_col(p, offset, &line, &column);
    return error_set(p->err, "%s:%d:%d: %s", p->name, line, column, reason);
}

int toml_peek(const TomlParser *p, size_t ahead) {
    size_t i = p->pos + ahead;
    return i < p->len ? (unsigned char)p->text[i] : -1;
}

const char *toml_describe(const TomlParser *p, size_t offset, char *buf, size_t size) {
    if (offset >= p->len) {
        snprintf(buf, size, "end of file");
        return buf;
    }
    unsigned char c = (unsigned char)p->text[offset];
    if (c == '\n' || (c == '\r' && offset + 1 < p->len && p->text[offset + 1] == '\n')) {
        snprintf(buf, size, "end of line");
    } else if (c < 0x20 || c == 0x7f) {
        snprintf(buf, size, "control character U+%04X", c);
    } else if (c < 0x80) {
        snprintf(buf, size, "'%c'", c);
    } else {
        size_t n = 1;
        while (offset + n < p->len && n < 4 && ((unsigned char)p->text[offset + n] & 0xC0) == 0x80)
            n++;
        snprintf(buf, size, "'%.*s'", (int)n, p->text + offset);
    }
    return buf;
}

int toml_check_utf8(TomlParser *p) {
    const unsigned char *s = (const unsigned char *)p->text;
    size_t n = p->len;
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        unsigned cp, min;
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1, cp = c & 0x1F, min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2, cp = c & 0x0F, min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return toml_fail(p, i, "invalid UTF-8: byte 0x%02X cannot start a character", c);
        }
        for (size_t k = 1; k <= need; k++) {
            if (i + k >= n || (s[i + k] & 0xC0) != 0x80)
                return toml_fail(p, i, "invalid UTF-8: truncated %zu-byte sequence", need + 1);
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min)
            return toml_fail(p, i, "invalid UTF-8: overlong encoding of U+%04X", cp);
        if (cp >= 0xD800 && cp <= 0xDFFF)
            return toml_fail(p, i, "invalid UTF-8: encoded surrogate U+%04X", cp);
        if (cp > 0x10FFFF)
            return toml_fail(p, i, "invalid UTF-8: code point beyond U+10FFFF");
        i += need + 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Whitespace, newlines, comments */

static bool is_control(int c) {
    return (c >= 0 && c < 0x20 && c != '\t') || c == 0x7f;
}

void toml_skip_ws(TomlParser *p) {
    while (p->pos < p->len && (p->text[p->pos] == ' ' || p->text[p->pos] == '\t'))
        p->pos++;
}

bool toml_at_newline(const TomlParser *p) {
    int c = toml_peek(p, 0);
    return c == '\n' || (c == '\r' && toml_peek(p, 1) == '\n');
}

static void consume_newline(TomlParser *p) {
    p->pos += toml_peek(p, 0) == '\r' ? 2 : 1;
}

int toml_skip_comment(TomlParser *p) {
    p->pos++; /* '#' */
    for (;;) {
        int c = toml_peek(p, 0);
        if (c < 0 || toml_at_newline(p))
            return 0;
        if (is_control(c))
            return toml_fail(p, p->pos, "control character U+%04X is not allowed in a comment", c);
        p->pos++;
    }
}

int toml_skip_ws_comments_newlines(TomlParser *p) {
    for (;;) {
        toml_skip_ws(p);
        if (toml_peek(p, 0) == '#') {
            if (toml_skip_comment(p) != 0)
                return -1;
        } else if (toml_at_newline(p)) {
            consume_newline(p);
        } else {
            return 0;
        }
    }
}

/* ------------------------------------------------------------------------------------------
 * Strings */

static int hex_value(int c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int push_utf8(TomlBuf *b, unsigned long cp) {
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp, n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6)), u[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12)), u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F)), n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18)), u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), u[3] = (char)(0x80 | (cp & 0x3F)), n = 4;
    }
    return toml_buf_push(b, u, n);
}

static int out_of_memory(TomlParser *p) {
    return toml_fail(p, p->pos, "out of memory");
}

/* At the backslash of a basic string. */
static int parse_escape(TomlParser *p, bool multiline, TomlBuf *b) {
    size_t start = p->pos;
    p->pos++;
    int e = toml_peek(p, 0);
    const char *simple = NULL;
    switch (e) {
    case 'b':
        simple = "\b";
        break;
    case 't':
        simple = "\t";
        break;
    case 'n':
        simple = "\n";
        break;
    case 'f':
        simple = "\f";
        break;
    case 'r':
        simple = "\r";
        break;
    case '"':
        simple = "\"";
        break;
    case '\\':
        simple = "\\";
        break;
    default:
        break;
    }
    if (simple) {
        p->pos++;
        return toml_buf_push(b, simple, 1) == 0 ? 0 : out_of_memory(p);
    }
    if (e == 'u' || e == 'U') {
        size_t digits = e == 'u' ? 4 : 8;
        unsigned long cp = 0;
        for (size_t k = 1; k <= digits; k++) {
            int h = hex_value(toml_peek(p, k));
            if (h < 0) {
                char found[32];
                return toml_fail(p, p->pos + k,
                                 "escape \\%c needs %zu hexadecimal digits, found %s", e, digits,
                                 toml_describe(p, p->pos + k, found, sizeof found));
            }
            cp = cp * 16 + (unsigned long)h;
        }
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return toml_fail(p, start, "escape \\%c%.*s is not a Unicode scalar value", e,
                             (int)digits, p->text + p->pos + 1);
        p->pos += 1 + digits;
        return push_utf8(b, cp) == 0 ? 0 : out_of_memory(p);
    }
    if (multiline && (e == ' ' || e == '\t' || e == '\n' || e == '\r')) {
        /* Line-ending backslash: only whitespace may sit between it and the newline; then all
         * whitespace and newlines up to the next other character are dropped. */
        toml_skip_ws(p);
        if (!toml_at_newline(p)) {
            char found[32];
            return toml_fail(p, p->pos,
                             "a backslash followed by whitespace must end the line, found %s",
                             toml_describe(p, p->pos, found, sizeof found));
        }
        for (;;) {
            toml_skip_ws(p);
            if (!toml_at_newline(p))
                return 0;
            consume_newline(p);
        }
    }
    char found[32];
    return toml_fail(p, start,
                     "invalid escape sequence: expected one of \\b \\t \\n \\f \\r \\\" \\\\ "
                     "\\uXXXX \\UXXXXXXXX after the backslash, found %s",
                     toml_describe(p, p->pos, found, sizeof found));
}

/* The closing run of quotes of a multi-line string: one to two quotes may end the content
 * right before the three closing ones. Returns 1 when the string ended, 0 to go on. */
static int multiline_quotes(TomlParser *p, char q, TomlBuf *b) {
    size_t n = 0;
    while (toml_peek(p, n) == q)
        n++;
    if (n < 3) {
        p->pos += n;
        return toml_buf_push(b, p->text + p->pos - n, n) == 0 ? 0 : out_of_memory(p);
    }
    if (n > 5)
        return toml_fail(p, p->pos + 5,
                         "%zu quotes in a row: at most two may precede the closing three", n);
    p->pos += n;
    return toml_buf_push(b, p->text + p->pos - n, n - 3) == 0 ? 1 : out_of_memory(p);
}

int toml_parse_string(TomlParser *p, char **out, size_t *out_len) {
    size_t start = p->pos;
    char q = p->text[p->pos];
    bool basic = q == '"';
    bool multiline = toml_peek(p, 1) == q && toml_peek(p, 2) == q;
    const char *kind = multiline ? (basic ? "multi-line basic string" : "multi-line literal string")
                                 : (basic ? "basic string" : "literal string");
    p->pos += multiline ? 3 : 1;
    if (multiline && toml_at_newline(p))
        consume_newline(p); /* a newline right after the opening quotes is not content */
    TomlBuf b = {0};
    for (;;) {
        int c = toml_peek(p, 0);
        if (c < 0 || (!multiline && (c == '\n' || c == '\r'))) {
            char found[32];
            int line, column;
            toml_describe(p, p->pos, found, sizeof found);
            toml_line_col(p, start, &line, &column);
            toml_buf_free(&b);
            return toml_fail(
                p, p->pos,
                "unterminated %s (opened at line %d, column %d): expected closing %s, found %s",
                kind, line, column,
                multiline ? (basic ? "'\"\"\"'" : "\"'''\"") : (basic ? "'\"'" : "\"'\""), found);
        }
        int rc = 0;
        if (c == q) {
            if (!multiline) {
                p->pos++;
                break;
            }
            rc = multiline_quotes(p, q, &b);
            if (rc == 1)
                break;
        } else if (basic && c == '\\') {
            rc = parse_escape(p, multiline, &b);
        } else if (toml_at_newline(p)) {
            /* CRLF inside a multi-line string becomes LF, as Python's tomllib does. */
            consume_newline(p);
            rc = toml_buf_push(&b, "\n", 1) == 0 ? 0 : out_of_memory(p);
        } else if (is_control(c)) {
            rc = toml_fail(p, p->pos, "control character U+%04X is not allowed in a %s%s", c, kind,
                           basic ? " (write it as an escape)" : "");
        } else {
            p->pos++;
            rc = toml_buf_push(&b, p->text + p->pos - 1, 1) == 0 ? 0 : out_of_memory(p);
        }
        if (rc < 0) {
            toml_buf_free(&b);
            return -1;
        }
    }
    *out = toml_buf_take(&b, out_len);
    return *out ? 0 : out_of_memory(p);
}

/* ------------------------------------------------------------------------------------------
 * Keys */

int toml_parse_key(TomlParser *p, TomlKey *key) {
    for (;;) {
        size_t offset = p->pos;
        int c = toml_peek(p, 0);
        char *text = NULL;
        size_t len = 0;
        if (c == '"' || c == '\'') {
            if (toml_peek(p, 1) == c && toml_peek(p, 2) == c)
                return toml_fail(p, offset, "a multi-line string cannot be a key");
            if (toml_parse_string(p, &text, &len) != 0)
                return -1;
        } else if (c >= 0 && is_bare_key_char(c)) {
            while (p->pos < p->len && is_bare_key_char((unsigned char)p->text[p->pos]))
                p->pos++;
            len = p->pos - offset;
            text = malloc(len + 1);
            if (!text)
                return out_of_memory(p);
            memcpy(text, p->text + offset, len);
            text[len] = '\0';
        } else {
            char found[32];
            return toml_fail(p, offset, "expected a key (bare A-Za-z0-9_- or quoted), found %s",
                             toml_describe(p, offset, found, sizeof found));
        }
        if (key->count == key->cap) {
            size_t cap = key->cap ? key->cap * 2 : 4;
            TomlKeyPart *parts = realloc(key->parts, cap * sizeof *parts);
            if (!parts) {
                free(text);
                return out_of_memory(p);
            }
            key->parts = parts;
            key->cap = cap;
        }
        key->parts[key->count++] = (TomlKeyPart){text, len, offset};
        if (key->count > TOML_MAX_DEPTH)
            return toml_fail(p, offset, "dotted key has more than %d parts", TOML_MAX_DEPTH);
        toml_skip_ws(p);
        if (toml_peek(p, 0) != '.')
            return 0;
        p->pos++;
        toml_skip_ws(p);
    }
}
