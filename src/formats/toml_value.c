/* The TOML value tree: allocation, tables (source order plus a hash index once they grow, so
 * a table with many keys stays linear to build), arrays, lookups, typed getters and messages
 * that name a value by its path. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file_util.h"
#include "formats/toml_internal.h"

enum { INDEX_FROM = 8 }; /* tables smaller than this are searched linearly */

TomlValue *toml_value_new(TomlKind kind, const TomlParser *p, size_t offset) {
    TomlValue *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    v->kind = kind;
    v->source = p->source;
    toml_line_col((TomlParser *)p, offset, &v->line, &v->column);
    return v;
}

void toml_value_free(TomlValue *v) {
    if (!v)
        return;
    for (size_t i = 0; i < v->item_count; i++)
        toml_value_free(v->items[i]);
    for (size_t i = 0; i < v->entry_count; i++) {
        free(v->entries[i].key);
        toml_value_free(v->entries[i].value);
    }
    free(v->items);
    free(v->entries);
    free(v->index);
    free(v->str);
    free(v);
}

void toml_free(TomlValue *root) {
    if (!root)
        return;
    char *source = (char *)root->source;
    toml_value_free(root);
    free(source);
}

/* ------------------------------------------------------------------------------------------
 * Tables */

static uint32_t hash_key(const char *key, size_t len) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 16777619u;
    }
    return h;
}

static bool entry_is(const TomlEntry *e, const char *key, size_t len) {
    return e->key_len == len && memcmp(e->key, key, len) == 0;
}

TomlEntry *toml_table_find(const TomlValue *table, const char *key, size_t len) {
    if (!table || table->kind != TOML_TABLE)
        return NULL;
    if (!table->index) {
        for (size_t i = 0; i < table->entry_count; i++)
            if (entry_is(&table->entries[i], key, len))
                return &table->entries[i];
        return NULL;
    }
    size_t mask = table->index_capacity - 1;
    for (size_t slot = hash_key(key, len) & mask;; slot = (slot + 1) & mask) {
        uint32_t at = table->index[slot];
        if (at == 0)
            return NULL;
        if (entry_is(&table->entries[at - 1], key, len))
            return &table->entries[at - 1];
    }
}

static void index_put(TomlValue *table, size_t entry) {
    const TomlEntry *e = &table->entries[entry];
    size_t mask = table->index_capacity - 1;
    size_t slot = hash_key(e->key, e->key_len) & mask;
    while (table->index[slot] != 0)
        slot = (slot + 1) & mask;
    table->index[slot] = (uint32_t)(entry + 1);
}

/* Keeps the index at most half full; returns -1 when out of memory. */
static int index_update(TomlValue *table) {
    size_t n = table->entry_count;
    if (n < INDEX_FROM)
        return 0;
    if (table->index && n * 2 <= table->index_capacity) {
        index_put(table, n - 1);
        return 0;
    }
    size_t cap = 32;
    while (cap < n * 4)
        cap *= 2;
    uint32_t *index = calloc(cap, sizeof *index);
    if (!index)
        return -1;
    free(table->index);
    table->index = index;
    table->index_capacity = cap;
    for (size_t i = 0; i < n; i++)
        index_put(table, i);
    return 0;
}

static int check_depth(TomlParser *p, const TomlValue *container, size_t offset) {
    if (container->depth >= TOML_MAX_DEPTH)
        return toml_fail(p, offset, "nesting deeper than %d levels of tables and arrays",
                         TOML_MAX_DEPTH);
    return 0;
}

int toml_table_add(TomlParser *p, TomlValue *table, char *key, size_t key_len, size_t key_offset,
                   TomlValue *value) {
    if (check_depth(p, table, key_offset) != 0)
        goto fail;
    if (table->entry_count >= UINT32_MAX - 1) {
        toml_fail(p, key_offset, "table has too many keys");
        goto fail;
    }
    if (table->entry_count == table->capacity) {
        size_t cap = table->capacity ? table->capacity * 2 : 4;
        TomlEntry *entries = realloc(table->entries, cap * sizeof *entries);
        if (!entries) {
            toml_fail(p, key_offset, "out of memory");
            goto fail;
        }
        table->entries = entries;
        table->capacity = cap;
    }
    TomlEntry *e = &table->entries[table->entry_count++];
    e->key = key;
    e->key_len = key_len;
    e->value = value;
    toml_line_col(p, key_offset, &e->line, &e->column);
    value->parent = table;
    value->depth = table->depth + 1;
    if (index_update(table) != 0) {
        table->entry_count--;
        toml_fail(p, key_offset, "out of memory");
        goto fail;
    }
    return 0;
fail:
    free(key);
    toml_value_free(value);
    return -1;
}

int toml_array_push(TomlParser *p, TomlValue *array, TomlValue *value, size_t offset) {
    if (check_depth(p, array, offset) != 0) {
        toml_value_free(value);
        return -1;
    }
    if (array->item_count == array->capacity) {
        size_t cap = array->capacity ? array->capacity * 2 : 4;
        TomlValue **items = realloc(array->items, cap * sizeof *items);
        if (!items) {
            toml_value_free(value);
            return toml_fail(p, offset, "out of memory");
        }
        array->items = items;
        array->capacity = cap;
    }
    array->items[array->item_count++] = value;
    value->parent = array;
    value->depth = array->depth + 1;
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Lookups and typed getters */

const char *toml_kind_name(TomlKind kind) {
    switch (kind) {
    case TOML_TABLE:
        return "a table";
    case TOML_ARRAY:
        return "an array";
    case TOML_STRING:
        return "a string";
    case TOML_INTEGER:
        return "an integer";
    case TOML_FLOAT:
        return "a float";
    case TOML_BOOL:
        return "a boolean";
    case TOML_DATETIME:
        return "an offset date-time";
    case TOML_DATETIME_LOCAL:
        return "a local date-time";
    case TOML_DATE_LOCAL:
        return "a local date";
    case TOML_TIME_LOCAL:
        return "a local time";
    }
    return "an unknown value";
}

const TomlEntry *toml_table_get_entry(const TomlValue *table, const char *key) {
    return key ? toml_table_find(table, key, strlen(key)) : NULL;
}

const TomlValue *toml_table_get(const TomlValue *table, const char *key) {
    const TomlEntry *e = toml_table_get_entry(table, key);
    return e ? e->value : NULL;
}

const TomlValue *toml_array_get(const TomlValue *array, size_t i) {
    if (!array || array->kind != TOML_ARRAY || i >= array->item_count)
        return NULL;
    return array->items[i];
}

char *toml_value_path(const TomlValue *value, char *buf, size_t size) {
    if (size == 0)
        return buf;
    buf[0] = '\0';
    const TomlValue *chain[TOML_MAX_DEPTH + 2];
    size_t n = 0;
    for (const TomlValue *v = value; v && v->parent && n < TOML_MAX_DEPTH + 2; v = v->parent)
        chain[n++] = v;
    size_t o = 0;
    for (size_t k = n; k-- > 0 && o + 1 < size;) {
        const TomlValue *v = chain[k], *parent = v->parent;
        if (parent->kind == TOML_ARRAY) {
            for (size_t i = 0; i < parent->item_count; i++)
                if (parent->items[i] == v)
                    snprintf(buf + o, size - o, "[%zu]", i);
        } else {
            for (size_t i = 0; i < parent->entry_count; i++) {
                if (parent->entries[i].value != v)
                    continue;
                if (o > 0)
                    buf[o++] = '.';
                toml_render_key_text(parent->entries[i].key, parent->entries[i].key_len, buf + o,
                                     size - o);
            }
        }
        o += strlen(buf + o);
    }
    return buf;
}

int toml_value_error(const TomlValue *value, Error *err, const char *fmt, ...) {
    char reason[600], path[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    const char *source = value && value->source ? value->source : "<toml>";
    if (!value)
        return error_set(err, "%s: %s", source, reason);
    toml_value_path(value, path, sizeof path);
    if (path[0] == '\0')
        return error_set(err, "%s:%d:%d: %s", source, value->line, value->column, reason);
    return error_set(err, "%s:%d:%d: key '%s': %s", source, value->line, value->column, path,
                     reason);
}

static int get_typed(const TomlValue *table, const char *key, TomlKind want, bool int_ok,
                     const TomlValue **out, bool *found, Error *err) {
    const TomlValue *v = toml_table_get(table, key);
    if (found)
        *found = v != NULL;
    *out = v;
    if (!v)
        return 0;
    if (v->kind == want || (int_ok && v->kind == TOML_INTEGER))
        return 0;
    if (found)
        *found = false;
    *out = NULL;
    return toml_value_error(v, err, "expected %s%s, found %s", toml_kind_name(want),
                            int_ok ? " or an integer" : "", toml_kind_name(v->kind));
}

int toml_get_string(const TomlValue *table, const char *key, const char **out, bool *found,
                    Error *err) {
    const TomlValue *v;
    if (get_typed(table, key, TOML_STRING, false, &v, found, err) != 0)
        return -1;
    if (v)
        *out = v->str;
    return 0;
}

int toml_get_int(const TomlValue *table, const char *key, int64_t *out, bool *found, Error *err) {
    const TomlValue *v;
    if (get_typed(table, key, TOML_INTEGER, false, &v, found, err) != 0)
        return -1;
    if (v)
        *out = v->integer;
    return 0;
}

int toml_get_float(const TomlValue *table, const char *key, double *out, bool *found, Error *err) {
    const TomlValue *v;
    if (get_typed(table, key, TOML_FLOAT, false, &v, found, err) != 0)
        return -1;
    if (v)
        *out = v->number;
    return 0;
}

int toml_get_number(const TomlValue *table, const char *key, double *out, bool *found, Error *err) {
    const TomlValue *v;
    if (get_typed(table, key, TOML_FLOAT, true, &v, found, err) != 0)
        return -1;
    if (v)
        *out = v->kind == TOML_INTEGER ? (double)v->integer : v->number;
    return 0;
}

int toml_get_bool(const TomlValue *table, const char *key, bool *out, bool *found, Error *err) {
    const TomlValue *v;
    if (get_typed(table, key, TOML_BOOL, false, &v, found, err) != 0)
        return -1;
    if (v)
        *out = v->boolean;
    return 0;
}

int toml_get_table(const TomlValue *table, const char *key, const TomlValue **out, bool *found,
                   Error *err) {
    const TomlValue *v;
    if (get_typed(table, key, TOML_TABLE, false, &v, found, err) != 0)
        return -1;
    if (v)
        *out = v;
    return 0;
}

int toml_get_array(const TomlValue *table, const char *key, const TomlValue **out, bool *found,
                   Error *err) {
    const TomlValue *v;
    if (get_typed(table, key, TOML_ARRAY, false, &v, found, err) != 0)
        return -1;
    if (v)
        *out = v;
    return 0;
}

int toml_parse_file(const char *path, TomlValue **root, Error *err) {
    *root = NULL;
    char *data = NULL;
    size_t size = 0;
    if (file_read_all(path, &data, &size, err) != 0)
        return -1;
    int rc = toml_parse(path, data, size, root, err);
    free(data);
    return rc;
}
