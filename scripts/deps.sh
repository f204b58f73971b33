#!/usr/bin/env bash
# Installs Fathom's build and run dependencies (Debian 12 packages), only those missing.
# The CUDA toolkit with cuDNN and NCCL is not a Debian package here: when /usr/local/cuda exists
# the build uses it, otherwise Fathom builds CPU-only.
set -euo pipefail
PKGS=(build-essential cmake libopenblas-dev libopenblas-openmp-dev libopenmpi-dev openmpi-bin libprotobuf-dev
      protobuf-compiler libgoogle-glog-dev catch2 dataset-fashion-mnist fortunes zlib1g-dev
      libxxhash-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
