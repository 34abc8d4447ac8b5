"""Writes the TI embedding-file and TI-token fixtures into tests/fixtures/embeddings/.

Run with the reference venv:  build/refvenv/bin/python tools/reference/make_embedding_fixtures.py

Embedding files, each written the way its tool writes it (facts: ../shared/reference/
kohya-ti-facts.md section 3, confirmed in the sources named at each writer below):
  kohya-sd1.safetensors       kohya sd-scripts train_textual_inversion.py save_weights:
                              save_file({"emb_params": [N, dim]}, metadata) with the modelspec
                              metadata of library/train_util.py get_sai_model_spec ->
                              library/sai_model_spec.py build_metadata (textual_inversion=True)
  kohya-sd1-fp16.pt           the same trainer with .pt and --save_precision fp16:
                              torch.save({"emb_params": t.half()})
  kohya-sd2-bf16.safetensors  SD2 width (1024), --save_precision bf16, --v2
  a1111-sd1.pt                A1111 modules/textual_inversion/textual_inversion.py
                              Embedding.save: torch.save of its dict (string_to_token,
                              string_to_param {'*': vec}, name, step, sd_checkpoint,
                              sd_checkpoint_name), vec requires_grad as after training
  a1111-sd1-legacy.pt         the same, _use_new_zipfile_serialization=False
  a1111-paramdict.pt          an early A1111 file: string_to_param is a torch.nn.ParameterDict
                              (the module pickled whole, as A1111 in 2022 saved it)
  a1111-zero.pt               A1111 create_embedding with an empty init text: all-zero vectors
  a1111-multi.pt              string_to_param with two terms (A1111 refuses it)
  single-star.safetensors     a single-tensor safetensors file ({"*": [N, dim]}, no metadata),
                              as converters write A1111 embeddings
  diffusers/learned_embeds.safetensors  diffusers examples/textual_inversion save_progress:
                              {placeholder_token: rows}, metadata {"format": "pt"}
  diffusers/learned_embeds.bin  the same with --no_safe_serialization: torch.save of a CPU
                              slice of the whole embedding matrix (a view with a storage offset)
  concept-768.bin             sd-concepts-library style: {token: tensor[768]} (one vector, 1-D)
  sdxl.safetensors            kohya sdxl_train_textual_inversion.py: {"clip_g", "clip_l"}
expected.json: for each file what the Python libraries read from it (key, shape, dtype, A1111
fields, safetensors metadata); expected.safetensors: each file's vectors as float32 [N, dim]
(name = the file's path under tests/fixtures/embeddings/).

TI tokens (ti_tokens.json + ti_tokens.safetensors), run exactly as kohya's
TextualInversionTrainer.train does on the tiny fixture models (tests/fixtures/models/
sd{1,2}-tiny/diffusers, transformers' slow CLIPTokenizer): init_word encoded before the tokens
are added, tokenizer.add_tokens(token_strings), convert_tokens_to_ids, resize_token_embeddings,
token_embeds[token_id] = token_embeds[init_ids[i % len(init_ids)]]; the new rows are saved.
Captions are rewritten with str.replace(token_string, " ".join(token_strings)) and tokenized
with the new tokens. Refusals: tokenizer.add_tokens' count for strings the vocabulary knows.

Deterministic: fixed seeds, TZ=UTC for the modelspec date, torch.save's random
`.data/serialization_id` rewritten to zeros. One exception: the safetensors library keeps
__metadata__ in a Rust HashMap, so kohya-*.safetensors list their metadata keys in a random
order when regenerated (the script keeps the previous bytes when only that order differs);
the C tests read the order from the file they compare with.
Also seeds the embedding fuzzer's corpus (tests/fuzz/corpus/embedding/).
"""

import datetime
import json
import os
import shutil
import sys
import time

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_torch_fixtures import rewrite_legacy_keys, zero_serialization_id  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "embeddings")
MODELS = os.path.join(ROOT, "tests", "fixtures", "models")
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus", "embedding")

os.environ["TZ"] = "UTC"
time.tzset()
torch.set_num_threads(1)

ST_DTYPE = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32"}
KOHYA_HEAD = "48d368fa"  # the sd-scripts commit the facts were read from
TIMESTAMP = 1767225600.0  # 2026-01-01T00:00:00 UTC


def kohya_ti_metadata(title, v2=False, v_param=False, resolution="512", clip_skip=None,
                      timesteps=None):
    """The metadata dict get_sai_model_spec(None, args, sdxl=False, lora=False,
    textual_inversion=True) returns (library/train_util.py), built as sai_model_spec.py's
    build_metadata_dataclass + ModelSpecMetadata.to_metadata_dict do: dataclass field order,
    None fields dropped, implementation_version added through additional_fields."""
    arch = ("stable-diffusion-v2-768-v" if v_param else "stable-diffusion-v2-512") if v2 \
        else "stable-diffusion-v1"
    reso = tuple(int(x) for x in resolution.split(","))
    if len(reso) == 1:
        reso = (reso[0], reso[0])
    md = {
        "modelspec.architecture": arch + "/textual-inversion",
        "modelspec.implementation": "https://github.com/Stability-AI/generative-models",
        "modelspec.title": title,
        "modelspec.resolution": f"{reso[0]}x{reso[1]}",
        "modelspec.sai_model_spec": "1.0.1",
        "modelspec.date": datetime.datetime.fromtimestamp(int(TIMESTAMP)).isoformat(),
        "modelspec.prediction_type": "v" if v_param else "epsilon",
    }
    if timesteps is not None:
        md["modelspec.timestep_range"] = f"{timesteps[0]},{timesteps[1]}"
    if clip_skip is not None:
        md["modelspec.encoder_layer"] = f"{clip_skip}"
    md["modelspec.implementation_version"] = f"sd-scripts/{KOHYA_HEAD}"
    return md


def a1111_dict(vec, name, step, sd_checkpoint, sd_checkpoint_name, terms=None):
    """Embedding.save's dict, in its key order."""
    return {
        "string_to_token": {"*": 265},
        "string_to_param": terms if terms is not None else {"*": vec},
        "name": name,
        "step": step,
        "sd_checkpoint": sd_checkpoint,
        "sd_checkpoint_name": sd_checkpoint_name,
    }


def torch_save_file(obj, path):
    """torch.save (zip), reproducibly: the random `.data/serialization_id` set to zeros where
    torch keeps its CRC (make_torch_fixtures.zero_serialization_id)."""
    torch.save(obj, path)
    zero_serialization_id(path)


def torch_save_legacy(obj, path):
    """torch.save(_use_new_zipfile_serialization=False) with its memory-address storage keys
    renumbered (make_torch_fixtures.rewrite_legacy_keys); checked to load as saved."""
    torch.save(obj, path, _use_new_zipfile_serialization=False)
    rewrite_legacy_keys(path)
    back = torch.load(path, weights_only=False)
    assert repr(back) == repr(obj), "legacy key renumbering changed the object"


OLD_FILES = {}


def save_file_stable(tensors, path, metadata=None):
    """safetensors save_file; when the previous fixture holds the same tensors and metadata in
    another metadata order (the library's HashMap order is random per process), the previous
    bytes are kept, so regenerating does not churn the files."""
    save_file(tensors, path, metadata)
    old = OLD_FILES.get(os.path.relpath(path, OUT))
    if old is None:
        return
    with open(path, "rb") as f:
        new = f.read()

    def parts(b):
        n = int.from_bytes(b[:8], "little")
        return json.loads(b[8:8 + n]), b[8 + n:]

    if parts(old) == parts(new):
        with open(path, "wb") as f:
            f.write(old)


def main():
    if os.path.isdir(OUT):
        for dirpath, _, names in os.walk(OUT):
            for fn in names:
                if fn.endswith(".safetensors"):
                    with open(os.path.join(dirpath, fn), "rb") as f:
                        OLD_FILES[os.path.relpath(os.path.join(dirpath, fn), OUT)] = f.read()
        shutil.rmtree(OUT)
    os.makedirs(os.path.join(OUT, "diffusers"))
    gen = torch.Generator().manual_seed(20260101)

    def randn(*shape):
        return torch.randn(*shape, generator=gen) * 0.02

    files = {}

    # kohya SD1, fp32 safetensors (3 vectors, width 8 = the tiny models' width).
    t = randn(3, 8)
    md = kohya_ti_metadata("kohya-sd1", clip_skip=2)
    save_file_stable({"emb_params": t.contiguous()}, os.path.join(OUT, "kohya-sd1.safetensors"), md)
    # kohya .pt with --save_precision fp16.
    torch_save_file({"emb_params": randn(3, 8).detach().clone().to("cpu").to(torch.float16)},
                    os.path.join(OUT, "kohya-sd1-fp16.pt"))
    # kohya SD2 (1024 wide), bf16, v2 + v-parameterization metadata.
    save_file_stable({"emb_params": randn(2, 1024).to(torch.bfloat16)},
              os.path.join(OUT, "kohya-sd2-bf16.safetensors"),
              kohya_ti_metadata("kohya-sd2-bf16", v2=True, v_param=True, resolution="768,768",
                                timesteps=(0, 1000)))

    # A1111 after training: vec requires grad, step and checkpoint recorded.
    vec = randn(4, 8).requires_grad_(True)
    d = a1111_dict(vec, "a1111-sd1", 500, "a1b2c3d4e5", "sd1-tiny")
    torch_save_file(d, os.path.join(OUT, "a1111-sd1.pt"))
    vec2 = randn(2, 8).requires_grad_(True)
    torch_save_legacy(a1111_dict(vec2, "a1111-sd1-legacy", 1200, "0badc0de", "sd1-tiny [0badc0de]"),
                      os.path.join(OUT, "a1111-sd1-legacy.pt"))
    pd = torch.nn.ParameterDict({"*": torch.nn.Parameter(randn(1, 8))})
    torch_save_file(a1111_dict(None, "a1111-paramdict", 50, None, None, terms=pd),
                      os.path.join(OUT, "a1111-paramdict.pt"))
    # create_embedding with an empty init text: torch.zeros, step 0, never trained.
    torch_save_file(a1111_dict(torch.zeros(2, 8), "a1111-zero", 0, None, None),
                    os.path.join(OUT, "a1111-zero.pt"))
    torch_save_file(a1111_dict(None, "a1111-multi", 10, None, None,
                               terms={"*": randn(1, 8), "+": randn(1, 8)}),
                    os.path.join(OUT, "a1111-multi.pt"))
    save_file({"*": randn(2, 8)}, os.path.join(OUT, "single-star.safetensors"))

    # diffusers example trainer (examples/textual_inversion/textual_inversion.py save_progress).
    save_file({"<cat-toy>": randn(2, 8)}, os.path.join(OUT, "diffusers", "learned_embeds.safetensors"),
              metadata={"format": "pt"})
    matrix = randn(12, 8)  # the token-embedding matrix; the placeholder rows are 9..10
    torch_save_file({"<cat-toy>": matrix[9:11].detach().cpu()},
                    os.path.join(OUT, "diffusers", "learned_embeds.bin"))
    torch_save_file({"<concept>": randn(768)}, os.path.join(OUT, "concept-768.bin"))
    save_file({"clip_g": randn(2, 16), "clip_l": randn(2, 8)}, os.path.join(OUT, "sdxl.safetensors"))

    # What the libraries read back.
    expected = {}
    values = {}
    from safetensors import safe_open
    for dirpath, _, names in os.walk(OUT):
        for fn in sorted(names):
            path = os.path.join(dirpath, fn)
            rel = os.path.relpath(path, OUT)
            if fn.startswith("expected") or fn.startswith("ti_tokens"):
                continue
            entry = {}
            if fn.endswith(".safetensors"):
                with safe_open(path, framework="pt") as f:
                    entry["metadata"] = f.metadata() or {}
                    data = {k: f.get_tensor(k) for k in f.keys()}
            else:
                data = torch.load(path, map_location="cpu", weights_only=False)
                entry["metadata"] = {}
            if "string_to_param" in data:
                terms = data["string_to_param"]
                terms = getattr(terms, "_parameters", terms)
                entry["keys"] = list(terms.keys())
                for k in ("name", "step", "sd_checkpoint", "sd_checkpoint_name"):
                    entry[k] = data.get(k)
                tensor = next(iter(terms.values()))
            else:
                entry["keys"] = list(data.keys())
                tensor = next(iter(data.values()))
            entry["shape"] = list(tensor.shape)
            entry["dtype"] = ST_DTYPE[tensor.dtype]
            if len(entry["keys"]) == 1:
                values[rel] = tensor.detach().float().reshape(-1, tensor.shape[-1]).contiguous()
            expected[rel] = entry
    save_file(values, os.path.join(OUT, "expected.safetensors"))
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")

    ti_tokens()

    if os.path.isdir(CORPUS):
        shutil.rmtree(CORPUS)
    os.makedirs(CORPUS)
    for rel in expected:
        shutil.copy(os.path.join(OUT, rel), os.path.join(CORPUS, rel.replace("/", "-")))

    total = 0
    for dirpath, _, names in os.walk(OUT):
        for fn in names:
            total += os.path.getsize(os.path.join(dirpath, fn))
    print(f"wrote {OUT}: {total} bytes")


def expected_rows(fn):
    with open(os.path.join(OUT, "expected.json")) as f:
        return json.load(f)[fn]["shape"][0]


def ti_tokens():
    from transformers import CLIPTextModel, CLIPTokenizer

    cases = [
        # (model, token_string, num_vectors, init_word)
        ("sd1-tiny", "mychar", 4, "girl"),            # one init token: copied to every row
        ("sd1-tiny", "xyzstyle", 5, "red car"),       # two tokens, cycled over five rows
        ("sd1-tiny", "qwzx", 2, "a photo of a cat"),  # five tokens, truncated to two rows
        ("sd1-tiny", "zzsolo", 1, "dog"),             # one vector: captions unchanged
        ("sd2-tiny", "mychar", 3, "a painting"),      # SD2 (pads with "!")
    ]
    captions = [
        "a photo of mychar, mychar in the park",
        "mycharacter and xyzstyle art by qwzx",
        "zzsolo zzsolos",
        "no trigger here",
    ]
    refuse = ["cat", "photo", "photo</w>", "<|endoftext|>", "sks", "mychar", "zzz9"]

    out = {"cases": [], "refusals": {}}
    rows = {}
    for ci, (model, token_string, n, init_word) in enumerate(cases):
        base = os.path.join(MODELS, model, "diffusers")
        tokenizer = CLIPTokenizer.from_pretrained(os.path.join(base, "tokenizer"))
        te = CLIPTextModel.from_pretrained(os.path.join(base, "text_encoder"))
        init_ids = tokenizer.encode(init_word, add_special_tokens=False)
        token_strings = [token_string] + [f"{token_string}{i + 1}" for i in range(n - 1)]
        added = tokenizer.add_tokens(token_strings)
        assert added == n
        ids = tokenizer.convert_tokens_to_ids(token_strings)
        assert len(tokenizer) - 1 == ids[-1]
        te.resize_token_embeddings(len(tokenizer))
        embeds = te.get_input_embeddings().weight.data
        for i, token_id in enumerate(ids):
            embeds[token_id] = embeds[init_ids[i % len(init_ids)]]
        rows[f"case{ci}"] = embeds[ids[0]:ids[-1] + 1].clone().contiguous()
        replace_to = " ".join(token_strings)
        caps = []
        for c in captions:
            rewritten = c.replace(token_string, replace_to) if n > 1 else c
            caps.append({"caption": c, "rewritten": rewritten,
                         "ids": tokenizer.encode(rewritten, add_special_tokens=False)})
        out["cases"].append({"model": model, "token_string": token_string, "num_vectors": n,
                             "init_word": init_word, "init_ids": init_ids,
                             "token_strings": token_strings, "token_ids": ids,
                             "vocab_size": len(tokenizer), "replace_to": replace_to,
                             "captions": caps, "rows": f"case{ci}"})
    tokenizer = CLIPTokenizer.from_pretrained(os.path.join(MODELS, "sd1-tiny", "diffusers", "tokenizer"))
    for s in refuse:
        t = CLIPTokenizer.from_pretrained(os.path.join(MODELS, "sd1-tiny", "diffusers", "tokenizer"))
        out["refusals"][s] = t.add_tokens([s])
    out["empty_init_ids"] = {w: tokenizer.encode(w, add_special_tokens=False) for w in ["", "   "]}

    # Embeddings used in prompts, as kohya's gen_img_diffusers.py --textual_inversion_embeddings
    # does it: token string = file stem, tokens stem, stem1, ... added per file in order, the
    # vector count from the file; a prompt's ids then go through replace_token, which turns
    # each file's first id into all of its ids.
    tokenizer = CLIPTokenizer.from_pretrained(os.path.join(MODELS, "sd1-tiny", "diffusers", "tokenizer"))
    files = ["kohya-sd1.safetensors", "a1111-sd1.pt", "single-star.safetensors"]
    replacements = {}
    emb_out = []
    for fn in files:
        n = expected_rows(fn)
        stem = os.path.splitext(fn)[0]
        names = [stem] + [f"{stem}{i + 1}" for i in range(n - 1)]
        assert tokenizer.add_tokens(names) == n
        ids = tokenizer.convert_tokens_to_ids(names)
        if n > 1:
            replacements[ids[0]] = ids
        emb_out.append({"file": fn, "token_strings": names, "token_ids": ids})
    prompts = ["a photo of kohya-sd1 with a1111-sd1, single-star",
               "kohya-sd11 alone, a1111-sd1a1111-sd1 twice", "none here"]
    out["prompt_embeddings"] = {"files": emb_out, "prompts": []}
    for p in prompts:
        ids = tokenizer.encode(p, add_special_tokens=False)
        expanded = []
        for t in ids:  # replace_token
            expanded.extend(replacements.get(t, [t]))
        out["prompt_embeddings"]["prompts"].append({"prompt": p, "ids": ids, "expanded": expanded})
    save_file(rows, os.path.join(OUT, "ti_tokens.safetensors"))
    with open(os.path.join(OUT, "ti_tokens.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
