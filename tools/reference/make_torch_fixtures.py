"""Writes the torch checkpoint reader/writer fixtures into tests/fixtures/formats/torch/.

Run with the reference venv:  build/refvenv/bin/python tools/reference/make_torch_fixtures.py

Every file is written by torch.save itself (zip and legacy layouts, protocol 2 and 4 pickles),
except bad-input files whose pickle is built by hand here (never executed). expected.json
records, for each file, what torch.load(weights_only=...) reads back from it:
  tensors: for each tensor reached by walking dicts (and module objects' state), its key path,
           dtype (safetensors spelling), shape and contiguous little-endian bytes (hex), plus
           `flat`: the dotted name sdti's state-dict flattening gives (null when the tensor
           sits below a non-dict object, which flattening skips);
  values:  the non-tensor leaves (key path, kind, value).
Also seeds the unpickler fuzzer's corpus (tests/fuzz/corpus/unpickle/): every data.pkl, the
plain pickles of protocols 0-5 and the files whole.
Deterministic: fixed seed; torch.save's random `.data/serialization_id` is rewritten to zeros
(fixing its CRC in the data descriptor and central directory), so regenerating gives the same bytes.
"""

import io
import json
import os
import pickle
import pickletools
import struct
import sys
import types
import warnings
import zipfile
import zlib
from collections import OrderedDict

import numpy as np
import torch


OUT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                   "tests", "fixtures", "formats", "torch"))
CORPUS = os.path.normpath(os.path.join(OUT, "..", "..", "..", "fuzz", "corpus", "unpickle"))

ST_DTYPE = {
    torch.bool: "BOOL", torch.uint8: "U8", torch.int8: "I8", torch.int16: "I16",
    torch.int32: "I32", torch.int64: "I64", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.float32: "F32", torch.float64: "F64",
}


def plain_state_dict(gen):
    """Every dtype, a view with a storage offset, two tensors sharing one storage, a
    transposed (non-contiguous) tensor, a 0-d tensor and an empty one."""
    base = torch.randn(12, generator=gen)
    shared = torch.randn(10, generator=gen)
    return {
        "w_f32": torch.randn(3, 4, generator=gen),
        "w_f16": torch.randn(5, generator=gen).half(),
        "w_bf16": torch.randn(2, 3, generator=gen).bfloat16(),
        "w_f64": torch.randn(2, generator=gen).double(),
        "ids_i64": torch.tensor([-3, 0, 2**40 + 7, 9], dtype=torch.int64),
        "i32": torch.tensor([[1, -2], [2**31 - 1, -(2**31)]], dtype=torch.int32),
        "i16": torch.tensor([-32768, 7, 32767], dtype=torch.int16),
        "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 1, 255, 128], dtype=torch.uint8),
        "mask_bool": torch.tensor([[True, False], [False, True]]),
        "view_offset": base[5:9],
        "shared_a": shared[:4],
        "shared_b": shared[4:].view(2, 3),
        "transposed": torch.randn(3, 4, generator=gen).t(),
        "strided_2d": torch.randn(4, 6, generator=gen)[1:3, ::2],
        "scalar0d": torch.tensor(3.5),
        "empty": torch.zeros(0, 3),
        "nested": {"inner.weight": torch.randn(2, 2, generator=gen), "count": 3},
    }


class FakeModelCheckpoint:
    """Pickled under pytorch_lightning's name, as real SD checkpoints carry it."""


def install_fake_lightning():
    names = ["pytorch_lightning", "pytorch_lightning.callbacks",
             "pytorch_lightning.callbacks.model_checkpoint"]
    for n in names:
        sys.modules.setdefault(n, types.ModuleType(n))
    mod = sys.modules[names[-1]]
    FakeModelCheckpoint.__module__ = names[-1]
    FakeModelCheckpoint.__qualname__ = FakeModelCheckpoint.__name__ = "ModelCheckpoint"
    mod.ModelCheckpoint = FakeModelCheckpoint


def nested_checkpoint(gen):
    install_fake_lightning()
    cb = FakeModelCheckpoint()
    cb.monitor = None
    cb.best_model_score = np.float64(0.25)
    cb.dirpath = "logs/checkpoints"
    return {
        "state_dict": {
            "model.diffusion_model.out.weight": torch.randn(2, 3, generator=gen),
            "model.diffusion_model.out.bias": torch.randn(2, generator=gen).half(),
            "cond_stage_model.position_ids": torch.arange(5, dtype=torch.int64).view(1, 5),
        },
        "global_step": 5,
        "epoch": 1,
        "callbacks": {"ModelCheckpoint": cb},
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "ignored_set": {1, 2},
    }


def a1111_embedding(gen, old_style):
    vec = torch.randn(2, 8, generator=gen)
    if old_style:
        params = torch.nn.ParameterDict()
        params["*"] = torch.nn.Parameter(vec)
    else:
        params = {"*": torch.nn.Parameter(vec)}
    return {
        "string_to_token": {"*": 265},
        "string_to_param": params,
        "name": "myemb",
        "step": 500,
        "sd_checkpoint": "abc12345",
        "sd_checkpoint_name": None,
    }


def crafted_zip(path, prefix, pickle_bytes, records=None):
    """A torch-like zip whose data.pkl is `pickle_bytes` (made by hand, never loaded)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in [("data.pkl", pickle_bytes), ("byteorder", b"little")] + (records or []):
            info = zipfile.ZipInfo(f"{prefix}/{name}", date_time=(1980, 1, 1, 0, 0, 0))
            z.writestr(info, data)
        info = zipfile.ZipInfo(f"{prefix}/version", date_time=(1980, 1, 1, 0, 0, 0))
        z.writestr(info, b"3\n")


def malicious_pickle():
    # PROTO 2; GLOBAL 'os system'; BINUNICODE 'echo pwned'; TUPLE1; REDUCE; STOP
    cmd = b"echo pwned"
    return (b"\x80\x02" + b"cos\nsystem\n" + b"X" + struct.pack("<I", len(cmd)) + cmd +
            b"\x85" + b"R" + b".")


# ---- expected values ----

def tensor_entry(path, t, flat):
    c = t.detach().contiguous()
    # view(uint8) refuses 0-d tensors, hence the reshape
    raw = c.reshape(-1).view(torch.uint8).numpy().tobytes() if c.numel() else b""
    return {"path": path, "flat": flat, "dtype": ST_DTYPE[c.dtype], "shape": list(c.shape),
            "hex": raw.hex()}


def walk(obj, path, flat_ok, out):
    if isinstance(obj, torch.Tensor):
        flat = ".".join(path) if flat_ok else None
        out["tensors"].append(tensor_entry(path, obj, flat))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            walk(v, path + [str(k)], flat_ok, out)
    elif isinstance(obj, torch.nn.Module):
        # torch.load rebuilds the module; its pickled state holds _parameters
        walk({"_parameters": dict(obj._parameters)}, path, False, out)
    elif obj is None:
        out["values"].append({"path": path, "kind": "none", "value": None})
    elif isinstance(obj, bool):
        out["values"].append({"path": path, "kind": "bool", "value": obj})
    elif isinstance(obj, int):
        out["values"].append({"path": path, "kind": "int", "value": obj})
    elif isinstance(obj, float) and not isinstance(obj, np.floating):
        out["values"].append({"path": path, "kind": "float", "value": obj})
    elif isinstance(obj, str):
        out["values"].append({"path": path, "kind": "str", "value": obj})


def expected_for(obj):
    out = {"tensors": [], "values": []}
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        # flattening unwraps a top-level state_dict; other keys are left to the caller
        for k, v in obj.items():
            if k == "state_dict":
                sub = {"tensors": [], "values": []}
                walk(v, [], True, sub)
                for e in sub["tensors"]:
                    e["path"] = ["state_dict"] + e["path"]
                for e in sub["values"]:
                    e["path"] = ["state_dict"] + e["path"]
                out["tensors"] += sub["tensors"]
                out["values"] += sub["values"]
            else:
                sub = {"tensors": [], "values": []}
                walk(v, [k], False, sub)
                out["tensors"] += sub["tensors"]
                out["values"] += sub["values"]
    else:
        walk(obj, [], True, out)
    return out


class _StorageCollector(pickle.Unpickler):
    """Reads a legacy main pickle only to list its storages (key -> element size, count); every
    global is replaced by an inert stand-in, so nothing from the file runs."""

    class Inert:
        def __init__(self, *args, **kwargs):
            pass

        def __setstate__(self, state):
            pass

    def __init__(self, f):
        super().__init__(f)
        self.storages = {}

    def find_class(self, module, name):
        if module == "torch" and name.endswith("Storage"):
            return getattr(torch, name)
        if module == "collections" and name == "OrderedDict":
            return dict
        return _StorageCollector.Inert

    def persistent_load(self, pid):
        _tag, storage_type, key, _location, numel, _view = pid
        self.storages[key] = (storage_type.dtype.itemsize, numel)
        return None


def rewrite_legacy_keys(path):
    """Legacy files name storages by their memory address (str(storage._cdata)) and store them
    in the sorted order of those names, so bytes change per run. Renames each key to its
    first-appearance index and rewrites the key list and the storage blocks in the sorted
    order of the new names, which is what torch would write had it used these names."""
    with open(path, "rb") as f:
        data = f.read()
    fobj = io.BytesIO(data)
    for _ in range(3):  # magic number, protocol version, sys_info
        pickle.load(fobj)
    main_start = fobj.tell()
    collector = _StorageCollector(fobj)
    collector.load()
    main_end = fobj.tell()
    keys = pickle.load(fobj)
    blocks = {}
    for key in keys:
        elem, numel = collector.storages[key]
        (count,) = struct.unpack("<q", fobj.read(8))
        if count != numel:
            raise SystemExit(f"FAILED: {path}: storage {key} holds {count}, expected {numel}")
        blocks[key] = struct.pack("<q", count) + fobj.read(count * elem)
    if fobj.read():
        raise SystemExit(f"FAILED: {path}: bytes after the last storage")
    main = data[main_start:main_end]
    order = {}
    for op, arg, _pos in pickletools.genops(main):
        if op.name == "BINUNICODE" and arg in collector.storages and arg not in order:
            order[arg] = str(len(order))
    if len(order) != len(keys):
        raise SystemExit(f"FAILED: {path}: could not find every storage key")
    for old, new in order.items():
        main = main.replace(b"X" + struct.pack("<I", len(old)) + old.encode(),
                            b"X" + struct.pack("<I", len(new)) + new.encode())
    renamed = {order[k]: v for k, v in blocks.items()}
    new_keys = sorted(renamed)
    out = data[:main_start] + main + pickle.dumps(new_keys, protocol=2)
    out += b"".join(renamed[k] for k in new_keys)
    with open(path, "wb") as f:
        f.write(out)


def zero_serialization_id(path):
    """torch.save writes a random 40-digit `.data/serialization_id`; sets it to forty '0's and
    fixes its CRC where torch keeps it (data descriptor and central directory; the local
    header's CRC stays 0, as torch writes it), so the file is what torch.save would have
    written with that id, byte for byte."""
    new = b"0" * 40
    crc = struct.pack("<I", zlib.crc32(new) & 0xFFFFFFFF)
    with open(path, "r+b") as f:
        zf = zipfile.ZipFile(f)
        (info,) = [i for i in zf.infolist() if i.filename.endswith("/.data/serialization_id")]
        assert info.compress_type == zipfile.ZIP_STORED and info.file_size == 40
        f.seek(info.header_offset)
        local = f.read(30)
        n, m = struct.unpack_from("<HH", local, 26)
        data_at = info.header_offset + 30 + n + m
        f.seek(data_at + 40)
        assert f.read(4) == b"PK\x07\x08"
        f.seek(data_at)
        f.write(new)
        f.seek(data_at + 44)
        f.write(crc)
        pos = zf.start_dir
        for _ in range(len(zf.infolist())):
            f.seek(pos)
            entry = f.read(46)
            n, m, k = struct.unpack_from("<HHH", entry, 28)
            if f.read(n).decode() == info.filename:
                f.seek(pos + 16)
                f.write(crc)
                return
            pos += 46 + n + m + k
        raise SystemExit(f"FAILED: {path}: serialization_id not in the central directory")


def save(obj, name, legacy=False, protocol=2):
    path = os.path.join(OUT, name)
    if legacy:
        torch.save(obj, path, _use_new_zipfile_serialization=False, pickle_protocol=protocol)
        rewrite_legacy_keys(path)
    else:
        torch.save(obj, path, pickle_protocol=protocol)
        zero_serialization_id(path)
    return path


def check_loads_back(path, obj, weights_only=True):
    back = torch.load(path, map_location="cpu", weights_only=weights_only)
    want, got = expected_for(obj), expected_for(back)
    if want != got:
        raise SystemExit(f"FAILED: {path} does not read back as written")


def main():
    warnings.filterwarnings("ignore", message=".*TypedStorage is deprecated.*")
    warnings.filterwarnings("ignore", message=".*Detected pickle protocol.*")
    torch.manual_seed(0)
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    os.makedirs(CORPUS, exist_ok=True)
    gen = torch.Generator().manual_seed(1234)
    expected = {}

    plain = plain_state_dict(gen)
    files = {
        "plain.pt": (plain, {}),
        "plain_legacy.pt": (plain, {"legacy": True}),
        "plain_proto4.pt": ({"alpha": torch.randn(3, generator=gen), "beta": {"gamma": 2.5, "ok": True},
                             "delta": [1, "two", None]}, {"protocol": 4, "weights_only": False}),
        "kohya_emb.pt": ({"emb_params": torch.randn(2, 8, generator=gen)}, {}),
        "a1111_emb.pt": (a1111_embedding(gen, False), {}),
        "a1111_old_emb.pt": (a1111_embedding(gen, True), {"weights_only": False}),
        "diffusers_emb.bin": ({"<cat-toy>": torch.randn(8, generator=gen)}, {}),
        "nested.ckpt": (nested_checkpoint(gen), {"weights_only": False}),
        "nested_legacy.ckpt": (None, {"legacy": True, "weights_only": False}),
    }
    files["nested_legacy.ckpt"] = (files["nested.ckpt"][0], files["nested_legacy.ckpt"][1])
    for name, (obj, opts) in files.items():
        path = save(obj, name, legacy=opts.get("legacy", False), protocol=opts.get("protocol", 2))
        check_loads_back(path, obj, weights_only=opts.get("weights_only", True))
        expected[name] = expected_for(obj)

    # Bad inputs: a pickle naming os.system (built by hand, never loaded).
    crafted_zip(os.path.join(OUT, "malicious.pt"), "malicious", malicious_pickle())
    # A pickle pointing at data/3, which the archive lacks: the kohya file's pickle with its
    # storage key renamed, and its real record dropped.
    with zipfile.ZipFile(os.path.join(OUT, "kohya_emb.pt")) as z:
        pkl = z.read("kohya_emb/data.pkl")
    bad = pkl.replace(b"X\x01\x00\x00\x000", b"X\x01\x00\x00\x003")
    assert bad != pkl
    crafted_zip(os.path.join(OUT, "missing_record.pt"), "missing_record", bad)
    # The same pickle with its record present but 4 bytes short of the tensor's extent.
    with zipfile.ZipFile(os.path.join(OUT, "kohya_emb.pt")) as z:
        rec = z.read("kohya_emb/data/0")
    crafted_zip(os.path.join(OUT, "storage_too_small.pt"), "storage_too_small", pkl,
                [("data/0", rec[:-4])])

    # Seed corpus for the unpickler fuzzer: every data.pkl (and the legacy files whole).
    for name in files:
        path = os.path.join(OUT, name)
        stem = os.path.splitext(name)[0]
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                data = z.read(f"{stem}/data.pkl")
        else:
            with open(path, "rb") as f:
                data = f.read()
        with open(os.path.join(CORPUS, stem + ".pkl"), "wb") as f:
            f.write(data)
    with open(os.path.join(CORPUS, "malicious.pkl"), "wb") as f:
        f.write(malicious_pickle())
    # ... and the files whole, for the torch reader behind the same target.
    for name in list(files) + ["malicious.pt", "missing_record.pt", "storage_too_small.pt"]:
        with open(os.path.join(OUT, name), "rb") as src, \
                open(os.path.join(CORPUS, "file_" + name), "wb") as dst:
            dst.write(src.read())

    # Plain pickles of every protocol (text opcodes in 0 and 1, frames in 4 and 5).
    plain_obj = {"text": "héllo \u20ac\n'q'", "int": 7, "neg": -300000, "big": 2**40 + 1,
                 "huge_neg": -(2**62), "float": -1.25, "none": None, "yes": True,
                 "nested": {"list": [1, "two", 3.5], "tuple": (1, 2, 3, 4), 5: "five"},
                 "od": OrderedDict([("z", 1), ("a", 2)])}
    plain_values = expected_for(plain_obj)["values"]
    for proto in range(6):
        with open(os.path.join(OUT, f"proto{proto}.pkl"), "wb") as f:
            f.write(pickle.dumps(plain_obj, protocol=proto))
        with open(os.path.join(CORPUS, f"proto{proto}.pkl"), "wb") as f:
            f.write(pickle.dumps(plain_obj, protocol=proto))

    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump({"torch_version": torch.__version__, "files": expected,
                   "pickle_values": plain_values}, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files, {total} bytes, into {OUT}")


if __name__ == "__main__":
    main()
