#!/usr/bin/env bash
# Megatron-style resume of the examples: train N steps saving every N/2 (run A); give a new run
# only A's checkpoint at N/2 (run B, which resumes from it). B's loss lines after N/2, its final
# parameter hash and its --save-model file must equal A's, bitwise. Then the N/2 checkpoint is
# resumed on another number of ranks (2 -> 1, 2 -> 4), which must train to the end.
# Usage: resume.sh <fashion_mnist> <gpt> <mpiexec>
set -euo pipefail
fm=$1 gpt=$2 mpiexec=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
mpi() { local np=$1; shift; "$mpiexec" -np "$np" --oversubscribe --bind-to none "$@"; }
# The lines that must match: losses, lr, accuracy, bytes, the hash; not the timings (speeds,
# MFU, elapsed, ETA) or the summary (of the steps this process ran).
numbers() { grep -E 'loss|final_param_hash' "$1" | grep -v '^summary:' |
  sed -E 's/ +[0-9]+ (samples|tokens)\/s.*$//; s/samples_per_s=[0-9]+ //'; }
fail() { echo "FAIL: $*"; exit 1; }

check_pair() {  # <name> <full log> <resumed log> <lines after the resume point>
  local name=$1 a=$2 b=$3 n=$4
  grep -q "resumed from .*step_000000" "$b" || { cat "$b"; fail "$name: run B did not resume"; }
  diff <(numbers "$a" | tail -n "$n") <(numbers "$b") > "$tmp/diff" ||
    { cat "$tmp/diff"; fail "$name: the resumed run differs from the uninterrupted one"; }
  [ "$(numbers "$b" | wc -l)" -eq "$n" ] || fail "$name: expected $n lines after the resume"
  echo "ok: $name ($(grep final_param_hash "$b"))"
}

fm_case() {  # <name> <extra flags...>: 2 ranks, 60 steps, checkpoints at 30 and 60
  local name=$1; shift
  local args=(--epochs 1 --max-steps 60 --log-every 10 --save-every 30 "$@")
  mpi 2 "$fm" "${args[@]}" --checkpoint-dir "$tmp/$name.a" --save-model "$tmp/$name.a.st" > "$tmp/$name.a.log"
  mkdir -p "$tmp/$name.b" && cp -r "$tmp/$name.a/step_00000030" "$tmp/$name.b/"
  mpi 2 "$fm" "${args[@]}" --checkpoint-dir "$tmp/$name.b" --save-model "$tmp/$name.b.st" > "$tmp/$name.b.log"
  check_pair "fashion_mnist $name" "$tmp/$name.a.log" "$tmp/$name.b.log" 5
  cmp "$tmp/$name.a.st" "$tmp/$name.b.st" || fail "$name: the --save-model files differ"
}
fm_case f32
fm_case 24 --compress 24
fm_case bf16-24bf16 --dtype bf16 --compress 24-bf16
fm_case f16 --dtype f16

# Another world size: 2 -> 1 and 2 -> 4 resume from the 2-rank checkpoint and finish.
for np in 1 4; do
  mkdir -p "$tmp/re$np" && cp -r "$tmp/24.a/step_00000030" "$tmp/re$np/"
  mpi $np "$fm" --epochs 1 --max-steps 60 --log-every 10 --save-every 30 --compress 24 \
    --checkpoint-dir "$tmp/re$np" > "$tmp/re$np.log"
  grep -q "saved by 2 rank(s)" "$tmp/re$np.log" || { cat "$tmp/re$np.log"; fail "2 -> $np did not resume"; }
  grep -qE "^epoch=1 loss=[0-9.]+ .*test_acc=0\.[2-9]" "$tmp/re$np.log" || { cat "$tmp/re$np.log"; fail "2 -> $np did not train on"; }
  [ -d "$tmp/re$np/step_00000060" ] || fail "2 -> $np saved no final checkpoint"
  echo "ok: fashion_mnist 2 -> $np ranks"
done

# gpt (one process, dropout and random batches): 8 steps, checkpoints at 4 and 8.
gargs=(--steps 8 --batch 4 --warmup 2 --log-every 1 --sample 0 --dropout 0.1 --save-every 4)
"$gpt" "${gargs[@]}" --checkpoint-dir "$tmp/g.a" > "$tmp/g.a.log"
mkdir -p "$tmp/g.b" && cp -r "$tmp/g.a/step_00000004" "$tmp/g.b/"
"$gpt" "${gargs[@]}" --checkpoint-dir "$tmp/g.b" > "$tmp/g.b.log"
check_pair "gpt" "$tmp/g.a.log" "$tmp/g.b.log" 5

# gpt in 3D (dp 2 x tp 2 x pp 2, ZB-H1, 2 micro-batches): each rank saves its own stage shard,
# optimizer state and DDP state; the resumed run ends bitwise where the uninterrupted one does.
g3=(--steps 8 --batch 8 --warmup 2 --log-every 1 --sample 0 --save-every 4 --dp 2 --tp 2 --pp 2
    --micro-batches 2 --schedule zb)
mpi 8 "$gpt" "${g3[@]}" --checkpoint-dir "$tmp/g3.a" > "$tmp/g3.a.log"
mkdir -p "$tmp/g3.b" && cp -r "$tmp/g3.a/step_00000004" "$tmp/g3.b/"
mpi 8 "$gpt" "${g3[@]}" --checkpoint-dir "$tmp/g3.b" > "$tmp/g3.b.log"
check_pair "gpt 3d" "$tmp/g3.a.log" "$tmp/g3.b.log" 5
# Another mesh on as many ranks cannot take those shards: an error naming the mesh.
mkdir -p "$tmp/g3.c" && cp -r "$tmp/g3.a/step_00000004" "$tmp/g3.c/"
if mpi 8 "$gpt" --steps 8 --batch 8 --sample 0 --dp 4 --tp 2 --micro-batches 2 --checkpoint-dir "$tmp/g3.c" > "$tmp/g3.c.log" 2>&1; then
  fail "gpt 3d: a resume on another mesh did not fail"
fi
grep -q "the checkpoint's stage does not fit mesh" "$tmp/g3.c.log" || { cat "$tmp/g3.c.log"; fail "gpt 3d: no clear error for another mesh"; }
echo "ok: gpt 3d on another mesh is refused"

# A flipped byte in the newest checkpoint: the resume says why it skips it, falls back to the
# one before, and still ends bitwise where run A ended.
cp -r "$tmp/f32.a" "$tmp/fb"
# (the middle of the file: tensor bytes, not the alignment padding between them)
printf "garbage" | dd of="$tmp/fb/step_00000060/rank_1.bin" bs=1 seek=$(( $(stat -c %s "$tmp/fb/step_00000060/rank_1.bin") / 2 )) conv=notrunc status=none
mpi 2 "$fm" --epochs 1 --max-steps 60 --log-every 10 --save-every 30 --checkpoint-dir "$tmp/fb" \
  > "$tmp/fb.log" 2>&1 || { cat "$tmp/fb.log"; fail "the fallback run failed"; }
grep -q "step_00000060.*rank_1.bin" "$tmp/fb.log" || { cat "$tmp/fb.log"; fail "the skip does not name the corrupt file"; }
grep -q "resumed from .*step_00000030" "$tmp/fb.log" || { cat "$tmp/fb.log"; fail "no fallback to step 30"; }
[ "$(grep final_param_hash "$tmp/fb.log")" = "$(grep final_param_hash "$tmp/f32.a.log")" ] || fail "the fallback run ends elsewhere"
echo "ok: corrupt newest checkpoint skipped, resumed from the previous one"

# Every checkpoint corrupt: a clear error naming the file, never a silent fresh start over them.
cp -r "$tmp/f32.a" "$tmp/bad"
rm "$tmp/bad/step_00000030/rank_0.bin"
truncate -s 1000 "$tmp/bad/step_00000060/rank_0.bin"
if mpi 2 "$fm" --epochs 1 --max-steps 60 --checkpoint-dir "$tmp/bad" > "$tmp/bad.log" 2>&1; then
  fail "a directory of corrupt checkpoints was accepted"
fi
grep -q "rank_0.bin" "$tmp/bad.log" || { cat "$tmp/bad.log"; fail "the error does not name the missing file"; }
echo "PASS"
