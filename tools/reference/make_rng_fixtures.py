"""Writes the fixtures of sdti's emulation of PyTorch's CPU generator into tests/fixtures/rng/.

Run with the reference venv:  build/refvenv/bin/python tools/reference/make_rng_fixtures.py

torch picks its CPU kernels once per process from the CPU (or from ATEN_CPU_CAPABILITY), so
this script runs itself once per capability in a child process with ATEN_CPU_CAPABILITY set
to "default" (the scalar kernels), "avx2" and "avx512", and merges what they report.

Output:
  cases.json  every case: a seed, then a list of steps done on ONE generator seeded with it
              (torch.Generator().manual_seed(seed)); each step names the op, its arguments, the
              kernel it was drawn with, and where its expected bytes are in data.bin (or, for
              big outputs, a 64-bit FNV-1a of the bytes plus the first and last 64 elements).
              A step with "state" also points at torch's Generator.get_state() bytes taken
              right after it.
  data.bin    the raw little-endian bytes (float32 for randn/rand, int64 for the others,
              uint8 for generator states).

Also checked here, and recorded in cases.json under "checks" (the C test needs not redo them):
  - torch.manual_seed(s) + torch.randn(...) (the global generator, as kohya's
    gen_img_diffusers uses it) gives the same bytes as a torch.Generator seeded with s;
  - rand / randint / randperm / random_ give the same bytes under every capability (only
    randn has a vectorised kernel), so they are stored once, with kernel "any";
  - "avx512" runs the AVX2 normal kernel (torch registers no AVX-512 one), so its randn equals
    the avx2 one; it is not stored separately.
Deterministic: no clock, fixed seeds.
"""

import json
import os
import random
import struct
import subprocess
import sys

OUT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                   "tests", "fixtures", "rng"))

SEEDS = [0, 1, 42, 2**32 - 1, 2**32 + 5, 2**63 - 1, 2**64 - 1]
_rs = random.Random(20240607)
SEEDS += [_rs.getrandbits(64) for _ in range(3)]

RANDN_SIZES = [1, 2, 3, 15, 16, 17, 31, 32, 33, 47, 100, 1000]
RANDN_BIG = [4 * 64 * 64, 4 * 96 * 64, 4 * 64 * 64 + 3, 2 * 4 * 64 * 64]
RANDN_BIG_SEEDS = [0, 42, 2**63 - 1]
RAND_SIZES = [1, 17, 100, 1000]
RANDINT_ARGS = [(0, 1000, 1), (0, 1000, 7), (0, 1000, 100), (-5, 5, 33), (0, 2**28 - 1, 10),
                (0, 2**28, 10), (0, 2**40, 10), (-(2**62), 2**62, 10), (7, 8, 3)]
RANDPERM_SIZES = [0, 1, 2, 3, 10, 100, 1000, 5000]
SMALL_SEEDS = [0, 42, 2**32 - 1, SEEDS[-1]]

RAW_LIMIT = 16384  # bytes; bigger outputs are stored as a hash plus head and tail
EDGE = 64          # elements kept at each end of a hashed output


def fnv1a64(data):
    h = 0xcbf29ce484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


# ---------------------------------------------------------------- child: one capability


def run_ops(torch, seed, ops):
    """Runs ops on one generator; returns a list of (bytes, elem_size, state bytes or None)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for op in ops:
        kind = op["op"]
        if kind == "randn":
            t = torch.randn(op["n"], generator=g, dtype=torch.float32)
        elif kind == "rand":
            t = torch.rand(op["n"], generator=g, dtype=torch.float32)
        elif kind == "randint":
            t = torch.randint(op["low"], op["high"], (op["n"],), generator=g, dtype=torch.int64)
        elif kind == "randperm":
            t = torch.randperm(op["n"], generator=g)
        elif kind == "random_int64":
            t = torch.empty((), dtype=torch.int64).random_(generator=g).reshape(1)
        elif kind == "sampler_perm":
            # torch.utils.data.RandomSampler without a generator of its own.
            s = int(torch.empty((), dtype=torch.int64).random_(generator=g).item())
            t = torch.randperm(op["n"], generator=torch.Generator().manual_seed(s))
        else:
            raise ValueError(kind)
        assert t.is_contiguous()
        state = bytes(g.get_state().numpy().tobytes()) if op.get("state") else None
        out.append((t.numpy().tobytes(), t.element_size(), state))
    return out


def child_cases():
    """The list of (name, seed, ops, kernel-dependent) every capability runs."""
    cases = []
    for s in SEEDS:
        for n in RANDN_SIZES:
            cases.append((f"randn s={s} n={n}", s, [{"op": "randn", "n": n, "state": n == 1}], True))
    for s in RANDN_BIG_SEEDS:
        for n in RANDN_BIG:
            cases.append((f"randn s={s} n={n}", s, [{"op": "randn", "n": n}], True))
    for s in SEEDS:
        cases.append((f"state s={s}", s, [{"op": "rand", "n": 0, "state": True}], False))
        for n in RAND_SIZES:
            cases.append((f"rand s={s} n={n}", s, [{"op": "rand", "n": n}], False))
        cases.append((f"random_int64 s={s}", s, [{"op": "random_int64"}] * 3, False))
    for s in SMALL_SEEDS:
        for lo, hi, n in RANDINT_ARGS:
            cases.append((f"randint s={s} [{lo},{hi}) n={n}", s,
                          [{"op": "randint", "low": lo, "high": hi, "n": n, "state": True}], False))
        for n in RANDPERM_SIZES:
            cases.append((f"randperm s={s} n={n}", s, [{"op": "randperm", "n": n}], False))
    # Training-like sequences on one generator, with the state after every step (the second
    # randn(1) reuses the normal sample cached by the first; big fills leave that cache alone).
    seq = [{"op": "randn", "n": 4 * 64 * 64, "state": True},
           {"op": "randn", "n": 4 * 64 * 64, "state": True},
           {"op": "randint", "low": 0, "high": 1000, "n": 4, "state": True},
           {"op": "randn", "n": 1, "state": True},
           {"op": "randn", "n": 3, "state": True},
           {"op": "randn", "n": 20, "state": True},
           {"op": "randn", "n": 1, "state": True},
           {"op": "rand", "n": 5, "state": True},
           {"op": "randn", "n": 8, "state": True},
           {"op": "randperm", "n": 12, "state": True},
           {"op": "randn", "n": 33, "state": True}]
    for s in [0, 42, SEEDS[-2]]:
        cases.append((f"sequence s={s}", s, seq, True))
    # DataLoader(shuffle=True) after torch.manual_seed(s): per epoch, the iterator's base seed
    # then RandomSampler's seed are drawn from the global generator.
    dl = [{"op": "random_int64"}, {"op": "sampler_perm", "n": 10},
          {"op": "random_int64"}, {"op": "sampler_perm", "n": 10, "state": True}]
    for s in [0, 42]:
        cases.append((f"dataloader s={s}", s, dl, False))
    return cases


def child(cap, path):
    import torch
    torch.set_num_threads(1)
    results = {"capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
               "cases": []}
    for name, seed, ops, _ in child_cases():
        res = run_ops(torch, seed, ops)
        results["cases"].append([[r[0].hex(), r[1], r[2].hex() if r[2] else None] for r in res])
    # Global generator (torch.manual_seed) == a Generator with the same seed.
    same = True
    for s in [0, 42, 2**32 - 1]:
        for n in [1, 17, 4 * 64 * 64]:
            torch.manual_seed(s)
            a = torch.randn(n).numpy().tobytes()
            b = torch.randn(n, generator=torch.Generator().manual_seed(s)).numpy().tobytes()
            same = same and a == b
    results["global_equals_generator"] = same
    # The DataLoader really draws what the "dataloader" case says.
    dl_ok = True
    for s in [0, 42]:
        torch.manual_seed(s)
        loader = torch.utils.data.DataLoader(list(range(10)), batch_size=1, shuffle=True)
        e1 = [int(x) for x in loader]
        e2 = [int(x) for x in loader]
        g = torch.Generator().manual_seed(s)
        exp = []
        for _ in range(2):
            torch.empty((), dtype=torch.int64).random_(generator=g)
            sd = int(torch.empty((), dtype=torch.int64).random_(generator=g).item())
            exp.append(torch.randperm(10, generator=torch.Generator().manual_seed(sd)).tolist())
        dl_ok = dl_ok and [e1, e2] == exp
    results["dataloader_matches"] = dl_ok
    with open(path, "w") as f:
        json.dump(results, f)


# ---------------------------------------------------------------- parent: merge and write


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
        return
    os.makedirs(OUT, exist_ok=True)
    caps = ["default", "avx2", "avx512"]
    per_cap = {}
    for cap in caps:
        tmp = os.path.join(OUT, f".child_{cap}.json")
        env = dict(os.environ, ATEN_CPU_CAPABILITY=cap, OMP_NUM_THREADS="1")
        subprocess.run([sys.executable, os.path.abspath(__file__), "--child", cap, tmp],
                       env=env, check=True)
        with open(tmp) as f:
            per_cap[cap] = json.load(f)
        os.remove(tmp)

    data = bytearray()
    stored = {}  # identical blobs (the same state under both kernels) are stored once

    def put(raw):
        if raw not in stored:
            stored[raw] = len(data)
            data.extend(raw)
        return {"offset": stored[raw], "size": len(raw)}

    def put_output(raw, elem):
        if len(raw) <= RAW_LIMIT:
            return {"data": put(raw)}
        edge = EDGE * elem
        return {"hash": f"{fnv1a64(raw):016x}", "head": put(raw[:edge]), "tail": put(raw[-edge:])}

    cases_out = []
    kernel_free_identical = True
    avx512_is_avx2 = True
    for i, (name, seed, ops, kernel_dep) in enumerate(child_cases()):
        kernels = ["default", "avx2"] if kernel_dep else ["any"]
        for r512, r2 in zip(per_cap["avx512"]["cases"][i], per_cap["avx2"]["cases"][i]):
            avx512_is_avx2 = avx512_is_avx2 and r512 == r2
        if not kernel_dep:
            for ra, rb in zip(per_cap["default"]["cases"][i], per_cap["avx2"]["cases"][i]):
                kernel_free_identical = kernel_free_identical and ra == rb
        for k in kernels:
            res = per_cap["avx2" if k == "any" else k]["cases"][i]
            steps = []
            for op, (hexdata, elem, hexstate) in zip(ops, res):
                step = {k2: v for k2, v in op.items() if k2 != "state"}
                step.update(put_output(bytes.fromhex(hexdata), elem))
                if hexstate:
                    step["state"] = put(bytes.fromhex(hexstate))
                steps.append(step)
            cases_out.append({"name": f"{name} [{k}]", "kernel": k, "seed": str(seed),
                              "steps": steps})

    checks = {
        "torch": per_cap["avx2"]["torch"],
        "capability_reported": {c: per_cap[c]["capability"] for c in caps},
        "global_equals_generator": all(per_cap[c]["global_equals_generator"] for c in caps),
        "dataloader_matches": all(per_cap[c]["dataloader_matches"] for c in caps),
        "rand_randint_randperm_same_on_all_kernels": kernel_free_identical,
        "avx512_randn_equals_avx2": avx512_is_avx2,
    }
    for k, v in checks.items():
        if v is False:
            raise SystemExit(f"check failed: {k}")
    with open(os.path.join(OUT, "data.bin"), "wb") as f:
        f.write(data)
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"checks": checks, "state_size": 5056, "cases": cases_out}, f, indent=1)
    print(f"{len(cases_out)} cases, {len(data)} bytes of data; checks: {checks}")


if __name__ == "__main__":
    main()
