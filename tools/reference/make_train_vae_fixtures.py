"""Writes the fixtures of `sdti train --vae` (kohya's separate VAE) into tests/fixtures/train_vae/.

Run with the reference venv (offline):
    build/refvenv/bin/python tools/reference/make_train_vae_fixtures.py

A VAE of the sd1-tiny shapes with other weights (sd1-tiny's VAE plus seeded noise of 0.2 x each
tensor's std, rounded to fp16 so every layout holds the same values), written in the layouts
kohya's model_util.load_vae reads:
  vae-diffusers/                a diffusers AutoencoderKL folder (save_pretrained, fp16)
  vae-ldm.safetensors           a VAE-only LDM state dict (no first_stage_model. prefix, the
                                mid-block attention as linear [C, C] weights), fp16
  vae-full.ckpt                 {"state_dict": {first_stage_model.*}} (attention as [C, C, 1, 1]
                                convolutions, as the original SD1 checkpoints), fp16
  notvae.safetensors            a file without VAE weights (one unrelated tensor)
and expected.safetensors: diffusers AutoencoderKL (that folder, in float32) on a fixed image:
  image [1, 3, 32, 32] in [-1, 1], mean and logvar of vae.encode(image).latent_dist.

Deterministic: fixed seeds, one thread; torch.save's random id is zeroed (ldm_convert).
"""

import os
import shutil

import safetensors.torch
import torch
from diffusers import AutoencoderKL

import ldm_convert

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SRC = os.path.join(ROOT, "tests", "fixtures", "models", "sd1-tiny", "diffusers", "vae")
OUT = os.path.join(ROOT, "tests", "fixtures", "train_vae")


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    vae = AutoencoderKL.from_pretrained(SRC).float().eval()
    g = torch.Generator().manual_seed(6060)
    with torch.no_grad():
        for name, p in sorted(vae.named_parameters()):
            noise = torch.randn(p.shape, generator=g)
            scale = p.std() if p.numel() > 1 else p.abs() + 0.1
            p.copy_((p + 0.2 * scale * noise).half().float())
    folder = os.path.join(OUT, "vae-diffusers")
    shutil.rmtree(folder, ignore_errors=True)
    vae.half().save_pretrained(folder, safe_serialization=True)
    vae.float()

    sd = {k: v.detach().clone() for k, v in vae.state_dict().items()}
    levels = len(vae.config.block_out_channels)
    prefix = ldm_convert.VAE_PREFIX
    plain = {k[len(prefix):]: v for k, v in ldm_convert.vae_to_ldm(sd, levels, False).items()}
    safetensors.torch.save_file(ldm_convert.half(plain), os.path.join(OUT, "vae-ldm.safetensors"))
    full = ldm_convert.half(ldm_convert.vae_to_ldm(sd, levels, True))
    ldm_convert.torch_save_file({"state_dict": full}, os.path.join(OUT, "vae-full.ckpt"))
    safetensors.torch.save_file({"text_model.final_layer_norm.weight": torch.ones(8)},
                                os.path.join(OUT, "notvae.safetensors"))

    gi = torch.Generator().manual_seed(6061)
    image = torch.rand(1, 3, 32, 32, generator=gi) * 2 - 1
    with torch.no_grad():
        dist = vae.encode(image).latent_dist
    safetensors.torch.save_file(
        {"image": image, "mean": dist.mean.contiguous(), "logvar": dist.logvar.contiguous()},
        os.path.join(OUT, "expected.safetensors"),
        metadata={"script": "make_train_vae_fixtures.py"},
    )
    print("wrote", OUT)


if __name__ == "__main__":
    main()
