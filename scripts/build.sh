#!/usr/bin/env bash
# Configures and builds Fathom in build/ (Release, assertions on). Extra args go to cmake.
# FATHOM_CUDA=AUTO|ON|OFF (env) chooses the CUDA backend; AUTO uses it when nvcc is found.
# FATHOM_BUILD_DIR (env) builds elsewhere. Two lines on stderr, configure and build (with a
# progress count); the output is in <build dir>/logs/{configure,build}.log (scripts/phase.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/phase.sh
dir=${FATHOM_BUILD_DIR:-build}
phase_run configure "configure $dir/ (FATHOM_CUDA=${FATHOM_CUDA:-AUTO})" none \
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DFATHOM_CUDA="${FATHOM_CUDA:-AUTO}" "$@"
phase_run build "build $dir/" build cmake --build "$dir" -j"$(nproc)"
