#!/usr/bin/env bash
# Data-parallel scaling of the main job on this machine (issue #21), with where each step's time
# goes: the main job's training step (bench_dp_step: Fashion-MNIST MLP, global batch 128, DDP,
# AdamW), one CPU thread per rank, 1 rank against 2 ranks on the same cores, replicated and
# ZeRO-1, alternating (shared machines drift), with PyTorch DDP on gloo on the anchor's job
# (bench/torch_ddp_step.py, ../shared/anchors/torch_ddp_fmnist.py's loop with timers) in the
# same run. efficiency = samples/s with 2 ranks / (2 x samples/s with 1 rank), medians over REPS.
# Prints every run's JSON lines (one per rank, with the phase breakdown), then one summary line
# per framework and configuration: efficiency and the rank-averaged phases of the median run.
#   bash bench/bench_scaling.sh [reps] [steps]          (FATHOM_BUILD_DIR, TORCH_PY as below)
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-3} steps=${2:-400}
build=${FATHOM_BUILD_DIR:-build}
py=${TORCH_PY:-/opt/fathom-anchors/torch/bin/python}
bin=$build/bench/bench_dp_step
[[ -x $bin ]] || { echo "bench_scaling: no $bin; build first (scripts/build.sh)" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export FATHOM_NUM_THREADS=1 OMP_NUM_THREADS=1
echo "bench_scaling: OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset (OpenBLAS picks by cpuid)}" >&2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
run() {  # name, then the command; every JSON line it prints goes to $out/name
  local name=$1; shift
  "$@" 2>/dev/null | grep '^{' | tee -a "$out/$name"
  echo "---" >> "$out/$name"
}
for ((r = 0; r < reps; ++r)); do
  run fathom.1 taskset -c 0 "$bin" --steps "$steps" --max-seconds 0
  run fathom.2 mpirun -np 2 --bind-to core "$bin" --steps "$steps" --max-seconds 0
  run fathom_zero1.2 mpirun -np 2 --bind-to core "$bin" --steps "$steps" --max-seconds 0 --zero 1
  if [[ -x $py ]]; then
    run torch.1 taskset -c 0 "$py" bench/torch_ddp_step.py 1 "$steps"
    run torch.2 "$py" bench/torch_ddp_step.py 2 "$steps"
  fi
done
python3 - "$out" <<'PY'
import json, os, statistics as st, sys
out = sys.argv[1]
def runs(name):
    p = os.path.join(out, name)
    if not os.path.exists(p):
        return []
    text = open(p).read().split("---")
    return [[json.loads(l) for l in chunk.splitlines() if l.strip()] for chunk in text if chunk.strip()]
def median_run(rs):
    rs = sorted(rs, key=lambda r: r[0]["samples_per_s"])
    return rs[len(rs) // 2]
def phases(run):
    keys = [k for k in run[0] if k.endswith("_ms")]
    return {k: round(st.mean(r[k] for r in run), 3) for k in keys}
for fw, one, two in (("fathom", "fathom.1", "fathom.2"), ("fathom_zero1", "fathom.1", "fathom_zero1.2"),
                     ("torch", "torch.1", "torch.2")):
    r1, r2 = runs(one), runs(two)
    if not r1 or not r2:
        continue
    m1, m2 = median_run(r1), median_run(r2)
    s1, s2 = m1[0]["samples_per_s"], m2[0]["samples_per_s"]
    print(json.dumps({"bench": "fmnist_scaling", "framework": fw, "reps": len(r2), "samples_per_s_1rank": s1,
                      "samples_per_s_2ranks": s2, "efficiency": round(s2 / (2 * s1), 3),
                      "phases_1rank": phases(m1), "phases_2ranks": phases(m2)}))
PY
