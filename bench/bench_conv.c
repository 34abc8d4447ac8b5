/* Convolution benchmark worker, driven by bench/bench_conv.py (which times PyTorch on the same
 * shapes in the same run and prints the ratios). Reads one request per line on stdin:
 *
 *   fwd|bwd batch in_ch out_ch h w kernel stride pad_top pad_left pad_bottom pad_right reps
 *           algo[,algo...]
 *
 * and answers, per algorithm, one line
 *
 *   algo best_ms median_ms err reorder_in_ms reorder_w_ms conv_ms reorder_out_ms
 *
 * where the times are of whole conv2d_forward / conv2d_backward_input calls (minimum and
 * median over `reps` after one warm-up call that also creates the primitive), err is
 * max|out - out_blocked| / max|out_blocked| against the first algorithm of the list, and the
 * four stage times come from one extra profiled call (oneDNN algorithms only; -1 otherwise).
 * "ok" ends each answer; an algorithm without an implementation for the shape prints "n/a".
 * Threads: SDTI_THREADS (default 2), one count for OpenMP, OpenBLAS and oneDNN. */
#include "nn/conv2d.h"
#include "nn/conv2d_internal.h"
#include "nn/nn_context.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *ALGO_NAMES[CONV2D_ALGO_COUNT] = {"blocked", "nchw", "winograd", "gemm", "bf16"};

static int algo_from_name(const char *name) {
    for (int i = 0; i < CONV2D_ALGO_COUNT; i++)
        if (strcmp(name, ALGO_NAMES[i]) == 0)
            return i;
    return -1;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static float *alloc_random(size_t n, unsigned seed) {
    float *p = aligned_alloc(64, ((n * sizeof(float)) + 63) & ~(size_t)63);
    if (!p)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (float)(seed >> 8) / (float)(1u << 23) - 1.0f;
    }
    return p;
}

static double rel_diff(const float *a, const float *ref, size_t n) {
    double md = 0.0, mr = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (!(d <= md))
            md = d;
        if (fabs(ref[i]) > mr)
            mr = fabs(ref[i]);
    }
    return mr > 0.0 ? md / mr : md;
}

static int call(NnContext *ctx, int backward, const Conv2dShape *s, const float *in, const float *w,
                const float *b, float *out, Error *err) {
    return backward ? conv2d_backward_input(ctx, s, in, w, out, err)
                    : conv2d_forward(ctx, s, in, w, b, out, err);
}

static void handle(NnContext *ctx, char *line) {
    char dir[8], algos[128];
    Conv2dShape s;
    int reps;
    if (sscanf(line, "%7s %d %d %d %d %d %d %d %d %d %d %d %d %127s", dir, &s.batch, &s.in_ch,
               &s.out_ch, &s.in_h, &s.in_w, &s.kernel_h, &s.stride, &s.pad_top, &s.pad_left,
               &s.pad_bottom, &s.pad_right, &reps, algos) != 14) {
        printf("error: bad request\nok\n");
        return;
    }
    s.kernel_w = s.kernel_h;
    int backward = strcmp(dir, "bwd") == 0;
    size_t nx = (size_t)s.batch * s.in_ch * s.in_h * s.in_w;
    size_t ny = (size_t)s.batch * s.out_ch * conv2d_out_h(&s) * conv2d_out_w(&s);
    size_t nw = (size_t)s.out_ch * s.in_ch * s.kernel_h * s.kernel_w;
    size_t nin = backward ? ny : nx, nout = backward ? nx : ny;
    float *in = alloc_random(nin, 1u), *w = alloc_random(nw, 2u), *b = alloc_random(s.out_ch, 3u);
    float *out = alloc_random(nout, 4u), *ref = NULL;
    double scale = 1.0 / sqrt((double)s.in_ch * s.kernel_h * s.kernel_w);
    for (size_t i = 0; w && i < nw; i++)
        w[i] *= (float)scale;
    double *times = malloc((size_t)(reps > 0 ? reps : 1) * sizeof *times);
    for (char *name = strtok(algos, ","); name && in && w && b && out; name = strtok(NULL, ",")) {
        int a = algo_from_name(name);
        Error err;
        if (a < 0 || conv2d_set_algorithm(ctx, (Conv2dAlgorithm)a, &err) ||
            call(ctx, backward, &s, in, w, b, out, &err)) {
            printf("%s n/a\n", name);
            continue;
        }
        for (int r = 0; r < reps; r++) {
            double t0 = omp_get_wtime();
            call(ctx, backward, &s, in, w, b, out, &err);
            times[r] = (omp_get_wtime() - t0) * 1e3;
        }
        qsort(times, (size_t)reps, sizeof *times, cmp_double);
        double err_rel = 0.0;
        if (!ref) {
            ref = malloc(nout * sizeof *ref);
            if (ref)
                memcpy(ref, out, nout * sizeof *ref);
        } else {
            err_rel = rel_diff(out, ref, nout);
        }
        Conv2dProfile prof = {0};
        double st[4] = {-1, -1, -1, -1};
        if (a != CONV2D_ALGO_IM2COL_SGEMM) {
            conv2d_profile_enable(ctx, &prof, &err);
            call(ctx, backward, &s, in, w, b, out, &err);
            conv2d_profile_enable(ctx, NULL, &err);
            st[0] = prof.reorder_in * 1e3;
            st[1] = prof.reorder_weights * 1e3;
            st[2] = prof.convolution * 1e3;
            st[3] = prof.reorder_out * 1e3;
        }
        printf("%s %.3f %.3f %.3g %.3f %.3f %.3f %.3f\n", name, times[0], times[reps / 2], err_rel,
               st[0], st[1], st[2], st[3]);
        fflush(stdout);
    }
    printf("ok\n");
    fflush(stdout);
    free(times);
    free(in);
    free(w);
    free(b);
    free(out);
    free(ref);
}

int main(void) {
    const char *env = getenv("SDTI_THREADS");
    int threads = env ? atoi(env) : 2;
    NnContext *ctx = NULL;
    Error err;
    if (nn_context_create(threads, &ctx, &err)) {
        fprintf(stderr, "bench_conv: %s\n", err.message);
        return 1;
    }
    char line[512];
    while (fgets(line, sizeof line, stdin))
        handle(ctx, line);
    nn_context_free(ctx);
    return 0;
}
