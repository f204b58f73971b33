#!/usr/bin/env bash
# A model trained by examples/fashion_mnist under 2-rank DDP is saved through state_dict
# (safetensors), loaded into a fresh model by a new process, and gives the same test accuracy.
# Usage: fashion_mnist_save_load.sh <fashion_mnist binary> <mpiexec>
set -euo pipefail
bin=$1 mpiexec=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
"$mpiexec" -np 2 --oversubscribe --bind-to none "$bin" --epochs 1 --log-every 0 \
  --save-model "$tmp/mlp.safetensors" | tee "$tmp/train.log"
trained=$(grep -o 'test_acc=[0-9.]*' "$tmp/train.log" | tail -1)
grep -q "saved the model to $tmp/mlp.safetensors" "$tmp/train.log"
[ -s "$tmp/mlp.safetensors" ] || { echo "FAIL: no model file written"; exit 1; }
"$bin" --epochs 0 --load "$tmp/mlp.safetensors" | tee "$tmp/eval.log"
loaded=$(grep -o 'test_acc=[0-9.]*' "$tmp/eval.log" | tail -1)
echo "trained: $trained, loaded: $loaded"
[ -n "$trained" ] && [ "$trained" = "$loaded" ] || { echo "FAIL: accuracy differs after load"; exit 1; }
# A fresh, untrained model is far from it: the weights really came from the file.
fresh=$("$bin" --epochs 0 --seed 1 | grep -o 'test_acc=[0-9.]*')
[ "$fresh" != "$trained" ] || { echo "FAIL: an untrained model scores the same ($fresh)"; exit 1; }
# A file that does not fit the model is refused with the key named.
head -c 100 "$tmp/mlp.safetensors" > "$tmp/bad.safetensors"
if "$bin" --epochs 0 --load "$tmp/bad.safetensors" 2> "$tmp/err.log"; then
  echo "FAIL: a truncated model file was accepted"; exit 1
fi
grep -q "bad.safetensors" "$tmp/err.log" || { cat "$tmp/err.log"; echo "FAIL: the error does not name the file"; exit 1; }
echo "PASS: $trained after training, the same after loading; untrained $fresh"
