// labels: unit golden
/* upsample_nearest2x_* and timestep_embedding against PyTorch / diffusers
 * (tests/fixtures/nn/conv/resample.safetensors, written by
 * tools/reference/make_nn_conv_fixtures.py: F.interpolate(nearest, 2x) with autograd's input
 * gradient; diffusers' get_timestep_embedding for integer and float timesteps up to 999, SD's
 * 320 wide flip_sin_to_cos with shift 0, no flip with shift 1, an odd width).
 * Error measure: max|ours - ref| / max|ref|. Upsampling moves values and adds four of them,
 * so its limits are 0 and 1e-7. The embedding follows diffusers' float32 operations in order
 * (the exponents come out bit-identical), but torch evaluates exp with MKL's vsExp and sin/cos
 * with its own vector code, which differ from libm in the last bit for a few arguments (2 of
 * SD's 160 frequencies); at t = 999 one ulp of a frequency moves sin(t * f) by up to 6e-5, so
 * the limit is 1e-4, and at least 90% of the values must be bit-identical (1234 of 1280 for SD).
 * The upsampling backward is also checked against finite differences of the forward. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"
#include "nn/resample.h"
#include "test_util.h"

static float *load(const TensorSet *set, const char *case_name, const char *tensor, size_t *n) {
    char name[256];
    snprintf(name, sizeof name, "%s.%s", case_name, tensor);
    return test_load_f32(set, name, n);
}

static int json_int(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valueint : -1;
}

static void check_upsample(const TensorSet *set, const cJSON *c) {
    const char *name = c->string;
    int planes = json_int(c, "batch") * json_int(c, "channels");
    int h = json_int(c, "h"), w = json_int(c, "w");
    size_t nx, ny;
    float *x = load(set, name, "x", &nx), *y = load(set, name, "y", &ny);
    float *dy = load(set, name, "dy", NULL), *dx = load(set, name, "dx", NULL);
    CHECKF(x && y && dy && dx && nx == (size_t)planes * h * w && ny == 4 * nx,
           "%s: fixture tensors", name);
    if (!(x && y && dy && dx))
        return;
    float *oy = malloc(ny * sizeof *oy), *odx = malloc(nx * sizeof *odx);
    upsample_nearest2x_forward(planes, h, w, x, oy);
    upsample_nearest2x_backward_input(planes, h, w, dy, odx);
    double ey = test_max_rel_err(oy, y, ny), edx = test_max_rel_err(odx, dx, nx);
    CHECKF(ey == 0.0, "%s forward: max rel err %.3g", name, ey);
    CHECKF(edx < 1e-7, "%s backward: max rel err %.3g", name, edx);
    printf("%-18s forward %.2e  backward-input %.2e\n", name, ey, edx);
    /* Finite differences: the forward is linear, so a unit step gives the exact quotient. */
    float *num = malloc(nx * sizeof *num);
    for (size_t i = 0; i < nx; i++) {
        float keep = x[i];
        double l[2];
        for (int side = 0; side < 2; side++) {
            x[i] = keep + (side ? -1.0f : 1.0f);
            upsample_nearest2x_forward(planes, h, w, x, oy);
            double sum = 0.0;
            for (size_t j = 0; j < ny; j++)
                sum += (double)dy[j] * oy[j];
            l[side] = sum;
        }
        x[i] = keep;
        num[i] = (float)((l[0] - l[1]) / 2.0);
    }
    double efd = test_max_rel_err(odx, num, nx);
    CHECKF(efd < 1e-6, "%s finite differences: max rel err %.3g", name, efd);
    free(num);
    free(oy);
    free(odx);
    free(x);
    free(y);
    free(dy);
    free(dx);
}

static void check_timesteps(const TensorSet *set, const cJSON *c) {
    const char *name = c->string;
    int batch = json_int(c, "batch"), dim = json_int(c, "dim");
    bool flip = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "flip_sin_to_cos"));
    float shift = (float)cJSON_GetObjectItemCaseSensitive(c, "freq_shift")->valuedouble;
    size_t n;
    float *t = load(set, name, "t", NULL), *emb = load(set, name, "emb", &n);
    CHECKF(t && emb && n == (size_t)batch * dim, "%s: fixture tensors", name);
    if (!(t && emb))
        return;
    float *out = malloc(n * sizeof *out);
    timestep_embedding(batch, dim, t, flip, shift, out);
    double e = test_max_rel_err(out, emb, n);
    size_t exact = 0;
    for (size_t i = 0; i < n; i++)
        exact += out[i] == emb[i];
    CHECKF(e < 1e-4, "%s: max rel err %.3g", name, e);
    CHECKF(exact >= n * 90 / 100, "%s: only %zu of %zu values bit-identical", name, exact, n);
    printf("%-18s max rel err %.2e, %zu of %zu values bit-identical\n", name, e, exact, n);
    free(out);
    free(t);
    free(emb);
}

int main(void) {
    TensorSet set;
    tensor_set_init(&set);
    Error err;
    CHECK_OK(safetensors_open(test_fixture("nn/conv/resample.safetensors"), &set, &err), &err);
    const char *meta = tensor_set_get_meta(&set, "cases");
    cJSON *cases = cJSON_Parse(meta ? meta : "");
    CHECK(cases != NULL);
    int ups = 0, ts = 0;
    for (const cJSON *c = cases ? cases->child : NULL; c; c = c->next) {
        if (cJSON_GetObjectItemCaseSensitive(c, "h")) {
            check_upsample(&set, c);
            ups++;
        } else {
            check_timesteps(&set, c);
            ts++;
        }
    }
    CHECK(ups >= 2 && ts >= 5);
    cJSON_Delete(cases);
    tensor_set_free(&set);
    return test_finish();
}
