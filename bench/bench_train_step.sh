#!/usr/bin/env bash
# One full textual-inversion training step at SD1.5 shapes, 512x512, batch 1 (latents cached,
# so the VAE encode is not in the step): `sdti train` against kohya's step in PyTorch
# (bench/bench_train_step.py) in the same run, same threads. Prints the seconds per step
# (the mean over the steps after the first, which warms up), the peak RSS of each process and
# the ratios sdti / PyTorch.
#
# sdti trains a random SD1.5-shaped LDM checkpoint (written once to
# <build>/bench/sd15-random.safetensors) on a one-image 512x512 DreamBooth folder with
# --cache_latents_to_disk; a first 1-step run writes the latent cache (its VAE encode is
# excluded), the measured run reads it, so its peak RSS is the training's own (model load,
# text encoder, UNet, optimizer). PyTorch holds kohya's three models (the VAE kept but not
# run) and runs kohya's step on the same shapes.
#
# Usage: bash bench/bench_train_step.sh [build-dir] [threads] [steps]
#   SDTI_BENCH_PRECISION=fp32|fp16|bf16 (default bf16): sdti's --mixed_precision (weights
#   stored half, float32 arithmetic). PyTorch runs fp32 (the issue's comparison) and, with
#   TORCH_BENCH_BF16=1 (default), also kohya's bf16 (bf16 UNet weights, autocast): the
#   like-for-like line. SDTI_BENCH_CKPT=1 adds --gradient_checkpointing to sdti.
#   SDTI_BENCH_MODEL=PATH trains that checkpoint instead of the random one.
# The machine should be otherwise idle; when it is not, set OMP_WAIT_POLICY=passive (both
# sides read it) and repeat: the ratios move less than the seconds.
set -euo pipefail
build=${1:-build}
threads=${2:-2}
steps=${3:-4}
py=build/refvenv/bin/python
prec=${SDTI_BENCH_PRECISION:-bf16}
torch_bf16=${TORCH_BENCH_BF16:-1}
ckpt=${SDTI_BENCH_CKPT:-0}
load0=$(cut -d' ' -f1-3 /proc/loadavg)

model=${SDTI_BENCH_MODEL:-$build/bench/sd15-random.safetensors}
[ -f "$model" ] || "$py" bench/bench_train_step.py --write-model "$model"

work=$(mktemp -d)
trap 'rc=$?; if [ $rc = 0 ]; then rm -rf "$work"; else echo "logs kept in $work" >&2; fi' EXIT
mkdir -p "$work/out"
# the image folder (and its latent cache) stays beside the model between runs
data=$(dirname "$model")/train_step_data
if [ ! -f "$data/1_mytok/img.png" ]; then
mkdir -p "$data/1_mytok"
"$py" - "$data/1_mytok" <<'EOF'
import sys
import numpy as np
from PIL import Image
rng = np.random.default_rng(5)
yy, xx = np.mgrid[0:512, 0:512] / 512.0
img = np.stack([np.sin(7 * xx), np.cos(5 * yy), np.sin(3 * (xx + yy))], -1) * 0.4 + 0.5
img = img + 0.05 * rng.standard_normal(img.shape)
Image.fromarray(np.clip(img * 255, 0, 255).astype(np.uint8), "RGB").save(sys.argv[1] + "/img.png")
open(sys.argv[1] + "/img.txt", "w").write("a photo of mytok\n")
EOF
fi

sdti_args=(train --pretrained_model_name_or_path "$model" --train_data_dir "$data"
  --output_dir "$work/out" --resolution 512 --token_string mytok --init_word cat
  --caption_extension .txt --cache_latents_to_disk --learning_rate 5e-3 --seed 1
  --max_data_loader_n_workers 0 --num_cpu_threads_per_process "$threads")
[ "$prec" = fp32 ] || sdti_args+=(--mixed_precision "$prec")
[ "$ckpt" = 1 ] && sdti_args+=(--gradient_checkpointing)

# the latent cache (VAE encode), not measured; kept for later runs
if ! ls "$data"/1_mytok/*.npz >/dev/null 2>&1; then
  "$build/sdti" "${sdti_args[@]}" --max_train_steps 1 >"$work/cache.log" 2>&1 ||
    { cat "$work/cache.log" >&2; exit 1; }
fi

# sdti prints "steps k/N ... s/it" after step 1 and at the end (non-terminal stderr); the
# seconds of steps 2..N are N * (s/it at N) - 1 * (s/it at 1).
# SDTI_PROFILE: sdti also prints its time per part of a step (wall/cpu seconds, page faults)
SDTI_PROFILE=1 /usr/bin/time -f 'rss %M' -o "$work/sdti.time" "$build/sdti" "${sdti_args[@]}" \
  --max_train_steps "$steps" >"$work/sdti.log" 2>&1 || { cat "$work/sdti.log" >&2; exit 1; }
read -r s_step s_first < <(awk -v n="$steps" '
  /^steps [0-9]+\// { split($2, a, "/"); for (i = 1; i <= NF; i++) if ($(i + 1) == "s/it") s[a[1]] = $i }
  END { printf "%.3f %.3f\n", (n > 1 ? (n * s[n] - s[1]) / (n - 1) : s[1]), s[1] }' "$work/sdti.log")
s_rss=$(awk '/^rss/ {print $2}' "$work/sdti.time")

torch_run() { # precision -> "<step seconds> <first step seconds> <rss KiB>"
  /usr/bin/time -f 'rss %M' -o "$work/torch.time" "$py" bench/bench_train_step.py "$steps" \
    "$threads" "$1" >"$work/torch.log" 2>&1 || { cat "$work/torch.log" >&2; exit 1; }
  echo "$(awk '/^step_seconds/ {print $2}' "$work/torch.log") $(awk '/^first_step_seconds/ {print $2}' "$work/torch.log") $(awk '/^rss/ {print $2}' "$work/torch.time")"
}
read -r p_step p_first p_rss < <(torch_run fp32)

echo "TI step, SD1.5 shapes, 512x512, batch 1, cached latents, $threads threads, $steps steps" \
  "(first step excluded); sdti --mixed_precision $prec$([ "$ckpt" = 1 ] && echo ' --gradient_checkpointing')"
echo "load average before / after: $load0 / $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-22s %10s %10s %10s %9s\n' run "s/step" "1st step" "peak MiB" ""
printf '%-22s %10.2f %10.2f %10.0f\n' "sdti $prec" "$s_step" "$s_first" "$((s_rss / 1024))"
printf '%-22s %10.2f %10.2f %10.0f   ratio time %.2f  memory %.2f\n' "PyTorch fp32 (kohya)" \
  "$p_step" "$p_first" "$((p_rss / 1024))" "$(awk -v a="$s_step" -v b="$p_step" 'BEGIN{print a/b}')" \
  "$(awk -v a="$s_rss" -v b="$p_rss" 'BEGIN{print a/b}')"
echo "sdti's breakdown (wall/cpu seconds per part of a step):"
sed -n 's/^profile \(train step mean.*\)/  \1/p; s/^profile \(unet .*\)/  \1/p' "$work/sdti.log"
if [ "$torch_bf16" = 1 ]; then
  read -r b_step b_first b_rss < <(torch_run bf16)
  printf '%-22s %10.2f %10.2f %10.0f   ratio time %.2f  memory %.2f (like for like)\n' \
    "PyTorch bf16 (kohya)" "$b_step" "$b_first" "$((b_rss / 1024))" \
    "$(awk -v a="$s_step" -v b="$b_step" 'BEGIN{print a/b}')" \
    "$(awk -v a="$s_rss" -v b="$b_rss" 'BEGIN{print a/b}')"
fi
