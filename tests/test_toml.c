// labels: unit
/* TOML 1.0.0 reader against our own cases (tests/toml/), written from the spec's statements:
 * - valid/NAME.toml: every value equals what Python's tomllib reads from the same file
 *   (tests/toml/expected.json, made by tools/reference/make_toml_expected.py): kinds, bytes of
 *   strings, exact integers, bit-exact doubles, date-time fields, keys in source order;
 * - invalid/NAME.toml: each is rejected with the line, column and reason written on its first line
 *   ("# expect: line:col: reason"); tomllib rejects them too (checked by the script);
 * - inline cases: invalid UTF-8, U+0000 in keys, nesting caps, columns in characters, BOM, CRLF,
 *   large tables, the typed getters and their messages on kohya's dataset config. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file_util.h"
#include "formats/toml.h"
#include "test_util.h"

static const char *case_path(const char *dir, const char *name) {
    static char rel[512];
    snprintf(rel, sizeof rel, "../toml/%s%s%s", dir, dir[0] ? "/" : "", name);
    return test_fixture(rel);
}

static TomlValue *parse_text(const char *text, Error *err) {
    TomlValue *root = NULL;
    if (toml_parse("case.toml", text, strlen(text), &root, err) != 0)
        return NULL;
    return root;
}

/* ------------------------------------------------------------------------------------------
 * Tree vs tomllib's tagged JSON */

static const char *json_string(const cJSON *obj, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(item) ? item->valuestring : NULL;
}

/* Reads the date-time text we keep into tomllib's field layout (test-side reading, so the
 * comparison does not reuse the parser's own code). */
static int datetime_fields(const TomlValue *v, long *f) {
    const char *s = v->str;
    int n = 0;
    if (v->kind != TOML_TIME_LOCAL) {
        int y, mo, d;
        if (sscanf(s, "%4d-%2d-%2d", &y, &mo, &d) != 3)
            return -1;
        f[n++] = y, f[n++] = mo, f[n++] = d;
        s += 10;
        if (v->kind == TOML_DATE_LOCAL)
            return n;
        if (*s++ != 'T')
            return -1;
    }
    int h, mi, sec;
    if (sscanf(s, "%2d:%2d:%2d", &h, &mi, &sec) != 3)
        return -1;
    f[n++] = h, f[n++] = mi, f[n++] = sec;
    s += 8;
    long micro = 0;
    if (*s == '.') {
        int digits = 0;
        for (s++; *s >= '0' && *s <= '9'; s++, digits++)
            if (digits < 6)
                micro = micro * 10 + (*s - '0');
        for (; digits < 6; digits++)
            micro *= 10;
    }
    f[n++] = micro;
    if (v->kind == TOML_DATETIME) {
        if (*s == 'Z') {
            f[n++] = 0;
        } else {
            int oh, om;
            if (sscanf(s + 1, "%2d:%2d", &oh, &om) != 2)
                return -1;
            f[n++] = (*s == '-' ? -1 : 1) * (oh * 60 + om);
        }
    }
    return n;
}

static void compare_value(const char *path, const TomlValue *v, const cJSON *want);

static void compare_scalar(const char *path, const TomlValue *v, const cJSON *want) {
    static const struct {
        const char *name;
        TomlKind kind;
    } kinds[] = {{"string", TOML_STRING},         {"integer", TOML_INTEGER},
                 {"float", TOML_FLOAT},           {"bool", TOML_BOOL},
                 {"datetime", TOML_DATETIME},     {"datetime-local", TOML_DATETIME_LOCAL},
                 {"date-local", TOML_DATE_LOCAL}, {"time-local", TOML_TIME_LOCAL}};
    const char *type = json_string(want, "type"), *value = json_string(want, "value");
    TomlKind kind = TOML_TABLE;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(type, kinds[i].name) == 0)
            kind = kinds[i].kind;
    bool ok = v->kind == kind;
    CHECKF(ok, "%s: expected %s, parsed %s", path, type, toml_kind_name(v->kind));
    if (!ok)
        return;
    switch (kind) {
    case TOML_STRING: {
        const char *hex = json_string(want, "hex");
        size_t n = strlen(hex) / 2;
        bool same = v->str_len == n;
        for (size_t i = 0; same && i < n; i++) {
            unsigned byte;
            sscanf(hex + 2 * i, "%2x", &byte);
            same = (unsigned char)v->str[i] == byte;
        }
        CHECKF(same, "%s: expected string \"%s\", parsed \"%s\" (%zu bytes)", path, value, v->str,
               v->str_len);
        break;
    }
    case TOML_INTEGER: {
        errno = 0;
        long long expected = strtoll(value, NULL, 10);
        CHECKF(errno == 0 && v->integer == expected, "%s: expected %s, parsed %lld", path, value,
               (long long)v->integer);
        break;
    }
    case TOML_FLOAT: {
        double expected = strtod(value, NULL);
        bool same = isnan(expected) ? isnan(v->number)
                                    : memcmp(&expected, &v->number, sizeof expected) == 0;
        CHECKF(same, "%s: expected %s, parsed %.17g", path, value, v->number);
        break;
    }
    case TOML_BOOL:
        CHECKF(v->boolean == (strcmp(value, "true") == 0), "%s: expected %s", path, value);
        break;
    default: {
        const cJSON *fields = cJSON_GetObjectItemCaseSensitive(want, "fields");
        long got[8];
        int n = datetime_fields(v, got);
        bool same = n == cJSON_GetArraySize(fields);
        for (int i = 0; same && i < n; i++)
            same = got[i] == (long)cJSON_GetArrayItem(fields, i)->valuedouble;
        CHECKF(same, "%s: expected %s (tomllib), parsed %s", path, value, v->str);
        break;
    }
    }
}

static void compare_value(const char *path, const TomlValue *v, const cJSON *want) {
    char sub[512];
    if (cJSON_IsArray(want)) {
        int n = cJSON_GetArraySize(want);
        bool ok = v->kind == TOML_ARRAY && v->item_count == (size_t)n;
        CHECKF(ok, "%s: expected an array of %d items, parsed %s", path, n,
               toml_kind_name(v->kind));
        if (!ok)
            return;
        for (int i = 0; i < n; i++) {
            snprintf(sub, sizeof sub, "%s[%d]", path, i);
            compare_value(sub, v->items[i], cJSON_GetArrayItem(want, i));
        }
        return;
    }
    if (json_string(want, "type") && json_string(want, "value")) {
        compare_scalar(path, v, want);
        return;
    }
    int n = cJSON_GetArraySize(want);
    bool ok = v->kind == TOML_TABLE && v->entry_count == (size_t)n;
    CHECKF(ok, "%s: expected a table of %d keys, parsed %s with %zu", path, n,
           toml_kind_name(v->kind), v->entry_count);
    if (!ok)
        return;
    size_t i = 0;
    for (const cJSON *item = want->child; item; item = item->next, i++) {
        const TomlEntry *e = &v->entries[i];
        snprintf(sub, sizeof sub, "%s%s%s", path, path[0] ? "." : "", item->string);
        bool same_key = e->key_len == strlen(item->string) && strcmp(e->key, item->string) == 0;
        CHECKF(same_key, "%s: key %zu is '%s', tomllib has '%s' (source order)", path, i, e->key,
               item->string);
        if (same_key)
            compare_value(sub, e->value, item);
    }
}

static void test_valid_cases(const cJSON *expected) {
    const cJSON *valid = cJSON_GetObjectItemCaseSensitive(expected, "valid");
    CHECK(cJSON_GetArraySize(valid) >= 10);
    for (const cJSON *item = valid ? valid->child : NULL; item; item = item->next) {
        TomlValue *root = NULL;
        Error err = {{0}};
        CHECK_OK(toml_parse_file(case_path("valid", item->string), &root, &err), &err);
        if (root)
            compare_value(item->string, root, item);
        toml_free(root);
    }
}

static void test_invalid_cases(const cJSON *expected) {
    const cJSON *invalid = cJSON_GetObjectItemCaseSensitive(expected, "invalid");
    CHECK(cJSON_GetArraySize(invalid) >= 60);
    for (const cJSON *item = invalid ? invalid->child : NULL; item; item = item->next) {
        const char *path = case_path("invalid", item->string);
        char *text = NULL;
        size_t size = 0;
        Error err = {{0}};
        if (file_read_all(path, &text, &size, &err) != 0) {
            CHECKF(false, "%s", err.message);
            continue;
        }
        /* "# expect: 5:1: reason" -> "<path>:5:1: " and "reason" */
        char where[64] = "", reason[512] = "";
        const char *eol = strchr(text, '\n');
        if (sscanf(text, "# expect: %63[0-9:] %511[^\n]", where, reason) == 2 && eol) {
            char place[4200];
            snprintf(place, sizeof place, "%s:%s ", path, where);
            TomlValue *root = NULL;
            CHECK_FAILS_WITH(toml_parse(path, text, size, &root, &err), &err, place);
            CHECK_FAILS_WITH(toml_parse(path, text, size, &root, &err), &err, reason);
            CHECKF(!strchr(err.message, '\n'), "%s: message is not one line", item->string);
            toml_free(root);
        } else {
            CHECKF(false, "%s: no '# expect: line:col: reason' first line", item->string);
        }
        free(text);
    }
}

/* ------------------------------------------------------------------------------------------
 * Inline cases */

static void expect_error(const char *text, size_t len, const char *needle) {
    TomlValue *root = NULL;
    Error err = {{0}};
    int rc = toml_parse("case.toml", text, len, &root, &err);
    test_check_fails(rc, &err, needle, text, __FILE__, __LINE__);
    CHECKF(root == NULL, "a failed parse must leave *root NULL");
    toml_free(root);
}

static void test_invalid_utf8(void) {
    static const struct {
        const char *bytes;
        const char *needle;
    } cases[] = {
        {"a = \"\xC3\x28\"\n", "case.toml:1:6: invalid UTF-8: truncated 2-byte sequence"},
        {"a = 1\n# \xC0\xAF overlong slash\n", "case.toml:2:3: invalid UTF-8: byte 0xC0"},
        {"a = '\xE0\x80\xAF'\n", "case.toml:1:6: invalid UTF-8: overlong encoding"},
        {"a = \"\xED\xA0\x80\"\n", "case.toml:1:6: invalid UTF-8: encoded surrogate U+D800"},
        {"a = \"\xF4\x90\x80\x80\"\n", "case.toml:1:6: invalid UTF-8: code point beyond U+10FFFF"},
        {"\xFF = 1\n", "case.toml:1:1: invalid UTF-8: byte 0xFF"},
        {"a = \"\xE2\x82\"", "case.toml:1:6: invalid UTF-8: truncated 3-byte sequence"},
        {"k = \"\x80\"\n", "case.toml:1:6: invalid UTF-8: byte 0x80 cannot start"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_error(cases[i].bytes, strlen(cases[i].bytes), cases[i].needle);
    /* U+0000 written raw is a control character, not allowed anywhere outside escapes. */
    expect_error("a = \"x\0y\"\n", 10, "case.toml:1:7: control character U+0000");
    expect_error("a = 1 #\0\n", 9, "case.toml:1:8: control character U+0000 is not allowed in");
}

static void test_escaped_nul(void) {
    Error err = {{0}};
    TomlValue *root = parse_text("\"\\u0000\" = \"a\\u0000b\"\n'\\u0000' = 1\n", &err);
    CHECKF(root != NULL, "%s", err.message);
    if (!root)
        return;
    CHECK(root->entry_count == 2);
    CHECK(root->entries[0].key_len == 1 && root->entries[0].key[0] == '\0');
    CHECK(root->entries[0].value->str_len == 3 &&
          memcmp(root->entries[0].value->str, "a\0b", 3) == 0);
    CHECK(root->entries[1].key_len == 6 && strcmp(root->entries[1].key, "\\u0000") == 0);
    toml_free(root);
}

static char *repeat(const char *head, const char *unit, size_t n, const char *tail) {
    size_t hl = strlen(head), ul = strlen(unit), tl = strlen(tail);
    char *s = malloc(hl + ul * n + tl + 1);
    memcpy(s, head, hl);
    for (size_t i = 0; i < n; i++)
        memcpy(s + hl + i * ul, unit, ul);
    memcpy(s + hl + ul * n, tail, tl + 1);
    return s;
}

static void parse_depth(const char *head, const char *open, const char *core, const char *close,
                        size_t n, bool ok) {
    char *inner = repeat(head, open, n, core);
    char *text = repeat(inner, close, n, "\n");
    Error err = {{0}};
    TomlValue *root = NULL;
    int rc = toml_parse("deep.toml", text, strlen(text), &root, &err);
    if (ok)
        CHECKF(rc == 0, "%zu x %s should parse: %s", n, open, err.message);
    else
        CHECKF(rc != 0 && strstr(err.message, "deeper than 128") &&
                   strstr(err.message, "deep.toml:1:"),
               "%zu x %s: expected a nesting error, got '%s'", n, open, err.message);
    toml_free(root);
    free(inner);
    free(text);
}

static void test_nesting_caps(void) {
    parse_depth("a = ", "[", "", "]", 128, true);
    parse_depth("a = ", "[", "", "]", 129, false);
    parse_depth("a = ", "[", "", "]", 100000, false); /* would overflow the stack without a cap */
    parse_depth("a = ", "{b=", "1", "}", 100, true);
    parse_depth("a = ", "{b=", "1", "}", 100000, false);
    parse_depth("a = ", "[{b=", "1", "}]", 50000, false);

    Error err = {{0}};
    TomlValue *root = NULL;
    char *long_key = repeat("k", ".k", 200, " = 1\n");
    CHECK_FAILS_WITH(toml_parse("deep.toml", long_key, strlen(long_key), &root, &err), &err,
                     "deep.toml:1:257: dotted key has more than 128 parts");
    /* Header, dotted key and arrays each within their limit, too deep together. */
    char *header = repeat("[h", ".h", 99, "]\n");
    char *key = repeat(header, "k.", 20, "v = [[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]\n");
    CHECK_FAILS_WITH(toml_parse("deep.toml", key, strlen(key), &root, &err), &err,
                     "nesting deeper than 128 levels");
    free(long_key);
    free(header);
    free(key);
}

static void test_positions(void) {
    /* Columns count characters: 'x' is the 11th character but the 14th byte. */
    expect_error("k = \"ʎǝʞ\" x\n", strlen("k = \"ʎǝʞ\" x\n"),
                 "case.toml:1:11: expected the end of the line after the value, found 'x'");
    expect_error("\xEF\xBB\xBF"
                 "a = 1 x\n",
                 11, "case.toml:1:7: expected the end of the line");
    expect_error("a = 1\r\nb = 2\r\nc = 3 x\r\n", 23, "case.toml:3:7:");
    expect_error("a = 1\r\nb = 2\r\n", 13,
                 "case.toml:2:6: expected the end of the line after "
                 "the value, found control character U+000D");
    /* The error for a second definition names the first one. */
    expect_error("[a.b]\n[a]\n[a.b]\n", 16,
                 "case.toml:3:1: cannot define [a.b]: table 'a.b' was already defined by a "
                 "[table] header at line 1");
    /* An empty document and a NULL buffer are an empty table. */
    Error err = {{0}};
    TomlValue *root = NULL;
    CHECK_OK(toml_parse("empty.toml", NULL, 0, &root, &err), &err);
    CHECK(root && root->kind == TOML_TABLE && root->entry_count == 0);
    toml_free(root);
}

static void test_many_keys(void) {
    enum { N = 20000 };
    char *text = malloc((size_t)N * 32);
    size_t o = 0;
    for (int i = 0; i < N; i++)
        o += (size_t)sprintf(text + o, "key_%d = %d\n", i, i * 3);
    o += (size_t)sprintf(text + o, "key_%d = 0\n", N / 2);
    Error err = {{0}};
    TomlValue *root = NULL;
    CHECK_FAILS_WITH(toml_parse("many.toml", text, o, &root, &err), &err,
                     "many.toml:20001:1: duplicate key 'key_10000': already defined at line 10001");
    int64_t v = 0;
    bool found = false;
    CHECK_OK(toml_parse("many.toml", text, o - strlen("key_10000 = 0\n"), &root, &err), &err);
    CHECK_OK(toml_get_int(root, "key_12345", &v, &found, &err), &err);
    CHECK(found && v == 12345 * 3);
    CHECK(root && root->entry_count == N && strcmp(root->entries[N - 1].key, "key_19999") == 0);
    toml_free(root);
    free(text);
}

/* ------------------------------------------------------------------------------------------
 * Typed getters on kohya's dataset config */

static void test_getters(void) {
    const char *path = case_path("valid", "kohya_dataset.toml");
    TomlValue *root = NULL;
    Error err = {{0}};
    CHECK_OK(toml_parse_file(path, &root, &err), &err);
    if (!root)
        return;
    const TomlValue *general = NULL, *datasets = NULL, *subsets = NULL;
    bool found = false, flag = false;
    const char *s = NULL;
    int64_t i64 = 0;
    double d = 0;
    CHECK_OK(toml_get_table(root, "general", &general, &found, &err), &err);
    CHECK_OK(toml_get_bool(general, "enable_bucket", &flag, &found, &err), &err);
    CHECK(found && flag);
    CHECK_OK(toml_get_string(general, "caption_extension", &s, &found, &err), &err);
    CHECK(found && s && strcmp(s, ".txt") == 0);
    CHECK_OK(toml_get_bool(general, "color_aug", &flag, &found, &err), &err);
    CHECK(!found); /* absent: not an error */

    CHECK_OK(toml_get_array(root, "datasets", &datasets, &found, &err), &err);
    CHECK(datasets && datasets->item_count == 2);
    const TomlValue *ds0 = toml_array_get(datasets, 0);
    CHECK_OK(toml_get_int(ds0, "batch_size", &i64, &found, &err), &err);
    CHECK(found && i64 == 4);
    CHECK_OK(toml_get_array(ds0, "subsets", &subsets, &found, &err), &err);
    const TomlValue *reg = toml_array_get(subsets, 1);
    CHECK_OK(toml_get_bool(reg, "is_reg", &flag, &found, &err), &err);
    CHECK(found && flag);
    const TomlEntry *e = toml_table_get_entry(reg, "class_tokens");
    CHECK(e && e->line == 16 && e->column == 3);
    CHECK(toml_array_get(subsets, 2) == NULL && toml_table_get(reg, "nope") == NULL);

    /* Wrong kinds: file, line, column of the value, the key's full path, expected and found. */
    CHECK_FAILS_WITH(toml_get_string(ds0, "batch_size", &s, &found, &err), &err,
                     "kohya_dataset.toml:8:14: key 'datasets[0].batch_size': expected a string, "
                     "found an integer");
    CHECK(!found);
    CHECK_FAILS_WITH(toml_get_int(reg, "is_reg", &i64, &found, &err), &err,
                     ":15:12: key 'datasets[0].subsets[1].is_reg': expected an integer, found a "
                     "boolean");
    const TomlValue *ds1 = toml_array_get(datasets, 1), *sub = NULL;
    CHECK_FAILS_WITH(toml_get_int(ds1, "resolution", &i64, &found, &err), &err,
                     "key 'datasets[1].resolution': expected an integer, found an array");
    CHECK_OK(toml_get_array(ds1, "subsets", &sub, &found, &err), &err);
    const TomlValue *sub0 = toml_array_get(sub, 0);
    CHECK_OK(toml_get_number(sub0, "token_warmup_step", &d, &found, &err), &err);
    CHECK(found && d == 0.5);
    CHECK_OK(toml_get_number(sub0, "keep_tokens", &d, &found, &err), &err);
    CHECK(found && d == 1.0); /* toml_get_number takes integers too */
    CHECK_FAILS_WITH(toml_get_float(sub0, "keep_tokens", &d, &found, &err), &err,
                     "expected a float, found an integer");
    const TomlValue *attrs = toml_table_get(sub0, "custom_attributes");
    CHECK_FAILS_WITH(toml_get_bool(attrs, "style", &flag, &found, &err), &err,
                     ":30:33: key 'datasets[1].subsets[0].custom_attributes.style': expected a "
                     "boolean, found a string");
    CHECK_FAILS_WITH(toml_value_error(attrs, &err, "unknown key"), &err,
                     ":30:23: key 'datasets[1].subsets[0].custom_attributes': unknown key");
    toml_free(root);

    /* Quoted keys are quoted in paths. */
    root = parse_text("site.\"google.com\".\"a b\" = [1, {x = true}]\n", &err);
    CHECKF(root != NULL, "%s", err.message);
    if (root) {
        const TomlValue *x = toml_table_get(
            toml_array_get(
                toml_table_get(toml_table_get(toml_table_get(root, "site"), "google.com"), "a b"),
                1),
            "x");
        char buf[128];
        CHECK(x &&
              strcmp(toml_value_path(x, buf, sizeof buf), "site.\"google.com\".\"a b\"[1].x") == 0);
    }
    toml_free(root);

    CHECK_FAILS_WITH(toml_parse_file(case_path("", "no-such-file.toml"), &root, &err), &err,
                     "no-such-file.toml");
    CHECK(root == NULL);
}

int main(void) {
    char *json = NULL;
    size_t size = 0;
    Error err = {{0}};
    CHECK_OK(file_read_all(case_path("", "expected.json"), &json, &size, &err), &err);
    cJSON *expected = json ? cJSON_ParseWithLength(json, size) : NULL;
    CHECK(expected != NULL);
    if (expected) {
        test_valid_cases(expected);
        test_invalid_cases(expected);
    }
    cJSON_Delete(expected);
    free(json);
    test_invalid_utf8();
    test_escaped_nul();
    test_nesting_caps();
    test_positions();
    test_many_keys();
    test_getters();
    return test_finish();
}
