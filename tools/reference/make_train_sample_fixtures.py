"""Writes the reference fixtures of kohya's own training samples into
tests/fixtures/train_sample_kohya/ (checked by tests/test_train_sample_kohya.c).

Run with the reference venv (offline):
    build/refvenv/bin/python tools/reference/make_train_sample_fixtures.py

kohya's train_util.sample_images (train_textual_inversion.py's --sample_prompts) on a CPU,
restated with diffusers' classes (kohya's library is not installed; the steps below are read
from library/train_util.py and library/lpw_stable_diffusion.py of kohya-ss/sd-scripts):

  * the scheduler is get_my_scheduler's: the diffusers class with num_train_timesteps 1000,
    beta_start 0.00085, beta_end 0.012, beta_schedule "scaled_linear" (+ algorithm_type for
    dpmsolver++, + prediction_type "v_prediction" for sd2-tiny, given as --v_parameterization),
    then `scheduler.config.clip_sample = True` where the config has clip_sample False (no class
    kohya offers has that: DDIM's default is already True). sample_image_inference assigns it to
    the pipeline after the pipeline is built, so nothing fixes up steps_offset: it stays the
    class default 0 (DDIM / PNDM "leading" timesteps 750, 500, 250, 0 for 4 steps). kohya's
    "dpmsolver" is left out: DPMSolverMultistepScheduler(algorithm_type="dpmsolver") raises in
    its constructor (final_sigmas_type "zero"), checked below;
  * the trained token: kstok.safetensors (kohya's TI format, "emb_params" [3, width], written
    here) is what the text encoder holds during training: tokens kstok, kstok1, kstok2 added to
    the tokenizer, the text encoder resized and the rows copied in; kohya's prompt_replacement
    turns "kstok" into "kstok kstok1 kstok2";
  * text as StableDiffusionLongPromptWeightingPipeline._encode_prompt with its defaults
    (max_embeddings_multiples 3, no_boseos_middle False, clip_skip None): negative_prompt None
    becomes ""; each prompt is parsed for weights (none here), tokenized without BOS/EOS, and the
    row is BOS + ids + EOS repeated to 77 (EOS padding, for SD2 too); the text encoder's last
    hidden state, times the weights (all 1) and rescaled to the previous mean;
    [uncond, cond] concatenated;
  * random numbers: torch.manual_seed(seed) (the global generator), then prepare_latents'
    torch.randn((1, 4, h, w)) (generator None) times init_noise_sigma, and nothing else before
    the loop; the ancestral samplers' step(generator=None) draws from the same global stream;
  * the loop: cat([latents] * 2), scale_model_input, UNet, uncond + scale * (cond - uncond),
    step(noise_pred, t, latents, eta=0.0 where it takes eta, generator=None);
  * decode: latents_to_image: vae.decode(1 / 0.18215 * latents), (x / 2 + 0.5).clamp(0, 1),
    numpy_to_pil's (x * 255).round().astype("uint8") -> <case>.png.

expected.safetensors holds "<case>/latents" [1, 4, h, w] and "<case>/timesteps" (the
scheduler's, what the UNet gets) per case "<model>_<sampler>", and the
case list (seeds, prompt, size, steps, scale) in its metadata. Deterministic: fixed seeds, one
thread, float32.
"""

import inspect
import json
import os

import numpy as np
import torch
import safetensors.torch
from PIL import Image
from diffusers import (
    AutoencoderKL,
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
    UNet2DConditionModel,
)
from transformers import CLIPTextModel, CLIPTokenizer

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MODELS = os.path.join(ROOT, "tests", "fixtures", "models")
OUT = os.path.join(ROOT, "tests", "fixtures", "train_sample_kohya")

TOKEN = "kstok"
N_VECTORS = 3
PROMPT = "a photo of kstok on a beach"
NEGATIVES = {"euler": "blurry, ugly"}  # one case with a --n; the others give none (None -> "")
WIDTH, HEIGHT = 48, 32
STEPS = 4
SCALE = 7.5

SAMPLERS = {
    "ddim": (DDIMScheduler, {}),
    "pndm": (PNDMScheduler, {}),
    "lms": (LMSDiscreteScheduler, {}),
    "euler": (EulerDiscreteScheduler, {}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
    "heun": (HeunDiscreteScheduler, {}),
    "dpm_2": (KDPM2DiscreteScheduler, {}),
    "dpm_2_a": (KDPM2AncestralDiscreteScheduler, {}),
    "dpmsolver++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}),
    "dpmsingle": (DPMSolverSinglestepScheduler, {}),
}


def kohya_training_scheduler(sampler, v_param):
    cls, extra = SAMPLERS[sampler]
    args = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    args.update(extra)
    if v_param:
        args["prediction_type"] = "v_prediction"
    s = cls(**args)
    if hasattr(s.config, "clip_sample") and s.config.clip_sample is False:
        s.config.clip_sample = True
    return s


def write_embedding(path, width):
    g = torch.Generator("cpu").manual_seed(11)
    rows = torch.randn((N_VECTORS, width), generator=g) * 0.5
    safetensors.torch.save_file({"emb_params": rows.contiguous()}, path, metadata={"format": "pt"})
    return rows


class Model:
    def __init__(self, name, rows):
        path = os.path.join(MODELS, name, "diffusers")
        self.tok = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer")
        self.te = CLIPTextModel.from_pretrained(path, subfolder="text_encoder")
        self.unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet")
        self.vae = AutoencoderKL.from_pretrained(path, subfolder="vae")
        # train_textual_inversion: add the tokens, resize, copy the rows in
        names = [TOKEN] + [f"{TOKEN}{i}" for i in range(1, N_VECTORS)]
        assert self.tok.add_tokens(names) == N_VECTORS
        self.ids = self.tok.convert_tokens_to_ids(names)
        self.te.resize_token_embeddings(len(self.tok))
        with torch.no_grad():
            for i, row in zip(self.ids, rows):
                self.te.get_input_embeddings().weight[i] = row
        self.scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)

    def encode(self, text):
        """lpw: one chunk (short prompts), weights all 1, EOS padding."""
        text = text.replace(TOKEN, " ".join([TOKEN] + [f"{TOKEN}{i}" for i in range(1, N_VECTORS)]))
        ids = self.tok(text).input_ids[1:-1]
        assert len(ids) <= 75
        if TOKEN in text:
            j = ids.index(self.ids[0])
            assert ids[j : j + N_VECTORS] == self.ids, ids
        row = [self.tok.bos_token_id] + ids + [self.tok.eos_token_id] * (77 - 1 - len(ids))
        with torch.no_grad():
            e = self.te(torch.tensor([row]))[0]
        w = torch.ones((1, 77), dtype=e.dtype)
        previous = e.float().mean(axis=[-2, -1]).to(e.dtype)
        e = e * w.unsqueeze(-1)
        current = e.float().mean(axis=[-2, -1]).to(e.dtype)
        return e * (previous / current).unsqueeze(-1).unsqueeze(-1)

    def sample(self, sampler, v_param, seed, negative):
        torch.manual_seed(seed)  # sample_image_inference
        sched = kohya_training_scheduler(sampler, v_param)
        te = torch.cat([self.encode(negative if negative is not None else ""), self.encode(PROMPT)])
        sched.set_timesteps(STEPS)
        shape = (1, self.unet.config.in_channels, HEIGHT // self.scale_factor, WIDTH // self.scale_factor)
        latents = torch.randn(shape) * sched.init_noise_sigma
        params = set(inspect.signature(sched.step).parameters.keys())
        extra = {}
        if "eta" in params:
            extra["eta"] = 0.0
        if "generator" in params:
            extra["generator"] = None
        with torch.no_grad():
            for t in sched.timesteps:
                x = sched.scale_model_input(torch.cat([latents] * 2), t)
                out = self.unet(x, t, encoder_hidden_states=te).sample
                u, c = out.chunk(2)
                latents = sched.step(u + SCALE * (c - u), t, latents, **extra).prev_sample
            img = self.vae.decode(1 / 0.18215 * latents).sample
        img = (img / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).float().numpy()
        return latents, (img * 255).round().astype("uint8"), [float(t) for t in sched.timesteps]


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    try:
        DPMSolverMultistepScheduler(algorithm_type="dpmsolver")
        raise SystemExit("kohya's dpmsolver is expected to raise")
    except ValueError:
        pass
    tensors, cases = {}, []
    seed = 2000
    rows = None
    for model in ["sd1-tiny", "sd2-tiny"]:
        v_param = model == "sd2-tiny"
        width = CLIPTextModel.from_pretrained(os.path.join(MODELS, model, "diffusers"), subfolder="text_encoder").config.hidden_size
        if rows is None:
            rows = write_embedding(os.path.join(OUT, f"{TOKEN}.safetensors"), width)
        assert rows.shape[1] == width
        m = Model(model, rows)
        for sampler in SAMPLERS:
            seed += 1
            name = f"{model}_{sampler}"
            negative = NEGATIVES.get(sampler)
            latents, rgb, ts = m.sample(sampler, v_param, seed, negative)
            tensors[f"{name}/latents"] = latents.contiguous()
            tensors[f"{name}/timesteps"] = torch.tensor(ts, dtype=torch.float32)
            Image.fromarray(rgb[0]).save(os.path.join(OUT, f"{name}.png"))
            cases.append({"name": name, "model": model, "sampler": sampler, "seed": seed,
                          "negative": negative, "v_parameterization": v_param})
            print(name, "timesteps", ts[:4], "max|latent|", float(latents.abs().max()))
    meta = {"cases": json.dumps(cases), "prompt": PROMPT, "width": str(WIDTH), "height": str(HEIGHT),
            "steps": str(STEPS), "scale": str(SCALE)}
    safetensors.torch.save_file(tensors, os.path.join(OUT, "expected.safetensors"), metadata=meta)


if __name__ == "__main__":
    main()
