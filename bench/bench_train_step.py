"""PyTorch side of bench/bench_train_step.sh: kohya's textual-inversion training step
(train_textual_inversion.py with cached latents) on SD1.5 shapes, 512x512 (64x64 latents),
batch 1, random weights.

    python bench/bench_train_step.py STEPS [THREADS] [fp32|bf16]
    python bench/bench_train_step.py --write-model OUT.safetensors

What a step does, as kohya's loop on the CPU (the same step tools/reference/kohya_ti_step.py
states on the tiny models): the text encoder in train mode with only its token embedding
trainable (one new token row appended, resize_token_embeddings), the UNet frozen in eval mode,
noise and a timestep drawn, DDPMScheduler.add_noise on the cached latents, the UNet on the
text encoder's last hidden state, MSE loss, backward to the whole embedding matrix,
clip_grad_norm_, AdamW over the embedding matrix, zero_grad, the old rows restored. The VAE
is built and kept, as kohya keeps it in memory after caching the latents, but never run.
bf16: kohya's --mixed_precision bf16 on the CPU: UNet weights in bf16, both models' forward
under torch.autocast (the text encoder's weights stay fp32).

Prints "step_seconds <t>" (the mean over the steps after the first, which warms up) and
"first_step_seconds <t>". Peak RSS is the caller's (/usr/bin/time).

--write-model writes the SD1.5-shaped random LDM checkpoint sdti trains on (safetensors
only) with tools/reference/make_sd15_random.py's functions."""

import os
import sys
import time

import torch

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "reference"))


def write_model(path):
    import make_sd15_random as m

    sd, counts = m.ldm_state_dict(torch.Generator().manual_seed(1234))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    m.write_safetensors(sd, path)
    print(f"wrote {path}: unet {counts['unet'] / 1e6:.1f}M, vae {counts['vae'] / 1e6:.1f}M, "
          f"text {counts['text'] / 1e6:.1f}M parameters")


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--write-model":
        write_model(sys.argv[2])
        return
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    import make_sd15_random as m

    steps = int(sys.argv[1])
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    precision = sys.argv[3] if len(sys.argv) > 3 else "fp32"
    amp = torch.bfloat16 if precision == "bf16" else None
    torch.set_num_threads(threads)
    torch.manual_seed(0)

    unet = UNet2DConditionModel(**m.UNET)
    vae = AutoencoderKL(**m.VAE)  # kept in memory as kohya keeps it; latents are cached
    te = CLIPTextModel(CLIPTextConfig(**m.TEXT))
    vocab = te.get_input_embeddings().weight.shape[0]
    te.resize_token_embeddings(vocab + 1)  # one new token ("mytok"), initialised from "cat"
    new_id = vocab
    emb = te.get_input_embeddings().weight
    with torch.no_grad():
        emb[new_id] = emb[2368]
    orig = emb.data.detach().clone()
    index_no_updates = torch.arange(vocab + 1) < new_id

    te.requires_grad_(True)
    te.text_model.encoder.requires_grad_(False)
    te.text_model.final_layer_norm.requires_grad_(False)
    te.text_model.embeddings.position_embedding.requires_grad_(False)
    unet.requires_grad_(False)
    vae.requires_grad_(False)
    if amp is not None:
        unet.to(amp)
    unet.eval()
    te.train()
    optimizer = torch.optim.AdamW(te.get_input_embeddings().parameters(), lr=5e-3)
    sched = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                          num_train_timesteps=1000, clip_sample=False)

    # "a photo of mytok": BOS, three words, the new token, EOS, padded with EOS (SD1)
    ids = [49406, 320, 1125, 539, new_id, 49407]
    input_ids = torch.tensor([ids + [49407] * (77 - len(ids))])
    latents = torch.randn(1, 4, 64, 64) * 0.18215  # the cached latent, scaled
    g = torch.Generator().manual_seed(1)

    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp is not None):
            hidden = te(input_ids)[0]
        hidden = hidden.float()
        noise = torch.randn(latents.shape, generator=g, dtype=amp or torch.float32)
        t = torch.randint(0, 1000, (1,), generator=g)
        noisy = sched.add_noise(latents.to(amp or torch.float32), noise, t)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp is not None):
            pred = unet(noisy, t, hidden).sample
        loss = torch.nn.functional.mse_loss(pred.float(), noise.float(), reduction="none")
        loss = loss.mean([1, 2, 3]).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(te.get_input_embeddings().parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            emb[index_no_updates] = orig[index_no_updates]
        times.append(time.perf_counter() - t0)
    print(f"first_step_seconds {times[0]:.3f}")
    rest = times[1:] or times
    print(f"step_seconds {sum(rest) / len(rest):.3f}")


if __name__ == "__main__":
    main()
