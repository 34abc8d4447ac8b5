#!/usr/bin/env bash
# CLIP-L text encoder (SD1.5's, random weights, batch 1, 77 tokens): forward, and forward +
# backward to the token-embedding rows, sdti vs transformers' CLIPTextModel (PyTorch CPU) in
# the same run, same thread count, one process per case so each peak RSS is its own. Prints
# median seconds per pass, median CPU seconds per pass (all threads; less disturbed by other
# load on the machine), peak RSS, and the ratios sdti / PyTorch.
# Usage: bash bench/bench_text_encoder.sh [build-dir] [threads] [repeats]
set -euo pipefail
build=${1:-build}
threads=${2:-2}
repeats=${3:-5}
py=build/refvenv/bin/python

# runs a command; echoes "<seconds per pass> <cpu seconds per pass> <peak RSS KiB>"
measure() {
  local log
  log=$(mktemp)
  /usr/bin/time -f 'rss %M' -o "$log.time" "$@" >"$log" 2>"$log.err" || { cat "$log.err" >&2; exit 1; }
  echo "$(awk '/^seconds/ {print $2}' "$log") $(awk '/^cpu/ {print $2}' "$log") $(awk '/^rss/ {print $2}' "$log.time")"
  rm -f "$log" "$log.time" "$log.err"
}

printf '%-8s %9s %9s %7s %9s %9s %7s %9s %9s %7s\n' case "sdti s" "torch s" ratio \
  "sdti cpu" "torch cpu" ratio "sdti MiB" "torch MiB" ratio
for op in fwd fwdbwd; do
  read -r ts tc tr < <(measure "$build/bench/bench_text_encoder" "$op" "$threads" "$repeats")
  read -r ps pc pr < <(measure "$py" bench/bench_text_encoder.py "$op" "$threads" "$repeats")
  awk -v c="$op" -v ts="$ts" -v ps="$ps" -v tc="$tc" -v pc="$pc" -v tr="$tr" -v pr="$pr" 'BEGIN {
    printf "%-8s %9.4f %9.4f %7.2f %9.4f %9.4f %7.2f %9.0f %9.0f %7.2f\n", c, ts, ps, ts / ps,
      tc, pc, tc / pc, tr / 1024, pr / 1024, tr / pr }'
done
