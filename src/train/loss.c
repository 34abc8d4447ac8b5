#include "train/loss.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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

int train_loss_forward_backward(const NoiseSchedule *s, const TrainLossOptions *o, int batch,
                                size_t per_sample, const float *pred, const float *target,
                                const int64_t *timesteps, const float *loss_weights,
                                float grad_scale, float *per_sample_loss, float *loss, float *dpred,
                                Error *err) {
    if (batch < 1 || per_sample < 1)
        return error_set(err, "train loss: empty batch");
    for (int b = 0; b < batch; b++)
        if (timesteps[b] < 0 || timesteps[b] >= NOISE_SCHEDULE_STEPS)
            return error_set(err, "train loss: timestep %lld is outside 0..%d",
                             (long long)timesteps[b], NOISE_SCHEDULE_STEPS - 1);
    float *huber_c = malloc((size_t)batch * sizeof *huber_c);
    float *deriv = malloc((size_t)batch * sizeof *deriv);
    if (!huber_c || !deriv) {
        free(huber_c);
        free(deriv);
        return error_set(err, "train loss: out of memory");
    }
    train_loss_huber_c(s, o, batch, timesteps, huber_c);

    double total = 0.0;
    for (int b = 0; b < batch; b++) {
        const float *p = pred + (size_t)b * per_sample, *q = target + (size_t)b * per_sample;
        float c = huber_c[b], c2 = c * c, two_c = 2.0f * c;
        double sum = 0.0;
        for (size_t i = 0; i < per_sample; i++) {
            float d = p[i] - q[i], l;
            switch (o->loss_type) {
            case LOSS_L1:
                l = fabsf(d);
                break;
            case LOSS_HUBER:
                l = two_c * (sqrtf(d * d + c2) - c);
                break;
            case LOSS_SMOOTH_L1:
                l = 2.0f * (sqrtf(d * d + c2) - c);
                break;
            default:
                l = d * d;
                break;
            }
            sum += l;
        }
        float mean = (float)(sum / (double)per_sample);
        float value;
        apply_weights(s, o, timesteps[b], loss_weights ? loss_weights[b] : 1.0f, mean, &value,
                      &deriv[b]);
        if (per_sample_loss)
            per_sample_loss[b] = value;
        total += value;
    }
    *loss = (float)(total / batch);

    if (dpred) {
        for (int b = 0; b < batch; b++) {
            /* autograd's order: the batch mean, the weights, the C*H*W mean, the elementwise
             * derivative */
            float g = grad_scale / (float)batch;
            g = g * deriv[b];
            g = g / (float)per_sample;
            const float *p = pred + (size_t)b * per_sample, *q = target + (size_t)b * per_sample;
            float *dp = dpred + (size_t)b * per_sample;
            float c = huber_c[b], c2 = c * c, two_c = 2.0f * c;
            for (size_t i = 0; i < per_sample; i++) {
                float d = p[i] - q[i];
                switch (o->loss_type) {
                case LOSS_L1:
                    dp[i] = d > 0.0f ? g : d < 0.0f ? -g : 0.0f;
                    break;
                case LOSS_HUBER:
                    dp[i] = g * two_c / sqrtf(d * d + c2) * d;
                    break;
                case LOSS_SMOOTH_L1:
                    dp[i] = g * 2.0f / sqrtf(d * d + c2) * d;
                    break;
                default:
                    dp[i] = 2.0f * d * g;
                    break;
                }
            }
        }
    }
    free(huber_c);
    free(deriv);
    return 0;
}
