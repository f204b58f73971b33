#!/usr/bin/env bash
# ResNet training step, Fathom against PyTorch in the same run (issue #15): synthetic images,
# global batch 16 at 224x224, f32, CPU. Per model: 1 process with 2 threads, and 2 ranks of
# data parallelism (DDP; PyTorch's on gloo) with 1 thread each, the same for both frameworks.
# Each configuration prints its JSON line (bench/bench_resnet.cpp, bench/torch_resnet_step.py),
# then one line per configuration with the ratio of images/s (fathom / torch).
#   bash bench/bench_resnet.sh [steps] [models]      e.g. bash bench/bench_resnet.sh 5 "resnet50 resnet18"
# FATHOM_BUILD_DIR (default build) and TORCH_PY (default the anchor's venv) as bench_scaling.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-5} models=${2:-"resnet50 resnet18"}
build=${FATHOM_BUILD_DIR:-build}
py=${TORCH_PY:-/opt/fathom-anchors/torch/bin/python}
bin=$build/bench/bench_resnet
[[ -x $bin ]] || { echo "bench_resnet: no $bin; build it (cmake --build $build --target bench_resnet)" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
out=$(mktemp)
trap 'rm -f "$out"' EXIT
common=(--batch 16 --image 224 --steps "$steps" --warmup 2)
for m in $models; do
  FATHOM_NUM_THREADS=2 OMP_NUM_THREADS=2 "$bin" --model "$m" "${common[@]}" | tee -a "$out"
  FATHOM_NUM_THREADS=1 OMP_NUM_THREADS=1 mpirun -np 2 --bind-to none -x FATHOM_NUM_THREADS -x OMP_NUM_THREADS \
    "$bin" --model "$m" "${common[@]}" | tee -a "$out"
  if [[ -x $py ]]; then
    OMP_NUM_THREADS=2 "$py" bench/torch_resnet_step.py --model "$m" "${common[@]}" --threads 2 | tee -a "$out"
    OMP_NUM_THREADS=1 "$py" bench/torch_resnet_step.py --model "$m" "${common[@]}" --threads 1 --ranks 2 | tee -a "$out"
  else
    echo "bench_resnet: no PyTorch at $py (../shared/anchors/setup-torch.sh): Fathom only" >&2
  fi
done
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
for r in rows:
    if r["framework"] != "fathom":
        continue
    t = [o for o in rows if o["framework"] != "fathom" and (o["model"], o["ranks"]) == (r["model"], r["ranks"])]
    if t:
        print(json.dumps({"bench": "resnet_step_ratio", "model": r["model"], "ranks": r["ranks"],
                          "threads_per_rank": r["threads"], "fathom_images_per_s": r["images_per_s"],
                          "torch_images_per_s": t[0]["images_per_s"],
                          "fathom_over_torch": round(r["images_per_s"] / t[0]["images_per_s"], 3)}))
PY
