/* The forward diffusion side of kohya's training step: the DDPMScheduler kohya builds
 * (scaled_linear betas 0.00085..0.012 over 1000 steps, diffusers' float32 arithmetic, with
 * kohya's --zero_terminal_snr rescale), add_noise and the v-prediction target, and kohya's
 * noise draw (train_util.get_noise_noisy_latents_and_timesteps): Gaussian noise, noise offset
 * (random strength, adaptive scale), pyramid ("multires") noise, timestep sampling, input
 * perturbation (--ip_noise_gamma). Random numbers come from a TorchGenerator in the order
 * kohya draws them from torch's global generator, so a seed gives kohya's noise bit for bit;
 * the pyramid noise also draws Python `random.random()` values, which the caller supplies.
 *
 * Tensors are NCHW float32, contiguous. */
#ifndef SDTI_TRAIN_NOISE_SCHEDULE_H
#define SDTI_TRAIN_NOISE_SCHEDULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "base/rng_torch.h"
#include "train/py_random.h"

#define NOISE_SCHEDULE_STEPS 1000

typedef struct NoiseSchedule {
    bool zero_terminal_snr;
    float betas[NOISE_SCHEDULE_STEPS];
    float alphas_cumprod[NOISE_SCHEDULE_STEPS];
    /* kohya's all_snr = (sqrt(acp) / sqrt(1 - acp))^2, computed BEFORE the zero-terminal-SNR
     * fix (prepare_scheduler_for_custom_training runs first), so min-SNR and the other loss
     * weights use the original schedule's SNR even with --zero_terminal_snr. */
    float all_snr[NOISE_SCHEDULE_STEPS];
} NoiseSchedule;

/* DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
 * num_train_timesteps=1000), plus kohya's fix_noise_scheduler_betas_for_zero_terminal_snr. */
void noise_schedule_init(NoiseSchedule *s, bool zero_terminal_snr);

/* noisy = sqrt(acp[t]) * latents + sqrt(1 - acp[t]) * noise, per sample; `per_sample` =
 * C*H*W. Timesteps must be in [0, 1000). */
void noise_schedule_add_noise(const NoiseSchedule *s, int batch, size_t per_sample,
                              const float *latents, const float *noise, const int64_t *timesteps,
                              float *noisy);
/* The v-prediction target: sqrt(acp[t]) * noise - sqrt(1 - acp[t]) * latents. */
void noise_schedule_velocity(const NoiseSchedule *s, int batch, size_t per_sample,
                             const float *latents, const float *noise, const int64_t *timesteps,
                             float *velocity);

/* torch.nn.Upsample(size=(out_h, out_w), mode="bilinear") (align_corners=False):
 * x [planes, in_h, in_w] -> y [planes, out_h, out_w]. */
void upsample_bilinear_forward(int planes, int in_h, int in_w, int out_h, int out_w, const float *x,
                               float *y);

/* kohya's noise options (argparse values; a zero / false value means "off" as kohya tests
 * them for truth). */
typedef struct TrainNoiseOptions {
    double noise_offset; /* --noise_offset (0: off) */
    bool noise_offset_random_strength;
    bool has_adaptive_noise_scale; /* --adaptive_noise_scale given */
    double adaptive_noise_scale;
    int multires_noise_iterations; /* 0: off */
    double multires_noise_discount;
    double ip_noise_gamma; /* 0: off */
    bool ip_noise_gamma_random_strength;
    int min_timestep; /* kohya: None -> 0 */
    int max_timestep; /* kohya: None -> 1000 */
} TrainNoiseOptions;

/* Defaults as kohya's argparse leaves them: everything off, discount 0.3, timesteps 0..1000. */
void train_noise_options_default(TrainNoiseOptions *o);

/* One step's noise, in kohya's draw order: randn_like(latents); rand(1) for a random noise
 * offset strength; randn(B, C, 1, 1) for the offset; per pyramid level one random.random()
 * and randn(B, C, h_i, w_i); randint(min, max, (B,)) (none when min >= max: every timestep
 * is max); rand(1) for a random ip strength; randn_like(latents) for ip noise. The pyramid's
 * random.random() draws come from `py`, Python's global generator in kohya (seeded by
 * accelerate's set_seed and shared with the dataset's choices, so the trainer passes the one
 * stream in kohya's call order).
 *   noise     [B,C,H,W] out: the epsilon target (what kohya returns as `noise`)
 *   noisy     [B,C,H,W] out: the UNet input
 *   timesteps [B] out
 * py may be NULL when multires noise is off. */
int train_noise_draw(const NoiseSchedule *s, const TrainNoiseOptions *o, TorchGenerator *g,
                     PyRandom *py, int batch, int channels, int height, int width,
                     const float *latents, float *noise, float *noisy, int64_t *timesteps,
                     Error *err);

#endif
