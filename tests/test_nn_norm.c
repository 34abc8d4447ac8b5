// labels: unit golden
/* group_norm_* and layer_norm_* against PyTorch (tests/fixtures/nn/conv/norm.safetensors,
 * written by tools/reference/make_nn_conv_fixtures.py: F.group_norm / F.layer_norm and
 * autograd's input gradient; eps 1e-5 and 1e-6, 1 to 32 groups, batch 2, a large input mean,
 * with and without affine parameters). Error measure: max|ours - ref| / max|ref|; limit 1e-5.
 * The backward is also checked against central finite differences of the forward (in double
 * over the loss sum(dy * y)) on small random inputs; limit 2e-4 there (the difference
 * quotient of a float forward with step 1e-2 is good to ~3e-5). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"
#include "nn/norm.h"
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

static float json_float(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? (float)v->valuedouble : -1.0f;
}

/* Group norm when "groups" is present, else layer norm (rows x dim). */
static void check_case(NnContext *ctx, const TensorSet *set, const cJSON *c) {
    const char *name = c->string;
    int is_group = cJSON_GetObjectItemCaseSensitive(c, "groups") != NULL;
    int affine = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "affine"));
    float eps = json_float(c, "eps");
    size_t n;
    float *x = load(set, name, "x", &n), *y = load(set, name, "y", NULL);
    float *dy = load(set, name, "dy", NULL), *dx = load(set, name, "dx", NULL);
    float *gamma = affine ? load(set, name, "gamma", NULL) : NULL;
    float *beta = affine ? load(set, name, "beta", NULL) : NULL;
    CHECKF(x && y && dy && dx && (!affine || (gamma && beta)), "%s: fixture tensors missing", name);
    if (!(x && y && dy && dx))
        return;
    float *oy = malloc(n * sizeof *oy), *odx = malloc(n * sizeof *odx);
    float stats[2 * 256];
    if (is_group) {
        int batch = json_int(c, "batch"), channels = json_int(c, "channels");
        int spatial = json_int(c, "spatial"), groups = json_int(c, "groups");
        CHECK((size_t)batch * channels * spatial == n && batch * groups <= 256);
        group_norm_forward(ctx, batch, channels, spatial, groups, eps, x, gamma, beta, oy, stats);
        group_norm_backward_input(ctx, batch, channels, spatial, groups, x, gamma, stats, dy, odx);
    } else {
        int rows = json_int(c, "rows"), dim = json_int(c, "dim");
        CHECK((size_t)rows * dim == n && rows <= 256);
        layer_norm_forward(ctx, rows, dim, eps, x, gamma, beta, oy, stats);
        layer_norm_backward_input(ctx, rows, dim, x, gamma, stats, dy, odx);
    }
    double ey = test_max_rel_err(oy, y, n), edx = test_max_rel_err(odx, dx, n);
    CHECKF(ey < TOL, "%s forward: max rel err %.3g", name, ey);
    CHECKF(edx < TOL, "%s backward: max rel err %.3g", name, edx);
    printf("%-18s forward %.2e  backward-input %.2e\n", name, ey, edx);
    free(oy);
    free(odx);
    free(x);
    free(y);
    free(dy);
    free(dx);
    free(gamma);
    free(beta);
}

static void check_fixtures(NnContext *ctx) {
    TensorSet set;
    tensor_set_init(&set);
    Error err;
    CHECK_OK(safetensors_open(test_fixture("nn/conv/norm.safetensors"), &set, &err), &err);
    const char *meta = tensor_set_get_meta(&set, "cases");
    cJSON *cases = cJSON_Parse(meta ? meta : "");
    CHECK(cases != NULL);
    int count = 0;
    for (const cJSON *c = cases ? cases->child : NULL; c; c = c->next, count++)
        check_case(ctx, &set, c);
    CHECK(count >= 8);
    cJSON_Delete(cases);
    tensor_set_free(&set);
}

static float rand_uniform(unsigned *state) {
    *state = *state * 1664525u + 1013904223u;
    return (float)(*state >> 8) / (float)(1u << 24) * 2.0f - 1.0f;
}

/* One norm as a function of x, for the finite differences: group norm with `groups` groups
 * over [batch, channels, spatial], or layer norm over rows of `spatial` when groups == 0. */
typedef struct NormProblem {
    int batch, channels, spatial, groups;
    float eps;
    const float *gamma, *beta;
} NormProblem;

static void norm_forward(NnContext *ctx, const NormProblem *p, const float *x, float *y,
                         float *stats) {
    if (p->groups)
        group_norm_forward(ctx, p->batch, p->channels, p->spatial, p->groups, p->eps, x, p->gamma,
                           p->beta, y, stats);
    else
        layer_norm_forward(ctx, p->batch * p->channels, p->spatial, p->eps, x, p->gamma, p->beta, y,
                           stats);
}

static void check_finite_differences(NnContext *ctx, NormProblem p, unsigned seed) {
    size_t n = (size_t)p.batch * p.channels * p.spatial;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *dy = malloc(n * sizeof *dy);
    float *dx = malloc(n * sizeof *dx), *num = malloc(n * sizeof *num);
    float gamma[64], beta[64], stats[2 * 64];
    for (size_t i = 0; i < n; i++) {
        x[i] = 2.0f * rand_uniform(&seed) + 0.5f;
        dy[i] = rand_uniform(&seed);
    }
    for (int i = 0; i < 64; i++) {
        gamma[i] = 1.0f + 0.5f * rand_uniform(&seed);
        beta[i] = rand_uniform(&seed);
    }
    p.gamma = gamma;
    p.beta = beta;
    norm_forward(ctx, &p, x, y, stats);
    if (p.groups)
        group_norm_backward_input(ctx, p.batch, p.channels, p.spatial, p.groups, x, gamma, stats,
                                  dy, dx);
    else
        layer_norm_backward_input(ctx, p.batch * p.channels, p.spatial, x, gamma, stats, dy, dx);
    const float h = 1e-2f;
    for (size_t i = 0; i < n; i++) {
        float keep = x[i];
        double l[2];
        for (int side = 0; side < 2; side++) {
            x[i] = keep + (side ? -h : h);
            norm_forward(ctx, &p, x, y, stats);
            double sum = 0.0;
            for (size_t j = 0; j < n; j++)
                sum += (double)dy[j] * y[j];
            l[side] = sum;
        }
        x[i] = keep;
        num[i] = (float)((l[0] - l[1]) / (2.0 * h));
    }
    double e = test_max_rel_err(dx, num, n);
    CHECKF(e < 2e-4, "finite differences (%s, groups %d): max rel err %.3g",
           p.groups ? "group norm" : "layer norm", p.groups, e);
    printf("finite differences %s groups %d: %.2e\n", p.groups ? "group norm" : "layer norm",
           p.groups, e);
    free(x);
    free(y);
    free(dy);
    free(dx);
    free(num);
}

int main(void) {
    NnContext *ctx = NULL;
    Error err;
    CHECK_OK(nn_context_create(2, &ctx, &err), &err);
    if (!ctx)
        return test_finish();
    check_fixtures(ctx);
    check_finite_differences(ctx, (NormProblem){2, 8, 6, 4, 1e-5f, NULL, NULL}, 21u);
    check_finite_differences(ctx, (NormProblem){1, 6, 5, 1, 1e-6f, NULL, NULL}, 22u);
    check_finite_differences(ctx, (NormProblem){2, 3, 16, 0, 1e-5f, NULL, NULL}, 23u);
    nn_context_free(ctx);
    return test_finish();
}
