#include "nn/nn_context.h"

#include "nn/nn_context_internal.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <unistd.h>

int nn_context_create(int threads, NnContext **out, Error *err) {
    *out = NULL;
    if (threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (int)n : 1;
    }
    NnContext *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return error_set(err, "out of memory creating the compute context");
    ctx->threads = threads;
    /* One thread count for all three runtimes: OpenMP (our loops and oneDNN, which Debian
     * builds on OpenMP) and OpenBLAS. Different counts would oversubscribe the cores. */
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
    if (dnnl_engine_create(&ctx->engine, dnnl_cpu, 0) != dnnl_success) {
        free(ctx);
        return error_set(err, "oneDNN: cannot create a CPU engine");
    }
    if (dnnl_stream_create(&ctx->stream, ctx->engine, dnnl_stream_default_flags) != dnnl_success) {
        dnnl_engine_destroy(ctx->engine);
        free(ctx);
        return error_set(err, "oneDNN: cannot create a stream");
    }
    *out = ctx;
    return 0;
}

void nn_context_free(NnContext *ctx) {
    if (!ctx)
        return;
    conv2d_cache_free(ctx->conv_cache);
    free(ctx->half_tiles);
    dnnl_stream_destroy(ctx->stream);
    dnnl_engine_destroy(ctx->engine);
    free(ctx);
}

int nn_context_threads(const NnContext *ctx) {
    return ctx->threads;
}
