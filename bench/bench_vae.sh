#!/usr/bin/env bash
# VAE encode / decode on an SD1.5-shaped AutoencoderKL with random weights: sdti vs diffusers
# (PyTorch CPU) in the same run, same thread count, one process per pass so each peak RSS is
# that pass's own. Prints seconds, peak RSS and the ratios sdti / PyTorch.
# Usage: bash bench/bench_vae.sh [build-dir] [threads] [cases...]
#   cases: encode:256 encode:512 decode:32 decode:64 (default: all four; decode sizes are
#   latent sides). SDTI_BENCH_PRECISION=fp16|bf16 sets sdti's weight storage; with bf16 the
#   PyTorch side runs under torch.autocast(bfloat16), its own mixed precision.
set -euo pipefail
build=${1:-build}
threads=${2:-2}
shift $(( $# > 2 ? 2 : $# ))
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(encode:256 encode:512 decode:32 decode:64)
py=build/refvenv/bin/python
prec=${SDTI_BENCH_PRECISION:-fp32}

# runs a command; echoes "<seconds of the pass> <peak RSS KiB>"
measure() {
  local log
  log=$(mktemp)
  /usr/bin/time -f 'rss %M' -o "$log.time" "$@" >"$log" 2>"$log.err" || { cat "$log.err" >&2; exit 1; }
  echo "$(awk '/^seconds/ {print $2}' "$log") $(awk '/^rss/ {print $2}' "$log.time")"
  rm -f "$log" "$log.time" "$log.err"
}

printf '%-12s %10s %10s %8s %12s %12s %8s\n' case "sdti s" "torch s" ratio "sdti MiB" "torch MiB" ratio
for c in "${cases[@]}"; do
  op=${c%%:*}; size=${c#*:}
  read -r ts tr < <(measure "$build/bench/bench_vae" "$op" "$size" "$threads" "$prec")
  read -r ps pr < <(measure "$py" bench/bench_vae.py "$op" "$size" "$threads" \
                    "$([ "$prec" = bf16 ] && echo bf16 || echo fp32)")
  awk -v c="$op $size" -v ts="$ts" -v ps="$ps" -v tr="$tr" -v pr="$pr" 'BEGIN {
    printf "%-12s %10.2f %10.2f %8.2f %12.0f %12.0f %8.2f\n", c, ts, ps, ts / ps, tr / 1024, pr / 1024, tr / pr }'
done
