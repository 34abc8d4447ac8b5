#define _POSIX_C_SOURCE 200809L
#include "formats/tensor_set.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file_util.h"

void tensor_set_init(TensorSet *set) {
    memset(set, 0, sizeof *set);
}

void tensor_set_free(TensorSet *set) {
    for (size_t i = 0; i < set->count; i++)
        free(set->items[i].name);
    for (size_t i = 0; i < set->meta_count; i++) {
        free(set->meta[i].key);
        free(set->meta[i].value);
    }
    for (size_t i = 0; i < set->backing_count; i++) {
        if (set->backings[i].kind == BACKING_MMAP)
            file_unmap(set->backings[i].ptr, set->backings[i].size);
        else
            free(set->backings[i].ptr);
    }
    free(set->items);
    free(set->meta);
    free(set->backings);
    free(set->index);
    memset(set, 0, sizeof *set);
}

int64_t tensor_numel(const NamedTensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

const char *tensor_shape_string(const NamedTensor *t, char *buf, size_t size) {
    size_t pos = 0;
    pos += (size_t)snprintf(buf + pos, size - pos, "[");
    for (int i = 0; i < t->ndim && pos < size; i++)
        pos += (size_t)snprintf(buf + pos, size - pos, "%s%lld", i ? ", " : "",
                                (long long)t->shape[i]);
    if (pos < size)
        snprintf(buf + pos, size - pos, "]");
    return buf;
}

static uint64_t hash_name(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int index_insert(TensorSet *set, size_t item) {
    size_t mask = set->index_capacity - 1;
    size_t pos = hash_name(set->items[item].name) & mask;
    while (set->index[pos])
        pos = (pos + 1) & mask;
    set->index[pos] = item + 1;
    return 0;
}

static int index_grow(TensorSet *set, Error *err) {
    size_t cap = set->index_capacity ? set->index_capacity * 2 : 64;
    size_t *idx = calloc(cap, sizeof *idx);
    if (!idx)
        return error_set(err, "out of memory (tensor index)");
    free(set->index);
    set->index = idx;
    set->index_capacity = cap;
    for (size_t i = 0; i < set->count; i++)
        index_insert(set, i);
    return 0;
}

const NamedTensor *tensor_set_find(const TensorSet *set, const char *name) {
    if (!set->index_capacity)
        return NULL;
    size_t mask = set->index_capacity - 1;
    for (size_t pos = hash_name(name) & mask; set->index[pos]; pos = (pos + 1) & mask) {
        const NamedTensor *t = &set->items[set->index[pos] - 1];
        if (strcmp(t->name, name) == 0)
            return t;
    }
    return NULL;
}

int tensor_set_add(TensorSet *set, const char *name, DType dtype, int ndim, const int64_t *shape,
                   const void *data, Error *err) {
    if (ndim < 0 || ndim > TENSOR_MAX_DIMS)
        return error_set(err, "tensor '%s': %d dimensions (at most %d supported)", name, ndim,
                         TENSOR_MAX_DIMS);
    if ((unsigned)dtype >= DTYPE_COUNT)
        return error_set(err, "tensor '%s': invalid dtype", name);
    if (tensor_set_find(set, name))
        return error_set(err, "tensor '%s' appears twice", name);
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return error_set(err, "tensor '%s': negative dimension %lld", name,
                             (long long)shape[i]);
        if (shape[i] != 0 && numel > UINT64_MAX / 16 / (uint64_t)shape[i])
            return error_set(err, "tensor '%s': shape too large", name);
        numel *= (uint64_t)shape[i];
    }
    if (set->count == set->capacity) {
        size_t cap = set->capacity ? set->capacity * 2 : 64;
        NamedTensor *items = realloc(set->items, cap * sizeof *items);
        if (!items)
            return error_set(err, "out of memory (tensor list)");
        set->items = items;
        set->capacity = cap;
    }
    if ((set->count + 1) * 2 > set->index_capacity && index_grow(set, err) != 0)
        return -1;
    NamedTensor *t = &set->items[set->count];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name)
        return error_set(err, "out of memory (tensor name)");
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    t->data = data;
    t->nbytes = (size_t)numel * dtype_size(dtype);
    index_insert(set, set->count);
    set->count++;
    return 0;
}

int tensor_set_add_copy(TensorSet *set, const char *name, DType dtype, int ndim,
                        const int64_t *shape, const void *data, Error *err) {
    if (tensor_set_add(set, name, dtype, ndim, shape, NULL, err) != 0)
        return -1;
    NamedTensor *t = &set->items[set->count - 1];
    if (t->nbytes == 0)
        return 0;
    void *copy = tensor_set_alloc(set, t->nbytes, err);
    if (!copy)
        return -1;
    memcpy(copy, data, t->nbytes);
    set->items[set->count - 1].data = copy; /* re-fetch: alloc never moves items, but be plain */
    return 0;
}

static int backing_push(TensorSet *set, TensorBacking b, Error *err) {
    if (set->backing_count == set->backing_capacity) {
        size_t cap = set->backing_capacity ? set->backing_capacity * 2 : 16;
        TensorBacking *bs = realloc(set->backings, cap * sizeof *bs);
        if (!bs)
            return error_set(err, "out of memory (backing list)");
        set->backings = bs;
        set->backing_capacity = cap;
    }
    set->backings[set->backing_count++] = b;
    return 0;
}

void *tensor_set_alloc(TensorSet *set, size_t size, Error *err) {
    void *p = calloc(1, size ? size : 1);
    if (!p) {
        error_set(err, "out of memory allocating %zu bytes", size);
        return NULL;
    }
    if (backing_push(set, (TensorBacking){BACKING_MALLOC, p, size}, err) != 0) {
        free(p);
        return NULL;
    }
    return p;
}

int tensor_set_adopt(TensorSet *set, BackingKind kind, void *ptr, size_t size, Error *err) {
    return backing_push(set, (TensorBacking){kind, ptr, size}, err);
}

int tensor_set_take_backings(TensorSet *to, TensorSet *from, Error *err) {
    for (size_t i = 0; i < from->backing_count; i++)
        if (backing_push(to, from->backings[i], err) != 0)
            return -1;
    free(from->backings);
    from->backings = NULL;
    from->backing_count = from->backing_capacity = 0;
    return 0;
}

int tensor_set_set_meta(TensorSet *set, const char *key, const char *value, Error *err) {
    for (size_t i = 0; i < set->meta_count; i++) {
        if (strcmp(set->meta[i].key, key) == 0) {
            char *v = strdup(value);
            if (!v)
                return error_set(err, "out of memory");
            free(set->meta[i].value);
            set->meta[i].value = v;
            return 0;
        }
    }
    if (set->meta_count == set->meta_capacity) {
        size_t cap = set->meta_capacity ? set->meta_capacity * 2 : 8;
        TensorSetMeta *m = realloc(set->meta, cap * sizeof *m);
        if (!m)
            return error_set(err, "out of memory");
        set->meta = m;
        set->meta_capacity = cap;
    }
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return error_set(err, "out of memory");
    }
    set->meta[set->meta_count++] = (TensorSetMeta){k, v};
    return 0;
}

const char *tensor_set_get_meta(const TensorSet *set, const char *key) {
    for (size_t i = 0; i < set->meta_count; i++)
        if (strcmp(set->meta[i].key, key) == 0)
            return set->meta[i].value;
    return NULL;
}

int tensor_to_f32(const NamedTensor *t, float *out, Error *err) {
    if (dtype_convert_to_f32(t->dtype, t->data, out, (size_t)tensor_numel(t)) != 0)
        return error_set(err, "tensor '%s': cannot convert %s to float32", t->name,
                         dtype_display_name(t->dtype));
    return 0;
}
