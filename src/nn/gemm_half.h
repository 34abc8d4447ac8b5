/* Matrix products whose right-hand operand is stored as 16-bit floats (fp16 or bf16 model
 * weights), computed in float32 without widening the whole operand first.
 *
 * Widening a whole weight into a float32 scratch and handing that to sgemm writes the widened
 * copy to memory and reads it back: for the large weights of the UNet's deep levels (a
 * 1280 -> 10240 GEGLU projection is 52 MB widened) that traffic costs as much as the product.
 * Here the weight is widened tile by tile into a per-thread buffer that stays in the core's
 * L2 cache, and each tile's product is one single-threaded sgemm; threads own disjoint
 * column tiles of the result. With many rows (where the weight is small next to the
 * activations) chunks of the weight are widened by all threads into a 4 MiB buffer and
 * multiplied by a multi-threaded sgemm instead. The widening is exact, so results differ
 * from the widened sgemm only in the order sgemm sums the products.
 *
 * For src/nn only (linear.c); the layer API is linear.h. */
#ifndef SDTI_NN_GEMM_HALF_H
#define SDTI_NN_GEMM_HALF_H

#include "base/dtype.h"
#include "nn/nn_context.h"

#include <stddef.h>

/* How to split the product; NULL picks by the number of rows m (gemm_half.c). Only
 * benchmarks set it. Tile shape: columns of the result per tile (n) and summed values per
 * tile (k), 0 for the default. */
typedef struct GemmHalfTiles {
    int n, k;
    /* 1: instead, widen chunks of `chunk` values with all threads, then one multi-threaded
     * sgemm per chunk (benchmark comparison) */
    int chunked;
    size_t chunk;
} GemmHalfTiles;

/* c[m, n] (row stride ldc) = beta * c + a[m, k] (row stride lda) * op(b), where b holds
 * 16-bit values (bt: DTYPE_F16 or DTYPE_BF16), row-major with row stride ldb:
 *   transb 'T': b is [n, k] and op(b) its transpose (a linear layer's forward, b = W[out, in]);
 *   transb 'N': b is [k, n] (the input gradient, b = W[out, in] with k = out, n = in).
 * beta is 0 (c is overwritten, never read) or 1. tiles may be NULL. */
int gemm_half(NnContext *ctx, char transb, int m, int n, int k, const float *a, int lda,
              const void *b, DType bt, int ldb, float beta, float *c, int ldc,
              const GemmHalfTiles *tiles, Error *err);

/* Widens n 16-bit values (DTYPE_F16 or DTYPE_BF16) to float32, exactly; one thread. */
void half_widen(DType bt, const void *src, float *dst, size_t n);

#endif
