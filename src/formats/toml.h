/* TOML 1.0.0 reader (kohya's dataset .toml and --config_file): the whole document becomes a
 * tree of TomlValue; tables keep their entries in source order with the line and column of
 * each key, so later checks (unknown keys, wrong types) can point at the place in the file.
 *
 * Every parse error is one line "<file>:<line>:<column>: <reason>", where the column counts
 * characters (not bytes) from 1, and the reason says what was expected and what was found.
 * Date-times are validated and kept as text (normalised to 'T' and 'Z') with a kind tag; we
 * never need their calendar value. Nesting (tables, arrays, inline tables together) is capped
 * at TOML_MAX_DEPTH so no input can exhaust the stack. */
#ifndef SDTI_FORMATS_TOML_H
#define SDTI_FORMATS_TOML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

#define TOML_MAX_DEPTH 128

typedef enum TomlKind {
    TOML_TABLE,
    TOML_ARRAY,
    TOML_STRING,
    TOML_INTEGER,
    TOML_FLOAT,
    TOML_BOOL,
    TOML_DATETIME,       /* offset date-time: 1979-05-27T07:32:00Z, ...+01:00 */
    TOML_DATETIME_LOCAL, /* 1979-05-27T07:32:00 */
    TOML_DATE_LOCAL,     /* 1979-05-27 */
    TOML_TIME_LOCAL,     /* 07:32:00 */
} TomlKind;

typedef struct TomlValue TomlValue;

typedef struct TomlEntry {
    char *key; /* NUL-terminated; key_len counts bytes (a key may hold U+0000 via \u0000) */
    size_t key_len;
    TomlValue *value;
    int line; /* where the key was written (for a table made by a header: the header) */
    int column;
} TomlEntry;

struct TomlValue {
    TomlKind kind;
    int line; /* where the value starts (a table made by a header: the header) */
    int column;
    const TomlValue *parent; /* NULL for the root */
    const char *source;      /* file name given to toml_parse (owned by the root) */

    /* TOML_STRING and the four date-time kinds: NUL-terminated text, str_len bytes */
    char *str;
    size_t str_len;
    int64_t integer; /* TOML_INTEGER */
    double number;   /* TOML_FLOAT */
    bool boolean;    /* TOML_BOOL */

    TomlValue **items; /* TOML_ARRAY */
    size_t item_count;
    TomlEntry *entries; /* TOML_TABLE, in source order */
    size_t entry_count;

    /* Parser bookkeeping (how the table/array was made, for the redefinition rules). */
    unsigned flags;
    int depth;
    size_t capacity;
    uint32_t *index; /* hash index over entries once a table grows; slot = entry index + 1 */
    size_t index_capacity;
};

/* Parses `len` bytes of `text` (need not be NUL-terminated). `name` names the source in
 * messages. On success *root is a table to release with toml_free. */
int toml_parse(const char *name, const char *text, size_t len, TomlValue **root, Error *err);
int toml_parse_file(const char *path, TomlValue **root, Error *err);
void toml_free(TomlValue *root);

/* "a table", "an integer", ... for messages. */
const char *toml_kind_name(TomlKind kind);

/* The value under `key` in `table` (a NUL-free key), or NULL when absent or `table` is not a
 * table. */
const TomlValue *toml_table_get(const TomlValue *table, const char *key);
const TomlEntry *toml_table_get_entry(const TomlValue *table, const char *key);
/* Item `i` of an array, or NULL. */
const TomlValue *toml_array_get(const TomlValue *array, size_t i);

/* Typed getters. Absent key: returns 0 with *found = false (found may be NULL when the caller
 * does not care) and leaves *out alone. Present with the right kind: 0, *found = true, *out
 * set. Present with another kind: -1 with "<file>:<line>:<column>: key 'a.b[0].c': expected
 * an integer, found a string". toml_get_float wants a TOML float; toml_get_number also takes
 * an integer. *out of toml_get_string points into the tree. */
int toml_get_string(const TomlValue *table, const char *key, const char **out, bool *found,
                    Error *err);
int toml_get_int(const TomlValue *table, const char *key, int64_t *out, bool *found, Error *err);
int toml_get_float(const TomlValue *table, const char *key, double *out, bool *found, Error *err);
int toml_get_number(const TomlValue *table, const char *key, double *out, bool *found, Error *err);
int toml_get_bool(const TomlValue *table, const char *key, bool *out, bool *found, Error *err);
int toml_get_table(const TomlValue *table, const char *key, const TomlValue **out, bool *found,
                   Error *err);
int toml_get_array(const TomlValue *table, const char *key, const TomlValue **out, bool *found,
                   Error *err);

/* The dotted path of a value from the root, e.g. datasets[0].subsets[1].image_dir (keys
 * that are not bare are quoted). Writes at most size bytes including the NUL; returns buf. */
char *toml_value_path(const TomlValue *value, char *buf, size_t size);

/* Sets "<file>:<line>:<column>: key '<path>': <reason>" for `value`; returns -1. */
int toml_value_error(const TomlValue *value, Error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
