/* toml-test decoder (https://github.com/toml-lang/toml-test): TOML on stdin, the suite's tagged
 * JSON on stdout ({"type":"integer","value":"42"}, tables as objects, arrays as arrays), exit 1
 * with the message on stderr when the input is not valid TOML 1.0.
 * Built as build/toml-decoder; tools/toml_test_run.py runs the suite through it. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/toml.h"

/* Shortest "%.Ng" that reads back as the same double. */
static void format_float(double v, char *buf, size_t size) {
    if (isnan(v)) {
        snprintf(buf, size, "nan");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, size, v < 0 ? "-inf" : "inf");
        return;
    }
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(buf, size, "%.*g", digits, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

/* JSON string text for bytes that may hold U+0000 (cJSON strings cannot). */
static char *json_quote(const char *s, size_t n) {
    char *out = malloc(n * 6 + 3);
    if (!out)
        return NULL;
    size_t o = 0;
    out[o++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            o += (size_t)sprintf(out + o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}

static cJSON *to_json(const TomlValue *v);

static cJSON *tagged(const char *type, const char *text, size_t len) {
    cJSON *obj = cJSON_CreateObject();
    if (!obj)
        return NULL;
    cJSON_AddStringToObject(obj, "type", type);
    if (strlen(text) == len) {
        cJSON_AddStringToObject(obj, "value", text);
    } else {
        char *quoted = json_quote(text, len);
        if (quoted)
            cJSON_AddItemToObject(obj, "value", cJSON_CreateRaw(quoted));
        free(quoted);
    }
    return obj;
}

/* A table whose keys hold U+0000 is written by hand and handed to cJSON as raw text. */
static cJSON *table_with_nul_keys(const TomlValue *v) {
    size_t cap = 64, len = 0;
    char *text = malloc(cap);
    if (!text)
        return NULL;
    text[len++] = '{';
    for (size_t i = 0; i < v->entry_count; i++) {
        cJSON *child = to_json(v->entries[i].value);
        char *child_text = child ? cJSON_PrintUnformatted(child) : NULL;
        char *key = json_quote(v->entries[i].key, v->entries[i].key_len);
        cJSON_Delete(child);
        if (!child_text || !key) {
            free(child_text), free(key), free(text);
            return NULL;
        }
        size_t need = len + strlen(key) + strlen(child_text) + 4;
        if (need > cap) {
            cap = need * 2;
            char *grown = realloc(text, cap);
            if (!grown) {
                free(child_text), free(key), free(text);
                return NULL;
            }
            text = grown;
        }
        len += (size_t)sprintf(text + len, "%s%s:%s", i ? "," : "", key, child_text);
        free(child_text);
        free(key);
    }
    text[len++] = '}';
    text[len] = '\0';
    cJSON *raw = cJSON_CreateRaw(text);
    free(text);
    return raw;
}

static cJSON *to_json(const TomlValue *v) {
    char buf[64];
    switch (v->kind) {
    case TOML_TABLE: {
        for (size_t i = 0; i < v->entry_count; i++)
            if (strlen(v->entries[i].key) != v->entries[i].key_len)
                return table_with_nul_keys(v);
        cJSON *obj = cJSON_CreateObject();
        for (size_t i = 0; obj && i < v->entry_count; i++)
            cJSON_AddItemToObject(obj, v->entries[i].key, to_json(v->entries[i].value));
        return obj;
    }
    case TOML_ARRAY: {
        cJSON *arr = cJSON_CreateArray();
        for (size_t i = 0; arr && i < v->item_count; i++)
            cJSON_AddItemToArray(arr, to_json(v->items[i]));
        return arr;
    }
    case TOML_STRING:
        return tagged("string", v->str, v->str_len);
    case TOML_INTEGER:
        snprintf(buf, sizeof buf, "%lld", (long long)v->integer);
        return tagged("integer", buf, strlen(buf));
    case TOML_FLOAT:
        format_float(v->number, buf, sizeof buf);
        return tagged("float", buf, strlen(buf));
    case TOML_BOOL:
        return tagged("bool", v->boolean ? "true" : "false", v->boolean ? 4 : 5);
    case TOML_DATETIME:
        return tagged("datetime", v->str, v->str_len);
    case TOML_DATETIME_LOCAL:
        return tagged("datetime-local", v->str, v->str_len);
    case TOML_DATE_LOCAL:
        return tagged("date-local", v->str, v->str_len);
    case TOML_TIME_LOCAL:
        return tagged("time-local", v->str, v->str_len);
    }
    return NULL;
}

int main(void) {
    size_t cap = 1 << 16, len = 0;
    char *text = malloc(cap);
    for (;;) {
        if (!text) {
            fprintf(stderr, "toml-decoder: out of memory\n");
            return 2;
        }
        size_t got = fread(text + len, 1, cap - len, stdin);
        len += got;
        if (got == 0)
            break;
        if (len == cap) {
            cap *= 2;
            char *grown = realloc(text, cap);
            if (!grown)
                free(text);
            text = grown;
        }
    }
    TomlValue *root = NULL;
    Error err = {{0}};
    if (toml_parse("<stdin>", text, len, &root, &err) != 0) {
        fprintf(stderr, "%s\n", err.message);
        free(text);
        return 1;
    }
    free(text);
    cJSON *json = to_json(root);
    char *out = json ? cJSON_Print(json) : NULL;
    toml_free(root);
    cJSON_Delete(json);
    if (!out) {
        fprintf(stderr, "toml-decoder: out of memory\n");
        return 2;
    }
    puts(out);
    free(out);
    return 0;
}
