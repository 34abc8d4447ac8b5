// labels: unit golden
/* Every kohya sampler against the diffusers scheduler kohya builds for it
 * (tools/reference/make_sampler_fixtures.py): epsilon and v-prediction, 4 and 7 steps, a
 * [2,4,5,7] latent, diffusers' loop with a stand-in model (scaled_input * a + c * t * b) run
 * closed-loop here, start latents and ancestral noise from the same seeded torch generator.
 * Compared per model call: the timestep, the scaled model input and the latents after the step,
 * each by max|ours - ref| / max|ref| <= 1e-5; for 1, 2 and 20 steps the timesteps and the final
 * latents only. The largest error per case is printed. Also the
 * API's error paths (unknown names, bad step counts, out-of-order calls). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng_torch.h"
#include "formats/safetensors.h"
#include "sample/sampler.h"
#include "test_util.h"

/* The stand-in model is two torch ops (mul, then add): no fused multiply-add under clang. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#define TOL 1e-5

typedef struct Fixture {
    TensorSet set;
    cJSON *cases;
    size_t n;
    float model_a;
    double model_b; /* a Python float: t * b is computed in double, then rounded */
    TorchNormalKernel kernel;
    const float *c;
} Fixture;

static const float *tensor(const Fixture *f, const char *c, const char *what, size_t *numel) {
    char name[128];
    snprintf(name, sizeof name, "%s.%s", c, what);
    const NamedTensor *t = tensor_set_find(&f->set, name);
    CHECKF(t != NULL && t->dtype == DTYPE_F32, "fixture tensor %s missing", name);
    if (!t || t->dtype != DTYPE_F32)
        return NULL;
    if (numel) {
        size_t total = 1;
        for (int d = 0; d < t->ndim; d++)
            total *= (size_t)t->shape[d];
        *numel = total;
    }
    return (const float *)t->data;
}

static int fixture_open(Fixture *f) {
    Error err = {0};
    tensor_set_init(&f->set);
    f->cases = NULL;
    if (safetensors_open(test_fixture("sampler/sampler.safetensors"), &f->set, &err) != 0) {
        CHECKF(false, "%s", err.message);
        return -1;
    }
    const char *cases = tensor_set_get_meta(&f->set, "cases");
    const char *a = tensor_set_get_meta(&f->set, "model_a");
    const char *b = tensor_set_get_meta(&f->set, "model_b");
    const char *kernel = tensor_set_get_meta(&f->set, "randn_kernel");
    if (!cases || !a || !b || !kernel) {
        CHECKF(false, "sampler fixture metadata missing");
        return -1;
    }
    f->cases = cJSON_Parse(cases);
    f->model_a = (float)strtod(a, NULL);
    f->model_b = strtod(b, NULL);
    CHECK_OK(torch_rng_kernel_from_name(kernel, &f->kernel, &err), &err);
    f->c = tensor(f, "model", "c", &f->n);
    return f->cases && f->c ? 0 : -1;
}

static double rel_err(const float *ours, const float *ref, size_t n) {
    return test_max_rel_err(ours, ref, n);
}

/* One case: returns the largest error seen (scaled inputs and latents), or INFINITY. */
static double run_case(const Fixture *f, const cJSON *c) {
    const char *name = cJSON_GetObjectItemCaseSensitive(c, "case")->valuestring;
    const char *sampler = cJSON_GetObjectItemCaseSensitive(c, "sampler")->valuestring;
    bool v = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "v_prediction"));
    int steps = cJSON_GetObjectItemCaseSensitive(c, "steps")->valueint;
    int seed = cJSON_GetObjectItemCaseSensitive(c, "seed")->valueint;
    int calls = cJSON_GetObjectItemCaseSensitive(c, "calls")->valueint;
    bool final_only = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "final_only"));
    size_t n = f->n, nts = 0;
    const float *ts = tensor(f, name, "timesteps", &nts);
    const float *sigma0 = tensor(f, name, "init_noise_sigma", NULL);
    const float *scaled = final_only ? NULL : tensor(f, name, "scaled", NULL);
    const float *latents = final_only ? NULL : tensor(f, name, "latents", NULL);
    const float *final = final_only ? tensor(f, name, "final", NULL) : NULL;
    if (!ts || !sigma0 || (final_only ? !final : !scaled || !latents))
        return INFINITY;

    Error err = {0};
    SamplerKind kind;
    SamplerConfig cfg;
    Sampler *s = NULL;
    CHECK_OK(sampler_kind_from_name(sampler, &kind, &err), &err);
    sampler_config_kohya(&cfg, kind, steps, v);
    CHECK_OK(sampler_create(&cfg, &s, &err), &err);
    if (!s)
        return INFINITY;
    CHECKF(sampler_num_model_calls(s) == calls && (size_t)calls == nts,
           "%s: %d model calls, diffusers %d", name, sampler_num_model_calls(s), calls);
    if (sampler_num_model_calls(s) != calls) {
        sampler_free(s);
        return INFINITY;
    }
    float init_sigma = sampler_init_noise_sigma(s);
    CHECKF(fabsf(init_sigma - sigma0[0]) <= TOL * sigma0[0], "%s: init_noise_sigma %.9g vs %.9g",
           name, init_sigma, sigma0[0]);
    double worst_t = 0.0;
    for (int i = 0; i < calls; i++) {
        double d = fabs((double)sampler_timestep(s, i) - ts[i]) / fmax(1.0, fabs(ts[i]));
        worst_t = fmax(worst_t, d);
    }
    CHECKF(worst_t <= TOL, "%s: timesteps differ by %.3g relative", name, worst_t);

    TorchGenerator g;
    torch_rng_init(&g, (uint64_t)seed);
    g.kernel = f->kernel;
    float *x = malloc(n * sizeof *x), *x_in = malloc(n * sizeof *x_in);
    float *mo = malloc(n * sizeof *mo);
    double worst = 0.0;
    if (!x || !x_in || !mo) {
        CHECK(false);
        worst = INFINITY;
        goto done;
    }
    torch_randn(&g, x, n);
    for (size_t k = 0; k < n; k++)
        x[k] = x[k] * init_sigma;
    for (int i = 0; i < calls; i++) {
        sampler_scale_model_input(s, i, x, x_in, n);
        double e_in = final_only ? 0.0 : rel_err(x_in, scaled + (size_t)i * n, n);
        float tf = (float)((double)sampler_timestep(s, i) * f->model_b);
        for (size_t k = 0; k < n; k++)
            mo[k] = x_in[k] * f->model_a + f->c[k] * tf;
        if (sampler_step(s, i, mo, x, n, &g, &err) != 0) {
            CHECKF(false, "%s: step %d: %s", name, i, err.message);
            worst = INFINITY;
            break;
        }
        double e_x = final_only ? (i + 1 == calls ? rel_err(x, final, n) : 0.0)
                                : rel_err(x, latents + (size_t)i * n, n);
        CHECKF(e_in <= TOL && e_x <= TOL, "%s: call %d: scaled input %.3g, latents %.3g", name, i,
               e_in, e_x);
        worst = fmax(worst, fmax(e_in, e_x));
    }
done:
    free(x);
    free(x_in);
    free(mo);
    sampler_free(s);
    return worst;
}

static void test_golden(void) {
    Fixture f;
    if (fixture_open(&f) != 0) {
        tensor_set_free(&f.set);
        cJSON_Delete(f.cases);
        return;
    }
    double worst_all = 0.0;
    const cJSON *c;
    cJSON_ArrayForEach(c, f.cases) {
        double w = run_case(&f, c);
        printf("%-22s max rel err %.3g\n", cJSON_GetObjectItemCaseSensitive(c, "case")->valuestring,
               w);
        worst_all = fmax(worst_all, w);
    }
    printf("all samplers: max rel err %.3g (tolerance %.0e)\n", worst_all, TOL);
    /* 11 samplers x 2 prediction types x (4, 7 steps per call + 1, 2, 20 steps final only),
     * less pndm's 1 and 2 */
    CHECK(cJSON_GetArraySize(f.cases) == 44 + 66 - 4);
    cJSON_Delete(f.cases);
    tensor_set_free(&f.set);
}

static void test_names(void) {
    Error err = {0};
    SamplerKind kind;
    static const char *const names[] = {"ddim",      "pndm",        "lms",      "euler",
                                        "euler_a",   "heun",        "dpm_2",    "dpm_2_a",
                                        "dpmsolver", "dpmsolver++", "dpmsingle"};
    for (int k = 0; k < (int)(sizeof names / sizeof names[0]); k++) {
        CHECK_OK(sampler_kind_from_name(names[k], &kind, &err), &err);
        CHECK(strcmp(sampler_kind_name(kind), names[k]) == 0);
    }
    static const char *const aliases[][2] = {{"k_lms", "lms"},
                                             {"k_euler", "euler"},
                                             {"k_euler_a", "euler_a"},
                                             {"k_dpm_2", "dpm_2"},
                                             {"k_dpm_2_a", "dpm_2_a"}};
    for (int k = 0; k < 5; k++) {
        CHECK_OK(sampler_kind_from_name(aliases[k][0], &kind, &err), &err);
        CHECK(strcmp(sampler_kind_name(kind), aliases[k][1]) == 0);
    }
    CHECK(sampler_kind_from_name("ddpm", &kind, &err) != 0);
    CHECK(strstr(err.message, "ddpm") && strstr(err.message, "k_dpm_2_a") &&
          strstr(err.message, "dpmsolver++"));
    CHECK(sampler_kind_from_name("Euler", &kind, &err) != 0);
    CHECK(sampler_kohya_noises_per_step(SAMPLER_DPM_2_A) == 2);
    CHECK(sampler_kohya_noises_per_step(SAMPLER_EULER_A) == 1);
    CHECK(sampler_kind_is_ancestral(SAMPLER_EULER_A) && !sampler_kind_is_ancestral(SAMPLER_HEUN));
    CHECK(strcmp(sampler_kind_diffusers_class(SAMPLER_DPM_2), "KDPM2DiscreteScheduler") == 0);
}

static void test_errors(void) {
    Error err = {0};
    SamplerConfig cfg;
    Sampler *s = NULL;
    sampler_config_kohya(&cfg, SAMPLER_EULER, 0, false);
    CHECK(sampler_create(&cfg, &s, &err) != 0 && s == NULL);
    CHECK(strstr(err.message, "at least 1") != NULL);
    sampler_config_kohya(&cfg, SAMPLER_EULER, 1001, false);
    CHECK(sampler_create(&cfg, &s, &err) != 0);
    sampler_config_kohya(&cfg, SAMPLER_PNDM, 3, false);
    CHECK(sampler_create(&cfg, &s, &err) != 0);
    CHECK(strstr(err.message, "pndm") && strstr(err.message, "at least 4"));

    /* every sampler runs 1 step and 50 steps without failing */
    for (int k = 0; k < SAMPLER_KIND_COUNT; k++) {
        for (int steps = 1; steps <= 50; steps += 49) {
            if (k == SAMPLER_PNDM && steps < 4)
                continue;
            sampler_config_kohya(&cfg, (SamplerKind)k, steps, k % 2 == 0);
            CHECK_OK(sampler_create(&cfg, &s, &err), &err);
            if (!s)
                continue;
            float x[20], mo[20];
            TorchGenerator g;
            torch_rng_init(&g, 7);
            torch_randn(&g, x, 20);
            bool finite = true;
            for (int i = 0; i < sampler_num_model_calls(s); i++) {
                sampler_scale_model_input(s, i, x, mo, 20);
                CHECK_OK(sampler_step(s, i, mo, x, 20, &g, &err), &err);
                CHECK(sampler_step_of_call(s, i) < steps);
            }
            for (int e = 0; e < 20; e++)
                finite = finite && isfinite(x[e]);
            CHECKF(finite, "%s, %d steps: non-finite latents", sampler_kind_name(k), steps);
            sampler_free(s);
            s = NULL;
        }
    }

    sampler_config_kohya(&cfg, SAMPLER_EULER_A, 4, false);
    CHECK_OK(sampler_create(&cfg, &s, &err), &err);
    if (s) {
        float x[8] = {0}, mo[8] = {0};
        CHECK(sampler_step(s, 1, mo, x, 8, NULL, &err) != 0); /* out of order */
        CHECK(strstr(err.message, "out of order") != NULL);
        CHECK(sampler_step(s, 0, mo, x, 8, NULL, &err) != 0); /* ancestral without rng */
        TorchGenerator g;
        torch_rng_init(&g, 1);
        CHECK_OK(sampler_step(s, 0, mo, x, 8, &g, &err), &err);
        CHECK(sampler_step(s, 1, mo, x, 4, &g, &err) != 0); /* size changed */
        sampler_reset(s); /* a new run, and a new size, from step 0 */
        CHECK_OK(sampler_step(s, 0, mo, x, 4, &g, &err), &err);
        sampler_free(s);
    }
}

/* sampler_reset gives the same run again (history cleared, not carried over). */
static void run_twice(SamplerKind kind, float out[2][32]) {
    Error err = {0};
    SamplerConfig cfg;
    Sampler *s = NULL;
    sampler_config_kohya(&cfg, kind, 6, false);
    CHECK_OK(sampler_create(&cfg, &s, &err), &err);
    if (!s)
        return;
    for (int run = 0; run < 2; run++) {
        TorchGenerator g;
        torch_rng_init(&g, 3);
        float mo[32];
        torch_randn(&g, out[run], 32);
        for (int i = 0; i < sampler_num_model_calls(s); i++) {
            sampler_scale_model_input(s, i, out[run], mo, 32);
            CHECK_OK(sampler_step(s, i, mo, out[run], 32, &g, &err), &err);
        }
        sampler_reset(s);
    }
    sampler_free(s);
}

static void test_reset(void) {
    for (int k = 0; k < SAMPLER_KIND_COUNT; k++) {
        float out[2][32];
        memset(out, 0, sizeof out);
        run_twice((SamplerKind)k, out);
        CHECKF(memcmp(out[0], out[1], sizeof out[0]) == 0, "%s: a reset run differs",
               sampler_kind_name((SamplerKind)k));
    }
}

int main(void) {
    test_reset();
    test_names();
    test_errors();
    test_golden();
    return test_finish();
}
