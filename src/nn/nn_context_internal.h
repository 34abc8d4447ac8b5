/* NnContext's fields, for the layer files in src/nn only. */
#ifndef SDTI_NN_CONTEXT_INTERNAL_H
#define SDTI_NN_CONTEXT_INTERNAL_H

#include "nn/nn_context.h"

#include <oneapi/dnnl/dnnl.h>

typedef struct ConvPrimitiveCache ConvPrimitiveCache;

struct NnContext {
    int threads;
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    /* oneDNN primitives are costly to create (milliseconds): conv2d.c keeps them by shape. */
    ConvPrimitiveCache *conv_cache;
    /* Per-thread tiles of widened half-precision weights (gemm_half.c), grown on first use. */
    float *half_tiles;
    size_t half_tile_floats;
};

/* Defined in conv2d.c; frees what conv_cache holds. */
void conv2d_cache_free(ConvPrimitiveCache *cache);

#endif
