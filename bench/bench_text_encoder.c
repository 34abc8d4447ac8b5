/* The CLIP-L text encoder (SD1.5's: 768 wide, 12 layers, 12 heads, MLP 3072, quick_gelu,
 * 49408 ids, 77 tokens) with random weights, batch 1, for bench/bench_text_encoder.sh, which
 * runs transformers' CLIPTextModel on the same shapes and prints the ratios.
 *   bench_text_encoder fwd|fwdbwd [THREADS] [REPEATS]
 * fwd: the forward alone; fwdbwd: forward keeping what the backward needs, then the backward to
 * the token-embedding rows (a TI step's text side). Prints the median seconds of REPEATS
 * passes after one warm-up pass, "seconds <t>", and their median CPU time (all threads),
 * "cpu <t>", which a busy machine disturbs less. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "models/clip_text.h"

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 2 || (strcmp(argv[1], "fwd") != 0 && strcmp(argv[1], "fwdbwd") != 0)) {
        fprintf(stderr, "usage: bench_text_encoder fwd|fwdbwd [THREADS] [REPEATS]\n");
        return 2;
    }
    int backward = strcmp(argv[1], "fwdbwd") == 0;
    int threads = argc > 2 ? atoi(argv[2]) : 2, repeats = argc > 3 ? atoi(argv[3]) : 5;
    if (repeats < 1 || repeats > 1000)
        repeats = 5;
    ClipConfig cfg = {.vocab_size = 49408,
                      .hidden_size = 768,
                      .num_layers = 12,
                      .num_heads = 12,
                      .intermediate_size = 3072,
                      .max_positions = 77,
                      .activation = CLIP_ACT_QUICK_GELU,
                      .layer_norm_eps = 1e-5f};
    Error err = {{0}};
    NnContext *ctx = NULL;
    ClipText m;
    ClipTextRun run;
    if (nn_context_create(threads, &ctx, &err) != 0 || clip_text_random(&m, &cfg, 42, &err) != 0 ||
        clip_text_run_init(&run, &m, 1, 77, 0, backward, &err) != 0) {
        fprintf(stderr, "bench_text_encoder: %s\n", err.message);
        return 1;
    }
    /* BOS, a caption of 20 ids, EOS, EOS padding: the shape of a real TI caption */
    int32_t ids[77];
    for (int i = 0; i < 77; i++)
        ids[i] = i == 0 ? 49406 : i <= 20 ? 320 + 37 * i : 49407;
    float extra[768];
    for (int i = 0; i < 768; i++)
        extra[i] = 0.01f * (float)(i % 7);
    ids[5] = 49408; /* one TI token */
    float *hidden = malloc(77 * 768 * sizeof *hidden), *grad = malloc(77 * 768 * sizeof *grad);
    for (int i = 0; i < 77 * 768; i++)
        grad[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    double times[1001], cpu[1001];
    for (int r = 0; r <= repeats; r++) {
        double t0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        int rc = clip_text_forward(ctx, &m, &run, ids, extra, 1, hidden, &err);
        if (rc == 0 && backward) {
            ClipRowGrads g;
            rc = clip_text_backward_input(ctx, &m, &run, grad, &g, &err);
            clip_row_grads_free(&g);
        }
        if (rc != 0) {
            fprintf(stderr, "bench_text_encoder: %s\n", err.message);
            return 1;
        }
        times[r] = clock_s(CLOCK_MONOTONIC) - t0;
        cpu[r] = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    }
    /* [0] is the warm-up */
    qsort(times + 1, (size_t)repeats, sizeof *times, cmp_double);
    qsort(cpu + 1, (size_t)repeats, sizeof *cpu, cmp_double);
    printf("seconds %.4f\ncpu %.4f\n", times[1 + repeats / 2], cpu[1 + repeats / 2]);
    free(hidden);
    free(grad);
    clip_text_run_free(&run);
    clip_text_free(&m);
    nn_context_free(ctx);
    return 0;
}
