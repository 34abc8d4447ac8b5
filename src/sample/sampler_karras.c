/* The sigma-parameterised ("k-diffusion") samplers: LMSDiscrete, EulerDiscrete,
 * EulerAncestralDiscrete, HeunDiscrete, KDPM2Discrete and KDPM2AncestralDiscrete, all with
 * timestep_spacing "linspace" (their default; kohya's steps_offset does not apply to it).
 *
 * The schedules are built as diffusers builds them: the timesteps in numpy float64 rounded to
 * float32, sigmas interpolated in float64 and rounded to float32, then torch float32 for the
 * derived arrays (KDPM2's log-space midpoints). The per-element updates are torch's float32
 * operations in diffusers' order. */
#include "sample/sampler_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

/* torch.lerp(start, end, 0.5) on float32 (weight >= 0.5 takes the form anchored at end). */
static float lerp_half(float start, float end) {
    return end - (end - start) * 0.5f;
}

/* Repeat-interleave the way diffusers expands per-step arrays for its two-call samplers:
 * cat([a[:1], a[1:].repeat_interleave(2), a[-1:]]) -> 2*len entries. */
static float *expand_pairs(const float *a, int len) {
    float *out = malloc((size_t)(2 * len) * sizeof *out);
    if (!out)
        return NULL;
    out[0] = a[0];
    for (int k = 1; k < len; k++)
        out[2 * k - 1] = out[2 * k] = a[k];
    out[2 * len - 1] = a[len - 1];
    return out;
}

int sampler_setup_karras(Sampler *s, Error *err) {
    SamplerKind kind = s->cfg.kind;
    int steps = s->cfg.num_inference_steps, T = s->num_train;
    int rc = -1;
    double *lin = malloc((size_t)steps * sizeof *lin);
    float *ts = malloc((size_t)steps * sizeof *ts);
    float *sig = malloc((size_t)(steps + 1) * sizeof *sig); /* per-step sigmas + final 0 */
    float *log_sigmas = malloc((size_t)T * sizeof *log_sigmas);
    float *interp = NULL, *up = NULL, *down = NULL;
    if (!lin || !ts || !sig || !log_sigmas)
        goto oom;

    /* np.linspace(0, T - 1, steps, dtype=float32)[::-1] */
    sampler_np_linspace(0.0, (double)(T - 1), steps, lin);
    for (int i = 0; i < steps; i++)
        ts[i] = (float)lin[steps - 1 - i];
    for (int i = 0; i < steps; i++)
        sig[i] = (float)sampler_np_interp_index((double)ts[i], s->train_sigmas, T);
    sig[steps] = 0.0f;
    for (int j = 0; j < T; j++)
        log_sigmas[j] = logf(s->train_sigmas[j]);

    if (kind == SAMPLER_LMS || kind == SAMPLER_EULER || kind == SAMPLER_EULER_A) {
        s->num_calls = steps;
        s->num_sigmas = steps + 1;
        s->timesteps = malloc((size_t)steps * sizeof *s->timesteps);
        s->sigmas = malloc((size_t)(steps + 1) * sizeof *s->sigmas);
        if (!s->timesteps || !s->sigmas)
            goto oom;
        memcpy(s->timesteps, ts, (size_t)steps * sizeof *ts);
        memcpy(s->sigmas, sig, (size_t)(steps + 1) * sizeof *sig);
    } else if (kind == SAMPLER_HEUN) {
        /* sigmas: cat([s[:1], s[1:-1].repeat_interleave(2), s[-1:]]); timesteps: cat([t[:1],
         * t[1:].repeat_interleave(2)]) */
        s->num_calls = 2 * steps - 1;
        s->num_sigmas = 2 * steps;
        s->timesteps = malloc((size_t)s->num_calls * sizeof *s->timesteps);
        s->sigmas = malloc((size_t)s->num_sigmas * sizeof *s->sigmas);
        if (!s->timesteps || !s->sigmas)
            goto oom;
        s->sigmas[0] = sig[0];
        for (int k = 1; k < steps; k++)
            s->sigmas[2 * k - 1] = s->sigmas[2 * k] = sig[k];
        s->sigmas[2 * steps - 1] = sig[steps];
        s->timesteps[0] = ts[0];
        for (int k = 1; k < steps; k++)
            s->timesteps[2 * k - 1] = s->timesteps[2 * k] = ts[k];
    } else { /* dpm_2, dpm_2_a */
        int len = steps + 1;
        interp = calloc((size_t)len, sizeof *interp);
        if (!interp)
            goto oom;
        if (kind == SAMPLER_DPM_2) {
            /* sigmas.log().lerp(sigmas.roll(1).log(), 0.5).exp() */
            for (int k = 0; k < len; k++)
                interp[k] = expf(lerp_half(logf(sig[k]), logf(sig[(k + len - 1) % len])));
        } else {
            up = calloc((size_t)len, sizeof *up);
            down = calloc((size_t)len, sizeof *down);
            if (!up || !down)
                goto oom;
            for (int k = 0; k < len; k++) {
                float from = sig[k], to = k + 1 < len ? sig[k + 1] : 0.0f;
                float to2 = to * to, from2 = from * from;
                up[k] = sqrtf((to2 * (from2 - to2)) / from2);
                down[k] = sqrtf(to2 - up[k] * up[k]);
            }
            down[len - 1] = 0.0f;
            for (int k = 0; k < len; k++)
                interp[k] = expf(lerp_half(logf(sig[k]), logf(down[k])));
            interp[len - 1] = interp[len - 2] = 0.0f;
        }
        s->num_calls = 2 * steps - 1;
        s->num_sigmas = 2 * len;
        s->sigmas = expand_pairs(sig, len);
        s->sigmas_interpol = expand_pairs(interp, len);
        if (kind == SAMPLER_DPM_2_A) {
            s->sigmas_up = expand_pairs(up, len);
            s->sigmas_down = expand_pairs(down, len);
            if (!s->sigmas_up || !s->sigmas_down)
                goto oom;
        }
        s->timesteps = malloc((size_t)s->num_calls * sizeof *s->timesteps);
        if (!s->sigmas || !s->sigmas_interpol || !s->timesteps)
            goto oom;
        /* timesteps: [t0, ti, t1, ti, t2, ...]: dpm_2 pairs t_k with the midpoint timestep
         * interpol[k] that precedes it; dpm_2_a with interpol[k - 1]. */
        s->timesteps[0] = ts[0];
        for (int k = 1; k < steps; k++) {
            float si = kind == SAMPLER_DPM_2 ? interp[k] : interp[k - 1];
            s->timesteps[2 * k - 1] = (float)sampler_sigma_to_t(si, log_sigmas, T);
            s->timesteps[2 * k] = ts[k];
        }
    }
    /* linspace spacing: init_noise_sigma = sigmas.max() */
    float max_sigma = s->sigmas[0];
    for (int k = 1; k < s->num_sigmas; k++)
        if (s->sigmas[k] > max_sigma)
            max_sigma = s->sigmas[k];
    s->init_noise_sigma = max_sigma;
    rc = 0;
    goto done;
oom:
    rc = error_set(err, "out of memory");
done:
    free(lin);
    free(ts);
    free(sig);
    free(log_sigmas);
    free(interp);
    free(up);
    free(down);
    return rc;
}

float sampler_karras_input_sigma(const Sampler *s, int i) {
    switch (s->cfg.kind) {
    case SAMPLER_DPM_2: /* second-order calls are scaled by the midpoint sigma */
        return (i % 2 == 1) ? s->sigmas_interpol[i] : s->sigmas[i];
    case SAMPLER_DPM_2_A:
        return (i % 2 == 1) ? s->sigmas_interpol[i - 1] : s->sigmas[i];
    default:
        return s->sigmas[i];
    }
}

/* pred_original_sample for sigma (epsilon: x - sigma * mo; v: the c_out / c_skip form). */
static inline float pred_x0(bool v_prediction, float sigma, float v_out, float v_skip, float x,
                            float mo) {
    if (v_prediction)
        return mo * v_out + x / v_skip;
    return x - sigma * mo;
}

/* v-prediction coefficients: -sigma / (sigma**2 + 1)**0.5 and sigma**2 + 1 (float32). */
static void v_coeffs(float sigma, float *v_out, float *v_skip) {
    float s2p1 = sigma * sigma + 1.0f;
    *v_out = -sigma / sqrtf(s2p1);
    *v_skip = s2p1;
}

/* LMS: buffers 0..3 hold the last derivatives, newest last.
 *
 * diffusers' coefficient is scipy.integrate.quad(lms_derivative, sigmas[t], sigmas[t + 1]) of
 * the Lagrange basis polynomial, and lms_derivative runs on torch float32 0-d tensors (tau
 * rounded to float32 first). quad (QUADPACK dqagse) stops after its first 21-point
 * Gauss-Kronrod pass, since the rule is exact for these cubics, so that pass is reproduced here:
 * the same nodes, the same float32 integrand, the same double sums in QUADPACK's order. */
static double lms_integrand(const float *sigmas, int order, int t, int current, double tau) {
    float prod = 1.0f, x = (float)tau;
    for (int k = 0; k < order; k++) {
        if (k == current)
            continue;
        prod = prod * ((x - sigmas[t - k]) / (sigmas[t - current] - sigmas[t - k]));
    }
    return prod;
}

static double lms_coefficient(const float *sigmas, int order, int t, int current) {
    /* 21-point Kronrod abscissae (descending) and weights: the published QUADPACK rule; the
     * odd entries (0-based) are the 10-point Gauss nodes, the last is the centre. */
    static const double xgk[11] = {0.995657163025808080735527280689003,
                                   0.973906528517171720077964012084452,
                                   0.930157491355708226001207180059508,
                                   0.865063366688984510732096688423493,
                                   0.780817726586416897063717578345042,
                                   0.679409568299024406234327365114874,
                                   0.562757134668604683339000099272694,
                                   0.433395394129247190799265943165784,
                                   0.294392862701460198131126603103866,
                                   0.148874338981631210884826001129720,
                                   0.0};
    static const double wgk[11] = {
        0.011694638867371874278064396062192, 0.032558162307964727478818972459390,
        0.054755896574351996031381300244580, 0.075039674810919952767043140916190,
        0.093125454583697605535065465083366, 0.109387158802297641899210590325805,
        0.123491976262065851077958109831074, 0.134709217311473325928054001771707,
        0.142775938577060080797094273138717, 0.147739104901338491374841515972068,
        0.149445554002916905664936468389821};
    double a = sigmas[t], b = sigmas[t + 1];
    double centr = 0.5 * (a + b), hlgth = 0.5 * (b - a);
    double resk = wgk[10] * lms_integrand(sigmas, order, t, current, centr);
    for (int pass = 0; pass < 2; pass++) { /* Gauss nodes first, then the Kronrod ones */
        for (int j = 0; j < 5; j++) {
            int idx = pass == 0 ? 2 * j + 1 : 2 * j;
            double absc = hlgth * xgk[idx];
            double f1 = lms_integrand(sigmas, order, t, current, centr - absc);
            double f2 = lms_integrand(sigmas, order, t, current, centr + absc);
            resk = resk + wgk[idx] * (f1 + f2);
        }
    }
    return resk * hlgth;
}

void sampler_step_lms(Sampler *s, int i, const float *mo, float *x) {
    size_t n = s->n;
    float sigma = s->sigmas[i], v_out = 0.0f, v_skip = 1.0f;
    v_coeffs(sigma, &v_out, &v_skip);
    /* derivatives.append(d); keep the last 4 */
    if (s->num_derivatives == 4) {
        float *oldest = s->buf[0];
        for (int k = 0; k < 3; k++)
            s->buf[k] = s->buf[k + 1];
        s->buf[3] = oldest;
        s->num_derivatives = 3;
    }
    float *d_new = s->buf[s->num_derivatives++];
    for (size_t k = 0; k < n; k++) {
        float x0 = pred_x0(s->cfg.v_prediction, sigma, v_out, v_skip, x[k], mo[k]);
        d_new[k] = (x[k] - x0) / sigma;
    }
    int order = i + 1 < 4 ? i + 1 : 4;
    float coeff[4];
    for (int c = 0; c < order; c++)
        coeff[c] = (float)lms_coefficient(s->sigmas, order, i, c);
    /* sample + sum(coeff * derivative for coeff, derivative in zip(coeffs, reversed(ders))) */
    for (size_t k = 0; k < n; k++) {
        float acc = 0.0f;
        for (int c = 0; c < order; c++)
            acc = acc + coeff[c] * s->buf[s->num_derivatives - 1 - c][k];
        x[k] = x[k] + acc;
    }
}

void sampler_step_euler(Sampler *s, int i, const float *mo, float *x, const float *noise) {
    float sigma = s->sigmas[i], sigma_next = s->sigmas[i + 1], v_out, v_skip;
    v_coeffs(sigma, &v_out, &v_skip);
    float dt, sigma_up = 0.0f;
    if (noise) {
        float to2 = sigma_next * sigma_next, from2 = sigma * sigma;
        sigma_up = sqrtf((to2 * (from2 - to2)) / from2);
        float sigma_down = sqrtf(to2 - sigma_up * sigma_up);
        dt = sigma_down - sigma;
    } else {
        dt = sigma_next - sigma; /* sigma_hat = sigma * (0 + 1) = sigma */
    }
    for (size_t k = 0; k < s->n; k++) {
        float x0 = pred_x0(s->cfg.v_prediction, sigma, v_out, v_skip, x[k], mo[k]);
        float derivative = (x[k] - x0) / sigma;
        float prev = x[k] + derivative * dt;
        if (noise)
            prev = prev + noise[k] * sigma_up;
        x[k] = prev;
    }
}

/* HeunDiscreteScheduler's clip_sample (default False; kohya's training samples set it True):
 * pred_original_sample.clamp(-1, 1). */
static float clip_x0(const Sampler *s, float x0) {
    if (!s->cfg.clip_sample)
        return x0;
    return x0 < -1.0f ? -1.0f : x0 > 1.0f ? 1.0f : x0;
}

/* Heun: buffer 0 prev_derivative, buffer 1 the sample of the first-order half; have[0] is
 * diffusers' "dt is not None" (second-order state). */
void sampler_step_heun(Sampler *s, int i, const float *mo, float *x) {
    size_t n = s->n;
    float *prev_d = s->buf[0], *first_sample = s->buf[1];
    bool first_order = !s->have[0];
    float sigma, sigma_next;
    if (first_order) {
        sigma = s->sigmas[i];
        sigma_next = s->sigmas[i + 1];
    } else {
        sigma = s->sigmas[i - 1];
        sigma_next = s->sigmas[i];
    }
    float sigma_input = first_order ? sigma : sigma_next, v_out, v_skip;
    v_coeffs(sigma_input, &v_out, &v_skip);
    if (first_order) {
        float dt = sigma_next - sigma;
        s->stored_dt = dt;
        for (size_t k = 0; k < n; k++) {
            float x0 =
                clip_x0(s, pred_x0(s->cfg.v_prediction, sigma_input, v_out, v_skip, x[k], mo[k]));
            float derivative = (x[k] - x0) / sigma;
            prev_d[k] = derivative;
            first_sample[k] = x[k];
            x[k] = x[k] + derivative * dt;
        }
        s->have[0] = true;
    } else {
        float dt = s->stored_dt;
        for (size_t k = 0; k < n; k++) {
            float x0 =
                clip_x0(s, pred_x0(s->cfg.v_prediction, sigma_input, v_out, v_skip, x[k], mo[k]));
            float derivative = (x[k] - x0) / sigma_next;
            derivative = (prev_d[k] + derivative) / 2.0f;
            x[k] = first_sample[k] + derivative * dt;
        }
        s->have[0] = false;
    }
}

/* KDPM2: buffer 0 the sample of the first-order half; have[0] = "self.sample is not None". */
/* The first (Euler-to-midpoint) half of dpm_2 and dpm_2_a: the sample is kept for the second
 * half, x moves to sigma_interpol. */
static void dpm2_first_half(Sampler *s, const float *mo, float *x, float sigma,
                            float sigma_interpol, float v_out, float v_skip) {
    float *first_sample = s->buf[0];
    float dt = sigma_interpol - sigma;
    for (size_t k = 0; k < s->n; k++) {
        float x0 = pred_x0(s->cfg.v_prediction, sigma, v_out, v_skip, x[k], mo[k]);
        float derivative = (x[k] - x0) / sigma;
        first_sample[k] = x[k];
        x[k] = x[k] + derivative * dt;
    }
    s->have[0] = true;
}

void sampler_step_dpm2(Sampler *s, int i, const float *mo, float *x) {
    size_t n = s->n;
    float *first_sample = s->buf[0];
    bool first_order = !s->have[0];
    float sigma, sigma_interpol, sigma_next;
    if (first_order) {
        sigma = s->sigmas[i];
        sigma_interpol = s->sigmas_interpol[i + 1];
        sigma_next = s->sigmas[i + 1];
    } else {
        sigma = s->sigmas[i - 1];
        sigma_interpol = s->sigmas_interpol[i];
        sigma_next = s->sigmas[i];
    }
    float sigma_input = first_order ? sigma : sigma_interpol, v_out, v_skip;
    v_coeffs(sigma_input, &v_out, &v_skip);
    if (first_order) {
        dpm2_first_half(s, mo, x, sigma, sigma_interpol, v_out, v_skip);
    } else {
        float dt = sigma_next - sigma;
        for (size_t k = 0; k < n; k++) {
            float x0 = pred_x0(s->cfg.v_prediction, sigma_input, v_out, v_skip, x[k], mo[k]);
            float derivative = (x[k] - x0) / sigma_interpol;
            x[k] = first_sample[k] + derivative * dt;
        }
        s->have[0] = false;
    }
}

void sampler_step_dpm2a(Sampler *s, int i, const float *mo, float *x, const float *noise) {
    size_t n = s->n;
    float *first_sample = s->buf[0];
    bool first_order = !s->have[0];
    float sigma, sigma_interpol, sigma_up, sigma_down;
    if (first_order) {
        sigma = s->sigmas[i];
        sigma_interpol = s->sigmas_interpol[i];
        sigma_up = s->sigmas_up[i];
        sigma_down = 0.0f; /* unused in the first-order half */
    } else {
        sigma = s->sigmas[i - 1];
        sigma_interpol = s->sigmas_interpol[i - 1];
        sigma_up = s->sigmas_up[i - 1];
        sigma_down = s->sigmas_down[i - 1];
    }
    float sigma_input = first_order ? sigma : sigma_interpol, v_out, v_skip;
    v_coeffs(sigma_input, &v_out, &v_skip);
    if (first_order) {
        dpm2_first_half(s, mo, x, sigma, sigma_interpol, v_out, v_skip);
    } else {
        float dt = sigma_down - sigma;
        for (size_t k = 0; k < n; k++) {
            float x0 = pred_x0(s->cfg.v_prediction, sigma_input, v_out, v_skip, x[k], mo[k]);
            float derivative = (x[k] - x0) / sigma_interpol;
            float prev = first_sample[k] + derivative * dt;
            x[k] = prev + noise[k] * sigma_up;
        }
        s->have[0] = false;
    }
}
