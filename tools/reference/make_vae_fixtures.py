"""Writes the VAE reference fixtures into tests/fixtures/vae/.

Run with the reference venv (offline):
    build/refvenv/bin/python tools/reference/make_vae_fixtures.py

For each tiny pipeline (tests/fixtures/models/{sd1-tiny,sd2-tiny}/diffusers, diffusers'
AutoencoderKL) and each image size (one square, one non-square, and 10x14 whose 5x7 latents
are odd, as SD's 520x712 images give 65x89 latents), batch 2, one file
<model>-<H>x<W>.safetensors with
  image      [2, 3, H, W]  uniform in [-1, 1]               (vae-encode input)
  mean       [2, 4, h, w]  latent_dist.mean                  (vae-encode output)
  logvar     [2, 4, h, w]  latent_dist.logvar (clamped to [-30, 20] by diffusers)
  noise      [2, 4, h, w]  standard normal
  sampled    [2, 4, h, w]  (mean + std * noise) * scaling_factor, the formula of
                           DiagonalGaussianDistribution.sample with that noise
  latents    [2, 4, h, w]  standard normal                   (vae-decode input)
  decoded    [2, 3, H, W]  vae.decode(latents).sample        (vae-decode output)
h, w = H / f, W / f where f = 2 ** (levels - 1) (the tiny VAE has 2 levels: f = 2).
The file doubles as an `sdti forward --inputs` file (extra tensors are ignored there).

Deterministic: fixed seeds, one thread, float32; re-running gives the same bytes (the metadata
holds one key, since safetensors writes a metadata dict in hash order).
"""

import hashlib
import os

import torch
import safetensors.torch
from diffusers import AutoencoderKL
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MODELS = os.path.join(ROOT, "tests", "fixtures", "models")
OUT = os.path.join(ROOT, "tests", "fixtures", "vae")

SIZES = [(32, 32), (32, 48), (10, 14)]
BATCH = 2


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    digest = hashlib.sha256()
    for mi, model in enumerate(["sd1-tiny", "sd2-tiny"]):
        vae = AutoencoderKL.from_pretrained(os.path.join(MODELS, model, "diffusers", "vae"))
        vae = vae.float().eval()
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        for si, (H, W) in enumerate(SIZES):
            g = torch.Generator().manual_seed(1000 + 10 * mi + si)
            h, w = H // factor, W // factor
            lc = vae.config.latent_channels
            image = torch.rand(BATCH, 3, H, W, generator=g) * 2 - 1
            noise = torch.randn(BATCH, lc, h, w, generator=g)
            latents = torch.randn(BATCH, lc, h, w, generator=g)
            with torch.no_grad():
                dist = vae.encode(image).latent_dist
                assert isinstance(dist, DiagonalGaussianDistribution)
                sampled = (dist.mean + dist.std * noise) * vae.config.scaling_factor
                decoded = vae.decode(latents).sample
            tensors = {"image": image, "mean": dist.mean, "logvar": dist.logvar, "noise": noise,
                       "sampled": sampled, "latents": latents, "decoded": decoded}
            tensors = {k: v.detach().contiguous().float() for k, v in tensors.items()}
            path = os.path.join(OUT, f"{model}-{H}x{W}.safetensors")
            safetensors.torch.save_file(tensors, path, metadata={"model": model})
            with open(path, "rb") as f:
                data = f.read()
            digest.update(data)
            print(f"{os.path.relpath(path, ROOT)}: {len(data)} bytes; "
                  f"mean max {tensors['mean'].abs().max():.3g}, "
                  f"logvar range [{tensors['logvar'].min():.3g}, {tensors['logvar'].max():.3g}], "
                  f"decoded max {tensors['decoded'].abs().max():.3g}")
    print("sha256 of all files:", digest.hexdigest())


if __name__ == "__main__":
    main()
