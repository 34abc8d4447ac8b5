/* The sampler API: names, kohya's settings, the training schedule, and the per-call dispatch to
 * the family files (sampler_ddim.c, sampler_karras.c, sampler_dpmsolver.c). */
#include "sample/sampler_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

typedef struct SamplerName {
    const char *name;
    SamplerKind kind;
} SamplerName;

/* kohya's --sampler choices, in its order. */
static const SamplerName sampler_names[] = {
    {"ddim", SAMPLER_DDIM},
    {"pndm", SAMPLER_PNDM},
    {"lms", SAMPLER_LMS},
    {"euler", SAMPLER_EULER},
    {"euler_a", SAMPLER_EULER_A},
    {"heun", SAMPLER_HEUN},
    {"dpm_2", SAMPLER_DPM_2},
    {"dpm_2_a", SAMPLER_DPM_2_A},
    {"dpmsolver", SAMPLER_DPMSOLVER},
    {"dpmsolver++", SAMPLER_DPMSOLVER_PP},
    {"dpmsingle", SAMPLER_DPMSINGLE},
    {"k_lms", SAMPLER_LMS},
    {"k_euler", SAMPLER_EULER},
    {"k_euler_a", SAMPLER_EULER_A},
    {"k_dpm_2", SAMPLER_DPM_2},
    {"k_dpm_2_a", SAMPLER_DPM_2_A},
};
#define SAMPLER_NAME_COUNT ((int)(sizeof sampler_names / sizeof sampler_names[0]))

static const char *const diffusers_classes[SAMPLER_KIND_COUNT] = {
    [SAMPLER_DDIM] = "DDIMScheduler",
    [SAMPLER_PNDM] = "PNDMScheduler",
    [SAMPLER_LMS] = "LMSDiscreteScheduler",
    [SAMPLER_EULER] = "EulerDiscreteScheduler",
    [SAMPLER_EULER_A] = "EulerAncestralDiscreteScheduler",
    [SAMPLER_HEUN] = "HeunDiscreteScheduler",
    [SAMPLER_DPM_2] = "KDPM2DiscreteScheduler",
    [SAMPLER_DPM_2_A] = "KDPM2AncestralDiscreteScheduler",
    [SAMPLER_DPMSOLVER] = "DPMSolverMultistepScheduler",
    [SAMPLER_DPMSOLVER_PP] = "DPMSolverMultistepScheduler",
    [SAMPLER_DPMSINGLE] = "DPMSolverSinglestepScheduler",
};

const char *sampler_valid_names(void) {
    return "ddim, pndm, lms, euler, euler_a, heun, dpm_2, dpm_2_a, dpmsolver, dpmsolver++, "
           "dpmsingle, k_lms, k_euler, k_euler_a, k_dpm_2, k_dpm_2_a";
}

int sampler_kind_from_name(const char *name, SamplerKind *kind, Error *err) {
    if (name) {
        for (int k = 0; k < SAMPLER_NAME_COUNT; k++) {
            if (strcmp(name, sampler_names[k].name) == 0) {
                *kind = sampler_names[k].kind;
                return 0;
            }
        }
    }
    return error_set(err, "--sampler: unknown sampler '%s'; choose one of: %s",
                     name ? name : "(null)", sampler_valid_names());
}

const char *sampler_kind_name(SamplerKind kind) {
    for (int k = 0; k < SAMPLER_NAME_COUNT; k++)
        if (sampler_names[k].kind == kind)
            return sampler_names[k].name;
    return "unknown";
}

const char *sampler_kind_diffusers_class(SamplerKind kind) {
    if ((int)kind < 0 || kind >= SAMPLER_KIND_COUNT)
        return "unknown";
    return diffusers_classes[kind];
}

int sampler_kohya_noises_per_step(SamplerKind kind) {
    return kind == SAMPLER_DPM_2_A ? 2 : 1;
}

bool sampler_kind_is_ancestral(SamplerKind kind) {
    return kind == SAMPLER_EULER_A || kind == SAMPLER_DPM_2_A;
}

void sampler_config_kohya(SamplerConfig *cfg, SamplerKind kind, int num_inference_steps,
                          bool v_prediction) {
    memset(cfg, 0, sizeof *cfg);
    cfg->kind = kind;
    cfg->num_inference_steps = num_inference_steps;
    cfg->v_prediction = v_prediction;
    cfg->num_train_timesteps = 1000;
    cfg->beta_start = 0.00085;
    cfg->beta_end = 0.012;
    cfg->steps_offset = 1;
}

void sampler_config_kohya_training(SamplerConfig *cfg, SamplerKind kind, int num_inference_steps,
                                   bool v_prediction) {
    sampler_config_kohya(cfg, kind, num_inference_steps, v_prediction);
    cfg->steps_offset = 0; /* the classes' default */
    /* DDIMScheduler's default True; HeunDiscreteScheduler's default False, which kohya's
     * `scheduler.config.clip_sample = True` turns on (range 1.0 for both) */
    cfg->clip_sample = kind == SAMPLER_DDIM || kind == SAMPLER_HEUN;
}

/* ---- schedule helpers ---------------------------------------------------------------- */

void sampler_torch_linspace_f32(double start_d, double end_d, int steps, float *out) {
    float start = (float)start_d, end = (float)end_d;
    if (steps == 1) {
        out[0] = start;
        return;
    }
    /* torch's CPU kernel: the first half counts up from start, the second half back from end,
     * each one fused multiply-add. */
    float step = (end - start) / (float)(steps - 1);
    int halfway = steps / 2;
    for (int i = 0; i < steps; i++)
        out[i] =
            i < halfway ? fmaf(step, (float)i, start) : fmaf(-step, (float)(steps - i - 1), end);
}

void sampler_np_linspace(double start, double stop, int num, double *out) {
    if (num == 1) { /* numpy: an undefined step, y = [0] * delta + start */
        out[0] = start;
        return;
    }
    double step = (stop - start) / (double)(num - 1);
    for (int i = 0; i < num; i++)
        out[i] = (double)i * step + start;
    out[num - 1] = stop;
}

double sampler_np_interp_index(double x, const float *fp, int len) {
    if (x >= (double)(len - 1))
        return fp[len - 1];
    if (x <= 0.0)
        return fp[0];
    int j = (int)floor(x);
    if ((double)j == x)
        return fp[j];
    double slope = ((double)fp[j + 1] - (double)fp[j]) / 1.0;
    return slope * (x - (double)j) + (double)fp[j];
}

double sampler_sigma_to_t(float sigma, const float *log_sigmas, int len) {
    /* numpy float32 throughout, until the indices (int64) promote the blend to float64. */
    float log_sigma = logf(sigma > 1e-10f ? sigma : 1e-10f);
    if (isnan(sigma))
        log_sigma = sigma;
    int count = 0; /* how many log_sigmas lie at or below log_sigma (they ascend) */
    for (int j = 0; j < len; j++)
        if (log_sigma - log_sigmas[j] >= 0.0f)
            count = j + 1;
    int low_idx = count > 0 ? count - 1 : 0;
    if (low_idx > len - 2)
        low_idx = len - 2;
    int high_idx = low_idx + 1;
    float low = log_sigmas[low_idx], high = log_sigmas[high_idx];
    float w = (low - log_sigma) / (low - high);
    if (w < 0.0f)
        w = 0.0f;
    if (w > 1.0f)
        w = 1.0f;
    return (double)(1.0f - w) * (double)low_idx + (double)w * (double)high_idx;
}

/* ---- create / free ------------------------------------------------------------------- */

static int build_train_schedule(Sampler *s, Error *err) {
    int T = s->num_train;
    float *betas = malloc((size_t)T * sizeof *betas);
    s->alphas_cumprod = malloc((size_t)T * sizeof *s->alphas_cumprod);
    s->train_sigmas = malloc((size_t)T * sizeof *s->train_sigmas);
    if (!betas || !s->alphas_cumprod || !s->train_sigmas) {
        free(betas);
        return error_set(err, "sampler: out of memory for a %d-step schedule", T);
    }
    /* scaled_linear: linspace of the square roots in float32, squared. */
    sampler_torch_linspace_f32(sqrt(s->cfg.beta_start), sqrt(s->cfg.beta_end), T, betas);
    double acc = 1.0; /* torch.cumprod accumulates float32 in double */
    for (int j = 0; j < T; j++) {
        float beta = betas[j] * betas[j];
        acc *= (double)(1.0f - beta);
        s->alphas_cumprod[j] = (float)acc;
    }
    for (int j = 0; j < T; j++) {
        float a = s->alphas_cumprod[j];
        s->train_sigmas[j] = sqrtf((1.0f - a) / a);
    }
    free(betas);
    return 0;
}

int sampler_create(const SamplerConfig *cfg, Sampler **out, Error *err) {
    *out = NULL;
    if ((int)cfg->kind < 0 || cfg->kind >= SAMPLER_KIND_COUNT)
        return error_set(err, "sampler: unknown sampler kind %d", (int)cfg->kind);
    if (cfg->num_train_timesteps < 2)
        return error_set(err, "sampler: num_train_timesteps must be at least 2 (got %d)",
                         cfg->num_train_timesteps);
    if (cfg->num_inference_steps < 1)
        return error_set(err, "--steps: must be at least 1 (got %d)", cfg->num_inference_steps);
    if (cfg->num_inference_steps > cfg->num_train_timesteps)
        return error_set(err, "--steps: %d is more than the %d training timesteps",
                         cfg->num_inference_steps, cfg->num_train_timesteps);
    if (!(cfg->beta_start > 0.0 && cfg->beta_start <= cfg->beta_end && cfg->beta_end < 1.0))
        return error_set(err,
                         "sampler: betas must satisfy 0 < beta_start <= beta_end < 1 "
                         "(got %g, %g)",
                         cfg->beta_start, cfg->beta_end);
    if (cfg->steps_offset < 0 || cfg->steps_offset >= cfg->num_train_timesteps)
        return error_set(err, "sampler: steps_offset %d is out of range", cfg->steps_offset);

    Sampler *s = calloc(1, sizeof *s);
    if (!s)
        return error_set(err, "sampler: out of memory");
    s->cfg = *cfg;
    s->num_train = cfg->num_train_timesteps;
    int rc = build_train_schedule(s, err);
    if (rc == 0) {
        switch (cfg->kind) {
        case SAMPLER_DDIM:
            rc = sampler_setup_ddim(s, err);
            break;
        case SAMPLER_PNDM:
            rc = sampler_setup_pndm(s, err);
            break;
        case SAMPLER_LMS:
        case SAMPLER_EULER:
        case SAMPLER_EULER_A:
        case SAMPLER_HEUN:
        case SAMPLER_DPM_2:
        case SAMPLER_DPM_2_A:
            rc = sampler_setup_karras(s, err);
            break;
        default:
            rc = sampler_setup_dpmsolver(s, err);
            break;
        }
    }
    if (rc != 0) {
        sampler_free(s);
        return error_prefix(err, "%s: ", sampler_kind_name(cfg->kind));
    }
    *out = s;
    return 0;
}

void sampler_free(Sampler *s) {
    if (!s)
        return;
    free(s->alphas_cumprod);
    free(s->train_sigmas);
    free(s->timesteps);
    free(s->int_timesteps);
    free(s->sigmas);
    free(s->sigmas_interpol);
    free(s->sigmas_up);
    free(s->sigmas_down);
    free(s->order_list);
    for (int k = 0; k < SAMPLER_MAX_BUFFERS; k++)
        free(s->buf[k]);
    free(s->noise);
    free(s);
}

void sampler_reset(Sampler *s) {
    /* the history buffers go too, so the next run may use another latent size */
    for (int k = 0; k < SAMPLER_MAX_BUFFERS; k++) {
        free(s->buf[k]);
        s->buf[k] = NULL;
    }
    free(s->noise);
    s->noise = NULL;
    s->n = 0;
    s->next_call = 0;
    s->counter = 0;
    s->lower_order_nums = 0;
    s->num_derivatives = 0;
    for (int k = 0; k < SAMPLER_MAX_BUFFERS; k++)
        s->have[k] = false;
}

/* ---- per-call queries ---------------------------------------------------------------- */

const SamplerConfig *sampler_config(const Sampler *s) {
    return &s->cfg;
}

int sampler_num_model_calls(const Sampler *s) {
    return s->num_calls;
}

float sampler_timestep(const Sampler *s, int i) {
    if (i < 0 || i >= s->num_calls)
        return NAN;
    return s->timesteps[i];
}

float sampler_init_noise_sigma(const Sampler *s) {
    return s->init_noise_sigma;
}

int sampler_step_of_call(const Sampler *s, int i) {
    switch (s->cfg.kind) {
    case SAMPLER_HEUN:
    case SAMPLER_DPM_2:
    case SAMPLER_DPM_2_A:
        return (i + 1) / 2; /* call 0 alone, then pairs (first order, second order) */
    case SAMPLER_PNDM:
        return i < s->prk_calls ? i / 4 : s->prk_calls / 4 + (i - s->prk_calls);
    default:
        return i;
    }
}

static bool is_sigma_based(SamplerKind kind) {
    switch (kind) {
    case SAMPLER_LMS:
    case SAMPLER_EULER:
    case SAMPLER_EULER_A:
    case SAMPLER_HEUN:
    case SAMPLER_DPM_2:
    case SAMPLER_DPM_2_A:
        return true;
    default:
        return false;
    }
}

void sampler_scale_model_input(const Sampler *s, int i, const float *x, float *out, size_t n) {
    if (!is_sigma_based(s->cfg.kind) || i < 0 || i >= s->num_calls) {
        if (out != x)
            memmove(out, x, n * sizeof *out);
        return;
    }
    float sigma = sampler_karras_input_sigma(s, i);
    float denom = sqrtf(sigma * sigma + 1.0f); /* (sigma ** 2 + 1) ** 0.5 in float32 */
    for (size_t k = 0; k < n; k++)
        out[k] = x[k] / denom;
}

static int allocate_state(Sampler *s, size_t n, Error *err) {
    for (int k = 0; k < SAMPLER_MAX_BUFFERS; k++) {
        s->buf[k] = malloc(n * sizeof(float));
        if (!s->buf[k])
            return error_set(err, "sampler: out of memory for %zu-element history", n);
    }
    if (sampler_kind_is_ancestral(s->cfg.kind)) {
        s->noise = malloc(n * sizeof(float));
        if (!s->noise)
            return error_set(err, "sampler: out of memory for %zu-element noise", n);
    }
    s->n = n;
    return 0;
}

int sampler_step(Sampler *s, int i, const float *model_output, float *x, size_t n,
                 TorchGenerator *noise_rng, Error *err) {
    const char *name = sampler_kind_name(s->cfg.kind);
    if (i != s->next_call)
        return error_set(err, "%s: step %d called out of order (expected step %d of %d)", name, i,
                         s->next_call, s->num_calls);
    if (i >= s->num_calls)
        return error_set(err, "%s: step %d is past the last of %d model calls", name, i,
                         s->num_calls);
    if (n == 0)
        return error_set(err, "%s: empty latent tensor", name);
    if (s->n == 0) {
        if (allocate_state(s, n, err) != 0)
            return -1;
    } else if (n != s->n) {
        return error_set(err, "%s: the latent size changed from %zu to %zu elements mid-run", name,
                         s->n, n);
    }
    if (sampler_kind_is_ancestral(s->cfg.kind) && !noise_rng)
        return error_set(err, "%s: an ancestral sampler needs a random generator", name);

    switch (s->cfg.kind) {
    case SAMPLER_DDIM:
        sampler_step_ddim(s, i, model_output, x);
        break;
    case SAMPLER_PNDM:
        sampler_step_pndm(s, i, model_output, x);
        break;
    case SAMPLER_LMS:
        sampler_step_lms(s, i, model_output, x);
        break;
    case SAMPLER_EULER:
        sampler_step_euler(s, i, model_output, x, NULL);
        break;
    case SAMPLER_EULER_A:
        /* diffusers draws randn_tensor(model_output.shape, generator) on every step, the last
         * one too (its sigma_up is 0 there, but the draw still advances the generator). */
        torch_randn(noise_rng, s->noise, n);
        sampler_step_euler(s, i, model_output, x, s->noise);
        break;
    case SAMPLER_HEUN:
        sampler_step_heun(s, i, model_output, x);
        break;
    case SAMPLER_DPM_2:
        sampler_step_dpm2(s, i, model_output, x);
        break;
    case SAMPLER_DPM_2_A:
        if (i % 2 == 1) /* only the second-order half of a step draws */
            torch_randn(noise_rng, s->noise, n);
        sampler_step_dpm2a(s, i, model_output, x, s->noise);
        break;
    case SAMPLER_DPMSOLVER:
    case SAMPLER_DPMSOLVER_PP:
        sampler_step_dpmsolver(s, i, model_output, x);
        break;
    case SAMPLER_DPMSINGLE:
        sampler_step_dpmsingle(s, i, model_output, x);
        break;
    default:
        return error_set(err, "sampler: unknown kind %d", (int)s->cfg.kind);
    }
    s->next_call = i + 1;
    return 0;
}
