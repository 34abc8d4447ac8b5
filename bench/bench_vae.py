"""PyTorch side of bench/bench_vae.sh: one pass of diffusers' AutoencoderKL with SD1.5's
configuration and random weights, on the same shapes as bench_vae.c.
    python bench/bench_vae.py encode|decode SIZE [THREADS] [fp32|bf16]
SIZE is the image side for encode, the latent side for decode. bf16: torch.autocast (bf16
compute, PyTorch's own mixed precision). Prints "seconds <t>" for the pass alone."""

import sys
import time

import torch
from diffusers import AutoencoderKL


def main():
    op, size = sys.argv[1], int(sys.argv[2])
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    precision = sys.argv[4] if len(sys.argv) > 4 else "fp32"
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
                        down_block_types=["DownEncoderBlock2D"] * 4,
                        up_block_types=["UpDecoderBlock2D"] * 4,
                        block_out_channels=[128, 256, 512, 512], norm_num_groups=32,
                        sample_size=512, scaling_factor=0.18215).eval()
    if op == "encode":
        x = torch.rand(1, 3, size, size) * 2 - 1
        run = lambda: vae.encode(x).latent_dist.mean  # noqa: E731
    else:
        x = torch.randn(1, 4, size, size)
        run = lambda: vae.decode(x).sample  # noqa: E731
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        t0 = time.perf_counter()
        run()
        t = time.perf_counter() - t0
    print(f"seconds {t:.3f}")


if __name__ == "__main__":
    main()
