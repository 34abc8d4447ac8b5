/* DDIMScheduler (eta 0) and PNDMScheduler (Runge-Kutta warm-up, then 4th-order linear
 * multistep), the two samplers that work on alphas_cumprod at integer timesteps. The float32
 * operations are diffusers' torch operations in its order, each rounded to float32. */
#include "sample/sampler_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

static int alloc_timesteps(Sampler *s, int count, Error *err) {
    s->num_calls = count;
    s->timesteps = malloc((size_t)count * sizeof *s->timesteps);
    s->int_timesteps = malloc((size_t)count * sizeof *s->int_timesteps);
    if (!s->timesteps || !s->int_timesteps)
        return error_set(err, "out of memory");
    return 0;
}

/* timestep_spacing "leading": (arange(steps) * (T // steps)) + steps_offset, descending. */
int sampler_setup_ddim(Sampler *s, Error *err) {
    int steps = s->cfg.num_inference_steps, T = s->num_train;
    if (alloc_timesteps(s, steps, err) != 0)
        return -1;
    int ratio = T / steps;
    for (int i = 0; i < steps; i++) {
        int64_t t = (int64_t)(steps - 1 - i) * ratio + s->cfg.steps_offset;
        if (t >= T)
            return error_set(err, "timestep %lld is past the %d training timesteps", (long long)t,
                             T);
        s->int_timesteps[i] = t;
        s->timesteps[i] = (float)t;
    }
    s->final_alpha_cumprod = 1.0f; /* set_alpha_to_one=True (DDIM's default) */
    s->init_noise_sigma = 1.0f;
    return 0;
}

/* PNDM with skip_prk_steps=False: the 4 highest "leading" timesteps run as 3 Runge-Kutta steps
 * of 4 calls each (12 calls), the remaining timesteps as PLMS steps. */
int sampler_setup_pndm(Sampler *s, Error *err) {
    int steps = s->cfg.num_inference_steps, T = s->num_train;
    if (steps < 4)
        return error_set(err,
                         "needs at least 4 steps (its Runge-Kutta warm-up uses the "
                         "first 4 timesteps; diffusers fails below that too); got %d",
                         steps);
    int ratio = T / steps, half = T / steps / 2;
    int64_t *asc = malloc((size_t)steps * sizeof *asc);
    if (!asc)
        return error_set(err, "out of memory");
    for (int k = 0; k < steps; k++)
        asc[k] = (int64_t)k * ratio + s->cfg.steps_offset;
    if (asc[steps - 1] + half >= T) {
        free(asc);
        return error_set(err, "timesteps run past the %d training timesteps", T);
    }
    if (alloc_timesteps(s, 12 + (steps - 3), err) != 0) {
        free(asc);
        return -1;
    }
    /* prk = repeat(top4, 2) + tile([0, half], 4); then [:-1].repeat(2)[1:-1] reversed. */
    int64_t prk8[8], prk14[14];
    for (int k = 0; k < 4; k++) {
        prk8[2 * k] = asc[steps - 4 + k];
        prk8[2 * k + 1] = asc[steps - 4 + k] + half;
    }
    for (int k = 0; k < 7; k++)
        prk14[2 * k] = prk14[2 * k + 1] = prk8[k];
    for (int k = 0; k < 12; k++)
        s->int_timesteps[k] = prk14[12 - k]; /* [1:-1] is prk14[1..12], reversed */
    for (int k = 0; k < steps - 3; k++)      /* plms = asc[:-3] reversed */
        s->int_timesteps[12 + k] = asc[steps - 4 - k];
    for (int i = 0; i < s->num_calls; i++)
        s->timesteps[i] = (float)s->int_timesteps[i];
    free(asc);
    s->prk_calls = 12;
    s->final_alpha_cumprod = s->alphas_cumprod[0]; /* set_alpha_to_one=False (PNDM default) */
    s->init_noise_sigma = 1.0f;
    return 0;
}

static float alpha_at(const Sampler *s, int64_t t) {
    return t >= 0 ? s->alphas_cumprod[t] : s->final_alpha_cumprod;
}

void sampler_step_ddim(Sampler *s, int i, const float *mo, float *x) {
    int64_t t = s->int_timesteps[i];
    int64_t prev_t = t - s->num_train / s->cfg.num_inference_steps;
    float a_t = alpha_at(s, t), a_prev = alpha_at(s, prev_t);
    float b_t = 1.0f - a_t;
    float sqrt_a_t = sqrtf(a_t), sqrt_b_t = sqrtf(b_t), sqrt_a_prev = sqrtf(a_prev);
    /* eta = 0: std_dev_t = 0, so the direction coefficient is (1 - a_prev - 0) ** 0.5 */
    float dir_coeff = sqrtf((1.0f - a_prev) - 0.0f);
    for (size_t k = 0; k < s->n; k++) {
        float x0, eps;
        if (s->cfg.v_prediction) {
            x0 = sqrt_a_t * x[k] - sqrt_b_t * mo[k];
            eps = sqrt_a_t * mo[k] + sqrt_b_t * x[k];
        } else {
            x0 = (x[k] - sqrt_b_t * mo[k]) / sqrt_a_t;
            eps = mo[k];
        }
        if (s->cfg.clip_sample) /* x0.clamp(-1, 1); eps stays the unclipped one */
            x0 = x0 < -1.0f ? -1.0f : x0 > 1.0f ? 1.0f : x0;
        float direction = dir_coeff * eps;
        x[k] = sqrt_a_prev * x0 + direction;
    }
}

/* PNDMScheduler._get_prev_sample: formula (9) of the PNDM paper on one (t, prev_t) pair. */
static void pndm_prev_sample(const Sampler *s, const float *sample, int64_t t, int64_t prev_t,
                             const float *mo, float *out) {
    float a_t = alpha_at(s, t), a_prev = alpha_at(s, prev_t);
    float b_t = 1.0f - a_t, b_prev = 1.0f - a_prev;
    float sample_coeff = sqrtf(a_prev / a_t);
    float denom = a_t * sqrtf(b_prev) + sqrtf((a_t * b_t) * a_prev);
    float diff = a_prev - a_t;
    float sqrt_a_t = sqrtf(a_t), sqrt_b_t = sqrtf(b_t);
    for (size_t k = 0; k < s->n; k++) {
        float m = mo[k];
        if (s->cfg.v_prediction)
            m = sqrt_a_t * m + sqrt_b_t * sample[k];
        out[k] = sample_coeff * sample[k] - (diff * m) / denom;
    }
}

/* Buffers: 0 cur_model_output, 1 cur_sample, 2..5 ets ring (oldest first, see ets_at). */
enum { PNDM_CUR_MO = 0, PNDM_CUR_SAMPLE = 1, PNDM_ETS0 = 2 };

static float *ets_at(Sampler *s, int k) { /* k-th entry of the ets list, oldest first */
    return s->buf[PNDM_ETS0 + k];
}

static void ets_append(Sampler *s, const float *mo) {
    /* ets keeps its last 4 entries (step_plms trims to 3, then appends). */
    int len = s->num_derivatives; /* reused as len(ets) */
    if (len == 4) {
        float *oldest = s->buf[PNDM_ETS0];
        for (int k = 0; k < 3; k++)
            s->buf[PNDM_ETS0 + k] = s->buf[PNDM_ETS0 + k + 1];
        s->buf[PNDM_ETS0 + 3] = oldest;
        len = 3;
    }
    memcpy(s->buf[PNDM_ETS0 + len], mo, s->n * sizeof(float));
    s->num_derivatives = len + 1;
}

void sampler_step_pndm(Sampler *s, int i, const float *mo, float *x) {
    const float one_6 = (float)(1.0 / 6.0), one_3 = (float)(1.0 / 3.0);
    int steps = s->cfg.num_inference_steps;
    size_t n = s->n;
    float *cur_mo = s->buf[PNDM_CUR_MO], *cur_sample = s->buf[PNDM_CUR_SAMPLE];
    int c = s->counter;
    int64_t t_in = s->int_timesteps[i];
    if (c < s->prk_calls) {
        int64_t diff_to_prev = (c % 2) ? 0 : s->num_train / steps / 2;
        int64_t prev_t = t_in - diff_to_prev;
        int64_t t = s->int_timesteps[c / 4 * 4];
        const float *use_mo = mo;
        if (c % 4 == 0) {
            for (size_t k = 0; k < n; k++)
                cur_mo[k] = 0.0f + one_6 * mo[k];
            ets_append(s, mo);
            memcpy(cur_sample, x, n * sizeof *x);
        } else if (c % 4 == 1 || c % 4 == 2) {
            for (size_t k = 0; k < n; k++)
                cur_mo[k] = cur_mo[k] + one_3 * mo[k];
        } else {
            for (size_t k = 0; k < n; k++)
                cur_mo[k] = cur_mo[k] + one_6 * mo[k]; /* model_output = cur + 1/6 * mo */
            use_mo = cur_mo;
        }
        pndm_prev_sample(s, cur_sample, t, prev_t, use_mo, x);
        /* cur_model_output goes back to 0 after the 4th call; it is rebuilt at the next 1st. */
    } else {
        int64_t prev_t = t_in - s->num_train / steps;
        ets_append(s, mo); /* counter != 1 here: ets = ets[-3:] + [mo] */
        float *e1 = ets_at(s, 3), *e2 = ets_at(s, 2), *e3 = ets_at(s, 1), *e4 = ets_at(s, 0);
        const float c24 = (float)(1.0 / 24.0);
        for (size_t k = 0; k < n; k++) {
            float a = 55.0f * e1[k], b = 59.0f * e2[k], c37 = 37.0f * e3[k], d = 9.0f * e4[k];
            cur_mo[k] = c24 * (((a - b) + c37) - d);
        }
        pndm_prev_sample(s, x, t_in, prev_t, cur_mo, x);
    }
    s->counter = c + 1;
}
