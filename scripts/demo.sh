#!/usr/bin/env bash
# The built-in demo. Until training lands it inspects the tiny fixture models in every layout.
set -euo pipefail
build=${1:-build}
for m in tests/fixtures/models/sd1-tiny tests/fixtures/models/sd2-tiny; do
  [ -e "$m" ] || continue
  for p in "$m/diffusers" "$m/ldm.safetensors" "$m/ldm.ckpt"; do
    [ -e "$p" ] && "$build/sdti" inspect "$p"
  done
done
