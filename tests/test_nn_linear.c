// labels: unit
/* linear_forward / linear_backward_input against torch (tests/fixtures/nn/attn/linear.safetensors,
 * written by tools/reference/make_nn_attn_fixtures.py: float64 torch results of float32
 * inputs), and the input gradient against central finite differences of the forward.
 * Error measure everywhere: max|ours - ref| / max|ref|. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"
#include "nn/linear.h"
#include "test_util.h"

static TensorSet g_fix;

static const float *fixture(const char *name, size_t numel) {
    const NamedTensor *t = tensor_set_find(&g_fix, name);
    CHECKF(t && t->dtype == DTYPE_F32 && (size_t)tensor_numel(t) == numel,
           "fixture tensor %s missing or not float32[%zu]", name, numel);
    return t && t->dtype == DTYPE_F32 && (size_t)tensor_numel(t) == numel ? t->data : NULL;
}

/* Deterministic values in [-1, 1) for the finite-difference check. */
static float next_uniform(unsigned long long *state) {
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((*state >> 40) * (1.0 / 8388608.0) - 1.0);
}

static void test_against_torch(NnContext *ctx) {
    const int rows = 37, in = 24, out = 40;
    const float *x = fixture("x", (size_t)rows * in), *w = fixture("w", (size_t)out * in);
    const float *b = fixture("b", out), *dy = fixture("dy", (size_t)rows * out);
    const float *dx_init = fixture("dx_init", (size_t)rows * in);
    const float *y_ref = fixture("y", (size_t)rows * out);
    const float *y_nb_ref = fixture("y_nobias", (size_t)rows * out);
    const float *dx_ref = fixture("dx", (size_t)rows * in);
    const float *dx_acc_ref = fixture("dx_accumulated", (size_t)rows * in);
    if (!x || !w || !b || !dy || !dx_init || !y_ref || !y_nb_ref || !dx_ref || !dx_acc_ref)
        return;
    Error err = {{0}};
    float *y = malloc(sizeof(float) * rows * out), *dx = malloc(sizeof(float) * rows * in);
    CHECK_OK(linear_forward(ctx, rows, in, out, x, w, b, y, &err), &err);
    double e = test_max_rel_err(y, y_ref, (size_t)rows * out);
    printf("linear forward (bias): %.2e\n", e);
    CHECKF(e < 1e-5, "linear forward with bias: error %.3e", e);
    CHECK_OK(linear_forward(ctx, rows, in, out, x, w, NULL, y, &err), &err);
    e = test_max_rel_err(y, y_nb_ref, (size_t)rows * out);
    printf("linear forward (no bias): %.2e\n", e);
    CHECKF(e < 1e-5, "linear forward without bias: error %.3e", e);
    /* Overwrite: start from garbage so a missed write shows. */
    for (int i = 0; i < rows * in; i++)
        dx[i] = NAN;
    CHECK_OK(linear_backward_input(ctx, rows, in, out, dy, w, dx, 0, &err), &err);
    e = test_max_rel_err(dx, dx_ref, (size_t)rows * in);
    printf("linear backward_input: %.2e\n", e);
    CHECKF(e < 1e-5, "linear backward_input: error %.3e", e);
    memcpy(dx, dx_init, sizeof(float) * rows * in);
    CHECK_OK(linear_backward_input(ctx, rows, in, out, dy, w, dx, 1, &err), &err);
    e = test_max_rel_err(dx, dx_acc_ref, (size_t)rows * in);
    printf("linear backward_input (accumulate): %.2e\n", e);
    CHECKF(e < 1e-5, "linear backward_input accumulating: error %.3e", e);
    free(y);
    free(dx);
}

/* loss = sum(y * g) in double; its gradient in x is backward_input(g). */
static double linear_loss(NnContext *ctx, int rows, int in, int out, const float *x, const float *w,
                          const float *b, const float *g, float *y) {
    Error err;
    if (linear_forward(ctx, rows, in, out, x, w, b, y, &err))
        return NAN;
    double s = 0;
    for (int i = 0; i < rows * out; i++)
        s += (double)y[i] * g[i];
    return s;
}

static void test_finite_differences(NnContext *ctx) {
    const int rows = 5, in = 7, out = 6;
    unsigned long long st = 42;
    float x[5 * 7], w[6 * 7], b[6], g[5 * 6], y[5 * 6], dx[5 * 7], num[5 * 7];
    for (int i = 0; i < rows * in; i++)
        x[i] = next_uniform(&st);
    for (int i = 0; i < out * in; i++)
        w[i] = next_uniform(&st);
    for (int i = 0; i < out; i++)
        b[i] = next_uniform(&st);
    for (int i = 0; i < rows * out; i++)
        g[i] = next_uniform(&st);
    Error err = {{0}};
    CHECK_OK(linear_backward_input(ctx, rows, in, out, g, w, dx, 0, &err), &err);
    const float eps = 1e-2f;
    for (int i = 0; i < rows * in; i++) {
        float keep = x[i];
        x[i] = keep + eps;
        double lp = linear_loss(ctx, rows, in, out, x, w, b, g, y);
        x[i] = keep - eps;
        double lm = linear_loss(ctx, rows, in, out, x, w, b, g, y);
        x[i] = keep;
        num[i] = (float)((lp - lm) / (2.0 * eps));
    }
    double e = test_max_rel_err(dx, num, (size_t)rows * in);
    printf("linear backward_input vs finite differences: %.2e\n", e);
    CHECKF(e < 1e-3, "linear backward_input vs finite differences: error %.3e", e);
}

static void test_bad_sizes(NnContext *ctx) {
    Error err = {{0}};
    float one = 1.0f;
    CHECK_FAILS_WITH(linear_forward(ctx, 1, 0, 1, &one, &one, NULL, &one, &err), &err,
                     "linear_forward: bad sizes");
    CHECK_FAILS_WITH(linear_backward_input(ctx, -1, 1, 1, &one, &one, &one, 0, &err), &err,
                     "linear_backward_input: bad sizes");
}

int main(void) {
    Error err = {{0}};
    NnContext *ctx = NULL;
    tensor_set_init(&g_fix);
    CHECK_OK(safetensors_open(test_fixture("nn/attn/linear.safetensors"), &g_fix, &err), &err);
    CHECK_OK(nn_context_create(2, &ctx, &err), &err);
    if (ctx) {
        test_against_torch(ctx);
        test_finite_differences(ctx);
        test_bad_sizes(ctx);
    }
    nn_context_free(ctx);
    tensor_set_free(&g_fix);
    return test_finish();
}
