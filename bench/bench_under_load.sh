#!/usr/bin/env bash
# The Fashion-MNIST training step of Fathom and PyTorch side by side, on an idle machine and then
# beside one competing CPU-bound process (`python3 -c 'while True: pass'`), the situation of
# issue #18 part 5: the goal is a slowdown of at most 2.5x, and Fathom at least as fast as
# PyTorch under the same load. Both run their defaults (Fathom: get_num_threads(), PyTorch:
# torch's own thread count); bench/bench_fmnist_step.cpp and bench/torch_fmnist_step.py are the
# same step. Prints each run's JSON line, then one summary line per framework:
#   {"bench":"fmnist_under_load","framework":"fathom","idle_samples_per_s":...,
#    "loaded_samples_per_s":...,"slowdown":...}
# Usage (after scripts/build.sh; about a minute on 2 cores, at most about 3):
#   bash bench/bench_under_load.sh [steps] [rounds]       (defaults 300 and 2)
# FATHOM_BUILD_DIR picks the build (default build/); TORCH_PY names PyTorch's python (default:
# the anchors' venv, ../shared/anchors/setup-torch.sh installs it; without it only Fathom runs).
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-300}
rounds=${2:-2}
secs=${BENCH_MAX_SECONDS:-15}  # a run stops early after this long (a slow one under load)
build=${FATHOM_BUILD_DIR:-build}
py=${TORCH_PY:-/opt/fathom-anchors/torch/bin/python}
fathom_bin=$build/bench/bench_fmnist_step
[[ -x $fathom_bin ]] || { echo "bench_under_load: no $fathom_bin; build the bench_fmnist_step target" >&2; exit 2; }
have_torch=1
if ! "$py" -c "import torch" >/dev/null 2>&1; then
  echo "bench_under_load: no PyTorch at $py (set TORCH_PY or run ../shared/anchors/setup-torch.sh): Fathom only" >&2
  have_torch=0
fi

hog_pid=
stop_hog() {
  if [[ -n $hog_pid ]]; then kill "$hog_pid" 2>/dev/null || true; wait "$hog_pid" 2>/dev/null || true; fi
  hog_pid=
}

results=$(mktemp)
trap 'stop_hog; rm -f "$results"' EXIT
run_all() {  # label
  "$fathom_bin" --steps "$steps" --max-seconds "$secs" --label "$1" | tee -a "$results"
  if ((have_torch)); then
    "$py" bench/torch_fmnist_step.py --steps "$steps" --max-seconds "$secs" --label "$1" | tee -a "$results"
  fi
}
# Rounds alternate idle and loaded, so drift on a shared machine hits both alike.
for ((r = 0; r < rounds; ++r)); do
  run_all idle
  python3 -c 'while True: pass' &
  hog_pid=$!
  sleep 0.5  # the competitor is running before the timed steps start
  run_all loaded
  stop_hog
done

# The best round of each (the least disturbed by anything else), and the ratio.
python3 - "$results" <<'EOF'
import json, sys
best = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    k = (r["framework"], r["label"])
    best[k] = max(best.get(k, 0), r["samples_per_s"])
for fw in dict.fromkeys(f for f, _ in best):
    idle, loaded = best[(fw, "idle")], best[(fw, "loaded")]
    print(json.dumps({"bench": "fmnist_under_load", "framework": fw, "idle_samples_per_s": idle,
                      "loaded_samples_per_s": loaded, "slowdown": round(idle / loaded, 2)}))
EOF
