/* A model weight as the models keep it: pointing at the loaded bytes (a memory map, no copy)
 * when they already have the storage precision, else converted once into a block the model
 * owns (--mixed_precision fp16 / bf16 halves the weights' memory). Layers take float32, so
 * a half weight is widened into a caller's scratch right before the layer runs.
 *
 * Shared by the UNet, the VAE and the text encoder. */
#ifndef SDTI_MODELS_WEIGHT_REF_H
#define SDTI_MODELS_WEIGHT_REF_H

#include <stddef.h>
#include <stdint.h>

#include "base/dtype.h"
#include "base/error.h"
#include "formats/tensor_set.h"

typedef struct WeightRef {
    const void *data; /* NULL: the weight is absent (optional bias, shortcut) */
    DType dtype;      /* DTYPE_F32, DTYPE_F16 or DTYPE_BF16 */
    size_t numel;
} WeightRef;

/* Where converted weights live: one growing list of blocks, freed together. */
typedef struct WeightPool {
    void **blocks;
    size_t count, capacity;
    size_t bytes;  /* total bytes the pool owns */
    DType storage; /* DTYPE_F32 (keep as loaded), DTYPE_F16 or DTYPE_BF16 */
} WeightPool;

void weight_pool_init(WeightPool *pool, DType storage);
void weight_pool_free(WeightPool *pool);
/* A zeroed block owned by the pool. */
void *weight_pool_alloc(WeightPool *pool, size_t bytes, Error *err);

/* Binds `name` from `set`, checking its shape against `shape` (ndim values; a conv weight
 * [o, i, 1, 1] also matches a linear [o, i] and back, since SD1 and SD2 differ there).
 * Storage rules: an f32 tensor with f32 storage is pointed at; an f16/bf16 tensor whose
 * widening is exact is kept as is when storage is f32 (same values, half the memory); any
 * other combination is converted into the pool. optional: a missing tensor leaves
 * w->data NULL instead of failing. */
int weight_ref_bind(WeightRef *w, const TensorSet *set, const char *name, int ndim,
                    const int64_t *shape, int optional, WeightPool *pool, Error *err);
/* printf-style name; the shape is given as a count and up to 4 dimensions. */
int weight_ref_bindf(WeightRef *w, const TensorSet *set, WeightPool *pool, int optional, Error *err,
                     int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3, const char *fmt, ...)
    __attribute__((format(printf, 11, 12)));

/* Float32 view of the weight: the stored data itself when it is f32, else widened into
 * `scratch` (at least w->numel floats). NULL when the weight is absent. */
const float *weight_ref_f32(const WeightRef *w, float *scratch);

/* Fills a weight with uniform values in [-bound, bound] from a simple counter-based
 * generator (benchmarks build models without files). */
int weight_ref_random(WeightRef *w, size_t numel, float bound, uint64_t seed, WeightPool *pool,
                      Error *err);
/* Sets every element to `value` (norm gains 1, biases 0 in random models). */
int weight_ref_fill(WeightRef *w, size_t numel, float value, WeightPool *pool, Error *err);

#endif
