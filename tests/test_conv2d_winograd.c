// labels: unit golden
/* Our Winograd F(4x4, 3x3) (src/nn/conv2d_winograd.c) against PyTorch:
 * tests/fixtures/nn/winograd/winograd.safetensors (tools/reference/make_nn_winograd_fixtures.py:
 * F.conv2d forward and autograd's input gradient, cross-checked there against
 * F.conv_transpose2d, computed in float64 from weights stored as f32, f16 or bf16; odd,
 * non-square, 1x1 and 2x7 images, batch 2, channel counts off multiples of 16), plus the
 * 3x3 stride-1 cases of tests/fixtures/nn/conv/conv.safetensors.
 * Each case runs with the default scratch budget and with small budgets that force every
 * chunked path (several tile blocks, input channels summed in chunks, output channels in
 * chunks with either loop order), and through the public typed API (conv2d_forward_typed /
 * conv2d_backward_input_typed) with CONV2D_ALGO_WINOGRAD_F43 and, for the widening path,
 * CONV2D_ALGO_ONEDNN_NCHW.
 * Error measure: max|ours - ref| / max|ref|; limit 1e-4 (the tolerance; Winograd's
 * transforms round more than direct summation, measured ~1e-6 here). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"
#include "nn/conv2d.h"
#include "nn/conv2d_winograd.h"
#include "nn/nn_context.h"
#include "test_util.h"

#define TOL 1e-4

static double worst_forward, worst_backward;

static int json_int(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valueint : -1;
}

static float *load(const TensorSet *set, const char *case_name, const char *tensor, size_t *n) {
    char name[256];
    snprintf(name, sizeof name, "%s.%s", case_name, tensor);
    return test_load_f32(set, name, n);
}

typedef struct Case {
    const char *name;
    Conv2dShape s;
    const void *w; /* as stored */
    DType w_dtype;
    float *x, *b, *y, *dy, *dx;
    size_t nx, ny;
} Case;

static void note(double *worst, double e) {
    if (e > *worst)
        *worst = e;
}

/* The kernel itself at one budget (0: the default). */
static void run_direct(const Case *c, size_t budget, float *oy, float *odx) {
    Error err;
    size_t bytes = conv2d_winograd_scratch_bytes(&c->s, 0, budget);
    size_t bytes_b = conv2d_winograd_scratch_bytes(&c->s, 1, budget);
    if (bytes_b > bytes)
        bytes = bytes_b;
    float *scratch = malloc(bytes);
    CHECK(scratch != NULL);
    if (!scratch)
        return;
    memset(oy, 0xff, c->ny * sizeof *oy);
    memset(odx, 0xff, c->nx * sizeof *odx);
    CHECK_OK(
        conv2d_winograd_forward(&c->s, c->x, c->w, c->w_dtype, c->b, oy, scratch, budget, &err),
        &err);
    CHECK_OK(
        conv2d_winograd_backward_input(&c->s, c->dy, c->w, c->w_dtype, odx, scratch, budget, &err),
        &err);
    double ey = test_max_rel_err(oy, c->y, c->ny), edx = test_max_rel_err(odx, c->dx, c->nx);
    CHECKF(ey < TOL, "%s budget %zu forward: max rel err %.3g", c->name, budget, ey);
    CHECKF(edx < TOL, "%s budget %zu backward: max rel err %.3g", c->name, budget, edx);
    note(&worst_forward, ey);
    note(&worst_backward, edx);
    printf("%-20s %-5s budget %7zu  forward %.2e  backward-input %.2e\n", c->name,
           dtype_display_name(c->w_dtype), budget, ey, edx);
    free(scratch);
}

/* Through conv2d.h with an explicit algorithm: WINOGRAD_F43 reads the stored weights, NCHW
 * widens them into the caller's scratch first. */
static void run_typed(NnContext *ctx, const Case *c, Conv2dAlgorithm a, float *oy, float *odx) {
    Error err;
    size_t nw = (size_t)c->s.out_ch * c->s.in_ch * 9;
    float *widen = malloc(nw * sizeof *widen);
    CHECK_OK(conv2d_set_algorithm(ctx, a, &err), &err);
    memset(oy, 0xff, c->ny * sizeof *oy);
    memset(odx, 0xff, c->nx * sizeof *odx);
    CHECK_OK(conv2d_forward_typed(ctx, &c->s, c->x, c->w, c->w_dtype, widen, c->b, oy, &err), &err);
    CHECK_OK(conv2d_backward_input_typed(ctx, &c->s, c->dy, c->w, c->w_dtype, widen, odx, &err),
             &err);
    double ey = test_max_rel_err(oy, c->y, c->ny), edx = test_max_rel_err(odx, c->dx, c->nx);
    CHECKF(ey < TOL, "%s typed algo %d forward: max rel err %.3g", c->name, (int)a, ey);
    CHECKF(edx < TOL, "%s typed algo %d backward: max rel err %.3g", c->name, (int)a, edx);
    if (a == CONV2D_ALGO_WINOGRAD_F43) {
        note(&worst_forward, ey);
        note(&worst_backward, edx);
    }
    CHECK_OK(conv2d_set_algorithm(ctx, CONV2D_ALGO_DEFAULT, &err), &err);
    free(widen);
}

static void check_file(NnContext *ctx, const char *fixture, int typed_weights) {
    TensorSet set;
    tensor_set_init(&set);
    Error err;
    CHECK_OK(safetensors_open(test_fixture(fixture), &set, &err), &err);
    const char *meta = tensor_set_get_meta(&set, "cases");
    cJSON *cases = cJSON_Parse(meta ? meta : "");
    CHECK(cases != NULL);
    int count = 0;
    for (const cJSON *j = cases ? cases->child : NULL; j; j = j->next) {
        Case c;
        memset(&c, 0, sizeof c);
        c.name = j->string;
        Conv2dShape s = {json_int(j, "batch"),
                         json_int(j, "in_ch"),
                         json_int(j, "out_ch"),
                         json_int(j, "in_h"),
                         json_int(j, "in_w"),
                         3,
                         3,
                         1,
                         1,
                         1,
                         1,
                         1};
        if (!typed_weights) { /* conv.safetensors: only its 3x3 stride-1 pad-1 cases */
            const cJSON *pad = cJSON_GetObjectItemCaseSensitive(j, "pad");
            if (json_int(j, "kernel") != 3 || json_int(j, "stride") != 1 ||
                cJSON_GetArrayItem(pad, 0)->valueint != 1)
                continue;
        }
        c.s = s;
        char wname[256];
        snprintf(wname, sizeof wname, "%s.w", c.name);
        const NamedTensor *wt = tensor_set_find(&set, wname);
        CHECKF(wt != NULL, "%s: no weights", c.name);
        if (!wt)
            continue;
        c.w = wt->data;
        c.w_dtype = wt->dtype;
        int has_bias = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "bias"));
        c.x = load(&set, c.name, "x", &c.nx);
        c.b = has_bias ? load(&set, c.name, "b", NULL) : NULL;
        c.y = load(&set, c.name, "y", &c.ny);
        c.dy = load(&set, c.name, "dy", NULL);
        c.dx = load(&set, c.name, "dx", NULL);
        CHECKF(c.x && c.y && c.dy && c.dx && (c.b || !has_bias), "%s: tensors missing", c.name);
        CHECKF(c.ny == (size_t)s.batch * s.out_ch * s.in_h * s.in_w, "%s: output size", c.name);
        if (c.x && c.y && c.dy && c.dx) {
            float *oy = malloc(c.ny * sizeof *oy), *odx = malloc(c.nx * sizeof *odx);
            size_t budgets[] = {0, 64 << 10, 256 << 10};
            for (size_t k = 0; k < sizeof budgets / sizeof *budgets; k++)
                run_direct(&c, budgets[k], oy, odx);
            run_typed(ctx, &c, CONV2D_ALGO_WINOGRAD_F43, oy, odx);
            run_typed(ctx, &c, CONV2D_ALGO_ONEDNN_NCHW, oy, odx);
            free(oy);
            free(odx);
            count++;
        }
        free(c.x);
        free(c.b);
        free(c.y);
        free(c.dy);
        free(c.dx);
    }
    CHECK(count >= (typed_weights ? 7 : 5));
    cJSON_Delete(cases);
    tensor_set_free(&set);
}

/* Shapes it does not compute and weight types it does not read are clear errors. */
static void check_errors(NnContext *ctx) {
    Error err;
    float x[2 * 3 * 5 * 5] = {0}, w[4 * 3 * 9] = {0}, y[2 * 4 * 5 * 5];
    static float scratch[1 << 16];
    Conv2dShape s1 = {2, 3, 4, 5, 5, 3, 3, 2, 1, 1, 1, 1}; /* stride 2 */
    CHECK(!conv2d_winograd_applies(&s1));
    CHECK(conv2d_winograd_forward(&s1, x, w, DTYPE_F32, NULL, y, scratch, 0, &err) == -1);
    CHECK(strstr(err.message, "3x3 stride-1 pad-1") != NULL);
    Conv2dShape s = {2, 3, 4, 5, 5, 3, 3, 1, 1, 1, 1, 1};
    CHECK(conv2d_winograd_applies(&s));
    CHECK(conv2d_winograd_forward(&s, x, w, DTYPE_I32, NULL, y, scratch, 0, &err) == -1);
    CHECK(strstr(err.message, "dtype") != NULL);
    /* the widening path needs its scratch for half weights */
    uint16_t wh[4 * 3 * 9] = {0};
    CHECK_OK(conv2d_set_algorithm(ctx, CONV2D_ALGO_ONEDNN_NCHW, &err), &err);
    CHECK(conv2d_forward_typed(ctx, &s, x, wh, DTYPE_BF16, NULL, NULL, y, &err) == -1);
    CHECK(strstr(err.message, "widening scratch") != NULL);
    CHECK_OK(conv2d_set_algorithm(ctx, CONV2D_ALGO_DEFAULT, &err), &err);
}

int main(void) {
    NnContext *ctx = NULL;
    Error err;
    CHECK_OK(nn_context_create(2, &ctx, &err), &err);
    if (!ctx)
        return test_finish();
    check_file(ctx, "nn/winograd/winograd.safetensors", 1);
    check_file(ctx, "nn/conv/conv.safetensors", 0);
    check_errors(ctx);
    printf("worst: forward %.2e, backward-input %.2e (limit %.0e)\n", worst_forward, worst_backward,
           TOL);
    nn_context_free(ctx);
    return test_finish();
}
