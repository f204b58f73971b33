#!/usr/bin/env bash
# kill -9 during a save leaves the previous checkpoint loadable (checkpointer.h).
#   crash_save.sh PROGRAM NP [MPIEXEC]
# NP 1 runs PROGRAM alone; otherwise under "MPIEXEC -n NP --oversubscribe". For every point of
# a save where the test hook can kill (FATHOM_CHECKPOINT_TEST_KILL), one rank is killed there
# and load_latest must then give the last complete step, bitwise. Last, a loop of async saves
# is killed with kill -9 from here at an arbitrary moment.
set -u
prog=$1
np=$2
mpiexec=${3:-}
dir=$(mktemp -d "${TMPDIR:-/tmp}/fathom_crash_XXXXXX")
trap 'rm -rf "$dir"' EXIT

launch() {
  if [ "$np" = 1 ]; then "$prog" "$dir" "$@"; else "$mpiexec" -n "$np" --oversubscribe "$prog" "$dir" "$@"; fi
}
fail() { echo "FAIL: $*"; ls -la "$dir"; exit 1; }

launch init || fail "init"
victims=$(printf "%s\n" 0 $((np - 1)) | sort -u)
for point in data done manifest rename; do
  for victim in $victims; do
    echo "== kill rank $victim at '$point' (of $np)"
    echo step_00000001 > "$dir/latest"  # as init left it (a surviving save2 moved it on)
    FATHOM_CHECKPOINT_TEST_KILL=$point FATHOM_CHECKPOINT_TEST_KILL_RANK=$victim launch save2 \
      > "$dir.out" 2>&1
    rc=$?
    case "$point:$victim" in
      rename:0) expect=2 ;;                 # complete before the kill (only `latest` lags)
      manifest:0 | data:* | done:0) expect=1 ;;
      done:*) expect=any ;;                 # rank 0 may complete it before mpirun stops it
      *) expect=survives ;;                 # manifest and rename are rank 0's points only
    esac
    if [ "$expect" = survives ]; then
      [ "$rc" = 0 ] && grep -q "^saved 2" "$dir.out" || fail "save2 failed: $(cat "$dir.out")"
      expect=2
    else
      [ "$rc" != 0 ] || fail "the job killed at $point exited 0: $(cat "$dir.out")"
    fi
    if [ "$point:$victim" = rename:0 ]; then
      # Killed before `latest` moved on: the directory listing, not the pointer, is the truth.
      [ "$(cat "$dir/latest")" = step_00000001 ] || fail "latest moved before the kill"
    fi
    launch check "$expect" || fail "check after the kill at $point (expected step $expect)"
    rm -rf "$dir/step_00000002"
  done
done
rm -f "$dir.out"

echo "== kill -9 a loop of async saves"
# exec, so that $! is the program (alone) or mpirun, not a subshell around it.
if [ "$np" = 1 ]; then
  FATHOM_TEST_STATE_MB=64 exec "$prog" "$dir" loop > "$dir.loop" 2>&1 &
else
  FATHOM_TEST_STATE_MB=64 exec "$mpiexec" -n "$np" --oversubscribe "$prog" "$dir" loop > "$dir.loop" 2>&1 &
fi
pid=$!
for _ in $(seq 600); do
  grep -q "^saving 3" "$dir.loop" 2>/dev/null && break
  sleep 0.1
done
grep -q "^saving 3" "$dir.loop" || { kill -9 $pid; fail "the loop did not get to step 3: $(cat "$dir.loop")"; }
# Alone, the program itself; under mpirun, rank processes (mpirun's children), whose death
# makes mpirun stop the rest.
if [ "$np" = 1 ]; then kill -9 $pid; else kill -9 $(pgrep -P $pid | head -n 1); fi
wait $pid 2>/dev/null
rm -f "$dir.loop"
FATHOM_TEST_STATE_MB=64 launch check any || fail "check after kill -9"
echo "PASS"
