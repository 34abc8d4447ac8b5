"""Writes the fixtures of sdti's convolution, normalisation and resampling kernels into
tests/fixtures/nn/conv/ (one float32 safetensors file per kernel family).

Run with the reference venv:  build/refvenv/bin/python tools/reference/make_nn_conv_fixtures.py

Every case is a small random problem at Stable Diffusion-like shapes (channel counts that are
and are not multiples of 16, batch 2, non-square images) computed by PyTorch on the CPU in
float32: the forward output and, for a fixed random upstream gradient dy, torch.autograd's
gradient with respect to the input. Tensor names are "<case>.<tensor>"; per-case parameters
(shapes, padding, groups, eps) are stored in the file's metadata key "cases" as one JSON
object {case name: parameters}, in case order.

  conv.safetensors        F.conv2d: x, w, b (optional), y, dy, dx
  norm.safetensors        F.group_norm / F.layer_norm: x, gamma, beta, y, dy, dx
  resample.safetensors    F.interpolate(nearest, 2x): x, y, dy, dx;
                          diffusers' get_timestep_embedding: t, emb

Deterministic: fixed seeds, one thread, safetensors' byte-stable writer.
"""

import json
import os

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import get_timestep_embedding
from safetensors.torch import save_file

OUT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                    "tests", "fixtures", "nn", "conv"))

# name, batch, in_ch, out_ch, h, w, kernel, stride, (top, left, bottom, right), bias
CONV_CASES = [
    ("k3_pad1_b2", 2, 8, 16, 12, 10, 3, 1, (1, 1, 1, 1), True),
    ("k3_pad1_c32_40", 1, 32, 40, 7, 9, 3, 1, (1, 1, 1, 1), True),
    ("k3_conv_in_c4", 1, 4, 32, 8, 6, 3, 1, (1, 1, 1, 1), True),
    ("k3_conv_out_c4", 2, 32, 4, 6, 8, 3, 1, (1, 1, 1, 1), True),
    ("k3_vae_in_c3", 1, 3, 16, 10, 12, 3, 1, (1, 1, 1, 1), True),
    ("k3_nobias", 1, 16, 16, 5, 7, 3, 1, (1, 1, 1, 1), False),
    ("k1_b2", 2, 48, 32, 9, 7, 1, 1, (0, 0, 0, 0), True),
    ("k1_nobias", 1, 16, 8, 6, 6, 1, 1, (0, 0, 0, 0), False),
    ("k3_s2_pad1_even", 2, 16, 16, 12, 10, 3, 2, (1, 1, 1, 1), True),
    ("k3_s2_pad1_odd", 1, 16, 32, 11, 9, 3, 2, (1, 1, 1, 1), True),
    # The VAE encoder's Downsample2D: F.pad(x, (0, 1, 0, 1)) then a 3x3 stride-2 conv, pad 0.
    ("k3_s2_vae_asym", 2, 16, 16, 12, 10, 3, 2, (0, 0, 1, 1), True),
    ("k3_s2_vae_asym_odd", 1, 8, 8, 9, 11, 3, 2, (0, 0, 1, 1), True),
    # 256x256: large enough for CONV2D_ALGO_AUTO to pick oneDNN's blocked kernels.
    ("k3_s2_vae_asym_256", 1, 1, 1, 256, 256, 3, 2, (0, 0, 1, 1), True),
]

# name, batch, channels, h, w, groups, eps, affine, input offset (a large mean tests the
# cancellation in the statistics)
GROUP_NORM_CASES = [
    ("gn_b2_g8_eps1e5", 2, 32, 6, 5, 8, 1e-5, True, 0.0),
    ("gn_g32_eps1e6", 1, 64, 4, 4, 32, 1e-6, True, 0.0),
    ("gn_g1", 2, 16, 3, 7, 1, 1e-5, True, 0.0),
    ("gn_offset", 1, 32, 8, 8, 8, 1e-6, True, 5.0),
    ("gn_noaffine", 1, 24, 5, 5, 4, 1e-5, False, 0.0),
]

# name, rows, dim, eps, affine
LAYER_NORM_CASES = [
    ("ln_rows14_d48", 14, 48, 1e-5, True),
    ("ln_rows3_d40", 3, 40, 1e-6, True),
    ("ln_noaffine", 5, 32, 1e-5, False),
]

# name, batch, channels, h, w
UPSAMPLE_CASES = [
    ("up_b2", 2, 3, 5, 4),
    ("up_1x1", 1, 4, 1, 1),
]

# name, timesteps, dim, flip_sin_to_cos, downscale_freq_shift
TIMESTEP_CASES = [
    ("ts_sd_int", [0, 1, 500, 999], 320, True, 0.0),
    ("ts_sd_float", [0.5, 999.0, 123.456, 981.25], 320, True, 0.0),
    ("ts_tiny", [999, 3], 32, True, 0.0),
    ("ts_noflip_shift1", [7, 640], 16, False, 1.0),
    ("ts_odd_dim", [42], 33, True, 0.0),
]


def randn(gen, *shape, scale=1.0):
    return torch.randn(*shape, generator=gen, dtype=torch.float32) * scale


def conv_cases(tensors, meta):
    for i, (name, b, ci, co, h, w, k, stride, pad, bias) in enumerate(CONV_CASES):
        gen = torch.Generator().manual_seed(1000 + i)
        x = randn(gen, b, ci, h, w).requires_grad_(True)
        wt = randn(gen, co, ci, k, k, scale=(ci * k * k) ** -0.5)
        bt = randn(gen, co, scale=0.1) if bias else None
        top, left, bottom, right = pad
        xp = F.pad(x, (left, right, top, bottom))
        y = F.conv2d(xp, wt, bt, stride=stride)
        dy = randn(gen, *y.shape)
        (dx,) = torch.autograd.grad(y, x, dy)
        tensors[f"{name}.x"] = x.detach()
        tensors[f"{name}.w"] = wt
        if bias:
            tensors[f"{name}.b"] = bt
        tensors[f"{name}.y"] = y.detach()
        tensors[f"{name}.dy"] = dy
        tensors[f"{name}.dx"] = dx
        meta[name] = json.dumps({"batch": b, "in_ch": ci, "out_ch": co, "in_h": h, "in_w": w,
                                 "kernel": k, "stride": stride, "pad": list(pad),
                                 "bias": bias})


def norm_cases(tensors, meta):
    for i, (name, b, c, h, w, groups, eps, affine, offset) in enumerate(GROUP_NORM_CASES):
        gen = torch.Generator().manual_seed(2000 + i)
        x = (randn(gen, b, c, h, w, scale=2.0) + offset).requires_grad_(True)
        gamma = 1.0 + randn(gen, c, scale=0.2) if affine else None
        beta = randn(gen, c, scale=0.2) if affine else None
        y = F.group_norm(x, groups, gamma, beta, eps)
        dy = randn(gen, *y.shape)
        (dx,) = torch.autograd.grad(y, x, dy)
        tensors[f"{name}.x"] = x.detach()
        if affine:
            tensors[f"{name}.gamma"] = gamma
            tensors[f"{name}.beta"] = beta
        tensors[f"{name}.y"] = y.detach()
        tensors[f"{name}.dy"] = dy
        tensors[f"{name}.dx"] = dx
        meta[name] = json.dumps({"batch": b, "channels": c, "spatial": h * w, "groups": groups,
                                 "eps": eps, "affine": affine})
    for i, (name, rows, dim, eps, affine) in enumerate(LAYER_NORM_CASES):
        gen = torch.Generator().manual_seed(3000 + i)
        x = (randn(gen, rows, dim, scale=1.5) + 0.5).requires_grad_(True)
        gamma = 1.0 + randn(gen, dim, scale=0.2) if affine else None
        beta = randn(gen, dim, scale=0.2) if affine else None
        y = F.layer_norm(x, (dim,), gamma, beta, eps)
        dy = randn(gen, *y.shape)
        (dx,) = torch.autograd.grad(y, x, dy)
        tensors[f"{name}.x"] = x.detach()
        if affine:
            tensors[f"{name}.gamma"] = gamma
            tensors[f"{name}.beta"] = beta
        tensors[f"{name}.y"] = y.detach()
        tensors[f"{name}.dy"] = dy
        tensors[f"{name}.dx"] = dx
        meta[name] = json.dumps({"rows": rows, "dim": dim, "eps": eps, "affine": affine})


def resample_cases(tensors, meta):
    for i, (name, b, c, h, w) in enumerate(UPSAMPLE_CASES):
        gen = torch.Generator().manual_seed(4000 + i)
        x = randn(gen, b, c, h, w).requires_grad_(True)
        y = F.interpolate(x, scale_factor=2.0, mode="nearest")
        dy = randn(gen, *y.shape)
        (dx,) = torch.autograd.grad(y, x, dy)
        tensors[f"{name}.x"] = x.detach()
        tensors[f"{name}.y"] = y.detach()
        tensors[f"{name}.dy"] = dy
        tensors[f"{name}.dx"] = dx
        meta[name] = json.dumps({"batch": b, "channels": c, "h": h, "w": w})
    for name, ts, dim, flip, shift in TIMESTEP_CASES:
        # Integer timesteps arrive as int64 in diffusers; the embedding casts them to float32
        # itself, so the fixture stores them already as float32 (exact below 2^24).
        t_in = torch.tensor(ts) if all(isinstance(v, int) for v in ts) else \
            torch.tensor(ts, dtype=torch.float32)
        emb = get_timestep_embedding(t_in, dim, flip_sin_to_cos=flip,
                                     downscale_freq_shift=shift)
        tensors[f"{name}.t"] = t_in.to(torch.float32)
        tensors[f"{name}.emb"] = emb.to(torch.float32)
        meta[name] = json.dumps({"batch": len(ts), "dim": dim, "flip_sin_to_cos": flip,
                                 "freq_shift": shift})


def write(fname, fill):
    tensors, meta = {}, {}
    fill(tensors, meta)
    path = os.path.join(OUT, fname)
    # One metadata key: safetensors' writer orders several keys differently from run to run.
    cases = "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in meta.items()) + "}"
    save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata={"cases": cases})
    print(f"{path}: {len(tensors)} tensors, {os.path.getsize(path)} bytes")


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    write("conv.safetensors", conv_cases)
    write("norm.safetensors", norm_cases)
    write("resample.safetensors", resample_cases)


if __name__ == "__main__":
    main()
