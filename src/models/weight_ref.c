/* Model weights in their storage precision: see weight_ref.h. */
#define _DEFAULT_SOURCE /* madvise's MADV_PAGEOUT */
#include "models/weight_ref.h"

#include "nn/gemm_half.h"

#include <sys/mman.h>
#include <unistd.h>

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void weight_pool_init(WeightPool *pool, DType storage) {
    memset(pool, 0, sizeof *pool);
    pool->storage = storage;
}

void weight_pool_free(WeightPool *pool) {
    for (size_t i = 0; i < pool->count; i++)
        free(pool->blocks[i]);
    free(pool->blocks);
    memset(pool, 0, sizeof *pool);
}

void *weight_pool_alloc(WeightPool *pool, size_t bytes, Error *err) {
    if (pool->count == pool->capacity) {
        size_t cap = pool->capacity ? pool->capacity * 2 : 64;
        void **b = realloc(pool->blocks, cap * sizeof *b);
        if (!b) {
            error_set(err, "weights: out of memory growing the block list");
            return NULL;
        }
        pool->blocks = b;
        pool->capacity = cap;
    }
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p) {
        error_set(err, "weights: out of memory allocating %zu bytes (%.1f MiB held so far)", bytes,
                  pool->bytes / 1048576.0);
        return NULL;
    }
    pool->blocks[pool->count++] = p;
    pool->bytes += bytes;
    return p;
}

static int is_float_dtype(DType d) {
    return d == DTYPE_F32 || d == DTYPE_F16 || d == DTYPE_BF16;
}

/* Whether stored dimensions match what the model expects; trailing 1s (conv 1x1 vs linear)
 * are ignored on either side. */
static int shape_matches(const NamedTensor *t, int ndim, const int64_t *shape) {
    int a = t->ndim, b = ndim;
    while (a > 0 && t->shape[a - 1] == 1 && a > b)
        a--;
    while (b > 0 && shape[b - 1] == 1 && b > a)
        b--;
    if (a != b)
        return 0;
    for (int i = 0; i < a; i++)
        if (t->shape[i] != shape[i])
            return 0;
    return 1;
}

/* A converted weight's source bytes are not read again, but when they sit in a memory-mapped
 * file every page the conversion touched stays in the process's resident set: a 4 GB SD1.5
 * checkpoint converted to bf16 would count 3.3 GB of f32 UNet pages on top of the 1.6 GB
 * of bf16 weights. MADV_PAGEOUT hands those pages back; it never changes contents (a page
 * read again is read from the file; malloc'd sources without swap are left as they are), so
 * it is safe whatever backs the tensor. Only whole pages inside the tensor are advised. */
static void release_source_pages(const void *data, size_t bytes) {
#ifdef MADV_PAGEOUT
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0 || bytes < (size_t)page * 16)
        return;
    uintptr_t lo = ((uintptr_t)data + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
    uintptr_t hi = ((uintptr_t)data + bytes) & ~((uintptr_t)page - 1);
    if (hi > lo)
        (void)madvise((void *)lo, hi - lo, MADV_PAGEOUT); /* a hint: failure changes nothing */
#else
    (void)data;
    (void)bytes;
#endif
}

int weight_ref_bind(WeightRef *w, const TensorSet *set, const char *name, int ndim,
                    const int64_t *shape, int optional, WeightPool *pool, Error *err) {
    memset(w, 0, sizeof *w);
    const NamedTensor *t = tensor_set_find(set, name);
    if (!t) {
        if (optional)
            return 0;
        return error_set(err, "weight %s is missing", name);
    }
    if (!shape_matches(t, ndim, shape)) {
        char got[128], want[128] = "[";
        tensor_shape_string(t, got, sizeof got);
        for (int i = 0; i < ndim; i++) {
            size_t len = strlen(want);
            snprintf(want + len, sizeof want - len, "%s%lld", i ? ", " : "", (long long)shape[i]);
        }
        strncat(want, "]", sizeof want - strlen(want) - 1);
        return error_set(err, "weight %s has shape %s, the model config implies %s", name, got,
                         want);
    }
    if (!is_float_dtype(t->dtype))
        return error_set(err, "weight %s has dtype %s; expected a float type", name,
                         dtype_display_name(t->dtype));
    size_t n = (size_t)tensor_numel(t);
    w->numel = n;
    /* Keeping the loaded bytes: exact when the stored type widens exactly into what was
     * asked (f32 storage keeps f16/bf16 files as they are, fp16 keeps fp16). */
    if (t->dtype == pool->storage || pool->storage == DTYPE_F32) {
        w->data = t->data;
        w->dtype = t->dtype;
        return 0;
    }
    void *dst = weight_pool_alloc(pool, n * dtype_size(pool->storage), err);
    if (!dst)
        return error_prefix(err, "weight %s: ", name);
    if (t->dtype == DTYPE_F32) {
        dtype_convert_from_f32(pool->storage, t->data, dst, n);
    } else {
        /* half -> other half: through f32 in chunks to avoid a full-size temporary */
        float buf[4096];
        for (size_t i = 0; i < n; i += 4096) {
            size_t c = n - i < 4096 ? n - i : 4096;
            dtype_convert_to_f32(t->dtype, (const char *)t->data + i * dtype_size(t->dtype), buf,
                                 c);
            dtype_convert_from_f32(pool->storage, buf, (char *)dst + i * dtype_size(pool->storage),
                                   c);
        }
    }
    release_source_pages(t->data, t->nbytes);
    w->data = dst;
    w->dtype = pool->storage;
    return 0;
}

int weight_ref_bindf(WeightRef *w, const TensorSet *set, WeightPool *pool, int optional, Error *err,
                     int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3, const char *fmt,
                     ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    int64_t shape[4] = {d0, d1, d2, d3};
    return weight_ref_bind(w, set, name, ndim, shape, optional, pool, err);
}

/* Widening runs once per layer per pass (SD1.5: 860 M values per forward), so it is threaded
 * here and vectorised in half_widen (shared with the tiled half-weight products). */
const float *weight_ref_f32(const WeightRef *w, float *scratch) {
    if (!w->data)
        return NULL;
    if (w->dtype == DTYPE_F32)
        return w->data;
    const uint16_t *src = w->data;
    const size_t chunk = 1 << 16;
    long chunks = (long)((w->numel + chunk - 1) / chunk);
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (long c = 0; c < chunks; c++) {
        size_t lo = (size_t)c * chunk, len = w->numel - lo < chunk ? w->numel - lo : chunk;
        half_widen(w->dtype, src + lo, scratch + lo, len);
    }
    return scratch;
}

/* splitmix64: a counter-based generator, enough for benchmark weights. */
static uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static int alloc_storage(WeightRef *w, size_t numel, WeightPool *pool, Error *err) {
    w->numel = numel;
    w->dtype = pool->storage;
    w->data = weight_pool_alloc(pool, numel * dtype_size(pool->storage), err);
    return w->data ? 0 : -1;
}

int weight_ref_random(WeightRef *w, size_t numel, float bound, uint64_t seed, WeightPool *pool,
                      Error *err) {
    if (alloc_storage(w, numel, pool, err) != 0)
        return -1;
    float buf[4096];
    size_t esz = dtype_size(w->dtype);
    for (size_t i = 0; i < numel; i += 4096) {
        size_t c = numel - i < 4096 ? numel - i : 4096;
        for (size_t j = 0; j < c; j++) {
            uint64_t r = mix64(seed * 0x100000001b3ull + i + j);
            buf[j] = bound * (2.0f * (float)(r >> 40) / 16777216.0f - 1.0f);
        }
        dtype_convert_from_f32(w->dtype, buf, (char *)w->data + i * esz, c);
    }
    return 0;
}

int weight_ref_fill(WeightRef *w, size_t numel, float value, WeightPool *pool, Error *err) {
    if (alloc_storage(w, numel, pool, err) != 0)
        return -1;
    float buf[4096];
    for (size_t j = 0; j < 4096; j++)
        buf[j] = value;
    size_t esz = dtype_size(w->dtype);
    for (size_t i = 0; i < numel; i += 4096) {
        size_t c = numel - i < 4096 ? numel - i : 4096;
        dtype_convert_from_f32(w->dtype, buf, (char *)w->data + i * esz, c);
    }
    return 0;
}
