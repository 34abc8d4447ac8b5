"""UNet reference fixtures: diffusers' UNet2DConditionModel on the tiny SD1/SD2 pipelines.

For each model (tests/fixtures/models/{sd1,sd2}-tiny/diffusers/unet) and each latent size
(8x8 and the non-square 8x12, which halve evenly at the three levels; and 7x9, 5x6 and 1x3, which
do not: the downsample convs round up and diffusers passes each skip's size to the upsamplers,
which then interpolate to that size), batch 2, writes
tests/fixtures/unet/<model>-<h>x<w>.safetensors with
  inputs:  sample [2,4,h,w], timestep [2] int64, encoder_hidden_states [2,77,D],
           grad_output [2,4,h,w]
  outputs: out [2,4,h,w] (the UNet's sample), grad_encoder_hidden_states [2,77,D]
           (torch autograd of sum(out * grad_output), only encoder_hidden_states requiring
           grad).
The files double as `sdti forward --inputs` files. Deterministic: fixed seeds, one thread.

    build/refvenv/bin/python tools/reference/make_unet_fixtures.py
"""
import os

import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.join(ROOT, "tests", "fixtures", "models")
OUT = os.path.join(ROOT, "tests", "fixtures", "unet")
SIZES = [(8, 8), (8, 12), (7, 9), (5, 6), (1, 3)]
TOKENS = 77


def make(model_name, seed):
    unet = UNet2DConditionModel.from_pretrained(
        os.path.join(MODELS, model_name, "diffusers", "unet"), torch_dtype=torch.float32)
    unet.eval()
    for p in unet.parameters():
        p.requires_grad_(False)
    dim = unet.config.cross_attention_dim
    for h, w in SIZES:
        g = torch.Generator().manual_seed(seed * 100 + h * 10 + w)
        sample = torch.randn(2, 4, h, w, generator=g)
        timestep = torch.tensor([999, 17], dtype=torch.int64)
        enc = torch.randn(2, TOKENS, dim, generator=g)
        grad_out = torch.randn(2, 4, h, w, generator=g)
        enc_req = enc.clone().requires_grad_(True)
        out = unet(sample, timestep, encoder_hidden_states=enc_req).sample
        (out * grad_out).sum().backward()
        tensors = {
            "sample": sample.contiguous(),
            "timestep": timestep,
            "encoder_hidden_states": enc.contiguous(),
            "grad_output": grad_out.contiguous(),
            "out": out.detach().contiguous(),
            "grad_encoder_hidden_states": enc_req.grad.detach().contiguous(),
        }
        path = os.path.join(OUT, f"{model_name.replace('-tiny', '')}-{h}x{w}.safetensors")
        save_file(tensors, path)
        print(path, "out max", float(out.detach().abs().max()), "grad max",
              float(enc_req.grad.abs().max()))


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(OUT, exist_ok=True)
    make("sd1-tiny", 1)
    make("sd2-tiny", 2)


if __name__ == "__main__":
    main()
