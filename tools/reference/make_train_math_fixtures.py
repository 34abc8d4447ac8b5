"""Writes the fixtures of sdti's training math into tests/fixtures/train_math/.

Run with the reference venv:  build/refvenv/bin/python tools/reference/make_train_math_fixtures.py

What kohya's train_textual_inversion.py computes around the UNet, with the real libraries:
  - the DDPMScheduler kohya builds (scaled_linear 0.00085..0.012, 1000 steps): betas,
    alphas_cumprod, kohya's all_snr, and the same after kohya's zero-terminal-SNR fix;
  - add_noise / get_velocity on a small latent;
  - kohya's noise draw (train_util.get_noise_noisy_latents_and_timesteps) for each noise option,
    run with the real sd-scripts formulas re-stated here (sd-scripts itself is not a PyPI
    package) on torch's global generator after torch.manual_seed(seed); the pyramid noise's
    Python `random.random()` draws are recorded so the C test can replay them;
  - bilinear upsampling as torch.nn.Upsample(mode="bilinear") does it;
  - every loss type, Huber schedule and loss weighting (and the alpha-mask loss), with the
    gradient of the final loss with respect to the prediction (autograd);
  - AdamW, Lion (lion-pytorch), SGD with Nesterov momentum, Adafactor (transformers) for five
    steps on given gradients, with their state tensors, and clip_grad_norm_;
  - every learning-rate schedule kohya builds through transformers' get_scheduler functions.

Output: train_math.json (scalars, integers, case lists) and train_math.safetensors (float32
tensors). Deterministic: fixed seeds, no clock.
"""

import json
import math
import os
import random

import lion_pytorch
import torch
import transformers
from diffusers import DDPMScheduler
from safetensors.torch import save_file

OUT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                   "tests", "fixtures", "train_math"))

tensors = {}
info = {"versions": {"torch": torch.__version__.split("+")[0],
                     "transformers": transformers.__version__,
                     "lion_pytorch": "0.2.5"}}


def put(name, t):
    tensors[name] = t.detach().to(torch.float32).contiguous().clone()


def make_scheduler():
    return DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         num_train_timesteps=1000, clip_sample=False)


# --- kohya's scheduler preparation (library/custom_train_functions.py, restated) -------------
def all_snr_of(sched):
    acp = sched.alphas_cumprod
    return (torch.sqrt(acp) / torch.sqrt(1.0 - acp)) ** 2


def zero_terminal_snr(sched):
    betas = sched.betas
    alphas = 1 - betas
    alphas_bar = alphas.cumprod(0)
    alphas_bar_sqrt = alphas_bar.sqrt()
    a0 = alphas_bar_sqrt[0].clone()
    at = alphas_bar_sqrt[-1].clone()
    alphas_bar_sqrt -= at
    alphas_bar_sqrt *= a0 / (a0 - at)
    alphas_bar = alphas_bar_sqrt ** 2
    alphas = alphas_bar[1:] / alphas_bar[:-1]
    alphas = torch.cat([alphas_bar[0:1], alphas])
    betas = 1 - alphas
    sched.betas = betas
    sched.alphas = 1.0 - betas
    sched.alphas_cumprod = torch.cumprod(sched.alphas, dim=0)


plain = make_scheduler()
zts = make_scheduler()
snr_before_fix = all_snr_of(zts)  # kohya computes all_snr before the fix
zero_terminal_snr(zts)
put("sched.betas", plain.betas)
put("sched.alphas_cumprod", plain.alphas_cumprod)
put("sched.all_snr", all_snr_of(plain))
put("sched_zts.betas", zts.betas)
put("sched_zts.alphas_cumprod", zts.alphas_cumprod)

# --- add_noise / get_velocity ------------------------------------------------------------------
g = torch.Generator().manual_seed(7)
lat = torch.randn(3, 4, 6, 5, generator=g)
noi = torch.randn(3, 4, 6, 5, generator=g)
ts = torch.tensor([0, 517, 999], dtype=torch.long)
put("addnoise.latents", lat)
put("addnoise.noise", noi)
info["addnoise_timesteps"] = ts.tolist()
put("addnoise.noisy", plain.add_noise(lat, noi, ts))
put("addnoise.velocity", plain.get_velocity(lat, noi, ts))
put("addnoise_zts.noisy", zts.add_noise(lat, noi, ts))
put("addnoise_zts.velocity", zts.get_velocity(lat, noi, ts))

# --- bilinear upsampling (torch.nn.Upsample(size, mode="bilinear")) ---------------------------
up_cases = [((1, 2, 3, 5), (16, 12)), ((2, 1, 1, 1), (7, 9)), ((1, 1, 4, 4), (4, 4)),
            ((1, 1, 5, 7), (16, 12)), ((1, 1, 2, 3), (13, 29))]
info["upsample"] = []
for i, (shape, size) in enumerate(up_cases):
    x = torch.randn(*shape, generator=g)
    y = torch.nn.Upsample(size=size, mode="bilinear")(x)
    put(f"upsample{i}.in", x)
    put(f"upsample{i}.out", y)
    info["upsample"].append({"in": list(shape), "size": list(size)})


# --- kohya's noise draw (train_util.get_noise_noisy_latents_and_timesteps, restated) -----------
class Recorder:
    """random.random() replacement that records what the pyramid noise drew."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.draws = []

    def random(self):
        v = self.rng.random()
        self.draws.append(v)
        return v


def pyramid_noise_like(noise, pyrand, iterations, discount):
    b, c, w, h = noise.shape
    u = torch.nn.Upsample(size=(w, h), mode="bilinear")
    for i in range(iterations):
        r = pyrand.random() * 2 + 2
        wn, hn = max(1, int(w / (r ** i))), max(1, int(h / (r ** i)))
        noise += u(torch.randn(b, c, wn, hn)) * discount ** i
        if wn == 1 or hn == 1:
            break
    return noise / noise.std()


def apply_noise_offset(latents, noise, noise_offset, adaptive_noise_scale):
    if noise_offset is None:
        return noise
    if adaptive_noise_scale is not None:
        latent_mean = torch.abs(latents.mean(dim=(2, 3), keepdim=True))
        noise_offset = noise_offset + adaptive_noise_scale * latent_mean
        noise_offset = torch.clamp(noise_offset, 0.0, None)
    return noise + noise_offset * torch.randn((latents.shape[0], latents.shape[1], 1, 1))


def kohya_noise(a, sched, latents, pyrand):
    noise = torch.randn_like(latents)
    if a.get("noise_offset"):
        if a.get("noise_offset_random_strength"):
            off = torch.rand(1) * a["noise_offset"]
        else:
            off = a["noise_offset"]
        noise = apply_noise_offset(latents, noise, off, a.get("adaptive_noise_scale"))
    if a.get("multires_noise_iterations"):
        noise = pyramid_noise_like(noise, pyrand, a["multires_noise_iterations"],
                                   a.get("multires_noise_discount", 0.3))
    b = latents.shape[0]
    mn = a.get("min_timestep") or 0
    mx = a.get("max_timestep") if a.get("max_timestep") is not None else 1000
    if mn < mx:
        t = torch.randint(mn, mx, (b,))
    else:
        t = torch.full((b,), mx)
    t = t.long()
    if a.get("ip_noise_gamma"):
        if a.get("ip_noise_gamma_random_strength"):
            s = torch.rand(1) * a["ip_noise_gamma"]
        else:
            s = a["ip_noise_gamma"]
        noisy = sched.add_noise(latents, noise + s * torch.randn_like(latents), t)
    else:
        noisy = sched.add_noise(latents, noise, t)
    return noise, noisy, t


noise_cases = [
    {"name": "plain"},
    {"name": "offset", "noise_offset": 0.1},
    {"name": "offset_random", "noise_offset": 0.1, "noise_offset_random_strength": True},
    {"name": "adaptive", "noise_offset": 0.05, "adaptive_noise_scale": 0.3},
    {"name": "adaptive_neg", "noise_offset": 0.05, "adaptive_noise_scale": -2.0},
    {"name": "multires", "multires_noise_iterations": 6, "multires_noise_discount": 0.3},
    {"name": "multires_offset", "noise_offset": 0.1, "multires_noise_iterations": 3,
     "multires_noise_discount": 0.5},
    {"name": "ip", "ip_noise_gamma": 0.1},
    {"name": "ip_random", "ip_noise_gamma": 0.1, "ip_noise_gamma_random_strength": True},
    {"name": "timestep_range", "min_timestep": 200, "max_timestep": 300},
    {"name": "timestep_fixed", "min_timestep": 500, "max_timestep": 500},
    {"name": "all", "noise_offset": 0.1, "noise_offset_random_strength": True,
     "adaptive_noise_scale": 0.2, "multires_noise_iterations": 4, "multires_noise_discount": 0.3,
     "ip_noise_gamma": 0.05, "ip_noise_gamma_random_strength": True, "min_timestep": 10,
     "max_timestep": 900, "zero_terminal_snr": True},
]
gl = torch.Generator().manual_seed(11)
latents = torch.randn(2, 4, 16, 12, generator=gl) * 0.8 + 0.3
put("noise.latents", latents)
info["noise_cases"] = []
for i, case in enumerate(noise_cases):
    seed = 1000 + i
    torch.manual_seed(seed)
    pyrand = Recorder(seed)
    sched = zts if case.get("zero_terminal_snr") else plain
    n, noisy, t = kohya_noise(case, sched, latents.clone(), pyrand)
    put(f"noise.{case['name']}.noise", n)
    put(f"noise.{case['name']}.noisy", noisy)
    info["noise_cases"].append(dict(case, seed=seed, timesteps=t.tolist(),
                                    py_random=pyrand.draws))


# --- loss (train_util.conditional_loss, get_huber_threshold_if_needed, weightings) ------------
def huber_c_of(a, t, sched):
    if a["loss_type"] not in ("huber", "smooth_l1"):
        return None
    if a["huber_schedule"] == "exponential":
        alpha = -math.log(a["huber_c"]) / 1000
        return torch.exp(-alpha * t) * a["huber_scale"]
    if a["huber_schedule"] == "snr":
        acp = torch.index_select(sched.alphas_cumprod, 0, t)
        sig = ((1.0 - acp) / acp) ** 0.5
        return (1 - a["huber_c"]) / (1 + sig) ** 2 + a["huber_c"]
    return torch.full((t.shape[0],), a["huber_c"] * a["huber_scale"])


def conditional_loss(pred, target, loss_type, huber_c):
    if loss_type == "l2":
        return torch.nn.functional.mse_loss(pred, target, reduction="none")
    if loss_type == "l1":
        return torch.nn.functional.l1_loss(pred, target, reduction="none")
    huber_c = huber_c.view(-1, 1, 1, 1)
    if loss_type == "huber":
        return 2 * huber_c * (torch.sqrt((pred - target) ** 2 + huber_c ** 2) - huber_c)
    return 2 * (torch.sqrt((pred - target) ** 2 + huber_c ** 2) - huber_c)


def snr_at(all_snr, t):
    return torch.stack([all_snr[x] for x in t])


def apply_masked_loss(loss, alpha_masks):
    """custom_train_functions.apply_masked_loss for alpha masks."""
    mask_image = alpha_masks.to(dtype=loss.dtype).unsqueeze(1)
    mask_image = torch.nn.functional.interpolate(mask_image, size=loss.shape[2:], mode="area")
    return loss * mask_image


def kohya_loss(a, pred, target, t, weights, sched, all_snr):
    loss = conditional_loss(pred.float(), target.float(), a["loss_type"],
                            huber_c_of(a, t, sched))
    if a.get("alpha_mask"):
        loss = apply_masked_loss(loss, lmask)
    loss = loss.mean([1, 2, 3])
    loss = loss * weights
    v = a.get("v_parameterization", False)
    if a.get("min_snr_gamma"):
        snr = snr_at(all_snr, t)
        m = torch.minimum(snr, torch.full_like(snr, a["min_snr_gamma"]))
        loss = loss * (torch.div(m, snr + 1) if v else torch.div(m, snr)).float()
    if a.get("scale_v_pred_loss_like_noise_pred"):
        s = torch.minimum(snr_at(all_snr, t), torch.ones(t.shape[0]) * 1000)
        loss = loss * (s / (s + 1))
    if a.get("v_pred_like_loss"):
        s = torch.minimum(snr_at(all_snr, t), torch.ones(t.shape[0]) * 1000)
        loss = loss + loss / (s / (s + 1)) * a["v_pred_like_loss"]
    if a.get("debiased_estimation_loss"):
        s = torch.minimum(snr_at(all_snr, t), torch.ones(t.shape[0]) * 1000)
        loss = (1 / (s + 1) if v else 1 / torch.sqrt(s)) * loss
    per_sample = loss.detach().clone()
    return loss.mean(), per_sample


gp = torch.Generator().manual_seed(23)
lpred = torch.randn(4, 4, 6, 5, generator=gp)
ltarget = torch.randn(4, 4, 6, 5, generator=gp) * 0.5
lt = torch.tensor([0, 3, 480, 999], dtype=torch.long)
lw = torch.tensor([1.0, 0.5, 1.0, 2.0])
lmask = torch.rand(4, 48, 40, generator=torch.Generator().manual_seed(29))
lmask[1] = 1.0  # an image without transparency
put("loss.alpha_mask", lmask)
put("loss.pred", lpred)
put("loss.target", ltarget)
info["loss_timesteps"] = lt.tolist()
info["loss_weights"] = lw.tolist()
base = {"huber_c": 0.1, "huber_scale": 1.0, "huber_schedule": "snr"}
loss_cases = []
for lt_name in ("l2", "l1"):
    loss_cases.append(dict(base, loss_type=lt_name))
for lt_name in ("huber", "smooth_l1"):
    for sch in ("snr", "exponential", "constant"):
        loss_cases.append(dict(base, loss_type=lt_name, huber_schedule=sch, huber_c=0.2,
                               huber_scale=1.5))
loss_cases += [
    dict(base, loss_type="huber", huber_schedule="snr", zero_terminal_snr=True),
    dict(base, loss_type="l2", min_snr_gamma=5.0),
    dict(base, loss_type="l2", min_snr_gamma=5.0, v_parameterization=True),
    dict(base, loss_type="l2", v_parameterization=True, scale_v_pred_loss_like_noise_pred=True),
    dict(base, loss_type="l2", v_pred_like_loss=0.3),
    dict(base, loss_type="l2", debiased_estimation_loss=True),
    dict(base, loss_type="l2", v_parameterization=True, debiased_estimation_loss=True),
    dict(base, loss_type="smooth_l1", huber_schedule="exponential", min_snr_gamma=1.5,
         v_pred_like_loss=0.1, debiased_estimation_loss=True),
    dict(base, loss_type="l1", v_parameterization=True, min_snr_gamma=3.0,
         scale_v_pred_loss_like_noise_pred=True, debiased_estimation_loss=True,
         zero_terminal_snr=True),
    dict(base, loss_type="l2", alpha_mask=True),
    dict(base, loss_type="huber", huber_schedule="snr", alpha_mask=True, min_snr_gamma=5.0),
]
info["loss_cases"] = []
for i, case in enumerate(loss_cases):
    sched = zts if case.get("zero_terminal_snr") else plain
    all_snr = all_snr_of(plain)  # before any zero-terminal fix, as kohya
    pred = lpred.clone().requires_grad_(True)
    loss, per_sample = kohya_loss(case, pred, ltarget, lt, lw, sched, all_snr)
    loss.backward()
    put(f"loss{i}.grad", pred.grad)
    put(f"loss{i}.per_sample", per_sample)
    info["loss_cases"].append(dict(case, loss=loss.item()))

# --- optimizers ---------------------------------------------------------------------------------
go = torch.Generator().manual_seed(31)
p0 = torch.randn(2, 64, generator=go)
grads = [torch.randn(2, 64, generator=go) * (0.5 + k) for k in range(5)]
grads[3][0, :7] = 0.0  # zero gradients on some entries (sign/sgn at 0)
put("opt.param0", p0)
for k, gk in enumerate(grads):
    put(f"opt.grad{k}", gk)
pa0 = torch.randn(8, 16, generator=go) * 0.1
pa_grads = [torch.randn(8, 16, generator=go) * 0.01 * (1 + k) for k in range(5)]
put("adafactor.param0", pa0)
for k, gk in enumerate(pa_grads):
    put(f"adafactor.grad{k}", gk)
pv0 = torch.randn(24, generator=go)
pv_grads = [torch.randn(24, generator=go) for _ in range(5)]
put("adafactor1d.param0", pv0)
for k, gk in enumerate(pv_grads):
    put(f"adafactor1d.grad{k}", gk)

opt_cases = [
    {"name": "adamw", "type": "AdamW", "lr": 1e-3, "args": {}},
    {"name": "adamw_args", "type": "AdamW", "lr": 5e-3,
     "args": {"betas": [0.8, 0.95], "eps": 1e-6, "weight_decay": 0.1}},
    {"name": "adamw_amsgrad", "type": "AdamW", "lr": 1e-3, "args": {"amsgrad": True}},
    {"name": "lion", "type": "Lion", "lr": 1e-4, "args": {}},
    {"name": "lion_args", "type": "Lion", "lr": 3e-4,
     "args": {"betas": [0.95, 0.98], "weight_decay": 0.5}},
    {"name": "sgdn", "type": "SGDNesterov", "lr": 1e-2, "args": {}},
    {"name": "sgdn_args", "type": "SGDNesterov", "lr": 1e-2,
     "args": {"momentum": 0.5, "weight_decay": 0.01}},
    {"name": "adafactor", "type": "AdaFactor", "lr": 2e-6, "args": {}, "param": "adafactor"},
    {"name": "adafactor_lr", "type": "AdaFactor", "lr": 1e-3,
     "args": {"relative_step": False, "scale_parameter": False}, "param": "adafactor"},
    {"name": "adafactor_warmup", "type": "AdaFactor", "lr": 2e-6,
     "args": {"warmup_init": True, "beta1": 0.9, "weight_decay": 0.01, "clip_threshold": 0.5},
     "param": "adafactor"},
    {"name": "adafactor_1d", "type": "AdaFactor", "lr": 2e-6, "args": {}, "param": "adafactor1d"},
]


def build_optimizer(case, params):
    """What kohya's train_util.get_optimizer builds for these option values."""
    kw = dict(case["args"])
    for k, v in list(kw.items()):
        if isinstance(v, list):
            kw[k] = tuple(v)
    t = case["type"].lower()
    lr = case["lr"]
    if t == "adamw":
        return torch.optim.AdamW(params, lr=lr, **kw)
    if t == "lion":
        return lion_pytorch.Lion(params, lr=lr, **kw)
    if t == "sgdnesterov":
        kw.setdefault("momentum", 0.9)
        return torch.optim.SGD(params, lr=lr, nesterov=True, **kw)
    if t == "adafactor":
        kw.setdefault("relative_step", True)
        if not kw["relative_step"] and kw.get("warmup_init", False):
            kw["relative_step"] = True
        if kw["relative_step"]:
            lr = None
        return transformers.optimization.Adafactor(params, lr=lr, **kw)
    raise ValueError(t)


info["opt_cases"] = []
for case in opt_cases:
    pname = case.get("param", "opt")
    start = {"opt": p0, "adafactor": pa0, "adafactor1d": pv0}[pname]
    gl_ = {"opt": grads, "adafactor": pa_grads, "adafactor1d": pv_grads}[pname]
    p = torch.nn.Parameter(start.clone())
    opt = build_optimizer(case, [p])
    lrs = []
    for k in range(5):
        p.grad = gl_[k].clone()
        opt.step()
        put(f"{case['name']}.param{k + 1}", p.data)
        st = opt.state[p]
        if case["type"] == "AdaFactor":
            lrs.append(float(opt._get_lr(opt.param_groups[0], st)))
    st = opt.state[p]
    names = []
    for key, val in st.items():
        if torch.is_tensor(val) and val.numel() > 1 or key in ("exp_avg", "exp_avg_sq"):
            put(f"{case['name']}.state.{key}", val)
            names.append(key)
    rec = dict(case, param=pname, state=names)
    if "step" in st:
        rec["step"] = float(st["step"])
    if "RMS" in st:
        rec["RMS"] = float(st["RMS"])
    if lrs:
        rec["adafactor_lr"] = lrs
    info["opt_cases"].append(rec)

# --- clip_grad_norm_ ------------------------------------------------------------------------------
gc = torch.Generator().manual_seed(41)
info["clip_cases"] = []
for i, (shapes, max_norm) in enumerate([([(5, 7), (13,)], 1.0), ([(5, 7), (13,)], 100.0),
                                        ([(3, 768)], 0.5)]):
    ps = [torch.nn.Parameter(torch.zeros(s)) for s in shapes]
    for j, p in enumerate(ps):
        p.grad = torch.randn(*p.shape, generator=gc)
        put(f"clip{i}.grad{j}", p.grad)
    total = torch.nn.utils.clip_grad_norm_(ps, max_norm)
    for j, p in enumerate(ps):
        put(f"clip{i}.clipped{j}", p.grad)
    info["clip_cases"].append({"count": len(ps), "max_norm": max_norm,
                               "total_norm": float(total)})

# --- learning-rate schedules (transformers' functions, as kohya's get_scheduler_fix calls them)
sched_cases = [
    {"name": "constant", "warmup": 0},
    {"name": "constant_with_warmup", "warmup": 4},
    {"name": "linear", "warmup": 0},
    {"name": "linear", "warmup": 5},
    {"name": "cosine", "warmup": 0},
    {"name": "cosine", "warmup": 3},
    {"name": "cosine_with_restarts", "warmup": 2, "num_cycles": 3},
    {"name": "cosine_with_restarts", "warmup": 0, "num_cycles": 1},
    {"name": "polynomial", "warmup": 2, "power": 2.0},
    {"name": "polynomial", "warmup": 0, "power": 1.0, "lr_end": 1e-4},
    {"name": "cosine_with_min_lr", "warmup": 3, "num_cycles": 1, "min_lr_ratio": 0.1},
    {"name": "inverse_sqrt", "warmup": 4},
    {"name": "inverse_sqrt", "warmup": 4, "timescale": 7},
]
total = 20
base_lr = 1e-3
info["sched_total"] = total
info["sched_base_lr"] = base_lr
info["sched_cases"] = []
for case in sched_cases:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base_lr)
    n = case["name"]
    w = case["warmup"]
    f = transformers.optimization.TYPE_TO_SCHEDULER_FUNCTION[
        transformers.optimization.SchedulerType(n)]
    if n == "constant":
        s = f(opt)
    elif n == "constant_with_warmup":
        s = f(opt, num_warmup_steps=w)
    elif n == "inverse_sqrt":
        s = f(opt, num_warmup_steps=w, timescale=case.get("timescale"))
    elif n == "cosine_with_restarts":
        s = f(opt, num_warmup_steps=w, num_training_steps=total, num_cycles=case["num_cycles"])
    elif n == "polynomial":
        kw = {"lr_end": case["lr_end"]} if "lr_end" in case else {}
        s = f(opt, num_warmup_steps=w, num_training_steps=total, power=case["power"], **kw)
    elif n == "cosine_with_min_lr":
        s = f(opt, num_warmup_steps=w, num_training_steps=total,
              num_cycles=case["num_cycles"] / 2, min_lr_rate=case["min_lr_ratio"])
    else:
        s = f(opt, num_warmup_steps=w, num_training_steps=total)
    lrs = []
    for _ in range(total + 4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        s.step()
    info["sched_cases"].append(dict(case, lr=lrs))

os.makedirs(OUT, exist_ok=True)
save_file(dict(sorted(tensors.items())), os.path.join(OUT, "train_math.safetensors"))
with open(os.path.join(OUT, "train_math.json"), "w") as fp:
    json.dump(info, fp, indent=1, sort_keys=True)
    fp.write("\n")
print(f"wrote {len(tensors)} tensors to {OUT}")
