"""One txt2img generation at SD1.5 shapes, the PyTorch and stable-diffusion.cpp sides of
bench/bench_generate.sh (random weights, nothing downloaded).

    python bench/bench_generate.py diffusers STEPS THREADS [W H]
    python bench/bench_generate.py sdcpp MODEL.safetensors STEPS THREADS [W H]

Prints "seconds <total>" (text encoding + STEPS Euler steps with classifier-free guidance +
VAE decode, model loading excluded) on stdout; the caller measures peak RSS with
/usr/bin/time. The shell script runs each side at two step counts and takes the difference,
so the time per step excludes what is done once per image.

diffusers: StableDiffusionPipeline assembled from SD1.5's configs with diffusers' own random
initialisation (timing does not depend on the values), EulerDiscreteScheduler with kohya's
settings, guidance 7.5, generator = torch.Generator("cpu").
sdcpp: stable-diffusion-cpp-python (PyPI; it builds stable-diffusion.cpp with GGML_NATIVE),
loading the SD1.5-shaped random LDM checkpoint that tools/reference/make_sd15_random.py
writes, f32 weights, euler, cfg 7.5.
"""

import os
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
PROMPT = "a photo of a cat sitting on a wooden table, highly detailed"


def run_diffusers(steps, threads, width, height):
    import torch

    torch.set_num_threads(threads)
    sys.path.insert(0, os.path.join(ROOT, "tools", "reference"))
    import make_sd15_random as sd15  # the SD1.5 configs, nothing else is used
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**sd15.UNET).eval()
    vae = AutoencoderKL(**sd15.VAE).eval()
    text = CLIPTextModel(CLIPTextConfig(**sd15.TEXT)).eval()
    tokenizer = CLIPTokenizer.from_pretrained(os.path.join(ROOT, "tests/fixtures/models/sd1-tiny/diffusers/tokenizer"))
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       num_train_timesteps=1000, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator("cpu").manual_seed(1)
    start = time.perf_counter()
    with torch.no_grad():
        pipe(PROMPT, negative_prompt="", width=width, height=height, num_inference_steps=steps, guidance_scale=7.5,
             generator=generator, output_type="np")
    print(f"seconds {time.perf_counter() - start:.3f}")


def run_sdcpp(model, steps, threads, width, height):
    from stable_diffusion_cpp import StableDiffusion

    sd = StableDiffusion(model_path=model, n_threads=threads, verbose=False)
    start = time.perf_counter()
    sd.generate_image(prompt=PROMPT, negative_prompt="", width=width, height=height, sample_steps=steps,
                      sample_method="euler", cfg_scale=7.5, seed=1)
    print(f"seconds {time.perf_counter() - start:.3f}")


def main():
    args = sys.argv[1:]
    if args and args[0] == "diffusers" and len(args) in (3, 5):
        size = [int(a) for a in args[3:5]] or [512, 512]
        run_diffusers(int(args[1]), int(args[2]), *size)
    elif args and args[0] == "sdcpp" and len(args) in (4, 6):
        size = [int(a) for a in args[4:6]] or [512, 512]
        run_sdcpp(args[1], int(args[2]), int(args[3]), *size)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
