#!/usr/bin/env bash
# Fathom against the newest PyTorch on this CPU, side by side in one run (shared machines drift,
# so only same-run ratios mean anything). One JSON line per comparison on stdout:
#   bash bench/cpu_vs_torch.sh [reps]        (after scripts/build.sh)
# Fashion-MNIST: samples/s of the second epoch (the first includes warm-up), Fathom in one
# process with 2 OpenMP threads and as the main job (2 ranks x 1 thread), against
# ../shared/anchors/torch_fmnist_mlp.py with 2 threads. GPT tiny/small: tokens/s of
# bench_gpt against torch_gpt_bench.py --device cpu --dtype fp32.
# TORCH_PY names PyTorch's python; by default the anchors' venv (setup-torch.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-2}
build=${FATHOM_BUILD_DIR:-build}
anchors=${ANCHORS:-../shared/anchors}
py=${TORCH_PY:-/opt/fathom-anchors/torch/bin/python}
[[ -x $py ]] || { echo "cpu_vs_torch: no PyTorch at $py; run $anchors/setup-torch.sh or set TORCH_PY" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

field() { grep -o "$1=[0-9.]*" | tail -1 | cut -d= -f2; }
jfield() { grep -o "\"$1\":[0-9.]*" | tail -1 | cut -d: -f2; }
line() {  # name fathom torch
  python3 -c "import json,sys; f,t=float(sys.argv[2]),float(sys.argv[3]); print(json.dumps({'bench':sys.argv[1],'fathom':f,'torch':t,'ratio':round(f/t,3)}))" "$@"
}

for ((r = 0; r < reps; ++r)); do
  t=$(OMP_NUM_THREADS=2 "$py" "$anchors/torch_fmnist_mlp.py" 2 2 | field samples_per_s)
  f1=$(OMP_NUM_THREADS=2 "$build/examples/fashion_mnist" --epochs 2 --log-every 0 | field samples_per_s)
  f2=$(mpirun -np 2 --oversubscribe -x OMP_NUM_THREADS=1 "$build/examples/fashion_mnist" --epochs 2 \
       --log-every 0 | field samples_per_s)
  line fmnist_samples_per_s_1proc_2threads "$f1" "$t"
  line fmnist_samples_per_s_2ranks "$f2" "$t"
  for cfg in tiny small; do
    steps=$([[ $cfg == tiny ]] && echo 20 || echo 2)
    t=$(OMP_NUM_THREADS=2 "$py" "$anchors/torch_gpt_bench.py" --config $cfg --device cpu --dtype fp32 \
        --steps $steps | field tokens_per_s)
    f=$(OMP_NUM_THREADS=2 "$build/bench/bench_gpt" --config $cfg --steps $steps | jfield tokens_per_s)
    line gpt_${cfg}_tokens_per_s "$f" "$t"
  done
done
