#include "train/loss.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* torch rounds a * b + c twice unless it fuses on purpose (written as fmaf here); clang would
   fuse such expressions under -march=native (GCC in -std=c11 mode does not). */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

void train_loss_options_default(TrainLossOptions *o) {
    memset(o, 0, sizeof *o);
    o->loss_type = LOSS_L2;
    o->huber_schedule = HUBER_SNR;
    o->huber_c = 0.1;
    o->huber_scale = 1.0;
}

int loss_type_from_name(const char *name, LossType *out, Error *err) {
    static const char *const names[] = {"l2", "l1", "huber", "smooth_l1"};
    for (int i = 0; i < 4; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = (LossType)i;
            return 0;
        }
    return error_set(err, "--loss_type: '%s' is not one of l1, l2, huber, smooth_l1", name);
}

int huber_schedule_from_name(const char *name, HuberSchedule *out, Error *err) {
    static const char *const names[] = {"snr", "exponential", "constant"};
    for (int i = 0; i < 3; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = (HuberSchedule)i;
            return 0;
        }
    return error_set(err, "--huber_schedule: '%s' is not one of constant, exponential, snr", name);
}

void train_loss_huber_c(const NoiseSchedule *s, const TrainLossOptions *o, int batch,
                        const int64_t *timesteps, float *huber_c) {
    for (int b = 0; b < batch; b++) {
        int64_t t = timesteps[b];
        switch (o->huber_schedule) {
        case HUBER_EXPONENTIAL: {
            /* torch: exp(-alpha * t) in float32, alpha a Python float */
            float alpha = (float)(-log(o->huber_c) / NOISE_SCHEDULE_STEPS);
            float e = expf(-alpha * (float)t);
            huber_c[b] = e * (float)o->huber_scale;
            break;
        }
        case HUBER_SNR: {
            float acp = s->alphas_cumprod[t];
            float sigma = sqrtf((1.0f - acp) / acp);
            float d = 1.0f + sigma;
            huber_c[b] = (float)(1.0 - o->huber_c) / (d * d) + (float)o->huber_c;
            break;
        }
        default:
            huber_c[b] = (float)(o->huber_c * o->huber_scale);
            break;
        }
    }
}

/* kohya's SNR capped at 1000 (timestep 0 has an SNR near 1175, and the cap keeps a zero
 * terminal SNR schedule's weights finite). */
static float capped_snr(const NoiseSchedule *s, int64_t t) {
    float snr = s->all_snr[t];
    return snr < 1000.0f ? snr : 1000.0f;
}

/* Per sample: the loss after the weights, and d(that)/d(mean over C, H, W), following kohya's
 * operations one by one in float32. */
static void apply_weights(const NoiseSchedule *s, const TrainLossOptions *o, int64_t t,
                          float weight, float mean, float *value, float *deriv) {
    float v = mean * weight, d = weight;
    if (o->min_snr_gamma != 0.0) {
        float snr = s->all_snr[t];
        float gamma = (float)o->min_snr_gamma;
        float m = snr < gamma ? snr : gamma;
        float w = o->v_parameterization ? m / (snr + 1.0f) : m / snr;
        v = v * w;
        d = d * w;
    }
    if (o->scale_v_pred_loss_like_noise_pred) {
        float snr = capped_snr(s, t);
        float w = snr / (snr + 1.0f);
        v = v * w;
        d = d * w;
    }
    if (o->v_pred_like_loss != 0.0) {
        float snr = capped_snr(s, t);
        float scale = snr / (snr + 1.0f);
        float k = (float)o->v_pred_like_loss;
        float extra = v / scale * k;
        float extra_d = d / scale * k;
        v = v + extra;
        d = d + extra_d;
    }
    if (o->debiased_estimation_loss) {
        float snr = capped_snr(s, t);
        float w = o->v_parameterization ? 1.0f / (snr + 1.0f) : 1.0f / sqrtf(snr);
        v = w * v;
        d = w * d;
    }
    *value = v;
    *deriv = d;
}

void area_resize_forward(int planes, int in_h, int in_w, int out_h, int out_w, const float *in,
                         float *out) {
    for (int p = 0; p < planes; p++) {
        const float *x = in + (size_t)p * in_h * in_w;
        for (int oy = 0; oy < out_h; oy++) {
            /* torch's adaptive pooling windows: [floor(i*in/out), ceil((i+1)*in/out)) */
            int y0 = (int)(((int64_t)oy * in_h) / out_h);
            int y1 = (int)((((int64_t)oy + 1) * in_h + out_h - 1) / out_h);
            for (int ox = 0; ox < out_w; ox++) {
                int x0 = (int)(((int64_t)ox * in_w) / out_w);
                int x1 = (int)((((int64_t)ox + 1) * in_w + out_w - 1) / out_w);
                float sum = 0.0f;
                for (int y = y0; y < y1; y++)
                    for (int xx = x0; xx < x1; xx++)
                        sum += x[(size_t)y * in_w + xx];
                out[((size_t)p * out_h + oy) * out_w + ox] =
                    sum / (float)(y1 - y0) / (float)(x1 - x0);
            }
        }
    }
}

static float elementwise_loss(LossType type, float d, float c, float c2, float two_c) {
    switch (type) {
    case LOSS_L1:
        return fabsf(d);
    case LOSS_HUBER:
        return two_c * (sqrtf(d * d + c2) - c);
    case LOSS_SMOOTH_L1:
        return 2.0f * (sqrtf(d * d + c2) - c);
    default:
        return d * d;
    }
}

/* d(elementwise loss)/d(pred) times the incoming gradient g, in autograd's order. */
static float elementwise_grad(LossType type, float d, float c, float c2, float two_c, float g) {
    switch (type) {
    case LOSS_L1:
        return d > 0.0f ? g : d < 0.0f ? -g : 0.0f;
    case LOSS_HUBER:
        return g * two_c / sqrtf(d * d + c2) * d;
    case LOSS_SMOOTH_L1:
        return g * 2.0f / sqrtf(d * d + c2) * d;
    default:
        return 2.0f * d * g;
    }
}

int train_loss_forward_backward(const NoiseSchedule *s, const TrainLossOptions *o,
                                const TrainLossBatch *b, float grad_scale, float *per_sample_loss,
                                float *loss, float *dpred, Error *err) {
    int batch = b->batch;
    size_t plane = (size_t)b->height * b->width, per_sample = (size_t)b->channels * plane;
    if (batch < 1 || per_sample < 1)
        return error_set(err, "train loss: empty batch");
    if (b->alpha_masks && (b->mask_height < b->height || b->mask_width < b->width))
        return error_set(err, "train loss: alpha mask %dx%d is smaller than the latent %dx%d",
                         b->mask_width, b->mask_height, b->width, b->height);
    for (int i = 0; i < batch; i++)
        if (b->timesteps[i] < 0 || b->timesteps[i] >= NOISE_SCHEDULE_STEPS)
            return error_set(err, "train loss: timestep %lld is outside 0..%d",
                             (long long)b->timesteps[i], NOISE_SCHEDULE_STEPS - 1);
    float *huber_c = malloc((size_t)batch * 2 * sizeof *huber_c);
    float *mask = b->alpha_masks ? malloc((size_t)batch * plane * sizeof *mask) : NULL;
    if (!huber_c || (b->alpha_masks && !mask)) {
        free(huber_c);
        free(mask);
        return error_set(err, "train loss: out of memory");
    }
    float *deriv = huber_c + batch;
    train_loss_huber_c(s, o, batch, b->timesteps, huber_c);
    if (mask)
        area_resize_forward(batch, b->mask_height, b->mask_width, b->height, b->width,
                            b->alpha_masks, mask);

    double total = 0.0;
    for (int i = 0; i < batch; i++) {
        const float *p = b->pred + (size_t)i * per_sample, *q = b->target + (size_t)i * per_sample;
        const float *m = mask ? mask + (size_t)i * plane : NULL;
        float c = huber_c[i], c2 = c * c, two_c = 2.0f * c;
        double sum = 0.0;
        for (size_t k = 0; k < per_sample; k++) {
            float l = elementwise_loss(o->loss_type, p[k] - q[k], c, c2, two_c);
            sum += m ? l * m[k % plane] : l;
        }
        float mean = (float)(sum / (double)per_sample);
        float value;
        apply_weights(s, o, b->timesteps[i], b->loss_weights ? b->loss_weights[i] : 1.0f, mean,
                      &value, &deriv[i]);
        if (per_sample_loss)
            per_sample_loss[i] = value;
        total += value;
    }
    *loss = (float)(total / batch);

    if (dpred) {
        for (int i = 0; i < batch; i++) {
            /* autograd's order: the batch mean, the weights, the C*H*W mean, the mask, the
             * elementwise derivative */
            float g = grad_scale / (float)batch;
            g = g * deriv[i];
            g = g / (float)per_sample;
            const float *p = b->pred + (size_t)i * per_sample;
            const float *q = b->target + (size_t)i * per_sample;
            const float *m = mask ? mask + (size_t)i * plane : NULL;
            float *dp = dpred + (size_t)i * per_sample;
            float c = huber_c[i], c2 = c * c, two_c = 2.0f * c;
            for (size_t k = 0; k < per_sample; k++)
                dp[k] = elementwise_grad(o->loss_type, p[k] - q[k], c, c2, two_c,
                                         m ? g * m[k % plane] : g);
        }
    }
    free(huber_c);
    free(mask);
    return 0;
}
