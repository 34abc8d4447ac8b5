#!/usr/bin/env bash
# One txt2img generation at SD1.5 shapes with random weights, Euler, classifier-free guidance:
# `sdti generate` (on build/bench/sd15-random.safetensors, written by
# tools/reference/make_sd15_random.py when missing) vs diffusers' StableDiffusionPipeline on
# PyTorch CPU (bench_generate.py), same run, same threads. Prints the median seconds per
# denoising step (first step not counted), the whole run's seconds and peak RSS, and the ratios
# sdti / PyTorch. The machine must be otherwise idle for the figures to mean anything; the load
# average is printed before and after.
# Usage: bash bench/bench_generate.sh [build-dir] [threads] [size] [steps]   (defaults: build 2 512 20)
set -euo pipefail
build=${1:-build}
threads=${2:-2}
size=${3:-512}
steps=${4:-20}
py=build/refvenv/bin/python
model=build/bench/sd15-random.safetensors
[ -f "$model" ] || "$py" tools/reference/make_sd15_random.py build/bench/sd15-random
load0=$(cut -d' ' -f1-3 /proc/loadavg)
if [ -z "${OMP_WAIT_POLICY:-}" ] && awk -v l="${load0%% *}" 'BEGIN {exit !(l > 0.5)}'; then
  export OMP_WAIT_POLICY=passive
fi
echo "load average $load0; OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset}; ${size}x${size}, $steps Euler steps, $threads threads"
out=$(mktemp -d)
/usr/bin/time -f 'rss %M' -o "$out/sdti.time" "$build/sdti" generate --ckpt "$model" \
  --prompt "a photo of a cat --n blurry" --W "$size" --H "$size" --steps "$steps" --sampler euler \
  --seed 1 --threads "$threads" --outdir "$out/img" --sequential_file_name >"$out/sdti.log" 2>&1 \
  || { cat "$out/sdti.log"; exit 1; }
s_step=$(grep -o 'step [0-9]*/[0-9]*  [0-9.]* s/it' "$out/sdti.log" | awk 'NR > 1 {print $3}' | sort -g |
  awk '{a[NR] = $1} END {print NR ? (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) : "nan"}')
s_total=$(grep -o 'in [0-9.]* s' "$out/sdti.log" | awk '{print $2}')
s_rss=$(awk '/^rss/ {print $2}' "$out/sdti.time")
/usr/bin/time -f 'rss %M' -o "$out/torch.time" "$py" bench/bench_generate.py "$size" "$steps" "$threads" \
  >"$out/torch.log" 2>"$out/torch.err" || { cat "$out/torch.err"; exit 1; }
t_step=$(awk '/^step_seconds/ {print $2}' "$out/torch.log")
t_total=$(awk '/^total_seconds/ {print $2}' "$out/torch.log")
t_rss=$(awk '/^rss/ {print $2}' "$out/torch.time")
printf '%-16s %10s %10s %7s\n' "" sdti PyTorch ratio
awk -v a="$s_step" -v b="$t_step" 'BEGIN {printf "%-16s %10.2f %10.2f %7.2f\n", "s / step", a, b, a / b}'
awk -v a="$s_total" -v b="$t_total" 'BEGIN {printf "%-16s %10.1f %10.1f %7.2f\n", "s / image", a, b, a / b}'
awk -v a="$s_rss" -v b="$t_rss" 'BEGIN {printf "%-16s %10.0f %10.0f %7.2f\n", "peak RSS MiB", a / 1024, b / 1024, a / b}'
echo "(sdti's s/image excludes loading the model; PyTorch's excludes building it)"
rm -rf "$out"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
