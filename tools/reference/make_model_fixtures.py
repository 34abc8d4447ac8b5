"""Writes the tiny random-weight Stable Diffusion pipelines into tests/fixtures/models/.

Run with the reference venv (offline; nothing is downloaded):
    build/refvenv/bin/python tools/reference/make_model_fixtures.py

Two pipelines with the REAL SD1 / SD2 architectures at toy sizes (sd1-tiny, sd2-tiny), each
written from the same weights as
  diffusers/           StableDiffusionPipeline.save_pretrained (safetensors)
  ldm.safetensors      the original LDM single-file layout, fp32, with DDPM buffers and EMA entries
  ldm.ckpt             the same in a torch zip, {"state_dict": ..., "global_step": 123}
  ldm-fp16.ckpt        the same cast to fp16, without the state_dict wrapper
  ldm.yaml, ldm-fp16.yaml   A1111-style sidecars (LDM original-config format)
  expected.json        what a correct loader produces from each layout, and the architecture
and for sd1-tiny also diffusers-variants/ (sharded UNet, .bin text encoder, fp16-variant VAE).

Every LDM file is proved against diffusers' own single-file loader (tensors and forward
outputs); the script raises if anything differs. The output is byte-reproducible.
"""

import copy
import gzip
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ldm_convert as lc  # noqa: E402

import safetensors.torch  # noqa: E402
import yaml  # noqa: E402
from diffusers import (AutoencoderKL, DDIMScheduler, PNDMScheduler, StableDiffusionPipeline,  # noqa: E402
                       UNet2DConditionModel)
from diffusers.utils import logging as dlogging  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer  # noqa: E402
from transformers.models.clip.tokenization_clip import bytes_to_unicode  # noqa: E402
from transformers.utils import logging as tlogging  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "models")
BPE = os.environ.get("SDTI_CLIP_BPE", "/work/shared/data/bpe_simple_vocab_16e6.txt.gz")

# Shared by both models: SD's noise schedule and the VAE.
BETA = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)
VAE = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
           up_block_types=["UpDecoderBlock2D"] * 2, block_out_channels=[16, 32], layers_per_block=1,
           act_fn="silu", latent_channels=4, norm_num_groups=8, sample_size=16, scaling_factor=0.18215)

# Sizes: the real 49408-token vocabulary makes the token embedding the largest tensor, and each
# model is stored about four times over; hidden 8 and 16-channel UNets keep the whole fixture
# folder near 30 MB. Real LDM code builds every GroupNorm with 32 groups; these use 8, which
# the yaml sidecars state with an sdti extension key (norm_num_groups).
MODELS = {
    "sd1-tiny": dict(
        version=1, seed=1, prediction="epsilon", pad_token="<|endoftext|>",
        text=dict(vocab_size=49408, hidden_size=8, intermediate_size=32, num_hidden_layers=2,
                  num_attention_heads=2, max_position_embeddings=77, hidden_act="quick_gelu",
                  layer_norm_eps=1e-5, projection_dim=8),
        unet=dict(sample_size=8, in_channels=4, out_channels=4,
                  down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
                  up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
                  block_out_channels=[16, 16, 32], layers_per_block=2, attention_head_dim=2,
                  cross_attention_dim=8, norm_num_groups=8, use_linear_projection=False,
                  upcast_attention=False),
        vae_conv_attention=True,  # the original SD1 files store the VAE attention as 1x1 convs
        ldm_yaml_unet=dict(num_heads=2),
    ),
    "sd2-tiny": dict(
        version=2, seed=2, prediction="v_prediction", pad_token="!",
        text=dict(vocab_size=49408, hidden_size=8, intermediate_size=24, num_hidden_layers=2,
                  num_attention_heads=2, max_position_embeddings=77, hidden_act="gelu",
                  layer_norm_eps=1e-5, projection_dim=8),
        unet=dict(sample_size=8, in_channels=4, out_channels=4,
                  down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
                  up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
                  block_out_channels=[16, 32, 32], layers_per_block=1, attention_head_dim=[2, 4, 4],
                  cross_attention_dim=8, norm_num_groups=8, use_linear_projection=True,
                  upcast_attention=True),
        vae_conv_attention=False,
        ldm_yaml_unet=dict(num_head_channels=8, use_linear_in_transformer=True),
    ),
}


def fail(msg):
    raise SystemExit(f"make_model_fixtures: FAILED: {msg}")


# ---- building ----

def clip_tokenizer_files(tmp):
    """vocab.json / merges.txt as CLIP builds its vocabulary from bpe_simple_vocab_16e6.txt:
    the 256 byte symbols, the same with '</w>', the first 48894 merges, the two specials."""
    lines = gzip.open(BPE).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1:49152 - 256 - 2 + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    if len(vocab) != 49408:
        fail(f"CLIP vocabulary has {len(vocab)} entries, not 49408")
    vpath, mpath = os.path.join(tmp, "vocab.json"), os.path.join(tmp, "merges.txt")
    with open(vpath, "w", encoding="utf-8") as f:
        json.dump({t: i for i, t in enumerate(vocab)}, f, ensure_ascii=False)
    with open(mpath, "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    return vpath, mpath


def randomize_vectors(model, gen):
    """Default inits leave norms at 1/0 and many biases at 0, which would hide a loader that
    swaps weight and bias or drops a bias: give every 1-D parameter its own values."""
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            if p.ndim == 1:
                p.add_(0.1 * torch.randn(p.shape, generator=gen))


def build_pipeline(spec, tok_files):
    torch.manual_seed(spec["seed"])
    gen = torch.Generator().manual_seed(spec["seed"] + 100)
    text = CLIPTextModel(CLIPTextConfig(**spec["text"])).eval()
    unet = UNet2DConditionModel(**spec["unet"]).eval()
    vae = AutoencoderKL(**VAE).eval()
    for m in (text, unet, vae):
        randomize_vectors(m, gen)
    tokenizer = CLIPTokenizer(tok_files[0], tok_files[1], pad_token=spec["pad_token"], model_max_length=77)
    if spec["version"] == 1:  # SD1.5's scheduler/scheduler_config.json
        scheduler = PNDMScheduler(**BETA, skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False,
                                  prediction_type="epsilon", trained_betas=None)
    else:  # SD2 (768-v)'s
        scheduler = DDIMScheduler(**BETA, clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                                  prediction_type="v_prediction")
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    return pipe, gen


def ldm_state_dict(pipe, spec, gen):
    unet_ldm = lc.unet_to_ldm(pipe.unet.state_dict(), pipe.unet.config)
    out = dict(lc.ddpm_buffers())
    out.update(unet_ldm)
    out.update(lc.ema_entries(unet_ldm, ["input_blocks.0.0.weight", "input_blocks.0.0.bias",
                                         "time_embed.0.weight", "out.2.bias"], gen))
    out.update(lc.vae_to_ldm(pipe.vae.state_dict(), len(VAE["block_out_channels"]), spec["vae_conv_attention"]))
    te = pipe.text_encoder.state_dict()
    if spec["version"] == 1:
        out.update(lc.clip_to_ldm(te, spec["text"]["max_position_embeddings"]))
    else:
        w, mlp = spec["text"]["hidden_size"], spec["text"]["intermediate_size"]
        extra = {}
        for k, shape in lc.openclip_resblock_shapes(w, mlp).items():
            extra[k] = (1.0 if k.startswith("ln_") and k.endswith("weight") else 0.0) + \
                0.1 * torch.randn(shape, generator=gen)
        out.update(lc.openclip_to_ldm(te, extra, text_projection=0.1 * torch.randn(w, w, generator=gen),
                                      logit_scale=torch.tensor(4.6052, dtype=torch.float32)))
    return {k: v.detach().contiguous().clone() for k, v in out.items()}


def ldm_yaml(spec):
    u, t = spec["unet"], spec["text"]
    base = u["block_out_channels"][0]
    res, attn_res = 1, []
    for kind in u["down_block_types"]:
        if kind.startswith("CrossAttn"):
            attn_res.append(res)
        res *= 2
    unet_params = dict(use_checkpoint=True, image_size=u["sample_size"], in_channels=u["in_channels"],
                       out_channels=u["out_channels"], model_channels=base,
                       attention_resolutions=attn_res, num_res_blocks=u["layers_per_block"],
                       channel_mult=[c // base for c in u["block_out_channels"]])
    unet_params.update(spec["ldm_yaml_unet"])
    unet_params.update(use_spatial_transformer=True, transformer_depth=1,
                       context_dim=u["cross_attention_dim"], legacy=False,
                       norm_num_groups=u["norm_num_groups"])  # sdti extension (LDM: always 32)
    if spec["version"] == 1:
        cond = dict(target="ldm.modules.encoders.modules.FrozenCLIPEmbedder",
                    params=dict(heads=t["num_attention_heads"], layers=t["num_hidden_layers"],
                                width=t["hidden_size"]))
    else:
        cond = dict(target="ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder",
                    params=dict(freeze=True, layer="penultimate", heads=t["num_attention_heads"],
                                layers=t["num_hidden_layers"] + 1, width=t["hidden_size"]))
    params = {}
    if spec["version"] == 2:
        params["parameterization"] = "v"
    params.update(linear_start=0.00085, linear_end=0.012, num_timesteps_cond=1, log_every_t=200,
                  timesteps=1000, first_stage_key="jpg", cond_stage_key="txt", image_size=u["sample_size"],
                  channels=4, cond_stage_trainable=False, conditioning_key="crossattn",
                  monitor="val/loss_simple_ema", scale_factor=VAE["scaling_factor"], use_ema=False)
    params["unet_config"] = dict(target="ldm.modules.diffusionmodules.openaimodel.UNetModel", params=unet_params)
    vb = VAE["block_out_channels"]
    params["first_stage_config"] = dict(
        target="ldm.models.autoencoder.AutoencoderKL",
        params=dict(embed_dim=VAE["latent_channels"], monitor="val/rec_loss",
                    ddconfig=dict(double_z=True, z_channels=VAE["latent_channels"], resolution=VAE["sample_size"],
                                  in_channels=3, out_ch=3, ch=vb[0], ch_mult=[c // vb[0] for c in vb],
                                  num_res_blocks=VAE["layers_per_block"], attn_resolutions=[], dropout=0.0,
                                  norm_num_groups=VAE["norm_num_groups"]),  # sdti extension
                    lossconfig=dict(target="torch.nn.Identity")))
    params["cond_stage_config"] = cond
    doc = dict(model=dict(base_learning_rate=1.0e-4, target="ldm.models.diffusion.ddpm.LatentDiffusion",
                          params=params))
    head = ("# A1111-style sidecar in the LDM original-config layout (v1-inference.yaml /\n"
            "# v2-inference-v.yaml) describing this tiny model. sdti extensions (real SD files lack\n"
            "# them; LDM code would ignore or reject them): cond_stage_config.params heads / layers /\n"
            "# width (a text encoder's head count cannot be read from its weights unless heads are 64\n"
            "# wide; layers counts the transformer blocks in the file, for SD2 one more than the\n"
            "# penultimate-layer encoder uses), and norm_num_groups in unet_config.params and\n"
            "# first_stage_config.params.ddconfig (LDM always uses 32 groups).\n")
    return head + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None)


# ---- writing ----

def write_variants(pipe, src_dir, dst):
    """sd1-tiny/diffusers-variants: the other file kinds diffusers folders come in."""
    os.makedirs(dst)
    for part in ("model_index.json", "tokenizer", "scheduler"):
        s = os.path.join(src_dir, part)
        (shutil.copytree if os.path.isdir(s) else shutil.copy)(s, os.path.join(dst, part))
    pipe.unet.save_pretrained(os.path.join(dst, "unet"), safe_serialization=True, max_shard_size="400KB")
    te_dir = os.path.join(dst, "text_encoder")
    pipe.text_encoder.save_pretrained(te_dir, safe_serialization=False)
    lc.rewrite_torch_file_deterministic(os.path.join(te_dir, "pytorch_model.bin"))
    copy.deepcopy(pipe.vae).half().save_pretrained(os.path.join(dst, "vae"), variant="fp16")
    names = sorted(os.listdir(os.path.join(dst, "unet")))
    if sum(n.endswith(".safetensors") for n in names) < 2 or "diffusion_pytorch_model.safetensors.index.json" not in names:
        fail(f"variants: the UNet was not sharded: {names}")



def tensor_list(pipe, dtypes):
    rows = []
    for comp in ("unet", "vae", "text_encoder"):
        for name, t in getattr(pipe, comp).state_dict().items():
            rows.append([comp, name, list(t.shape), dtypes.get(comp, "F32")])
    return rows


def expected_json(name, spec, pipe, ldm_sd):
    u, te, vae = pipe.unet, pipe.text_encoder, pipe.vae
    res0 = u.down_blocks[0].resnets[0]
    tr0 = u.down_blocks[0].attentions[0]
    heads = u.config.attention_head_dim
    heads = [heads] * len(u.config.block_out_channels) if isinstance(heads, int) else list(heads)
    resblocks = None
    if spec["version"] == 2:
        resblocks = 1 + max(int(k.split(".")[4]) for k in ldm_sd if k.startswith(lc.OPENCLIP_PREFIX + "transformer.resblocks."))
    layouts = {
        "diffusers": dict(path="diffusers", tensors=tensor_list(pipe, {})),
        "ldm.safetensors": dict(path="ldm.safetensors", yaml="ldm.yaml", tensors=tensor_list(pipe, {})),
        "ldm.ckpt": dict(path="ldm.ckpt", yaml="ldm.yaml", wrapped_in_state_dict=True, tensors=tensor_list(pipe, {})),
        "ldm-fp16.ckpt": dict(path="ldm-fp16.ckpt", yaml="ldm-fp16.yaml", wrapped_in_state_dict=False,
                              tensors=tensor_list(pipe, {c: "F16" for c in ("unet", "vae", "text_encoder")})),
    }
    if spec["version"] == 1:
        layouts["diffusers-variants"] = dict(path="diffusers-variants", unet="sharded safetensors + index",
                                             text_encoder="pytorch_model.bin", vae="fp16 variant",
                                             tensors=tensor_list(pipe, {"vae": "F16"}))
    ignored = sorted(k for k in ldm_sd if k.startswith("model_ema.") or "." not in k
                     or k.endswith(("position_ids", "text_projection", "logit_scale"))
                     or (resblocks and k.startswith(f"{lc.OPENCLIP_PREFIX}transformer.resblocks.{resblocks - 1}.")))
    arch = dict(
        sd_version=spec["version"],
        prediction_type=pipe.scheduler.config.prediction_type,
        text_encoder=dict(hidden_size=te.config.hidden_size, num_hidden_layers=te.config.num_hidden_layers,
                          num_attention_heads=te.config.num_attention_heads,
                          intermediate_size=te.config.intermediate_size, hidden_act=te.config.hidden_act,
                          layer_norm_eps=te.config.layer_norm_eps, vocab_size=te.config.vocab_size,
                          max_position_embeddings=te.config.max_position_embeddings,
                          ldm_resblocks=resblocks),
        unet=dict(block_out_channels=list(u.config.block_out_channels), layers_per_block=u.config.layers_per_block,
                  attention_head_dim=u.config.attention_head_dim, heads_per_level=heads,
                  head_channels_per_level=[c // h for c, h in zip(u.config.block_out_channels, heads)],
                  down_block_types=list(u.config.down_block_types), up_block_types=list(u.config.up_block_types),
                  use_linear_projection=u.config.use_linear_projection,
                  cross_attention_dim=u.config.cross_attention_dim, upcast_attention=u.config.upcast_attention,
                  transformer_layers_per_block=1, norm_num_groups=u.config.norm_num_groups,
                  resnet_norm_eps=res0.norm1.eps, transformer_group_norm_eps=tr0.norm.eps,
                  transformer_layer_norm_eps=tr0.transformer_blocks[0].norm1.eps,
                  sample_size=u.config.sample_size, in_channels=u.config.in_channels),
        vae=dict(block_out_channels=list(vae.config.block_out_channels), layers_per_block=vae.config.layers_per_block,
                 latent_channels=vae.config.latent_channels, norm_num_groups=vae.config.norm_num_groups,
                 norm_eps=vae.encoder.down_blocks[0].resnets[0].norm1.eps,
                 attention_group_norm_eps=vae.encoder.mid_block.attentions[0].group_norm.eps,
                 scaling_factor=vae.config.scaling_factor,
                 ldm_attention_as_conv1x1=spec["vae_conv_attention"]),
        tokenizer=dict(pad_token=pipe.tokenizer.pad_token, pad_token_id=pipe.tokenizer.pad_token_id,
                       bos_token_id=pipe.tokenizer.bos_token_id, eos_token_id=pipe.tokenizer.eos_token_id,
                       model_max_length=pipe.tokenizer.model_max_length),
        scheduler=dict(class_name=type(pipe.scheduler).__name__, beta_start=0.00085, beta_end=0.012,
                       beta_schedule="scaled_linear", num_train_timesteps=1000, steps_offset=1,
                       prediction_type=pipe.scheduler.config.prediction_type),
    )
    return dict(model=name, architecture=arch, ldm_keys_ignored=ignored, layouts=layouts)


def dump_json(obj, path):
    """One tensor row per line: readable, and diffs stay small."""
    text = json.dumps(obj, indent=1)
    one_line = lambda m: json.dumps(json.loads(m[0]))
    text = re.sub(r"\[[^\[\]{}]*\]", one_line, text)  # innermost lists (shapes, short lists)
    text = re.sub(r'\[\s*"[^"\n]*",\s*"[^"\n]*",\s*\[[^\]]*\],\s*"[^"\n]*"\s*\]', one_line, text)  # rows
    with open(path, "w") as f:
        f.write(text + "\n")


# ---- proof with diffusers' single-file loader ----

def compare_sd(label, got, want):
    g, w = got.state_dict(), want.state_dict()
    if set(g) != set(w):
        fail(f"{label}: names differ: missing {sorted(set(w) - set(g))[:5]} extra {sorted(set(g) - set(w))[:5]}")
    bad = [k for k in w if g[k].shape != w[k].shape or g[k].dtype != w[k].dtype or not torch.equal(g[k], w[k])]
    if bad:
        fail(f"{label}: {len(bad)} of {len(w)} tensors differ (first {bad[0]}: "
             f"{g[bad[0]].dtype} {tuple(g[bad[0]].shape)} vs {w[bad[0]].dtype} {tuple(w[bad[0]].shape)})")
    return len(w)


@torch.no_grad()
def forward_outputs(pipe, ids):
    g = torch.Generator().manual_seed(7)
    s = 8  # the tiny UNets' sample_size (not read from pipe: a yaml-built config says 256)
    latents = torch.randn(2, 4, s, s, generator=g)
    image = torch.rand(1, 3, 16, 16, generator=g) * 2 - 1
    hidden = pipe.text_encoder(ids)[0]
    return dict(
        text=hidden,
        unet=pipe.unet(latents, torch.tensor([999, 10]), encoder_hidden_states=torch.cat([hidden, hidden * 0.5])).sample,
        vae_encode=pipe.vae.encode(image).latent_dist.mean,
        vae_decode=pipe.vae.decode(latents[:1]).sample,
    )


def check_raw_files(name, mdir):
    """The three LDM files hold the same state dict: fp32 twice (the .ckpt inside state_dict),
    then every floating tensor rounded to fp16 and the integers unchanged."""
    st = safetensors.torch.load_file(os.path.join(mdir, "ldm.safetensors"))
    ck = torch.load(os.path.join(mdir, "ldm.ckpt"), map_location="cpu", weights_only=True)
    h = torch.load(os.path.join(mdir, "ldm-fp16.ckpt"), map_location="cpu", weights_only=True)
    if set(ck) != {"state_dict", "global_step"} or ck["global_step"] != 123 or "state_dict" in h:
        fail(f"{name}: checkpoint wrappers")
    ck = ck["state_dict"]
    if set(st) != set(ck) or set(st) != set(h):
        fail(f"{name}: the LDM files have different keys")
    for k, v in st.items():
        want16 = v.half() if v.is_floating_point() else v
        if not (torch.equal(v, ck[k]) and v.dtype == ck[k].dtype and torch.equal(h[k], want16)
                and h[k].dtype == want16.dtype):
            fail(f"{name}: LDM files disagree at {k}")
    return f"  LDM files: {len(st)} keys, ldm.ckpt == ldm.safetensors, ldm-fp16.ckpt == its fp16 cast"


def prove(name, mdir, ref, ids):
    dlogging.set_verbosity_error()
    tlogging.set_verbosity_error()
    ref_out = forward_outputs(ref, ids)
    ref16 = copy.deepcopy(ref)
    for comp in ("unet", "vae", "text_encoder"):
        getattr(ref16, comp).half().float()  # in place: the weights rounded to fp16
    ref16_out = forward_outputs(ref16, ids)
    lines = [check_raw_files(name, mdir)]
    for fname, half in (("ldm.safetensors", False), ("ldm.ckpt", False), ("ldm-fp16.ckpt", True)):
        path = os.path.join(mdir, fname)
        got = StableDiffusionPipeline.from_single_file(path, config=os.path.join(mdir, "diffusers"),
                                                       local_files_only=True, safety_checker=None)
        counts = {}
        for comp in ("unet", "vae", "text_encoder"):
            m = getattr(got, comp)
            if half:  # diffusers loads the fp16 values into the model's fp32 parameters
                m.float()
                want = copy.deepcopy(getattr(ref, comp)).half().float()
            else:
                want = getattr(ref, comp)
            counts[comp] = compare_sd(f"{name}/{fname} {comp}", m, want)
        out = forward_outputs(got, ids)
        want_out = ref16_out if half else ref_out
        for k, v in out.items():
            if not torch.equal(v, want_out[k]):
                fail(f"{name}/{fname}: {k} output differs (max {float((v - want_out[k]).abs().max())})")
        if got.scheduler.config.prediction_type != ref.scheduler.config.prediction_type:
            fail(f"{name}/{fname}: scheduler prediction type")
        lines.append(f"  {fname}: diffusers from_single_file == folder: unet {counts['unet']}, vae {counts['vae']}, "
                     f"text_encoder {counts['text_encoder']} tensors equal; text/unet/vae outputs identical")

    lines.append(check_yaml(name, mdir, ref))
    return lines


def check_yaml(name, mdir, ref):
    """The yaml read by diffusers' own LDM-config readers gives the folder's UNet and VAE
    configs; the sdti extension keys give the rest. (from_single_file(original_config=) cannot
    build these models: diffusers assumes LDM's 32 groups and the real CLIP text configs.)"""
    from diffusers.loaders.single_file_utils import (create_unet_diffusers_config_from_ldm,
                                                     create_vae_diffusers_config_from_ldm)
    for f in ("ldm.yaml", "ldm-fp16.yaml"):
        with open(os.path.join(mdir, f)) as fh:
            original = yaml.safe_load(fh)
        ckpt = {}
        unet_cfg = create_unet_diffusers_config_from_ldm(original, ckpt)
        vae_cfg = create_vae_diffusers_config_from_ldm(original, ckpt)
        p = original["model"]["params"]
        unet_cfg["norm_num_groups"] = p["unet_config"]["params"]["norm_num_groups"]
        vae_cfg["norm_num_groups"] = p["first_stage_config"]["params"]["ddconfig"]["norm_num_groups"]
        text = p["cond_stage_config"]["params"]
        extra = 1 if ref.unet.config.use_linear_projection else 0  # SD2: one unused resblock
        text_cfg = dict(num_attention_heads=text["heads"], num_hidden_layers=text["layers"] - extra,
                        hidden_size=text["width"])
        pred = "v_prediction" if p.get("parameterization") == "v" else "epsilon"
        checks = [("unet", unet_cfg, ref.unet.config), ("vae", vae_cfg, ref.vae.config),
                  ("text_encoder", text_cfg, ref.text_encoder.config.to_dict()),
                  ("scheduler", dict(prediction_type=pred), ref.scheduler.config)]
        for comp, cfg, want in checks:
            for k, v in cfg.items():
                if k in ("sample_size",) or (v is None and want.get(k) is None):
                    continue
                a, b = v, want[k]
                if isinstance(a, tuple):
                    a = list(a)
                if isinstance(b, tuple):
                    b = list(b)
                if a != b:
                    fail(f"{name}/{f}: gives {comp}.{k} = {a}, the folder says {b}")
    return ("  ldm.yaml: diffusers' create_unet/vae_diffusers_config_from_ldm give the folder's configs; "
            "heads/layers/width/norm_num_groups extensions and the prediction type agree")


def check_variants(name, vdir, ref):
    unet = UNet2DConditionModel.from_pretrained(os.path.join(vdir, "unet"), local_files_only=True)
    compare_sd(f"{name}/variants unet", unet, ref.unet)
    text = CLIPTextModel.from_pretrained(os.path.join(vdir, "text_encoder"), local_files_only=True)
    compare_sd(f"{name}/variants text_encoder", text, ref.text_encoder)
    vae16 = AutoencoderKL.from_pretrained(os.path.join(vdir, "vae"), variant="fp16", local_files_only=True,
                                          torch_dtype=torch.float16)
    compare_sd(f"{name}/variants vae", vae16, copy.deepcopy(ref.vae).half())
    return ["  diffusers-variants: from_pretrained == folder (sharded unet, .bin text encoder); fp16 vae == folder.half()"]


# ---- main ----

def write_model(name, spec, tok_files):
    mdir = os.path.join(OUT, name)
    if os.path.exists(mdir):
        shutil.rmtree(mdir)
    os.makedirs(mdir)
    pipe, gen = build_pipeline(spec, tok_files)
    ddir = os.path.join(mdir, "diffusers")
    pipe.save_pretrained(ddir, safe_serialization=True)
    ref = StableDiffusionPipeline.from_pretrained(ddir, local_files_only=True, safety_checker=None)
    for comp in ("unet", "vae", "text_encoder"):
        compare_sd(f"{name}/diffusers {comp} round trip", getattr(ref, comp), getattr(pipe, comp))

    ids = ref.tokenizer(["a photo of a cat"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    # Real CLIP ids: a 320, photo 1125, of 539, cat 2368.
    want = [49406, 320, 1125, 539, 320, 2368, 49407]
    if ids[0, :7].tolist() != want or ids[0, 7].item() != ref.tokenizer.pad_token_id:
        fail(f"{name}: tokenizer gives {ids[0, :8].tolist()}")

    sd = ldm_state_dict(pipe, spec, gen)
    safetensors.torch.save_file(sd, os.path.join(mdir, "ldm.safetensors"))
    lc.torch_save_file({"state_dict": sd, "global_step": 123}, os.path.join(mdir, "ldm.ckpt"))
    lc.torch_save_file(lc.half(sd), os.path.join(mdir, "ldm-fp16.ckpt"))
    y = ldm_yaml(spec)
    for f in ("ldm.yaml", "ldm-fp16.yaml"):
        with open(os.path.join(mdir, f), "w") as fh:
            fh.write(y)
    if spec["version"] == 1:
        write_variants(pipe, ddir, os.path.join(mdir, "diffusers-variants"))
    dump_json(expected_json(name, spec, ref, sd), os.path.join(mdir, "expected.json"))

    lines = prove(name, mdir, ref, ids)
    if spec["version"] == 1:
        lines += check_variants(name, os.path.join(mdir, "diffusers-variants"), ref)
    return lines


def du(path):
    total = 0
    for d, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(d, f)) for f in files)
    return total


def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # the same reductions every run
    report = []
    with tempfile.TemporaryDirectory() as tmp:
        tok_files = clip_tokenizer_files(tmp)
        for name, spec in MODELS.items():
            report.append(f"{name}:")
            report += write_model(name, spec, tok_files)
    print("\n".join(report))
    print("written:")
    for name in MODELS:
        mdir = os.path.join(OUT, name)
        for entry in sorted(os.listdir(mdir)):
            p = os.path.join(mdir, entry)
            size = du(p) if os.path.isdir(p) else os.path.getsize(p)
            print(f"  {name}/{entry:<22} {size / 1e6:8.3f} MB")
    print(f"total tests/fixtures/models: {du(OUT) / 1e6:.2f} MB")
    digest = hashlib.sha256()
    for d, dirs, files in sorted(os.walk(OUT)):
        dirs.sort()
        for f in sorted(files):
            with open(os.path.join(d, f), "rb") as fh:
                digest.update(os.path.relpath(os.path.join(d, f), OUT).encode() + b"\0" + fh.read())
    print(f"sha256 of all files: {digest.hexdigest()}")


if __name__ == "__main__":
    main()
