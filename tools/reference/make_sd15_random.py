"""Writes an SD1.5-SHAPED checkpoint with random values, for load-time benchmarks (not committed).

    build/refvenv/bin/python tools/reference/make_sd15_random.py [OUT_STEM] [--fp16]

OUT_STEM defaults to build/bench/sd15-random; writes OUT_STEM.safetensors and OUT_STEM.ckpt
(fp32, {"state_dict": ..., "global_step": ...}), and with --fp16 also OUT_STEM-fp16.ckpt.

The key names and shapes are exactly those of the real v1-5 LDM checkpoint without EMA
(UNet 860M, VAE 83M, CLIP ViT-L/14 text encoder 123M parameters, plus the DDPM buffers and
the text encoder's position_ids): the models are instantiated on the meta device from SD1.5's
configs (written below; nothing is downloaded), filled with seeded normal values, and renamed
with ldm_convert (the converter proved by make_model_fixtures.py).
"""

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ldm_convert as lc  # noqa: E402

from accelerate import init_empty_weights  # noqa: E402
from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

# runwayml/stable-diffusion-v1-5: unet/config.json, vae/config.json, text_encoder/config.json.
UNET = dict(sample_size=64, in_channels=4, out_channels=4, center_input_sample=False, flip_sin_to_cos=True,
            freq_shift=0, down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
            up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3, block_out_channels=[320, 640, 1280, 1280],
            layers_per_block=2, downsample_padding=1, mid_block_scale_factor=1, act_fn="silu",
            norm_num_groups=32, norm_eps=1e-5, cross_attention_dim=768, attention_head_dim=8)
VAE = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
           up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 512, 512], layers_per_block=2,
           act_fn="silu", latent_channels=4, norm_num_groups=32, sample_size=512)
TEXT = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
            max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=768)


def random_like(meta_sd, gen):
    """Seeded values for every (meta) tensor: N(0, 0.02), norms' weights around 1."""
    out = {}
    for name, t in meta_sd.items():
        v = torch.empty(t.shape, dtype=torch.float32)
        flat = v.view(-1)
        step = 1 << 24
        for i in range(0, flat.numel(), step):  # chunks: normal_ on slices of the flat view
            flat[i:i + step].normal_(0.0, 0.02, generator=gen)
        if t.ndim == 1 and "norm" in name and name.endswith("weight"):
            v += 1.0
        out[name] = v
    return out


def ldm_state_dict(gen):
    with init_empty_weights():
        unet = UNet2DConditionModel(**UNET)
        vae = AutoencoderKL(**VAE)
        text = CLIPTextModel(CLIPTextConfig(**TEXT))
    counts = {n: sum(p.numel() for p in m.parameters()) for n, m in (("unet", unet), ("vae", vae), ("text", text))}
    sd = dict(lc.ddpm_buffers())
    sd.update(lc.unet_to_ldm(random_like(unet.state_dict(), gen), unet.config))
    sd.update(lc.vae_to_ldm(random_like(vae.state_dict(), gen), 4, conv_attention=True))
    sd.update(lc.clip_to_ldm(random_like(text.state_dict(), gen), 77))
    return sd, counts


def write_safetensors(sd, path):
    """Streams the tensors out one by one (safetensors' own writer would build a second copy of
    4 GB in memory). Same format: u64 header length, JSON header (sorted names, 8-byte padded
    with spaces), then the data in header order."""
    names = sorted(sd)
    st_dtype = {torch.float32: "F32", torch.float16: "F16", torch.int64: "I64", torch.int32: "I32"}
    header, offset = {}, 0
    for n in names:
        t = sd[n]
        size = t.numel() * t.element_size()
        header[n] = {"dtype": st_dtype[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for n in names:
            f.write(sd[n].contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default=os.path.join(ROOT, "build", "bench", "sd15-random"),
                    help="output path without extension")
    ap.add_argument("--fp16", action="store_true", help="also write OUT-fp16.ckpt")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    stem = args.out[:-len(".safetensors")] if args.out.endswith(".safetensors") else args.out
    os.makedirs(os.path.dirname(os.path.abspath(stem)), exist_ok=True)

    t0 = time.time()
    sd, counts = ldm_state_dict(torch.Generator().manual_seed(args.seed))
    t1 = time.time()
    print(f"built {len(sd)} tensors: unet {counts['unet'] / 1e6:.1f}M, vae {counts['vae'] / 1e6:.1f}M, "
          f"text {counts['text'] / 1e6:.1f}M parameters in {t1 - t0:.1f} s")
    outs = []
    write_safetensors(sd, stem + ".safetensors")
    outs.append(stem + ".safetensors")
    t2 = time.time()
    lc.torch_save_file({"state_dict": sd, "global_step": 840000}, stem + ".ckpt")
    outs.append(stem + ".ckpt")
    t3 = time.time()
    print(f"wrote .safetensors in {t2 - t1:.1f} s, .ckpt in {t3 - t2:.1f} s")
    if args.fp16:
        half = lc.half(sd)
        del sd
        lc.torch_save_file(half, stem + "-fp16.ckpt")
        outs.append(stem + "-fp16.ckpt")
        print(f"wrote -fp16.ckpt in {time.time() - t3:.1f} s")
    for p in outs:
        print(f"  {p}: {os.path.getsize(p) / 1e9:.3f} GB")
    print(f"total {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
