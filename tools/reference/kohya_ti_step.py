"""kohya's textual-inversion training step in PyTorch, and the replay fixtures of sdti's trainer.

Run with the reference venv:  build/refvenv/bin/python tools/reference/kohya_ti_step.py

What it is: train_textual_inversion.py's step (kohya-ss/sd-scripts, TextualInversionTrainer.train;
../shared/reference/kohya-ti-facts.md sections 2 and 5) re-stated with diffusers / transformers
on the tiny fixture models (tests/fixtures/models/sd{1,2}-tiny/diffusers), for K optimizer
steps:
  - token set-up: add_tokens(mytok, mytok1), resize_token_embeddings, the rows copied from the
    init word's tokens (cycled), orig_embeds_params and index_no_updates;
  - captions of a DreamBooth folder (first line, stripped), "mytok" replaced by the N token
    strings (plain str.replace, substrings too), tokenizer(padding="max_length", 77);
  - text encoder with clip_skip (hidden_states[-k] + final_layer_norm), UNet, the epsilon or
    v-prediction target, the l2 loss mean([1,2,3]) * loss weight, batch mean;
  - backward to the whole token-embedding matrix, clip_grad_norm_ over it (every row used),
    AdamW (torch defaults), the lr schedule (diffusers get_scheduler, stepped once per step),
    zero_grad, the restore of every row below the first new id.
Everything random in the step comes from this script and is written to a replay file that
`sdti train --replay FILE` reads instead of drawing: per step the images of the batch (the
sample order), the timesteps and the noise. The latents are part of the replay file too
(kohya's cached latents: vae.encode(pixels).latent_dist.sample() * 0.18215 with the fp32
VAE), so the comparison covers the step, not sdti's VAE (tested on its own).

Mixed precision (--mixed_precision fp16 / bf16), as kohya runs it on a GPU, emulated with
torch's CPU autocast: the trained text encoder stays float32 but its forward runs under
autocast (accelerate wraps a prepared model's forward); the clip_skip final_layer_norm is
called outside autocast; the UNet is moved to the half type and runs under autocast; the
latents are cast to the half type before the 0.18215 scale, the noise is drawn in the half
type, add_noise / get_velocity run in it; the loss is taken on .float() values; fp16 scales
the loss by GradScaler's initial 65536 and unscales before clipping (a step with an inf
gradient would be skipped; none is here, checked). sdti's --mixed_precision is not this
(half weight storage, float32 arithmetic), so those trajectories agree only to the half
type's precision; the C test states the tolerance it reaches.

Output (tests/fixtures/train_replay/):
  images/1_mytok/img<i>.png + .txt   the 32x32 training images and their captions
  <model>_<precision>.safetensors     replay inputs:  latents [I,4,16,16] (per image, in the
                                      metadata's "images" order), order [M,B] (image indices;
                                      M = K x accumulation micro-batches), timesteps [M,B]
                                      int64, noise [M,B,4,16,16];
                                      expected:       expected_rows_init [N,W],
                                      expected_loss [M] (every micro-batch), expected_lr [K],
                                      expected_grad [K,N,W] (the new rows' gradient after
                                      clipping), expected_rows [K,N,W] (after each step);
                                      metadata "sdti_args": the sdti train options of the run.
Deterministic: fixed seeds, no clock. With --check-gc it also runs every case with gradient
checkpointing on and asserts the same trajectory (it is: checkpointing recomputes, it does
not change the arithmetic).
"""

import argparse
import os

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from diffusers.optimization import get_scheduler
from PIL import Image
from safetensors.torch import save_file
import transformers
from transformers import CLIPTextModel, CLIPTokenizer

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "train_replay")
MODELS = os.path.join(ROOT, "tests", "fixtures", "models")

TOKEN = "mytok"
NUM_VECTORS = 2
INIT_WORD = "red cat"
STEPS = 5
BATCH = 2
RESOLUTION = 32
LEARNING_RATE = 5e-3
LR_SCHEDULER = "cosine"
LR_WARMUP = 1
VAE_SCALE = 0.18215
FP16_LOSS_SCALE = 65536.0  # GradScaler's init_scale
# the dataset: substring replacement ("redmytok"), the token first, twice, after a comma
CAPTIONS = [
    "a photo of mytok",
    "redmytok on a blue background",
    "mytok, a close-up",
    "a painting of mytok and a mytok",
]

CASES = [
    # SD1: epsilon, clip_skip 2; the gradient norms are 0.05..0.1, so 0.05 clips most steps
    {"name": "sd1", "model": "sd1-tiny", "v2": False, "v_param": False, "clip_skip": 2,
     "max_grad_norm": 0.05, "pad_id": 49407},
    # SD2: v-prediction, last layer; norms 2e-4..4e-4, so 2.5e-4 clips some steps, not all
    {"name": "sd2", "model": "sd2-tiny", "v2": True, "v_param": True, "clip_skip": None,
     "max_grad_norm": 2.5e-4, "pad_id": 0},
    # SD1 with gradient accumulation 2, --max_token_length 150 (two 77-token chunks),
    # --min_snr_gamma 5, a linear schedule without warm-up (float32 only)
    {"name": "sd1_accum", "model": "sd1-tiny", "v2": False, "v_param": False, "clip_skip": 1,
     "max_grad_norm": 0.05, "pad_id": 49407, "accum": 2, "max_token_length": 150,
     "min_snr_gamma": 5.0, "lr_scheduler": "linear", "lr_warmup": 0,
     "precisions": ["fp32"]},
    # SD2 v-prediction with Adafactor (kohya hands it the whole embedding matrix; its factored
    # second moment mixes the rows) without relative steps, on the cosine schedule
    {"name": "sd2_adafactor", "model": "sd2-tiny", "v2": True, "v_param": True,
     "clip_skip": None, "max_grad_norm": 2.5e-4, "pad_id": 0, "optimizer": "AdaFactor",
     "optimizer_args": {"relative_step": False, "scale_parameter": False,
                        "warmup_init": False},
     "precisions": ["fp32"]},
]
PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def image_names():
    return [f"img{i}.png" for i in range(len(CAPTIONS))]


def write_images():
    """Four 32x32 RGB images (smooth patterns from a fixed seed) with their captions."""
    d = os.path.join(OUT, "images", f"1_{TOKEN}")
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(1234)
    yy, xx = np.mgrid[0:RESOLUTION, 0:RESOLUTION].astype(np.float64) / RESOLUTION
    for i, caption in enumerate(CAPTIONS):
        a, b, c = rng.uniform(0.5, 3.0, 3)
        img = np.stack([np.sin(a * 6.28 * xx + i), np.cos(b * 6.28 * yy - i),
                        np.sin(c * 6.28 * (xx + yy))], axis=-1)
        img = img + 0.15 * rng.standard_normal(img.shape)
        px = np.clip((img * 0.5 + 0.5) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        Image.fromarray(px, "RGB").save(os.path.join(d, f"img{i}.png"))
        with open(os.path.join(d, f"img{i}.txt"), "w") as f:
            f.write(caption + "\n")
    return d


def load_pixels(folder, name):
    """kohya: PIL RGB, ToTensor, Normalize([0.5], [0.5]) (the image is the resolution)."""
    px = np.asarray(Image.open(os.path.join(folder, name)).convert("RGB"))
    x = torch.from_numpy(px.copy()).permute(2, 0, 1).to(torch.float32) / 255.0
    return (x - 0.5) / 0.5


def read_caption(folder, name):
    with open(os.path.join(folder, os.path.splitext(name)[0] + ".txt")) as f:
        return f.readline().strip()


def cached_latents(model_dir, folder):
    """kohya's cache_latents with the fp32 VAE: latent_dist.sample(), times the scale."""
    vae = AutoencoderKL.from_pretrained(os.path.join(model_dir, "vae")).eval()
    g = torch.Generator().manual_seed(77)
    out = []
    with torch.no_grad():
        for name in image_names():
            dist = vae.encode(load_pixels(folder, name)[None]).latent_dist
            out.append(dist.sample(generator=g)[0])
    return torch.stack(out)  # unscaled, as kohya's cache holds them


def setup_tokens(tok, te, case):
    token_strings = [TOKEN] + [f"{TOKEN}{i + 1}" for i in range(NUM_VECTORS - 1)]
    assert tok.add_tokens(token_strings) == NUM_VECTORS
    ids = tok.convert_tokens_to_ids(token_strings)
    assert ids == list(range(ids[0], ids[0] + NUM_VECTORS)) and ids[-1] == len(tok) - 1
    assert tok.pad_token_id == case["pad_id"], (tok.pad_token, tok.pad_token_id)
    te.resize_token_embeddings(len(tok))
    init_ids = tok.encode(INIT_WORD, add_special_tokens=False)
    emb = te.get_input_embeddings().weight.data
    for i, tid in enumerate(ids):
        emb[tid] = emb[init_ids[i % len(init_ids)]]
    return token_strings, ids


def caption_ids(tok, caption, token_strings, max_token_length):
    """SdTokenizeStrategy: [1, n, 77] (n chunks of BOS + 75 ids + the last id; SD1 only here,
    SD2's chunk fixes are not needed by these captions)."""
    if NUM_VECTORS > 1:
        caption = caption.replace(TOKEN, " ".join(token_strings))
    length = 77 if max_token_length is None else max_token_length + 2
    ids = tok(caption, padding="max_length", truncation=True, max_length=length,
              return_tensors="pt").input_ids[0]
    if length == 77:
        return ids[None, None]
    chunks = [torch.cat([ids[:1], ids[i:i + 75], ids[-1:]]) for i in range(1, length - 77 + 2, 75)]
    return torch.stack(chunks)[None]


def autocast(dtype):
    if dtype is None:
        return torch.autocast("cpu", enabled=False)
    return torch.autocast("cpu", dtype=dtype)


def encode_text(te, ids, clip_skip, amp):
    """SdTextEncodingStrategy.encode_tokens on an accelerate-prepared text encoder: ids
    [B, n, 77] -> [B, 1 + 75 n + 1, W] (the chunks' BOS / last states dropped in between)."""
    b, n = ids.shape[0], ids.shape[1]
    ids = ids.reshape(b * n, 77)
    with autocast(amp):
        if clip_skip is None:
            h = te(ids)[0]
        else:
            h = te(ids, output_hidden_states=True)["hidden_states"][-clip_skip]
    h = h.float()  # accelerate's convert_outputs_to_fp32
    if clip_skip is not None:
        h = te.text_model.final_layer_norm(h)
    h = h.reshape(b, n * 77, h.shape[-1])
    if n > 1:
        parts = [h[:, :1]] + [h[:, i:i + 75] for i in range(1, n * 77, 77)] + [h[:, -1:]]
        h = torch.cat(parts, dim=1)
    return h


def draw_replay(case, amp, latents_unscaled):
    """What the step draws: the micro-batches' images, timesteps and noise (in the weight
    dtype)."""
    g = torch.Generator().manual_seed(1000 + (17 if case["v2"] else 0) +
                                      (5 if case.get("accum", 1) > 1 else 0))
    n = latents_unscaled.shape[0]
    micro = STEPS * case.get("accum", 1)
    order = torch.stack([torch.randperm(n, generator=g)[:BATCH] for _ in range(micro)])
    timesteps = torch.randint(0, 1000, (micro, BATCH), generator=g)
    shape = (micro, BATCH) + tuple(latents_unscaled.shape[1:])
    noise = torch.randn(shape, generator=g, dtype=amp or torch.float32)
    return order, timesteps, noise


def run(case, precision, latents_unscaled, replay, gradient_checkpointing=False):
    amp = PRECISIONS[precision]
    model_dir = os.path.join(MODELS, case["model"], "diffusers")
    folder = os.path.join(OUT, "images", f"1_{TOKEN}")
    tok = CLIPTokenizer.from_pretrained(os.path.join(model_dir, "tokenizer"))
    te = CLIPTextModel.from_pretrained(os.path.join(model_dir, "text_encoder"))
    unet = UNet2DConditionModel.from_pretrained(os.path.join(model_dir, "unet"))
    token_strings, ids = setup_tokens(tok, te, case)
    emb_param = te.get_input_embeddings().weight
    orig = emb_param.data.detach().clone()
    index_no_updates = torch.arange(len(tok)) < ids[0]
    rows_init = emb_param.data[ids].clone()

    te.requires_grad_(True)
    te.text_model.encoder.requires_grad_(False)
    te.text_model.final_layer_norm.requires_grad_(False)
    te.text_model.embeddings.position_embedding.requires_grad_(False)
    unet.requires_grad_(False)
    if amp is not None:
        unet.to(amp)
    if gradient_checkpointing:
        unet.enable_gradient_checkpointing()
        te.gradient_checkpointing_enable()
        unet.train()
    else:
        unet.eval()
    te.train()

    params = te.get_input_embeddings().parameters()
    if case.get("optimizer") == "AdaFactor":
        optimizer = transformers.optimization.Adafactor(params, lr=LEARNING_RATE,
                                                        **case["optimizer_args"])
    else:
        optimizer = torch.optim.AdamW(params, lr=LEARNING_RATE)
    lr_scheduler = get_scheduler(case.get("lr_scheduler", LR_SCHEDULER), optimizer,
                                 num_warmup_steps=case.get("lr_warmup", LR_WARMUP),
                                 num_training_steps=STEPS)
    sched = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                          num_train_timesteps=1000, clip_sample=False,
                          prediction_type="v_prediction" if case["v_param"] else "epsilon")
    accum = case.get("accum", 1)
    gamma = case.get("min_snr_gamma")
    acp = sched.alphas_cumprod
    all_snr = (torch.sqrt(acp) / torch.sqrt(1.0 - acp)) ** 2  # prepare_scheduler_for_custom_training

    ids_by_image = [caption_ids(tok, read_caption(folder, name), token_strings,
                                case.get("max_token_length"))
                    for name in image_names()]
    order, timesteps, noise = replay
    wdtype = amp or torch.float32
    losses, lrs, grads, rows = [], [], [], []
    for micro in range(STEPS * accum):
        sync = (micro + 1) % accum == 0
        sel = order[micro]
        latents = latents_unscaled[sel].to(wdtype) * VAE_SCALE
        input_ids = torch.cat([ids_by_image[int(i)] for i in sel])
        hidden = encode_text(te, input_ids, case["clip_skip"], amp)
        eps = noise[micro]
        t = timesteps[micro]
        noisy = sched.add_noise(latents, eps, t)
        with autocast(amp):
            pred = unet(noisy, t, hidden).sample
        target = sched.get_velocity(latents, eps, t) if case["v_param"] else eps
        loss = F.mse_loss(pred.float(), target.float(), reduction="none")
        loss = loss.mean([1, 2, 3]) * torch.ones(BATCH)  # loss_weights: 1.0 (no reg images)
        if gamma:  # apply_snr_weight (epsilon)
            snr = all_snr[t]
            loss = loss * (torch.minimum(snr, torch.full_like(snr, gamma)) / snr).float()
        loss = loss.mean()
        losses.append(float(loss.detach()))
        # accelerator.backward divides by the accumulation steps; the grads add up until sync
        if amp == torch.float16:
            (loss / accum * FP16_LOSS_SCALE).backward()
        else:
            (loss / accum).backward()
        if not sync:  # accelerate skips clip, step, scheduler and zero_grad until sync
            continue
        if amp == torch.float16:
            emb_param.grad.mul_(1.0 / FP16_LOSS_SCALE)
        assert torch.isfinite(emb_param.grad).all(), "a skipped fp16 step"
        torch.nn.utils.clip_grad_norm_(te.get_input_embeddings().parameters(),
                                       case["max_grad_norm"])
        grads.append(emb_param.grad[ids].detach().clone())
        lrs.append(lr_scheduler.get_last_lr()[0])
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            emb_param[index_no_updates] = orig[index_no_updates]
        rows.append(emb_param.data[ids].detach().clone())
    return {
        "expected_rows_init": rows_init,
        "expected_loss": torch.tensor(losses, dtype=torch.float32),
        "expected_lr": torch.tensor(lrs, dtype=torch.float32),
        "expected_grad": torch.stack(grads),
        "expected_rows": torch.stack(rows),
    }


def sdti_args(case, precision):
    a = [f"--resolution {RESOLUTION}", "--caption_extension .txt", f"--token_string {TOKEN}",
         f"--num_vectors_per_token {NUM_VECTORS}", f"--init_word '{INIT_WORD}'",
         f"--train_batch_size {BATCH}", f"--max_train_steps {STEPS}",
         f"--learning_rate {LEARNING_RATE}",
         f"--lr_scheduler {case.get('lr_scheduler', LR_SCHEDULER)}",
         f"--lr_warmup_steps {case.get('lr_warmup', LR_WARMUP)}",
         f"--max_grad_norm {case['max_grad_norm']}", "--seed 1"]
    if case.get("accum", 1) > 1:
        a.append(f"--gradient_accumulation_steps {case['accum']}")
    if case.get("max_token_length"):
        a.append(f"--max_token_length {case['max_token_length']}")
    if case.get("min_snr_gamma"):
        a.append(f"--min_snr_gamma {case['min_snr_gamma']}")
    if case.get("optimizer"):
        a.append(f"--optimizer_type {case['optimizer']}")
        a.append("--optimizer_args " + " ".join(f"{k}={v}" for k, v in
                                                case["optimizer_args"].items()))
    if case["v2"]:
        a.append("--v2")
    if case["v_param"]:
        a.append("--v_parameterization")
    if case["clip_skip"] is not None:
        a.append(f"--clip_skip {case['clip_skip']}")
    if precision != "fp32":
        a.append(f"--mixed_precision {precision} --no_half_vae")
    return " ".join(a)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check-gc", action="store_true",
                   help="also run with gradient checkpointing and assert the same trajectory")
    p.add_argument("--only", help="write only the cases of this name (sd1, sd2, sd1_accum, sd2_adafactor)")
    args = p.parse_args()
    torch.manual_seed(0)
    folder = write_images()
    for case in CASES:
        if args.only and case["name"] != args.only:
            continue
        model_dir = os.path.join(MODELS, case["model"], "diffusers")
        lat = cached_latents(model_dir, folder)
        for precision in case.get("precisions", PRECISIONS):
            replay = draw_replay(case, PRECISIONS[precision], lat)
            exp = run(case, precision, lat, replay)
            if args.check_gc:
                gc = run(case, precision, lat, replay, gradient_checkpointing=True)
                for k in exp:
                    assert torch.equal(exp[k], gc[k]), (case["name"], precision, k)
            order, timesteps, noise = replay
            tensors = {
                "latents": (lat * VAE_SCALE).contiguous(),
                "order": order.to(torch.int64).contiguous(),
                "timesteps": timesteps.to(torch.int64).contiguous(),
                "noise": noise.to(torch.float32).contiguous(),
            }
            tensors.update({k: v.to(torch.float32).contiguous() for k, v in exp.items()})
            meta = {"format": "sdti-replay-1", "images": ",".join(image_names()),
                    "model": case["model"], "precision": precision,
                    "sdti_args": sdti_args(case, precision)}
            path = os.path.join(OUT, f"{case['name']}_{precision}.safetensors")
            save_file(tensors, path, metadata=meta)
            print(f"{path}: loss {exp['expected_loss'].tolist()} "
                  f"|grad| {[float(g.norm()) for g in exp['expected_grad']]}")


if __name__ == "__main__":
    main()
