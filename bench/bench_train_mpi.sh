#!/usr/bin/env bash
# Data-parallel `sdti train` scaling on this machine (docs/distributed.md): the same global
# batch of 2 at SD1.5 shapes, 256x256, cached latents, trained by
#   1 process  x 1 thread, --train_batch_size 2
#   mpirun -np 2, 1 thread per rank, --train_batch_size 1   (the same samples, noise, steps)
# and, for scale, 1 process x 2 threads. Prints seconds per optimizer step (the mean after the
# first step), the speed-up of 2 ranks over 1, and what the per-step collectives cost alone
# (bench_dist, same sizes as the trainer's: SD1.5's 49410 token ids, 768 wide rows).
#
# Usage: bash bench/bench_train_mpi.sh [build-dir] [steps]
#   SDTI_BENCH_PRECISION=fp32|fp16|bf16 (default bf16: weights stored half, fp32 arithmetic;
#   two ranks each hold a model, fp32 needs ~2 x 5 GB); SDTI_BENCH_REPEAT=n (default 1) runs
#   the 1-rank and 2-rank pair n times, alternating, and prints every pair (on a shared
#   machine the load changes between runs; alternating shows how much).
# The model is <build>/bench/sd15-random.safetensors (tools/reference/make_sd15_random.py
# writes it when missing). The machine should be otherwise idle; it rarely is: repeat.
set -euo pipefail
build=${1:-build}
steps=${2:-4}
py=build/refvenv/bin/python
prec=${SDTI_BENCH_PRECISION:-bf16}
load0=$(cut -d' ' -f1-3 /proc/loadavg)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=passive
mpirun=(mpirun -np 2 --oversubscribe --bind-to none -x OMP_WAIT_POLICY)

model=$build/bench/sd15-random.safetensors
[ -f "$model" ] || "$py" tools/reference/make_sd15_random.py "${model%.safetensors}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/data/1_mytok"
"$py" - "$work/data/1_mytok" <<'PY'
import sys
import numpy as np
from PIL import Image
rng = np.random.default_rng(5)
for i in range(2):
    img = rng.random((256, 256, 3))
    Image.fromarray((img * 255).astype(np.uint8), "RGB").save(f"{sys.argv[1]}/img{i}.png")
    open(f"{sys.argv[1]}/img{i}.txt", "w").write("a photo of mytok\n")
PY

args=(train --pretrained_model_name_or_path "$model" --train_data_dir "$work/data"
  --resolution 256 --token_string mytok --init_word cat --caption_extension .txt
  --cache_latents_to_disk --learning_rate 5e-3 --seed 1 --max_data_loader_n_workers 0)
[ "$prec" = fp32 ] || args+=(--mixed_precision "$prec")

# the latent cache (VAE encode), not measured
"$build/sdti" "${args[@]}" --output_dir "$work/cache" --train_batch_size 2 \
  --max_train_steps 1 >"$work/cache.log" 2>&1 || { cat "$work/cache.log" >&2; exit 1; }

# "steps k/N ... s/it" after step 1 and at the end: steps 2..N took N * s(N) - s(1)
step_seconds() {
  awk -v n="$steps" '
    /^steps [0-9]+\// { split($2, a, "/"); for (i = 1; i <= NF; i++) if ($(i + 1) == "s/it") s[a[1]] = $i }
    END { printf "%.3f\n", (n > 1 ? (n * s[n] - s[1]) / (n - 1) : s[1]) }' "$1"
}
run() { # name, launcher..., -- extra args
  local name=$1; shift
  local launch=()
  while [ "$1" != -- ]; do launch+=("$1"); shift; done
  shift
  "${launch[@]}" "$build/sdti" "${args[@]}" --output_dir "$work/$name" \
    --max_train_steps "$steps" "$@" >"$work/$name.log" 2>&1 || { cat "$work/$name.log" >&2; exit 1; }
  step_seconds "$work/$name.log"
}
pairs=()
for r in $(seq "${SDTI_BENCH_REPEAT:-1}"); do
  one=$(run one env -- --train_batch_size 2 --num_cpu_threads_per_process 1)
  two=$(run two "${mpirun[@]}" -- --train_batch_size 1 --num_cpu_threads_per_process 1)
  pairs+=("$one $two $(cut -d' ' -f1 /proc/loadavg)")
done
wide=$(run wide env -- --train_batch_size 2 --num_cpu_threads_per_process 2)
coll=$("${mpirun[@]}" "$build/bench/bench_dist" 24 200)

echo "TI step, SD1.5 shapes, 256x256, global batch 2, cached latents, $steps steps (first" \
  "excluded), --mixed_precision $prec"
echo "load average before / after: $load0 / $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-34s %8s\n' run "s/step"
for pair in "${pairs[@]}"; do
  read -r one two load <<<"$pair"
  printf '%-34s %8.2f\n' "1 process x 1 thread, batch 2" "$one"
  printf '%-34s %8.2f   speed-up over 1 rank %.2f  (load %s)\n' \
    "2 ranks x 1 thread, batch 1 each" "$two" "$(awk -v a="$one" -v b="$two" 'BEGIN{print a/b}')" \
    "$load"
done
printf '%-34s %8.2f   speed-up over 1 rank %.2f\n' "1 process x 2 threads, batch 2" "$wide" \
  "$(awk -v a="$one" -v b="$wide" 'BEGIN{print a/b}')"
echo "$coll"
