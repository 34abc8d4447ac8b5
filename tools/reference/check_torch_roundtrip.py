"""Checks that torch reads files written by sdti's torch writer (torch_file_save) as the
fixtures they were made from: torch.load(weights_only=True) of each file must give the
tensors (dtype, shape, bytes) and values that tests/fixtures/formats/torch/expected.json
records for the fixture.

CI has no torch, so run it by hand after the unit tests:
  build/refvenv/bin/python tools/reference/check_torch_roundtrip.py build-xx/test-tmp/test_torch_file
It checks every roundtrip_<fixture> file there (written by tests/test_torch_file.c) and the
files named like the fixtures themselves (our writer's copies of them).
"""

import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_torch_fixtures import OUT, expected_for  # noqa: E402


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    folder = sys.argv[1]
    with open(os.path.join(OUT, "expected.json")) as f:
        expected = json.load(f)["files"]
    checked = failed = 0
    for name in sorted(os.listdir(folder)):
        fixture = name[len("roundtrip_"):] if name.startswith("roundtrip_") else name
        if fixture not in expected:
            continue
        path = os.path.join(folder, name)
        got = expected_for(torch.load(path, map_location="cpu", weights_only=True))
        want = expected[fixture]
        # our writer stores every tensor contiguous in its own storage: compare values only
        ok = got == want
        checked += 1
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {path} (as {fixture}: {len(want['tensors'])} tensors, "
              f"{len(want['values'])} values)")
    if checked == 0:
        raise SystemExit(f"FAILED: no files written by our writer in {folder}")
    if failed:
        raise SystemExit(f"FAILED: {failed} of {checked} files differ")
    print(f"all {checked} files read back by torch {torch.__version__} as expected")


if __name__ == "__main__":
    main()
