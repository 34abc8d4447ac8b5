/* The samplers of kohya's gen_img_diffusers.py (--sampler), each a re-implementation of the
 * diffusers scheduler kohya builds for it, with kohya's settings (see docs/sampling.md):
 *   num_train_timesteps 1000, beta_start 0.00085, beta_end 0.012, beta_schedule "scaled_linear",
 *   steps_offset 1 where the class has it, clip_sample False, prediction_type "epsilon" or
 *   "v_prediction" (--v_parameterization), algorithm_type for dpmsolver / dpmsolver++, every
 *   other setting the class default (DDIM set_alpha_to_one True, PNDM with its PRK warm-up,
 *   DPM-Solver order 2, ...).
 *
 * The loop is diffusers' loop, one model call per entry of the scheduler's `timesteps`
 * (heun / dpm_2 / dpm_2_a have about twice as many entries as steps, pndm a few more):
 *
 *     Sampler *s; sampler_create(&cfg, &s, &err);
 *     x[k] = randn_start[k] * sampler_init_noise_sigma(s);
 *     for (int i = 0; i < sampler_num_model_calls(s); i++) {
 *         sampler_scale_model_input(s, i, x, x_in, n);      // for each CFG half, or once on
 *         t = sampler_timestep(s, i);                       // x and copy to [uncond, cond]
 *         eps = unet(x_in, t, ...); eps = uncond + scale * (cond - uncond);
 *         sampler_step(s, i, eps, x, n, rng, &err);         // x <- next latents
 *     }
 *     sampler_free(s);
 *
 * Numbers: the schedule (betas, alphas_cumprod, sigmas, timesteps) is computed with the same
 * dtypes diffusers uses (numpy float64 / torch float32), and every per-element update is done in
 * float32 in the same operation order as diffusers' torch code, so results agree with diffusers
 * to float32 rounding (tests/test_sampler.c).
 *
 * Random numbers: the ancestral samplers (euler_a, dpm_2_a) draw their noise inside
 * sampler_step exactly as diffusers' randn_tensor(model_output.shape, generator) does on the CPU:
 * one torch.randn of the whole latent tensor (all `n` elements, the whole batch at once) per
 * draw, from the generator given. kohya passes no generator, so diffusers draws from torch's
 * global generator: give the same TorchGenerator that drew the start latents (and kohya's
 * unused pre-drawn noises, see sampler_kohya_noises_per_step). Other samplers never draw.
 *
 * Tensors are float32, contiguous, any shape (NCHW latents in practice); `n` is the element count
 * and must be the same in every call on one Sampler (history buffers are sized on first use). */
#ifndef SDTI_SAMPLE_SAMPLER_H
#define SDTI_SAMPLE_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"
#include "base/rng_torch.h"

typedef enum SamplerKind {
    SAMPLER_DDIM = 0,     /* "ddim": DDIMScheduler, eta 0 */
    SAMPLER_PNDM,         /* "pndm": PNDMScheduler (PRK warm-up, then PLMS) */
    SAMPLER_LMS,          /* "lms", "k_lms": LMSDiscreteScheduler (order 4) */
    SAMPLER_EULER,        /* "euler", "k_euler": EulerDiscreteScheduler */
    SAMPLER_EULER_A,      /* "euler_a", "k_euler_a": EulerAncestralDiscreteScheduler */
    SAMPLER_HEUN,         /* "heun": HeunDiscreteScheduler */
    SAMPLER_DPM_2,        /* "dpm_2", "k_dpm_2": KDPM2DiscreteScheduler */
    SAMPLER_DPM_2_A,      /* "dpm_2_a", "k_dpm_2_a": KDPM2AncestralDiscreteScheduler */
    SAMPLER_DPMSOLVER,    /* "dpmsolver": DPMSolverMultistepScheduler, algorithm_type "dpmsolver"
                           * (final_sigmas_type "sigma_min": diffusers refuses kohya's "zero" for
                           * this algorithm, so kohya itself cannot run it; see docs/sampling.md) */
    SAMPLER_DPMSOLVER_PP, /* "dpmsolver++": DPMSolverMultistepScheduler, "dpmsolver++" */
    SAMPLER_DPMSINGLE,    /* "dpmsingle": DPMSolverSinglestepScheduler (dpmsolver++, order 2) */
    SAMPLER_KIND_COUNT
} SamplerKind;

/* kohya's --sampler names, including the k_ aliases; case-sensitive as argparse choices are.
 * An unknown name fails with a message that lists every valid name. */
int sampler_kind_from_name(const char *name, SamplerKind *kind, Error *err);
/* The canonical (non k_) name: "ddim", "euler_a", "dpmsolver++", ... */
const char *sampler_kind_name(SamplerKind kind);
/* The diffusers class the kind re-implements: "EulerAncestralDiscreteScheduler", ... */
const char *sampler_kind_diffusers_class(SamplerKind kind);
/* All valid --sampler names, comma separated (for --help and error messages). */
const char *sampler_valid_names(void);
/* How many noises per step kohya's pipeline pre-draws (2 for dpm_2_a, else 1). kohya draws
 * steps * this many torch.randn(C, H/8, W/8) per image after the start latents and never uses
 * them (they only advance the generator; kohya-ti-facts.md section 7). */
int sampler_kohya_noises_per_step(SamplerKind kind);
/* Whether sampler_step draws random numbers (euler_a, dpm_2_a). */
bool sampler_kind_is_ancestral(SamplerKind kind);

typedef struct SamplerConfig {
    SamplerKind kind;
    int num_inference_steps; /* --steps, >= 1 (kohya clamps --s to 1..1000) */
    bool v_prediction;       /* prediction_type "v_prediction" instead of "epsilon" */
    int num_train_timesteps; /* 1000 */
    double beta_start;       /* 0.00085 */
    double beta_end;         /* 0.012 (scaled_linear: linspace of the square roots, squared) */
    int steps_offset;        /* 1 (kohya sets it; dpmsingle has none and ignores it) */
    bool clip_sample;        /* ddim, heun: clamp the predicted x0 to [-1, 1] (others ignore it) */
} SamplerConfig;

/* kohya's settings for `kind` and `steps`: 1000 / 0.00085 / 0.012 / steps_offset 1. */
void sampler_config_kohya(SamplerConfig *cfg, SamplerKind kind, int num_inference_steps,
                          bool v_prediction);
/* The scheduler kohya's training samples use (train_util.get_my_scheduler, assigned after the
 * pipeline is built, so no pipeline fixes it up): the same betas, every other setting the
 * diffusers class default: steps_offset 0 (ddim and pndm's "leading" timesteps, e.g. 666, 333,
 * 0 for 3 steps); clip_sample True for ddim (its default) and heun (kohya sets it where the config
 * has it False). */
void sampler_config_kohya_training(SamplerConfig *cfg, SamplerKind kind, int num_inference_steps,
                                   bool v_prediction);

typedef struct Sampler Sampler;

/* Builds the scheduler and runs set_timesteps(num_inference_steps). Fails on steps < 1 or
 * more steps than train timesteps, an unknown kind, or bad betas. */
int sampler_create(const SamplerConfig *cfg, Sampler **out, Error *err);
void sampler_free(Sampler *s);
/* Forgets the history (multistep buffers, second-order state) so the same schedule can run
 * on new latents, of any size: the state right after sampler_create. */
void sampler_reset(Sampler *s);

const SamplerConfig *sampler_config(const Sampler *s);
/* Number of model calls = len(scheduler.timesteps): steps for most, 2*steps-1 for heun / dpm_2
 * / dpm_2_a, steps+9 for pndm (its PRK warm-up: 17 calls for 8 steps). */
int sampler_num_model_calls(const Sampler *s);
/* scheduler.timesteps[i], the value the UNet's timestep embedding gets (fractional for the
 * sigma-interpolated timesteps of the Karras-style samplers, e.g. 851.75928 for dpm_2). */
float sampler_timestep(const Sampler *s, int i);
/* scheduler.init_noise_sigma: the start latents are randn * this. */
float sampler_init_noise_sigma(const Sampler *s);
/* Index of the "sampling step" that model call i belongs to (0..steps-1), for progress
 * display: heun's and dpm_2's second call of a step reports the same step. */
int sampler_step_of_call(const Sampler *s, int i);

/* out = scheduler.scale_model_input(x, timesteps[i]) over n elements (x == out allowed). Pure:
 * may be called any number of times for call i (e.g. once per CFG half). */
void sampler_scale_model_input(const Sampler *s, int i, const float *x, float *out, size_t n);
/* x = scheduler.step(model_output, timesteps[i], x).prev_sample, in place over n elements.
 * Calls must come in order i = 0, 1, ... (the history depends on it; call i out of order
 * fails). noise_rng: the generator for the ancestral samplers' noise (may be NULL for the
 * others; NULL for an ancestral sampler fails). Fails on out-of-order calls, n changing
 * between calls, or out of memory. */
int sampler_step(Sampler *s, int i, const float *model_output, float *x, size_t n,
                 TorchGenerator *noise_rng, Error *err);

#endif
