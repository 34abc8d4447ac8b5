/* safetensors files (https://github.com/huggingface/safetensors): an 8-byte little-endian
 * header length N, N bytes of JSON naming each tensor's dtype, shape and data offsets (plus an
 * optional "__metadata__" object of strings), then the tensor bytes.
 *
 * The reader is a security boundary: every field of the header is checked (UTF-8, JSON
 * syntax, duplicate keys, known dtypes, integer shapes and offsets without overflow, sizes
 * that match the shapes, offsets inside the file and not overlapping) and any input gives
 * either a set or a one-line error naming the file, the tensor or byte offset, and why.
 *
 * The writer produces the same bytes as the Python library's save_file for the same tensors
 * and metadata: tensors sorted by dtype (the library's dtype order, widest first) then by
 * name, compact JSON with "__metadata__" first, the header padded with spaces to a multiple
 * of 8 bytes. */
#ifndef SDTI_FORMATS_SAFETENSORS_H
#define SDTI_FORMATS_SAFETENSORS_H

#include <stddef.h>

#include "base/error.h"
#include "formats/tensor_set.h"

/* The safetensors library refuses headers above 100 MB; so do we. */
#define SAFETENSORS_MAX_HEADER 100000000u

/* Memory-maps `path` and adds every tensor to `set` (data points into the mapping, which the
 * set owns from then on); __metadata__ entries go to set->meta. Tensors are added in the
 * order the header lists them. On failure `set` is left as it was, except when the file is
 * valid but one of its tensor names is already in `set`. */
int safetensors_open(const char *path, TensorSet *set, Error *err);

/* Parses a whole safetensors file already in memory (`name` is used in messages). Entries
 * point into `data`, which the caller keeps alive as long as `set`. Same failure guarantee as
 * safetensors_open. */
int safetensors_parse(const char *name, const void *data, size_t size, TensorSet *set, Error *err);

/* Writes every entry of `set` and set->meta (as __metadata__, in set order, omitted when
 * empty) to `path` atomically. The tensors are stored in the Python library's order (dtype,
 * then name), not in set order, so the bytes match what save_file writes. */
int safetensors_write(const char *path, const TensorSet *set, Error *err);

#endif
