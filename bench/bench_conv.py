"""Convolution benchmark: sdti's conv2d (every algorithm of src/nn/conv2d.h) against PyTorch on
the convolution shapes of SD1.5's UNet at 64x64 latents and its VAE at 512x512 (batch 1),
forward and backward-data, in the same run and process tree, interleaved shape by shape so
that load from other processes hits both sides alike.

    build/refvenv/bin/python bench/bench_conv.py [--build build] [--set unet|vae-enc|vae-dec|all]
        [--dirs fwd,bwd] [--algos blocked,nchw,winograd,gemm,bf16] [--reps 3] [--markdown]

The C side is <build>/bench/bench_conv (bench/bench_conv.c), fed one request per shape on
stdin. PyTorch runs with the same thread count (2 unless --threads): F.conv2d (F.pad first for
the VAE's asymmetric downsample padding, as diffusers does) and, for backward-data,
aten.convolution_backward with only the input gradient requested, which is what autograd
calls. With "bf16" among the algorithms, PyTorch's bf16 convolution (inputs and weights cast
to bfloat16, as under autocast) is timed too.

Printed per shape: milliseconds (best of --reps after a warm-up), the ratio ours / PyTorch,
the relative error of each algorithm against sdti's blocked fp32 result (max|d| / max|ref|),
and for oneDNN algorithms the share of the call spent in layout reorders. The totals weight
each shape by how often the model runs it (bench/conv_shapes.json, made by
--extract-shapes from diffusers' models with SD1.5's configs).
"""

import argparse
import json
import os
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHAPES = os.path.join(HERE, "conv_shapes.json")


def extract_shapes():
    """Runs SD1.5's UNet (64x64 latents) and VAE (512x512) on the meta device with hooks on
    every Conv2d, and writes the distinct shapes with their counts."""
    sys.path.insert(0, os.path.join(ROOT, "tools", "reference"))
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from make_sd15_random import UNET, VAE

    rows = {}

    def hook_all(model, label):
        def hook(mod, inp, out):
            x = inp[0]
            k, st, p = mod.kernel_size[0], mod.stride[0], mod.padding[0]
            h, w, pad = x.shape[2], x.shape[3], [p, p, p, p]
            if k == 3 and st == 2 and p == 0:  # VAE Downsample2D pads (0, 1, 0, 1) itself
                h, w, pad = h - 1, w - 1, [0, 0, 1, 1]
            key = (label, x.shape[1], mod.out_channels, h, w, k, st, tuple(pad))
            rows[key] = rows.get(key, 0) + 1
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.register_forward_hook(hook)

    with init_empty_weights():
        unet = UNet2DConditionModel(**UNET)
        vae = AutoencoderKL(**VAE)
    unet.to_empty(device="meta")
    vae.to_empty(device="meta")
    hook_all(unet, "unet")
    for part, label in ((vae.encoder, "vae-enc"), (vae.quant_conv, "vae-enc"),
                        (vae.decoder, "vae-dec"), (vae.post_quant_conv, "vae-dec")):
        hook_all(part, label)
    with torch.no_grad():
        unet(torch.empty(1, 4, 64, 64, device="meta"), torch.tensor([10], device="meta"),
             torch.empty(1, 77, 768, device="meta"))
        vae.encode(torch.empty(1, 3, 512, 512, device="meta"))
        vae.decode(torch.empty(1, 4, 64, 64, device="meta"))
    out = [dict(model=k[0], in_ch=k[1], out_ch=k[2], h=k[3], w=k[4], kernel=k[5], stride=k[6],
                pad=list(k[7]), count=c) for k, c in rows.items()]
    with open(SHAPES, "w") as f:
        f.write("[\n" + ",\n".join(json.dumps(r) for r in out) + "\n]\n")
    print(f"{SHAPES}: {len(out)} shapes")


def flops(s, batch=1):
    oh = (s["h"] + s["pad"][0] + s["pad"][2] - s["kernel"]) // s["stride"] + 1
    ow = (s["w"] + s["pad"][1] + s["pad"][3] - s["kernel"]) // s["stride"] + 1
    return 2.0 * batch * s["out_ch"] * oh * ow * s["in_ch"] * s["kernel"] ** 2


def time_ms(fn, reps, warm=True):
    if warm:
        fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, (time.perf_counter() - t0) * 1e3)
    return best


def torch_ms(s, direction, reps, dtype=torch.float32, warm=True):
    top, left, bottom, right = s["pad"]
    sym = top == bottom and left == right
    x = torch.randn(1, s["in_ch"], s["h"], s["w"]).to(dtype)
    w = (torch.randn(s["out_ch"], s["in_ch"], s["kernel"], s["kernel"]) * 0.05).to(dtype)
    b = torch.randn(s["out_ch"]).to(dtype)
    stride = s["stride"]
    with torch.no_grad():
        if direction == "fwd":
            if sym:
                fn = lambda: F.conv2d(x, w, b, stride=stride, padding=(top, left))  # noqa: E731
            else:
                fn = lambda: F.conv2d(F.pad(x, (left, right, top, bottom)), w, b,  # noqa: E731
                                      stride=stride)
            return time_ms(fn, reps, warm)
        xp = x if sym else F.pad(x, (left, right, top, bottom))
        pad = [top, left] if sym else [0, 0]
        y = F.conv2d(xp, w, b, stride=stride, padding=pad)
        dy = torch.randn_like(y)

        def bwd():
            dx = torch.ops.aten.convolution_backward(dy, xp, w, None, [stride, stride], pad,
                                                     [1, 1], False, [0, 0], 1,
                                                     [True, False, False])[0]
            return dx if sym else dx[:, :, :s["h"], :s["w"]]
        return time_ms(bwd, reps, warm)


# The other kernels at SD1.5 sizes (64x64 latents, 512x512 images): (kind, args, label).
KERNEL_CASES = [
    ("gn", (1, 320, 64 * 64, 32), "group norm 320@64x64"),
    ("gn", (1, 640, 32 * 32, 32), "group norm 640@32x32"),
    ("gn", (1, 1280, 16 * 16, 32), "group norm 1280@16x16"),
    ("gn", (1, 1280, 8 * 8, 32), "group norm 1280@8x8"),
    ("gn", (1, 128, 512 * 512, 32), "group norm 128@512x512 (VAE)"),
    ("gn", (1, 512, 128 * 128, 32), "group norm 512@128x128 (VAE)"),
    ("ln", (4096, 320), "layer norm 4096x320"),
    ("ln", (1024, 640), "layer norm 1024x640"),
    ("ln", (256, 1280), "layer norm 256x1280"),
    ("ln", (77, 768), "layer norm 77x768 (CLIP)"),
    ("up", (1280, 8, 8), "upsample 1280@8x8"),
    ("up", (640, 32, 32), "upsample 640@32x32"),
    ("up", (512, 128, 128), "upsample 512@128x128 (VAE)"),
]


def torch_kernel_ms(kind, a, reps):
    if kind == "gn":
        b, c, sp, g = a
        x = torch.randn(b, c, sp, requires_grad=True)
        gm, bt = torch.randn(c), torch.randn(c)
        fwd = lambda: F.group_norm(x, g, gm, bt, 1e-5)  # noqa: E731
    elif kind == "ln":
        r, d = a
        x = torch.randn(r, d, requires_grad=True)
        gm, bt = torch.randn(d), torch.randn(d)
        fwd = lambda: F.layer_norm(x, (d,), gm, bt, 1e-5)  # noqa: E731
    else:
        p, h, w = a
        x = torch.randn(1, p, h, w, requires_grad=True)
        fwd = lambda: F.interpolate(x, scale_factor=2.0, mode="nearest")  # noqa: E731
    with torch.no_grad():
        tf = time_ms(fwd, reps)
    y = fwd()
    dy = torch.randn_like(y)
    tb = time_ms(lambda: torch.autograd.grad(y, x, dy, retain_graph=True), reps)
    return tf, tb


def bench_kernels(worker, reps):
    print("\n## other kernels (ms, best of rounds alternating sdti and PyTorch)")
    print("| kernel | torch fwd | sdti fwd | ratio | torch bwd | sdti bwd | ratio |")
    print("|---|---|---|---|---|---|---|")
    for kind, a, label in KERNEL_CASES:
        best = [float("inf")] * 4
        for _ in range(reps):
            worker.p.stdin.write(" ".join(str(v) for v in (kind, *a, 3)) + "\n")
            worker.p.stdin.flush()
            ours = worker.p.stdout.readline().split()
            worker.p.stdout.readline()  # "ok"
            tf, tb = torch_kernel_ms(kind, a, 3)
            best = [min(best[0], tf), min(best[1], float(ours[1])), min(best[2], tb),
                    min(best[3], float(ours[2]))]
        print(f"| {label} | {best[0]:.3f} | {best[1]:.3f} | {best[1] / best[0]:.2f} | "
              f"{best[2]:.3f} | {best[3]:.3f} | {best[3] / best[2]:.2f} |", flush=True)


class Worker:
    def __init__(self, exe, threads):
        env = dict(os.environ, SDTI_THREADS=str(threads))
        self.p = subprocess.Popen([exe], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  env=env)

    def run(self, s, direction, reps, algos, warm, profile):
        req = " ".join(str(v) for v in [direction, 1, s["in_ch"], s["out_ch"], s["h"], s["w"],
                                        s["kernel"], s["stride"], *s["pad"], reps, int(warm),
                                        int(profile), ",".join(algos)])
        self.p.stdin.write(req + "\n")
        self.p.stdin.flush()
        res = {}
        while True:
            line = self.p.stdout.readline()
            if not line:
                raise RuntimeError("bench_conv worker died")
            parts = line.split()
            if parts[0] == "ok":
                return res
            if len(parts) == 2:  # "algo n/a"
                continue
            name, best, _median, err, r_in, r_w, conv, r_out = parts
            res[name] = dict(ms=float(best), err=float(err), r_in=float(r_in), r_w=float(r_w),
                             conv=float(conv), r_out=float(r_out))

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--set", default="unet", choices=["unet", "vae-enc", "vae-dec", "vae", "all"])
    ap.add_argument("--dirs", default="fwd,bwd")
    ap.add_argument("--algos", default="blocked,nchw,winograd,gemm")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--filter", default="", help="only shapes whose 'in->out@hxw kK sS' has this")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--extract-shapes", action="store_true")
    ap.add_argument("--kernels", action="store_true",
                    help="time group norm, layer norm and upsampling instead of convolutions")
    args = ap.parse_args()
    if args.extract_shapes:
        extract_shapes()
        return
    torch.set_num_threads(args.threads)
    algos = [a for a in args.algos.split(",") if a]
    if algos[0] != "blocked":
        algos = ["blocked"] + [a for a in algos if a != "blocked"]
    shapes = json.load(open(SHAPES))
    want = {"all": ("unet", "vae-enc", "vae-dec"), "vae": ("vae-enc", "vae-dec")}.get(
        args.set, (args.set,))
    shapes = [s for s in shapes if s["model"] in want]
    worker = Worker(os.path.join(args.build, "bench", "bench_conv"), args.threads)
    if args.kernels:
        bench_kernels(worker, args.reps)
        worker.close()
        return
    print(f"torch {torch.__version__}, {args.threads} threads; times in ms, best of {args.reps}; "
          f"ratio = sdti / torch (< 1: sdti faster); err vs sdti blocked fp32; "
          f"reorder% = share of the blocked call spent converting layouts")
    totals = {}
    sep = " | " if args.markdown else "  "
    for direction in args.dirs.split(","):
        # The VAE is never differentiated in TI: forward only.
        todo = [s for s in shapes if direction == "fwd" or s["model"] == "unet"]
        head = ["model", "shape", "n", "GFLOP", "torch"] + algos + \
            ["ratio " + a for a in algos] + ["reorder%"] + \
            [f"err {a}" for a in algos[1:]] + (["torch bf16"] if "bf16" in algos else [])
        print(f"\n## {direction}")
        if args.markdown:
            print("| " + " | ".join(head) + " |")
            print("|" + "---|" * len(head))
        else:
            print(sep.join(head))
        for s in todo:
            name = f"{s['in_ch']}->{s['out_ch']}@{s['h']}x{s['w']} k{s['kernel']} s{s['stride']}" + \
                ("" if s["pad"][0] == s["pad"][2] else " pad0011")
            if args.filter and args.filter not in name:
                continue
            reps = args.reps if flops(s) < 3e10 else max(1, args.reps // 2)
            # Round 0 warms up (creates primitives) and profiles; then `reps` rounds alternate
            # one call of each sdti algorithm with one PyTorch call; best of the rounds.
            ours = worker.run(s, direction, 1, algos, True, True)
            t = torch_ms(s, direction, 1)
            tb = torch_ms(s, direction, 1, torch.bfloat16) if "bf16" in algos else None
            for _ in range(reps):
                again = worker.run(s, direction, 1, algos, False, False)
                for a, r in again.items():
                    ours[a]["ms"] = min(ours[a]["ms"], r["ms"])
                t = min(t, torch_ms(s, direction, 1, warm=False))
                if tb is not None:
                    tb = min(tb, torch_ms(s, direction, 1, torch.bfloat16, warm=False))
            tot = totals.setdefault((direction, s["model"]), {"torch": 0.0, "torch bf16": 0.0,
                                                              "best": 0.0, "flop": 0.0})
            tot["torch"] += s["count"] * t
            tot["flop"] += s["count"] * flops(s)
            if tb is not None:
                tot["torch bf16"] += s["count"] * tb
            fp32 = [ours[a]["ms"] for a in algos if a in ours and a != "bf16" and
                    ours[a]["err"] < 1e-4]
            tot["best"] += s["count"] * (min(fp32) if fp32 else float("nan"))
            for a in algos:
                tot[a] = tot.get(a, 0.0) + s["count"] * ours.get(a, {"ms": float("nan")})["ms"]
            if "blocked" in ours:  # the convolution alone, as if activations stayed blocked
                tot["conv only"] = tot.get("conv only", 0.0) + s["count"] * ours["blocked"]["conv"]
            blk = ours.get("blocked")
            reorder = (blk["r_in"] + blk["r_w"] + blk["r_out"]) / max(
                1e-9, blk["r_in"] + blk["r_w"] + blk["r_out"] + blk["conv"]) if blk else float("nan")
            cells = [s["model"], name, str(s["count"]), f"{flops(s) / 1e9:.2f}", f"{t:.2f}"]
            cells += [f"{ours[a]['ms']:.2f}" if a in ours else "n/a" for a in algos]
            cells += [f"{ours[a]['ms'] / t:.2f}" if a in ours else "-" for a in algos]
            cells += [f"{100 * reorder:.0f}% (w {blk['r_w']:.1f} ms)" if blk else "-"]
            cells += [f"{ours[a]['err']:.1e}" if a in ours else "-" for a in algos[1:]]
            if tb is not None:
                cells += [f"{tb:.2f}"]
            print(("| " + sep.join(cells) + " |") if args.markdown else sep.join(cells), flush=True)
    print("\n## totals (each shape times its count in the model)")
    for (direction, model), tot in totals.items():
        line = f"{direction} {model}: {tot['flop'] / 1e9:.0f} GFLOP, torch {tot['torch']:.0f} ms"
        for a in algos:
            line += f", {a} {tot[a]:.0f} ms ({tot[a] / tot['torch']:.2f}x)"
        line += f", best fp32 per shape {tot['best']:.0f} ms ({tot['best'] / tot['torch']:.2f}x)"
        if "conv only" in tot:
            line += (f", blocked without reorders (one profiled call) {tot['conv only']:.0f} ms "
                     f"({tot['conv only'] / tot['torch']:.2f}x)")
        if "bf16" in algos:
            line += f", torch bf16 {tot['torch bf16']:.0f} ms"
        print(line)
    worker.close()


if __name__ == "__main__":
    main()
