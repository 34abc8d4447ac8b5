/* Linear layers with half-precision weights at the UNet's and the text encoder's shapes: the
 * float32-weight sgemm, the old path (widen the whole weight into a scratch, then one
 * sgemm) and gemm_half's tiled widening, run alternately (A B C A B C ..., best of RUNS).
 *   bench_linear_half [THREADS] [bf16|fp16] [RUNS] [TILE_N TILE_K] [CHUNK] [SHAPE]
 * Variants: f32 weights, whole-weight widening + sgemm, "typed" (linear_*_typed: its own
 * rule; with TILE_N > 0 gemm_half's per-thread tiles of that shape instead), and gemm_half's
 * chunked path with CHUNK values per chunk. SHAPE: only shapes whose name contains it.
 * Prints milliseconds per direction and the ratios against float32 weights. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <oneapi/dnnl/dnnl.h>

#include "nn/gemm_half.h"
#include "nn/linear.h"

#include "bench_util.h"

typedef struct Shape {
    const char *name;
    int rows, in, out;
} Shape;

/* SD1.5 at 64x64 latents (levels 64, 32, 16, 8 pixels) and CLIP-L / the time embedding */
static const Shape SHAPES[] = {
    {"L0 qkvo 320", 4096, 320, 320},   {"L0 ff_in", 4096, 320, 2560},
    {"L0 ff_out", 4096, 1280, 320},    {"L1 qkvo 640", 1024, 640, 640},
    {"L1 ff_in", 1024, 640, 5120},     {"L1 ff_out", 1024, 2560, 640},
    {"L2 qkvo 1280", 256, 1280, 1280}, {"L2 ff_in", 256, 1280, 10240},
    {"L2 ff_out", 256, 5120, 1280},    {"mid qkvo", 64, 1280, 1280},
    {"mid ff_in", 64, 1280, 10240},    {"mid ff_out", 64, 5120, 1280},
    {"cross kv 1280", 77, 768, 1280},  {"cross kv 320", 77, 768, 320},
    {"clip mlp fc1", 77, 768, 3072},   {"clip mlp fc2", 77, 3072, 768},
    {"time 1280", 1, 1280, 1280},      {"time 320", 1, 1280, 320},
};

static void widen_all(DType bt, const uint16_t *w, float *dst, size_t n) {
    const size_t chunk = 1 << 16;
    long chunks = (long)((n + chunk - 1) / chunk);
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (long c = 0; c < chunks; c++) {
        size_t lo = (size_t)c * chunk, len = n - lo < chunk ? n - lo : chunk;
        half_widen(bt, w + lo, dst + lo, len);
    }
}

typedef struct Bufs {
    float *x, *w, *y, *wide, *bias;
    uint16_t *wh;
} Bufs;

enum { V_F32, V_WIDEN, V_TILED, V_CHUNKED, VARIANTS };
static const char *VNAMES[VARIANTS] = {"f32", "widen", "typed", "chunked"};

static int run(NnContext *ctx, const Shape *sh, const Bufs *b, DType bt, int v, int d,
               const GemmHalfTiles *tiles, const GemmHalfTiles *chunked, Error *err) {
    size_t nw = (size_t)sh->in * sh->out;
    const float *wf = b->w;
    if (v == V_WIDEN) {
        widen_all(bt, b->wh, b->wide, nw);
        wf = b->wide;
    }
    if (d == 0) {
        if (v == V_F32 || v == V_WIDEN)
            return linear_forward(ctx, sh->rows, sh->in, sh->out, b->x, wf, b->bias, b->y, err);
        if (v == V_TILED && tiles->n <= 0)
            return linear_forward_typed(ctx, sh->rows, sh->in, sh->out, b->x, b->wh, bt, b->bias,
                                        b->y, err);
        return gemm_half(ctx, 'T', sh->rows, sh->out, sh->in, b->x, sh->in, b->wh, bt, sh->in, 0.0f,
                         b->y, sh->out, v == V_TILED ? tiles : chunked, err);
    }
    if (v == V_F32 || v == V_WIDEN)
        return linear_backward_input(ctx, sh->rows, sh->in, sh->out, b->y, wf, b->x, 0, err);
    if (v == V_TILED && tiles->n <= 0)
        return linear_backward_input_typed(ctx, sh->rows, sh->in, sh->out, b->y, b->wh, bt, b->x, 0,
                                           err);
    return gemm_half(ctx, 'N', sh->rows, sh->in, sh->out, b->y, sh->out, b->wh, bt, sh->in, 0.0f,
                     b->x, sh->in, v == V_TILED ? tiles : chunked, err);
}

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    DType bt = argc > 2 && strcmp(argv[2], "fp16") == 0 ? DTYPE_F16 : DTYPE_BF16;
    int runs = argc > 3 ? atoi(argv[3]) : 3;
    GemmHalfTiles tiles = {argc > 4 ? atoi(argv[4]) : 0, argc > 5 ? atoi(argv[5]) : 0, 0, 0};
    GemmHalfTiles chunked = {0, 0, 1, argc > 6 ? (size_t)atol(argv[6]) : 0};
    const char *only = argc > 7 ? argv[7] : NULL;
    Error err = {{0}};
    NnContext *ctx = NULL;
    if (nn_context_create(threads, &ctx, &err) != 0) {
        fprintf(stderr, "bench_linear_half: %s\n", err.message);
        return 1;
    }
    double tot[2][VARIANTS] = {{0}};
    printf("best of %d; f32 weights: ms per call, others: ratios against it (wall, cpu)\n", runs);
    for (size_t s = 0; s < sizeof SHAPES / sizeof SHAPES[0]; s++) {
        const Shape *sh = &SHAPES[s];
        if (only && !strstr(sh->name, only))
            continue;
        size_t nw = (size_t)sh->in * sh->out;
        Bufs b;
        b.x = malloc(sizeof(float) * sh->rows * sh->in), b.w = malloc(sizeof(float) * nw);
        b.y = malloc(sizeof(float) * sh->rows * sh->out), b.wide = malloc(sizeof(float) * nw);
        b.bias = malloc(sizeof(float) * sh->out);
        b.wh = malloc(2 * nw);
        bench_fill(b.x, (size_t)sh->rows * sh->in, 1);
        bench_fill(b.w, nw, 2);
        bench_fill(b.bias, sh->out, 3);
        bench_fill(b.y, (size_t)sh->rows * sh->out, 4);
        dtype_convert_from_f32(bt, b.w, b.wh, nw);
        dtype_convert_to_f32(bt, b.wh, b.w, nw); /* the same values in both storages */
        double best[2][VARIANTS], cpu[2][VARIANTS];
        for (int d = 0; d < 2; d++)
            for (int v = 0; v < VARIANTS; v++)
                best[d][v] = cpu[d][v] = 1e30;
        /* repeat small shapes so each timing is at least ~20 ms of work */
        double flops = 2.0 * sh->rows * sh->in * sh->out;
        int reps = (int)(4e9 / flops) + 1;
        for (int r = 0; r <= runs; r++)
            for (int d = 0; d < 2; d++)
                for (int v = 0; v < VARIANTS; v++) {
                    double t0 = bench_now(), c0 = cpu_now();
                    for (int i = 0; i < reps; i++)
                        if (run(ctx, sh, &b, bt, v, d, &tiles, &chunked, &err)) {
                            fprintf(stderr, "bench_linear_half: %s\n", err.message);
                            return 1;
                        }
                    double dt = (bench_now() - t0) / reps, dc = (cpu_now() - c0) / reps;
                    if (r > 0 && dt < best[d][v])
                        best[d][v] = dt;
                    if (r > 0 && dc < cpu[d][v])
                        cpu[d][v] = dc;
                }
        for (int d = 0; d < 2; d++) {
            printf("%-14s %s %4d x %5d -> %5d |", sh->name, d ? "bwd" : "fwd", sh->rows, sh->in,
                   sh->out);
            printf(" f32 %6.2f ms (cpu %6.2f) |", best[d][0] * 1e3, cpu[d][0] * 1e3);
            for (int v = 0; v < VARIANTS; v++) {
                if (v)
                    printf(" %s %.2f (cpu %.2f)", VNAMES[v], best[d][v] / best[d][0],
                           cpu[d][v] / cpu[d][0]);
                tot[d][v] += best[d][v];
            }
            printf("\n");
        }
        free(b.x), free(b.w), free(b.y), free(b.wide), free(b.bias), free(b.wh);
    }
    for (int d = 0; d < 2; d++) {
        printf("sum %s:", d ? "bwd" : "fwd");
        for (int v = 0; v < VARIANTS; v++)
            printf(" %s %.1f ms (%.2f)", VNAMES[v], tot[d][v] * 1e3, tot[d][v] / tot[d][0]);
        printf("\n");
    }
    nn_context_free(ctx);
    return 0;
}
