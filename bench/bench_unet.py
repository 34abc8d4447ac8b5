"""PyTorch side of bench/bench_unet.sh: diffusers' UNet2DConditionModel with SD1.5's
configuration and random weights, on the same shapes as bench_unet.c (batch 1, 77 tokens).
    python bench/bench_unet.py fwd|fwdbwd|ckpt LATENT [THREADS] [fp32|bf16|bf16w] [RUNS]
fwd: forward under no_grad; fwdbwd: forward + torch.autograd backward with only
encoder_hidden_states requiring grad; ckpt: the same with diffusers' gradient checkpointing.
bf16: torch.autocast (PyTorch's own mixed precision, fp32 weights); bf16w: bf16 weights
(the model built in bf16) and autocast, as kohya runs --mixed_precision bf16. One warm-up
run, then the best of RUNS is printed as "seconds <t>"."""

import sys
import time

import torch
from diffusers import UNet2DConditionModel


def main():
    op, latent = sys.argv[1], int(sys.argv[2])
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    precision = sys.argv[4] if len(sys.argv) > 4 else "fp32"
    runs = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if precision == "bf16w":  # built in bf16, so no fp32 copy ever counts in the peak
        torch.set_default_dtype(torch.bfloat16)
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32)
    torch.set_default_dtype(torch.float32)
    unet.requires_grad_(False)
    if op == "ckpt":
        unet.enable_gradient_checkpointing()
        unet.train()  # checkpointing is active in training mode; dropout is 0
    else:
        unet.eval()
    x = torch.randn(1, 4, latent, latent)
    t = torch.tensor([500])
    enc = torch.randn(1, 77, 768)
    dy = torch.randn(1, 4, latent, latent)

    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision != "fp32"):
            if op == "fwd":
                with torch.no_grad():
                    unet(x, t, encoder_hidden_states=enc)
                return
            e = enc.clone().requires_grad_(True)
            out = unet(x, t, encoder_hidden_states=e).sample
        (out.float() * dy).sum().backward()

    best = float("inf")
    for r in range(runs + 1):
        t0 = time.perf_counter()
        run()
        dt = time.perf_counter() - t0
        if r > 0:
            best = min(best, dt)
    print(f"seconds {best:.3f}")


if __name__ == "__main__":
    main()
