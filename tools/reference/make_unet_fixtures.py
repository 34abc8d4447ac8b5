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
The files double as `sdti forward --inputs` files.

SD's own UNet has four levels (three upsamplers), so kohya's multiple-of-8 image sizes give
latents such as 65x89 that round up three times (33x45, 17x23, 9x12) and come back through
three size-given upsamplers. levels4-unet.safetensors is a four-level UNet of sd1-tiny's kind
(block_out_channels 8, 8, 16, 16, one layer per block, cross-attention on the first three
levels, random weights) and levels4-65x89.safetensors the same six tensors for it at 65x89
(batch 2) with sd1-tiny's context width.

Deterministic: fixed seeds, one thread.

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


LEVELS4 = {"block_out_channels": [8, 8, 16, 16], "layers_per_block": 1,
           "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
           "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3}


def make_levels4():
    path = os.path.join(MODELS, "sd1-tiny", "diffusers", "unet")
    cfg = {k: v for k, v in UNet2DConditionModel.load_config(path).items() if not k.startswith("_")}
    cfg.update(LEVELS4)
    torch.manual_seed(4)
    unet = UNet2DConditionModel(**cfg).eval()
    with torch.no_grad():
        for p in unet.parameters():  # diffusers' init leaves biases and norms trivial
            p.add_(torch.randn_like(p) * 0.05)
            p.requires_grad_(False)
    save_file({k: v.contiguous() for k, v in unet.state_dict().items()},
              os.path.join(OUT, "levels4-unet.safetensors"))
    h, w = 65, 89
    g = torch.Generator().manual_seed(6589)
    sample = torch.randn(2, 4, h, w, generator=g)
    timestep = torch.tensor([999, 17], dtype=torch.int64)
    enc = torch.randn(2, TOKENS, cfg["cross_attention_dim"], generator=g)
    grad_out = torch.randn(2, 4, h, w, generator=g)
    enc_req = enc.clone().requires_grad_(True)
    out = unet(sample, timestep, encoder_hidden_states=enc_req).sample
    (out * grad_out).sum().backward()
    save_file({"sample": sample, "timestep": timestep, "encoder_hidden_states": enc,
               "grad_output": grad_out, "out": out.detach().contiguous(),
               "grad_encoder_hidden_states": enc_req.grad.detach().contiguous()},
              os.path.join(OUT, f"levels4-{h}x{w}.safetensors"))
    print("levels4", h, w, "out max", float(out.detach().abs().max()), "grad max",
          float(enc_req.grad.abs().max()))


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(OUT, exist_ok=True)
    make("sd1-tiny", 1)
    make("sd2-tiny", 2)
    make_levels4()


if __name__ == "__main__":
    main()
