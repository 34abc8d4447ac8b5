/* TOML document structure: lines of key = value, [table] and [[array of tables]] headers,
 * arrays and inline tables, and the rules that say what may be defined where:
 * - a table is defined once: by one [header], by dotted keys, or as an inline table; a table
 *   made only as the parent of a header ([a.b] makes a) may later get its own [a] header;
 * - dotted keys may create and extend tables, but not tables that a [header] defined;
 * - a [header] may pass through tables made by dotted keys (to add sub-tables) but not
 *   define them again;
 * - inline tables and static arrays are closed: nothing may be added to them later;
 * - [[a]] appends to an array of tables, and [a.b] after it goes into its last element. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/toml_internal.h"

static int parse_value(TomlParser *p, int depth, TomlValue **out);

static TomlValue *new_value(TomlParser *p, TomlKind kind, size_t offset, int depth) {
    TomlValue *v = toml_value_new(kind, p, offset);
    if (!v) {
        toml_fail(p, offset, "out of memory");
        return NULL;
    }
    v->depth = depth;
    return v;
}

static const char *how_defined(const TomlValue *v) {
    if (v->flags & TOML_FLAG_INLINE)
        return "as an inline table";
    if (v->flags & TOML_FLAG_HEADER)
        return "by a [table] header";
    if (v->flags & TOML_FLAG_DOTTED)
        return "by dotted keys";
    return "implicitly";
}

/* "an array of tables", "a static array", "an integer", ... for what a key already holds. */
static const char *what_it_is(const TomlValue *v) {
    if (v->kind == TOML_ARRAY)
        return (v->flags & TOML_FLAG_AOT) ? "an array of tables" : "a static array";
    return toml_kind_name(v->kind);
}

static const char *found_at(const TomlParser *p, char *buf, size_t size) {
    return toml_describe(p, p->pos, buf, size);
}

/* ------------------------------------------------------------------------------------------
 * Key = value, into `table` (dotted keys create or extend tables below it) */

/* The full dotted name of `table` (from the root, or from the inline table being read) with
 * `key` appended when given, for messages. */
static void name_in(const TomlValue *table, const TomlKeyPart *key, char *buf, size_t size) {
    toml_value_path(table, buf, size);
    size_t o = strlen(buf);
    if (key && o + 2 < size) {
        if (o > 0)
            buf[o++] = '.';
        toml_render_key_text(key->text, key->len, buf + o, size - o);
    }
}

static int insert_dotted(TomlParser *p, TomlValue *table, TomlKey *key, TomlValue *value) {
    char name[256];
    TomlValue *t = table;
    for (size_t i = 0; i + 1 < key->count; i++) {
        TomlKeyPart *part = &key->parts[i];
        TomlEntry *e = toml_table_find(t, part->text, part->len);
        if (!e) {
            TomlValue *child = new_value(p, TOML_TABLE, part->offset, t->depth + 1);
            if (!child)
                goto fail;
            child->flags = TOML_FLAG_DOTTED;
            char *text = part->text;
            part->text = NULL;
            if (toml_table_add(p, t, text, part->len, part->offset, child) != 0)
                goto fail;
            t = child;
            continue;
        }
        TomlValue *v = e->value;
        name_in(t, part, name, sizeof name);
        if (v->kind != TOML_TABLE) {
            toml_fail(p, part->offset,
                      "cannot use '%s' as a table in a dotted key: it is %s (line %d)", name,
                      what_it_is(v), e->line);
            goto fail;
        }
        if (v->flags & (TOML_FLAG_INLINE | TOML_FLAG_HEADER)) {
            toml_fail(p, part->offset,
                      "cannot add keys to table '%s' with a dotted key: it was defined %s at "
                      "line %d%s",
                      name, how_defined(v), e->line,
                      (v->flags & TOML_FLAG_INLINE) ? " and inline tables are closed" : "");
            goto fail;
        }
        v->flags |= TOML_FLAG_DOTTED;
        t = v;
    }
    TomlKeyPart *last = &key->parts[key->count - 1];
    TomlEntry *e = toml_table_find(t, last->text, last->len);
    if (e) {
        name_in(t, last, name, sizeof name);
        toml_fail(p, last->offset, "duplicate key '%s': already defined at line %d", name, e->line);
        goto fail;
    }
    char *text = last->text;
    last->text = NULL;
    return toml_table_add(p, t, text, last->len, last->offset, value);
fail:
    toml_value_free(value);
    return -1;
}

static int parse_keyval(TomlParser *p, TomlValue *table) {
    TomlKey key = {0};
    int rc = -1;
    if (toml_parse_key(p, &key) != 0)
        goto done;
    toml_skip_ws(p);
    if (toml_peek(p, 0) != '=') {
        char name[256], found[32];
        toml_key_render(&key, key.count, name, sizeof name);
        toml_fail(p, p->pos, "expected '=' after key '%s', found %s", name,
                  found_at(p, found, sizeof found));
        goto done;
    }
    p->pos++;
    toml_skip_ws(p);
    TomlValue *value = NULL;
    if (parse_value(p, table->depth + (int)key.count, &value) != 0)
        goto done;
    rc = insert_dotted(p, table, &key, value);
done:
    toml_key_free(&key);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Values */

static int parse_array(TomlParser *p, int depth, TomlValue **out) {
    size_t start = p->pos;
    TomlValue *array = new_value(p, TOML_ARRAY, start, depth);
    if (!array)
        return -1;
    p->pos++; /* '[' */
    for (;;) {
        if (toml_skip_ws_comments_newlines(p) != 0)
            goto fail;
        if (toml_peek(p, 0) == ']') {
            p->pos++;
            break;
        }
        size_t at = p->pos;
        TomlValue *item = NULL;
        if (parse_value(p, depth + 1, &item) != 0 || toml_array_push(p, array, item, at) != 0)
            goto fail;
        if (toml_skip_ws_comments_newlines(p) != 0)
            goto fail;
        int c = toml_peek(p, 0);
        if (c == ',') {
            p->pos++;
        } else if (c == ']') {
            p->pos++;
            break;
        } else {
            char found[32];
            toml_fail(p, p->pos,
                      "expected ',' or ']' after an array item (the array opened at line %d), "
                      "found %s",
                      array->line, found_at(p, found, sizeof found));
            goto fail;
        }
    }
    *out = array;
    return 0;
fail:
    toml_value_free(array);
    return -1;
}

static int parse_inline_table(TomlParser *p, int depth, TomlValue **out) {
    TomlValue *table = new_value(p, TOML_TABLE, p->pos, depth);
    if (!table)
        return -1;
    p->pos++; /* '{' */
    toml_skip_ws(p);
    if (toml_peek(p, 0) == '}') {
        p->pos++;
    } else {
        for (;;) {
            toml_skip_ws(p);
            if (toml_at_newline(p) || toml_peek(p, 0) == '#') {
                char found[32];
                toml_fail(p, p->pos,
                          "expected a key in the inline table (which must stay on one line), "
                          "found %s",
                          found_at(p, found, sizeof found));
                goto fail;
            }
            if (parse_keyval(p, table) != 0)
                goto fail;
            toml_skip_ws(p);
            int c = toml_peek(p, 0);
            if (c == ',') {
                p->pos++;
                toml_skip_ws(p);
                if (toml_peek(p, 0) == '}') {
                    toml_fail(p, p->pos, "a trailing comma is not allowed in an inline table");
                    goto fail;
                }
            } else if (c == '}') {
                p->pos++;
                break;
            } else {
                char found[32];
                toml_fail(p, p->pos,
                          "expected ',' or '}' in an inline table (which must stay on one line), "
                          "found %s",
                          found_at(p, found, sizeof found));
                goto fail;
            }
        }
    }
    table->flags |= TOML_FLAG_INLINE;
    *out = table;
    return 0;
fail:
    toml_value_free(table);
    return -1;
}

static int parse_value(TomlParser *p, int depth, TomlValue **out) {
    *out = NULL;
    size_t start = p->pos;
    int c = toml_peek(p, 0);
    if (c == '[' || c == '{') {
        if (depth > TOML_MAX_DEPTH)
            return toml_fail(p, start, "nesting deeper than %d levels of tables and arrays",
                             TOML_MAX_DEPTH);
        return c == '[' ? parse_array(p, depth, out) : parse_inline_table(p, depth, out);
    }
    TomlValue *v = new_value(p, TOML_STRING, start, depth);
    if (!v)
        return -1;
    int rc = (c == '"' || c == '\'') ? toml_parse_string(p, &v->str, &v->str_len)
                                     : toml_parse_scalar(p, v);
    if (rc != 0) {
        toml_value_free(v);
        return -1;
    }
    *out = v;
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * [table] and [[array of tables]] headers */

/* Walks the header's parent keys from the root, creating implicit tables; *out gets the table
 * that will hold the last key. */
static int walk_header_parents(TomlParser *p, TomlKey *key, const char *header, TomlValue **out) {
    char name[256];
    TomlValue *t = p->root;
    for (size_t i = 0; i + 1 < key->count; i++) {
        TomlKeyPart *part = &key->parts[i];
        TomlEntry *e = toml_table_find(t, part->text, part->len);
        if (!e) {
            TomlValue *child = new_value(p, TOML_TABLE, part->offset, t->depth + 1);
            if (!child)
                return -1;
            child->flags = TOML_FLAG_IMPLICIT;
            char *text = part->text;
            part->text = NULL;
            if (toml_table_add(p, t, text, part->len, part->offset, child) != 0)
                return -1;
            t = child;
            continue;
        }
        TomlValue *v = e->value;
        toml_key_render(key, i + 1, name, sizeof name);
        if (v->kind == TOML_ARRAY && (v->flags & TOML_FLAG_AOT) && v->item_count > 0) {
            t = v->items[v->item_count - 1]; /* [a.b] after [[a]] goes into the last a */
        } else if (v->kind == TOML_ARRAY) {
            return toml_fail(p, part->offset,
                             "cannot define %s: '%s' is a static array (line %d), which cannot "
                             "be extended",
                             header, name, e->line);
        } else if (v->kind != TOML_TABLE) {
            return toml_fail(p, part->offset, "cannot define %s: '%s' is %s (line %d), not a table",
                             header, name, toml_kind_name(v->kind), e->line);
        } else if (v->flags & TOML_FLAG_INLINE) {
            return toml_fail(p, part->offset,
                             "cannot define %s: '%s' is an inline table (line %d), which cannot "
                             "be extended",
                             header, name, e->line);
        } else {
            t = v;
        }
    }
    *out = t;
    return 0;
}

static int define_header(TomlParser *p, TomlKey *key, bool aot, size_t start) {
    char name[256], header[260];
    toml_key_render(key, key->count, name, sizeof name);
    snprintf(header, sizeof header, aot ? "[[%s]]" : "[%s]", name);
    TomlValue *parent = NULL;
    if (walk_header_parents(p, key, header, &parent) != 0)
        return -1;
    TomlKeyPart *last = &key->parts[key->count - 1];
    TomlEntry *e = toml_table_find(parent, last->text, last->len);
    if (e) {
        TomlValue *v = e->value;
        if (!aot && v->kind == TOML_TABLE &&
            !(v->flags & (TOML_FLAG_HEADER | TOML_FLAG_DOTTED | TOML_FLAG_INLINE))) {
            /* Made implicitly by an earlier [a.b]: this header defines it now. */
            v->flags |= TOML_FLAG_HEADER;
            toml_line_col(p, start, &v->line, &v->column);
            e->line = v->line;
            e->column = v->column;
            p->current = v;
            return 0;
        }
        if (aot && v->kind == TOML_ARRAY && (v->flags & TOML_FLAG_AOT)) {
            TomlValue *element = new_value(p, TOML_TABLE, start, v->depth + 1);
            if (!element || toml_array_push(p, v, element, start) != 0)
                return -1;
            element->flags = TOML_FLAG_HEADER;
            p->current = element;
            return 0;
        }
        if (v->kind == TOML_TABLE)
            return toml_fail(p, start,
                             "cannot define %s: table '%s' was already defined %s at line %d",
                             header, name, how_defined(v), e->line);
        if (v->kind == TOML_ARRAY && (v->flags & TOML_FLAG_AOT))
            return toml_fail(p, start,
                             "cannot define %s: '%s' is an array of tables (line %d); write "
                             "[[%s]] to add an element",
                             header, name, e->line, name);
        return toml_fail(p, start, "cannot define %s: key '%s' already holds %s (line %d)", header,
                         name, what_it_is(v), e->line);
    }
    TomlValue *table = new_value(p, TOML_TABLE, start, parent->depth + (aot ? 2 : 1));
    if (!table)
        return -1;
    table->flags = TOML_FLAG_HEADER;
    TomlValue *holder = table;
    if (aot) {
        holder = new_value(p, TOML_ARRAY, start, parent->depth + 1);
        if (!holder) {
            toml_value_free(table);
            return -1;
        }
        holder->flags = TOML_FLAG_AOT;
        if (toml_array_push(p, holder, table, start) != 0) {
            toml_value_free(holder);
            return -1;
        }
    }
    char *text = last->text;
    last->text = NULL;
    if (toml_table_add(p, parent, text, last->len, last->offset, holder) != 0)
        return -1;
    if (aot)
        table->depth = holder->depth + 1;
    toml_line_col(p, start, &holder->line, &holder->column);
    p->current = table;
    return 0;
}

static int parse_header(TomlParser *p) {
    size_t start = p->pos;
    bool aot = toml_peek(p, 1) == '[';
    p->pos += aot ? 2 : 1;
    toml_skip_ws(p);
    TomlKey key = {0};
    int rc = -1;
    if (toml_parse_key(p, &key) != 0)
        goto done;
    toml_skip_ws(p);
    if (toml_peek(p, 0) != ']' || (aot && toml_peek(p, 1) != ']')) {
        char found[32];
        if (toml_peek(p, 0) == ']')
            p->pos++; /* "[[a] ]": point at what stands where the second ']' should be */
        toml_fail(p, p->pos, "expected '%s' to close the %s header, found %s", aot ? "]]" : "]",
                  aot ? "array-of-tables" : "table", found_at(p, found, sizeof found));
        goto done;
    }
    p->pos += aot ? 2 : 1;
    rc = define_header(p, &key, aot, start);
done:
    toml_key_free(&key);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Document */

static int parse_document(TomlParser *p) {
    for (;;) {
        toml_skip_ws(p);
        if (p->pos >= p->len)
            return 0;
        int c = toml_peek(p, 0);
        const char *after = NULL;
        if (c == '#') {
            if (toml_skip_comment(p) != 0)
                return -1;
        } else if (toml_at_newline(p)) {
            /* blank line */
        } else if (c == '[') {
            if (parse_header(p) != 0)
                return -1;
            after = "the table header";
        } else {
            if (parse_keyval(p, p->current) != 0)
                return -1;
            after = "the value";
        }
        toml_skip_ws(p);
        if (toml_peek(p, 0) == '#' && toml_skip_comment(p) != 0)
            return -1;
        if (p->pos >= p->len)
            return 0;
        if (!toml_at_newline(p)) {
            char found[32];
            return toml_fail(p, p->pos, "expected the end of the line after %s, found %s",
                             after ? after : "the comment", found_at(p, found, sizeof found));
        }
        p->pos += toml_peek(p, 0) == '\r' ? 2 : 1;
    }
}

int toml_parse(const char *name, const char *text, size_t len, TomlValue **root, Error *err) {
    *root = NULL;
    TomlParser p;
    memset(&p, 0, sizeof p);
    p.name = name ? name : "<toml>";
    p.text = text ? text : "";
    p.len = text ? len : 0;
    p.err = err;
    char *source = malloc(strlen(p.name) + 1);
    if (!source)
        return error_set(err, "%s: out of memory", p.name);
    strcpy(source, p.name);
    p.source = source;
    if (p.len >= 3 && memcmp(p.text, "\xEF\xBB\xBF", 3) == 0)
        p.bom_len = p.pos = 3;
    if (toml_check_utf8(&p) != 0 || toml_index_lines(&p) != 0) {
        free(source);
        return -1;
    }
    p.root = p.current = new_value(&p, TOML_TABLE, p.pos, 0);
    if (!p.root) {
        free(p.line_starts);
        free(source);
        return -1;
    }
    int rc = parse_document(&p);
    free(p.line_starts);
    if (rc != 0) {
        toml_free(p.root);
        return -1;
    }
    *root = p.root;
    return 0;
}
