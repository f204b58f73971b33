#!/usr/bin/env bash
# Resume is exact under fathomrun: a Fashion-MNIST run with one rank killed by kill -9 from
# outside, at a random moment, and restarted from its newest checkpoint, ends with the same
# parameters (final_param_hash=) and a byte-identical saved model as a run never interrupted.
#
#   fashion_mnist_kill9.sh FATHOMRUN FASHION_MNIST
#
# KILL_DELAY=S (seconds, decimals allowed) fixes the moment instead of a random one, counted
# from the first checkpoint the job writes; the delay used is printed, so a failure can be
# replayed. CTest: example_fashion_mnist_kill9.
set -u
fathomrun=$1 trainer=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/fmnist_kill9.XXXXXX")
trap 'rm -rf "$work"' EXIT
# Long enough that the latest random moment (4.9 s after the first checkpoint) still finds the
# job running: two epochs take under 4 s on 2 cores since the denormal and MPI-yield fixes.
args=(--epochs 5 --save-every 100)

fail() {
  echo "FAIL: $*"
  for f in "$work"/out1.txt "$work"/out2.txt; do
    [ -e "$f" ] && { echo "----- $(basename "$f") -----"; cat "$f"; }
  done
  exit 1
}

descendants() {  # every process below $1
  local c
  for c in $(pgrep -P "$1"); do
    echo "$c"
    descendants "$c"
  done
}

# 1. Interrupted: kill one rank with SIGKILL once the first checkpoint exists, plus a delay.
mkdir -p "$work/D1"
timeout 900 "$fathomrun" -n 2 --max-restarts 3 -- "$trainer" "${args[@]}" \
  --checkpoint-dir "$work/D1" --save-model "$work/M1.safetensors" >"$work/out1.txt" 2>&1 &
job=$!
for _ in $(seq 3000); do
  [ -n "$(ls -A "$work/D1" 2>/dev/null)" ] && break
  kill -0 "$job" 2>/dev/null || fail "the job ended before writing a checkpoint"
  sleep 0.1
done
delay=${KILL_DELAY:-$(awk -v r="$RANDOM" 'BEGIN { printf "%.1f", (r % 50) / 10 }')}
echo "killing a rank ${delay} s after the first checkpoint appeared"
sleep "$delay"
ranks=()
for p in $(descendants "$job"); do
  [ "$(ps -o comm= -p "$p" 2>/dev/null)" = "$(basename "$trainer" | cut -c1-15)" ] && ranks+=("$p")
done
[ "${#ranks[@]}" -gt 0 ] || fail "no rank of the job is running ${delay} s after the first checkpoint (it ended too soon: use a smaller KILL_DELAY)"
victim=${ranks[$((RANDOM % ${#ranks[@]}))]}
echo "kill -9 $victim (one of ${ranks[*]})"
kill -9 "$victim"
wait "$job"
rc=$?
[ "$rc" -eq 0 ] || fail "the interrupted run: fathomrun exited with $rc"
grep -q '^fathomrun: restarting the job: attempt 1' "$work/out1.txt" || fail "the interrupted run was not restarted"

# 2. Uninterrupted, the same command.
mkdir -p "$work/D2"
timeout 900 "$fathomrun" -n 2 --max-restarts 0 -- "$trainer" "${args[@]}" \
  --checkpoint-dir "$work/D2" --save-model "$work/M2.safetensors" >"$work/out2.txt" 2>&1
rc=$?
[ "$rc" -eq 0 ] || fail "the uninterrupted run: fathomrun exited with $rc"

# 3. The same parameters and the same model file.
h1=$(grep -o 'final_param_hash=[0-9a-f]\{16\}' "$work/out1.txt" | tail -n 1)
h2=$(grep -o 'final_param_hash=[0-9a-f]\{16\}' "$work/out2.txt" | tail -n 1)
[ -n "$h1" ] || fail "the interrupted run printed no final_param_hash="
[ -n "$h2" ] || fail "the uninterrupted run printed no final_param_hash="
[ "$h1" = "$h2" ] || fail "the parameters differ: interrupted $h1, uninterrupted $h2"
cmp "$work/M1.safetensors" "$work/M2.safetensors" || fail "the saved models differ"
echo "PASS: $h1 after a kill -9 of process $victim at ${delay} s, and without; the models are identical"
