"""Fixtures for sdti's training-set code (src/formats/image.c, src/train/py_random.c,
captions.c, buckets.c), written to tests/fixtures/dataset/.

kohya-ss sd-scripts cannot be installed offline, so its algorithms are re-stated here in
Python, each citing the kohya file and function it follows (sd-scripts main 48d368fa):
  - process_caption: library/train_util.py, BaseDataset.process_caption
  - read_caption: library/train_util.py, DreamBoothDataset.__init__.read_caption
  - make_bucket_resolutions: library/model_util.py
  - select_bucket / round_to_steps / get_crop_ltrb: library/train_util.py, BucketManager
Images are decoded by PIL exactly as kohya's train_util.load_image does
(Image.open + convert("RGB") / convert("RGBA")); resizes use PIL's LANCZOS as kohya's
utils.pil_resize does. Everything is deterministic: re-running gives the same bytes.

Run: build/refvenv/bin/python tools/reference/make_dataset_fixtures.py
"""

import io
import json
import math
import os
import random
import re
import struct
import zipfile
import zlib

import numpy as np
from PIL import Image, ImageOps
from safetensors.numpy import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "dataset")
IMG = os.path.join(OUT, "images")


# ------------------------------------------------------------------------------------------
# Images


def pattern(w, h, channels):
    y, x = np.mgrid[0:h, 0:w]
    r = (x * 255 // max(w - 1, 1)).astype(np.uint8)
    g = (y * 255 // max(h - 1, 1)).astype(np.uint8)
    b = ((x * 37 + y * 91) % 256).astype(np.uint8)
    chans = [r, g, b]
    if channels == 4:
        chans.append(((x + y) * 23 % 256).astype(np.uint8))
    return np.stack(chans, -1)


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def raw_png(arr16, color_type, depth=16, extra=b""):
    """A PNG PIL cannot write itself (16-bit RGB / gray+alpha)."""
    h, w = arr16.shape[:2]
    rows = b"".join(b"\x00" + arr16[y].astype(">u2").tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + extra +
            png_chunk(b"IDAT", zlib.compress(rows, 9)) + png_chunk(b"IEND", b""))


def exif_bytes(orientation):
    ex = Image.Exif()
    ex[0x0112] = orientation
    return ex.tobytes()


def write_images():
    os.makedirs(IMG, exist_ok=True)
    files = {}
    rgb = pattern(16, 24, 3)
    rgba = pattern(16, 24, 4)
    Image.fromarray(rgb).save(os.path.join(IMG, "rgb.png"))
    Image.fromarray(rgba, "RGBA").save(os.path.join(IMG, "rgba.png"))
    Image.fromarray(rgb[:, :, 1]).save(os.path.join(IMG, "gray.png"))
    Image.fromarray(rgba[:, :, 1:3].copy(), "LA").save(os.path.join(IMG, "gray_alpha.png"))
    Image.fromarray(rgb[:, :, 0] > 128).save(os.path.join(IMG, "bilevel.png"))
    pal = Image.fromarray(rgb).quantize(colors=16, method=Image.Quantize.MEDIANCUT)
    pal.save(os.path.join(IMG, "palette_trns.png"), transparency=3)
    gray16 = (np.arange(16 * 24, dtype=np.uint32).reshape(24, 16) * 173 % 65536).astype(np.uint16)
    with open(os.path.join(IMG, "gray16.png"), "wb") as f:
        f.write(raw_png(gray16, 0))
    rgb16 = (rgb.astype(np.uint16) * 257 + np.arange(3, dtype=np.uint16) * 91)
    with open(os.path.join(IMG, "rgb16.png"), "wb") as f:
        f.write(raw_png(rgb16, 2))
    Image.fromarray(rgb).save(os.path.join(IMG, "rgb.jpg"), quality=90)
    Image.fromarray(rgb[:, :, 2]).save(os.path.join(IMG, "gray.jpg"), quality=90)
    Image.fromarray(pattern(16, 24, 4), "CMYK").save(os.path.join(IMG, "cmyk.jpg"), quality=95)
    Image.fromarray(rgb).save(os.path.join(IMG, "rgb.webp"), quality=80)
    Image.fromarray(rgba, "RGBA").save(os.path.join(IMG, "rgba.webp"), quality=80)
    Image.fromarray(rgba, "RGBA").save(os.path.join(IMG, "lossless.webp"), lossless=True)
    frames = [Image.fromarray(rgb), Image.fromarray(255 - rgb)]
    frames[0].save(os.path.join(IMG, "animated.webp"), save_all=True, append_images=frames[1:],
                   duration=100, loop=0, lossless=True)
    # EXIF orientation in each container (kohya ignores it; exif_transpose is the opt-in).
    for o in range(1, 9):
        Image.fromarray(rgb).save(os.path.join(IMG, f"exif{o}.jpg"), quality=90, exif=exif_bytes(o))
    Image.fromarray(rgb).save(os.path.join(IMG, "exif6.png"), exif=exif_bytes(6))
    Image.fromarray(rgb).save(os.path.join(IMG, "exif8.webp"), lossless=True, exif=exif_bytes(8))
    # Broken files: a cut PNG and a cut JPEG.
    with open(os.path.join(IMG, "rgb.png"), "rb") as f:
        data = f.read()
    with open(os.path.join(IMG, "truncated.png"), "wb") as f:
        f.write(data[: len(data) // 2])

    tensors, meta = {}, {}
    for name in sorted(os.listdir(IMG)):
        if name.startswith("truncated"):
            continue
        path = os.path.join(IMG, name)
        with Image.open(path) as im:
            size = im.size
            tensors[name + "/rgb"] = np.array(im.convert("RGB"), np.uint8)
            tensors[name + "/rgba"] = np.array(im.convert("RGBA"), np.uint8)
            orient = im.getexif().get(0x0112, 1)
            tensors[name + "/transposed"] = np.array(ImageOps.exif_transpose(im).convert("RGB"), np.uint8)
        meta[name] = {"width": size[0], "height": size[1], "orientation": int(orient)}
    save_file(tensors, os.path.join(OUT, "images_expected.safetensors"))
    return meta


# ------------------------------------------------------------------------------------------
# Python's random


def random_fixture():
    out = []
    for seed in [0, 1, 42, 2**31, 2**40 + 7, 123456789]:
        r = random.Random(seed)
        rec = {"seed": seed}
        rec["u32"] = [r.getrandbits(32) for _ in range(5)]
        rec["random"] = [r.random().hex() for _ in range(4)]
        rec["randbelow"] = [[n, r.randrange(n)] for n in [1, 2, 3, 7, 10, 1000, 2**31 + 5]]
        rec["getrandbits40"] = r.getrandbits(40)
        items = list(range(11))
        r.shuffle(items)
        rec["shuffle11"] = items
        rec["randint"] = [r.randint(-5, 5) for _ in range(6)]
        rec["uniform"] = [r.uniform(-8, 8).hex() for _ in range(3)]
        out.append(rec)
    return out


# ------------------------------------------------------------------------------------------
# process_caption, re-stated from library/train_util.py BaseDataset.process_caption (TI:
# no caption dropout). Uses the global-free Random instance `rng`.


def process_caption(rng, s, caption, replacements, current_step=0, max_train_steps=0):
    if s.get("caption_prefix"):
        caption = s["caption_prefix"] + " " + caption
    if s.get("caption_suffix"):
        caption = caption + " " + s["caption_suffix"]
    sep = s.get("caption_separator", ",")
    if s.get("enable_wildcard"):
        if "\n" in caption:
            caption = rng.choice(caption.split("\n"))
        r1, r2 = "⦅", "⦆"
        while r1 in caption or r2 in caption:
            r1 += "⦅"
            r2 += "⦆"
        caption = caption.replace("{{", r1).replace("}}", r2)
        caption = re.sub(r"\{([^}]+)\}", lambda m: rng.choice(m.group(1).split("|")), caption)
        caption = caption.replace(r1, "{").replace(r2, "}")
    else:
        caption = caption.split("\n")[0]
    warm = s.get("token_warmup_step", 0)
    if s.get("shuffle_caption") or warm > 0:
        fixed, flex, fixed_suffix = [], [], []
        kts = s.get("keep_tokens_separator", "")
        if kts and kts in caption:
            fixed_part, flex_part = caption.split(kts, 1)
            if kts in flex_part:
                flex_part, suffix_part = flex_part.split(kts, 1)
                fixed_suffix = [t.strip() for t in suffix_part.split(sep) if t.strip()]
            fixed = [t.strip() for t in fixed_part.split(sep) if t.strip()]
            flex = [t.strip() for t in flex_part.split(sep) if t.strip()]
        else:
            tokens = [t.strip() for t in caption.strip().split(sep)]
            flex = tokens[:]
            if s.get("keep_tokens", 0) > 0:
                fixed = flex[: s["keep_tokens"]]
                flex = tokens[s["keep_tokens"]:]
        if warm < 1:
            warm = math.floor(warm * max_train_steps)
        wmin = s.get("token_warmup_min", 1)
        if warm and current_step < warm:
            n = math.floor(current_step * ((len(flex) - wmin) / warm)) + wmin
            flex = flex[:n]
        if s.get("shuffle_caption"):
            rng.shuffle(flex)
        caption = ", ".join(fixed + flex + fixed_suffix)
    if s.get("secondary_separator"):
        caption = caption.replace(s["secondary_separator"], sep)
    for frm, to in replacements:
        if frm == "":
            caption = rng.choice(to) if isinstance(to, list) else to
        else:
            caption = caption.replace(frm, to)
    return caption


OBJECT_TEMPLATES = [
    "a photo of a {}", "a rendering of a {}", "a cropped photo of the {}", "the photo of a {}",
    "a photo of a clean {}", "a photo of a dirty {}", "a dark photo of the {}", "a photo of my {}",
    "a photo of the cool {}", "a close-up photo of a {}", "a bright photo of the {}",
    "a cropped photo of a {}", "a photo of the {}", "a good photo of the {}", "a photo of one {}",
    "a close-up photo of the {}", "a rendition of the {}", "a photo of the clean {}",
    "a rendition of a {}", "a photo of a nice {}", "a good photo of a {}", "a photo of the nice {}",
    "a photo of the small {}", "a photo of the weird {}", "a photo of the large {}",
    "a photo of a cool {}", "a photo of a small {}",
]


def caption_fixture():
    caps = [
        "mychar, 1girl, solo, red hair, smile, looking at viewer",
        "  mychar ,blue sky,, cloud ,  tree  ",
        "mychar, {red|green|blue} shirt, {{literal}}, {sitting|standing}",
        "first line mychar, a, b\nsecond line, c, d\nthird, e",
        "mychar ||| masterpiece, best quality ||| tag1, tag2, tag3 ||| trailing, x",
        "mychar; one; two; three; four",
        "mychar, a_b, c_d, e",
        "日本語, mychar, タグ, \u3000spaced\u3000",
    ]
    rule_sets = [
        {},
        {"shuffle_caption": True},
        {"shuffle_caption": True, "keep_tokens": 2},
        {"shuffle_caption": True, "keep_tokens_separator": "|||"},
        {"enable_wildcard": True},
        {"enable_wildcard": True, "shuffle_caption": True, "keep_tokens": 1},
        {"caption_prefix": "pre fix", "caption_suffix": "suf", "shuffle_caption": True},
        {"shuffle_caption": True, "caption_separator": ";"},
        {"secondary_separator": "_", "shuffle_caption": True},
        {"token_warmup_step": 10, "token_warmup_min": 2},
        {"token_warmup_step": 0.5, "shuffle_caption": True},
    ]
    tokens = "mychar mychar1 mychar2"
    replacement_sets = [
        [],
        [["mychar", tokens]],
        [["", [t.format(tokens) for t in OBJECT_TEMPLATES]]],
    ]
    cases = []
    for ri, rules in enumerate(rule_sets):
        for pi, repl in enumerate(replacement_sets):
            rng = random.Random(1000 + ri * 10 + pi)
            outs = []
            for step in range(3):
                for c in caps:
                    outs.append(process_caption(rng, rules, c, repl, current_step=step * 4, max_train_steps=20))
            cases.append({"rules": rules, "replacements": pi, "seed": 1000 + ri * 10 + pi, "outputs": outs})
    return {"captions": caps, "token_strings": tokens, "cases": cases}


# ------------------------------------------------------------------------------------------
# Buckets: library/model_util.py make_bucket_resolutions and train_util.BucketManager.


def make_bucket_resolutions(max_reso, min_size=256, max_size=1024, divisible=64):
    max_width, max_height = max_reso
    max_area = max_width * max_height
    resos = set()
    width = int(math.sqrt(max_area) // divisible) * divisible
    resos.add((width, width))
    width = min_size
    while width <= max_size:
        height = min(max_size, int((max_area // width) // divisible) * divisible)
        if height >= min_size:
            resos.add((width, height))
            resos.add((height, width))
        width += divisible
    resos = list(resos)
    resos.sort()
    return resos


def select_bucket(no_upscale, max_reso, steps, resos, w, h):
    aspect_ratio = w / h
    if not no_upscale:
        reso = (w, h)
        if reso not in set(resos):
            ars = np.array([a / b for a, b in resos])
            reso = resos[int(np.abs(ars - aspect_ratio).argmin())]
        ar_reso = reso[0] / reso[1]
        scale = reso[1] / h if aspect_ratio > ar_reso else reso[0] / w
        resized = (int(w * scale + 0.5), int(h * scale + 0.5))
    else:
        def rts(x):
            x = int(x + 0.5)
            return x - x % steps
        max_area = max_reso[0] * max_reso[1]
        if w * h > max_area:
            rw = math.sqrt(max_area * aspect_ratio)
            rh = max_area / rw
            bw = rts(rw)
            bh_w = rts(bw / aspect_ratio)
            ar_w = bw / bh_w
            bh = rts(rh)
            bw_h = rts(bh * aspect_ratio)
            ar_h = bw_h / bh
            if abs(ar_w - aspect_ratio) < abs(ar_h - aspect_ratio):
                resized = (bw, int(bw / aspect_ratio + 0.5))
            else:
                resized = (int(bh * aspect_ratio + 0.5), bh)
        else:
            resized = (w, h)
        reso = (resized[0] - resized[0] % steps, resized[1] - resized[1] % steps)
    return reso, resized


def get_crop_ltrb(bucket_reso, image_size):
    bucket_ar = bucket_reso[0] / bucket_reso[1]
    image_ar = image_size[0] / image_size[1]
    if bucket_ar > image_ar:
        rw, rh = bucket_reso[1] * image_ar, bucket_reso[1]
    else:
        rw, rh = bucket_reso[0], bucket_reso[0] / image_ar
    cl = (bucket_reso[0] - rw) // 2
    ct = (bucket_reso[1] - rh) // 2
    return [float(cl), float(ct), float(cl + rw), float(ct + rh)]


def bucket_fixture():
    configs = [((512, 512), 256, 1024, 64), ((768, 512), 320, 960, 64), ((512, 512), 256, 512, 32),
               ((1024, 1024), 512, 2048, 64), ((640, 448), 192, 704, 64)]
    sizes = [(512, 512), (600, 400), (400, 600), (1920, 1080), (1080, 1920), (333, 777), (64, 4096),
             (4096, 64), (513, 511), (1000, 1001), (300, 200), (2048, 1536), (768, 512)]
    out = []
    for max_reso, mn, mx, st in configs:
        resos = make_bucket_resolutions(max_reso, mn, mx, st)
        sel = []
        for w, h in sizes:
            for nu in (False, True):
                reso, resized = select_bucket(nu, max_reso, st, resos, w, h)
                sel.append({"size": [w, h], "no_upscale": nu, "reso": list(reso), "resized": list(resized),
                            "crop_ltrb": get_crop_ltrb(reso, (w, h))})
        out.append({"max_reso": list(max_reso), "min": mn, "max": mx, "steps": st,
                    "resos": [list(r) for r in resos], "select": sel})
    return out


def lanczos_fixture():
    """PIL LANCZOS resizes as kohya's utils.pil_resize (upscaling path)."""
    src = pattern(16, 24, 3)
    t = {"src": src}
    # the last three grow one side and shrink the other (Pillow picks the pass order)
    for w, h in [(32, 48), (20, 30), (16, 40), (9, 13), (24, 24), (40, 10), (12, 30), (30, 20)]:
        t[f"lanczos_{w}x{h}"] = np.array(Image.fromarray(src).resize((w, h), Image.LANCZOS), np.uint8)
    # RGBA (--alpha_mask): PIL resizes it premultiplied
    src4 = pattern(16, 24, 4)
    t["src_rgba"] = src4
    for w, h in [(32, 48), (40, 10)]:
        t[f"rgba_lanczos_{w}x{h}"] = np.array(Image.fromarray(src4, "RGBA").resize((w, h), Image.LANCZOS), np.uint8)
    save_file(t, os.path.join(OUT, "lanczos_expected.safetensors"))


def latent_npz_fixture():
    """A cache file as strategy_base.save_latents_to_disk writes it (np.savez of float32
    latents [4, H/8, W/8], int64 original_size, float64 crop_ltrb, latents_flipped)."""
    rng = np.random.default_rng(7)
    lat = rng.standard_normal((4, 3, 2)).astype(np.float32)
    buf = io.BytesIO()
    np.savez(buf, latents=lat, original_size=np.array((20, 30)),
             crop_ltrb=np.array((0.0, 1, 16.0, 23)), latents_flipped=lat[:, :, ::-1].copy())
    # np.savez stamps each record with the current time; re-pack the same records (stored,
    # zip64 as numpy writes them) with a fixed time so the fixture is reproducible.
    buf.seek(0)
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(os.path.join(OUT, "cache_0020x0030_sd.npz"), "w") as dst:
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            with dst.open(fixed, "w", force_zip64=True) as f:
                f.write(src.read(info.filename))


# ------------------------------------------------------------------------------------------
# A whole DreamBooth dataset: DreamBoothDataset.__init__ (glob, read_caption, reg balancing),
# BaseDataset.make_buckets (sizes, select_bucket, add_image x repeats, sort, batches) and
# shuffle_buckets (random.seed(seed + epoch); shuffle batches, then every bucket), then the
# flip draw and process_caption of __getitem__ for the first batches of epoch 1.

TREE = os.path.join(OUT, "tree")
TREE_LAYOUT = {  # folder -> [(name, w, h, caption or None)]
    "train/5_mychar": [("a.png", 40, 24, "mychar, red, blue, green"), ("b.png", 24, 40, None),
                       ("c.jpg", 32, 32, "mychar, {cat|dog}, sitting")],
    "train/notes": [],
    "reg/1_girl": [("r1.png", 32, 32, None), ("r2.png", 48, 16, "girl, standing"),
                   ("r3.webp", 16, 48, None)],
}
TREE_SEED = 1234


def write_tree():
    for folder, files in TREE_LAYOUT.items():
        os.makedirs(os.path.join(TREE, folder), exist_ok=True)
        for name, w, h, caption in files:
            img = Image.fromarray(pattern(w, h, 3))
            kw = {"quality": 90} if name.endswith(".jpg") else {"lossless": True} if name.endswith(".webp") else {}
            img.save(os.path.join(TREE, folder, name), **kw)
            if caption is not None:
                with open(os.path.join(TREE, folder, os.path.splitext(name)[0] + ".txt"), "w") as f:
                    f.write(caption + "\n")


def tree_fixture():
    write_tree()
    # config: --train_data_dir tree/train --reg_data_dir tree/reg --resolution 128
    # --enable_bucket --min_bucket_reso 64 --max_bucket_reso 256 --train_batch_size 2
    # --caption_extension .txt --flip_aug --shuffle_caption --enable_wildcard
    subsets = [("train/5_mychar", 5, "mychar", False), ("reg/1_girl", 1, "girl", True)]
    infos, reg_infos, n_train, n_reg = [], [], 0, 0
    for folder, repeats, cls, is_reg in subsets:
        names = sorted(n for n, *_ in TREE_LAYOUT[folder])
        for name in names:
            w, h, cap = next((w, h, c) for n, w, h, c in TREE_LAYOUT[folder] if n == name)
            info = {"path": folder + "/" + name, "repeats": repeats, "is_reg": is_reg,
                    "caption": cap if cap is not None else cls, "size": [w, h]}
            (reg_infos if is_reg else infos).append(info)
        if is_reg:
            n_reg += repeats * len(names)
        else:
            n_train += repeats * len(names)
    n, first = 0, True
    while n < n_train:
        for info in reg_infos:
            if first:
                infos.append(info)
                n += info["repeats"]
            else:
                info["repeats"] += 1
                n += 1
            if n >= n_train:
                break
        first = False
    max_reso, steps = (128, 128), 64
    resos = make_bucket_resolutions(max_reso, 64, 256, steps)
    bucket_list = []
    for info in infos:
        reso, resized = select_bucket(False, max_reso, steps, resos, *info["size"])
        info["bucket"], info["resized"] = list(reso), list(resized)
        if reso not in bucket_list:
            bucket_list.append(reso)
    bucket_list.sort()
    buckets = [[i for i, info in enumerate(infos) for _ in range(info["repeats"]) if tuple(info["bucket"]) == r]
               for r in bucket_list]
    batch_size = 2
    batches = [[b, k] for b, items in enumerate(buckets) for k in range(math.ceil(len(items) / batch_size))]
    rng = random.Random()

    def shuffle(seed):
        rng.seed(seed)
        rng.shuffle(batches)
        for items in buckets:
            rng.shuffle(items)
    shuffle(0)
    after_build = {"batches": [list(b) for b in batches], "buckets": [list(x) for x in buckets]}
    shuffle(TREE_SEED + 1)
    after_epoch1 = {"batches": [list(b) for b in batches], "buckets": [list(x) for x in buckets]}
    samples = []
    rules = {"shuffle_caption": True, "enable_wildcard": True}
    for b, k in batches[:3]:
        for idx in buckets[b][k * batch_size:(k + 1) * batch_size]:
            flipped = rng.random() < 0.5
            # enable_wildcard: read_caption joins the non-empty stripped lines
            samples.append({"image": idx, "flipped": flipped,
                            "caption": process_caption(rng, rules, infos[idx]["caption"], [["mychar", "mychar mychar1"]])})
    return {"seed": TREE_SEED, "images": infos, "bucket_resos": [list(r) for r in bucket_list],
            "after_build": after_build, "after_epoch1": after_epoch1, "samples": samples,
            "num_train_images": n_train, "num_reg_images": n_reg}


def main():
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "tree.json"), "w") as f:
        json.dump(tree_fixture(), f, indent=1)
    latent_npz_fixture()
    meta = write_images()
    with open(os.path.join(OUT, "images.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    with open(os.path.join(OUT, "py_random.json"), "w") as f:
        json.dump(random_fixture(), f, indent=1)
    with open(os.path.join(OUT, "captions.json"), "w", encoding="utf-8") as f:
        json.dump(caption_fixture(), f, indent=1, ensure_ascii=False)
    with open(os.path.join(OUT, "buckets.json"), "w") as f:
        json.dump(bucket_fixture(), f, indent=0)
    lanczos_fixture()


if __name__ == "__main__":
    main()
