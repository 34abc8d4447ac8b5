#!/usr/bin/env bash
# Installs the Debian packages sdti needs to build and test, when any is missing.
# Idempotent and quiet when everything is there already.
set -euo pipefail
PACKAGES=(build-essential cmake pkg-config clang libclang-rt-14-dev
          libzip-dev libcjson-dev libyaml-dev zlib1g-dev libopenblas-dev libdnnl-dev
          libutf8proc-dev libpcre2-dev libpng-dev libjpeg-dev libwebp-dev
          libopenmpi-dev openmpi-bin)
# libopenmpi-dev / openmpi-bin: data-parallel `mpirun -np N sdti train` and its test
# (docs/distributed.md). Optional for a build: without them CMake builds a one-process sdti.
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
