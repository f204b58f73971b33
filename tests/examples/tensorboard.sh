#!/usr/bin/env bash
# fashion_mnist --tensorboard DIR on 2 ranks writes an event file that TensorBoard's own reader
# loads, with train/loss scalars equal to the printed losses (tests/log/tensorboard_check.py);
# and a run killed with kill -9 mid-way leaves one that still loads, with every printed loss.
# Skipped (exit 77) when PYTHON cannot import the tensorboard package.
# Usage: tensorboard.sh FASHION_MNIST MPIEXEC PYTHON
set -uo pipefail
fm=$1 mpiexec=$2 python=$3
here=$(cd "$(dirname "$0")/.." && pwd)
if ! "$python" -c "import tensorboard" 2> /dev/null; then
  echo "tensorboard: SKIPPED: $python cannot import the tensorboard package (pip install tensorboard,"
  echo "or configure with -DFATHOM_PYTHON=<a python that has it>)"
  exit 77
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$mpiexec" -np 2 --oversubscribe --bind-to none "$fm" --epochs 1 --max-steps 9 --log-every 3 \
  --tensorboard "$tmp/tb" > "$tmp/out" 2>&1
rc=$?
cat "$tmp/out"
[ "$rc" -eq 0 ] || { echo "FAIL: fashion_mnist exited with $rc"; exit 1; }
"$python" "$here/log/tensorboard_check.py" "$tmp/tb" "$tmp/out" || exit 1

echo "--- killed with kill -9 after its 5th loss line"
"$fm" --epochs 1 --max-steps 400 --log-every 1 --tensorboard "$tmp/tbk" > "$tmp/outk" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  [ "$(grep -c '^  epoch' "$tmp/outk")" -ge 5 ] && break
  sleep 0.1
done
kill -9 "$pid"
wait "$pid" 2> /dev/null
grep '^  epoch' "$tmp/outk" | tail -n 2
grep -q 'final_param_hash' "$tmp/outk" && { echo "FAIL: the run ended before the kill"; exit 1; }
"$python" "$here/log/tensorboard_check.py" --killed "$tmp/tbk" "$tmp/outk"
