"""Writes the CLIP text encoder reference fixtures into tests/fixtures/text_encoder/.

Run with the reference venv (offline):
    build/refvenv/bin/python tools/reference/make_text_encoder_fixtures.py

The text side of a kohya-ss sd-scripts TI step, reproduced with transformers 4.57's
CLIPTextModel + slow CLIPTokenizer on the tiny pipelines
(tests/fixtures/models/{sd1-tiny,sd2-tiny}/diffusers: 2 layers each, so clip_skip 1..3 are
all the values the model allows: hidden_states has layers + 1 entries):

  * two TI tokens added with kohya's names ("sdtitok", "sdtitok1") at ids 49408, 49409, the
    embedding matrix resized and the two new rows set to `extra_rows` (random, so a test sees
    whether they are used);
  * each prompt tokenized as kohya's SdTokenizeStrategy does (padding="max_length",
    truncation, max_length 77 or max_token_length + 2), then cut into 77-token chunks with
    kohya's rule (strategy_base.TokenizeStrategy._get_input_ids; SD2's pad differs from EOS,
    which selects its two chunk fix-ups);
  * encoded as SdTextEncodingStrategy.encode_tokens does: clip_skip None -> last_hidden_state,
    clip_skip k -> hidden_states[-k] then final_layer_norm; chunks joined (BOS of the first
    chunk, 75 states of every chunk, last state of the last chunk);
  * the gradient of sum(hidden * grad_output) for a fixed random grad_output with respect to
    the whole token-embedding matrix (kohya trains it whole): its non-zero rows (`grad_ids`,
    `grad_rows_skip<k>`; every other row is checked to be exactly zero) and the total norm
    that clip_grad_norm_ sees (`grad_norm_skip<k>`).

Files: <model>-<L>.safetensors for L in 75, 150, 225 (75 = no --max_token_length), each with
  input_ids        [B, n, 77] int64   kohya's chunked ids (n = L / 75)
  extra_rows       [2, width]         rows of ids 49408, 49409
  hidden_skip<k>   [B, 2 + 75 n, width] for k = 1, 2, 3 (k = 1 is also clip_skip None)
  grad_output      [B, 2 + 75 n, width]
  grad_ids         [U] int64          ids used in the batch, ascending
  grad_rows_skip<k> [U, width]        d(loss)/d(embedding row) of those ids
  grad_norm_skip<k> [1]               torch.nn.utils.clip_grad_norm_'s total norm
The file doubles as an `sdti forward --component text-encoder --inputs` file.
Also prompts.txt (one prompt per line, as given to the tokenizer, and the short form the
user types with gen_img-style embedding loading after a tab) and sdtitok.safetensors (the
extra rows in kohya's embedding layout {"emb_params": [2, width]}).

Deterministic: fixed seeds, one thread, float32; re-running gives the same bytes.
"""

import hashlib
import os

import safetensors.torch
import torch
from transformers import CLIPTextModel, CLIPTokenizer

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MODELS = os.path.join(ROOT, "tests", "fixtures", "models")
OUT = os.path.join(ROOT, "tests", "fixtures", "text_encoder")

TOKEN_STRING = "sdtitok"
NUM_VECTORS = 2
MAX_LENGTHS = [75, 150, 225]
CLIP_SKIPS = [1, 2, 3]


def long_prompt():
    # About 190 tokens: 150 truncates it, 225 needs all three chunks.
    words = ["masterpiece", "best quality", "1girl", "solo", "long hair", "looking at viewer",
             "smile", "blue eyes", "red dress", "outdoors", "sky", "cloud", "tree", "flower",
             "(detailed background:1.2)", "sunlight", "depth of field", "from side"]
    parts = []
    for i in range(60):
        parts.append(words[(i * 7) % len(words)])
    return ", ".join(parts)


# (text given to the tokenizer, text the user types when the embedding is loaded by file name)
PROMPTS = [
    ("a photo of a cat, (masterpiece:1.2), 4k", "a photo of a cat, (masterpiece:1.2), 4k"),
    (long_prompt(), long_prompt()),
    ("sdtitok sdtitok1 standing on the beach", "sdtitok standing on the beach"),
    ("", ""),
]


def chunk_ids(ids, tok):
    """kohya's split of one padded id row (length 75 n + 2) into n rows of 77."""
    model_max = tok.model_max_length
    if ids.shape[0] == model_max:
        return ids.unsqueeze(0)
    v1 = tok.pad_token_id == tok.eos_token_id
    chunks = []
    for start in range(1, ids.shape[0] - model_max + 2, model_max - 2):
        c = torch.cat([ids[:1], ids[start:start + model_max - 2], ids[-1:]]).clone()
        if not v1:
            if c[-2] != tok.eos_token_id and c[-2] != tok.pad_token_id:
                c[-1] = tok.eos_token_id
            if c[1] == tok.pad_token_id:
                c[1] = tok.eos_token_id
        chunks.append(c)
    return torch.stack(chunks)


def encode(te, tokens, clip_skip):
    """kohya's SdTextEncodingStrategy.encode_tokens for tokens [B, n, 77]."""
    b, n, t = tokens.shape
    flat = tokens.reshape(-1, t)
    if clip_skip is None:
        h = te(flat)[0]
    else:
        out = te(flat, output_hidden_states=True, return_dict=True)
        h = te.text_model.final_layer_norm(out["hidden_states"][-clip_skip])
    h = h.reshape(b, -1, h.shape[-1])
    if n == 1:
        return h
    # SD2's extra branch compares a token with the EOS *string*, which is never true, so both
    # versions join the same way.
    parts = [h[:, :1]]
    for start in range(1, n * t, t):
        parts.append(h[:, start:start + t - 2])
    parts.append(h[:, -1:])
    return torch.cat(parts, dim=1)


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(OUT, exist_ok=True)
    digest = hashlib.sha256()
    written = []

    g = torch.Generator().manual_seed(4242)
    extra_rows = None

    for mi, model in enumerate(["sd1-tiny", "sd2-tiny"]):
        folder = os.path.join(MODELS, model, "diffusers")
        tok = CLIPTokenizer.from_pretrained(os.path.join(folder, "tokenizer"))
        te = CLIPTextModel.from_pretrained(os.path.join(folder, "text_encoder")).float()
        width = te.config.hidden_size
        assert te.config.num_hidden_layers + 1 == max(CLIP_SKIPS), "clip_skip range"

        names = [TOKEN_STRING] + [f"{TOKEN_STRING}{i + 1}" for i in range(NUM_VECTORS - 1)]
        assert tok.add_tokens(names) == NUM_VECTORS
        ids_new = tok.convert_tokens_to_ids(names)
        assert ids_new == list(range(49408, 49408 + NUM_VECTORS)), ids_new
        te.resize_token_embeddings(len(tok))
        emb = te.get_input_embeddings().weight
        if extra_rows is None:
            extra_rows = torch.randn(NUM_VECTORS, width, generator=g) * 0.5
        with torch.no_grad():
            emb[ids_new[0]:] = extra_rows

        # kohya: token embedding trainable, everything else frozen, text encoder in train().
        te.requires_grad_(False)
        emb.requires_grad_(True)
        te.train()

        for L in MAX_LENGTHS:
            max_length = 77 if L == 75 else L + 2
            rows = []
            for text, _ in PROMPTS:
                ids = tok(text, padding="max_length", truncation=True, max_length=max_length,
                          return_tensors="pt").input_ids[0]
                rows.append(chunk_ids(ids, tok))
            tokens = torch.stack(rows)  # [B, n, 77]
            B, n, _ = tokens.shape
            assert n == L // 75
            T = 2 + 75 * n
            grad_output = torch.randn(B, T, width, generator=g)
            used = torch.unique(tokens.reshape(-1))  # ascending
            tensors = {"input_ids": tokens.to(torch.int64), "extra_rows": extra_rows.clone(),
                       "grad_output": grad_output, "grad_ids": used.to(torch.int64)}
            for k in CLIP_SKIPS:
                emb.grad = None
                hidden = encode(te, tokens, None if k == 1 else k)
                assert hidden.shape == (B, T, width)
                if k == 1:  # clip_skip 1 and None are the same hidden state
                    with torch.no_grad():
                        same = encode(te, tokens, 1)
                    assert torch.equal(same, hidden)
                (hidden * grad_output).sum().backward()
                grad = emb.grad.detach().clone()
                mask = torch.ones(grad.shape[0], dtype=torch.bool)
                mask[used] = False
                assert torch.count_nonzero(grad[mask]) == 0, "gradient outside the used rows"
                norm = torch.nn.utils.clip_grad_norm_([emb], max_norm=1.0)
                tensors[f"hidden_skip{k}"] = hidden.detach()
                tensors[f"grad_rows_skip{k}"] = grad[used]
                tensors[f"grad_norm_skip{k}"] = norm.detach().reshape(1)
            tensors = {k: v.detach().contiguous() for k, v in tensors.items()}
            path = os.path.join(OUT, f"{model}-{L}.safetensors")
            safetensors.torch.save_file(tensors, path, metadata={"model": model})
            written.append(path)

    with open(os.path.join(OUT, "prompts.txt"), "w", encoding="utf-8") as f:
        for text, short in PROMPTS:
            f.write(f"{text}\t{short}\n")
    written.append(os.path.join(OUT, "prompts.txt"))
    path = os.path.join(OUT, f"{TOKEN_STRING}.safetensors")
    safetensors.torch.save_file({"emb_params": extra_rows.contiguous()}, path)
    written.append(path)

    total = 0
    for path in written:
        with open(path, "rb") as f:
            data = f.read()
        total += len(data)
        digest.update(data)
        print(f"{os.path.relpath(path, ROOT)}: {len(data)} bytes")
    print(f"total {total} bytes; sha256 of all files: {digest.hexdigest()}")


if __name__ == "__main__":
    main()
