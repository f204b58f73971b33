#!/usr/bin/env bash
# examples/gpt over a 3D mesh prints the one-process run's per-step losses and gradient norms:
# mpirun -np 8 gpt --dp 2 --tp 2 --pp 2 (1F1B, and interleaved with 2 micro-batches and 2
# virtual stages) against gpt alone, 20 steps of the tiny config on a small batch.
# Each printed value must agree to 1e-5 relative; as they are printed with 4 (loss) and 3
# (norm) decimals, two values either side of a rounding boundary may also differ by one unit of
# the last digit (a difference far below 1e-5 relative can flip it), which is reported.
# Usage: gpt_3d.sh <gpt binary> <mpiexec>
set -uo pipefail
gpt=$1 mpiexec=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
args=(--steps 20 --batch 8 --warmup 2 --log-every 1 --sample 16 --peak-tflops 1)
fail() { echo "FAIL: $*"; exit 1; }

"$gpt" "${args[@]}" > "$tmp/one.log" 2>&1 || { cat "$tmp/one.log"; fail "the one-process run failed"; }

# step, loss, norm of each printed step line.
values() { sed -nE 's/^step +([0-9]+)\/[0-9]+  loss ([0-9.]+)  lr [^ ]+  norm ([0-9.]+) .*/\1 \2 \3/p' "$1"; }

compare() {  # <name> <mpirun args...>
  local name=$1
  shift
  "$mpiexec" "$@" > "$tmp/$name.log" 2>&1 || { cat "$tmp/$name.log"; fail "$name: the run failed"; }
  [ "$(grep -c '^step ' "$tmp/$name.log")" = 20 ] || { cat "$tmp/$name.log"; fail "$name: not 20 step lines (one rank prints)"; }
  grep -q -- "^--- sample ---$" "$tmp/$name.log" || fail "$name: no sample from the gathered model"
  paste -d' ' <(values "$tmp/one.log") <(values "$tmp/$name.log") | awk -v name="$name" '
    function check(what, a, b, unit) {
      d = a - b; if (d < 0) d = -d
      if (d <= 1e-5 * (a < 0 ? -a : a)) { exact++; return }
      if (d <= unit * 1.0001) { flips++; print name ": step " $1 " " what " " a " vs " b " (one unit of the last printed digit)"; return }
      print "FAIL: " name ": step " $1 " " what " " a " (one process) vs " b; bad++
    }
    { n++; if ($1 != $4) { print "FAIL: step " $1 " vs " $4; bad++ }
      check("loss", $2, $5, 1e-4); check("norm", $3, $6, 1e-3) }
    END { printf "%s: %d steps, %d values within 1e-5 relative, %d one-digit rounding flips\n", name, n, exact, flips
          if (n != 20 || bad > 0) exit 1 }' || { echo "--- one process"; cat "$tmp/one.log"; echo "--- $name"; cat "$tmp/$name.log"; fail "$name differs"; }
}

compare dp2_tp2_pp2 -np 8 --oversubscribe --bind-to none "$gpt" "${args[@]}" --dp 2 --tp 2 --pp 2
compare interleaved -np 8 --oversubscribe --bind-to none "$gpt" "${args[@]}" --dp 2 --tp 2 --pp 2 \
  --micro-batches 2 --schedule interleaved --virtual-stages 2
echo "PASS: the 3D runs print the one-process run's losses and norms"
