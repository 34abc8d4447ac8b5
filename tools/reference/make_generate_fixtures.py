"""Writes the `sdti generate` reference fixtures into tests/fixtures/generate/.

Run with the reference venv (offline):
    build/refvenv/bin/python tools/reference/make_generate_fixtures.py

What kohya's gen_img_diffusers.py does on a CPU, reproduced with diffusers' own pipeline:
for both tiny models (tests/fixtures/models/{sd1-tiny,sd2-tiny}/diffusers; sd2-tiny is
v-prediction, given as kohya's --v_parameterization), every sampler kohya offers, two image
sizes (32x32 and a non-square 48x32, W x H):

  * the scheduler is built as kohya builds it: the class with num_train_timesteps 1000,
    beta_start 0.00085, beta_end 0.012, beta_schedule "scaled_linear" (+ algorithm_type for
    dpmsolver / dpmsolver++, + prediction_type "v_prediction" for sd2-tiny), and handed to
    StableDiffusionPipeline, whose constructor applies steps_offset 1 / clip_sample False as
    kohya's pipeline does. "dpmsolver" also gets final_sigmas_type "sigma_min" (diffusers
    refuses kohya's default for that algorithm, so kohya cannot run it; sdti runs this);
  * the textual-inversion embedding gentok.safetensors (kohya format, 2 vectors, written here)
    is loaded with load_textual_inversion(token="gentok"), so "gentok" in the prompt becomes
    its two tokens as kohya's --textual_inversion_embeddings does;
  * random numbers as kohya draws them: g = torch.Generator("cpu").manual_seed(seed);
    start = randn((4, h, w), g); then steps * k more randn((4, h, w), g) that kohya draws and
    never uses (k = 2 for dpm_2_a, else 1); the pipeline gets latents=start and generator=g, so
    the ancestral samplers draw their noise from the same stream, as kohya's global generator;
  * pipe(prompt, negative_prompt, W, H, steps, guidance_scale 7.5, output_type="latent") gives
    the final latents; they are decoded as kohya decodes: vae.decode(latents * (1 / 0.18215)),
    (x / 2 + 0.5).clamp(0, 1), (x * 255) rounded half to even, uint8 -> <case>.png.

expected.safetensors holds, per case "<model>_<sampler>_<W>x<H>": "<case>/latents" [1, 4, h, w]
(and the case list in its metadata); "<model>_{euler_a,dpm_2_a}_batch2/latents" [2, 4, h, w]: a
batch of two prompts with their own negatives and seeds (kohya's per-image re-seeding of the one
global generator, whose state the ancestral noise then continues); per model "<model>/te_embedding" [1, 77, 8]: the text
encoder's output for the embedding prompt (diffusers' tokenizer + the loaded embedding), and
"<model>/te_weighted" [1, 154, 8]: kohya's get_weighted_text_embeddings for WEIGHTED_PROMPT with
max_embeddings_multiples 2 (written out here from its documented steps: pieces with weights,
each tokenized alone, BOS/EOS per 77-token chunk, chunks encoded separately and concatenated,
hidden states times weights then rescaled to the previous mean).

Deterministic: fixed seeds, one thread, float32.
"""

import json
import os

import numpy as np
import torch
import safetensors.torch
from PIL import Image
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
    StableDiffusionPipeline,
)

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MODELS = os.path.join(ROOT, "tests", "fixtures", "models")
OUT = os.path.join(ROOT, "tests", "fixtures", "generate")

STEPS = 4
SCALE = 7.5
PROMPT = "a photo of gentok on a beach"
NEGATIVE = "blurry, ugly"
SIZES = [(32, 32), (48, 32)]  # (W, H)
BATCH_PROMPTS = [PROMPT, "a house by the sea"]
BATCH_NEGATIVES = [NEGATIVE, ""]

# kohya's --sampler names -> (diffusers class, extra constructor arguments)
SAMPLERS = {
    "ddim": (DDIMScheduler, {}),
    "pndm": (PNDMScheduler, {}),
    "lms": (LMSDiscreteScheduler, {}),
    "euler": (EulerDiscreteScheduler, {}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
    "heun": (HeunDiscreteScheduler, {}),
    "dpm_2": (KDPM2DiscreteScheduler, {}),
    "dpm_2_a": (KDPM2AncestralDiscreteScheduler, {}),
    "dpmsolver": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver", "final_sigmas_type": "sigma_min"}),
    "dpmsolver++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}),
    "dpmsingle": (DPMSolverSinglestepScheduler, {}),
}

# A weighted prompt longer than 75 tokens. Its pieces as kohya's parse_prompt_attention gives
# them: "(photo:1.3)" -> 1.3, "[gentok]" -> 1 / 1.1, runs of weight 1 merged.
FILLER = ", ".join(["sand", "sea", "sky", "sun", "palm", "wave", "cloud", "shell"] * 5)
WEIGHTED_PROMPT = "a (photo:1.3) of [gentok] on a beach, " + FILLER
WEIGHTED_PIECES = [("a ", 1.0), ("photo", 1.3), (" of ", 1.0), ("gentok", 1 / 1.1), (" on a beach, " + FILLER, 1.0)]
MULTIPLES = 2


def write_embedding(path):
    g = torch.Generator("cpu").manual_seed(7)
    rows = torch.randn((2, 8), generator=g) * 0.5
    safetensors.torch.save_file({"emb_params": rows.contiguous()}, path, metadata={"format": "pt"})


def make_pipe(model, sampler):
    cls, extra = SAMPLERS[sampler]
    args = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    args.update(extra)
    if model == "sd2-tiny":
        args["prediction_type"] = "v_prediction"
    scheduler = cls(**args)
    path = os.path.join(MODELS, model, "diffusers")
    base = StableDiffusionPipeline.from_pretrained(path, safety_checker=None, requires_safety_checker=False)
    pipe = StableDiffusionPipeline(
        vae=base.vae,
        text_encoder=base.text_encoder,
        tokenizer=base.tokenizer,
        unet=base.unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.load_textual_inversion(os.path.join(OUT, "gentok.safetensors"), token="gentok")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def kohya_decode(pipe, latents):
    x = pipe.vae.decode(latents * (1 / 0.18215)).sample
    x = (x / 2 + 0.5).clamp(0, 1)
    x = x.permute(0, 2, 3, 1).float().numpy()
    return (x * 255).round().astype("uint8")


def encode_ids(pipe, ids):
    with torch.no_grad():
        return pipe.text_encoder(torch.tensor([ids]))[0]


def weighted_embedding(pipe):
    """kohya's get_weighted_text_embeddings (no_boseos_middle False) for WEIGHTED_PIECES."""
    tok = pipe.tokenizer
    tokens, weights = [], []
    for text, w in WEIGHTED_PIECES:
        text = pipe.maybe_convert_prompt(text, tok)  # gentok -> its two tokens
        ids = tok(text).input_ids[1:-1]
        tokens += ids
        weights += [w] * len(ids)
    assert 75 < len(tokens) <= 150, len(tokens)
    k = min(MULTIPLES, (len(tokens) - 1) // 75 + 1)
    bos, eos, pad = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
    row = [bos] + tokens + [eos] + [pad] * (75 * k - len(tokens))
    chunks, wrow = [], []
    for i in range(k):
        c = list(row[75 * i : 75 * i + 77])
        c[0] = bos
        if pad == eos:
            c[-1] = row[-1]
        else:
            if c[-1] != eos and c[-1] != pad:
                c[-1] = eos
            if c[1] == pad:
                c[1] = eos
        chunks.append(encode_ids(pipe, c))
        wrow += [1.0] + weights[75 * i : min(len(weights), 75 * (i + 1))] + [1.0]
    wrow += [1.0] * (77 * k - len(wrow))
    e = torch.cat(chunks, dim=1)
    w = torch.tensor([wrow], dtype=e.dtype)
    previous = e.float().mean(axis=[-2, -1])
    e = e * w.unsqueeze(-1)
    current = e.float().mean(axis=[-2, -1])
    e = e * (previous / current).unsqueeze(-1).unsqueeze(-1)
    return e


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    write_embedding(os.path.join(OUT, "gentok.safetensors"))
    tensors, cases = {}, []
    seed = 1000
    for model in ["sd1-tiny", "sd2-tiny"]:
        for sampler in SAMPLERS:
            pipe = make_pipe(model, sampler)
            for w, h in SIZES:
                seed += 1
                name = f"{model}_{sampler}_{w}x{h}"
                f = pipe.vae_scale_factor
                shape = (4, h // f, w // f)
                g = torch.Generator("cpu").manual_seed(seed)
                start = torch.randn(shape, generator=g)
                for _ in range(STEPS * (2 if sampler == "dpm_2_a" else 1)):
                    torch.randn(shape, generator=g)
                with torch.no_grad():
                    latents = pipe(
                        PROMPT,
                        negative_prompt=NEGATIVE,
                        height=h,
                        width=w,
                        num_inference_steps=STEPS,
                        guidance_scale=SCALE,
                        latents=start[None],
                        generator=g,
                        output_type="latent",
                    ).images
                    rgb = kohya_decode(pipe, latents)
                tensors[f"{name}/latents"] = latents.contiguous()
                Image.fromarray(rgb[0]).save(os.path.join(OUT, f"{name}.png"))
                cases.append({"name": name, "model": model, "sampler": sampler, "width": w, "height": h, "seed": seed})
                print(name, float(latents.abs().max()))
        # a batch of two images with their own prompts, negatives and seeds, as kohya batches
        # them: each image's seed re-seeds the one global generator before its start latents and
        # unused noises, and the ancestral noise then comes from where the last image left it
        for sampler in ["euler_a", "dpm_2_a"]:
            pipe = make_pipe(model, sampler)
            w, h = SIZES[1]
            f = pipe.vae_scale_factor
            shape = (4, h // f, w // f)
            seeds = [seed + 1, seed + 2]
            seed += 2
            g = torch.Generator("cpu")
            starts = []
            for s in seeds:
                g.manual_seed(s)
                starts.append(torch.randn(shape, generator=g))
                for _ in range(STEPS * (2 if sampler == "dpm_2_a" else 1)):
                    torch.randn(shape, generator=g)
            name = f"{model}_{sampler}_batch2"
            with torch.no_grad():
                latents = pipe(
                    BATCH_PROMPTS,
                    negative_prompt=BATCH_NEGATIVES,
                    height=h,
                    width=w,
                    num_inference_steps=STEPS,
                    guidance_scale=SCALE,
                    latents=torch.stack(starts),
                    generator=g,
                    output_type="latent",
                ).images
            tensors[f"{name}/latents"] = latents.contiguous()
            cases.append({"name": name, "model": model, "sampler": sampler, "width": w, "height": h, "seeds": seeds,
                          "prompts": BATCH_PROMPTS, "negatives": BATCH_NEGATIVES})
            print(name, float(latents.abs().max()))
        pipe = make_pipe(model, "euler")
        ids = pipe.tokenizer(pipe.maybe_convert_prompt(PROMPT, pipe.tokenizer), padding="max_length", max_length=77).input_ids
        tensors[f"{model}/te_embedding"] = encode_ids(pipe, ids).contiguous()
        tensors[f"{model}/te_weighted"] = weighted_embedding(pipe).contiguous()
    meta = {
        "cases": json.dumps(cases),
        "steps": str(STEPS),
        "scale": str(SCALE),
        "prompt": PROMPT,
        "negative_prompt": NEGATIVE,
        "weighted_prompt": WEIGHTED_PROMPT,
        "max_embeddings_multiples": str(MULTIPLES),
    }
    safetensors.torch.save_file(tensors, os.path.join(OUT, "expected.safetensors"), metadata=meta)


if __name__ == "__main__":
    main()
