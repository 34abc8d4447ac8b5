/* Shared by the sampler files: the Sampler struct, the schedule helpers that mirror numpy /
 * torch's float32 arithmetic, and each family's set-up and step.
 *
 * Arrays follow the diffusers scheduler's attributes of the same name, so the step code reads
 * like the class it mirrors: `sigmas` is scheduler.sigmas (already expanded for heun / dpm_2),
 * `timesteps` is scheduler.timesteps (as float; `int_timesteps` holds the int64 ones). */
#ifndef SDTI_SAMPLE_SAMPLER_INTERNAL_H
#define SDTI_SAMPLE_SAMPLER_INTERNAL_H

#include <stdint.h>

#include "sample/sampler.h"

/* Per-element history buffers a sampler may keep (PNDM needs the most: 2 + 4). */
#define SAMPLER_MAX_BUFFERS 6

struct Sampler {
    SamplerConfig cfg;

    /* The training schedule (float32 as diffusers keeps it). */
    int num_train;
    float *alphas_cumprod; /* [num_train] */
    float *train_sigmas;   /* [num_train] ((1 - acp) / acp) ** 0.5 */

    int num_calls;
    float *timesteps;       /* [num_calls] what the UNet gets */
    int64_t *int_timesteps; /* [num_calls] ddim / pndm / dpmsolver: the integer timesteps */
    float init_noise_sigma;

    /* ddim / pndm */
    float final_alpha_cumprod;
    int prk_calls; /* pndm: how many calls are Runge-Kutta warm-up (12), the rest PLMS */

    /* sigma-based samplers */
    int num_sigmas;
    float *sigmas;          /* scheduler.sigmas */
    float *sigmas_interpol; /* dpm_2 / dpm_2_a (expanded like sigmas) */
    float *sigmas_up;       /* dpm_2_a */
    float *sigmas_down;     /* dpm_2_a */
    int *order_list;        /* dpmsingle: order per step */

    /* run state */
    int next_call;
    size_t n;                        /* element count fixed by the first step */
    float *buf[SAMPLER_MAX_BUFFERS]; /* history, n floats each, allocated on first step */
    bool have[SAMPLER_MAX_BUFFERS];  /* whether buf[k] holds a value (None in diffusers) */
    float *noise;                    /* ancestral samplers: this step's torch.randn */
    int counter;                     /* pndm: steps taken */
    float stored_dt;                 /* heun: dt of the first-order half */
    int lower_order_nums;            /* dpmsolver multistep */
    int num_derivatives;             /* lms: how many of buf[0..3] hold derivatives */
};

/* torch.linspace(start, end, steps, dtype=float32) on the CPU. */
void sampler_torch_linspace_f32(double start, double end, int steps, float *out);
/* np.linspace(start, stop, num) in float64 (what numpy computes before any astype). */
void sampler_np_linspace(double start, double stop, int num, double *out);
/* np.interp(x, arange(len), fp) with fp float32, computed in float64 as numpy does. */
double sampler_np_interp_index(double x, const float *fp, int len);
/* diffusers' _sigma_to_t with numpy float32 log_sigmas: the (fractional) timestep of sigma. */
double sampler_sigma_to_t(float sigma, const float *log_sigmas, int len);

/* Family set-up: fill timesteps / sigmas / init_noise_sigma for cfg (schedule already built). */
int sampler_setup_ddim(Sampler *s, Error *err);
int sampler_setup_pndm(Sampler *s, Error *err);
int sampler_setup_karras(Sampler *s, Error *err);    /* lms, euler, euler_a, heun, dpm_2, dpm_2_a */
int sampler_setup_dpmsolver(Sampler *s, Error *err); /* dpmsolver, dpmsolver++, dpmsingle */

/* Family steps: x in/out over s->n elements; buffers are allocated. */
void sampler_step_ddim(Sampler *s, int i, const float *mo, float *x);
void sampler_step_pndm(Sampler *s, int i, const float *mo, float *x);
void sampler_step_lms(Sampler *s, int i, const float *mo, float *x);
void sampler_step_euler(Sampler *s, int i, const float *mo, float *x, const float *noise);
void sampler_step_heun(Sampler *s, int i, const float *mo, float *x);
void sampler_step_dpm2(Sampler *s, int i, const float *mo, float *x);
/* dpm_2_a: noise is only used on second-order calls (odd i). */
void sampler_step_dpm2a(Sampler *s, int i, const float *mo, float *x, const float *noise);
void sampler_step_dpmsolver(Sampler *s, int i, const float *mo, float *x);
void sampler_step_dpmsingle(Sampler *s, int i, const float *mo, float *x);

/* The sigma scale_model_input divides by for call i (sigma-based samplers). */
float sampler_karras_input_sigma(const Sampler *s, int i);

#endif
