/* The pickle writer: protocol 2 with the memo use of Python's pickler, so a tree of the kind
 * torch.save gets gives the bytes torch.save writes (strings equal in value share one memo
 * entry, as Python's do when they are the same object). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/pickle.h"

typedef struct MemoString {
    const char *data;
    size_t len;
    size_t slot;
} MemoString;

typedef struct Writer {
    unsigned char *buf;
    size_t len, capacity;
    bool oom;
    size_t next_slot;
    MemoString *strings; /* strings and "module\nname" globals already written */
    size_t string_count, string_capacity;
    char **owned; /* global keys we built */
    size_t owned_count;
    const TensorSet *tensors;
    PickleWrittenStorage *storages;
    size_t storage_count;
    size_t *tensor_slots; /* memo slot of each storage's tensor value */
    Error *err;
} Writer;

static void emit(Writer *w, const void *data, size_t n) {
    if (w->oom)
        return;
    if (w->len + n > w->capacity) {
        size_t cap = w->capacity ? w->capacity : 4096;
        while (cap < w->len + n)
            cap *= 2;
        unsigned char *grown = realloc(w->buf, cap);
        if (!grown) {
            w->oom = true;
            return;
        }
        w->buf = grown;
        w->capacity = cap;
    }
    memcpy(w->buf + w->len, data, n);
    w->len += n;
}

static void emit_byte(Writer *w, unsigned char b) {
    emit(w, &b, 1);
}

static void emit_u32(Writer *w, uint32_t v) {
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    emit(w, b, 4);
}

static size_t put(Writer *w) {
    size_t slot = w->next_slot++;
    if (slot < 256) {
        emit_byte(w, 'q');
        emit_byte(w, (unsigned char)slot);
    } else {
        emit_byte(w, 'r');
        emit_u32(w, (uint32_t)slot);
    }
    return slot;
}

static void get(Writer *w, size_t slot) {
    if (slot < 256) {
        emit_byte(w, 'h');
        emit_byte(w, (unsigned char)slot);
    } else {
        emit_byte(w, 'j');
        emit_u32(w, (uint32_t)slot);
    }
}

/* Linear lookup: the memoised strings of an embedding or state dict number in the
 * thousands at most, and each is compared by length first. */
static const MemoString *find_string(const Writer *w, const char *s, size_t len) {
    for (size_t i = 0; i < w->string_count; i++)
        if (w->strings[i].len == len && memcmp(w->strings[i].data, s, len) == 0)
            return &w->strings[i];
    return NULL;
}

static void remember(Writer *w, const char *s, size_t len, size_t slot) {
    if (w->string_count == w->string_capacity) {
        size_t cap = w->string_capacity ? w->string_capacity * 2 : 64;
        MemoString *grown = realloc(w->strings, cap * sizeof *grown);
        if (!grown) {
            w->oom = true;
            return;
        }
        w->strings = grown;
        w->string_capacity = cap;
    }
    w->strings[w->string_count++] = (MemoString){s, len, slot};
}

static void write_str(Writer *w, const char *s, size_t len) {
    const MemoString *hit = find_string(w, s, len);
    if (hit) {
        get(w, hit->slot);
        return;
    }
    emit_byte(w, 'X');
    emit_u32(w, (uint32_t)len);
    emit(w, s, len);
    remember(w, s, len, put(w));
}

/* Globals share the string memo under "\x01module\nname", which no str value equals. */
static void write_global(Writer *w, const char *module, const char *name) {
    size_t len = strlen(module) + strlen(name) + 2;
    char *key = malloc(len + 1);
    char **owned = realloc(w->owned, (w->owned_count + 1) * sizeof *owned);
    if (!key || !owned) {
        free(key);
        if (owned)
            w->owned = owned;
        w->oom = true;
        return;
    }
    w->owned = owned;
    snprintf(key, len + 1, "\x01%s\n%s", module, name);
    const MemoString *hit = find_string(w, key, len);
    if (hit) {
        free(key);
        get(w, hit->slot);
        return;
    }
    w->owned[w->owned_count++] = key;
    emit_byte(w, 'c');
    emit(w, key + 1, len - 1);
    emit_byte(w, '\n');
    remember(w, key, len, put(w));
}

static void write_int(Writer *w, int64_t v) {
    if (v >= 0 && v <= 0xFF) {
        emit_byte(w, 'K');
        emit_byte(w, (unsigned char)v);
    } else if (v >= 0 && v <= 0xFFFF) {
        emit_byte(w, 'M');
        emit_byte(w, (unsigned char)v);
        emit_byte(w, (unsigned char)(v >> 8));
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
        emit_byte(w, 'J');
        emit_u32(w, (uint32_t)(int32_t)v);
    } else {
        /* LONG1: the shortest little-endian two's complement, as Python's encode_long. */
        unsigned char b[9];
        uint64_t u = (uint64_t)v;
        for (int i = 0; i < 8; i++)
            b[i] = (unsigned char)(u >> (8 * i));
        b[8] = v < 0 ? 0xFF : 0x00;
        int n = 9;
        while (n > 1 && ((b[n - 1] == 0x00 && !(b[n - 2] & 0x80)) ||
                         (b[n - 1] == 0xFF && (b[n - 2] & 0x80))))
            n--;
        emit_byte(w, 0x8a);
        emit_byte(w, (unsigned char)n);
        emit(w, b, (size_t)n);
    }
}

static void write_bool(Writer *w, bool b) {
    emit_byte(w, b ? 0x88 : 0x89);
}

static void write_int_tuple(Writer *w, const int64_t *v, int n) {
    if (n == 0) {
        emit_byte(w, ')');
        return;
    }
    if (n > 3)
        emit_byte(w, '(');
    for (int i = 0; i < n; i++)
        write_int(w, v[i]);
    emit_byte(w, n > 3 ? 't' : (unsigned char)(0x84 + n));
    put(w);
}

static const char *storage_class(DType dtype) {
    static const char *const names[DTYPE_COUNT] = {
        [DTYPE_BOOL] = "BoolStorage", [DTYPE_U8] = "ByteStorage",
        [DTYPE_I8] = "CharStorage",   [DTYPE_I16] = "ShortStorage",
        [DTYPE_I32] = "IntStorage",   [DTYPE_I64] = "LongStorage",
        [DTYPE_F16] = "HalfStorage",  [DTYPE_BF16] = "BFloat16Storage",
        [DTYPE_F32] = "FloatStorage", [DTYPE_F64] = "DoubleStorage",
    };
    return (unsigned)dtype < DTYPE_COUNT ? names[dtype] : NULL;
}

/* collections.OrderedDict(), torch's empty backward_hooks. */
static void write_empty_ordered_dict(Writer *w) {
    write_global(w, "collections", "OrderedDict");
    emit_byte(w, ')');
    emit_byte(w, 'R');
    put(w);
}

static int write_tensor(Writer *w, const PickleValue *v) {
    const char *name = v->tensor.name;
    if (!name)
        return error_set(w->err, "pickle writer: a tensor value without a name");
    for (size_t i = 0; i < w->storage_count; i++)
        if (strcmp(w->storages[i].tensor->name, name) == 0) {
            get(w, w->tensor_slots[i]);
            return 0;
        }
    const NamedTensor *t = tensor_set_find(w->tensors, name);
    if (!t)
        return error_set(w->err, "pickle writer: tensor '%s' is not in the tensor set", name);
    if (!storage_class(t->dtype))
        return error_set(w->err, "pickle writer: tensor '%s' has no torch storage type", name);
    size_t index = w->storage_count;
    PickleWrittenStorage *grown = realloc(w->storages, (index + 1) * sizeof *grown);
    size_t *slots = grown ? realloc(w->tensor_slots, (index + 1) * sizeof *slots) : NULL;
    if (grown)
        w->storages = grown;
    if (!slots)
        return error_set(w->err, "pickle writer: out of memory");
    w->tensor_slots = slots;
    w->storages[index].tensor = t;
    w->storage_count++;

    if (v->tensor.is_parameter)
        write_global(w, "torch._utils", "_rebuild_parameter");
    write_global(w, "torch._utils", "_rebuild_tensor_v2");
    emit_byte(w, '(');
    /* persistent id ('storage', torch.<X>Storage, '<index>', 'cpu', numel) */
    char key[32];
    int key_len = snprintf(key, sizeof key, "%zu", index);
    emit_byte(w, '(');
    write_str(w, "storage", 7);
    write_global(w, "torch", storage_class(t->dtype));
    /* The key must outlive the writer's string memo: keep it in the owned list. */
    char *kept = strdup(key);
    char **owned = kept ? realloc(w->owned, (w->owned_count + 1) * sizeof *owned) : NULL;
    if (!owned) {
        free(kept);
        return error_set(w->err, "pickle writer: out of memory");
    }
    w->owned = owned;
    w->owned[w->owned_count++] = kept;
    write_str(w, kept, (size_t)key_len);
    write_str(w, "cpu", 3);
    write_int(w, tensor_numel(t));
    emit_byte(w, 't');
    put(w);
    emit_byte(w, 'Q');
    write_int(w, 0); /* storage offset */
    int64_t stride[TENSOR_MAX_DIMS];
    int64_t s = 1;
    for (int d = t->ndim - 1; d >= 0; d--) { /* torch's contiguous strides */
        stride[d] = s;
        s *= t->shape[d] > 1 ? t->shape[d] : 1;
    }
    write_int_tuple(w, t->shape, t->ndim);
    write_int_tuple(w, stride, t->ndim);
    write_bool(w, v->tensor.is_parameter ? false : v->tensor.requires_grad);
    write_empty_ordered_dict(w);
    emit_byte(w, 't');
    put(w);
    emit_byte(w, 'R');
    size_t slot = put(w);
    if (v->tensor.is_parameter) {
        write_bool(w, v->tensor.requires_grad);
        write_empty_ordered_dict(w);
        emit_byte(w, 0x87); /* TUPLE3 */
        put(w);
        emit_byte(w, 'R');
        slot = put(w);
    }
    w->tensor_slots[index] = slot;
    return 0;
}

static int write_value(Writer *w, const PickleValue *v, int depth);

static int write_items(Writer *w, const PickleValue *v, bool dict, int depth) {
    /* Python's batches: 1000 per MARK ... APPENDS/SETITEMS, a single one without MARK */
    for (size_t start = 0; start < v->count; start += 1000) {
        size_t n = v->count - start < 1000 ? v->count - start : 1000;
        if (n > 1)
            emit_byte(w, '(');
        for (size_t i = start; i < start + n; i++) {
            if ((dict && write_value(w, v->keys[i], depth + 1) != 0) ||
                write_value(w, v->items[i], depth + 1) != 0)
                return -1;
        }
        emit_byte(w, dict ? (n > 1 ? 'u' : 's') : (n > 1 ? 'e' : 'a'));
    }
    return 0;
}

static int write_value(Writer *w, const PickleValue *v, int depth) {
    if (depth > PICKLE_MAX_DEPTH)
        return error_set(w->err, "pickle writer: values nest deeper than %d levels",
                         PICKLE_MAX_DEPTH);
    switch (v->kind) {
    case PICKLE_NONE:
        emit_byte(w, 'N');
        return 0;
    case PICKLE_BOOL:
        write_bool(w, v->boolean);
        return 0;
    case PICKLE_INT:
        if (v->big_integer)
            return error_set(w->err, "pickle writer: integer beyond 64 bits");
        write_int(w, v->integer);
        return 0;
    case PICKLE_FLOAT: {
        uint64_t u;
        memcpy(&u, &v->real, sizeof u);
        emit_byte(w, 'G');
        for (int i = 7; i >= 0; i--)
            emit_byte(w, (unsigned char)(u >> (8 * i)));
        return 0;
    }
    case PICKLE_STR:
        write_str(w, v->data, v->len);
        return 0;
    case PICKLE_TUPLE:
        if (v->count == 0) {
            emit_byte(w, ')');
            return 0;
        }
        if (v->count > 3)
            emit_byte(w, '(');
        for (size_t i = 0; i < v->count; i++)
            if (write_value(w, v->items[i], depth + 1) != 0)
                return -1;
        emit_byte(w, v->count > 3 ? 't' : (unsigned char)(0x84 + v->count));
        put(w);
        return 0;
    case PICKLE_LIST:
        emit_byte(w, ']');
        put(w);
        return write_items(w, v, false, depth);
    case PICKLE_DICT:
        if (v->ordered) {
            write_empty_ordered_dict(w);
        } else {
            emit_byte(w, '}');
            put(w);
        }
        return write_items(w, v, true, depth);
    case PICKLE_TENSOR:
        return write_tensor(w, v);
    default:
        return error_set(w->err, "pickle writer: cannot write a %s value", pickle_kind_name(v));
    }
}

int pickle_write(const PickleValue *root, const TensorSet *tensors, unsigned char **out,
                 size_t *out_size, PickleWrittenStorage **storages, size_t *storage_count,
                 Error *err) {
    Writer w = {0};
    w.tensors = tensors;
    w.err = err;
    emit_byte(&w, 0x80);
    emit_byte(&w, 2);
    int rc = write_value(&w, root, 0);
    emit_byte(&w, '.');
    if (rc == 0 && w.oom)
        rc = error_set(err, "pickle writer: out of memory");
    for (size_t i = 0; i < w.owned_count; i++)
        free(w.owned[i]);
    free(w.owned);
    free(w.strings);
    free(w.tensor_slots);
    if (rc != 0) {
        free(w.buf);
        free(w.storages);
        return -1;
    }
    *out = w.buf;
    *out_size = w.len;
    *storages = w.storages;
    *storage_count = w.storage_count;
    return 0;
}
