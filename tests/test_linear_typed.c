// labels: unit
/* linear_forward_typed / linear_backward_input_typed with float16 and bfloat16 weights against
 * torch (tests/fixtures/nn/linear_half/, written by
 * tools/reference/make_nn_linear_half_fixtures.py: float64 results of float32 inputs and the
 * widened half weights). Every split gemm_half can make is run: the typed API's own choice,
 * small forced tiles (several column and sum tiles, ragged last ones) and the many-rows chunked
 * path with small chunks; rows 1, 2, 5, 37, 300, 600 and 4100; with and without bias;
 * overwriting and accumulating input gradients. Error measure: max|ours - ref| / max|ref|. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"
#include "nn/gemm_half.h"
#include "nn/linear.h"
#include "test_util.h"

static TensorSet g_fix;

/* float32 copy of a fixture tensor with the expected element count (NULL and a failure when
 * missing). */
static float *load(const char *name, size_t numel) {
    size_t n = 0;
    float *p = test_load_f32(&g_fix, name, &n);
    CHECKF(p && n == numel, "fixture tensor %s missing or not [%zu] values", name, numel);
    if (p && n != numel) {
        free(p);
        p = NULL;
    }
    return p;
}

typedef struct Case {
    const char *prefix, *dtype_name;
    DType dtype;
    int rows, in, out;
    int separate_dx_init; /* 0: the accumulating gradient starts from x */
} Case;

typedef struct Data {
    const void *w; /* as stored: 16-bit values */
    float *wide;   /* the same values widened, for the old path */
    float *x, *b, *dy, *dx_init, *y, *y_nobias, *dx, *dx_acc;
} Data;

static void data_free(Data *d) {
    free(d->wide), free(d->x), free(d->b), free(d->dy), free(d->dx_init), free(d->y);
    free(d->y_nobias), free(d->dx), free(d->dx_acc);
}

static int data_load(const Case *c, Data *d) {
    memset(d, 0, sizeof *d);
    char name[96];
    size_t ri = (size_t)c->rows * c->in, ro = (size_t)c->rows * c->out, io = (size_t)c->in * c->out;
    snprintf(name, sizeof name, "%s.w_%s", c->prefix, c->dtype_name);
    const NamedTensor *w = tensor_set_find(&g_fix, name);
    CHECKF(w && w->dtype == c->dtype && (size_t)tensor_numel(w) == io,
           "fixture %s missing or not %s[%zu]", name, dtype_display_name(c->dtype), io);
    if (!w || w->dtype != c->dtype || (size_t)tensor_numel(w) != io)
        return -1;
    d->w = w->data;
    d->wide = load(name, io);
    snprintf(name, sizeof name, "%s.x", c->prefix);
    d->x = load(name, ri);
    snprintf(name, sizeof name, "%s.b", c->prefix);
    d->b = load(name, (size_t)c->out);
    snprintf(name, sizeof name, "%s.dy", c->prefix);
    d->dy = load(name, ro);
    snprintf(name, sizeof name, c->separate_dx_init ? "%s.dx_init" : "%s.x", c->prefix);
    d->dx_init = load(name, ri);
    snprintf(name, sizeof name, "%s.%s.y", c->prefix, c->dtype_name);
    d->y = load(name, ro);
    if (c->separate_dx_init) { /* the tall case has no bias-free forward */
        snprintf(name, sizeof name, "%s.%s.y_nobias", c->prefix, c->dtype_name);
        d->y_nobias = load(name, ro);
    }
    snprintf(name, sizeof name, "%s.%s.dx", c->prefix, c->dtype_name);
    d->dx = load(name, ri);
    snprintf(name, sizeof name, "%s.%s.dx_accumulated", c->prefix, c->dtype_name);
    d->dx_acc = load(name, ri);
    int ok = d->wide && d->x && d->b && d->dy && d->dx_init && d->y && d->dx && d->dx_acc &&
             (d->y_nobias || !c->separate_dx_init);
    return ok ? 0 : -1;
}

/* How the product is split: NULL for the typed API's own choice, else gemm_half forced. */
typedef struct Split {
    const char *name;
    const GemmHalfTiles *tiles;
} Split;

static int forward(NnContext *ctx, const Split *s, int rows, int in, int out, const float *x,
                   const void *w, DType dt, const float *bias, float *y, Error *err) {
    if (!s->tiles)
        return linear_forward_typed(ctx, rows, in, out, x, w, dt, bias, y, err);
    for (int r = 0; bias && r < rows; r++)
        memcpy(y + (size_t)r * out, bias, sizeof(float) * out);
    return gemm_half(ctx, 'T', rows, out, in, x, in, w, dt, in, bias ? 1.0f : 0.0f, y, out,
                     s->tiles, err);
}

static int backward(NnContext *ctx, const Split *s, int rows, int in, int out, const float *dy,
                    const void *w, DType dt, float *dx, int accumulate, Error *err) {
    if (!s->tiles)
        return linear_backward_input_typed(ctx, rows, in, out, dy, w, dt, dx, accumulate, err);
    return gemm_half(ctx, 'N', rows, in, out, dy, out, w, dt, in, accumulate ? 1.0f : 0.0f, dx, in,
                     s->tiles, err);
}

static double worst_torch = 0, worst_old = 0;

/* ours against torch (tolerance 1e-5) and against the old widen-then-sgemm path (1e-6). */
static void compare(const char *what, const Case *c, const Split *s, int rows, const float *ours,
                    const float *ref, const float *old, size_t n) {
    double e = test_max_rel_err(ours, ref, n), o = test_max_rel_err(ours, old, n);
    worst_torch = e > worst_torch ? e : worst_torch;
    worst_old = o > worst_old ? o : worst_old;
    CHECKF(e < 1e-5, "%s %s %s rows %d (%s): error %.3e against torch", c->prefix, c->dtype_name,
           what, rows, s->name, e);
    CHECKF(o < 1e-6, "%s %s %s rows %d (%s): %.3e from the widen-then-sgemm path", c->prefix,
           c->dtype_name, what, rows, s->name, o);
}

static void run_rows(NnContext *ctx, const Case *c, const Data *d, const Split *s, int rows) {
    Error err = {{0}};
    int in = c->in, out = c->out;
    size_t ri = (size_t)rows * in, ro = (size_t)rows * out;
    float *y = malloc(sizeof(float) * ro), *old_y = malloc(sizeof(float) * ro);
    float *dx = malloc(sizeof(float) * ri), *old_dx = malloc(sizeof(float) * ri);

    for (size_t i = 0; i < ro; i++)
        y[i] = NAN; /* a missed write shows */
    CHECK_OK(forward(ctx, s, rows, in, out, d->x, d->w, c->dtype, d->b, y, &err), &err);
    CHECK_OK(linear_forward(ctx, rows, in, out, d->x, d->wide, d->b, old_y, &err), &err);
    compare("forward", c, s, rows, y, d->y, old_y, ro);
    if (d->y_nobias) {
        for (size_t i = 0; i < ro; i++)
            y[i] = NAN;
        CHECK_OK(forward(ctx, s, rows, in, out, d->x, d->w, c->dtype, NULL, y, &err), &err);
        CHECK_OK(linear_forward(ctx, rows, in, out, d->x, d->wide, NULL, old_y, &err), &err);
        compare("forward without bias", c, s, rows, y, d->y_nobias, old_y, ro);
    }

    for (size_t i = 0; i < ri; i++)
        dx[i] = NAN;
    CHECK_OK(backward(ctx, s, rows, in, out, d->dy, d->w, c->dtype, dx, 0, &err), &err);
    CHECK_OK(linear_backward_input(ctx, rows, in, out, d->dy, d->wide, old_dx, 0, &err), &err);
    compare("backward", c, s, rows, dx, d->dx, old_dx, ri);
    memcpy(dx, d->dx_init, sizeof(float) * ri);
    memcpy(old_dx, d->dx_init, sizeof(float) * ri);
    CHECK_OK(backward(ctx, s, rows, in, out, d->dy, d->w, c->dtype, dx, 1, &err), &err);
    CHECK_OK(linear_backward_input(ctx, rows, in, out, d->dy, d->wide, old_dx, 1, &err), &err);
    compare("backward accumulating", c, s, rows, dx, d->dx_acc, old_dx, ri);
    free(y), free(old_y), free(dx), free(old_dx);
}

static void test_case(NnContext *ctx, const Case *c, const int *row_counts, int n_rows) {
    Data d;
    if (data_load(c, &d) == 0) {
        static const GemmHalfTiles small = {16, 8, 0, 0}, wide = {48, 0, 0, 0};
        static const GemmHalfTiles chunk_small = {0, 0, 1, 64}, chunk_default = {0, 0, 1, 0};
        const Split splits[] = {{"typed API", NULL},
                                {"tiles 16x8", &small},
                                {"tiles 48 wide", &wide},
                                {"chunks of 64", &chunk_small},
                                {"default chunks", &chunk_default}};
        for (size_t s = 0; s < sizeof splits / sizeof splits[0]; s++)
            for (int r = 0; r < n_rows; r++)
                run_rows(ctx, c, &d, &splits[s], row_counts[r]);
    }
    data_free(&d);
}

/* float32 weights take linear_forward / linear_backward_input unchanged: the same bits. */
static void test_f32_passthrough(NnContext *ctx) {
    const int rows = 37, in = 45, out = 51;
    float *x = load("small.x", (size_t)rows * in), *w = load("small.w_f16", (size_t)in * out);
    float *b = load("small.b", out), *dy = load("small.dy", (size_t)rows * out);
    float *y1 = malloc(sizeof(float) * rows * out), *y2 = malloc(sizeof(float) * rows * out);
    float *d1 = malloc(sizeof(float) * rows * in), *d2 = malloc(sizeof(float) * rows * in);
    Error err = {{0}};
    if (x && w && b && dy) {
        CHECK_OK(linear_forward_typed(ctx, rows, in, out, x, w, DTYPE_F32, b, y1, &err), &err);
        CHECK_OK(linear_forward(ctx, rows, in, out, x, w, b, y2, &err), &err);
        CHECK(memcmp(y1, y2, sizeof(float) * rows * out) == 0);
        CHECK_OK(linear_backward_input_typed(ctx, rows, in, out, dy, w, DTYPE_F32, d1, 0, &err),
                 &err);
        CHECK_OK(linear_backward_input(ctx, rows, in, out, dy, w, d2, 0, &err), &err);
        CHECK(memcmp(d1, d2, sizeof(float) * rows * in) == 0);
    }
    free(x), free(w), free(b), free(dy), free(y1), free(y2), free(d1), free(d2);
}

static void test_bad_input(NnContext *ctx) {
    Error err = {{0}};
    float one = 1.0f;
    unsigned short h = 0x3c00;
    CHECK_FAILS_WITH(linear_forward_typed(ctx, 1, 1, 1, &one, &h, DTYPE_I16, NULL, &one, &err),
                     &err, "weights must be float16 or bfloat16");
    CHECK_FAILS_WITH(linear_forward_typed(ctx, 1, 0, 1, &one, &h, DTYPE_F16, NULL, &one, &err),
                     &err, "linear_forward: bad sizes");
    CHECK_FAILS_WITH(
        linear_backward_input_typed(ctx, -1, 1, 1, &one, &h, DTYPE_BF16, &one, 0, &err), &err,
        "linear_backward_input: bad sizes");
}

int main(void) {
    Error err = {{0}};
    NnContext *ctx = NULL;
    tensor_set_init(&g_fix);
    CHECK_OK(safetensors_open(test_fixture("nn/linear_half/linear_half.safetensors"), &g_fix, &err),
             &err);
    CHECK_OK(nn_context_create(2, &ctx, &err), &err);
    if (ctx) {
        const int small_rows[] = {1, 2, 5, 37}, tall_rows[] = {300, 600, 4100};
        const Case small_f16 = {"small", "f16", DTYPE_F16, 37, 45, 51, 1};
        const Case small_bf16 = {"small", "bf16", DTYPE_BF16, 37, 45, 51, 1};
        const Case tall = {"tall", "bf16", DTYPE_BF16, 4100, 19, 21, 0};
        test_case(ctx, &small_f16, small_rows, 4);
        test_case(ctx, &small_bf16, small_rows, 4);
        test_case(ctx, &tall, tall_rows, 3);
        printf("worst error against torch %.2e, against the widen-then-sgemm path %.2e\n",
               worst_torch, worst_old);
        test_f32_passthrough(ctx);
        test_bad_input(ctx);
    }
    nn_context_free(ctx);
    tensor_set_free(&g_fix);
    return test_finish();
}
