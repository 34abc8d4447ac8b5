"""Writes the fixtures of sdti's linear layer with half-precision weights into
tests/fixtures/nn/linear_half/ (read by tests/test_linear_typed.c).

Run with the reference venv:  build/refvenv/bin/python tools/reference/make_nn_linear_half_fixtures.py

One float32 weight is rounded by torch to float16 (.half()) and to bfloat16 (.bfloat16()); both
are stored in their own dtype, as sdti keeps model weights with --mixed_precision. Expected
values are torch's float64 results of the float32 inputs and the widened weights (autograd for
the input gradient), stored as float32. Two cases:
  small: rows 37, in 45, out 51 (odd sizes; the C test also slices the first rows), float16
         and bfloat16 weights, bias, accumulating input gradient onto dx_init;
  tall:  rows 4100, in 19, out 21, bfloat16 weight (the many-rows path); the accumulating
         gradient starts from x (same shape) to keep the files small.

Deterministic: fixed seed, one thread; re-running gives the same bytes.
"""

import math
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                   "tests", "fixtures", "nn", "linear_half"))
torch.set_num_threads(1)


def f32(t):
    return t.detach().to(torch.float32).contiguous()


def expected(x, w_half, b, dy, dx_init):
    """y with and without bias, dx and dx_init + dx, all float64 from the widened weight."""
    w = w_half.double()
    xd = x.double().requires_grad_(True)
    y = F.linear(xd, w, b.double())
    y.backward(dy.double())
    # torch's own float32 kernel on the same values agrees with the float64 reference
    ref32 = F.linear(x, w_half.float(), b)
    err = (ref32.double() - y).abs().max() / y.abs().max()
    if not err <= 1e-6:
        raise SystemExit(f"FAILED: torch float32 linear vs float64 reference {err:.3e}")
    return {
        "y": f32(y), "y_nobias": f32(F.linear(x.double(), w)), "dx": f32(xd.grad),
        "dx_accumulated": f32(dx_init.double() + xd.grad),
    }


def main():
    gen = torch.Generator().manual_seed(20261203)
    out = {}
    rows, fin, fout = 37, 45, 51
    x = torch.randn(rows, fin, generator=gen)
    w = torch.randn(fout, fin, generator=gen) / math.sqrt(fin)
    b = torch.randn(fout, generator=gen)
    dy = torch.randn(rows, fout, generator=gen)
    dx_init = torch.randn(rows, fin, generator=gen)
    out.update({"small.x": x, "small.b": b, "small.dy": dy, "small.dx_init": dx_init})
    for name, half in (("f16", w.half()), ("bf16", w.bfloat16())):
        out[f"small.w_{name}"] = half.contiguous()
        for key, value in expected(x, half, b, dy, dx_init).items():
            out[f"small.{name}.{key}"] = value

    rows, fin, fout = 4100, 19, 21
    x = torch.randn(rows, fin, generator=gen)
    w = (torch.randn(fout, fin, generator=gen) / math.sqrt(fin)).bfloat16()
    b = torch.randn(fout, generator=gen)
    dy = torch.randn(rows, fout, generator=gen)
    out.update({"tall.x": x, "tall.b": b, "tall.dy": dy, "tall.w_bf16": w.contiguous()})
    for key, value in expected(x, w, b, dy, x).items():
        if key != "y_nobias":
            out[f"tall.bf16.{key}"] = value

    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "linear_half.safetensors")
    save_file({k: v.contiguous() for k, v in out.items()}, path)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
