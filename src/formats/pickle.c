/* Pickle value trees: allocation, construction, lookup, and the checks pickle_parse runs on a
 * finished tree (duplicate dict keys, cycles, depth, shared-reference blow-up). */
#define _POSIX_C_SOURCE 200809L
#include "formats/pickle.h"

#include <stdlib.h>
#include <string.h>

#include "formats/pickle_internal.h"

void pickle_doc_init(PickleDoc *doc) {
    memset(doc, 0, sizeof *doc);
}

static void value_free(PickleValue *v) {
    free(v->data);
    free(v->items);
    free(v->keys);
    free(v->module);
    free(v->name);
    free(v->storage.key);
    free(v->storage.location);
    free(v->tensor.name);
    free(v);
}

void pickle_doc_free(PickleDoc *doc) {
    if (!doc)
        return;
    for (size_t i = 0; i < doc->value_count; i++)
        value_free(doc->values[i]);
    free(doc->values);
    memset(doc, 0, sizeof *doc);
}

PickleValue *pickle_new(PickleDoc *doc, PickleKind kind) {
    if (doc->value_count == doc->value_capacity) {
        size_t cap = doc->value_capacity ? doc->value_capacity * 2 : 64;
        PickleValue **grown = realloc(doc->values, cap * sizeof *grown);
        if (!grown)
            return NULL;
        doc->values = grown;
        doc->value_capacity = cap;
    }
    PickleValue *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    v->kind = kind;
    doc->values[doc->value_count++] = v;
    return v;
}

PickleValue *pickle_new_int(PickleDoc *doc, int64_t value) {
    PickleValue *v = pickle_new(doc, PICKLE_INT);
    if (v)
        v->integer = value;
    return v;
}

PickleValue *pickle_new_float(PickleDoc *doc, double value) {
    PickleValue *v = pickle_new(doc, PICKLE_FLOAT);
    if (v)
        v->real = value;
    return v;
}

PickleValue *pickle_new_bool(PickleDoc *doc, bool value) {
    PickleValue *v = pickle_new(doc, PICKLE_BOOL);
    if (v)
        v->boolean = value;
    return v;
}

PickleValue *pickle_new_strn(PickleDoc *doc, const char *s, size_t len) {
    char *copy = malloc(len + 1);
    if (!copy)
        return NULL;
    memcpy(copy, s, len);
    copy[len] = '\0';
    PickleValue *v = pickle_new(doc, PICKLE_STR);
    if (!v) {
        free(copy);
        return NULL;
    }
    v->data = copy;
    v->len = len;
    return v;
}

PickleValue *pickle_new_str(PickleDoc *doc, const char *s) {
    return pickle_new_strn(doc, s, strlen(s));
}

PickleValue *pickle_new_tensor(PickleDoc *doc, const char *name, bool parameter,
                               bool requires_grad) {
    char *copy = strdup(name);
    if (!copy)
        return NULL;
    PickleValue *v = pickle_new(doc, PICKLE_TENSOR);
    if (!v) {
        free(copy);
        return NULL;
    }
    v->tensor.name = copy;
    v->tensor.is_parameter = parameter;
    v->tensor.requires_grad = requires_grad;
    return v;
}

static int reserve(PickleValue *v, size_t extra, bool with_keys) {
    if (v->count + extra <= v->capacity)
        return 0;
    size_t cap = v->capacity ? v->capacity : 4;
    while (cap < v->count + extra)
        cap *= 2;
    PickleValue **items = realloc(v->items, cap * sizeof *items);
    if (!items)
        return -1;
    v->items = items;
    if (with_keys) {
        PickleValue **keys = realloc(v->keys, cap * sizeof *keys);
        if (!keys)
            return -1;
        v->keys = keys;
    }
    v->capacity = cap;
    return 0;
}

int pickle_append(PickleValue *seq, PickleValue *item) {
    if (!seq || !item || reserve(seq, 1, false) != 0)
        return -1;
    seq->items[seq->count++] = item;
    return 0;
}

int pickle_dict_append(PickleValue *dict, PickleValue *key, PickleValue *value) {
    if (!dict || !key || !value || reserve(dict, 1, true) != 0)
        return -1;
    dict->keys[dict->count] = key;
    dict->items[dict->count++] = value;
    return 0;
}

int pickle_dict_set(PickleDoc *doc, PickleValue *dict, const char *key, PickleValue *value) {
    return pickle_dict_append(dict, pickle_new_str(doc, key), value);
}

bool pickle_is_str(const PickleValue *v, const char *s) {
    return v && v->kind == PICKLE_STR && v->len == strlen(s) && memcmp(v->data, s, v->len) == 0;
}

const PickleValue *pickle_dict_get(const PickleValue *dict, const char *key) {
    if (!dict || dict->kind != PICKLE_DICT)
        return NULL;
    for (size_t i = dict->count; i-- > 0;)
        if (pickle_is_str(dict->keys[i], key))
            return dict->items[i];
    return NULL;
}

const char *pickle_kind_name(const PickleValue *v) {
    if (!v)
        return "nothing";
    switch (v->kind) {
    case PICKLE_NONE:
        return "None";
    case PICKLE_BOOL:
        return "bool";
    case PICKLE_INT:
        return "int";
    case PICKLE_FLOAT:
        return "float";
    case PICKLE_STR:
        return "str";
    case PICKLE_BYTES:
        return "bytes";
    case PICKLE_TUPLE:
        return "tuple";
    case PICKLE_LIST:
        return "list";
    case PICKLE_DICT:
        return v->ordered ? "OrderedDict" : "dict";
    case PICKLE_GLOBAL:
        return "global";
    case PICKLE_OBJECT:
        return "object";
    case PICKLE_STORAGE:
        return "storage";
    case PICKLE_TENSOR:
        return "tensor";
    }
    return "?";
}

/* ------------------------------------------------------------------------------------------
 * Hashable keys: what Python accepts as dict keys among our kinds, with its equality. */

bool pickle_is_hashable(const PickleValue *v, int depth) {
    if (depth > PICKLE_MAX_DEPTH)
        return false;
    switch (v->kind) {
    case PICKLE_NONE:
    case PICKLE_BOOL:
    case PICKLE_INT:
    case PICKLE_FLOAT:
    case PICKLE_STR:
    case PICKLE_BYTES:
    case PICKLE_GLOBAL:
        return true;
    case PICKLE_TUPLE:
        for (size_t i = 0; i < v->count; i++)
            if (!pickle_is_hashable(v->items[i], depth + 1))
                return false;
        return true;
    default:
        return false;
    }
}

static uint64_t hash_bytes(uint64_t h, const void *data, size_t len) {
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* Only called on hashable values, whose nesting pickle_is_hashable bounded. */
static uint64_t key_hash(const PickleValue *v) {
    uint64_t h = 1469598103934665603ull ^ (uint64_t)v->kind;
    switch (v->kind) {
    case PICKLE_BOOL:
    case PICKLE_INT: {
        int64_t i = v->kind == PICKLE_BOOL ? v->boolean : v->integer;
        return hash_bytes(1469598103934665603ull, &i, sizeof i);
    }
    case PICKLE_FLOAT:
        return hash_bytes(h, &v->real, sizeof v->real);
    case PICKLE_STR:
    case PICKLE_BYTES:
        return hash_bytes(h, v->data, v->len);
    case PICKLE_GLOBAL:
        h = hash_bytes(h, v->module, strlen(v->module));
        return hash_bytes(h, v->name, strlen(v->name));
    case PICKLE_TUPLE:
        for (size_t i = 0; i < v->count; i++) {
            uint64_t k = key_hash(v->items[i]);
            h = hash_bytes(h, &k, sizeof k);
        }
        return h;
    default:
        return h;
    }
}

static bool key_equal(const PickleValue *a, const PickleValue *b) {
    if (a == b)
        return true;
    bool a_int = a->kind == PICKLE_INT || a->kind == PICKLE_BOOL;
    bool b_int = b->kind == PICKLE_INT || b->kind == PICKLE_BOOL;
    if (a_int && b_int) /* Python: True == 1 */
        return !a->big_integer && !b->big_integer &&
               (a->kind == PICKLE_BOOL ? a->boolean : a->integer) ==
                   (b->kind == PICKLE_BOOL ? b->boolean : b->integer);
    if (a->kind != b->kind)
        return false;
    switch (a->kind) {
    case PICKLE_NONE:
        return true;
    case PICKLE_FLOAT:
        return a->real == b->real;
    case PICKLE_STR:
    case PICKLE_BYTES:
        return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
    case PICKLE_GLOBAL:
        return strcmp(a->module, b->module) == 0 && strcmp(a->name, b->name) == 0;
    case PICKLE_TUPLE:
        if (a->count != b->count)
            return false;
        for (size_t i = 0; i < a->count; i++)
            if (!key_equal(a->items[i], b->items[i]))
                return false;
        return true;
    default:
        return false;
    }
}

/* Python keeps one entry per key: the first position, the last value. */
static int dedupe_dict(PickleValue *d) {
    if (d->count < 2)
        return 0;
    size_t cap = 16;
    while (cap < d->count * 2)
        cap *= 2;
    size_t *slots = calloc(cap, sizeof *slots); /* position + 1, 0 = empty */
    if (!slots)
        return -1;
    size_t out = 0;
    for (size_t i = 0; i < d->count; i++) {
        size_t s = (size_t)key_hash(d->keys[i]) & (cap - 1);
        while (slots[s] && !key_equal(d->keys[slots[s] - 1], d->keys[i]))
            s = (s + 1) & (cap - 1);
        if (slots[s]) {
            d->items[slots[s] - 1] = d->items[i];
            continue;
        }
        d->keys[out] = d->keys[i];
        d->items[out] = d->items[i];
        slots[s] = ++out;
    }
    d->count = out;
    free(slots);
    return 0;
}

/* Children a walker descends into: container items, dict keys and values, an object's
 * arguments and state. */
static size_t child_count(const PickleValue *v) {
    switch (v->kind) {
    case PICKLE_TUPLE:
    case PICKLE_LIST:
        return v->count;
    case PICKLE_DICT:
        return v->count * 2;
    case PICKLE_OBJECT:
        return 2;
    default:
        return 0;
    }
}

static const PickleValue *child_at(const PickleValue *v, size_t i) {
    switch (v->kind) {
    case PICKLE_TUPLE:
    case PICKLE_LIST:
        return v->items[i];
    case PICKLE_DICT:
        return i % 2 ? v->items[i / 2] : v->keys[i / 2];
    case PICKLE_OBJECT:
        return i ? v->state : v->args;
    default:
        return NULL;
    }
}

/* Height and expanded size (counting shared values once per reference), memoised per value
 * so the check is linear even when the file shares values many times. */
static int measure(PickleValue *v, int depth, PickleCheckState *st) {
    if (v->walk_state == 2)
        return 0;
    if (v->walk_state == 1)
        return pickle_check_fail(st, "a container contains itself (a cycle), which no torch "
                                     "state dict has");
    if (depth > PICKLE_MAX_DEPTH)
        return pickle_check_fail(st, "values nest deeper than %d levels", PICKLE_MAX_DEPTH);
    v->walk_state = 1;
    uint64_t expanded = 1;
    int height = 0;
    size_t n = child_count(v);
    for (size_t i = 0; i < n; i++) {
        PickleValue *c = (PickleValue *)child_at(v, i);
        if (!c)
            continue;
        if (measure(c, depth + 1, st) != 0)
            return -1;
        if (c->walk_height + 1 > height)
            height = c->walk_height + 1;
        expanded += c->walk_expanded;
        if (expanded > PICKLE_MAX_EXPANDED)
            return pickle_check_fail(st, "shared values expand to more than %d entries",
                                     PICKLE_MAX_EXPANDED);
    }
    v->walk_state = 2;
    v->walk_height = height;
    v->walk_expanded = expanded;
    return 0;
}

int pickle_check_tree(PickleDoc *doc, PickleCheckState *st) {
    for (size_t i = 0; i < doc->value_count; i++)
        if (doc->values[i]->kind == PICKLE_DICT && dedupe_dict(doc->values[i]) != 0)
            return pickle_check_fail(st, "out of memory");
    return measure(doc->root, 0, st);
}
