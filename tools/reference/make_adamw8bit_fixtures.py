"""Writes the fixtures of sdti's AdamW8bit into tests/fixtures/adamw8bit/.

Run with the reference venv:  build/refvenv/bin/python tools/reference/make_adamw8bit_fixtures.py

bitsandbytes' AdamW8bit (bnb.optim.AdamW8bit, as kohya's get_optimizer creates it:
`AdamW8bit(params, lr=lr, **optimizer_args)`) run on the CPU by bitsandbytes itself (its CPU
backend: blockwise dequantize, the Adam update in float32 torch ops, blockwise quantize with
its C quantizer; 32-bit state for tensors below min_8bit_size). Written:
  - qmap.signed / qmap.unsigned: create_dynamic_map(signed=True/False), the maps of m and v;
  - quant.*: quantize_blockwise (block size 256) of values spanning 9 decades, signed and
    unsigned maps, with a partial last block and an all-zero block, and the dequantized values;
  - case.<name>.*: five steps on given gradients and learning rates: the parameter, the state
    bytes (state1/state2, uint8), absmax1/absmax2 (or the float32 state) after every step.
    "rows" is kohya's TI case: a [67, 768] embedding matrix (8-bit state, it has >= 4096
    elements) where only the last 3 rows are trained and the other rows are restored after
    every step as kohya does; the fixture keeps the last 3 rows and their 9 blocks of state.

Output: adamw8bit.safetensors and adamw8bit.json. Deterministic: fixed seeds, no clock.
"""

import json
import os

import bitsandbytes as bnb
import bitsandbytes.functional as F
import torch
from safetensors.torch import save_file

OUT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                   "tests", "fixtures", "adamw8bit"))
BLOCK = 256
STEPS = 5

tensors = {}
info = {"versions": {"torch": torch.__version__.split("+")[0], "bitsandbytes": bnb.__version__},
        "block_size": BLOCK, "cases": []}

gen = torch.Generator().manual_seed(8)


def wide_randn(*shape):
    """Normal values whose rows span 9 decades of magnitude (what small state values look like)."""
    x = torch.randn(*shape, generator=gen)
    scale = 10.0 ** (-9.0 * torch.rand(*shape[:-1], 1, generator=gen))
    return (x * scale).contiguous()


# --- the maps and the quantizer ---------------------------------------------------------------
signed = F.create_dynamic_map(signed=True)
unsigned = F.create_dynamic_map(signed=False)
tensors["qmap.signed"] = signed
tensors["qmap.unsigned"] = unsigned

n = 40 * BLOCK + 100
a = wide_randn(n // 4, 4).reshape(-1)[:n].clone()
a[3 * BLOCK:4 * BLOCK] = 0.0  # an all-zero block
a[5 * BLOCK + 7] = 3.5        # a block whose absmax is one outlier
for name, values, code in (("signed", a, signed), ("unsigned", a.abs(), unsigned)):
    q, qs = F.quantize_blockwise(values, code=code, blocksize=BLOCK)
    back = F.dequantize_blockwise(q, qs)
    tensors[f"quant.{name}.input"] = values.clone()
    tensors[f"quant.{name}.out"] = q.clone()
    tensors[f"quant.{name}.absmax"] = qs.absmax.clone()
    tensors[f"quant.{name}.dequant"] = back.clone()


# --- optimizer trajectories -------------------------------------------------------------------
def run_case(name, shape, kwargs, trained_rows=None, lrs=(1e-3, 2e-3, 5e-3, 5e-3, 1e-3)):
    """STEPS optimizer steps of bnb.optim.AdamW8bit(params, lr, **kwargs) on `shape`. With
    trained_rows, only the last rows are kept (kohya's restore of the other rows)."""
    p0 = torch.randn(*shape, generator=gen) * 0.1
    p = torch.nn.Parameter(p0.clone())
    opt = bnb.optim.AdamW8bit([p], lr=lrs[0], **kwargs)
    keep = slice(None) if trained_rows is None else slice(shape[0] - trained_rows, None)
    orig = p0.clone()
    grads, params, s1, s2, m1, m2 = [], [], [], [], [], []
    for k in range(STEPS):
        g = wide_randn(*shape) if k % 2 else torch.randn(*shape, generator=gen) * 1e-2
        if len(shape) == 2:
            g[shape[0] // 3] = 0.0  # a row no caption used this step
        for group in opt.param_groups:
            group["lr"] = lrs[k]
        p.grad = g.clone()
        opt.step()
        if trained_rows is not None:
            with torch.no_grad():
                p[:shape[0] - trained_rows] = orig[:shape[0] - trained_rows]
        st = opt.state[p]
        grads.append(g[keep].clone())
        params.append(p.detach()[keep].clone())
        if st["state1"].dtype == torch.uint8:
            first_block = 0 if trained_rows is None else \
                (shape[0] - trained_rows) * shape[1] // BLOCK
            s1.append(st["state1"][keep].clone())
            s2.append(st["state2"][keep].clone())
            m1.append(st["absmax1"][first_block:].clone())
            m2.append(st["absmax2"][first_block:].clone())
        else:
            s1.append(st["state1"][keep].clone())
            s2.append(st["state2"][keep].clone())
    eight = opt.state[p]["state1"].dtype == torch.uint8
    pre = f"case.{name}."
    tensors[pre + "param0"] = p0[keep].clone()
    tensors[pre + "grads"] = torch.stack(grads)
    tensors[pre + "lrs"] = torch.tensor(lrs, dtype=torch.float64)
    tensors[pre + "params"] = torch.stack(params)
    tensors[pre + "state1"] = torch.stack(s1)
    tensors[pre + "state2"] = torch.stack(s2)
    if eight:
        tensors[pre + "absmax1"] = torch.stack(m1)
        tensors[pre + "absmax2"] = torch.stack(m2)
    args = [f"{k}={v!r}" for k, v in kwargs.items()]
    info["cases"].append({"name": name, "shape": list(p0[keep].shape), "whole_numel": p0.numel(),
                          "optimizer_args": args, "state_8bit": eight, "steps": STEPS})


run_case("rows", (67, 768), {}, trained_rows=3)
run_case("small32", (2, 768), {})
run_case("args", (8, 768), {"betas": (0.8, 0.95), "eps": 1e-6, "weight_decay": 0.1})
run_case("flat", (5000,), {"weight_decay": 0.0})
run_case("min8", (2, 768), {"min_8bit_size": 1024})
run_case("small32_args", (3, 40), {"betas": (0.85, 0.99), "weight_decay": 0.05})

os.makedirs(OUT, exist_ok=True)
save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(OUT, "adamw8bit.safetensors"))
with open(os.path.join(OUT, "adamw8bit.json"), "w") as fh:
    json.dump(info, fh, indent=1)
    fh.write("\n")
print("wrote", OUT)
