#!/usr/bin/env bash
# Watching a run (examples/observe.h), as a user sees it:
#  1. fashion_mnist on 2 ranks with --profile and --tensorboard: progress lines with MFU and ETA,
#     a summary, one merged trace (valid JSON) with each rank's data/forward/backward/optimizer
#     spans, DDP's bucket spans, all-reduces with group/seq/bytes, and at least one all-reduce
#     that ran while that rank's backward was still running (the overlap); one event file
#     (rank 0 writes by default) that Fathom's own checks read in log_tests.
#  2. a diverging run (--lr 1e3) says so at once with its step; --stop-on-nonfinite ends it
#     with a clear error and a nonzero status.
#     With --profile on 2 ranks, each rank of the failed run writes its own trace file.
#  3. gpt with --profile: its trace holds the step spans; its line shows MFU.
# Usage: observe.sh FASHION_MNIST GPT MPIEXEC
set -uo pipefail
fm=$1 gpt=$2 mpiexec=$3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
expect() {  # expect FILE REGEX
  grep -Eq -- "$2" "$1" || fail "no line of $1 matches '$2'"
}
# run OUT WANT CMD...: runs CMD into OUT and prints it; WANT is the exit status wanted, or
# "nonzero".
run() {
  local out=$1 want=$2 rc
  shift 2
  "$@" > "$out" 2>&1
  rc=$?
  cat "$out"
  if [ "$want" = nonzero ]; then
    [ "$rc" -ne 0 ] || fail "$1 exited 0, want a failure"
  else
    [ "$rc" -eq "$want" ] || fail "$1 exited with $rc, want $want"
  fi
}

echo "--- 1. fashion_mnist, 2 ranks, --profile and --tensorboard"
run "$tmp/fm.out" 0 "$mpiexec" -np 2 --oversubscribe --bind-to none "$fm" --epochs 1 --max-steps 6 \
  --log-every 2 --schedule constant --profile "$tmp/fm.trace.json" --tensorboard "$tmp/tb"
expect "$tmp/fm.out" "^fashion_mnist: loading Fashion-MNIST from .* \.\.\.$"
expect "$tmp/fm.out" "^fashion_mnist: \.\.\. done in [0-9]+\.[0-9]+ s$"
expect "$tmp/fm.out" "^fashion_mnist: MFU is against [0-9.]+ GFLOP/s per rank, measured"
expect "$tmp/fm.out" "^  epoch 1 step +6/[0-9]+  loss [0-9.]+  lr .* samples/s  mfu [0-9.]+%  elapsed [0-9]+:[0-9]{2}  eta [0-9]+:[0-9]{2}$"
expect "$tmp/fm.out" "^summary: 6 steps in [0-9:]+ \([0-9.]+ steps/s\), [0-9]+ samples/s, mfu [0-9.]+%, peak host memory [0-9]+ MB$"
expect "$tmp/fm.out" "^summary: epoch/test_acc final 0\.[0-9]+, best 0\.[0-9]+ \(step 6\)$"
expect "$tmp/fm.out" "^summary: communication [0-9.]+ s busy .* [0-9.]+ s exposed"
expect "$tmp/fm.out" "^profile: 2 rank\(s\) written to $tmp/fm.trace.json \([0-9]+ spans on rank 0\)"
n=$(find "$tmp/tb" -name 'events.out.tfevents.*' | wc -l)
[ "$n" -eq 1 ] || fail "want one event file (rank 0's) in $tmp/tb, found $n"
python3 - "$tmp/fm.trace.json" <<'PY' || fail "the merged trace does not hold what it should"
import json, sys
doc = json.load(open(sys.argv[1]))
ev = [e for e in doc["traceEvents"] if e["ph"] == "X"]
ok = True
def need(cond, what):
    global ok
    if not cond:
        print("trace check: " + what); ok = False
need({e["pid"] for e in ev} == {0, 1}, "want spans of ranks 0 and 1")
for pid in (0, 1):
    mine = [e for e in ev if e["pid"] == pid]
    names = {(e["cat"], e["name"]) for e in mine}
    for want in [("train", "step"), ("train", "data"), ("train", "forward"), ("autograd", "backward"),
                 ("train", "optimizer"), ("train", "evaluate"), ("ddp", "reduce"), ("ddp", "queued"),
                 ("comm", "allreduce")]:
        need(want in names, f"rank {pid}: no {want} span")
    steps = [e for e in mine if e["name"] == "step"]
    need(len(steps) == 6, f"rank {pid}: {len(steps)} step spans, want 6")
    ar = [e for e in mine if e["name"] == "allreduce"]
    need(all({"group", "seq", "bytes"} <= set(e["args"]) for e in ar), f"rank {pid}: allreduce args")
    seqs = [e["args"]["seq"] for e in sorted(ar, key=lambda e: e["ts"])]
    need(seqs == sorted(seqs), f"rank {pid}: allreduce seqs out of order")
    # Overlap: a bucket's reduce began while this rank's backward was still running.
    bw = [(e["ts"], e["ts"] + e["dur"]) for e in mine if e["name"] == "backward"]
    red = [e["ts"] for e in mine if e["cat"] == "ddp" and e["name"] == "reduce"]
    overlapped = sum(1 for t in red if any(a <= t < b for a, b in bw))
    need(overlapped > 0, f"rank {pid}: no reduce began inside a backward span")
    print(f"trace check: rank {pid}: {len(mine)} spans, {len(ar)} all-reduces, "
          f"{overlapped}/{len(red)} bucket reduces began during backward")
rows = {e["args"]["name"] for e in doc["traceEvents"] if e["ph"] == "M" and e["name"] == "thread_name"}
need("main" in rows and "comm world" in rows, f"rows {sorted(rows)}: want 'main' and 'comm world'")
sys.exit(0 if ok else 1)
PY

echo "--- 2. a diverging run"
diverge=("$fm" --epochs 1 --max-steps 12 --log-every 4 --lr 1e3 --schedule constant)
run "$tmp/nan.out" 0 "${diverge[@]}"
expect "$tmp/nan.out" "^fashion_mnist: warning: step [0-9]+: (loss|gradient norm) is -?(nan|inf) \(non-finite\): training has diverged"
expect "$tmp/nan.out" "^summary: non-finite loss or gradient norm in [0-9]+ steps \(first at step [0-9]+\)$"
[ "$(grep -c 'warning: step' "$tmp/nan.out")" -eq 1 ] || fail "want the warning once"
run "$tmp/stop.out" nonzero "${diverge[@]}" --stop-on-nonfinite true
expect "$tmp/stop.out" "fashion_mnist: error: step [0-9]+: (loss|gradient norm) is -?(nan|inf) \(non-finite\); stopping as --stop-on-nonfinite asks"
grep -q "^summary:" "$tmp/stop.out" && fail "--stop-on-nonfinite: a stopped run printed a summary"

echo "--- 2b. a failing 2-rank run with --profile: each rank writes its own trace up to the failure"
run "$tmp/fail.out" nonzero "$mpiexec" -np 2 --oversubscribe --bind-to none "${diverge[@]}" \
  --stop-on-nonfinite true --profile "$tmp/fail.trace.json"
for r in 0 1; do
  expect "$tmp/fail.out" "\\[rank $r\\] profile: the run failed, so this rank's [0-9]+ spans went to $tmp/fail.trace.json.rank$r.json"
  python3 - "$tmp/fail.trace.json.rank$r.json" "$r" <<'PY' || fail "rank $r's failure trace is not a trace of its steps"
import json, sys
ev = [e for e in json.load(open(sys.argv[1]))["traceEvents"] if e["ph"] == "X"]
steps = [e for e in ev if e["name"] == "step"]
print(f"trace check: failed run, rank {sys.argv[2]}: {len(ev)} spans, {len(steps)} steps")
sys.exit(0 if steps and {e["pid"] for e in ev} == {int(sys.argv[2])} else 1)
PY
done
[ -e "$tmp/fail.trace.json" ] && fail "a failed run wrote a merged trace"

echo "--- 3. gpt with --profile"
run "$tmp/gpt.out" 0 "$gpt" --steps 4 --batch 2 --warmup 1 --log-every 2 --sample 0 --profile "$tmp/gpt.trace.json"
expect "$tmp/gpt.out" "^gpt: reading the corpus .* \.\.\.$"
expect "$tmp/gpt.out" "^gpt: \.\.\. done in [0-9]+\.[0-9]+ s$"
expect "$tmp/gpt.out" "^step +4/4  loss [0-9.]+  lr .* tokens/s  mfu [0-9.]+%  elapsed [0-9:]+  eta 0:00$"
expect "$tmp/gpt.out" "^summary: train/loss final [0-9.]+, best [0-9.]+ \(step [24]\)$"
python3 - "$tmp/gpt.trace.json" <<'PY' || fail "the gpt trace does not hold 4 steps with forward and backward"
import json, sys
ev = [e for e in json.load(open(sys.argv[1]))["traceEvents"] if e["ph"] == "X"]
n = lambda name: sum(1 for e in ev if e["name"] == name)
print(f"trace check: gpt: {len(ev)} spans, step {n('step')}, forward {n('forward')}, backward {n('backward')}")
sys.exit(0 if n("step") == 4 and n("forward") == 4 and n("backward") == 4 else 1)
PY

echo "--- 4. a flag that needs another"
run "$tmp/bad.out" 2 "$fm" --tensorboard-all-ranks true
expect "$tmp/bad.out" "needs --tensorboard DIR"

[ "$failures" -eq 0 ] && echo "observe: all checks passed" || echo "observe: $failures check(s) failed"
[ "$failures" -eq 0 ]
