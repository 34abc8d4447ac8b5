/* kohya's training loss, forward and its gradient with respect to the UNet prediction:
 * train_util.conditional_loss (l2 / l1 / huber / smooth_l1 with the per-sample Huber
 * threshold of get_huber_threshold_if_needed), the mean over C, H, W, the per-sample loss
 * weight (--prior_loss_weight for regularisation images), then in kohya's order: min-SNR
 * weighting, --scale_v_pred_loss_like_noise_pred, --v_pred_like_loss,
 * --debiased_estimation_loss, and the mean over the batch. */
#ifndef SDTI_TRAIN_LOSS_H
#define SDTI_TRAIN_LOSS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "train/noise_schedule.h"

typedef enum LossType { LOSS_L2, LOSS_L1, LOSS_HUBER, LOSS_SMOOTH_L1 } LossType;
typedef enum HuberSchedule { HUBER_SNR, HUBER_EXPONENTIAL, HUBER_CONSTANT } HuberSchedule;

typedef struct TrainLossOptions {
    LossType loss_type;           /* --loss_type, default l2 */
    HuberSchedule huber_schedule; /* --huber_schedule, default snr */
    double huber_c;               /* default 0.1 */
    double huber_scale;           /* default 1.0 */
    bool v_parameterization;      /* the target is the velocity: changes the SNR weights */
    double min_snr_gamma;         /* 0: off (kohya tests the value for truth) */
    bool scale_v_pred_loss_like_noise_pred;
    double v_pred_like_loss; /* 0: off */
    bool debiased_estimation_loss;
} TrainLossOptions;

void train_loss_options_default(TrainLossOptions *o);
/* "l2" / "l1" / "huber" / "smooth_l1"; "snr" / "exponential" / "constant". */
int loss_type_from_name(const char *name, LossType *out, Error *err);
int huber_schedule_from_name(const char *name, HuberSchedule *out, Error *err);

/* The per-sample Huber threshold c for huber / smooth_l1 (unused for l1 / l2):
 * snr: (1 - huber_c) / (1 + sqrt((1 - acp[t]) / acp[t]))^2 + huber_c (the schedule's current
 * alphas_cumprod, so the zero-terminal one when that is on); exponential:
 * exp(ln(huber_c) / 1000 * t) * huber_scale; constant: huber_c * huber_scale. */
void train_loss_huber_c(const NoiseSchedule *s, const TrainLossOptions *o, int batch,
                        const int64_t *timesteps, float *huber_c);

/* One micro-batch as the loss sees it. */
typedef struct TrainLossBatch {
    int batch, channels, height, width; /* the latent shape */
    const float *pred;                  /* [batch, channels, height, width]: UNet output */
    const float *target;                /* same shape: noise or velocity */
    const int64_t *timesteps;           /* [batch] */
    const float *loss_weights; /* [batch]: 1, or --prior_loss_weight for a regularisation image;
                                  NULL: all 1 */
    /* --alpha_mask / --masked_loss: [batch, mask_height, mask_width] in [0, 1] at image size
     * (1 where an image has no mask), or NULL. kohya area-resizes it to the latent size and
     * multiplies the elementwise loss by it before the mean (masked pixels count as zeros). */
    const float *alpha_masks;
    int mask_height, mask_width;
} TrainLossBatch;

/* The loss of one micro-batch.
 *   per_sample_loss  out [batch] or NULL: each sample's weighted loss before the batch mean
 *   loss             out: the scalar kohya calls backward on
 *   dpred            out [batch, C, H, W] or NULL: grad_scale * d loss / d pred (grad_scale is
 *                    1 / gradient_accumulation_steps under accelerate's accumulate) */
int train_loss_forward_backward(const NoiseSchedule *s, const TrainLossOptions *o,
                                const TrainLossBatch *b, float grad_scale, float *per_sample_loss,
                                float *loss, float *dpred, Error *err);

/* F.interpolate(mask[:, None], size=(out_h, out_w), mode="area") (adaptive average pooling):
 * in [planes, in_h, in_w] -> out [planes, out_h, out_w]. */
void area_resize_forward(int planes, int in_h, int in_w, int out_h, int out_w, const float *in,
                         float *out);

#endif
