#!/usr/bin/env bash
# A/B of two bench_allreduce builds (e.g. main's and a branch's): RUNS alternating runs of
# OLD and NEW under `mpirun -np 2`, then one Markdown row per size with the median time of
# each and the median ratio (raw MPI_Allreduce / DeepComm, measured in the same run, so load
# drift between runs cancels); "cost" is ratio old / ratio new - 1. Run it on a quiet machine.
#
#   bash bench/bench_allreduce_ab.sh build-old/bench/bench_allreduce build/bench/bench_allreduce 5 /tmp/ab --min-bytes 4096
set -u
if [ $# -lt 4 ]; then
  echo "usage: $0 OLD NEW RUNS OUTDIR [bench_allreduce flags...]" >&2
  exit 2
fi
old=$1 new=$2 runs=$3 out=$4
shift 4
mkdir -p "$out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
for i in $(seq 1 "$runs"); do
  mpirun -np 2 "$old" "$@" > "$out/old.$i.jsonl" 2> /dev/null || exit 1
  mpirun -np 2 "$new" "$@" > "$out/new.$i.jsonl" 2> /dev/null || exit 1
done
python3 - "$out" <<'PY'
import glob, json, statistics as st, sys
out = sys.argv[1]
def load(which):
    d = {}
    for f in sorted(glob.glob(f"{out}/{which}.*.jsonl")):
        for line in open(f):
            j = json.loads(line)
            d.setdefault(j["bytes"], []).append(j)
    return d
o, n = load("old"), load("new")
print("| size | time old (us) | time new (us) | ratio old | ratio new | cost |")
print("|---|---|---|---|---|---|")
for b in sorted(set(o) & set(n)):
    med = lambda rows, k: st.median(j[k] for j in rows)
    ro, rn = med(o[b], "ratio"), med(n[b], "ratio")
    wrong = sum(j["wrong"] for j in o[b] + n[b])
    size = f"{b // 1024} KB" if b < 1 << 20 else f"{b >> 20} MB"
    print(f"| {size} | {1e3 * med(o[b], 'time_ms'):.1f} | {1e3 * med(n[b], 'time_ms'):.1f} | "
          f"{ro:.3f} | {rn:.3f} | {100 * (ro / rn - 1):+.1f}% |" + (f" {wrong} WRONG" if wrong else ""))
PY
