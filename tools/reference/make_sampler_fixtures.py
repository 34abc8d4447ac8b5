"""Reference runs of every gen_img_diffusers sampler for tests/test_sampler.c.

For each kohya --sampler name (without the k_ aliases, which build the same scheduler), both
prediction types and two step counts, this builds the diffusers scheduler with kohya's settings
(num_train_timesteps 1000, beta_start 0.00085, beta_end 0.012, "scaled_linear", steps_offset 1
where kohya sets it, clip_sample False, algorithm_type for the DPM-Solver variants) and runs
diffusers' denoising loop with a stand-in model that C can compute from the fixture:

    model_output = scaled_input * 0.9 + c * (t * 0.0005)      (c: a fixed tensor, t: timestep)

Start latents and ancestral noise come from one torch.Generator("cpu") seeded per case, as
kohya's global generator feeds both. Written: tests/fixtures/sampler/sampler.safetensors with,
per case, the timesteps, init_noise_sigma, every scaled model input and the latents after every
step (for the extra step counts only the final latents); the case list, shape, constants and
torch's randn kernel in the safetensors metadata.

"dpmsolver": diffusers refuses kohya's settings for it (final_sigmas_type "zero" is rejected
for algorithm_type "dpmsolver"), so the reference uses final_sigmas_type "sigma_min", as sdti.
"""

import inspect
import json
import os
import sys

import numpy as np
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    DPMSolverSinglestepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    KDPM2AncestralDiscreteScheduler,
    KDPM2DiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
)
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "sampler")
SHAPE = (2, 4, 5, 7)  # 280 elements: batch 2, and not a multiple of 16 (randn's tail path)
STEPS = (4, 7)
# Extra step counts checked on the final latents only (1 step, and 20 steps, past the 15 where
# DPM-Solver stops lowering the final order); pndm needs at least 4 steps.
EXTRA_STEPS = (1, 2, 20)
MODEL_A = 0.9
MODEL_B = 0.0005

# kohya's sampler table (gen_img_diffusers / prepare_scheduler_runtime): class, extra kwargs,
# whether kohya passes steps_offset=1.
SAMPLERS = [
    ("ddim", DDIMScheduler, {"clip_sample": False}, True),
    ("pndm", PNDMScheduler, {}, True),
    ("lms", LMSDiscreteScheduler, {}, True),
    ("euler", EulerDiscreteScheduler, {}, True),
    ("euler_a", EulerAncestralDiscreteScheduler, {}, True),
    ("heun", HeunDiscreteScheduler, {}, True),
    ("dpm_2", KDPM2DiscreteScheduler, {}, True),
    ("dpm_2_a", KDPM2AncestralDiscreteScheduler, {}, True),
    ("dpmsolver", DPMSolverMultistepScheduler,
     {"algorithm_type": "dpmsolver", "final_sigmas_type": "sigma_min"}, True),
    ("dpmsolver++", DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}, True),
    ("dpmsingle", DPMSolverSinglestepScheduler, {}, False),
]


def make_scheduler(cls, extra, offset, v_pred):
    kwargs = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                  beta_schedule="scaled_linear", **extra)
    if offset:
        kwargs["steps_offset"] = 1
    if v_pred:
        kwargs["prediction_type"] = "v_prediction"
    return cls(**kwargs)


def run_case(cls, extra, offset, v_pred, steps, seed, c):
    sched = make_scheduler(cls, extra, offset, v_pred)
    sched.set_timesteps(steps)
    gen = torch.Generator("cpu").manual_seed(seed)
    init_sigma = sched.init_noise_sigma
    x = torch.randn(SHAPE, generator=gen, dtype=torch.float32) * init_sigma
    params = set(inspect.signature(sched.step).parameters)
    step_kwargs = {}
    if "eta" in params:
        step_kwargs["eta"] = 0.0  # kohya's pipeline default
    if "generator" in params:
        step_kwargs["generator"] = gen
    scaled, latents = [], []
    for t in sched.timesteps:
        x_in = sched.scale_model_input(x, t)
        model_output = x_in * MODEL_A + c * (float(t) * MODEL_B)
        x = sched.step(model_output, t, x, **step_kwargs).prev_sample
        scaled.append(x_in.clone())
        latents.append(x.clone())
    return {
        "timesteps": sched.timesteps.to(torch.float32).clone(),
        "init_noise_sigma": torch.tensor([float(init_sigma)], dtype=torch.float32),
        "scaled": torch.stack(scaled).reshape(len(scaled), -1).contiguous(),
        "latents": torch.stack(latents).reshape(len(latents), -1).contiguous(),
    }


def main():
    os.makedirs(OUT, exist_ok=True)
    c = torch.randn(SHAPE, generator=torch.Generator("cpu").manual_seed(1234))
    tensors = {"model.c": c.reshape(-1).contiguous()}
    cases = []
    seed = 100
    for name, cls, extra, offset in SAMPLERS:
        for v_pred in (False, True):
            for steps in STEPS:
                seed += 1
                case = f"{name}.{'v' if v_pred else 'eps'}.{steps}"
                out = run_case(cls, extra, offset, v_pred, steps, seed, c)
                for key, value in out.items():
                    tensors[f"{case}.{key}"] = value
                cases.append({"case": case, "sampler": name, "v_prediction": v_pred,
                              "steps": steps, "seed": seed,
                              "calls": int(out["timesteps"].numel())})
    for name, cls, extra, offset in SAMPLERS:
        for v_pred in (False, True):
            for steps in EXTRA_STEPS:
                if name == "pndm" and steps < 4:
                    continue
                seed += 1
                case = f"{name}.{'v' if v_pred else 'eps'}.{steps}"
                out = run_case(cls, extra, offset, v_pred, steps, seed, c)
                tensors[f"{case}.timesteps"] = out["timesteps"]
                tensors[f"{case}.init_noise_sigma"] = out["init_noise_sigma"]
                tensors[f"{case}.final"] = out["latents"][-1].clone()
                cases.append({"case": case, "sampler": name, "v_prediction": v_pred,
                              "steps": steps, "seed": seed, "final_only": True,
                              "calls": int(out["timesteps"].numel())})
    meta = {
        "cases": json.dumps(cases),
        "shape": json.dumps(list(SHAPE)),
        "model_a": repr(MODEL_A),
        "model_b": repr(MODEL_B),
        "randn_kernel": torch.backends.cpu.get_cpu_capability().lower(),
        "versions": f"torch {torch.__version__}, diffusers "
                    f"{sys.modules['diffusers'].__version__}, numpy {np.__version__}",
    }
    path = os.path.join(OUT, "sampler.safetensors")
    save_file(tensors, path, metadata=meta)
    print(f"wrote {path}: {len(cases)} cases, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
