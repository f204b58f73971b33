#!/usr/bin/env bash
# Data-parallel scaling of the main job on this machine (issue #21): Fashion-MNIST MLP, global
# batch 128, one CPU thread per rank, 1 rank against 2 ranks on the same cores, alternating
# (shared machines drift), with PyTorch DDP on gloo (../shared/anchors/torch_ddp_fmnist.py) in
# the same run. efficiency = samples/s with 2 ranks / (2 x samples/s with 1 rank), each the
# median over REPS runs of its last epoch. One JSON line per framework and configuration.
#   bash bench/bench_scaling.sh [reps] [epochs]         (FATHOM_BUILD_DIR, TORCH_PY as below)
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-3} epochs=${2:-2}
build=${FATHOM_BUILD_DIR:-build}
anchors=${ANCHORS:-../shared/anchors}
py=${TORCH_PY:-/opt/fathom-anchors/torch/bin/python}
fm=$build/examples/fashion_mnist
[[ -x $fm ]] || { echo "bench_scaling: no $fm; build first (scripts/build.sh)" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export FATHOM_NUM_THREADS=1 OMP_NUM_THREADS=1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
last() { grep -o "samples_per_s=[0-9.]*" | tail -1 | cut -d= -f2; }
for ((r = 0; r < reps; ++r)); do
  "$fm" --epochs "$epochs" --log-every 0 | last >> "$out/fathom.1"
  mpirun -np 2 --bind-to none "$fm" --epochs "$epochs" --log-every 0 | last >> "$out/fathom.2"
  mpirun -np 2 --bind-to none "$fm" --epochs "$epochs" --log-every 0 --zero 1 | last >> "$out/fathom_zero1.2"
  if [[ -x $py ]]; then
    "$py" "$anchors/torch_ddp_fmnist.py" "$epochs" 1 | last >> "$out/torch.1"
    "$py" "$anchors/torch_ddp_fmnist.py" "$epochs" 2 | last >> "$out/torch.2"
  fi
done
python3 - "$out" <<'PY'
import json, os, statistics as st, sys
out = sys.argv[1]
def med(name):
    p = os.path.join(out, name)
    return st.median(float(x) for x in open(p)) if os.path.exists(p) else None
one = {"fathom": med("fathom.1"), "torch": med("torch.1")}
for fw, two in (("fathom", "fathom.2"), ("fathom_zero1", "fathom_zero1.2"), ("torch", "torch.2")):
    s1, s2 = one["torch" if fw == "torch" else "fathom"], med(two)
    if s1 is None or s2 is None:
        continue
    print(json.dumps({"bench": "fmnist_scaling", "framework": fw, "samples_per_s_1rank": round(s1),
                      "samples_per_s_2ranks": round(s2), "efficiency": round(s2 / (2 * s1), 3)}))
PY
