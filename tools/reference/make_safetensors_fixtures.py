"""Writes the safetensors reader/writer fixtures into tests/fixtures/formats/safetensors/.

Run with the reference venv:  build/refvenv/bin/python tools/reference/make_safetensors_fixtures.py

Every .safetensors file here is written by the safetensors Python library itself
(safetensors.torch.save_file / safetensors.numpy.save_file), so the C writer can be compared
with it byte for byte. expected.json records, for each file, what torch reads back from it:
each tensor's dtype, shape, data offsets, raw bytes (hex) and values (as float64 / integers,
converted by torch, not by us), the __metadata__ and the header length.

Deterministic (fixed seed), with one exception: the library keeps __metadata__ in a Rust
HashMap, whose iteration order is random per process, so files with several metadata keys
(meta_multi.safetensors) may list them in another order when regenerated. The C tests only
look metadata up by key, and the round-trip test re-reads the file it compares with.
"""

import json
import os
import struct
import sys

import numpy as np
import torch
import safetensors
import safetensors.numpy
import safetensors.torch

OUT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                   "tests", "fixtures", "formats", "safetensors"))

ST_DTYPE = {
    torch.bool: "BOOL", torch.uint8: "U8", torch.int8: "I8", torch.int16: "I16",
    torch.int32: "I32", torch.int64: "I64", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.float32: "F32", torch.float64: "F64",
}


def mixed_tensors(gen):
    """All ten dtypes sdti reads, a 0-d scalar, empty tensors, two tensors of the same dtype
    (name order), and names that need JSON escaping or are not ASCII."""
    return {
        "f32.weight": torch.randn(3, 4, generator=gen),
        "a_f32.bias": torch.randn(4, generator=gen),
        "f16": torch.randn(2, 3, generator=gen).half(),
        "bf16": torch.randn(5, generator=gen).bfloat16(),
        "f64": torch.randn(2, generator=gen).double(),
        "i64": torch.tensor([-3, 0, 2**40 + 7, -(2**53), 9], dtype=torch.int64),
        "i32": torch.tensor([[1, -2], [2**31 - 1, -(2**31)]], dtype=torch.int32),
        "i16": torch.tensor([-32768, 7, 32767], dtype=torch.int16),
        "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 1, 255, 128], dtype=torch.uint8),
        "bool": torch.tensor([[True, False], [False, True]]),
        "scalar": torch.tensor(2.5, dtype=torch.float32),
        "empty": torch.zeros(0, 3, dtype=torch.float32),
        "empty_i64": torch.zeros(4, 0, dtype=torch.int64),
        'quote"back\\slash\ttab': torch.tensor([1.0, -1.0]),
        "ünïcödé.名前": torch.tensor([0.5], dtype=torch.float16),
    }


def values_of(t):
    if t.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        return t.double().flatten().tolist()
    return [int(v) for v in t.flatten().tolist()]


def describe(path):
    """What the library and torch read back from `path` (the C test's expected values)."""
    with open(path, "rb") as f:
        blob = f.read()
    (header_len,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + header_len])
    data = blob[8 + header_len:]
    loaded = safetensors.torch.load_file(path)
    tensors = {}
    for name, t in loaded.items():
        begin, end = header[name]["data_offsets"]
        raw = data[begin:end]
        tensors[name] = {
            "dtype": ST_DTYPE[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [begin, end],
            "hex": raw.hex(),
            "values": values_of(t),
        }
    with safetensors.safe_open(path, framework="pt") as f:
        metadata = f.metadata() or {}
    return {
        "header_len": header_len,
        "file_size": len(blob),
        "order": [k for k in header if k != "__metadata__"],
        "metadata": metadata,
        "has_metadata": "__metadata__" in header,
        "tensors": tensors,
    }


def main():
    os.makedirs(OUT, exist_ok=True)
    gen = torch.Generator().manual_seed(20240611)
    files = {}

    def save_torch(name, tensors, metadata):
        path = os.path.join(OUT, name)
        safetensors.torch.save_file(tensors, path, metadata=metadata)
        files[name] = describe(path)

    save_torch("mixed.safetensors", mixed_tensors(gen),
               {"note": 'line1\nline2\t"quoted" \\ ünï \x01 \x7f / end'})
    save_torch("meta_multi.safetensors", {"emb_params": torch.randn(2, 8, generator=gen)},
               {"ss_network_module": "textual_inversion", "ss_num_train_images": "12",
                "string_to_param": '{"*": "emb_params"}', "empty": ""})
    save_torch("empty_set.safetensors", {}, None)

    rng = np.random.default_rng(7)
    path = os.path.join(OUT, "numpy_plain.safetensors")
    safetensors.numpy.save_file({
        "x": rng.standard_normal((2, 2)).astype(np.float32),
        "ids": np.array([5, -6, 7], dtype=np.int64),
        "mask": np.array([True, False, True]),
    }, path)
    files["numpy_plain.safetensors"] = describe(path)

    with open(os.path.join(OUT, "expected.json"), "w", encoding="utf-8") as f:
        json.dump({"safetensors_version": safetensors.__version__,
                   "torch_version": torch.__version__, "files": files},
                  f, indent=1, ensure_ascii=True, sort_keys=True)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {len(files)} files + expected.json into {OUT} ({total} bytes)")


if __name__ == "__main__":
    sys.exit(main())
