"""Writes tests/fixtures/generate_sizes/: `sdti generate` at a size whose latents do not halve
evenly at every UNet level (kohya accepts any multiple of 8; diffusers then gives each
upsampler its skip connection's size).

Run with the reference venv (offline), after make_unet_fixtures.py and make_generate_fixtures.py:
    build/refvenv/bin/python tools/reference/make_generate_sizes_fixtures.py

The model is sd1-tiny's pipeline (text encoder, tokenizer, VAE with factor 2) with the
four-level UNet tests/fixtures/unet/levels4-unet.safetensors in place of its own; at 40x24
pixels its latents are 20x12, which round up to 10x6, 5x3, 3x2 and come back through three
upsamplers given the skips' sizes (3x2 -> 5x3 is not a doubling). Generation as
make_generate_fixtures.py does it (kohya's scheduler settings and noise draws, the gentok
embedding, prompt and negative prompt, 4 steps, scale 7.5), euler and euler_a:
  unet/config.json                the UNet's diffusers config (the test assembles the model
                                  folder from sd1-tiny and this)
  expected.safetensors            "<case>/latents" [1, 4, 12, 20]; metadata "cases": per case
                                  name, sampler, size, seed, prompt, negative prompt, steps,
                                  scale
  <case>.png                      kohya's decode of those latents
Deterministic: fixed seeds, one thread, float32.
"""

import json
import os
import sys

import torch
import safetensors.torch
from PIL import Image
from diffusers import UNet2DConditionModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_generate_fixtures as gen  # noqa: E402
import make_unet_fixtures as unet_fx  # noqa: E402

OUT = os.path.join(gen.ROOT, "tests", "fixtures", "generate_sizes")
WIDTH, HEIGHT = 40, 24
SAMPLERS = ["euler", "euler_a"]


def levels4_unet():
    path = os.path.join(gen.MODELS, "sd1-tiny", "diffusers", "unet")
    cfg = {k: v for k, v in UNet2DConditionModel.load_config(path).items() if not k.startswith("_")}
    cfg.update(unet_fx.LEVELS4)
    unet = UNet2DConditionModel(**cfg)
    weights = safetensors.torch.load_file(os.path.join(unet_fx.OUT, "levels4-unet.safetensors"))
    unet.load_state_dict(weights, strict=True)
    return unet.eval()


def main():
    torch.set_num_threads(1)
    os.makedirs(os.path.join(OUT, "unet"), exist_ok=True)
    unet = levels4_unet()
    unet.save_config(os.path.join(OUT, "unet"))
    tensors, cases = {}, []
    seed = 5000
    for sampler in SAMPLERS:
        pipe = gen.make_pipe("sd1-tiny", sampler)
        pipe.unet = unet
        seed += 1
        name = f"levels4_{sampler}_{WIDTH}x{HEIGHT}"
        f = pipe.vae_scale_factor
        shape = (4, HEIGHT // f, WIDTH // f)
        g = torch.Generator("cpu").manual_seed(seed)
        start = torch.randn(shape, generator=g)
        for _ in range(gen.STEPS):
            torch.randn(shape, generator=g)
        with torch.no_grad():
            latents = pipe(gen.PROMPT, negative_prompt=gen.NEGATIVE, height=HEIGHT, width=WIDTH,
                           num_inference_steps=gen.STEPS, guidance_scale=gen.SCALE,
                           latents=start[None], generator=g, output_type="latent").images
            rgb = gen.kohya_decode(pipe, latents)
        tensors[f"{name}/latents"] = latents.contiguous()
        Image.fromarray(rgb[0]).save(os.path.join(OUT, f"{name}.png"))
        cases.append({"name": name, "sampler": sampler, "width": WIDTH, "height": HEIGHT, "seed": seed,
                      "prompt": gen.PROMPT, "negative_prompt": gen.NEGATIVE, "steps": gen.STEPS,
                      "scale": gen.SCALE})
        print(name, float(latents.abs().max()))
    # one metadata key: safetensors writes a dict of several in hash order (bytes would vary)
    meta = {"cases": json.dumps(cases)}
    safetensors.torch.save_file(tensors, os.path.join(OUT, "expected.safetensors"), metadata=meta)


if __name__ == "__main__":
    main()
