/* DPMSolverMultistepScheduler (kohya's "dpmsolver" and "dpmsolver++") and
 * DPMSolverSinglestepScheduler ("dpmsingle"), with the class defaults kohya leaves in place:
 * solver_order 2, solver_type "midpoint", timestep_spacing "linspace", lower_order_final True,
 * final_sigmas_type "zero" (except "dpmsolver": "sigma_min", the only final sigma diffusers
 * accepts for that algorithm). Scalars are torch 0-d float32 tensors in diffusers, so every
 * coefficient here is float32 arithmetic in the same order. */
#include "sample/sampler_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

int sampler_setup_dpmsolver(Sampler *s, Error *err) {
    int steps = s->cfg.num_inference_steps, T = s->num_train;
    double *lin = malloc((size_t)(steps + 1) * sizeof *lin);
    s->num_calls = steps;
    s->num_sigmas = steps + 1;
    s->timesteps = malloc((size_t)steps * sizeof *s->timesteps);
    s->int_timesteps = malloc((size_t)steps * sizeof *s->int_timesteps);
    s->sigmas = malloc((size_t)(steps + 1) * sizeof *s->sigmas);
    s->order_list = malloc((size_t)steps * sizeof *s->order_list);
    if (!lin || !s->timesteps || !s->int_timesteps || !s->sigmas || !s->order_list) {
        free(lin);
        return error_set(err, "out of memory");
    }
    /* np.linspace(0, T - 1, steps + 1).round()[::-1][:-1] (lambda_min_clipped = -inf keeps
     * the whole range); numpy rounds half to even, as rint does. */
    sampler_np_linspace(0.0, (double)(T - 1), steps + 1, lin);
    for (int i = 0; i < steps; i++) {
        int64_t t = (int64_t)rint(lin[steps - i]);
        s->int_timesteps[i] = t;
        s->timesteps[i] = (float)t;
        s->sigmas[i] = (float)sampler_np_interp_index((double)t, s->train_sigmas, T);
    }
    free(lin);
    /* final_sigmas_type: "zero", or "sigma_min" = ((1 - acp[0]) / acp[0]) ** 0.5 */
    s->sigmas[steps] = s->cfg.kind == SAMPLER_DPMSOLVER ? s->train_sigmas[0] : 0.0f;
    s->init_noise_sigma = 1.0f;
    /* dpmsingle: set_timesteps turns lower_order_final on (final sigma "zero"), so order 2
     * runs as [1, 2, 1, 2, ..., 1, 1] (even steps) or [1, 2, ..., 1, 2, 1] (odd). */
    for (int i = 0; i < steps; i++)
        s->order_list[i] = (i % 2 == 0) ? 1 : 2;
    s->order_list[steps - 1] = 1; /* both patterns, and final_sigmas_type "zero", end in 1 */
    return 0;
}

/* _sigma_to_alpha_sigma_t and lambda = log(alpha_t) - log(sigma_t), float32. */
typedef struct DpmPoint {
    float alpha, sigma, lambda;
} DpmPoint;

static DpmPoint dpm_point(float sigma) {
    DpmPoint p;
    p.alpha = 1.0f / sqrtf(sigma * sigma + 1.0f);
    p.sigma = sigma * p.alpha;
    p.lambda = logf(p.alpha) - logf(p.sigma);
    return p;
}

/* convert_model_output: the data prediction x0 (dpmsolver++) or the noise (dpmsolver). */
static void convert_model_output(const Sampler *s, int i, bool predict_x0, const float *mo,
                                 const float *x, float *out) {
    DpmPoint p = dpm_point(s->sigmas[i]);
    bool v = s->cfg.v_prediction;
    for (size_t k = 0; k < s->n; k++) {
        if (predict_x0)
            out[k] = v ? p.alpha * x[k] - p.sigma * mo[k] : (x[k] - p.sigma * mo[k]) / p.alpha;
        else
            out[k] = v ? p.alpha * mo[k] + p.sigma * x[k] : mo[k];
    }
}

/* dpm_solver_first_order_update from sigmas[i] to sigmas[i + 1]. */
static void first_order(const Sampler *s, int i, bool pp, const float *m, const float *sample,
                        float *x) {
    DpmPoint t = dpm_point(s->sigmas[i + 1]), s0 = dpm_point(s->sigmas[i]);
    float h = t.lambda - s0.lambda;
    float a, b;
    if (pp) {
        a = t.sigma / s0.sigma;
        b = t.alpha * (expf(-h) - 1.0f);
    } else {
        a = t.alpha / s0.alpha;
        b = t.sigma * (expf(h) - 1.0f);
    }
    for (size_t k = 0; k < s->n; k++)
        x[k] = a * sample[k] - b * m[k];
}

/* The midpoint second-order update shared by both schedulers: from `from` (s1 for the
 * singlestep scheduler, s0 for the multistep one) to sigmas[i + 1], with D0 and
 * D1 = (1 / r0) * (m0 - m1). */
static void second_order(const Sampler *s, bool pp, DpmPoint t, DpmPoint from, float h, float r0,
                         const float *d0, const float *m0, const float *m1, const float *sample,
                         float *x) {
    float inv_r0 = 1.0f / r0;
    float a, b;
    if (pp) {
        a = t.sigma / from.sigma;
        b = t.alpha * (expf(-h) - 1.0f);
    } else {
        a = t.alpha / from.alpha;
        b = t.sigma * (expf(h) - 1.0f);
    }
    float c = 0.5f * b;
    for (size_t k = 0; k < s->n; k++) {
        float d1 = inv_r0 * (m0[k] - m1[k]);
        x[k] = (a * sample[k] - b * d0[k]) - c * d1;
    }
}

/* Buffers: 0 and 1 are model_outputs[-2] and [-1] (have[] says which are not None), 2 is the
 * singlestep scheduler's self.sample. */
static float *push_model_output(Sampler *s) {
    float *older = s->buf[0];
    s->buf[0] = s->buf[1];
    s->buf[1] = older;
    s->have[0] = s->have[1];
    s->have[1] = true;
    return s->buf[1];
}

void sampler_step_dpmsolver(Sampler *s, int i, const float *mo, float *x) {
    bool pp = s->cfg.kind != SAMPLER_DPMSOLVER;
    int len = s->num_calls;
    bool zero_final = pp; /* "dpmsolver" runs with final_sigmas_type "sigma_min" */
    bool lower_order_final = i == len - 1 && ((len < 15) || zero_final);
    float *m_new = push_model_output(s);
    convert_model_output(s, i, pp, mo, x, m_new);
    if (s->lower_order_nums < 1 || lower_order_final) {
        first_order(s, i, pp, m_new, x, x);
    } else {
        /* solver_order 2: lower_order_second would also pick the second-order update */
        DpmPoint t = dpm_point(s->sigmas[i + 1]), s0 = dpm_point(s->sigmas[i]),
                 s1 = dpm_point(s->sigmas[i - 1]);
        float h = t.lambda - s0.lambda, h0 = s0.lambda - s1.lambda;
        second_order(s, pp, t, s0, h, h0 / h, m_new, m_new, s->buf[0], x, x);
    }
    if (s->lower_order_nums < 2)
        s->lower_order_nums++;
}

void sampler_step_dpmsingle(Sampler *s, int i, const float *mo, float *x) {
    float *m_new = push_model_output(s);
    convert_model_output(s, i, true, mo, x, m_new);
    float *first_sample = s->buf[2];
    int order = s->order_list[i];
    if (order == 2 && !s->have[0])
        order = 1;
    if (order == 1) {
        memcpy(first_sample, x, s->n * sizeof *x);
        first_order(s, i, true, m_new, first_sample, x);
    } else {
        DpmPoint t = dpm_point(s->sigmas[i + 1]), s0 = dpm_point(s->sigmas[i]),
                 s1 = dpm_point(s->sigmas[i - 1]);
        float h = t.lambda - s1.lambda, h0 = s0.lambda - s1.lambda;
        /* D0 = m1 (the output at s1), x from the sample saved at s1 */
        second_order(s, true, t, s1, h, h0 / h, s->buf[0], m_new, s->buf[0], first_sample, x);
    }
}
