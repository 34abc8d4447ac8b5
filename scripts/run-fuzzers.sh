#!/usr/bin/env bash
# Runs every built libFuzzer target for a bounded time on its seed corpus
# (tests/fuzz/corpus/<target>/), without writing new corpus files into the repo.
set -euo pipefail
build=$1
seconds=${2:-60}
shopt -s nullglob
status=0
for bin in "$build"/tests/fuzz_*; do
  [ -x "$bin" ] || continue
  name=$(basename "$bin")
  seeds="tests/fuzz/corpus/${name#fuzz_}"
  work=$(mktemp -d)
  [ -d "$seeds" ] && cp -r "$seeds"/. "$work"/
  echo "fuzz: $name for ${seconds}s"
  if ! "$bin" -max_total_time="$seconds" -print_final_stats=0 -rss_limit_mb=2048 \
       -artifact_prefix="$build/$name-" "$work" > "$build/$name.log" 2>&1; then
    echo "fuzz: $name FAILED; last lines of $build/$name.log:"
    tail -n 40 "$build/$name.log"
    status=1
  fi
  rm -rf "$work"
done
exit $status
