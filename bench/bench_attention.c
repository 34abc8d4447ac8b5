/* Attention / linear / GEGLU benchmark worker, driven by bench/bench_attention.py (which times
 * PyTorch on the same shapes in the same run and prints the ratios). One request per line on
 * stdin:
 *
 *   attn fwd|bwd batch heads q_len kv_len head_dim causal reps q_tile kv_tile
 *   linear fwd|bwd rows in out reps
 *   geglu fwd|bwd rows dim reps
 *   silu fwd|bwd n reps
 *
 * (q_tile / kv_tile 0: the defaults), answered by "best_ms median_ms cpu_ms" over `reps` calls
 * after one warm-up call, then "ok"; cpu_ms is the process CPU time per call, all threads
 * summed (on a loaded machine it moves less than the wall time, which helps tuning). bwd times the
 * backward alone (its forward runs once before). Threads: SDTI_THREADS (default 2), one count for
 * OpenMP, OpenBLAS and oneDNN. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include "nn/activation.h"
#include "nn/attention.h"
#include "nn/attention_internal.h"
#include "nn/linear.h"
#include "nn/nn_context.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static double cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static float *alloc_random(size_t n, unsigned seed, float mag) {
    float *p = aligned_alloc(64, ((n * sizeof(float)) + 63) & ~(size_t)63);
    if (!p)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = mag * ((float)(seed >> 8) / (float)(1u << 23) - 1.0f);
    }
    return p;
}

typedef struct Job {
    NnContext *ctx;
    const char *kind;
    int backward;
    AttentionShape s;
    AttentionTiles t;
    int rows, in, out;
    float *a, *b, *c, *d, *e, *f, *g, *h, *i;
} Job;

static int run(Job *j, Error *err) {
    if (strcmp(j->kind, "attn") == 0) {
        if (!j->backward)
            return attention_forward_tiled(j->ctx, &j->s, &j->t, j->a, j->b, j->c, j->d, j->e, err);
        return attention_backward_input_tiled(j->ctx, &j->s, &j->t, j->a, j->b, j->c, j->d, j->e,
                                              j->f, j->g, j->h, j->i, err);
    }
    if (strcmp(j->kind, "linear") == 0)
        return j->backward
                   ? linear_backward_input(j->ctx, j->rows, j->in, j->out, j->c, j->b, j->a, 0, err)
                   : linear_forward(j->ctx, j->rows, j->in, j->out, j->a, j->b, j->f, j->c, err);
    if (strcmp(j->kind, "silu") == 0) {
        if (j->backward)
            silu_backward_input((size_t)j->rows, j->a, j->c, j->b);
        else
            silu_forward((size_t)j->rows, j->a, j->c);
        return 0;
    }
    if (j->backward)
        geglu_backward_input(j->rows, j->in, j->a, j->c, j->b);
    else
        geglu_forward(j->rows, j->in, j->a, j->c);
    return 0;
}

static void handle(NnContext *ctx, char *line) {
    char kind[16], dir[8];
    int reps = 0, n = 0;
    Job j;
    memset(&j, 0, sizeof j);
    j.ctx = ctx;
    if (sscanf(line, "%15s %7s %n", kind, dir, &n) != 2) {
        printf("error: bad request\nok\n");
        return;
    }
    j.kind = kind;
    j.backward = strcmp(dir, "bwd") == 0;
    const char *rest = line + n;
    if (strcmp(kind, "attn") == 0) {
        AttentionShape *s = &j.s;
        if (sscanf(rest, "%d %d %d %d %d %d %d %d %d", &s->batch, &s->heads, &s->q_len, &s->kv_len,
                   &s->head_dim, &s->causal, &reps, &j.t.q_tile, &j.t.kv_tile) != 9) {
            printf("error: bad attn request\nok\n");
            return;
        }
        s->scale = 1.0f / sqrtf((float)s->head_dim);
        if (j.t.q_tile <= 0 || j.t.kv_tile <= 0)
            j.t = attention_default_tiles(s, j.backward);
        size_t nq = (size_t)s->batch * s->q_len * s->heads * s->head_dim;
        size_t nk = (size_t)s->batch * s->kv_len * s->heads * s->head_dim;
        j.a = alloc_random(nq, 1, 2.0f);
        j.b = alloc_random(nk, 2, 2.0f);
        j.c = alloc_random(nk, 3, 1.0f);
        j.d = alloc_random(nq, 4, 1.0f);
        j.e = alloc_random((size_t)s->batch * s->heads * s->q_len, 5, 1.0f);
        j.f = alloc_random(nq, 6, 1.0f);
        j.g = alloc_random(nq, 7, 1.0f);
        j.h = alloc_random(nk, 8, 1.0f);
        j.i = alloc_random(nk, 9, 1.0f);
        Error err;
        if (j.backward &&
            attention_forward_tiled(ctx, s, &j.t, j.a, j.b, j.c, j.d, j.e, &err) != 0) {
            printf("error: %s\nok\n", err.message);
            return;
        }
    } else if (strcmp(kind, "silu") == 0) {
        if (sscanf(rest, "%d %d", &j.rows, &reps) != 2) {
            printf("error: bad silu request\nok\n");
            return;
        }
        j.a = alloc_random((size_t)j.rows, 1, 4.0f);
        j.b = alloc_random((size_t)j.rows, 2, 1.0f);
        j.c = alloc_random((size_t)j.rows, 3, 1.0f);
    } else if (strcmp(kind, "linear") == 0 || strcmp(kind, "geglu") == 0) {
        int got = strcmp(kind, "linear") == 0
                      ? sscanf(rest, "%d %d %d %d", &j.rows, &j.in, &j.out, &reps)
                      : sscanf(rest, "%d %d %d", &j.rows, &j.in, &reps) + 1;
        if (got != 4) {
            printf("error: bad %s request\nok\n", kind);
            return;
        }
        if (strcmp(kind, "geglu") == 0)
            j.out = j.in;
        size_t big = (size_t)j.rows * (j.in > j.out ? j.in : j.out) * 2;
        j.a = alloc_random(big, 1, 1.0f);
        j.b =
            alloc_random((size_t)j.in * j.out * 2 > big ? (size_t)j.in * j.out * 2 : big, 2, 0.05f);
        j.c = alloc_random(big, 3, 1.0f);
        j.f = alloc_random((size_t)j.out, 4, 1.0f);
    } else {
        printf("error: unknown kind %s\nok\n", kind);
        return;
    }
    if (reps < 1)
        reps = 1;
    double *times = malloc(sizeof(double) * reps);
    Error err;
    int rc = run(&j, &err);
    const double cpu0 = cpu_ms();
    for (int r = 0; r < reps && rc == 0; r++) {
        double t0 = now_ms();
        rc = run(&j, &err);
        times[r] = now_ms() - t0;
    }
    if (rc)
        printf("error: %s\n", err.message);
    else {
        qsort(times, reps, sizeof *times, cmp_double);
        printf("%.4f %.4f %.4f\n", times[0], times[reps / 2], (cpu_ms() - cpu0) / reps);
    }
    printf("ok\n");
    fflush(stdout);
    free(times);
    float *bufs[] = {j.a, j.b, j.c, j.d, j.e, j.f, j.g, j.h, j.i};
    for (size_t k = 0; k < sizeof bufs / sizeof *bufs; k++)
        free(bufs[k]);
}

int main(void) {
    const char *env = getenv("SDTI_THREADS");
    int threads = env ? atoi(env) : 2;
    NnContext *ctx = NULL;
    Error err;
    if (nn_context_create(threads, &ctx, &err)) {
        fprintf(stderr, "bench_attention: %s\n", err.message);
        return 1;
    }
    char line[512];
    while (fgets(line, sizeof line, stdin))
        handle(ctx, line);
    nn_context_free(ctx);
    return 0;
}
