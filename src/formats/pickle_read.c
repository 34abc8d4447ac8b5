/* The restricted unpickler: a stack machine over pickle opcodes (protocols 0-5) that builds
 * PickleValues and never calls anything. See pickle.h for what it accepts. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/pickle.h"
#include "formats/pickle_internal.h"

/* Bounds for hostile input; real checkpoints stay far below (a 2.5k-tensor SDXL pickle makes
 * about 60k values and a stack of a few thousand). */
#define MAX_VALUES (1u << 22)
#define MAX_STACK  (1u << 22)
#define MAX_MARKS  (1u << 16)
#define MAX_LINE   (1u << 16)

int reader_fail(Reader *r, const char *fmt, ...) {
    char msg[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return error_set(r->err, "%s byte %zu: %s", r->name, r->op_pos, msg);
}

int pickle_check_fail(PickleCheckState *st, const char *fmt, ...) {
    char msg[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return error_set(st->err, "%s: %s", st->name, msg);
}

/* ------------------------------------------------------------------------------------------
 * Input */

int reader_need(Reader *r, size_t n, const char *what) {
    if (n > r->size - r->pos)
        return reader_fail(r, "truncated: %s needs %zu bytes, %zu left (the file is cut short)",
                           what, n, r->size - r->pos);
    return 0;
}

uint64_t reader_le(Reader *r, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)r->data[r->pos + i] << (8 * i);
    r->pos += (size_t)n;
    return v;
}

/* A text argument: the bytes up to the next newline (excluded). */
int reader_line(Reader *r, const char **line, size_t *len) {
    const unsigned char *start = r->data + r->pos;
    size_t left = r->size - r->pos, limit = left < MAX_LINE ? left : MAX_LINE;
    const unsigned char *nl = memchr(start, '\n', limit);
    if (!nl)
        return reader_fail(r, "truncated: text argument without its newline");
    *line = (const char *)start;
    *len = (size_t)(nl - start);
    r->pos += *len + 1;
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Values, stack, marks, memo */

PickleValue *reader_new(Reader *r, PickleKind kind) {
    if (r->doc->value_count >= MAX_VALUES) {
        reader_fail(r, "more than %u values: not a torch state dict", MAX_VALUES);
        return NULL;
    }
    PickleValue *v = pickle_new(r->doc, kind);
    if (!v)
        reader_fail(r, "out of memory");
    return v;
}

int reader_push(Reader *r, PickleValue *v) {
    if (!v)
        return -1;
    if (r->sp == r->stack_capacity) {
        if (r->sp >= MAX_STACK)
            return reader_fail(r, "stack deeper than %u entries", MAX_STACK);
        size_t cap = r->stack_capacity ? r->stack_capacity * 2 : 64;
        PickleValue **grown = realloc(r->stack, cap * sizeof *grown);
        if (!grown)
            return reader_fail(r, "out of memory");
        r->stack = grown;
        r->stack_capacity = cap;
    }
    r->stack[r->sp++] = v;
    return 0;
}

size_t reader_fence(const Reader *r) {
    return r->mark_count ? r->marks[r->mark_count - 1] : 0;
}

int reader_pop(Reader *r, PickleValue **out, const char *op) {
    if (r->sp <= reader_fence(r))
        return reader_fail(r, "%s: stack underflow (nothing to take%s)", op,
                           r->mark_count ? " above the mark" : "");
    *out = r->stack[--r->sp];
    return 0;
}

int reader_peek(Reader *r, PickleValue **out, const char *op) {
    if (r->sp <= reader_fence(r))
        return reader_fail(r, "%s: stack underflow (nothing to take%s)", op,
                           r->mark_count ? " above the mark" : "");
    *out = r->stack[r->sp - 1];
    return 0;
}

static int push_mark(Reader *r) {
    if (r->mark_count == r->mark_capacity) {
        if (r->mark_count >= MAX_MARKS)
            return reader_fail(r, "more than %u open marks", MAX_MARKS);
        size_t cap = r->mark_capacity ? r->mark_capacity * 2 : 16;
        size_t *grown = realloc(r->marks, cap * sizeof *grown);
        if (!grown)
            return reader_fail(r, "out of memory");
        r->marks = grown;
        r->mark_capacity = cap;
    }
    r->marks[r->mark_count++] = r->sp;
    return 0;
}

/* Items above the last mark are stack[*start .. r->sp); the mark is removed. */
int reader_pop_mark(Reader *r, size_t *start, const char *op) {
    if (!r->mark_count)
        return reader_fail(r, "%s without a MARK before it", op);
    *start = r->marks[--r->mark_count];
    return 0;
}

static int memo_put(Reader *r, uint64_t key, PickleValue *v) {
    Memo *m = &r->memo;
    if (key > UINT32_MAX)
        return reader_fail(r, "memo slot %llu beyond 32 bits", (unsigned long long)key);
    if ((m->count + 1) * 2 > m->capacity) {
        size_t cap = m->capacity ? m->capacity * 2 : 64;
        uint32_t *keys = calloc(cap, sizeof *keys);
        PickleValue **vals = calloc(cap, sizeof *vals);
        if (!keys || !vals) {
            free(keys);
            free(vals);
            return reader_fail(r, "out of memory");
        }
        for (size_t i = 0; i < m->capacity; i++) {
            if (!m->values[i])
                continue;
            size_t s = (m->keys[i] * 2654435761u) & (cap - 1);
            while (vals[s])
                s = (s + 1) & (cap - 1);
            keys[s] = m->keys[i];
            vals[s] = m->values[i];
        }
        free(m->keys);
        free(m->values);
        m->keys = keys;
        m->values = vals;
        m->capacity = cap;
    }
    size_t s = ((uint32_t)key * 2654435761u) & (m->capacity - 1);
    while (m->values[s] && m->keys[s] != key)
        s = (s + 1) & (m->capacity - 1);
    if (!m->values[s])
        m->count++;
    m->keys[s] = (uint32_t)key;
    m->values[s] = v;
    return 0;
}

int reader_memo_get(Reader *r, uint64_t key) {
    const Memo *m = &r->memo;
    if (key <= UINT32_MAX && m->capacity) {
        size_t s = ((uint32_t)key * 2654435761u) & (m->capacity - 1);
        while (m->values[s]) {
            if (m->keys[s] == key)
                return reader_push(r, m->values[s]);
            s = (s + 1) & (m->capacity - 1);
        }
    }
    return reader_fail(r, "memo slot %llu was never stored (corrupt pickle)",
                       (unsigned long long)key);
}

int reader_put_top(Reader *r, uint64_t key) {
    PickleValue *top = NULL;
    if (reader_peek(r, &top, "PUT") != 0)
        return -1;
    return memo_put(r, key, top);
}

/* ------------------------------------------------------------------------------------------
 * Scalars and strings */

static PickleValue *int_value(Reader *r, int64_t v, bool big) {
    PickleValue *p = reader_new(r, PICKLE_INT);
    if (p) {
        p->integer = big ? 0 : v;
        p->big_integer = big;
    }
    return p;
}

/* LONG1/LONG4: little-endian two's complement of n bytes. */
static int push_long(Reader *r, uint64_t n) {
    if (reader_need(r, n, "LONG") != 0)
        return -1;
    const unsigned char *p = r->data + r->pos;
    r->pos += n;
    if (n == 0)
        return reader_push(r, int_value(r, 0, false));
    bool negative = p[n - 1] & 0x80;
    /* Fits in 64 bits when every byte above the eighth is sign extension. */
    for (uint64_t i = 8; i < n; i++)
        if (p[i] != (negative ? 0xFF : 0x00))
            return reader_push(r, int_value(r, 0, true));
    uint64_t u = negative ? UINT64_MAX : 0;
    for (uint64_t i = 0; i < n && i < 8; i++) {
        u &= ~((uint64_t)0xFF << (8 * i));
        u |= (uint64_t)p[i] << (8 * i);
    }
    if (n > 8 && ((u >> 63) != 0) != negative)
        return reader_push(r, int_value(r, 0, true));
    int64_t v;
    memcpy(&v, &u, sizeof v);
    return reader_push(r, int_value(r, v, false));
}

/* INT and LONG (text): decimal, LONG with a trailing 'L'; INT "01"/"00" are True/False. */
static int push_text_int(Reader *r, bool is_long) {
    const char *line;
    size_t len;
    if (reader_line(r, &line, &len) != 0)
        return -1;
    if (!is_long && len == 2 && line[0] == '0' && (line[1] == '0' || line[1] == '1')) {
        PickleValue *b = reader_new(r, PICKLE_BOOL);
        if (b)
            b->boolean = line[1] == '1';
        return reader_push(r, b);
    }
    char buf[64];
    if (is_long && len && line[len - 1] == 'L')
        len--;
    size_t digits = len - (len && (line[0] == '-' || line[0] == '+'));
    if (digits == 0 || digits > 4000)
        return reader_fail(r, "bad integer literal");
    for (size_t i = len - digits; i < len; i++)
        if (line[i] < '0' || line[i] > '9')
            return reader_fail(r, "bad integer literal");
    if (len >= sizeof buf)
        return reader_push(r, int_value(r, 0, true));
    memcpy(buf, line, len);
    buf[len] = '\0';
    errno = 0;
    long long v = strtoll(buf, NULL, 10);
    return reader_push(r, int_value(r, v, errno == ERANGE));
}

static int push_text_float(Reader *r) {
    const char *line;
    size_t len;
    if (reader_line(r, &line, &len) != 0)
        return -1;
    char buf[128];
    if (len == 0 || len >= sizeof buf)
        return reader_fail(r, "bad float literal");
    memcpy(buf, line, len);
    buf[len] = '\0';
    char *end;
    double d = strtod(buf, &end);
    if (*end)
        return reader_fail(r, "bad float literal");
    PickleValue *f = reader_new(r, PICKLE_FLOAT);
    if (f)
        f->real = d;
    return reader_push(r, f);
}

PickleValue *reader_bytes(Reader *r, PickleKind kind, const void *src, size_t len) {
    char *copy = malloc(len + 1);
    if (!copy) {
        reader_fail(r, "out of memory for a %zu-byte string", len);
        return NULL;
    }
    memcpy(copy, src, len);
    copy[len] = '\0';
    PickleValue *v = reader_new(r, kind);
    if (!v) {
        free(copy);
        return NULL;
    }
    v->data = copy;
    v->len = len;
    return v;
}

/* A length-prefixed string: the length is checked against the input before anything is
 * allocated, so a length field of 2^60 is an error, not a malloc. */
static int push_counted(Reader *r, PickleKind kind, int length_bytes, const char *op) {
    if (reader_need(r, (size_t)length_bytes, op) != 0)
        return -1;
    uint64_t n = reader_le(r, length_bytes);
    if (n > r->size - r->pos)
        return reader_fail(r, "%s of %llu bytes runs past the end of the input (%zu bytes left)",
                           op, (unsigned long long)n, r->size - r->pos);
    PickleValue *v = reader_bytes(r, kind, r->data + r->pos, (size_t)n);
    r->pos += (size_t)n;
    return reader_push(r, v);
}

static void utf8_put(char *out, size_t *n, uint32_t cp) {
    if (cp < 0x80) {
        out[(*n)++] = (char)cp;
    } else if (cp < 0x800) {
        out[(*n)++] = (char)(0xC0 | (cp >> 6));
        out[(*n)++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out[(*n)++] = (char)(0xE0 | (cp >> 12));
        out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[(*n)++] = (char)(0x80 | (cp & 0x3F));
    } else {
        out[(*n)++] = (char)(0xF0 | (cp >> 18));
        out[(*n)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[(*n)++] = (char)(0x80 | (cp & 0x3F));
    }
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* STRING ('quoted' Python repr) and UNICODE (raw-unicode-escape) text arguments. */
static int push_text_string(Reader *r, bool unicode) {
    const char *line;
    size_t len;
    if (reader_line(r, &line, &len) != 0)
        return -1;
    if (!unicode) {
        if (len < 2 || (line[0] != '\'' && line[0] != '"') || line[len - 1] != line[0])
            return reader_fail(r, "STRING argument is not quoted");
        line++;
        len -= 2;
    }
    char *out = malloc(len * 4 + 1);
    if (!out)
        return reader_fail(r, "out of memory");
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c != '\\' || i + 1 == len) {
            if (unicode)
                utf8_put(out, &n, c); /* latin-1 bytes are code points */
            else
                out[n++] = (char)c;
            continue;
        }
        char e = line[++i];
        int digits = unicode ? (e == 'u' ? 4 : e == 'U' ? 8 : 0) : (e == 'x' ? 2 : 0);
        if (unicode && !digits) {
            utf8_put(out, &n, '\\');
            i--;
            continue;
        }
        if (digits) {
            uint32_t cp = 0;
            if ((size_t)digits > len - 1 - i) {
                free(out);
                return reader_fail(r, "truncated escape in a text string");
            }
            for (int k = 1; k <= digits; k++) {
                int h = hex_value(line[i + (size_t)k]);
                if (h < 0) {
                    free(out);
                    return reader_fail(r, "bad escape in a text string");
                }
                cp = cp * 16 + (uint32_t)h;
            }
            i += (size_t)digits;
            if (unicode && cp > 0x10FFFF) {
                free(out);
                return reader_fail(r, "bad escape in a text string");
            }
            if (unicode)
                utf8_put(out, &n, cp);
            else
                out[n++] = (char)cp;
            continue;
        }
        static const char from[] = "\\'\"ntr0", to[] = "\\'\"\n\t\r\0";
        const char *hit = e ? strchr(from, e) : NULL;
        if (!hit) {
            free(out);
            return reader_fail(r, "unsupported escape '\\%c' in a text string", e);
        }
        out[n++] = to[hit - from];
    }
    PickleValue *v = reader_bytes(r, PICKLE_STR, out, n);
    free(out);
    return reader_push(r, v);
}

/* ------------------------------------------------------------------------------------------
 * Containers */

int reader_push_sequence(Reader *r, PickleKind kind, size_t start) {
    PickleValue *v = reader_new(r, kind);
    if (!v)
        return -1;
    size_t n = r->sp - start;
    if (n && (v->items = malloc(n * sizeof *v->items)) == NULL)
        return reader_fail(r, "out of memory");
    if (n)
        memcpy(v->items, r->stack + start, n * sizeof *v->items);
    v->count = v->capacity = n;
    r->sp = start;
    return reader_push(r, v);
}

static int tuple_of_top(Reader *r, size_t n) {
    if (r->sp - reader_fence(r) < n)
        return reader_fail(r, "TUPLE%zu: stack underflow", n);
    return reader_push_sequence(r, PICKLE_TUPLE, r->sp - n);
}

int reader_append_items(Reader *r, PickleValue *list, size_t start, const char *op) {
    if (list->kind != PICKLE_LIST)
        return reader_fail(r, "%s on a %s (only lists are supported)", op, pickle_kind_name(list));
    for (size_t i = start; i < r->sp; i++)
        if (pickle_append(list, r->stack[i]) != 0)
            return reader_fail(r, "out of memory");
    r->sp = start;
    return 0;
}

static int set_items(Reader *r, PickleValue *dict, size_t start, const char *op) {
    if (dict->kind != PICKLE_DICT)
        return reader_fail(r, "%s on a %s (only dicts are supported)", op, pickle_kind_name(dict));
    if ((r->sp - start) % 2)
        return reader_fail(r, "%s with an odd number of items", op);
    for (size_t i = start; i < r->sp; i += 2) {
        if (!pickle_is_hashable(r->stack[i], 0))
            return reader_fail(r, "%s: a %s cannot be a dict key", op,
                               pickle_kind_name(r->stack[i]));
        if (pickle_dict_append(dict, r->stack[i], r->stack[i + 1]) != 0)
            return reader_fail(r, "out of memory");
    }
    r->sp = start;
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * The interpreter */

static int step(Reader *r, unsigned char op, bool *done) {
    PickleValue *a, *b;
    size_t start = 0;
    switch (op) {
    case 0x80: /* PROTO */
        if (reader_need(r, 1, "PROTO") != 0)
            return -1;
        if (r->data[r->pos] > 5)
            return reader_fail(r, "pickle protocol %d is newer than 5", r->data[r->pos]);
        r->pos++;
        return 0;
    case 0x95: /* FRAME: a length hint only */
        if (reader_need(r, 8, "FRAME") != 0)
            return -1;
        r->pos += 8;
        return 0;
    case '.': /* STOP */
        if (reader_pop(r, &a, "STOP") != 0)
            return -1;
        r->doc->root = a;
        *done = true;
        return 0;
    case '(':
        return push_mark(r);
    case '0': /* POP */
        return reader_pop(r, &a, "POP");
    case '1': /* POP_MARK */
        if (reader_pop_mark(r, &start, "POP_MARK") != 0)
            return -1;
        r->sp = start;
        return 0;
    case '2': /* DUP */
        return reader_peek(r, &a, "DUP") != 0 ? -1 : reader_push(r, a);
    case 'N':
        return reader_push(r, reader_new(r, PICKLE_NONE));
    case 0x88: /* NEWTRUE */
    case 0x89: /* NEWFALSE */
        if ((a = reader_new(r, PICKLE_BOOL)) != NULL)
            a->boolean = op == 0x88;
        return reader_push(r, a);
    case 'J': /* BININT */
        if (reader_need(r, 4, "BININT") != 0)
            return -1;
        return reader_push(r, int_value(r, (int32_t)(uint32_t)reader_le(r, 4), false));
    case 'K': /* BININT1 */
        if (reader_need(r, 1, "BININT1") != 0)
            return -1;
        return reader_push(r, int_value(r, (int64_t)reader_le(r, 1), false));
    case 'M': /* BININT2 */
        if (reader_need(r, 2, "BININT2") != 0)
            return -1;
        return reader_push(r, int_value(r, (int64_t)reader_le(r, 2), false));
    case 0x8a: /* LONG1 */
        if (reader_need(r, 1, "LONG1") != 0)
            return -1;
        return push_long(r, reader_le(r, 1));
    case 0x8b: /* LONG4 */
        if (reader_need(r, 4, "LONG4") != 0)
            return -1;
        {
            int32_t n = (int32_t)(uint32_t)reader_le(r, 4);
            if (n < 0)
                return reader_fail(r, "LONG4 with a negative length");
            return push_long(r, (uint64_t)n);
        }
    case 'I':
        return push_text_int(r, false);
    case 'L':
        return push_text_int(r, true);
    case 'F':
        return push_text_float(r);
    case 'G': /* BINFLOAT: big-endian double */
        if (reader_need(r, 8, "BINFLOAT") != 0)
            return -1;
        {
            uint64_t u = 0;
            for (int i = 0; i < 8; i++)
                u = (u << 8) | r->data[r->pos + (size_t)i];
            r->pos += 8;
            if ((a = reader_new(r, PICKLE_FLOAT)) != NULL)
                memcpy(&a->real, &u, sizeof a->real);
            return reader_push(r, a);
        }
    case 'X': /* BINUNICODE */
        return push_counted(r, PICKLE_STR, 4, "BINUNICODE");
    case 0x8c: /* SHORT_BINUNICODE */
        return push_counted(r, PICKLE_STR, 1, "SHORT_BINUNICODE");
    case 0x8d: /* BINUNICODE8 */
        return push_counted(r, PICKLE_STR, 8, "BINUNICODE8");
    case 'T': /* BINSTRING (Python 2 str, read as str as torch.load does) */
        return push_counted(r, PICKLE_STR, 4, "BINSTRING");
    case 'U': /* SHORT_BINSTRING */
        return push_counted(r, PICKLE_STR, 1, "SHORT_BINSTRING");
    case 'C': /* SHORT_BINBYTES */
        return push_counted(r, PICKLE_BYTES, 1, "SHORT_BINBYTES");
    case 'B': /* BINBYTES */
        return push_counted(r, PICKLE_BYTES, 4, "BINBYTES");
    case 0x8e: /* BINBYTES8 */
        return push_counted(r, PICKLE_BYTES, 8, "BINBYTES8");
    case 0x96: /* BYTEARRAY8 */
        return push_counted(r, PICKLE_BYTES, 8, "BYTEARRAY8");
    case 'S':
        return push_text_string(r, false);
    case 'V':
        return push_text_string(r, true);
    case '}': /* EMPTY_DICT */
        return reader_push(r, reader_new(r, PICKLE_DICT));
    case ']': /* EMPTY_LIST */
        return reader_push(r, reader_new(r, PICKLE_LIST));
    case ')': /* EMPTY_TUPLE */
        return reader_push(r, reader_new(r, PICKLE_TUPLE));
    case 0x85: /* TUPLE1 */
    case 0x86: /* TUPLE2 */
    case 0x87: /* TUPLE3 */
        return tuple_of_top(r, (size_t)(op - 0x84));
    case 't': /* TUPLE */
        return reader_pop_mark(r, &start, "TUPLE") != 0
                   ? -1
                   : reader_push_sequence(r, PICKLE_TUPLE, start);
    case 'l': /* LIST */
        return reader_pop_mark(r, &start, "LIST") != 0
                   ? -1
                   : reader_push_sequence(r, PICKLE_LIST, start);
    case 'd': /* DICT */
        if (reader_pop_mark(r, &start, "DICT") != 0 || (a = reader_new(r, PICKLE_DICT)) == NULL ||
            set_items(r, a, start, "DICT") != 0)
            return -1;
        return reader_push(r, a);
    case 'a': /* APPEND */
        if (reader_pop(r, &b, "APPEND") != 0 || reader_peek(r, &a, "APPEND") != 0)
            return -1;
        if (reader_push(r, b) != 0)
            return -1;
        return reader_append_items(r, a, r->sp - 1, "APPEND");
    case 'e': /* APPENDS */
        if (reader_pop_mark(r, &start, "APPENDS") != 0)
            return -1;
        if (start == 0 || start <= reader_fence(r))
            return reader_fail(r, "APPENDS: stack underflow (no list below the mark)");
        return reader_append_items(r, r->stack[start - 1], start, "APPENDS");
    case 's': /* SETITEM */
        if (r->sp < reader_fence(r) + 3)
            return reader_fail(r, "SETITEM: stack underflow");
        return set_items(r, r->stack[r->sp - 3], r->sp - 2, "SETITEM");
    case 'u': /* SETITEMS */
        if (reader_pop_mark(r, &start, "SETITEMS") != 0)
            return -1;
        if (start == 0 || start <= reader_fence(r))
            return reader_fail(r, "SETITEMS: stack underflow (no dict below the mark)");
        return set_items(r, r->stack[start - 1], start, "SETITEMS");
    default:
        return reader_step_objects(r, op);
    }
}

int pickle_parse(const char *name, const void *data, size_t size, PickleDoc *doc, size_t *consumed,
                 Error *err) {
    Reader r = {.name = name, .data = data, .size = size, .doc = doc, .err = err};
    bool done = false;
    int rc = 0;
    while (!done) {
        r.op_pos = r.pos;
        if (r.pos >= r.size) {
            rc = reader_fail(&r, "truncated: the pickle ends without STOP");
            break;
        }
        unsigned char op = r.data[r.pos++];
        if ((rc = step(&r, op, &done)) != 0)
            break;
    }
    if (rc == 0 && (r.sp != 0 || r.mark_count != 0)) {
        r.op_pos = r.pos - 1;
        rc = reader_fail(&r, "STOP leaves %zu values and %zu marks on the stack (corrupt pickle)",
                         r.sp, r.mark_count);
    }
    free(r.stack);
    free(r.marks);
    free(r.memo.keys);
    free(r.memo.values);
    if (rc == 0) {
        PickleCheckState st = {name, err};
        rc = pickle_check_tree(doc, &st);
    }
    if (rc == 0 && consumed)
        *consumed = r.pos;
    if (rc != 0) {
        doc->root = NULL;
        for (char *p = err ? err->message : NULL; p && *p; p++) /* names from the file */
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                *p = '?';
    }
    return rc;
}
