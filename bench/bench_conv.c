/* Convolution benchmark worker, driven by bench/bench_conv.py (which times PyTorch on the same
 * shapes in the same run and prints the ratios). Reads one request per line on stdin:
 *
 *   fwd|bwd batch in_ch out_ch h w kernel stride pad_top pad_left pad_bottom pad_right reps
 *           warm profile algo[,algo...]
 *
 * and answers, per algorithm, one line
 *
 *   algo best_ms median_ms err reorder_in_ms reorder_w_ms conv_ms reorder_out_ms
 *
 * where the times are of whole conv2d_forward / conv2d_backward_input calls (minimum and
 * median over `reps`, after one warm-up call that also creates the primitive when warm is 1),
 * err is max|out - out_blocked| / max|out_blocked| against the first algorithm of the list,
 * and the four stage times come from one extra profiled call when profile is 1 (oneDNN
 * algorithms only; -1 otherwise). The driver alternates short requests with PyTorch's runs so
 * that load from other processes hits both alike.
 * "ok" ends each answer; an algorithm without an implementation for the shape prints "n/a".
 *
 * The other kernels of docs/kernels.md, best-of-reps forward and backward milliseconds:
 *   gn batch channels spatial groups reps      group_norm_forward / _backward_input
 *   ln rows dim reps                           layer_norm_forward / _backward_input
 *   up planes h w reps                         upsample_nearest2x_forward / _backward_input
 * answered by "<kind> fwd_ms bwd_ms" and "ok".
 * Threads: SDTI_THREADS (default 2), one count for OpenMP, OpenBLAS and oneDNN. */
#include "nn/conv2d.h"
#include "nn/conv2d_internal.h"
#include "nn/nn_context.h"
#include "nn/norm.h"
#include "nn/resample.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *ALGO_NAMES[CONV2D_ALGO_COUNT] = {"blocked", "nchw", "winograd", "gemm",
                                                    "bf16",    "auto", "wino43"};

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

/* Best-of-reps times of the norm and upsampling kernels (see the header comment). */
static void handle_other(NnContext *ctx, const char *line) {
    char kind[8];
    int a = 0, b = 0, c = 0, d = 0, reps = 0;
    int n = sscanf(line, "%7s %d %d %d %d %d", kind, &a, &b, &c, &d, &reps);
    int is_gn = strcmp(kind, "gn") == 0, is_ln = strcmp(kind, "ln") == 0;
    if (is_ln || strcmp(kind, "up") == 0)
        reps = is_ln ? c : d;
    if ((is_gn && n != 6) || (!is_gn && n < 4) || reps < 1) {
        printf("error: bad request\nok\n");
        return;
    }
    size_t elems = is_gn ? (size_t)a * b * c : is_ln ? (size_t)a * b : (size_t)a * b * c;
    size_t out_elems = (!is_gn && !is_ln) ? 4 * elems : elems;
    size_t rows = is_gn ? (size_t)a * d : is_ln ? (size_t)a : 1;
    size_t width = is_gn ? (size_t)b : is_ln ? (size_t)b : 1;
    float *x = alloc_random(elems, 1u), *y = alloc_random(out_elems, 2u);
    float *dy = alloc_random(out_elems, 3u), *dx = alloc_random(elems, 4u);
    float *gamma = alloc_random(width, 5u), *beta = alloc_random(width, 6u);
    float *stats = alloc_random(2 * rows, 7u);
    double best[2] = {1e30, 1e30};
    for (int r = 0; r <= reps && x && y && dy && dx && gamma && beta && stats; r++) {
        double t0 = omp_get_wtime();
        if (is_gn)
            group_norm_forward(ctx, a, b, c, d, 1e-5f, x, gamma, beta, y, stats);
        else if (is_ln)
            layer_norm_forward(ctx, a, b, 1e-5f, x, gamma, beta, y, stats);
        else
            upsample_nearest2x_forward(a, b, c, x, y);
        double t1 = omp_get_wtime();
        if (is_gn)
            group_norm_backward_input(ctx, a, b, c, d, x, gamma, stats, dy, dx);
        else if (is_ln)
            layer_norm_backward_input(ctx, a, b, x, gamma, stats, dy, dx);
        else
            upsample_nearest2x_backward_input(a, b, c, dy, dx);
        double t2 = omp_get_wtime();
        if (r > 0) { /* round 0 warms the caches and the thread pool */
            best[0] = fmin(best[0], (t1 - t0) * 1e3);
            best[1] = fmin(best[1], (t2 - t1) * 1e3);
        }
    }
    printf("%s %.3f %.3f\nok\n", kind, best[0], best[1]);
    fflush(stdout);
    free(x);
    free(y);
    free(dy);
    free(dx);
    free(gamma);
    free(beta);
    free(stats);
}

static void handle(NnContext *ctx, char *line) {
    if (strncmp(line, "gn ", 3) == 0 || strncmp(line, "ln ", 3) == 0 ||
        strncmp(line, "up ", 3) == 0) {
        handle_other(ctx, line);
        return;
    }
    char dir[8], algos[128];
    Conv2dShape s;
    int reps, warm, profile;
    if (sscanf(line, "%7s %d %d %d %d %d %d %d %d %d %d %d %d %d %d %127s", dir, &s.batch, &s.in_ch,
               &s.out_ch, &s.in_h, &s.in_w, &s.kernel_h, &s.stride, &s.pad_top, &s.pad_left,
               &s.pad_bottom, &s.pad_right, &reps, &warm, &profile, algos) != 16 ||
        reps < 1) {
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
            (warm && call(ctx, backward, &s, in, w, b, out, &err))) {
            printf("%s n/a\n", name);
            continue;
        }
        int failed = 0;
        for (int r = 0; r < reps; r++) {
            double t0 = omp_get_wtime();
            failed |= call(ctx, backward, &s, in, w, b, out, &err);
            times[r] = (omp_get_wtime() - t0) * 1e3;
        }
        if (failed) {
            printf("%s n/a\n", name);
            continue;
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
        if (profile && a != CONV2D_ALGO_IM2COL_SGEMM) {
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
