#!/usr/bin/env bash
# One txt2img generation at SD1.5 shapes with random weights (Euler, classifier-free guidance,
# so the UNet runs on batch 2 each step): sdti generate vs diffusers on PyTorch CPU vs
# stable-diffusion.cpp (stable-diffusion-cpp-python from PyPI), same machine, same threads,
# same run. Each engine runs at two step counts in its own process; the time per step is the
# difference over the difference in steps (text encoding, VAE decode and loading cancel out),
# the peak RSS is the larger run's. Prints both and the ratios sdti / PyTorch and
# sdti / stable-diffusion.cpp (issue 7's targets: <= 0.8 and <= 1.0).
# Usage: bash bench/bench_generate.sh [build-dir] [threads] [W H] [steps_lo steps_hi]
# Needs: build/refvenv (tools/reference/setup.sh), build/bench/sd15-random.safetensors
# (tools/reference/make_sd15_random.py), and for stable-diffusion.cpp a venv
# build/sdcppvenv with `pip install stable-diffusion-cpp-python` (it compiles
# stable-diffusion.cpp natively: ~25 min on 2 cores); without it that column is skipped.
set -euo pipefail
build=${1:-build}
threads=${2:-2}
width=${3:-512}
height=${4:-512}
lo=${5:-2}
hi=${6:-6}
py=build/refvenv/bin/python
sdpy=build/sdcppvenv/bin/python
model=build/bench/sd15-random.safetensors
[ -f "$model" ] || "$py" tools/reference/make_sd15_random.py
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

load0=$(cut -d' ' -f1-3 /proc/loadavg)
if [ -z "${OMP_WAIT_POLICY:-}" ] && awk -v l="${load0%% *}" 'BEGIN {exit !(l > 0.5)}'; then
  export OMP_WAIT_POLICY=passive
fi
echo "load average $load0; OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset}; ${width}x${height}, steps $lo and $hi, $threads threads"

# runs a command; echoes "<wall seconds> <peak RSS KiB>"
measure() {
  local start end
  start=$(date +%s.%N)
  /usr/bin/time -f 'rss %M' -o "$tmp/time" "$@" >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
  end=$(date +%s.%N)
  echo "$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.3f", b - a}') $(awk '/^rss/ {print $2}' "$tmp/time")"
}

# echoes "<seconds per step> <peak MiB>" for one engine, given a command that takes STEPS as $1
per_step() {
  local fn=$1 t1 t2 r1 r2
  read -r t1 r1 < <($fn "$lo")
  read -r t2 r2 < <($fn "$hi")
  awk -v a="$t1" -v b="$t2" -v lo="$lo" -v hi="$hi" -v r1="$r1" -v r2="$r2" \
    'BEGIN {printf "%.3f %.0f\n", (b - a) / (hi - lo), (r1 > r2 ? r1 : r2) / 1024}'
}

run_sdti() { # SDTI_PROFILE: sdti prints its time per part of a sampling step
  SDTI_PROFILE=1 measure "$build/sdti" generate --ckpt "$model" --prompt "a photo of a cat sitting on a wooden table" \
    --W "$width" --H "$height" --steps "$1" --sampler euler --scale 7.5 --seed 1 \
    --threads "$threads" --outdir "$tmp/out-sdti"
}
run_torch() { measure "$py" bench/bench_generate.py diffusers "$1" "$threads" "$width" "$height"; }
run_sdcpp() { measure "$sdpy" bench/bench_generate.py sdcpp "$model" "$1" "$threads" "$width" "$height"; }

read -r s_sdti m_sdti < <(per_step run_sdti)
sed -n 's/^profile //p' "$tmp/err" >"$tmp/profile" # the larger run's breakdown
read -r s_torch m_torch < <(per_step run_torch)
printf '%-22s %10s %10s\n' engine "s/step" "peak MiB"
printf '%-22s %10s %10s\n' sdti "$s_sdti" "$m_sdti" diffusers "$s_torch" "$m_torch"
if [ -x "$sdpy" ] && [ "${SDTI_BENCH_SDCPP:-1}" != 0 ]; then # SDTI_BENCH_SDCPP=0 skips it
  read -r s_cpp m_cpp < <(per_step run_sdcpp)
  printf '%-22s %10s %10s\n' stable-diffusion.cpp "$s_cpp" "$m_cpp"
fi
awk -v a="$s_sdti" -v b="$s_torch" -v c="$m_sdti" -v d="$m_torch" \
  'BEGIN {printf "sdti / PyTorch: time per step %.2f, peak memory %.2f\n", a / b, c / d}'
if [ -n "${s_cpp:-}" ]; then
  awk -v a="$s_sdti" -v b="$s_cpp" -v c="$m_sdti" -v d="$m_cpp" \
    'BEGIN {printf "sdti / stable-diffusion.cpp: time per step %.2f, peak memory %.2f\n", a / b, c / d}'
fi
echo "sdti's breakdown ($hi steps; wall/cpu seconds per part):"
grep -E '^(sampling step mean|generation batch)' "$tmp/profile" | sed 's/^/  /' || true
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
