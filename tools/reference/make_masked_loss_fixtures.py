"""Writes the fixtures of kohya's masked loss into tests/fixtures/masked_loss/.

Run with the reference venv (offline):
    build/refvenv/bin/python tools/reference/make_masked_loss_fixtures.py

kohya-ss/sd-scripts is not a PyPI package, so its functions are re-stated here from
library/train_util.py (load_image, trim_and_resize_if_required, BucketManager's resized size,
ControlNetDataset.__getitem__, the alpha_mask branch of __getitem__ and of the latent cache,
IMAGE_TRANSFORMS), library/utils.py (resize_image / pil_resize: PIL LANCZOS when a side grows)
and library/custom_train_functions.py (apply_masked_loss), with PIL and torch doing the work.

Images (a kohya dataset with buckets on: resolution 64, bucket steps 64, so one 64x64 bucket):
  cn/img/a.png  40x40 RGB + a.txt, cn/img/b.png 48x32 RGB + b.txt     (training images)
  cn/cond/a.png 40x40 RGB, cn/cond/b.png 48x32 grayscale ("L")        (conditioning images)
  alpha/img/c.png 40x40 RGBA, d.png 64x64 RGBA, e.png 48x32 RGBA, f.png 64x64 RGB  (+ .txt)
expected.safetensors:
  cond.<stem>, cond.<stem>.flipped   [64, 64]  ControlNetDataset's conditioning image resized
        straight to the bucket (stretched), mirrored with its image, ToTensor + Normalize,
        then apply_masked_loss's R / 2 + 0.5
  alpha.<stem>, alpha.<stem>.flipped [64, 64]  the RGBA image resized to cover the bucket,
        centre-cropped, (mirrored,) alpha / 255; ones for the RGB image
  area.<case>.in / .out  F.interpolate(mask[:, None], size, mode="area") at uneven ratios
  loss.pred, loss.target [2, 4, 8, 8], loss.cond [2, 3, 64, 64] (the two conditioning images as
        IMAGE_TRANSFORMS gives them), loss.value [1], loss.grad [2, 4, 8, 8]: l2 loss
        (reduction none) masked by apply_masked_loss's conditioning branch, mean over C, H, W,
        loss weights [1, 0.5], batch mean, and its autograd gradient w.r.t. pred
cli/: 64x64 images for test_masked_loss's sdti train runs: img/ (RGB + captions), white/ and
  half/ (conditioning images: all white, left half black), opaque/ and halfalpha/ (the images
  with alpha 255, and with the left half transparent).
Deterministic: fixed seeds, one thread.
"""

import os
import shutil

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "masked_loss")
BUCKET = (64, 64)  # width, height


def pattern(w, h, channels, seed):
    """Smooth gradients plus noise: something Lanczos has work to do on."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.zeros((h, w, channels), np.float64)
    for c in range(channels):
        fx, fy, ph = rng.uniform(0.05, 0.4), rng.uniform(0.05, 0.4), rng.uniform(0, 6.3)
        out[:, :, c] = 127.5 + 100 * np.sin(fx * x + fy * y + ph) + rng.uniform(-27, 27, (h, w))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def load_image(path, alpha=False):
    """train_util.load_image."""
    with Image.open(path) as image:
        if alpha:
            if not image.mode == "RGBA":
                image = image.convert("RGBA")
        else:
            if not image.mode == "RGB":
                image = image.convert("RGB")
        return np.array(image, np.uint8)


def resize_image(image, width, height, resized_width, resized_height):
    """utils.resize_image with resize_interpolation None: area when no side grows (cv2; not
    used by these fixtures, asserted), else PIL LANCZOS (pil_resize's BGR<->RGB swaps cancel)."""
    assert not (width >= resized_width and height >= resized_height), "cv2 area path not re-stated"
    mode = "RGBA" if image.shape[2] == 4 else "RGB"
    pil = Image.fromarray(image, mode).resize((resized_width, resized_height), Image.LANCZOS)
    return np.array(pil)


def resized_size(w, h):
    """BucketManager.select_bucket's resized size for the one 64x64 bucket."""
    bw, bh = BUCKET
    scale = bh / h if (w / h) > (bw / bh) else bw / w
    return int(w * scale + 0.5), int(h * scale + 0.5)


def trim_and_resize(image):
    """train_util.trim_and_resize_if_required, centre crop."""
    h, w = image.shape[:2]
    rw, rh = resized_size(w, h)
    if (w, h) != (rw, rh):
        image = resize_image(image, w, h, rw, rh)
    h, w = image.shape[:2]
    if w > BUCKET[0]:
        p = (w - BUCKET[0]) // 2
        image = image[:, p:p + BUCKET[0]]
    if h > BUCKET[1]:
        p = (h - BUCKET[1]) // 2
        image = image[p:p + BUCKET[1]]
    return image


def to_tensor(img):
    """IMAGE_TRANSFORMS: ToTensor + Normalize([0.5], [0.5])."""
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div(255)
    return (t - 0.5) / 0.5


def cond_image(path, orig_w, orig_h, flipped):
    """ControlNetDataset.__getitem__ with enable_bucket: [3, 64, 64] in [-1, 1]."""
    img = load_image(path)
    assert img.shape[0] == orig_h and img.shape[1] == orig_w
    img = resize_image(img, orig_w, orig_h, BUCKET[0], BUCKET[1])
    h, w = BUCKET[1], BUCKET[0]
    ct, cl = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    img = img[ct:ct + h, cl:cl + w]
    if flipped:
        img = img[:, ::-1, :].copy()
    return to_tensor(img)


def cond_mask(cond):
    """apply_masked_loss's conditioning branch, before the area resize: [B, 1, H, W]."""
    mask = cond[:, 0].unsqueeze(1)
    return mask / 2 + 0.5


def alpha_mask(path, flipped):
    """The alpha_mask branch (__getitem__ / cache_batch_latents): [64, 64] in [0, 1]."""
    img = trim_and_resize(load_image(path, True))
    if flipped:
        img = img[:, ::-1, :].copy()
    if img.shape[2] == 4:
        return torch.FloatTensor(img[:, :, 3].astype(np.float32) / 255.0)
    return torch.ones((img.shape[0], img.shape[1]), dtype=torch.float32)


def save_png(arr, path, mode):
    Image.fromarray(arr, mode).save(path)


def main():
    torch.set_num_threads(1)
    shutil.rmtree(OUT, ignore_errors=True)
    for d in ["cn/img", "cn/cond", "alpha/img"]:
        os.makedirs(os.path.join(OUT, d))
    tensors = {}

    cn = {"a": (40, 40, "RGB"), "b": (48, 32, "L")}
    for i, (stem, (w, h, cmode)) in enumerate(cn.items()):
        save_png(pattern(w, h, 3, 10 + i), os.path.join(OUT, "cn/img", stem + ".png"), "RGB")
        with open(os.path.join(OUT, "cn/img", stem + ".txt"), "w") as f:
            f.write("a photo of mytok\n")
        c = pattern(w, h, 1 if cmode == "L" else 3, 20 + i)
        c = c[:, :, 0] if cmode == "L" else c
        save_png(c, os.path.join(OUT, "cn/cond", stem + ".png"), cmode)
        for flipped in (False, True):
            path = os.path.join(OUT, "cn/cond", stem + ".png")
            m = cond_mask(cond_image(path, w, h, flipped).unsqueeze(0))[0, 0]
            tensors[f"cond.{stem}" + (".flipped" if flipped else "")] = m.contiguous()

    alpha = {"c": (40, 40, "RGBA"), "d": (64, 64, "RGBA"), "e": (48, 32, "RGBA"),
             "f": (64, 64, "RGB")}
    for i, (stem, (w, h, mode)) in enumerate(alpha.items()):
        arr = pattern(w, h, 4 if mode == "RGBA" else 3, 30 + i)
        if mode == "RGBA":  # some fully transparent and fully opaque pixels too
            arr[: h // 4, :, 3] = 0
            arr[-h // 4:, :, 3] = 255
        path = os.path.join(OUT, "alpha/img", stem + ".png")
        save_png(arr, path, mode)
        with open(os.path.join(OUT, "alpha/img", stem + ".txt"), "w") as f:
            f.write("a photo of mytok\n")
        for flipped in (False, True):
            tensors[f"alpha.{stem}" + (".flipped" if flipped else "")] = alpha_mask(path, flipped)

    # for the sdti train runs of test_masked_loss: 64x64 training images, conditioning images
    # all white and left-half black, the same images with an opaque alpha and a left-half
    # transparent one
    for d in ["cli/img", "cli/white", "cli/half", "cli/opaque", "cli/halfalpha"]:
        os.makedirs(os.path.join(OUT, d))
    for i, stem in enumerate(["p", "q"]):
        rgb = pattern(64, 64, 3, 40 + i)
        save_png(rgb, os.path.join(OUT, "cli/img", stem + ".png"), "RGB")
        white = np.full((64, 64, 3), 255, np.uint8)
        half = white.copy()
        half[:, :32] = 0
        save_png(white, os.path.join(OUT, "cli/white", stem + ".png"), "RGB")
        save_png(half, os.path.join(OUT, "cli/half", stem + ".png"), "RGB")
        rgba = np.concatenate([rgb, np.full((64, 64, 1), 255, np.uint8)], axis=2)
        save_png(rgba, os.path.join(OUT, "cli/opaque", stem + ".png"), "RGBA")
        rgba[:, :32, 3] = 0
        save_png(rgba, os.path.join(OUT, "cli/halfalpha", stem + ".png"), "RGBA")
        for d in ["cli/img", "cli/opaque", "cli/halfalpha"]:
            with open(os.path.join(OUT, d, stem + ".txt"), "w") as f:
                f.write("a photo of mytok\n")

    g = torch.Generator().manual_seed(77)
    for name, (hin, win, hout, wout) in {"int": (64, 64, 8, 8), "uneven": (37, 29, 8, 6),
                                         "wide": (48, 40, 5, 7)}.items():
        x = torch.rand(2, hin, win, generator=g)
        y = torch.nn.functional.interpolate(x.unsqueeze(1), size=(hout, wout), mode="area")
        tensors[f"area.{name}.in"] = x
        tensors[f"area.{name}.out"] = y[:, 0].contiguous()

    cond = torch.stack([cond_image(os.path.join(OUT, "cn/cond", s + ".png"), w, h, False)
                        for s, (w, h, _) in cn.items()])
    pred = torch.randn(2, 4, 8, 8, generator=g).requires_grad_(True)
    target = torch.randn(2, 4, 8, 8, generator=g)
    weights = torch.tensor([1.0, 0.5])
    loss = torch.nn.functional.mse_loss(pred.float(), target.float(), reduction="none")
    mask = torch.nn.functional.interpolate(cond_mask(cond), size=loss.shape[2:], mode="area")
    loss = (loss * mask).mean([1, 2, 3]) * weights
    loss = loss.mean()
    loss.backward()
    tensors.update({"loss.pred": pred.detach(), "loss.target": target, "loss.cond": cond,
                    "loss.weights": weights, "loss.value": loss.detach().reshape(1),
                    "loss.grad": pred.grad})
    save_file({k: v.contiguous() for k, v in tensors.items()},
              os.path.join(OUT, "expected.safetensors"),
              metadata={"script": "make_masked_loss_fixtures.py"})
    print("wrote", OUT)


if __name__ == "__main__":
    main()
