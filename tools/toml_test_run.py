#!/usr/bin/env python3
"""Runs the toml-test suite (github.com/toml-lang/toml-test) through a decoder, without Go.

    python3 tools/toml_test_run.py build/toml-decoder /tmp/toml-test [-v] [--list FILE]

/tmp/toml-test is a folder holding the suite's tests/ (valid/, invalid/, files-toml-1.0.0);
fetch it outside the repository, e.g.
    git --git-dir=<toml-test clone>/.git archive HEAD tests | tar -x -C /tmp/toml-test
Only the files named in tests/files-toml-1.0.0 run (the TOML 1.0.0 set). A valid case passes
when the decoder exits 0 and its tagged JSON equals the expected .json under toml-test's own
rules (floats by value, NaN by name, date-times as instants); an invalid case passes when the
decoder exits 1 (a crash or a timeout fails either kind). Prints the pass counts, lists the
failures, exits 1 when anything failed.
"""
import argparse
import datetime
import json
import math
import os
import re
import subprocess
import sys

DATETIME_KINDS = ("datetime", "datetime-local", "date-local", "time-local")


def is_tagged(value):
    return (isinstance(value, dict) and set(value) == {"type", "value"}
            and isinstance(value["type"], str))


def parse_datetime(kind, text):
    text = text.replace(" ", "T").replace("t", "T").replace("z", "Z")
    # Python keeps microseconds: drop digits past the sixth, as TOML allows.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    if kind == "time-local":
        return datetime.time.fromisoformat(text)
    if kind == "date-local":
        return datetime.date.fromisoformat(text)
    return datetime.datetime.fromisoformat(text)


def compare_scalar(path, want, have):
    if want["type"] != have["type"]:
        return f"{path}: expected type {want['type']}, got {have['type']}"
    if not isinstance(have["value"], str):
        return f"{path}: value is not a string: {have['value']!r}"
    w, h = want["value"], have["value"]
    kind = want["type"]
    if kind == "float":
        wl, hl = w.lower(), h.lower()
        if wl.endswith("nan") or hl.endswith("nan"):
            ok = wl.lstrip("+-") == hl.lstrip("+-")
        else:
            try:
                ok = float(wl) == float(hl) and math.copysign(1, float(wl)) == math.copysign(1, float(hl))
            except ValueError:
                ok = False
    elif kind in DATETIME_KINDS:
        try:
            ok = parse_datetime(kind, w) == parse_datetime(kind, h)
        except ValueError as e:
            return f"{path}: cannot read date-time {h!r}: {e}"
    elif kind == "bool":
        ok = w.lower() == h.lower()
    else:
        ok = w == h
    return None if ok else f"{path}: expected {kind} {w!r}, got {h!r}"


def compare(path, want, have):
    if isinstance(want, list):
        if not isinstance(have, list):
            return f"{path}: expected an array, got {type(have).__name__}"
        if len(want) != len(have):
            return f"{path}: expected {len(want)} items, got {len(have)}"
        for i, (w, h) in enumerate(zip(want, have)):
            msg = compare(f"{path}[{i}]", w, h)
            if msg:
                return msg
        return None
    if not isinstance(have, dict):
        return f"{path}: expected a table or value, got {type(have).__name__}"
    if is_tagged(want) != is_tagged(have):
        return f"{path}: value/table mismatch: expected {want!r}, got {have!r}"
    if is_tagged(want):
        return compare_scalar(path, want, have)
    if set(want) != set(have):
        return f"{path}: keys differ: missing {sorted(set(want) - set(have))}, extra {sorted(set(have) - set(want))}"
    for k in want:
        msg = compare(f"{path}.{k}" if path else k, want[k], have[k])
        if msg:
            return msg
    return None


def run(decoder, toml_path):
    with open(toml_path, "rb") as f:
        data = f.read()
    try:
        proc = subprocess.run([decoder], input=data, capture_output=True, timeout=10)
    except subprocess.TimeoutExpired:
        return None, b"", b"timeout"
    return proc.returncode, proc.stdout, proc.stderr


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("decoder")
    ap.add_argument("suite", help="folder holding the suite's tests/ folder")
    ap.add_argument("--list", default=None, help="file list (default tests/files-toml-1.0.0)")
    ap.add_argument("-v", "--verbose", action="store_true", help="show the decoder's message for invalid cases")
    args = ap.parse_args()

    tests_dir = os.path.join(args.suite, "tests")
    list_path = args.list or os.path.join(tests_dir, "files-toml-1.0.0")
    with open(list_path) as f:
        names = [line.strip() for line in f if line.strip().endswith(".toml")]

    counts = {"valid": [0, 0], "invalid": [0, 0]}
    failures = []
    for name in names:
        kind = "valid" if name.startswith("valid/") else "invalid"
        counts[kind][1] += 1
        rc, out, errtext = run(args.decoder, os.path.join(tests_dir, name))
        if kind == "invalid":
            if rc == 1:
                counts[kind][0] += 1
                if args.verbose:
                    print(f"ok   {name}: {errtext.decode(errors='replace').strip()}")
            else:
                failures.append(f"{name}: expected exit 1, got {rc}: {out[:200]!r} {errtext[:200]!r}")
            continue
        if rc != 0:
            failures.append(f"{name}: exit {rc}: {errtext.decode(errors='replace').strip()}")
            continue
        try:
            have = json.loads(out)
        except ValueError as e:
            failures.append(f"{name}: output is not JSON: {e}")
            continue
        with open(os.path.join(tests_dir, name[:-5] + ".json"), encoding="utf-8") as f:
            want = json.load(f)
        msg = compare("", want, have)
        if msg:
            failures.append(f"{name}: {msg}")
        else:
            counts[kind][0] += 1

    for line in failures:
        print("FAIL", line)
    print(f"valid: {counts['valid'][0]}/{counts['valid'][1]} passed; "
          f"invalid: {counts['invalid'][0]}/{counts['invalid'][1]} passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
