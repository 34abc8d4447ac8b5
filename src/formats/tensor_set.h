/* A named collection of stored tensors, whatever file format they came from.
 *
 * Readers (safetensors, torch zip/legacy) fill a TensorSet; the key map renames and splits
 * its entries into per-component sets; writers take one. Entries never own their bytes: the
 * set owns a list of backing regions (a memory map, malloc'd blocks, or another set it keeps
 * alive), so renaming or slicing an entry (q/k/v out of a fused in_proj) copies nothing. */
#ifndef SDTI_FORMATS_TENSOR_SET_H
#define SDTI_FORMATS_TENSOR_SET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/dtype.h"
#include "base/error.h"

#define TENSOR_MAX_DIMS 8

typedef struct NamedTensor {
    char *name;
    DType dtype;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    const void *data; /* contiguous, row-major, little-endian; NULL only when nbytes == 0 */
    size_t nbytes;    /* == numel * dtype_size(dtype) */
} NamedTensor;

typedef struct TensorSetMeta {
    char *key;
    char *value;
} TensorSetMeta;

typedef enum BackingKind { BACKING_MALLOC, BACKING_MMAP } BackingKind;

typedef struct TensorBacking {
    BackingKind kind;
    void *ptr;
    size_t size;
} TensorBacking;

typedef struct TensorSet {
    NamedTensor *items;
    size_t count, capacity;
    TensorSetMeta *meta; /* safetensors __metadata__ (string -> string), in file order */
    size_t meta_count, meta_capacity;
    TensorBacking *backings;
    size_t backing_count, backing_capacity;
    size_t *index; /* open-addressing hash of item positions + 1 (0 = empty) */
    size_t index_capacity;
} TensorSet;

void tensor_set_init(TensorSet *set);
void tensor_set_free(TensorSet *set);

int64_t tensor_numel(const NamedTensor *t);
/* "[320, 4, 3, 3]" into buf. */
const char *tensor_shape_string(const NamedTensor *t, char *buf, size_t size);

/* Adds an entry pointing at `data` (not copied). A duplicate name is an error. */
int tensor_set_add(TensorSet *set, const char *name, DType dtype, int ndim, const int64_t *shape,
                   const void *data, Error *err);
/* Adds an entry whose bytes are copied into a block the set owns. */
int tensor_set_add_copy(TensorSet *set, const char *name, DType dtype, int ndim,
                        const int64_t *shape, const void *data, Error *err);
const NamedTensor *tensor_set_find(const TensorSet *set, const char *name);

/* Allocates a zeroed block owned by the set (freed by tensor_set_free). */
void *tensor_set_alloc(TensorSet *set, size_t size, Error *err);
/* Hands an existing region to the set, which will free or unmap it. */
int tensor_set_adopt(TensorSet *set, BackingKind kind, void *ptr, size_t size, Error *err);
/* Moves all backings of `from` into `to` (so `to` keeps `from`'s data alive); `from` keeps
 * its entries but no longer owns anything and must not outlive `to`. */
int tensor_set_take_backings(TensorSet *to, TensorSet *from, Error *err);

int tensor_set_set_meta(TensorSet *set, const char *key, const char *value, Error *err);
const char *tensor_set_get_meta(const TensorSet *set, const char *key);

/* Converts a stored tensor to float32 into `out` (numel floats). */
int tensor_to_f32(const NamedTensor *t, float *out, Error *err);

#endif
