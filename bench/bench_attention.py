"""Attention, linear and GEGLU benchmark: sdti's kernels (src/nn/attention.c, linear.c,
activation.c) against PyTorch on the shapes of SD1.5's UNet transformer blocks at 64x64
latents (batch 1), forward and input-gradient backward, in the same run and process tree,
interleaved shape by shape so that load from other processes hits both sides alike.

    build/refvenv/bin/python bench/bench_attention.py [--build build] [--reps 3]
        [--filter SUBSTRING] [--tiles QxK,...] [--threads 2] [--markdown]

The C side is <build>/bench/bench_attention (bench/bench_attention.c), fed one request per
line on stdin. PyTorch runs with the same thread count: F.scaled_dot_product_attention (its
CPU flash kernel) on [B, H, L, d] views of the [B, L, H*d] tensors the projections produce
(as diffusers does), its backward through aten's _scaled_dot_product_flash_attention_for_cpu
backward with q, k, v all requiring grad; F.linear and its input gradient (dy @ W);
diffusers' GEGLU (chunk + gelu + mul) and its autograd input gradient.

Printed per shape: milliseconds (best of --reps after a warm-up), ratio ours / PyTorch, the
same ratio of process CPU time per call (all threads summed; steadier than wall time when other
processes load the machine), and GFLOP/s from the best wall time. FLOPs: attention forward 4*B*H*Lq*Lk*d (QK^T and PV), backward 8*B*H*Lq*Lk*d (dV,
dP, dQ, dK; the recomputed QK^T is not counted, as for torch's kernel, which also recomputes);
linear 2*rows*in*out either way; for GEGLU and SiLU the "GFLOP/s" column is just elements per
nanosecond. --tiles also times the attention at the listed tile sizes.
"""

import argparse
import math
import os
import subprocess
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# SD1.5 at 64x64 latents, batch 1: (name, B, H, Lq, Lk, d, causal). Levels 0..2 have 4096,
# 1024, 256 tokens of widths 320, 640, 1280 with 8 heads; cross-attention keys are the 77
# text tokens (projected from 768 to the level's width). CLIP-L: 77 tokens, 12 heads of 64,
# causal.
ATTENTION = [
    ("self 4096 8x40", 1, 8, 4096, 4096, 40, 0),
    ("cross 4096x77 8x40", 1, 8, 4096, 77, 40, 0),
    ("self 1024 8x80", 1, 8, 1024, 1024, 80, 0),
    ("cross 1024x77 8x80", 1, 8, 1024, 77, 80, 0),
    ("self 256 8x160", 1, 8, 256, 256, 160, 0),
    ("cross 256x77 8x160", 1, 8, 256, 77, 160, 0),
    ("clip 77 12x64 causal", 1, 12, 77, 77, 64, 1),
    # SD2 (head_dim 64: 5 heads at level 0), and the VAE's mid-block attention at 512x512
    # (one head of 512 over 64x64 positions; forward only in use).
    ("sd2 self 4096 5x64", 1, 5, 4096, 4096, 64, 0),
    ("vae 4096 1x512", 1, 1, 4096, 4096, 512, 0),
]
# Linear layers of a level-0 transformer block (rows = 4096 tokens): q/k/v/out 320->320,
# cross k/v 768->320 (77 rows), GEGLU proj 320->2560, FF out 1280->320.
LINEAR = [
    ("linear 4096 320->320", 4096, 320, 320),
    ("linear 77 768->320", 77, 768, 320),
    ("linear 4096 320->2560", 4096, 320, 2560),
    ("linear 4096 1280->320", 4096, 1280, 320),
    ("linear 1024 640->5120", 1024, 640, 5120),
]
GEGLU = [("geglu 4096x1280", 4096, 1280)]
# SiLU on a level-0 resnet activation (320 x 64 x 64) and a VAE decoder one (128 x 512 x 512).
SILU = [("silu 320x64x64", 320 * 64 * 64), ("silu 128x512x512", 128 * 512 * 512)]


def best(fn, reps):
    """(best wall ms, CPU ms per call summed over threads)."""
    fn()
    times = []
    c0 = time.process_time()
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return min(times), (time.process_time() - c0) * 1e3 / reps


def torch_attention(B, H, Lq, Lk, d, causal, backward, reps):
    g = torch.Generator().manual_seed(0)
    q = (torch.rand(B, Lq, H * d, generator=g) * 4 - 2)
    k = (torch.rand(B, Lk, H * d, generator=g) * 4 - 2)
    v = torch.rand(B, Lk, H * d, generator=g) * 2 - 1
    dout = torch.rand(B, Lq, H * d, generator=g) * 2 - 1

    def heads(t, L):
        return t.view(B, L, H, d).transpose(1, 2)

    if not backward:
        with torch.no_grad():
            return best(lambda: F.scaled_dot_product_attention(
                heads(q, Lq), heads(k, Lk), heads(v, Lk), is_causal=bool(causal)), reps)
    qg, kg, vg = (t.clone().requires_grad_(True) for t in (q, k, v))
    out = F.scaled_dot_product_attention(heads(qg, Lq), heads(kg, Lk), heads(vg, Lk),
                                         is_causal=bool(causal))
    grad = heads(dout, Lq)

    def bwd():
        torch.autograd.grad(out, (qg, kg, vg), grad, retain_graph=True)
    return best(bwd, reps)


def torch_linear(rows, fin, fout, backward, reps):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(rows, fin, generator=g)
    w = torch.rand(fout, fin, generator=g) * 0.05
    b = torch.rand(fout, generator=g)
    dy = torch.rand(rows, fout, generator=g)
    with torch.no_grad():
        if backward:
            return best(lambda: dy @ w, reps)
        return best(lambda: F.linear(x, w, b), reps)


def torch_geglu(rows, dim, backward, reps):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(rows, 2 * dim, generator=g) * 4 - 2
    dy = torch.rand(rows, dim, generator=g)
    if not backward:
        def fwd():
            with torch.no_grad():
                a, gate = x.chunk(2, dim=-1)
                return a * F.gelu(gate)
        return best(fwd, reps)
    xg = x.clone().requires_grad_(True)
    a, gate = xg.chunk(2, dim=-1)
    y = a * F.gelu(gate)
    return best(lambda: torch.autograd.grad(y, xg, dy, retain_graph=True), reps)


def torch_silu(n, backward, reps):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, generator=g) * 8 - 4
    dy = torch.rand(n, generator=g)
    if not backward:
        with torch.no_grad():
            return best(lambda: F.silu(x), reps)
    xg = x.clone().requires_grad_(True)
    y = F.silu(xg)
    return best(lambda: torch.autograd.grad(y, xg, dy, retain_graph=True), reps)


class Worker:
    def __init__(self, build, threads):
        env = dict(os.environ, SDTI_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
        exe = os.path.join(ROOT, build, "bench", "bench_attention")
        self.p = subprocess.Popen([exe], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, env=env)

    def ask(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        answer = []
        while True:
            got = self.p.stdout.readline()
            if not got or got.strip() == "ok":
                break
            answer.append(got.strip())
        if not answer or answer[0].startswith("error"):
            raise SystemExit(f"bench_attention: {answer}")
        fields = answer[0].split()
        return float(fields[0]), float(fields[2])

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--filter", default="")
    ap.add_argument("--tiles", default="", help="extra attention tiles, e.g. 64x128,32x256")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    worker = Worker(args.build, args.threads)
    tiles = [tuple(int(v) for v in t.split("x")) for t in args.tiles.split(",") if t]
    rows = []

    def report(name, direction, ours_both, theirs_both, flops, note=""):
        (ours, ours_cpu), (theirs, theirs_cpu) = ours_both, theirs_both
        rows.append((name, direction, ours, theirs, flops, note, ours_cpu, theirs_cpu))
        line = (f"{name:<24} {direction:<4} ours {ours:9.2f} ms  torch {theirs:9.2f} ms  "
                f"ratio {ours / theirs:5.2f} (CPU time {ours_cpu / theirs_cpu:5.2f})  "
                f"{flops / ours / 1e6:6.1f} vs {flops / theirs / 1e6:6.1f} GFLOP/s {note}")
        print(line, flush=True)

    for name, B, H, Lq, Lk, d, causal in ATTENTION:
        if args.filter not in name:
            continue
        for backward in (0, 1):
            direction = "bwd" if backward else "fwd"
            flops = (8 if backward else 4) * B * H * Lq * Lk * d
            if causal:
                flops //= 2
            reps = args.reps if Lq * Lk < 1 << 22 else max(1, args.reps - 1)
            theirs = torch_attention(B, H, Lq, Lk, d, causal, backward, reps)
            ours = worker.ask(f"attn {direction} {B} {H} {Lq} {Lk} {d} {causal} {reps} 0 0")
            report(name, direction, ours, theirs, flops)
            for tq, tk in tiles:
                t = worker.ask(f"attn {direction} {B} {H} {Lq} {Lk} {d} {causal} {reps} {tq} {tk}")
                report(name, direction, t, theirs, flops, f"tiles {tq}x{tk}")
    for name, r, fin, fout in LINEAR:
        if args.filter not in name:
            continue
        for backward in (0, 1):
            direction = "bwd" if backward else "fwd"
            theirs = torch_linear(r, fin, fout, backward, args.reps)
            ours = worker.ask(f"linear {direction} {r} {fin} {fout} {args.reps}")
            report(name, direction, ours, theirs, 2 * r * fin * fout)
    for name, r, dim in GEGLU:
        if args.filter not in name:
            continue
        for backward in (0, 1):
            direction = "bwd" if backward else "fwd"
            theirs = torch_geglu(r, dim, backward, args.reps)
            ours = worker.ask(f"geglu {direction} {r} {dim} {args.reps}")
            report(name, direction, ours, theirs, r * dim)
    for name, n in SILU:
        if args.filter not in name:
            continue
        for backward in (0, 1):
            direction = "bwd" if backward else "fwd"
            theirs = torch_silu(n, backward, args.reps)
            ours = worker.ask(f"silu {direction} {n} {args.reps}")
            report(name, direction, ours, theirs, n)
    worker.close()
    if args.markdown:
        print("\n| shape | dir | sdti ms | torch ms | ratio | CPU-time ratio | sdti GFLOP/s | "
              "torch GFLOP/s |")
        print("|---|---|---|---|---|---|---|---|")
        for name, direction, ours, theirs, flops, note, oc, tc in rows:
            print(f"| {name} {note} | {direction} | {ours:.2f} | {theirs:.2f} | "
                  f"{ours / theirs:.2f} | {oc / tc:.2f} | {flops / ours / 1e6:.1f} | "
                  f"{flops / theirs / 1e6:.1f} |")


if __name__ == "__main__":
    main()
