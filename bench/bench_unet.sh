#!/usr/bin/env bash
# UNet forward / forward + backward to encoder_hidden_states / the same with gradient
# checkpointing on an SD1.5-shaped UNet with random weights: sdti vs diffusers (PyTorch CPU)
# in the same run, same thread count, one process per pass so each peak RSS is that pass's
# own. Prints seconds, peak RSS, the ratios sdti / PyTorch, achieved GFLOP/s of both against
# the machine's sgemm peak (oneDNN sgemm 4096^3; FLOPs counted from the shapes, the same
# count for both, checkpointing's re-runs not counted), and sdti's time per block kind and
# per kernel kind inside the transformers. The machine must be otherwise idle: with other
# processes on the cores, every thread-pool barrier waits for a time slice and the figures
# (both sides') mean nothing; the load average is printed before and after.
# Usage: bash bench/bench_unet.sh [build-dir] [threads] [latent] [passes...]
#   latent: 64 (512x512 images, default) or 32 for a quick run; passes: fwd fwdbwd ckpt
#   (default all three). SDTI_BENCH_PRECISION=fp16|bf16 sets sdti's weight storage (bf16c:
#   bf16 weights and bf16 convolutions);
#   TORCH_BENCH_PRECISION=bf16 runs PyTorch under bf16 autocast (bf16w: bf16 weights too) for
#   the main ratio; TORCH_BENCH_ALSO="bf16w bf16" adds like-for-like PyTorch lines (the
#   default when sdti's weights are half); SDTI_BENCH_RUNS timed runs
#   after one warm-up (default 1).
set -euo pipefail
build=${1:-build}
threads=${2:-2}
latent=${3:-64}
shift $(( $# > 3 ? 3 : $# ))
passes=("$@")
[ ${#passes[@]} -gt 0 ] || passes=(fwd fwdbwd ckpt)
py=build/refvenv/bin/python
prec=${SDTI_BENCH_PRECISION:-fp32}
tprec=${TORCH_BENCH_PRECISION:-fp32}
runs=${SDTI_BENCH_RUNS:-1}
# like-for-like PyTorch runs printed under each pass ("vs bf16w": bf16 weights + autocast, as
# kohya's --mixed_precision bf16; "vs bf16": autocast on fp32 weights); by default both when
# sdti stores half weights
also=${TORCH_BENCH_ALSO-$([ "$prec" = fp32 ] || echo "bf16w bf16")}

# runs a command; echoes "<seconds of the pass> <peak RSS KiB> <flops>" and keeps its log
measure() {
  local log
  log=$(mktemp)
  /usr/bin/time -f 'rss %M' -o "$log.time" "$@" >"$log" 2>"$log.err" || { cat "$log.err" >&2; exit 1; }
  echo "$(awk '/^seconds/ {print $2}' "$log") $(awk '/^rss/ {print $2}' "$log.time") $(awk '/^flops/ {print $2} END {if (!NR) print 0}' "$log")"
  grep -E '^(breakdown|arena_mib|weights_mib)' "$log" >>"$notes" || true
  rm -f "$log" "$log.time" "$log.err"
}

# With other processes on the cores, OpenMP's spinning barriers cost both sides far more than
# their share: on a busy machine (1-minute load above half a core) both run with passive waits.
load0=$(cut -d' ' -f1-3 /proc/loadavg)
if [ -z "${OMP_WAIT_POLICY:-}" ] && awk -v l="${load0%% *}" 'BEGIN {exit !(l > 0.5)}'; then
  export OMP_WAIT_POLICY=passive
fi
echo "load average $load0; OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset}"

notes=$(mktemp)
read -r gs _ gf < <(measure "$build/bench/bench_unet" sgemm 4096 "$threads")
peak=$(awk -v f="$gf" -v s="$gs" 'BEGIN {printf "%.0f", f / s / 1e9}')
echo "sgemm 4096^3 (oneDNN, $threads threads): $peak GFLOP/s; sdti weights $prec, PyTorch $tprec, latent ${latent}x${latent}"
printf '%-8s %9s %9s %7s %10s %10s %7s %14s %14s\n' pass "sdti s" "torch s" ratio "sdti MiB" "torch MiB" ratio "sdti GFLOP/s" "torch GFLOP/s"
for p in "${passes[@]}"; do
  : >"$notes"
  read -r ts tr tf < <(measure "$build/bench/bench_unet" "$p" "$latent" "$threads" "$prec" "$runs")
  read -r ps pr _ < <(measure "$py" bench/bench_unet.py "$p" "$latent" "$threads" "$tprec" "$runs")
  awk -v c="$p" -v ts="$ts" -v ps="$ps" -v tr="$tr" -v pr="$pr" -v f="$tf" -v pk="$peak" 'BEGIN {
    printf "%-8s %9.2f %9.2f %7.2f %10.0f %10.0f %7.2f %8.0f (%2.0f%%) %8.0f (%2.0f%%)\n", c, ts, ps, ts / ps,
      tr / 1024, pr / 1024, tr / pr, f / ts / 1e9, 100 * f / ts / 1e9 / pk, f / ps / 1e9, 100 * f / ps / 1e9 / pk }'
  for lp in $also; do
    read -r ps pr _ < <(measure "$py" bench/bench_unet.py "$p" "$latent" "$threads" "$lp" "$runs")
    awk -v c="  vs $lp" -v ts="$ts" -v ps="$ps" -v tr="$tr" -v pr="$pr" -v f="$tf" -v pk="$peak" 'BEGIN {
      printf "%-8s %9s %9.2f %7.2f %10s %10.0f %7.2f %8s      %8.0f (%2.0f%%)\n", c, "", ps, ts / ps, "",
        pr / 1024, tr / pr, "", f / ps / 1e9, 100 * f / ps / 1e9 / pk }'
  done
  sed 's/^/    /' "$notes"
done
rm -f "$notes"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
