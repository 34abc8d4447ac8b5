/* Shared between the TOML parser's files (toml_lex.c: characters, strings, keys;
 * toml_scalar.c: numbers, booleans, date-times; toml_parse.c: document structure and the
 * redefinition rules; toml_value.c: the tree). Not part of the public API. */
#ifndef SDTI_FORMATS_TOML_INTERNAL_H
#define SDTI_FORMATS_TOML_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "formats/toml.h"

/* TomlValue.flags */
enum {
    TOML_FLAG_IMPLICIT = 1u << 0, /* table created as the parent in a header path: [a.b] makes a */
    TOML_FLAG_HEADER = 1u << 1,   /* table defined by [header] or one element of [[header]] */
    TOML_FLAG_DOTTED = 1u << 2,   /* table created (or extended) by a dotted key a.b = 1 */
    TOML_FLAG_INLINE = 1u << 3,   /* inline table { ... }: closed to any extension */
    TOML_FLAG_AOT = 1u << 4,      /* array made by [[header]] (others are static arrays) */
};

typedef struct TomlParser {
    const char *name;
    const char *text;
    size_t len;
    size_t pos;
    Error *err;
    TomlValue *root;
    TomlValue *current; /* the table that key/value lines go into */
    const char *source; /* name copy owned by the root */
    size_t bom_len;     /* a UTF-8 byte order mark at the start is skipped and not counted */
    /* Line and column lookup: the offset where each line starts, plus the last answer, since
     * most lookups land near the previous one (a key, then its value a few bytes later). */
    size_t *line_starts;
    size_t line_count;
    bool cache_valid;
    size_t cache_line; /* index into line_starts */
    size_t cache_offset;
    int cache_column;
} TomlParser;

/* A growable byte buffer. */
typedef struct TomlBuf {
    char *data;
    size_t len;
    size_t cap;
} TomlBuf;

int toml_buf_push(TomlBuf *b, const char *bytes, size_t n);
/* Hands the NUL-terminated data over (an empty buffer gives ""); NULL when out of memory. */
char *toml_buf_take(TomlBuf *b, size_t *len);
void toml_buf_free(TomlBuf *b);

/* One key of a dotted key, with where it starts. */
typedef struct TomlKeyPart {
    char *text;
    size_t len;
    size_t offset;
} TomlKeyPart;

typedef struct TomlKey {
    TomlKeyPart *parts;
    size_t count;
    size_t cap;
} TomlKey;

void toml_key_free(TomlKey *key);
/* Renders parts [0, n) as a.b."c d" into buf (truncated to size). */
void toml_key_render(const TomlKey *key, size_t n, char *buf, size_t size);
/* Renders one key, quoting it when it is not a bare key. */
void toml_render_key_text(const char *text, size_t len, char *buf, size_t size);

/* ---- toml_lex.c ---- */
/* Fails at byte `offset`: "<name>:<line>:<column>: <reason>". Returns -1. */
int toml_fail(TomlParser *p, size_t offset, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void toml_line_col(TomlParser *p, size_t offset, int *line, int *column);
/* Builds line_starts (after the UTF-8 check; before it, lookups scan from the start). */
int toml_index_lines(TomlParser *p);
/* Describes the character at `offset` for messages: 'x', end of line, end of file, U+0007. */
const char *toml_describe(const TomlParser *p, size_t offset, char *buf, size_t size);
int toml_peek(const TomlParser *p, size_t ahead);
/* Whole-input UTF-8 check; fails at the first bad byte. */
int toml_check_utf8(TomlParser *p);
void toml_skip_ws(TomlParser *p);
bool toml_at_newline(const TomlParser *p);
/* At '#': consumes the comment up to (not including) the line end. */
int toml_skip_comment(TomlParser *p);
/* Whitespace, comments and newlines (inside arrays). */
int toml_skip_ws_comments_newlines(TomlParser *p);
/* A quoted string value of any of the four forms, the opening quote at p->pos. */
int toml_parse_string(TomlParser *p, char **out, size_t *out_len);
/* A (dotted) key up to the first character that cannot continue it. */
int toml_parse_key(TomlParser *p, TomlKey *key);

/* ---- toml_scalar.c ---- */
/* A number, boolean or date-time at p->pos (fills kind and the matching field). */
int toml_parse_scalar(TomlParser *p, TomlValue *out);

/* ---- toml_value.c ---- */
TomlValue *toml_value_new(TomlKind kind, const TomlParser *p, size_t offset);
TomlEntry *toml_table_find(const TomlValue *table, const char *key, size_t len);
/* Adds an entry, taking ownership of key and value (both freed on failure). */
int toml_table_add(TomlParser *p, TomlValue *table, char *key, size_t key_len, size_t key_offset,
                   TomlValue *value);
int toml_array_push(TomlParser *p, TomlValue *array, TomlValue *value, size_t offset);
/* Frees a value and everything under it. */
void toml_value_free(TomlValue *value);

#endif
