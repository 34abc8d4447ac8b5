/* libFuzzer target: any bytes given to toml_parse must give a well-formed tree or a one-line
 * "<file>:<line>:<column>: reason" error, never a crash, a leak, a hang or a deep recursion. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/toml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_tree(const TomlValue *v, const TomlValue *parent) {
    char path[256];
    if (v->parent != parent || v->depth > TOML_MAX_DEPTH + 1 || v->line < 1 || v->column < 1)
        abort();
    switch (v->kind) {
    case TOML_TABLE:
        for (size_t i = 0; i < v->entry_count; i++) {
            const TomlEntry *e = &v->entries[i];
            if (!e->key || e->key[e->key_len] != '\0' || e->line < 1 || e->column < 1)
                abort();
            if (memchr(e->key, '\0', e->key_len) == NULL && toml_table_get(v, e->key) != e->value)
                abort(); /* lookups find every key that has no U+0000 */
            check_tree(e->value, v);
        }
        break;
    case TOML_ARRAY:
        for (size_t i = 0; i < v->item_count; i++)
            check_tree(v->items[i], v);
        break;
    case TOML_STRING:
    case TOML_DATETIME:
    case TOML_DATETIME_LOCAL:
    case TOML_DATE_LOCAL:
    case TOML_TIME_LOCAL:
        if (!v->str || v->str[v->str_len] != '\0')
            abort();
        break;
    default:
        break;
    }
    toml_value_path(v, path, sizeof path);
    if (strlen(path) >= sizeof path)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    TomlValue *root = NULL;
    Error err;
    err.message[0] = '\0';
    if (toml_parse("fuzz.toml", (const char *)data, size, &root, &err) == 0) {
        if (!root || root->kind != TOML_TABLE)
            abort();
        check_tree(root, NULL);
        /* The getters on whatever is there: a wrong kind must give an error, not a crash. */
        for (size_t i = 0; i < root->entry_count; i++) {
            const char *key = root->entries[i].key;
            int64_t n;
            bool found;
            if (toml_get_int(root, key, &n, &found, &err) != 0 &&
                strncmp(err.message, "fuzz.toml:", 10) != 0)
                abort();
        }
        toml_free(root);
    } else {
        int line = 0, column = 0;
        if (root || strchr(err.message, '\n') ||
            sscanf(err.message, "fuzz.toml:%d:%d: ", &line, &column) != 2 || line < 1 || column < 1)
            abort(); /* a failure must come with a one-line message naming the place */
    }
    return 0;
}
