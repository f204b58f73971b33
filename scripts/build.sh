#!/usr/bin/env bash
# Configures and builds Fathom in build/ (Release, assertions on). Extra args go to cmake.
# FATHOM_CUDA=AUTO|ON|OFF (env) chooses the CUDA backend; AUTO uses it when nvcc is found.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B "${FATHOM_BUILD_DIR:-build}" -DCMAKE_BUILD_TYPE=Release \
  -DFATHOM_CUDA="${FATHOM_CUDA:-AUTO}" "$@" >&2
cmake --build "${FATHOM_BUILD_DIR:-build}" -j"$(nproc)" >&2
