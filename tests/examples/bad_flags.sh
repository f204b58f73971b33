#!/usr/bin/env bash
# Hostile command lines and data paths for the examples: each is refused with a message naming
# the flag or the file, and a plain exit code: 2 for a bad flag (the usage convention of
# core/flags.h), 1 for an error at run time. Never an abort (134) or a crash.
# Usage: bad_flags.sh <fashion_mnist binary> <gpt binary>
set -uo pipefail
fm=$1 gpt=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
failures=0

# expect <exit code> <text the error must contain> <command...>
expect() {
  local want=$1 text=$2
  shift 2
  "$@" > "$tmp/out" 2> "$tmp/err"
  local rc=$?
  if [ "$rc" != "$want" ] || ! grep -qF -- "$text" "$tmp/err"; then
    echo "FAIL: $* exited $rc (want $want), stderr does not say '$text' or the code differs:"
    head -5 "$tmp/err"
    failures=$((failures + 1))
  else
    echo "ok: $(basename "$1") ${*:2} -> $rc: $(head -1 "$tmp/err")"
  fi
}

# Flags: negative, zero where it makes no sense, non-finite, not a number.
expect 2 "--batch must be a positive integer, got -1" "$fm" --batch -1
expect 2 "--batch must be a positive integer" "$fm" --batch 0
expect 2 "--batch expects an integer, got 'abc'" "$fm" --batch abc
expect 2 "--epochs must be zero or positive, got -1" "$fm" --epochs -1
expect 2 "--lr must be a finite number, got inf" "$fm" --lr inf
expect 2 "--lr must be a finite number, got nan" "$fm" --lr nan
expect 2 "--lr must be positive, got -0.1" "$fm" --lr -0.1
expect 2 "--weight-decay must be zero or positive, got -1" "$fm" --weight-decay -1
expect 2 "--log-every must be zero or positive" "$fm" --log-every -3
expect 2 "--steps must be a positive integer, got -1" "$gpt" --steps -1
expect 2 "--steps must be a positive integer, got 0" "$gpt" --steps 0
expect 2 "--warmup must be zero or positive, got -5" "$gpt" --warmup -5
expect 2 "--clip must be zero or positive, got -1" "$gpt" --clip -1
expect 2 "--lr must be a finite number, got inf" "$gpt" --lr inf
expect 2 "--lr must be a finite number, got nan" "$gpt" --lr=nan
expect 2 "--batch must be zero or positive" "$gpt" --batch -4
expect 2 "--dropout must be in [0, 1), got 1" "$gpt" --dropout 1
expect 2 "--sample must be zero or positive" "$gpt" --sample -1
# 3D flags: the mesh must be the number of ranks, a known schedule, a batch that divides.
expect 2 "--dp 2 x --tp 1 x --pp 1 = 2 ranks, but the run has 1" "$gpt" --dp 2 --steps 1
expect 2 "--tp must be a positive integer, got 0" "$gpt" --tp 0
expect 2 "--schedule: " "$gpt" --schedule wavy
expect 2 "must be a multiple of --dp x --micro-batches = 1 x 3" "$gpt" --micro-batches 3 --batch 4 --steps 1 --sample 0
expect 1 "GPT3D: virtual_stages 2 with pp = 1" "$gpt" --virtual-stages 2 --schedule interleaved --steps 1 --sample 0

# Data paths: a directory, an empty file, a file shorter than one window of T + 1 = 65 bytes.
expect 1 "gpt: error: cannot read '/tmp': it is a directory" "$gpt" --data /tmp --steps 1
: > "$tmp/empty.txt"
expect 1 "'$tmp/empty.txt' is empty" "$gpt" --data "$tmp/empty.txt" --steps 1
printf 'too short' > "$tmp/short.txt"
expect 1 "'$tmp/short.txt' has 9 bytes, too few for windows of 65" "$gpt" --data "$tmp/short.txt" --steps 1 --sample 0

# Fashion-MNIST from a directory without the files, and with a test split of zero images.
mkdir -p "$tmp/fm"
expect 1 "fashion_mnist: error: cannot open '$tmp/fm/train-images-idx3-ubyte.gz'" "$fm" --data "$tmp/fm" --epochs 0
python3 - "$tmp/fm" <<'PY'
import gzip, struct, sys
d = sys.argv[1]
def idx(path, dims, payload):
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">I", 0x800 | len(dims)) + b"".join(struct.pack(">I", x) for x in dims) + payload)
idx(f"{d}/train-images-idx3-ubyte.gz", [2, 28, 28], bytes(2 * 784))
idx(f"{d}/train-labels-idx1-ubyte.gz", [2], bytes([3, 7]))
idx(f"{d}/t10k-images-idx3-ubyte.gz", [0, 28, 28], b"")
idx(f"{d}/t10k-labels-idx1-ubyte.gz", [0], b"")
PY
expect 1 "'$tmp/fm/t10k-images-idx3-ubyte.gz' holds no images" "$fm" --data "$tmp/fm" --epochs 0
# A truncated gzip: zlib's reason, readable (it used to be read after gzclose freed it).
head -c 200 /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz > "$tmp/fm/t10k-images-idx3-ubyte.gz"
expect 1 "t10k-images-idx3-ubyte.gz: unexpected end of file)" "$fm" --data "$tmp/fm" --epochs 0

if [ "$failures" -ne 0 ]; then
  echo "FAIL: $failures case(s)"
  exit 1
fi
echo "PASS: every bad flag and data path is refused by name, with exit 2 or 1, never an abort"
