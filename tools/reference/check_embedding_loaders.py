"""Loads embedding files written by sdti with the loaders people use them in, unchanged.

Run with the reference venv, after building sdti:
    build/refvenv/bin/python tools/reference/check_embedding_loaders.py [path/to/sdti]

For every readable fixture of tests/fixtures/embeddings/ (written by kohya's, A1111's and
diffusers' own saving code) and every layout sdti writes, runs `sdti convert` and loads the
result with:
  diffusers  StableDiffusionPipeline.load_textual_inversion (diffusers 0.36,
             src/diffusers/loaders/textual_inversion.py) into the tiny SD1 fixture pipeline's
             tokenizer and text encoder (8 wide; wider files are skipped there), then encodes a
             prompt using the token;
  A1111      the exact checks of AUTOMATIC1111/stable-diffusion-webui, reproduced here:
             modules/safe.py (the safe unpickler torch.load goes through by default):
               check_pt -> check_zip_filenames (record names allowed by allowed_zip_names_re, as
               in commit 0593384 and in the later form that also allows byteorder and
               .data/serialization_id) and RestrictedUnpickler.find_class's allow-list;
             modules/textual_inversion/textual_inversion.py EmbeddingDatabase.load_from_file
               (commit 22ecb78b): extension dispatch, the string_to_param / SDXL / diffusers-
               concept branches with their asserts, step / sd_checkpoint / sd_checkpoint_name,
               the name from the file stem, the vector count and width;
  kohya      TextualInversionTrainer.load_weights (train_textual_inversion.py): safetensors
             first value, or torch.load -> dict -> string_to_param -> first value, 1-D unsqueezed.
Every load must give exactly the source's vectors (torch's reading of the fixture). A failure
prints FAILED and the script exits non-zero. The tools' own files are also run through the
A1111 checks, to show which of them A1111's safe unpickler refuses.
"""

import collections
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

import torch
from safetensors.torch import load_file

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
FIX = os.path.join(ROOT, "tests", "fixtures", "embeddings")
SD1 = os.path.join(ROOT, "tests", "fixtures", "models", "sd1-tiny", "diffusers")

SOURCES = ["kohya-sd1.safetensors", "kohya-sd1-fp16.pt", "kohya-sd2-bf16.safetensors",
           "a1111-sd1.pt", "a1111-sd1-legacy.pt", "a1111-paramdict.pt", "single-star.safetensors",
           "diffusers/learned_embeds.safetensors", "diffusers/learned_embeds.bin", "concept-768.bin"]
# (output name, sdti convert options)
OUTPUTS = [("kohya.safetensors", []), ("kohya.pt", ["--format", "kohya"]),
           ("a1111.pt", []), ("learned_embeds.bin", []),
           ("learned_embeds.safetensors", ["--format", "diffusers"])]

failures = []


def fail(msg):
    failures.append(msg)
    print("FAILED:", msg)


# ---- A1111, modules/safe.py ----
A1111_ZIP_NAMES = {
    "safe.py@0593384": re.compile(r"^([^/]+)/((data/\d+)|version|(data\.pkl))$"),
    "later safe.py": re.compile(r"^([^/]+)/((data/\d+)|version|byteorder|.data/serialization_id|(data\.pkl))$"),
}
A1111_GLOBALS = {
    ("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_device_tensor_from_numpy"),
    ("torch", "FloatStorage"), ("torch", "HalfStorage"), ("torch", "IntStorage"),
    ("torch", "LongStorage"), ("torch", "DoubleStorage"), ("torch", "ByteStorage"),
    ("torch", "float32"), ("torch", "BFloat16Storage"),
    ("torch.nn.modules.container", "ParameterDict"), ("numpy.core.multiarray", "scalar"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy", "dtype"), ("numpy", "ndarray"),
    ("_codecs", "encode"), ("__builtin__", "set"),
}


class A1111Unpickler(pickle.Unpickler):
    """RestrictedUnpickler: storages become placeholders, only the allow-listed globals."""

    def persistent_load(self, saved_id):
        assert saved_id[0] == "storage"
        return None

    def find_class(self, module, name):
        if (module, name) in A1111_GLOBALS:
            if module == "collections":
                return collections.OrderedDict
            return lambda *a, **k: None
        raise Exception(f"global '{module}/{name}' is forbidden")


def a1111_check_pt(path, names_re):
    """safe.check_pt: zip record names, then the pickle through the restricted unpickler; a
    non-zip file is read as five legacy pickles."""
    try:
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                if not names_re.match(name):
                    raise Exception(f"bad file inside {path}: {name}")
            pkls = [f for f in z.namelist() if re.match(r"^([^/]+)/data\.pkl$", f)]
            if len(pkls) != 1:
                raise Exception(f"{len(pkls)} data.pkl in {path}")
            with z.open(pkls[0]) as f:
                A1111Unpickler(f).load()
    except zipfile.BadZipFile:
        with open(path, "rb") as f:
            u = A1111Unpickler(f)
            for _ in range(5):
                u.load()


def a1111_load_from_file(path, filename, safe_re):
    """EmbeddingDatabase.load_from_file's reading and checks (22ecb78b), with torch.load going
    through safe.load as in the web UI. Returns (name, vec, vectors, shape, step, ckpt, ckpt_name)."""
    name, ext = os.path.splitext(filename)
    ext = ext.upper()
    if ext in [".BIN", ".PT"]:
        a1111_check_pt(path, safe_re)
        data = torch.load(path, map_location="cpu", weights_only=False)
    elif ext in [".SAFETENSORS"]:
        data = load_file(path, device="cpu")
    else:
        raise Exception(f"A1111 ignores {ext} files")
    if "string_to_param" in data:
        param_dict = data["string_to_param"]
        param_dict = getattr(param_dict, "_parameters", param_dict)
        assert len(param_dict) == 1, "embedding file has multiple terms in it"
        emb = next(iter(param_dict.items()))[1]
        vec = emb.detach().to("cpu", dtype=torch.float32)
        shape, vectors = vec.shape[-1], vec.shape[0]
    elif type(data) == dict and "clip_g" in data and "clip_l" in data:
        raise Exception("SDXL embedding")
    elif type(data) == dict and type(next(iter(data.values()))) == torch.Tensor:
        assert len(data.keys()) == 1, "embedding file has multiple terms in it"
        emb = next(iter(data.values()))
        if len(emb.shape) == 1:
            emb = emb.unsqueeze(0)
        vec = emb.detach().to("cpu", dtype=torch.float32)
        shape, vectors = vec.shape[-1], vec.shape[0]
    else:
        raise Exception(f"Couldn't identify {filename} as neither textual inversion embedding nor diffuser concept.")
    return (name, vec, vectors, shape, data.get("step", None), data.get("sd_checkpoint", None),
            data.get("sd_checkpoint_name", None))


# ---- kohya, train_textual_inversion.py load_weights ----
def kohya_load_weights(path):
    if os.path.splitext(path)[1] == ".safetensors":
        data = load_file(path)
    else:
        data = torch.load(path, map_location="cpu")
        if type(data) != dict:
            raise ValueError("weight file is not dict")
        if "string_to_param" in data:
            data = data["string_to_param"]
            if hasattr(data, "_parameters"):
                data = getattr(data, "_parameters")
    emb = next(iter(data.values()))
    if type(emb) != torch.Tensor:
        raise ValueError("weight file does not contains Tensor")
    if len(emb.size()) == 1:
        emb = emb.unsqueeze(0)
    return emb


def reference(rel):
    """The source fixture's vectors [N, dim] as torch reads them, and its A1111 fields."""
    path = os.path.join(FIX, rel)
    if rel.endswith(".safetensors"):
        data = load_file(path)
    else:
        data = torch.load(path, map_location="cpu", weights_only=False)
    fields = (None, None, None)
    if "string_to_param" in data:
        fields = (data.get("step"), data.get("sd_checkpoint"), data.get("sd_checkpoint_name"))
        terms = data["string_to_param"]
        data = getattr(terms, "_parameters", terms)
    t = next(iter(data.values())).detach()
    return t.reshape(-1, t.shape[-1]), fields


def main():
    sdti = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "sdti")
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTextModel, CLIPTokenizer

    pipe = StableDiffusionPipeline.from_pretrained(SD1, safety_checker=None)
    work = tempfile.mkdtemp(prefix="sdti-emb-")
    counts = collections.Counter()
    try:
        print("the tools' own files through A1111's checks:")
        for rel in SOURCES:
            for era, rx in A1111_ZIP_NAMES.items():
                try:
                    a1111_load_from_file(os.path.join(FIX, rel), os.path.basename(rel), rx)
                    verdict = "loads"
                except Exception as e:  # noqa: BLE001 - the loader's own failure is the result
                    verdict = f"refused ({str(e).splitlines()[0][:90]})"
                print(f"  {rel:38s} A1111 {era:15s}: {verdict}")
        for si, rel in enumerate(SOURCES):
            ref, fields = reference(rel)
            stem = os.path.splitext(os.path.basename(rel))[0]
            for out_name, opts in OUTPUTS:
                sub = os.path.join(work, f"{si}-{out_name}")
                os.makedirs(sub)
                out = os.path.join(sub, out_name if out_name.startswith("learned") else f"{stem}.{out_name.split('.')[-1]}")
                r = subprocess.run([sdti, "convert", *opts, os.path.join(FIX, rel), out],
                                   capture_output=True, text=True,
                                   env={**os.environ, "SOURCE_DATE_EPOCH": "1767225600"})
                if r.returncode != 0:
                    fail(f"sdti convert {rel} -> {out_name}: {r.stderr.strip()}")
                    continue
                what = f"{rel} -> {out_name}"
                # kohya
                emb = kohya_load_weights(out)
                if not torch.equal(emb.float(), ref.float()) or emb.dtype != ref.dtype:
                    fail(f"kohya load_weights {what}: values or dtype differ")
                else:
                    counts["kohya"] += 1
                # A1111, both safe-unpickler eras
                for era, rx in A1111_ZIP_NAMES.items():
                    try:
                        name, vec, vectors, shape, step, ck, ckn = a1111_load_from_file(
                            out, os.path.basename(out), rx)
                    except Exception as e:  # noqa: BLE001
                        fail(f"A1111 ({era}) {what}: {str(e).splitlines()[0]}")
                        continue
                    ok = (torch.equal(vec, ref.float()) and vectors == ref.shape[0]
                          and shape == ref.shape[1] and name == os.path.splitext(os.path.basename(out))[0])
                    if out_name == "a1111.pt":
                        ok = ok and (step, ck, ckn) == fields
                    if not ok:
                        fail(f"A1111 ({era}) {what}: got {vectors}x{shape} '{name}' step {step} {ck} {ckn}")
                    else:
                        counts["a1111 " + era] += 1
                # diffusers (the tiny pipeline is 8 wide)
                if ref.shape[1] != 8:
                    continue
                tok = CLIPTokenizer.from_pretrained(os.path.join(SD1, "tokenizer"))
                te = CLIPTextModel.from_pretrained(os.path.join(SD1, "text_encoder"))
                token = "<sdti-tok>" if out_name.startswith("kohya") else None
                try:
                    pipe.load_textual_inversion(out, token=token, tokenizer=tok, text_encoder=te)
                except Exception as e:  # noqa: BLE001
                    fail(f"diffusers {what}: {e}")
                    continue
                added = [t for t in tok.get_added_vocab() if tok.get_added_vocab()[t] >= 49408]
                ids = sorted(tok.get_added_vocab()[t] for t in added)
                rows = te.get_input_embeddings().weight.data[ids]
                first = min(added, key=lambda t: tok.get_added_vocab()[t])
                prompt = pipe.maybe_convert_prompt(f"a photo of {first}", tok)
                enc = tok(prompt, return_tensors="pt").input_ids
                with torch.no_grad():
                    hidden = te(enc)[0]
                if (not torch.equal(rows, ref.float()) or len(ids) != ref.shape[0]
                        or not all(i in enc[0].tolist() for i in ids) or not torch.isfinite(hidden).all()):
                    fail(f"diffusers {what}: rows/ids differ ({len(ids)} tokens)")
                else:
                    counts["diffusers"] += 1
    finally:
        shutil.rmtree(work)
    print("loaded unchanged with every source's exact vectors:")
    for k, v in sorted(counts.items()):
        print(f"  {k:22s} {v} files")
    if failures:
        print(f"FAILED: {len(failures)} checks")
        sys.exit(1)
    print("all loads OK")


if __name__ == "__main__":
    main()
