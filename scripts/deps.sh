#!/usr/bin/env bash
# Installs Fathom's build and run dependencies (Debian 12 packages), only those missing.
# The CUDA toolkit with cuDNN and NCCL is not a Debian package here: when /usr/local/cuda exists
# the build uses it, otherwise Fathom builds CPU-only. One line on stderr; apt's output goes to
# <build dir>/logs/deps.log (scripts/phase.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/phase.sh
PKGS=(build-essential cmake libopenblas-dev libopenblas-openmp-dev libopenmpi-dev openmpi-bin libprotobuf-dev
      protobuf-compiler libgoogle-glog-dev catch2 dataset-fashion-mnist fortunes zlib1g-dev
      libxxhash-dev libdnnl-dev)
# `deps.sh --test` (scripts/test.sh) adds what only the tests need: SLURM and munge for the
# launcher_slurm test, which starts a private single-node cluster (tests/launcher/
# slurm_cluster.sh); about 3 MB, seconds to install. The main job does not install daemons.
if [ "${1:-}" = "--test" ]; then
  PKGS+=(slurmctld slurmd slurm-client munge)
elif [ $# -gt 0 ]; then
  echo "deps.sh: unknown argument '$1' (the only one is --test)" >&2
  exit 2
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@"
}
if ((${#missing[@]})); then
  phase_run deps "deps: installing ${#missing[@]} package(s) (${missing[*]})" none apt_install "${missing[@]}"
else
  phase_say "deps: all ${#PKGS[@]} packages installed"
fi
