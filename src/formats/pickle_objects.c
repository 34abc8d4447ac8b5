/* The unpickler's object opcodes: globals checked against the allow-list, calls of allowed
 * globals (tensor rebuilds, OrderedDict, torch.Size, inert classes), BUILD, torch's
 * persistent storage ids, the memo and sets. Nothing here calls anything from the file. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/pickle.h"
#include "formats/pickle_globals.h"
#include "formats/pickle_internal.h"

/* ------------------------------------------------------------------------------------------
 * Globals, calls, persistent ids */

/* Module and class names come from the file: cut long ones, hide control characters. */
static void printable(const char *s, char *buf, size_t size) {
    size_t n = 0;
    for (; s[n] && n + 4 < size; n++)
        buf[n] = ((unsigned char)s[n] < 0x20 || s[n] == 0x7f) ? '?' : s[n];
    if (s[n])
        memcpy(buf + n, "...", 3), n += 3;
    buf[n] = '\0';
}

static int push_global(Reader *r, const char *module, size_t module_len, const char *name,
                       size_t name_len) {
    if (memchr(module, 0, module_len) || memchr(name, 0, name_len))
        return reader_fail(r, "global name holds a NUL byte");
    PickleValue *m = reader_bytes(r, PICKLE_STR, module, module_len);
    PickleValue *n = m ? reader_bytes(r, PICKLE_STR, name, name_len) : NULL;
    if (!n)
        return -1;
    PickleValue *g = reader_new(r, PICKLE_GLOBAL);
    if (!g)
        return -1;
    if (!pickle_global_lookup(m->data, n->data, &g->role, &g->dtype, &g->dtype_known)) {
        char mb[120], nb[120];
        printable(m->data, mb, sizeof mb);
        printable(n->data, nb, sizeof nb);
        return reader_fail(r,
                           "refusing to load global '%s.%s': not part of a torch state dict (this "
                           "file may be malicious)",
                           mb, nb);
    }
    /* The names move to the global; the two scratch strings stay empty in the doc. */
    g->module = m->data;
    g->name = n->data;
    m->data = n->data = NULL;
    m->len = n->len = 0;
    return reader_push(r, g);
}

static bool is_int(const PickleValue *v) {
    return v->kind == PICKLE_INT && !v->big_integer;
}

static int int_tuple(Reader *r, const PickleValue *v, int64_t *out, int *n, const char *what) {
    if (v->kind != PICKLE_TUPLE && v->kind != PICKLE_LIST)
        return reader_fail(r, "tensor %s is a %s, not a tuple", what, pickle_kind_name(v));
    if (v->count > TENSOR_MAX_DIMS)
        return reader_fail(r, "tensor has %zu dimensions (at most %d supported)", v->count,
                           TENSOR_MAX_DIMS);
    for (size_t i = 0; i < v->count; i++) {
        if (!is_int(v->items[i]) || v->items[i]->integer < 0)
            return reader_fail(r, "tensor %s entry %zu is not a non-negative integer", what, i);
        out[i] = v->items[i]->integer;
    }
    *n = (int)v->count;
    return 0;
}

/* _rebuild_tensor(storage, offset, size, stride) and _rebuild_tensor_v2(..., requires_grad,
 * backward_hooks[, metadata]). The view must lie inside the storage. */
static PickleValue *rebuild_tensor(Reader *r, const PickleValue *args) {
    if (args->count < 4 || args->count > 7) {
        reader_fail(r, "_rebuild_tensor called with %zu arguments", args->count);
        return NULL;
    }
    const PickleValue *storage = args->items[0], *offset = args->items[1];
    if (storage->kind != PICKLE_STORAGE) {
        reader_fail(r, "_rebuild_tensor: first argument is a %s, not a storage",
                    pickle_kind_name(storage));
        return NULL;
    }
    if (!is_int(offset) || offset->integer < 0) {
        reader_fail(r, "_rebuild_tensor: bad storage offset");
        return NULL;
    }
    PickleValue *t = reader_new(r, PICKLE_TENSOR);
    if (!t)
        return NULL;
    PickleTensor *pt = &t->tensor;
    int stride_dims = 0;
    if (int_tuple(r, args->items[2], pt->shape, &pt->ndim, "size") != 0 ||
        int_tuple(r, args->items[3], pt->stride, &stride_dims, "stride") != 0)
        return NULL;
    if (stride_dims != pt->ndim) {
        reader_fail(r, "tensor has %d sizes but %d strides", pt->ndim, stride_dims);
        return NULL;
    }
    pt->storage = (PickleValue *)storage;
    pt->storage_offset = offset->integer;
    if (args->count > 4)
        pt->requires_grad = args->items[4]->kind == PICKLE_BOOL && args->items[4]->boolean;
    int64_t numel = 1;
    for (int d = 0; d < pt->ndim; d++)
        if (__builtin_mul_overflow(numel, pt->shape[d], &numel)) {
            reader_fail(r, "tensor element count overflows 64 bits");
            return NULL;
        }
    /* Last element index = offset + sum((size - 1) * stride), unless the tensor is empty. */
    uint64_t last = (uint64_t)pt->storage_offset;
    bool empty = false;
    for (int d = 0; d < pt->ndim; d++)
        empty |= pt->shape[d] == 0;
    for (int d = 0; d < pt->ndim && !empty; d++) {
        uint64_t span;
        if (__builtin_mul_overflow((uint64_t)(pt->shape[d] - 1), (uint64_t)pt->stride[d], &span) ||
            __builtin_add_overflow(last, span, &last) || last > (uint64_t)INT64_MAX) {
            reader_fail(r, "tensor extent overflows 64 bits");
            return NULL;
        }
    }
    if (!empty && last >= (uint64_t)storage->storage.numel) {
        reader_fail(r, "tensor reaches element %llu of storage '%s', which holds %lld elements",
                    (unsigned long long)last, storage->storage.key,
                    (long long)storage->storage.numel);
        return NULL;
    }
    return t;
}

/* _rebuild_parameter(tensor, requires_grad, hooks[, state]): the same tensor, marked. */
static PickleValue *rebuild_parameter(Reader *r, const PickleValue *args) {
    if (args->count < 1 || args->items[0]->kind != PICKLE_TENSOR) {
        reader_fail(r, "_rebuild_parameter without a tensor argument");
        return NULL;
    }
    PickleValue *t = reader_new(r, PICKLE_TENSOR);
    if (!t)
        return NULL;
    t->tensor = args->items[0]->tensor;
    t->tensor.name = NULL;
    t->tensor.is_parameter = true;
    t->tensor.requires_grad =
        args->count > 1 && args->items[1]->kind == PICKLE_BOOL && args->items[1]->boolean;
    return t;
}

static PickleValue *inert_object(Reader *r, const PickleValue *cls, PickleValue *args) {
    PickleValue *o = reader_new(r, PICKLE_OBJECT);
    if (!o)
        return NULL;
    o->module = strdup(cls->module);
    o->name = strdup(cls->name);
    if (!o->module || !o->name) {
        reader_fail(r, "out of memory");
        return NULL;
    }
    o->args = args;
    return o;
}

/* What calling (REDUCE) or instantiating (NEWOBJ, OBJ, INST) an allowed global gives. */
static PickleValue *call_global(Reader *r, const PickleValue *fn, PickleValue *args,
                                bool from_type) {
    if (fn->kind != PICKLE_GLOBAL) {
        reader_fail(r, "cannot call a %s", pickle_kind_name(fn));
        return NULL;
    }
    if (args->kind != PICKLE_TUPLE) {
        reader_fail(r, "arguments of '%s.%s' are a %s, not a tuple", fn->module, fn->name,
                    pickle_kind_name(args));
        return NULL;
    }
    PickleValue *v;
    switch (fn->role) {
    case GLOBAL_INERT:
        return inert_object(r, fn, args);
    case GLOBAL_ORDERED_DICT:
        if ((v = reader_new(r, PICKLE_DICT)) == NULL)
            return NULL;
        v->ordered = true;
        if (args->count == 1 &&
            (args->items[0]->kind == PICKLE_LIST || args->items[0]->kind == PICKLE_TUPLE)) {
            const PickleValue *pairs = args->items[0];
            for (size_t i = 0; i < pairs->count; i++) {
                const PickleValue *p = pairs->items[i];
                if ((p->kind != PICKLE_TUPLE && p->kind != PICKLE_LIST) || p->count != 2 ||
                    !pickle_is_hashable(p->items[0], 0)) {
                    reader_fail(r, "OrderedDict item %zu is not a (hashable key, value) pair", i);
                    return NULL;
                }
                if (pickle_dict_append(v, p->items[0], p->items[1]) != 0) {
                    reader_fail(r, "out of memory");
                    return NULL;
                }
            }
        } else if (args->count != 0) {
            reader_fail(r, "OrderedDict called with unexpected arguments");
            return NULL;
        }
        return v;
    case GLOBAL_REBUILD_TENSOR:
        return rebuild_tensor(r, args);
    case GLOBAL_REBUILD_PARAMETER:
        return rebuild_parameter(r, args);
    case GLOBAL_REBUILD_FROM_TYPE:
        /* _rebuild_from_type_v2(func, type, args, state): func(*args), state dropped */
        if (from_type || args->count != 4 || args->items[1]->kind != PICKLE_GLOBAL ||
            args->items[1]->role != GLOBAL_TENSOR_CLASS || args->items[0]->kind != PICKLE_GLOBAL ||
            (args->items[0]->role != GLOBAL_REBUILD_TENSOR &&
             args->items[0]->role != GLOBAL_REBUILD_PARAMETER)) {
            reader_fail(r, "_rebuild_from_type_v2 with arguments other than a tensor rebuild");
            return NULL;
        }
        v = call_global(r, args->items[0], args->items[2], true);
        if (v && strcmp(args->items[1]->name, "Parameter") == 0)
            v->tensor.is_parameter = true;
        return v;
    case GLOBAL_SIZE:
        if (args->count != 1 ||
            (args->items[0]->kind != PICKLE_TUPLE && args->items[0]->kind != PICKLE_LIST)) {
            reader_fail(r, "torch.Size called without a tuple");
            return NULL;
        }
        if ((v = reader_new(r, PICKLE_TUPLE)) == NULL)
            return NULL;
        for (size_t i = 0; i < args->items[0]->count; i++)
            if (pickle_append(v, args->items[0]->items[i]) != 0) {
                reader_fail(r, "out of memory");
                return NULL;
            }
        return v;
    default: {
        char mb[120], nb[120];
        printable(fn->module, mb, sizeof mb);
        printable(fn->name, nb, sizeof nb);
        reader_fail(r, "'%s.%s' cannot be called in a torch state dict", mb, nb);
        return NULL;
    }
    }
}

/* ('storage', storage_type, key, location, numel[, view_metadata]): zip files give five
 * items, legacy files six (view_metadata None, or (view_key, offset, size) for old views). */
static int persistent_load(Reader *r, const PickleValue *pid) {
    if (pid->kind != PICKLE_TUPLE || pid->count < 5 || pid->count > 6 ||
        !pickle_is_str(pid->items[0], "storage"))
        return reader_fail(r,
                           "persistent id is not a ('storage', type, key, location, size) tuple");
    const PickleValue *type = pid->items[1], *key = pid->items[2], *loc = pid->items[3],
                      *numel = pid->items[4];
    if (type->kind != PICKLE_GLOBAL || type->role != GLOBAL_STORAGE_CLASS)
        return reader_fail(r, "persistent id names a %s, not a torch storage class",
                           pickle_kind_name(type));
    if (key->kind != PICKLE_STR || memchr(key->data, 0, key->len) || loc->kind != PICKLE_STR ||
        memchr(loc->data, 0, loc->len) || !is_int(numel) || numel->integer < 0)
        return reader_fail(r, "persistent id has a bad key, location or size");
    PickleValue *s = reader_new(r, PICKLE_STORAGE);
    if (!s)
        return -1;
    s->storage.dtype = type->dtype;
    s->storage.numel = numel->integer;
    s->storage.key = strdup(key->data);
    s->storage.location = strdup(loc->data);
    if (!s->storage.key || !s->storage.location)
        return reader_fail(r, "out of memory");
    if (pid->count == 6 && pid->items[5]->kind != PICKLE_NONE) {
        const PickleValue *view = pid->items[5];
        if (view->kind != PICKLE_TUPLE || view->count != 3 || !is_int(view->items[1]) ||
            !is_int(view->items[2]) || view->items[1]->integer < 0 || view->items[2]->integer < 0 ||
            view->items[1]->integer > numel->integer - view->items[2]->integer)
            return reader_fail(r, "storage view of '%s' lies outside it", s->storage.key);
        s->storage.view_offset = view->items[1]->integer;
        s->storage.numel = view->items[2]->integer;
    }
    return reader_push(r, s);
}

static int build(Reader *r) {
    PickleValue *state, *obj;
    if (reader_pop(r, &state, "BUILD") != 0 || reader_peek(r, &obj, "BUILD") != 0)
        return -1;
    switch (obj->kind) {
    case PICKLE_OBJECT:
        obj->state = state;
        return 0;
    case PICKLE_DICT:   /* an OrderedDict's attributes: nothing we use */
    case PICKLE_TENSOR: /* Python attributes of a tensor (_rebuild_from_type_v2): ignored */
        return 0;
    default:
        return reader_fail(r, "BUILD on a %s", pickle_kind_name(obj));
    }
}

/* Sets: kept as inert builtins.set objects whose single argument is the list of items. */
static int push_set(Reader *r, bool frozen, size_t start) {
    PickleValue *list = reader_new(r, PICKLE_LIST), *args = reader_new(r, PICKLE_TUPLE);
    PickleValue *o = reader_new(r, PICKLE_OBJECT);
    if (!list || !args || !o)
        return -1;
    o->module = strdup("builtins");
    o->name = strdup(frozen ? "frozenset" : "set");
    if (!o->module || !o->name || pickle_append(args, list) != 0)
        return reader_fail(r, "out of memory");
    o->args = args;
    for (size_t i = start; i < r->sp; i++)
        if (pickle_append(list, r->stack[i]) != 0)
            return reader_fail(r, "out of memory");
    r->sp = start;
    return reader_push(r, o);
}

static int read_line_int(Reader *r, uint64_t *out) {
    const char *line;
    size_t len;
    if (reader_line(r, &line, &len) != 0)
        return -1;
    if (len == 0 || len > 19)
        return reader_fail(r, "bad memo index");
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (line[i] < '0' || line[i] > '9')
            return reader_fail(r, "bad memo index");
        v = v * 10 + (uint64_t)(line[i] - '0');
    }
    *out = v;
    return 0;
}

int reader_step_objects(Reader *r, unsigned char op) {
    PickleValue *a, *b, *c;
    size_t start = 0;
    uint64_t k;
    const char *m, *n;
    size_t ml, nl;
    switch (op) {
    case 'c': /* GLOBAL: "module\nname\n" */
        if (reader_line(r, &m, &ml) != 0 || reader_line(r, &n, &nl) != 0)
            return -1;
        return push_global(r, m, ml, n, nl);
    case 0x93: /* STACK_GLOBAL */
        if (reader_pop(r, &b, "STACK_GLOBAL") != 0 || reader_pop(r, &a, "STACK_GLOBAL") != 0)
            return -1;
        if (a->kind != PICKLE_STR || b->kind != PICKLE_STR)
            return reader_fail(r, "STACK_GLOBAL needs two strings");
        return push_global(r, a->data, a->len, b->data, b->len);
    case 'R': /* REDUCE */
        if (reader_pop(r, &b, "REDUCE") != 0 || reader_pop(r, &a, "REDUCE") != 0)
            return -1;
        return reader_push(r, call_global(r, a, b, false));
    case 0x81: /* NEWOBJ: cls.__new__(cls, *args) */
    case 0x92: /* NEWOBJ_EX: kwargs dropped */
        if (op == 0x92 && reader_pop(r, &c, "NEWOBJ_EX") != 0)
            return -1;
        if (reader_pop(r, &b, "NEWOBJ") != 0 || reader_pop(r, &a, "NEWOBJ") != 0)
            return -1;
        if (a->kind == PICKLE_GLOBAL && a->role != GLOBAL_INERT && a->role != GLOBAL_ORDERED_DICT)
            return reader_fail(r, "'%s.%s' cannot be instantiated in a torch state dict", a->module,
                               a->name);
        return reader_push(r, call_global(r, a, b, false));
    case 'o': /* OBJ: MARK cls args... */
        if (reader_pop_mark(r, &start, "OBJ") != 0)
            return -1;
        if (r->sp == start)
            return reader_fail(r, "OBJ without a class");
        a = r->stack[start];
        if (reader_push_sequence(r, PICKLE_TUPLE, start + 1) != 0)
            return -1;
        b = r->stack[--r->sp];
        r->sp = start;
        if (a->kind == PICKLE_GLOBAL && a->role != GLOBAL_INERT && a->role != GLOBAL_ORDERED_DICT)
            return reader_fail(r, "'%s.%s' cannot be instantiated in a torch state dict", a->module,
                               a->name);
        return reader_push(r, call_global(r, a, b, false));
    case 'i': /* INST: "module\nname\n", MARK args... */
        if (reader_line(r, &m, &ml) != 0 || reader_line(r, &n, &nl) != 0 ||
            push_global(r, m, ml, n, nl) != 0)
            return -1;
        a = r->stack[--r->sp];
        if (reader_pop_mark(r, &start, "INST") != 0 ||
            reader_push_sequence(r, PICKLE_TUPLE, start) != 0)
            return -1;
        b = r->stack[--r->sp];
        if (a->role != GLOBAL_INERT && a->role != GLOBAL_ORDERED_DICT)
            return reader_fail(r, "'%s.%s' cannot be instantiated in a torch state dict", a->module,
                               a->name);
        return reader_push(r, call_global(r, a, b, false));
    case 'b':
        return build(r);
    case 'Q': /* BINPERSID */
        if (reader_pop(r, &a, "BINPERSID") != 0)
            return -1;
        return persistent_load(r, a);
    case 'P': /* PERSID: a text id, which torch never writes */
        if (reader_line(r, &m, &ml) != 0)
            return -1;
        return reader_fail(r, "text persistent id: not a torch storage reference");
    case 'q': /* BINPUT */
        if (reader_need(r, 1, "BINPUT") != 0)
            return -1;
        return reader_put_top(r, reader_le(r, 1));
    case 'r': /* LONG_BINPUT */
        if (reader_need(r, 4, "LONG_BINPUT") != 0)
            return -1;
        return reader_put_top(r, reader_le(r, 4));
    case 'p': /* PUT */
        return read_line_int(r, &k) != 0 ? -1 : reader_put_top(r, k);
    case 0x94: /* MEMOIZE */
        return reader_put_top(r, r->memo.count);
    case 'h': /* BINGET */
        if (reader_need(r, 1, "BINGET") != 0)
            return -1;
        return reader_memo_get(r, reader_le(r, 1));
    case 'j': /* LONG_BINGET */
        if (reader_need(r, 4, "LONG_BINGET") != 0)
            return -1;
        return reader_memo_get(r, reader_le(r, 4));
    case 'g': /* GET */
        return read_line_int(r, &k) != 0 ? -1 : reader_memo_get(r, k);
    case 0x8f: /* EMPTY_SET */
        return push_set(r, false, r->sp);
    case 0x91: /* FROZENSET */
        return reader_pop_mark(r, &start, "FROZENSET") != 0 ? -1 : push_set(r, true, start);
    case 0x90: /* ADDITEMS */
        if (reader_pop_mark(r, &start, "ADDITEMS") != 0)
            return -1;
        if (start == 0 || start <= reader_fence(r))
            return reader_fail(r, "ADDITEMS: stack underflow (no set below the mark)");
        a = r->stack[start - 1];
        if (a->kind != PICKLE_OBJECT || !a->args || a->args->count != 1 ||
            strcmp(a->name, "set") != 0 || a->args->items[0]->kind != PICKLE_LIST)
            return reader_fail(r, "ADDITEMS on a %s", pickle_kind_name(a));
        return reader_append_items(r, a->args->items[0], start, "ADDITEMS");
    case 0x98: /* READONLY_BUFFER: no effect on our values */
        return reader_peek(r, &a, "READONLY_BUFFER");
    case 0x82:
    case 0x83:
    case 0x84:
        return reader_fail(r, "extension-registry opcode 0x%02x: not used by torch", op);
    case 0x97:
        return reader_fail(r, "out-of-band buffer (NEXT_BUFFER): not used by torch");
    default:
        return reader_fail(r, "unknown opcode 0x%02x (not a pickle, or a corrupt one)", op);
    }
}
