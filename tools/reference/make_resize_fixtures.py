"""OpenCV fixtures for src/train/image_ops.c, written to tests/fixtures/dataset/cv2_expected.safetensors.

kohya resizes with cv2.resize(INTER_AREA) when shrinking (library/utils.py resize_image) and
shifts hue through cv2.cvtColor(BGR2HSV / HSV2BGR) (train_util.py AugHelper.color_aug).
OpenCV is not part of the pinned reference venv, so this script runs in its own venv:

  python3 -m venv build-dataset/cv2venv
  build-dataset/cv2venv/bin/pip install opencv-python-headless numpy safetensors
  build-dataset/cv2venv/bin/python tools/reference/make_resize_fixtures.py

Deterministic (seeded numpy images); the OpenCV version is stored in the metadata.
"""

import os

import cv2
import numpy as np
from safetensors.numpy import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "dataset", "cv2_expected.safetensors")

AREA_CASES = [  # (src w, h, channels, dst w, h)
    (64, 48, 3, 32, 24), (60, 45, 3, 20, 15), (64, 48, 3, 37, 29), (50, 50, 3, 50, 33),
    (97, 61, 3, 64, 40), (33, 47, 3, 16, 23), (40, 30, 4, 27, 19), (64, 64, 4, 16, 16),
    (61, 20, 3, 60, 19),
]
HUE_SHIFTS = [3.7, 175.25, 0.5, 179.9]


def main():
    rng = np.random.default_rng(20260312)
    t = {}
    for i, (sw, sh, c, dw, dh) in enumerate(AREA_CASES):
        src = rng.integers(0, 256, (sh, sw, c), dtype=np.uint8)
        if i % 3 == 1:  # smooth content too, where rounding ties are more frequent
            y, x = np.mgrid[0:sh, 0:sw]
            src[..., 0] = (x * 4) % 256
            src[..., 1] = (y * 2) % 256
        t[f"area{i}/src"] = src
        t[f"area{i}/dst"] = cv2.resize(src, (dw, dh), interpolation=cv2.INTER_AREA)
    img = rng.integers(0, 256, (24, 16, 3), dtype=np.uint8)
    img[0, :8] = [[v, v, v] for v in range(0, 256, 32)]  # grays (saturation 0)
    t["hue/src"] = img
    for k, shift in enumerate(HUE_SHIFTS):
        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        hsv[:, :, 0] = (hsv[:, :, 0] + shift) % 180
        t[f"hue/shift{k}"] = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    t["hue/shifts"] = np.array(HUE_SHIFTS, np.float64)
    save_file(t, OUT, metadata={"versions": f"opencv {cv2.__version__}, numpy {np.__version__}"})


if __name__ == "__main__":
    main()
