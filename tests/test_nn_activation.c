// labels: unit
/* SiLU, exact GELU, quick GELU and GEGLU, forward and input gradient, against torch
 * (tests/fixtures/nn/attn/activation.safetensors from tools/reference/make_nn_attn_fixtures.py:
 * float64 torch results on float32 inputs, a grid over [-12, 12] plus random values), both the
 * run-time chosen (AVX-512 here) and the portable implementation, in-place use, and each
 * backward against central finite differences of its forward.
 * Error measure everywhere: max|ours - ref| / max|ref|. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"
#include "nn/activation.h"
#include "nn/activation_internal.h"
#include "test_util.h"

#define N_X        1000
#define GEGLU_ROWS 13
#define GEGLU_DIM  17

static TensorSet g_fix;

static const float *fixture(const char *name, size_t numel) {
    const NamedTensor *t = tensor_set_find(&g_fix, name);
    bool ok = t && t->dtype == DTYPE_F32 && (size_t)tensor_numel(t) == numel;
    CHECKF(ok, "fixture tensor %s missing or not float32[%zu]", name, numel);
    return ok ? t->data : NULL;
}

static float next_uniform(unsigned long long *state) {
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((*state >> 40) * (1.0 / 8388608.0) - 1.0);
}

typedef struct Elementwise {
    const char *name;
    ActKind kind;
    void (*forward)(size_t, const float *, float *);
    void (*backward)(size_t, const float *, const float *, float *);
} Elementwise;

static const Elementwise ELEMENTWISE[] = {
    {"silu", ACT_SILU, silu_forward, silu_backward_input},
    {"gelu", ACT_GELU, gelu_forward, gelu_backward_input},
    {"quick_gelu", ACT_QUICK_GELU, quick_gelu_forward, quick_gelu_backward_input},
};

static void check_err(const char *what, double e, double tol) {
    printf("%-40s %.2e\n", what, e);
    CHECKF(e < tol, "%s: error %.3e over %.1e", what, e, tol);
}

static void test_elementwise(const Elementwise *f) {
    char key[64], what[96];
    const float *x = fixture("x", N_X), *dy = fixture("dy", N_X);
    snprintf(key, sizeof key, "%s.y", f->name);
    const float *y_ref = fixture(key, N_X);
    snprintf(key, sizeof key, "%s.dx", f->name);
    const float *dx_ref = fixture(key, N_X);
    if (!x || !dy || !y_ref || !dx_ref)
        return;
    float y[N_X], dx[N_X], buf[N_X];
    f->forward(N_X, x, y);
    snprintf(what, sizeof what, "%s forward", f->name);
    check_err(what, test_max_rel_err(y, y_ref, N_X), 1e-5);
    f->backward(N_X, x, dy, dx);
    snprintf(what, sizeof what, "%s backward_input", f->name);
    check_err(what, test_max_rel_err(dx, dx_ref, N_X), 1e-5);
    /* The portable implementation (the AVX-512 one runs above on machines that have it). */
    activation_forward_portable(f->kind, N_X, x, y);
    snprintf(what, sizeof what, "%s forward (portable)", f->name);
    check_err(what, test_max_rel_err(y, y_ref, N_X), 1e-5);
    activation_backward_portable(f->kind, N_X, x, dy, dx);
    snprintf(what, sizeof what, "%s backward_input (portable)", f->name);
    check_err(what, test_max_rel_err(dx, dx_ref, N_X), 1e-5);
    /* In place: y == x, dx == dy. */
    memcpy(buf, x, sizeof buf);
    f->forward(N_X, buf, buf);
    snprintf(what, sizeof what, "%s forward in place", f->name);
    check_err(what, test_max_rel_err(buf, y_ref, N_X), 1e-5);
    memcpy(buf, dy, sizeof buf);
    f->backward(N_X, x, buf, buf);
    snprintf(what, sizeof what, "%s backward_input in place", f->name);
    check_err(what, test_max_rel_err(buf, dx_ref, N_X), 1e-5);
}

/* Large arrays take the multi-threaded path: the same values as element-wise calls. */
static void test_elementwise_parallel(const Elementwise *f) {
    const size_t n = 100003;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *one = malloc(n * sizeof *y);
    unsigned long long st = 7;
    for (size_t i = 0; i < n; i++)
        x[i] = 8.0f * next_uniform(&st);
    f->forward(n, x, y);
    size_t bad = 0;
    for (size_t i = 0; i < n; i += 997) {
        f->forward(1, x + i, one);
        bad += one[0] != y[i];
    }
    CHECKF(bad == 0, "%s: %zu threaded results differ from single-element calls", f->name, bad);
    free(x);
    free(y);
    free(one);
}

static double sum_product(const float *a, const float *g, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * g[i];
    return s;
}

static void test_elementwise_fd(const Elementwise *f) {
    enum { N = 64 };
    float x[N], g[N], y[N], dx[N], num[N];
    unsigned long long st = 11;
    for (int i = 0; i < N; i++) {
        x[i] = 4.0f * next_uniform(&st);
        g[i] = next_uniform(&st);
    }
    f->backward(N, x, g, dx);
    const float eps = 1e-2f;
    for (int i = 0; i < N; i++) {
        float keep = x[i], p, m;
        x[i] = keep + eps;
        f->forward(1, x + i, &p);
        x[i] = keep - eps;
        f->forward(1, x + i, &m);
        x[i] = keep;
        num[i] = (float)(((double)p - m) / (2.0 * eps) * g[i]);
    }
    (void)y;
    char what[96];
    snprintf(what, sizeof what, "%s backward vs finite differences", f->name);
    check_err(what, test_max_rel_err(dx, num, N), 1e-3);
}

static void test_geglu(void) {
    const int rows = GEGLU_ROWS, dim = GEGLU_DIM;
    const float *x = fixture("geglu.x", (size_t)rows * 2 * dim);
    const float *dy = fixture("geglu.dy", (size_t)rows * dim);
    const float *y_ref = fixture("geglu.y", (size_t)rows * dim);
    const float *dx_ref = fixture("geglu.dx", (size_t)rows * 2 * dim);
    if (!x || !dy || !y_ref || !dx_ref)
        return;
    float y[GEGLU_ROWS * GEGLU_DIM], dx[GEGLU_ROWS * 2 * GEGLU_DIM];
    geglu_forward(rows, dim, x, y);
    check_err("geglu forward", test_max_rel_err(y, y_ref, (size_t)rows * dim), 1e-5);
    geglu_backward_input(rows, dim, x, dy, dx);
    check_err("geglu backward_input", test_max_rel_err(dx, dx_ref, (size_t)rows * 2 * dim), 1e-5);

    /* Finite differences on the same inputs: loss = sum(y * dy). */
    float xp[GEGLU_ROWS * 2 * GEGLU_DIM], num[GEGLU_ROWS * 2 * GEGLU_DIM];
    memcpy(xp, x, sizeof xp);
    const float eps = 1e-2f;
    for (int i = 0; i < rows * 2 * dim; i++) {
        float keep = xp[i];
        xp[i] = keep + eps;
        geglu_forward(rows, dim, xp, y);
        double lp = sum_product(y, dy, (size_t)rows * dim);
        xp[i] = keep - eps;
        geglu_forward(rows, dim, xp, y);
        double lm = sum_product(y, dy, (size_t)rows * dim);
        xp[i] = keep;
        num[i] = (float)((lp - lm) / (2.0 * eps));
    }
    check_err("geglu backward vs finite differences",
              test_max_rel_err(dx, num, (size_t)rows * 2 * dim), 1e-3);
}

int main(void) {
    Error err = {{0}};
    tensor_set_init(&g_fix);
    CHECK_OK(safetensors_open(test_fixture("nn/attn/activation.safetensors"), &g_fix, &err), &err);
    for (size_t i = 0; i < sizeof ELEMENTWISE / sizeof *ELEMENTWISE; i++) {
        test_elementwise(&ELEMENTWISE[i]);
        test_elementwise_parallel(&ELEMENTWISE[i]);
        test_elementwise_fd(&ELEMENTWISE[i]);
    }
    test_geglu();
    tensor_set_free(&g_fix);
    return test_finish();
}
