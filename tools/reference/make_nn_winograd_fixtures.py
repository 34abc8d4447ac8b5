"""Writes tests/fixtures/nn/winograd/winograd.safetensors: 3x3 stride-1 pad-1 convolutions for
sdti's own Winograd F(4x4, 3x3) kernel (src/nn/conv2d_winograd.c), with the weights stored
as float32, float16 or bfloat16 as the models keep them.

Run with the reference venv:  build/refvenv/bin/python tools/reference/make_nn_winograd_fixtures.py

Per case: x, w (in its storage dtype), b (optional, float32), y = F.conv2d(x, float(w), b,
padding=1), dy, and dx = torch.autograd's input gradient, cross-checked against
F.conv_transpose2d(dy, float(w), padding=1). The references are computed in float64 from the
stored (rounded) weights and written as float32, so they carry no rounding of their own
beyond the final one. Shapes: odd and non-square sizes (partial 4x4 tiles), 1x1 and 2x7
images, batch 2, channel counts that are not multiples of 16. Parameters in the metadata key
"cases" as in make_nn_conv_fixtures.py.

Deterministic: fixed seeds, one thread, safetensors' byte-stable writer.
"""

import json
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                    "tests", "fixtures", "nn", "winograd"))

DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}

# name, batch, in_ch, out_ch, h, w, weight dtype, bias
CASES = [
    ("b2_odd_f32", 2, 24, 40, 13, 9, "f32", True),
    ("b1_c48_bf16", 1, 48, 32, 17, 18, "bf16", True),
    ("b2_c32_f16", 2, 32, 24, 11, 15, "f16", False),
    ("b2_c35_bf16", 2, 35, 19, 9, 10, "bf16", True),
    ("b1_1x1_f32", 1, 16, 16, 1, 1, "f32", True),
    ("b2_2x7_bf16", 2, 8, 16, 2, 7, "bf16", False),
    ("b1_c64_f32", 1, 64, 64, 16, 12, "f32", True),
]


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    tensors, meta = {}, {}
    for i, (name, b, ci, co, h, w, wdt, bias) in enumerate(CASES):
        gen = torch.Generator().manual_seed(5000 + i)
        x = torch.randn(b, ci, h, w, generator=gen, dtype=torch.float32)
        wt = (torch.randn(co, ci, 3, 3, generator=gen, dtype=torch.float32) *
              (ci * 9) ** -0.5).to(DTYPES[wdt])
        bt = torch.randn(co, generator=gen, dtype=torch.float32) * 0.1 if bias else None
        dy = torch.randn(b, co, h, w, generator=gen, dtype=torch.float32)
        w64 = wt.to(torch.float64)
        x64 = x.to(torch.float64).requires_grad_(True)
        y = F.conv2d(x64, w64, bt.to(torch.float64) if bias else None, padding=1)
        (dx,) = torch.autograd.grad(y, x64, dy.to(torch.float64))
        dx_t = F.conv_transpose2d(dy.to(torch.float64), w64, padding=1)
        assert torch.allclose(dx, dx_t, rtol=1e-12, atol=1e-12), name
        tensors[f"{name}.x"] = x
        tensors[f"{name}.w"] = wt
        if bias:
            tensors[f"{name}.b"] = bt
        tensors[f"{name}.y"] = y.detach().to(torch.float32)
        tensors[f"{name}.dy"] = dy
        tensors[f"{name}.dx"] = dx.to(torch.float32)
        meta[name] = json.dumps({"batch": b, "in_ch": ci, "out_ch": co, "in_h": h, "in_w": w,
                                 "bias": bias})
    path = os.path.join(OUT, "winograd.safetensors")
    cases = "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in meta.items()) + "}"
    save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata={"cases": cases})
    print(f"{path}: {len(tensors)} tensors, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
