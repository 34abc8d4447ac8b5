/* The compute context every layer function takes: thread count and the oneDNN engine, stream
 * and primitive cache. One per process (or per model run); no global state. A later GPU
 * backend gets its own context behind the same layer functions.
 *
 * Layout convention for every layer in src/nn: activations are float32, row-major, images
 * NCHW ([batch, channels, height, width]), sequences [batch, tokens, width]. Weights are
 * float32 in the shapes PyTorch stores them (conv [out, in, kh, kw], linear [out, in]);
 * models keep half-precision weights and widen them per layer before calling these. */
#ifndef SDTI_NN_CONTEXT_H
#define SDTI_NN_CONTEXT_H

#include "base/error.h"

#include <stddef.h>

typedef struct NnContext NnContext;

/* threads <= 0: the machine's core count. Sets OpenMP and OpenBLAS to the same count so the
 * two never oversubscribe the cores. */
int nn_context_create(int threads, NnContext **out, Error *err);
void nn_context_free(NnContext *ctx);
int nn_context_threads(const NnContext *ctx);

#endif
