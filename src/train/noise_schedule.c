/* Where torch fuses a multiply and an add (its CPU kernels are built with FMA contraction on
 * FMA machines), fmaf is written out, so the results match torch bit for bit; everything else
 * is plain float arithmetic in torch's order (the build keeps -ffp-contract=off). */
#include "train/noise_schedule.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* torch rounds a * b + c twice unless it fuses on purpose (written as fmaf here); clang would
   fuse such expressions under -march=native (GCC in -std=c11 mode does not). */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

/* torch.linspace(start, end, steps, dtype=float32) as its scalar CPU kernel computes it: the
 * first half from start, the second half back from end, each one fused multiply-add. */
static void linspace_f32(double start_d, double end_d, int steps, float *out) {
    float start = (float)start_d, end = (float)end_d;
    float step = (end - start) / (float)(steps - 1);
    int halfway = steps / 2;
    for (int i = 0; i < steps; i++)
        out[i] =
            i < halfway ? fmaf(step, (float)i, start) : fmaf(-step, (float)(steps - i - 1), end);
}

/* torch.cumprod on float32 accumulates in double and rounds each output. */
static void cumprod_f32(const float *x, int n, float *out) {
    double acc = 1.0;
    for (int i = 0; i < n; i++) {
        acc *= (double)x[i];
        out[i] = (float)acc;
    }
}

/* kohya's enforce_zero_terminal_snr (arXiv 2305.08891): shift sqrt(acp) so its last value is 0
 * and scale it so its first value is unchanged, then turn it back into betas. */
static void enforce_zero_terminal_snr(float *betas, int n) {
    float *sq = malloc((size_t)n * sizeof *sq);
    float *alphas = malloc((size_t)n * sizeof *alphas);
    if (!sq || !alphas) { /* 4 KB each: cannot fail in practice; keep the schedule as it was */
        free(sq);
        free(alphas);
        return;
    }
    for (int i = 0; i < n; i++)
        alphas[i] = 1.0f - betas[i];
    cumprod_f32(alphas, n, sq);
    for (int i = 0; i < n; i++)
        sq[i] = sqrtf(sq[i]);
    float first = sq[0], last = sq[n - 1];
    float scale = first / (first - last);
    for (int i = 0; i < n; i++) {
        sq[i] -= last;
        sq[i] *= scale;
        sq[i] = sq[i] * sq[i]; /* alphas_bar */
    }
    alphas[0] = sq[0];
    for (int i = 1; i < n; i++)
        alphas[i] = sq[i] / sq[i - 1];
    for (int i = 0; i < n; i++)
        betas[i] = 1.0f - alphas[i];
    free(sq);
    free(alphas);
}

void noise_schedule_init(NoiseSchedule *s, bool zero_terminal_snr) {
    const int n = NOISE_SCHEDULE_STEPS;
    float alphas[NOISE_SCHEDULE_STEPS];
    s->zero_terminal_snr = zero_terminal_snr;
    linspace_f32(sqrt(0.00085), sqrt(0.012), n, s->betas);
    for (int i = 0; i < n; i++)
        s->betas[i] = s->betas[i] * s->betas[i];
    for (int i = 0; i < n; i++)
        alphas[i] = 1.0f - s->betas[i];
    cumprod_f32(alphas, n, s->alphas_cumprod);
    for (int i = 0; i < n; i++) {
        float a = s->alphas_cumprod[i];
        float r = sqrtf(a) / sqrtf(1.0f - a);
        s->all_snr[i] = r * r;
    }
    if (zero_terminal_snr) {
        enforce_zero_terminal_snr(s->betas, n);
        for (int i = 0; i < n; i++)
            alphas[i] = 1.0f - s->betas[i];
        cumprod_f32(alphas, n, s->alphas_cumprod);
    }
}

static void sqrt_factors(const NoiseSchedule *s, int64_t t, float *sa, float *sb) {
    float acp = s->alphas_cumprod[t];
    *sa = sqrtf(acp);
    *sb = sqrtf(1.0f - acp);
}

void noise_schedule_add_noise(const NoiseSchedule *s, int batch, size_t per_sample,
                              const float *latents, const float *noise, const int64_t *timesteps,
                              float *noisy) {
    for (int b = 0; b < batch; b++) {
        float sa, sb;
        sqrt_factors(s, timesteps[b], &sa, &sb);
        const float *x = latents + (size_t)b * per_sample, *e = noise + (size_t)b * per_sample;
        float *y = noisy + (size_t)b * per_sample;
        for (size_t i = 0; i < per_sample; i++) {
            float p = sa * x[i], q = sb * e[i];
            y[i] = p + q;
        }
    }
}

void noise_schedule_velocity(const NoiseSchedule *s, int batch, size_t per_sample,
                             const float *latents, const float *noise, const int64_t *timesteps,
                             float *velocity) {
    for (int b = 0; b < batch; b++) {
        float sa, sb;
        sqrt_factors(s, timesteps[b], &sa, &sb);
        const float *x = latents + (size_t)b * per_sample, *e = noise + (size_t)b * per_sample;
        float *v = velocity + (size_t)b * per_sample;
        for (size_t i = 0; i < per_sample; i++) {
            float p = sa * e[i], q = sb * x[i];
            v[i] = p - q;
        }
    }
}

/* torch's linear-interpolation indices for align_corners=False without a scale factor:
 * source = max(scale * (dst + 0.5) - 0.5, 0) with scale = in / out in float. */
static void linear_indices(int in, int out, int i, int *i0, int *i1, float *l0, float *l1) {
    float scale = (float)in / (float)out;
    float src = fmaf(scale, (float)i + 0.5f, -0.5f);
    if (src < 0.0f)
        src = 0.0f;
    int idx = (int)floorf(src);
    if (idx > in - 1)
        idx = in - 1;
    float lambda = src - (float)idx;
    if (lambda < 0.0f)
        lambda = 0.0f;
    if (lambda > 1.0f)
        lambda = 1.0f;
    *i0 = idx;
    *i1 = idx < in - 1 ? idx + 1 : idx;
    *l0 = 1.0f - lambda;
    *l1 = lambda;
}

void upsample_bilinear_forward(int planes, int in_h, int in_w, int out_h, int out_w, const float *x,
                               float *y) {
    for (int oy = 0; oy < out_h; oy++) {
        int y0, y1;
        float h0, h1;
        linear_indices(in_h, out_h, oy, &y0, &y1, &h0, &h1);
        for (int ox = 0; ox < out_w; ox++) {
            int x0, x1;
            float w0, w1;
            linear_indices(in_w, out_w, ox, &x0, &x1, &w0, &w1);
            for (int p = 0; p < planes; p++) {
                const float *src = x + (size_t)p * in_h * in_w;
                float top = fmaf(src[y0 * in_w + x1], w1, src[y0 * in_w + x0] * w0);
                float bottom = fmaf(src[y1 * in_w + x1], w1, src[y1 * in_w + x0] * w0);
                y[((size_t)p * out_h + oy) * out_w + ox] = fmaf(bottom, h1, top * h0);
            }
        }
    }
}

void train_noise_options_default(TrainNoiseOptions *o) {
    memset(o, 0, sizeof *o);
    o->multires_noise_discount = 0.3;
    o->min_timestep = 0;
    o->max_timestep = NOISE_SCHEDULE_STEPS;
}

/* custom_train_functions.apply_noise_offset. `offset` is the strength as kohya holds it: a
 * Python float, or a float32 tensor when drawn with random strength (both end up float). */
static int apply_noise_offset(const TrainNoiseOptions *o, TorchGenerator *g, float offset,
                              int batch, int channels, size_t plane, const float *latents,
                              float *noise, Error *err) {
    int bc = batch * channels;
    float *per_bc_offset = malloc((size_t)bc * 2 * sizeof *per_bc_offset);
    if (!per_bc_offset)
        return error_set(err, "train noise: out of memory");
    float *draws = per_bc_offset + bc;
    for (int i = 0; i < bc; i++) {
        float off = offset;
        if (o->has_adaptive_noise_scale) {
            /* |mean over H, W|; torch sums a float plane with float accumulators in blocks,
             * the double sum here agrees to the last bit or one ulp. */
            const float *x = latents + (size_t)i * plane;
            double sum = 0.0;
            for (size_t k = 0; k < plane; k++)
                sum += x[k];
            float mean = fabsf((float)sum / (float)plane);
            off = offset + (float)o->adaptive_noise_scale * mean;
            if (off < 0.0f)
                off = 0.0f;
        }
        per_bc_offset[i] = off;
    }
    torch_randn(g, draws, (size_t)bc);
    for (int i = 0; i < bc; i++) {
        float add = per_bc_offset[i] * draws[i];
        float *e = noise + (size_t)i * plane;
        for (size_t k = 0; k < plane; k++)
            e[k] = e[k] + add;
    }
    free(per_bc_offset);
    return 0;
}

/* custom_train_functions.pyramid_noise_like: noise += upsample(randn at 1/r^i size) *
 * discount^i for each level, r = 2 + 2 * random.random(); then noise / noise.std(). */
static int pyramid_noise(const TrainNoiseOptions *o, TorchGenerator *g, PyRandom *py, int batch,
                         int channels, int h, int w, float *noise, Error *err) {
    size_t plane = (size_t)h * w, n = (size_t)batch * channels * plane;
    float *small = malloc(n * sizeof *small);
    float *up = malloc(n * sizeof *up);
    if (!small || !up) {
        free(small);
        free(up);
        return error_set(err, "train noise: out of memory for pyramid noise (%zu floats)", n);
    }
    for (int i = 0; i < o->multires_noise_iterations; i++) {
        double r = py_random_random(py) * 2 + 2;
        double ri = pow(r, (double)i);
        int hn = (int)((double)h / ri), wn = (int)((double)w / ri);
        if (hn < 1)
            hn = 1;
        if (wn < 1)
            wn = 1;
        size_t small_n = (size_t)batch * channels * hn * wn;
        torch_randn(g, small, small_n);
        upsample_bilinear_forward(batch * channels, hn, wn, h, w, small, up);
        float d = (float)pow(o->multires_noise_discount, (double)i);
        for (size_t k = 0; k < n; k++) {
            float add = up[k] * d;
            noise[k] = noise[k] + add;
        }
        if (hn == 1 || wn == 1)
            break;
    }
    /* torch.std (unbiased) over the whole tensor, accumulated in double */
    double mean = 0.0, ss = 0.0;
    for (size_t k = 0; k < n; k++)
        mean += noise[k];
    mean /= (double)n;
    for (size_t k = 0; k < n; k++) {
        double dlt = noise[k] - mean;
        ss += dlt * dlt;
    }
    float sd = (float)sqrt(ss / (double)(n - 1));
    for (size_t k = 0; k < n; k++)
        noise[k] = noise[k] / sd;
    free(small);
    free(up);
    return 0;
}

int train_noise_draw(const NoiseSchedule *s, const TrainNoiseOptions *o, TorchGenerator *g,
                     PyRandom *py, int batch, int channels, int height, int width,
                     const float *latents, float *noise, float *noisy, int64_t *timesteps,
                     Error *err) {
    size_t plane = (size_t)height * width, per_sample = (size_t)channels * plane;
    size_t n = (size_t)batch * per_sample;
    if (batch < 1 || channels < 1 || height < 1 || width < 1)
        return error_set(err, "train noise: bad latent shape [%d, %d, %d, %d]", batch, channels,
                         height, width);
    if (o->multires_noise_iterations && !py)
        return error_set(err, "train noise: multires noise needs Python's random stream");
    /* kohya samples randint(min, max) and, when min >= max, uses max for every sample */
    if (o->min_timestep < 0 || o->max_timestep < 0 || o->max_timestep > NOISE_SCHEDULE_STEPS ||
        (o->min_timestep >= o->max_timestep && o->max_timestep >= NOISE_SCHEDULE_STEPS))
        return error_set(err, "train noise: timesteps %d..%d are outside 0..%d", o->min_timestep,
                         o->max_timestep, NOISE_SCHEDULE_STEPS - 1);

    torch_randn(g, noise, n);
    if (o->noise_offset != 0.0) {
        float offset = (float)o->noise_offset;
        if (o->noise_offset_random_strength) {
            float r;
            torch_rand(g, &r, 1);
            offset = r * (float)o->noise_offset;
        }
        if (apply_noise_offset(o, g, offset, batch, channels, plane, latents, noise, err) != 0)
            return -1;
    }
    if (o->multires_noise_iterations &&
        pyramid_noise(o, g, py, batch, channels, height, width, noise, err) != 0)
        return -1;

    if (o->min_timestep < o->max_timestep) {
        if (torch_randint(g, o->min_timestep, o->max_timestep, timesteps, (size_t)batch, err) != 0)
            return -1;
    } else {
        for (int b = 0; b < batch; b++)
            timesteps[b] = o->max_timestep;
    }

    if (o->ip_noise_gamma != 0.0) {
        float strength = (float)o->ip_noise_gamma;
        if (o->ip_noise_gamma_random_strength) {
            float r;
            torch_rand(g, &r, 1);
            strength = r * (float)o->ip_noise_gamma;
        }
        /* noisy holds the perturbed noise first, then the noisy latents */
        torch_randn(g, noisy, n);
        for (size_t k = 0; k < n; k++) {
            float add = strength * noisy[k];
            noisy[k] = noise[k] + add;
        }
        noise_schedule_add_noise(s, batch, per_sample, latents, noisy, timesteps, noisy);
    } else {
        noise_schedule_add_noise(s, batch, per_sample, latents, noise, timesteps, noisy);
    }
    return 0;
}
