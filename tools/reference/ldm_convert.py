"""diffusers/transformers state dicts -> the original LDM (CompVis / Stability) single-file layout.

Written for sdti's reference fixtures from the layouts as diffusers' single-file loader
(diffusers/loaders/single_file_utils.py) reads them back; make_model_fixtures.py proves every
file this writes by loading it with that loader. Also: the DDPM buffers and EMA entries real
checkpoints carry, and a byte-reproducible torch.save.

LDM names, briefly:
  UNet  `model.diffusion_model.`: input_blocks.K.{0 resnet | 1 transformer | 0.op downsample},
        middle_block.{0,1,2}, output_blocks.K.{0 resnet | 1 transformer | 1/2.conv upsample},
        time_embed.{0,2}, out.{0,2}; resnets use in_layers/emb_layers/out_layers/skip_connection.
  VAE   `first_stage_model.`: encoder.down.I.block.J, decoder.up.(L-1-I).block.J (the decoder's
        levels are numbered from the bottom), mid.block_1/attn_1/block_2, nin_shortcut, norm_out,
        attention q/k/v/proj_out as 1x1 convolutions in old files.
  SD1 text `cond_stage_model.transformer.` + the transformers CLIPTextModel names.
  SD2 text `cond_stage_model.model.` OpenCLIP: transformer.resblocks.I with fused
        attn.in_proj_weight (q, k, v stacked on rows), ln_1/ln_2, mlp.c_fc/c_proj, ln_final,
        positional_embedding, token_embedding, text_projection, logit_scale.
"""

import re
import struct
import zipfile
import zlib

import numpy as np
import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."
OPENCLIP_PREFIX = "cond_stage_model.model."

_RESNET_UNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}


def _resnet_unet(rest):
    head, _, tail = rest.partition(".")
    return _RESNET_UNET[head] + "." + tail


def unet_to_ldm(sd, config):
    """A UNet2DConditionModel state dict -> {LDM name (with prefix): tensor}."""
    n = config["layers_per_block"]
    up_has_attn = ["CrossAttn" in t for t in config["up_block_types"]]
    out = {}
    for name, t in sd.items():
        m = None
        if name.startswith("time_embedding.linear_1."):
            new = "time_embed.0." + name.split(".")[-1]
        elif name.startswith("time_embedding.linear_2."):
            new = "time_embed.2." + name.split(".")[-1]
        elif name.startswith("conv_in."):
            new = "input_blocks.0.0." + name.split(".")[-1]
        elif name.startswith("conv_norm_out."):
            new = "out.0." + name.split(".")[-1]
        elif name.startswith("conv_out."):
            new = "out.2." + name.split(".")[-1]
        elif (m := re.match(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", name)):
            i, j = int(m[1]), int(m[2])
            new = f"input_blocks.{1 + i * (n + 1) + j}.0.{_resnet_unet(m[3])}"
        elif (m := re.match(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", name)):
            i, j = int(m[1]), int(m[2])
            new = f"input_blocks.{1 + i * (n + 1) + j}.1.{m[3]}"
        elif (m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", name)):
            new = f"input_blocks.{(int(m[1]) + 1) * (n + 1)}.0.op.{m[2]}"
        elif (m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", name)):
            new = f"middle_block.{2 * int(m[1])}.{_resnet_unet(m[2])}"
        elif (m := re.match(r"mid_block\.attentions\.0\.(.*)", name)):
            new = f"middle_block.1.{m[1]}"
        elif (m := re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", name)):
            i, j = int(m[1]), int(m[2])
            new = f"output_blocks.{i * (n + 1) + j}.0.{_resnet_unet(m[3])}"
        elif (m := re.match(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", name)):
            i, j = int(m[1]), int(m[2])
            new = f"output_blocks.{i * (n + 1) + j}.1.{m[3]}"
        elif (m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", name)):
            i = int(m[1])
            new = f"output_blocks.{i * (n + 1) + n}.{2 if up_has_attn[i] else 1}.conv.{m[2]}"
        else:
            raise KeyError(f"unet_to_ldm: no LDM name for '{name}'")
        out[UNET_PREFIX + new] = t
    return out


_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def vae_to_ldm(sd, num_levels, conv_attention):
    """An AutoencoderKL state dict -> LDM names. conv_attention: write the mid-block attention
    projections as [C, C, 1, 1] convolutions (as the original SD1 checkpoints do)."""
    out = {}
    for name, t in sd.items():
        m = None
        new = name.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        if (m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", new)):
            new = f"encoder.down.{m[1]}.block.{m[2]}.{m[3]}"
        elif (m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", new)):
            new = f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
        elif (m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", new)):
            new = f"decoder.up.{num_levels - 1 - int(m[1])}.block.{m[2]}.{m[3]}"
        elif (m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", new)):
            new = f"decoder.up.{num_levels - 1 - int(m[1])}.upsample.conv.{m[2]}"
        elif (m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)", new)):
            new = f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}"
        elif (m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)\.(weight|bias)", new)):
            new = f"{m[1]}.mid.attn_1.{_VAE_ATTN[m[2]]}.{m[3]}"
            if conv_attention and m[2] != "group_norm" and m[3] == "weight":
                t = t.reshape(*t.shape, 1, 1)
        elif not re.match(r"(encoder|decoder)\.(conv_in|conv_out|norm_out)\.|(post_)?quant_conv\.", new):
            raise KeyError(f"vae_to_ldm: no LDM name for '{name}'")
        out[VAE_PREFIX + new] = t
    return out


def clip_to_ldm(sd, max_positions):
    """SD1: the CLIPTextModel names under cond_stage_model.transformer., plus the position_ids
    buffer that transformers < 4.31 saved (real SD1 checkpoints carry it, int64 [1, 77])."""
    out = {CLIP_PREFIX + k: v for k, v in sd.items()}
    out[CLIP_PREFIX + "text_model.embeddings.position_ids"] = torch.arange(max_positions).unsqueeze(0)
    return out


def openclip_to_ldm(sd, extra_resblock, text_projection, logit_scale):
    """SD2: CLIPTextModel names -> OpenCLIP names under cond_stage_model.model.

    extra_resblock: {ldm name below transformer.resblocks.N.: tensor} for the resblock that
    real SD2 files carry after the last one diffusers keeps (SD2 uses the penultimate layer's
    output, so diffusers' text encoder has 23 of the 24 layers)."""
    out = {}
    p = OPENCLIP_PREFIX
    out[p + "positional_embedding"] = sd["text_model.embeddings.position_embedding.weight"]
    out[p + "text_projection"] = text_projection
    out[p + "logit_scale"] = logit_scale
    out[p + "token_embedding.weight"] = sd["text_model.embeddings.token_embedding.weight"]
    layers = 1 + max(int(k.split(".")[3]) for k in sd if k.startswith("text_model.encoder.layers."))
    for i in range(layers):
        src = f"text_model.encoder.layers.{i}."
        dst = f"{p}transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[dst + f"attn.in_proj_{kind}"] = torch.cat(
                [sd[src + f"self_attn.{x}_proj.{kind}"] for x in ("q", "k", "v")], 0)
        for a, b in (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"),
                     ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
            for kind in ("weight", "bias"):
                out[dst + f"{b}.{kind}"] = sd[src + f"{a}.{kind}"]
    if extra_resblock:
        for k, v in extra_resblock.items():
            out[f"{p}transformer.resblocks.{layers}.{k}"] = v
    out[p + "ln_final.weight"] = sd["text_model.final_layer_norm.weight"]
    out[p + "ln_final.bias"] = sd["text_model.final_layer_norm.bias"]
    used = {"text_model.embeddings.position_embedding.weight", "text_model.embeddings.token_embedding.weight",
            "text_model.final_layer_norm.weight", "text_model.final_layer_norm.bias"}
    for k in sd:
        if k not in used and not k.startswith("text_model.encoder.layers."):
            raise KeyError(f"openclip_to_ldm: no LDM name for '{k}'")
    return out


def openclip_resblock_shapes(width, mlp):
    return {
        "attn.in_proj_weight": (3 * width, width), "attn.in_proj_bias": (3 * width,),
        "attn.out_proj.weight": (width, width), "attn.out_proj.bias": (width,),
        "ln_1.weight": (width,), "ln_1.bias": (width,), "ln_2.weight": (width,), "ln_2.bias": (width,),
        "mlp.c_fc.weight": (mlp, width), "mlp.c_fc.bias": (mlp,),
        "mlp.c_proj.weight": (width, mlp), "mlp.c_proj.bias": (width,),
    }


def ddpm_buffers(timesteps=1000, linear_start=0.00085, linear_end=0.012):
    """The schedule buffers LatentDiffusion registers (ldm/models/diffusion/ddpm.py,
    register_schedule with the "linear" schedule and v_posterior 0): float64 numpy maths,
    stored as float32."""
    betas = (np.linspace(linear_start ** 0.5, linear_end ** 0.5, timesteps, dtype=np.float64) ** 2)
    alphas = 1.0 - betas
    ac = np.cumprod(alphas, axis=0)
    ac_prev = np.append(1.0, ac[:-1])
    post_var = betas * (1.0 - ac_prev) / (1.0 - ac)
    f = lambda a: torch.tensor(a, dtype=torch.float32)
    return {
        "betas": f(betas),
        "alphas_cumprod": f(ac),
        "alphas_cumprod_prev": f(ac_prev),
        "sqrt_alphas_cumprod": f(np.sqrt(ac)),
        "sqrt_one_minus_alphas_cumprod": f(np.sqrt(1.0 - ac)),
        "log_one_minus_alphas_cumprod": f(np.log(1.0 - ac)),
        "sqrt_recip_alphas_cumprod": f(np.sqrt(1.0 / ac)),
        "sqrt_recipm1_alphas_cumprod": f(np.sqrt(1.0 / ac - 1)),
        "posterior_variance": f(post_var),
        "posterior_log_variance_clipped": f(np.log(np.maximum(post_var, 1e-20))),
        "posterior_mean_coef1": f(betas * np.sqrt(ac_prev) / (1.0 - ac)),
        "posterior_mean_coef2": f((1.0 - ac_prev) * np.sqrt(alphas) / (1.0 - ac)),
    }


def ema_entries(unet_ldm, names, gen):
    """LitEma's buffers: decay, num_updates, and per UNet parameter a copy whose name is the
    DiffusionWrapper name with the dots removed (`model_ema.diffusion_modelinput_blocks00weight`).
    Only the given names are written (real files have all of them); the values are the weights
    nudged a little, so a loader that picks the EMA copy by mistake gets different numbers."""
    out = {"model_ema.decay": torch.tensor(0.9999, dtype=torch.float32),
           "model_ema.num_updates": torch.tensor(123, dtype=torch.int32)}
    for name in names:
        t = unet_ldm[UNET_PREFIX + name]
        flat = "model_ema.diffusion_model" + name.replace(".", "")
        out[flat] = t + 0.01 * torch.randn(t.shape, generator=gen, dtype=t.dtype)
    return out


def half(sd):
    """Floating tensors to fp16 (as pruned fp16 checkpoints are made); integers stay."""
    return {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}


# ---- byte-reproducible torch.save ----

def _fix_zip_record(f, suffix, new):
    """In the zip open as `f` (read/write, seekable), replaces the content of the stored member
    whose name ends with `suffix` by `new` (same length) and updates its CRC-32 where the
    writer keeps it: torch (miniz, streaming) writes 0 in the local header and the real CRC in
    a data descriptor after the data (general-purpose flag bit 3) and in the central directory,
    so the result is byte for byte what torch.save would write with that content. Reads only
    the headers, so it works on files of any size."""
    zf = zipfile.ZipFile(f)
    hits = [i for i in zf.infolist() if i.filename.endswith(suffix)]
    if len(hits) != 1 or hits[0].compress_type != zipfile.ZIP_STORED or hits[0].file_size != len(new):
        raise ValueError(f"zip record {suffix}: not one stored member of {len(new)} bytes")
    info = hits[0]
    crc = struct.pack("<I", zlib.crc32(new) & 0xFFFFFFFF)
    f.seek(info.header_offset)
    local = f.read(30)
    if local[:4] != b"PK\x03\x04":
        raise ValueError(f"zip record {suffix}: no local header at {info.header_offset}")
    flags, = struct.unpack_from("<H", local, 6)
    n, m = struct.unpack_from("<HH", local, 26)
    data_at = info.header_offset + 30 + n + m
    f.seek(data_at)
    f.write(new)
    if flags & 0x08:  # data descriptor: optional signature, then the CRC
        f.seek(data_at + len(new))
        sig = f.read(4)
        f.seek(data_at + len(new) + (4 if sig == b"PK\x07\x08" else 0))
        f.write(crc)
    else:
        f.seek(info.header_offset + 14)
        f.write(crc)
    pos = zf.start_dir  # walk the central directory to this member's entry
    for _ in range(len(zf.infolist())):
        f.seek(pos)
        entry = f.read(46)
        if entry[:4] != b"PK\x01\x02":
            raise ValueError(f"zip central directory: bad entry at {pos}")
        n, m, k = struct.unpack_from("<HHH", entry, 28)
        if f.read(n).decode() == info.filename:
            f.seek(pos + 16)
            f.write(crc)
            return
        pos += 46 + n + m + k
    raise ValueError(f"zip record {suffix}: not in the central directory")


def rewrite_torch_file_deterministic(path):
    """torch.save writes `.data/serialization_id`, a random 40-digit id, into every archive;
    everything else (dates fixed at 1980, record order, 64-byte alignment) is reproducible.
    This sets the id to zeros, in place."""
    with open(path, "r+b") as f:
        _fix_zip_record(f, ".data/serialization_id", b"0" * 40)


def torch_save_file(obj, path):
    """torch.save, reproducibly. The archive's folder name is the file's stem (`ldm/data.pkl`),
    as torch writes it when given a path (real checkpoints: `v1-5-pruned/data.pkl`, or
    `archive/` when saved to a buffer)."""
    torch.save(obj, path)
    rewrite_torch_file_deterministic(path)
