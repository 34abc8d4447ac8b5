#!/usr/bin/env bash
# Load time and peak RSS of opening an SD1.5-shaped random checkpoint (made by
# tools/reference/make_sd15_random.py, not committed), sdti vs PyTorch in the same run.
# Usage: bash bench/bench_load.sh [build-dir]
set -euo pipefail
build=${1:-build}
py=build/refvenv/bin/python
dir=build/bench
[ -f "$dir/sd15-random.safetensors" ] || $py tools/reference/make_sd15_random.py --out "$dir/sd15-random"
measure() { # label, command...
  local label=$1; shift
  local out
  out=$( { /usr/bin/time -f '%e %M' "$@" >/dev/null; } 2>&1 | tail -n 1)
  printf '%-48s %8.2f s %10.0f MiB\n' "$label" "${out% *}" "$(( ${out#* } / 1024 ))"
}
sync
for f in sd15-random.safetensors sd15-random.ckpt sd15-random-fp16.ckpt; do
  [ -f "$dir/$f" ] || continue
  cat "$dir/$f" > /dev/null   # warm the page cache for both sides alike
  measure "sdti inspect $f" "$build/sdti" inspect "$dir/$f"
  measure "sdti inspect $f (touch every byte)" "$build/sdti" inspect --checksum "$dir/$f"
  case $f in
    *.safetensors) measure "torch: safetensors.torch.load_file $f" $py -c "import sys, safetensors.torch as s; s.load_file(sys.argv[1])" "$dir/$f" ;;
    *) measure "torch: torch.load $f" $py -c "import sys, torch; torch.load(sys.argv[1], map_location='cpu', weights_only=True)" "$dir/$f" ;;
  esac
done
