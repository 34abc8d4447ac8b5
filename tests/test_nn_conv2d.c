// labels: unit golden
/* conv2d_forward / conv2d_backward_input against PyTorch (tests/fixtures/nn/conv/conv.safetensors,
 * written by tools/reference/make_nn_conv_fixtures.py: F.conv2d and autograd's input gradient
 * at SD-like shapes: 3x3 pad 1, 1x1, 3x3 stride 2 pad 1, the VAE's (0,1,0,1)-padded stride-2
 * downsample, 3- and 4-channel inputs, channels that are not multiples of 16, batch 2,
 * non-square). Every fp32 algorithm the context offers is run on every case at 1e-5, except
 * Winograd (3x3 stride 1 only, where oneDNN has it), held to the 1e-4; the bf16 one
 * is held to 1e-2.
 * Error measure: max|ours - ref| / max|ref| over the whole tensor; limit 1e-5 (fp32 sums of at
 * most 432 products differ from torch's only by summation order).
 * The backward is also checked against central finite differences of the forward on small
 * random problems (loss = sum(dy * conv(x)), which is linear in x, so the difference
 * quotient is exact up to float rounding). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"
#include "nn/conv2d.h"
#include "nn/nn_context.h"
#include "test_util.h"

#define TOL 1e-5

static float *load(const TensorSet *set, const char *case_name, const char *tensor, size_t *n) {
    char name[256];
    snprintf(name, sizeof name, "%s.%s", case_name, tensor);
    return test_load_f32(set, name, n);
}

static int json_int(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valueint : -1;
}

static const char *algo_name(Conv2dAlgorithm a) {
    static const char *names[] = {"onednn-blocked", "onednn-nchw", "onednn-winograd",
                                  "im2col-sgemm",   "onednn-bf16", "auto",
                                  "winograd-f43"};
    return names[a];
}

static void check_case(NnContext *ctx, const TensorSet *set, const cJSON *c) {
    const char *name = c->string;
    Conv2dShape s = {0};
    s.batch = json_int(c, "batch");
    s.in_ch = json_int(c, "in_ch");
    s.out_ch = json_int(c, "out_ch");
    s.in_h = json_int(c, "in_h");
    s.in_w = json_int(c, "in_w");
    s.kernel_h = s.kernel_w = json_int(c, "kernel");
    s.stride = json_int(c, "stride");
    const cJSON *pad = cJSON_GetObjectItemCaseSensitive(c, "pad");
    s.pad_top = cJSON_GetArrayItem(pad, 0)->valueint;
    s.pad_left = cJSON_GetArrayItem(pad, 1)->valueint;
    s.pad_bottom = cJSON_GetArrayItem(pad, 2)->valueint;
    s.pad_right = cJSON_GetArrayItem(pad, 3)->valueint;
    int has_bias = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "bias"));
    size_t nx, ny;
    float *x = load(set, name, "x", &nx), *w = load(set, name, "w", NULL);
    float *b = has_bias ? load(set, name, "b", NULL) : NULL;
    float *y = load(set, name, "y", &ny), *dy = load(set, name, "dy", NULL);
    float *dx = load(set, name, "dx", NULL);
    CHECKF(x && w && y && dy && dx && (b || !has_bias), "%s: fixture tensors missing", name);
    CHECKF(ny == (size_t)s.batch * s.out_ch * conv2d_out_h(&s) * conv2d_out_w(&s),
           "%s: output size", name);
    float *oy = malloc(ny * sizeof *oy), *odx = malloc(nx * sizeof *odx);
    for (int a = 0; a < CONV2D_ALGO_COUNT && x && y && dx; a++) {
        if (a == CONV2D_ALGO_ONEDNN_WINOGRAD || a == CONV2D_ALGO_ONEDNN_BF16)
            continue;
        Error err;
        CHECK_OK(conv2d_set_algorithm(ctx, (Conv2dAlgorithm)a, &err), &err);
        /* Three runs: the second reuses the cached primitive and the shared buffers, the
         * third follows conv2d_release_buffers and must allocate them again. */
        for (int rep = 0; rep < 3; rep++) {
            if (rep == 2)
                conv2d_release_buffers(ctx);
            memset(oy, 0xff, ny * sizeof *oy);
            memset(odx, 0xff, nx * sizeof *odx);
            CHECK_OK(conv2d_forward(ctx, &s, x, w, b, oy, &err), &err);
            CHECK_OK(conv2d_backward_input(ctx, &s, dy, w, odx, &err), &err);
            double ey = test_max_rel_err(oy, y, ny), edx = test_max_rel_err(odx, dx, nx);
            CHECKF(ey < TOL, "%s %s forward: max rel err %.3g", name, algo_name(a), ey);
            CHECKF(edx < TOL, "%s %s backward: max rel err %.3g", name, algo_name(a), edx);
            if (rep == 0)
                printf("%-20s %-15s forward %.2e  backward-input %.2e\n", name, algo_name(a), ey,
                       edx);
        }
    }
    /* Winograd (3x3 stride 1 only): held to the 1e-4, its transforms being less
     * exact than direct summation. */
    Error werr;
    CHECK_OK(conv2d_set_algorithm(ctx, CONV2D_ALGO_ONEDNN_WINOGRAD, &werr), &werr);
    if (x && y && dx && s.kernel_h == 3 && s.stride == 1 &&
        conv2d_forward(ctx, &s, x, w, b, oy, &werr) == 0) {
        double ey = test_max_rel_err(oy, y, ny);
        CHECKF(ey < 1e-4, "%s winograd forward: max rel err %.3g", name, ey);
        if (conv2d_backward_input(ctx, &s, dy, w, odx, &werr) == 0) {
            double edx = test_max_rel_err(odx, dx, nx);
            CHECKF(edx < 1e-4, "%s winograd backward: max rel err %.3g", name, edx);
            printf("%-20s %-15s forward %.2e  backward-input %.2e\n", name, "onednn-winograd", ey,
                   edx);
        }
    }
    /* bf16 inputs and weights (8-bit mantissa: each rounding is off by up to 2^-9 relative),
     * f32 accumulation: limit 1e-2. Machines without AVX-512 have no bf16 convolution; there
     * the call must fail with oneDNN's message, which is all we check. */
    Error err;
    CHECK_OK(conv2d_set_algorithm(ctx, CONV2D_ALGO_ONEDNN_BF16, &err), &err);
    if (x && y && dx && conv2d_forward(ctx, &s, x, w, b, oy, &err) == 0) {
        CHECK_OK(conv2d_backward_input(ctx, &s, dy, w, odx, &err), &err);
        double ey = test_max_rel_err(oy, y, ny), edx = test_max_rel_err(odx, dx, nx);
        CHECKF(ey < 1e-2, "%s bf16 forward: max rel err %.3g", name, ey);
        CHECKF(edx < 1e-2, "%s bf16 backward: max rel err %.3g", name, edx);
        printf("%-20s %-15s forward %.2e  backward-input %.2e\n", name, "onednn-bf16", ey, edx);
    } else {
        CHECKF(strstr(err.message, "no implementation") != NULL, "%s bf16: %s", name, err.message);
    }
    CHECK_OK(conv2d_set_algorithm(ctx, CONV2D_ALGO_DEFAULT, &err), &err);
    free(oy);
    free(odx);
    free(x);
    free(w);
    free(b);
    free(y);
    free(dy);
    free(dx);
}

static void check_fixtures(NnContext *ctx) {
    TensorSet set;
    tensor_set_init(&set);
    Error err;
    CHECK_OK(safetensors_open(test_fixture("nn/conv/conv.safetensors"), &set, &err), &err);
    cJSON *cases =
        cJSON_Parse(tensor_set_get_meta(&set, "cases") ? tensor_set_get_meta(&set, "cases") : "");
    CHECK(cases != NULL);
    int count = 0;
    for (const cJSON *c = cases ? cases->child : NULL; c; c = c->next, count++)
        check_case(ctx, &set, c);
    CHECK(count >= 10);
    cJSON_Delete(cases);
    tensor_set_free(&set);
}

static unsigned next_rand(unsigned *state) {
    *state = *state * 1664525u + 1013904223u;
    return *state >> 8;
}

static float rand_uniform(unsigned *state) {
    return (float)next_rand(state) / (float)(1u << 24) * 2.0f - 1.0f;
}

/* dx from the backward against (L(x + h e_i) - L(x - h e_i)) / 2h for every input element. */
static void check_finite_differences(NnContext *ctx, Conv2dShape s, unsigned seed) {
    int oh = conv2d_out_h(&s), ow = conv2d_out_w(&s);
    size_t nx = (size_t)s.batch * s.in_ch * s.in_h * s.in_w;
    size_t ny = (size_t)s.batch * s.out_ch * oh * ow;
    size_t nw = (size_t)s.out_ch * s.in_ch * s.kernel_h * s.kernel_w;
    float *x = malloc(nx * sizeof *x), *w = malloc(nw * sizeof *w), *y = malloc(ny * sizeof *y);
    float *dy = malloc(ny * sizeof *dy), *dx = malloc(nx * sizeof *dx), *num = malloc(nx * 4);
    float bias[64];
    for (size_t i = 0; i < nx; i++)
        x[i] = rand_uniform(&seed);
    for (size_t i = 0; i < nw; i++)
        w[i] = rand_uniform(&seed);
    for (size_t i = 0; i < ny; i++)
        dy[i] = rand_uniform(&seed);
    for (int i = 0; i < 64; i++)
        bias[i] = rand_uniform(&seed);
    Error err;
    CHECK_OK(conv2d_backward_input(ctx, &s, dy, w, dx, &err), &err);
    const float h = 0.25f;
    for (size_t i = 0; i < nx; i++) {
        float keep = x[i];
        double l[2];
        for (int side = 0; side < 2; side++) {
            x[i] = keep + (side ? -h : h);
            CHECK_OK(conv2d_forward(ctx, &s, x, w, bias, y, &err), &err);
            double sum = 0.0;
            for (size_t j = 0; j < ny; j++)
                sum += (double)dy[j] * y[j];
            l[side] = sum;
        }
        x[i] = keep;
        num[i] = (float)((l[0] - l[1]) / (2.0 * h));
    }
    double e = test_max_rel_err(dx, num, nx);
    CHECKF(e < 1e-4, "finite differences %dx%d stride %d pad %d,%d,%d,%d: max rel err %.3g",
           s.kernel_h, s.kernel_w, s.stride, s.pad_top, s.pad_left, s.pad_bottom, s.pad_right, e);
    printf("finite differences k%d s%d pad %d,%d,%d,%d: %.2e\n", s.kernel_h, s.stride, s.pad_top,
           s.pad_left, s.pad_bottom, s.pad_right, e);
    free(x);
    free(w);
    free(y);
    free(dy);
    free(dx);
    free(num);
}

static void check_errors(NnContext *ctx) {
    Error err;
    float v = 0.0f;
    Conv2dShape bad = {1, 1, 1, 2, 2, 3, 3, 1, 0, 0, 0, 0};
    CHECK_FAILS_WITH(conv2d_forward(ctx, &bad, &v, &v, NULL, &v, &err), &err, "larger than");
    Conv2dShape zero = {1, 0, 1, 2, 2, 1, 1, 1, 0, 0, 0, 0};
    CHECK_FAILS_WITH(conv2d_backward_input(ctx, &zero, &v, &v, &v, &err), &err, "invalid shape");
    CHECK_FAILS_WITH(conv2d_set_algorithm(ctx, CONV2D_ALGO_COUNT, &err), &err, "unknown");
}

int main(void) {
    NnContext *ctx = NULL;
    Error err;
    CHECK_OK(nn_context_create(2, &ctx, &err), &err);
    if (!ctx)
        return test_finish();
    check_fixtures(ctx);
    for (int a = 0; a < CONV2D_ALGO_COUNT; a++) {
        if (a == CONV2D_ALGO_ONEDNN_WINOGRAD || a == CONV2D_ALGO_ONEDNN_BF16)
            continue;
        CHECK_OK(conv2d_set_algorithm(ctx, (Conv2dAlgorithm)a, &err), &err);
        check_finite_differences(ctx, (Conv2dShape){2, 3, 4, 5, 4, 3, 3, 1, 1, 1, 1, 1}, 11u);
        check_finite_differences(ctx, (Conv2dShape){1, 4, 3, 7, 6, 3, 3, 2, 1, 1, 1, 1}, 12u);
        check_finite_differences(ctx, (Conv2dShape){1, 3, 5, 6, 5, 3, 3, 2, 0, 0, 1, 1}, 13u);
        check_finite_differences(ctx, (Conv2dShape){2, 5, 3, 3, 4, 1, 1, 1, 0, 0, 0, 0}, 14u);
    }
    check_errors(ctx);
    nn_context_free(ctx);
    return test_finish();
}
