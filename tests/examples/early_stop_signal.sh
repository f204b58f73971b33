#!/usr/bin/env bash
# A stop signal while an example is still starting (SLURM sends its time-limit warning up to a
# minute early; a requeued job got it within its first second): with --checkpoint-dir the
# process catches SIGUSR1 from the first line of main, before MPI starts and the data loads,
# and stops at its first step with a checkpoint and exit status 0; uncaught, SIGUSR1 would kill
# it (status 138).
# Usage: early_stop_signal.sh <fashion_mnist> <gpt>
set -uo pipefail
fm=$1 gpt=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
fail() { echo "FAIL: $*"; cat "$tmp/out" 2>/dev/null; exit 1; }

# catches PID SIG: the process has a handler for SIG (SigCgt, a hex mask of bit SIG-1).
catches() {
  local mask
  mask=$(awk '/^SigCgt:/ { print $2 }' "/proc/$1/status" 2>/dev/null) || return 1
  [ -n "$mask" ] && (( (16#$mask >> ($2 - 1)) & 1 ))
}

check() {  # check NAME STARTED_REGEX COMMAND...: STARTED_REGEX must not have been printed yet
  local name=$1 started=$2
  shift 2
  rm -rf "$tmp/ck" && mkdir "$tmp/ck"
  "$@" --checkpoint-dir "$tmp/ck" >"$tmp/out" 2>&1 &
  local pid=$! caught=0
  for _ in $(seq 2000); do
    catches "$pid" 10 && { caught=1; break; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.005
  done
  [ "$caught" -eq 1 ] || { kill -9 "$pid" 2>/dev/null; fail "$name: SIGUSR1 was never caught"; }
  # Caught before the program did its start-up work, not only once it trains.
  if grep -Eq -- "$started" "$tmp/out"; then
    kill -9 "$pid" 2>/dev/null
    fail "$name: SIGUSR1 is caught only after '$started' was printed"
  fi
  kill -USR1 "$pid"
  wait "$pid"
  local rc=$?
  [ "$rc" -eq 0 ] || fail "$name: exit status $rc after an early SIGUSR1, expected 0"
  grep -q 'stopping at step 1 on signal 10: checkpoint saved' "$tmp/out" || fail "$name: did not stop at step 1"
  [ -e "$tmp/ck/step_00000001" ] || fail "$name: no checkpoint of step 1"
  echo "ok: $name stops at step 1 on a SIGUSR1 sent at start-up"
}
check fashion_mnist 'done in' "$fm" --epochs 1 --log-every 0
check gpt 'parameters, B=' "$gpt" --steps 50 --log-every 1
echo PASS
