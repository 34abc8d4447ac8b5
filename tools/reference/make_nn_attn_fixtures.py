"""Writes the fixtures of sdti's linear, activation and attention kernels into
tests/fixtures/nn/attn/ (read by tests/test_nn_linear.c, test_nn_activation.c,
test_nn_attention.c).

Run with the reference venv:  build/refvenv/bin/python tools/reference/make_nn_attn_fixtures.py

Inputs are float32 from a seeded torch generator. Expected values are computed by torch in
float64 from those float32 inputs (explicit softmax for attention, autograd for every input
gradient) and stored as float32, so the C kernels (float32) are compared with a reference
whose own rounding is negligible. The float32 results of torch's own kernels
(F.linear, F.silu, F.gelu, F.scaled_dot_product_attention) are checked against the float64
reference here too, so a wrong reference formula stops the script.

Deterministic: fixed seeds, one thread; re-running gives the same bytes.
"""

import hashlib
import math
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                   "tests", "fixtures", "nn", "attn"))
torch.set_num_threads(1)


def f32(t):
    return t.detach().to(torch.float32).contiguous()


def check(name, ours, ref, tol):
    err = (ours.double() - ref.double()).abs().max() / ref.double().abs().max()
    if not err <= tol:
        raise SystemExit(f"FAILED {name}: torch float32 vs float64 reference {err:.3e} > {tol}")


def linear_fixtures(gen):
    rows, fin, fout = 37, 24, 40
    x = torch.randn(rows, fin, generator=gen)
    w = torch.randn(fout, fin, generator=gen) / math.sqrt(fin)
    b = torch.randn(fout, generator=gen)
    dy = torch.randn(rows, fout, generator=gen)
    dx_init = torch.randn(rows, fin, generator=gen)
    xd = x.double().requires_grad_(True)
    y = F.linear(xd, w.double(), b.double())
    y.backward(dy.double())
    y_nobias = F.linear(x.double(), w.double())
    check("linear", F.linear(x, w, b), y, 1e-6)
    return {
        "x": x, "w": w, "b": b, "dy": dy, "dx_init": dx_init,
        "y": f32(y), "y_nobias": f32(y_nobias), "dx": f32(xd.grad),
        "dx_accumulated": f32(dx_init.double() + xd.grad),
    }


def activation_fixtures(gen):
    # A dense grid over the range that matters (tails included) plus random values.
    x = torch.cat([torch.linspace(-12, 12, 601), torch.randn(399, generator=gen) * 3])
    dy = torch.randn(x.shape, generator=gen)
    out = {"x": x, "dy": dy}
    fns = {
        "silu": (lambda t: t * torch.sigmoid(t), F.silu),
        "gelu": (lambda t: 0.5 * t * (1 + torch.erf(t / math.sqrt(2))), F.gelu),
        "quick_gelu": (lambda t: t * torch.sigmoid(1.702 * t), None),
    }
    for name, (fn, torch_fn) in fns.items():
        xd = x.double().requires_grad_(True)
        y = fn(xd)
        y.backward(dy.double())
        if torch_fn is not None:
            check(name, torch_fn(x), y, 1e-6)
        out[name + ".y"] = f32(y)
        out[name + ".dx"] = f32(xd.grad)
    # GEGLU as diffusers runs it: proj output split in two, value first, gate second.
    rows, dim = 13, 17
    gx = torch.randn(rows, 2 * dim, generator=gen) * 2
    gdy = torch.randn(rows, dim, generator=gen)
    xd = gx.double().requires_grad_(True)
    a, g = xd.chunk(2, dim=-1)
    y = a * F.gelu(g)
    y.backward(gdy.double())
    out.update({"geglu.x": gx, "geglu.dy": gdy, "geglu.y": f32(y), "geglu.dx": f32(xd.grad)})
    return out


# name: batch, heads, q_len, kv_len, head_dim, causal, scale (None: 1/sqrt(head_dim)),
# input magnitude. Shapes are SD's kinds at toy sizes: self-attention, cross-attention on a
# short text sequence, CLIP's causal self-attention, causal with q_len != kv_len both ways
# (torch's top-left aligned mask), and a wide head (SD1.5's deepest level is 8 x 160).
# Lengths are not multiples of any tile size. The file's metadata "cases" lists them as
# "name batch heads q_len kv_len head_dim causal scale; ...".
ATTENTION_CASES = {
    "self": (2, 2, 75, 75, 40, 0, None, 1.0),
    "cross": (2, 3, 70, 19, 24, 0, None, 1.0),
    "causal": (2, 3, 77, 77, 16, 1, None, 1.0),
    "causal_short_q": (1, 2, 20, 33, 8, 1, 0.3, 1.0),
    "causal_long_q": (1, 2, 33, 20, 8, 1, None, 1.0),
    "wide": (2, 1, 40, 45, 160, 0, None, 2.0),
}


def attention_reference(q, k, v, heads, causal, scale):
    """q [B, Lq, H*d] etc. in float64 -> out in the same layout, lse [B, H, Lq]."""
    B, Lq, W = q.shape
    Lk = k.shape[1]
    d = W // heads
    qh = q.view(B, Lq, heads, d).transpose(1, 2)
    kh = k.view(B, Lk, heads, d).transpose(1, 2)
    vh = v.view(B, Lk, heads, d).transpose(1, 2)
    s = qh @ kh.transpose(-1, -2) * scale
    if causal:
        keep = torch.ones(Lq, Lk, dtype=torch.bool).tril()
        s = s.masked_fill(~keep, float("-inf"))
    lse = torch.logsumexp(s, dim=-1)
    p = torch.softmax(s, dim=-1)
    o = (p @ vh).transpose(1, 2).reshape(B, Lq, W)
    return o, lse


def attention_fixtures(gen):
    out, meta = {}, []
    for name, (B, H, Lq, Lk, d, causal, scale, mag) in ATTENTION_CASES.items():
        sc = scale if scale is not None else 1.0 / math.sqrt(d)
        q = torch.randn(B, Lq, H * d, generator=gen) * mag
        k = torch.randn(B, Lk, H * d, generator=gen) * mag
        v = torch.randn(B, Lk, H * d, generator=gen)
        dout = torch.randn(B, Lq, H * d, generator=gen)
        qd, kd, vd = (t.double().requires_grad_(True) for t in (q, k, v))
        o, lse = attention_reference(qd, kd, vd, H, causal, sc)
        o.backward(dout.double())
        # torch's own float32 kernel agrees with the float64 reference.
        sdpa = F.scaled_dot_product_attention(
            q.view(B, Lq, H, d).transpose(1, 2), k.view(B, Lk, H, d).transpose(1, 2),
            v.view(B, Lk, H, d).transpose(1, 2), is_causal=bool(causal), scale=sc)
        check(name, sdpa.transpose(1, 2).reshape(B, Lq, H * d), o, 1e-5)
        sc32 = torch.tensor(sc, dtype=torch.float32).item()
        meta.append(f"{name} {B} {H} {Lq} {Lk} {d} {causal} {sc32!r}")
        out.update({f"{name}.q": q, f"{name}.k": k, f"{name}.v": v, f"{name}.dout": dout,
                    f"{name}.out": f32(o), f"{name}.lse": f32(lse), f"{name}.dq": f32(qd.grad),
                    f"{name}.dk": f32(kd.grad), f"{name}.dv": f32(vd.grad)})
    # One metadata key: safetensors keeps metadata in a hash map whose order varies per run.
    return out, {"cases": "; ".join(meta)}


def main():
    os.makedirs(OUT, exist_ok=True)
    gen = torch.Generator().manual_seed(20261203)
    files = {"linear.safetensors": (linear_fixtures(gen), None),
             "activation.safetensors": (activation_fixtures(gen), None)}
    tensors, meta = attention_fixtures(gen)
    files["attention.safetensors"] = (tensors, meta)
    total = hashlib.sha256()
    for fname, (tensors, meta) in files.items():
        path = os.path.join(OUT, fname)
        save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata=meta)
        data = open(path, "rb").read()
        total.update(data)
        print(f"{fname}: {len(data)} bytes")
    print("sha256 of all files:", total.hexdigest())


if __name__ == "__main__":
    main()
