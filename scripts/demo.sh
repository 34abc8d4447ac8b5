#!/usr/bin/env bash
# The built-in demo: inspects the tiny fixture models, then trains a textual-inversion
# embedding with `sdti train` (kohya's command line) on the tiny SD1 model and the small image
# set in tests/fixtures/train/demo (made by tools/make_train_images.py), and prints where the
# embedding is. The tiny model has random weights: this shows the pipeline, not a useful
# embedding.
set -euo pipefail
build=${1:-build}
for m in tests/fixtures/models/sd1-tiny tests/fixtures/models/sd2-tiny; do
  [ -e "$m" ] || continue
  for p in "$m/diffusers" "$m/ldm.safetensors" "$m/ldm.ckpt"; do
    [ -e "$p" ] && "$build/sdti" inspect "$p"
  done
done
out="$build/demo"
mkdir -p "$out"
echo
echo "== sdti train on tests/fixtures/models/sd1-tiny (20 steps) =="
"$build/sdti" train \
  --pretrained_model_name_or_path tests/fixtures/models/sd1-tiny/ldm.safetensors \
  --train_data_dir tests/fixtures/train/demo --caption_extension .txt --resolution 64 \
  --token_string mytok --init_word cat --num_vectors_per_token 2 \
  --max_train_steps 20 --learning_rate 5e-3 --cache_latents --flip_aug \
  --save_every_n_epochs 2 --save_model_as safetensors --seed 42 \
  --output_dir "$out" --output_name mytok --logging_dir "$out/logs" --log_prefix demo-
echo
"$build/sdti" inspect "$out/mytok.safetensors"
echo
echo "The embedding is $out/mytok.safetensors (token \"mytok\")."
run=$(ls -td "$out"/logs/demo-*/ | head -n 1)
echo "The loss curve is ${run}loss_curve.png (numbers in ${run}loss.csv; TensorBoard: tensorboard --logdir $out/logs)."
