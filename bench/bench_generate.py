"""PyTorch side of bench/bench_generate.sh: diffusers' StableDiffusionPipeline with SD1.5's
architecture (UNet, VAE, CLIP ViT-L text encoder) and random weights, Euler, classifier-free
guidance, one image. Prints "step_seconds <median seconds per denoising step>" (the UNet on the
batch of two plus the scheduler step; the first step is not counted) and "total_seconds <t>".
    python bench/bench_generate.py SIZE STEPS [THREADS]
The tokenizer comes from tests/fixtures/models/sd1-tiny (the CLIP vocabulary)."""

import os
import statistics
import sys
import time

import torch
from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main():
    size, steps = int(sys.argv[1]), int(sys.argv[2])
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=32, sample_size=512)
    text = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                        num_attention_heads=12, max_position_embeddings=77,
                                        hidden_act="quick_gelu", projection_dim=768))
    tok = CLIPTokenizer.from_pretrained(os.path.join(ROOT, "tests", "fixtures", "models", "sd1-tiny", "diffusers", "tokenizer"))
    sched = EulerDiscreteScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                   beta_schedule="scaled_linear", steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    marks = []

    def on_step(p, i, t, kwargs):
        marks.append(time.perf_counter())
        return kwargs

    t0 = time.perf_counter()
    with torch.no_grad():
        pipe("a photo of a cat", negative_prompt="blurry", height=size, width=size, num_inference_steps=steps,
             guidance_scale=7.5, generator=torch.Generator("cpu").manual_seed(1), callback_on_step_end=on_step)
    total = time.perf_counter() - t0
    per = [b - a for a, b in zip(marks, marks[1:])]
    print(f"step_seconds {statistics.median(per) if per else float('nan'):.4f}")
    print(f"total_seconds {total:.3f}")


if __name__ == "__main__":
    main()
