#!/usr/bin/env bash
# fathomrun and Fashion-MNIST under a real SLURM: a private single-node cluster
# (tests/launcher/slurm_cluster.sh) is brought up, and
#   1. srun -n 2 of the program without PMIx fails with DeepComm's message naming --mpi=pmix;
#   2. an uninterrupted `salloc -n 2 fathomrun` run gives the reference final_param_hash=;
#   3. kill -9 of one rank (from outside) inside `salloc -n 2 fathomrun --max-restarts 1`:
#      the job is restarted with srun, resumes from its checkpoint, ends with the same hash;
#   4. `sbatch examples/slurm/fashion_mnist.sbatch`, SIGUSR1 to its batch script (as
#      --signal=B:USR1@60 sends it): the ranks save and exit 0, the script requeues the job,
#      the requeued run resumes from that checkpoint, exits 0 and ends with the same hash;
#   5. srun alone (no fathomrun), SIGUSR1 to the step (as srun --signal=USR1@60 sends it):
#      the step saves and exits 0; a second srun resumes and ends with the same hash.
#
#   launcher_slurm.sh FATHOMRUN FASHION_MNIST SBATCH_SCRIPT
#
# Exit 77 (CTest: Skipped) when SLURM or munge is not installed, or not run as root (slurmd
# must be). Every daemon and job process it started is stopped on any exit (trap).
set -u
fathomrun=$1 trainer=$2 script=$3
skip() {
  echo "SKIP: $*"
  exit 77
}
source "$(dirname "$0")/slurm_cluster.sh"
missing=$(slurm_cluster_missing)
[ -z "$missing" ] || skip "SLURM is not installed (no $missing): apt-get install slurmctld slurmd slurm-client munge"
[ "$(id -u)" -eq 0 ] || skip "the private SLURM's slurmd must run as root"
build=$(cd "$(dirname "$fathomrun")/.." && pwd)
script=$(cd "$(dirname "$script")" && pwd)/$(basename "$script")  # sbatch runs from $work
[ "$build/examples/fashion_mnist" -ef "$trainer" ] ||
  { echo "FAIL: $trainer is not $build/examples/fashion_mnist, which the sbatch script runs"; exit 1; }

# Short paths: munged's and PMIx's sockets live under it (a socket path has at most 107 bytes).
work=$(mktemp -d /tmp/fathom_slurm.XXXXXX) && chmod 755 "$work"  # munged: see slurm_cluster.sh
cleanup() {
  [ -n "${watchdog:-}" ] && kill "$watchdog" 2>/dev/null
  slurm_cluster_down
  rm -rf "$work"
}
trap cleanup EXIT
trap 'echo "FAIL: stopped by a signal"; exit 1' INT TERM HUP
# CTest's TIMEOUT (600 s) kills without a trap; end first, so the daemons are stopped.
(
  trap 'kill "$s" 2>/dev/null; exit 0' TERM
  sleep 540 &
  s=$!
  wait "$s"
  echo "FAIL: the test ran for 540 s"
  kill -TERM $$
) &
watchdog=$!
export FATHOM_COMM_TIMEOUT=60
# A CTest run inside someone's SLURM job: nothing of that job may reach the private cluster's.
for v in $(compgen -e | grep '^SLURM_'); do unset "$v"; done

fail() {
  echo "FAIL: $*"
  for f in "$work"/*.out; do
    [ -e "$f" ] && { echo "----- $(basename "$f") -----"; cat "$f"; }
  done
  echo "----- slurmctld.log (end) -----"
  tail -n 30 "$work/cluster/log/slurmctld.log" 2>/dev/null
  exit 1
}
hash_of() { grep -o 'final_param_hash=[0-9a-f]\{16\}' "$1" | tail -n 1; }
wait_for_checkpoint() {  # wait_for_checkpoint DIR PID: until DIR has an entry, while PID runs
  for _ in $(seq 600); do
    [ -n "$(ls -A "$1" 2>/dev/null)" ] && return 0
    [ -n "$2" ] && ! kill -0 "$2" 2>/dev/null && return 1
    sleep 0.1
  done
  return 1
}
# Processes of this cluster's srun tasks named like the trainer.
ranks() {
  local p name
  name=$(basename "$trainer" | cut -c1-15)
  for p in $(_slurm_cluster_job_pids); do
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$name" ] &&
      { tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null | grep -q '^SLURM_STEP_ID=' && echo "$p"
  done
}
# SLURM's clients retry for long when the controller is gone: every call here is bounded.
job_field() {  # job_field JOBID FIELD: JobState, ExitCode, Restarts, ...
  timeout 10 scontrol show job -o "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p"
}

slurm_cluster_up "$work/cluster" 2 || fail "the private SLURM did not start"
echo "SLURM $(sinfo --version | cut -d' ' -f2) up: $(timeout 10 sinfo -h -o '%P %D %c %T %N')"
# Two epochs of 468 steps (about 7 s each on 2 cores), a checkpoint every 100.
args=(--epochs 2 --save-every 100 --log-every 0)

# 1. srun without PMIx: DeepComm's message, not Open MPI's abort inside MPI_Init.
timeout 120 srun -n 2 --mpi=none "$trainer" --epochs 1 --max-steps 1 >"$work/nopmi.out" 2>&1
rc=$?
[ "$rc" -ne 0 ] || fail "srun --mpi=none: the job succeeded without PMIx"
grep -q "srun's MPI type 'none'.*Run srun --mpi=pmix" "$work/nopmi.out" ||
  fail "srun --mpi=none: no message naming srun --mpi=pmix"
echo "1. srun --mpi=none: exit $rc with the message naming srun --mpi=pmix"

# 2. The reference: salloc, fathomrun (which picks srun --mpi=pmix), never interrupted.
mkdir -p "$work/D0"
timeout 300 salloc -n 2 "$fathomrun" --max-restarts 0 -- "$trainer" "${args[@]}" \
  --checkpoint-dir "$work/D0" >"$work/ref.out" 2>&1
rc=$?
[ "$rc" -eq 0 ] || fail "the uninterrupted run: salloc fathomrun exited with $rc"
h0=$(hash_of "$work/ref.out")
[ -n "$h0" ] || fail "the uninterrupted run printed no final_param_hash="
grep -q '^\[rank 0\] fashion_mnist: 2 rank(s)' "$work/ref.out" || fail "the ranks did not find each other (no '2 rank(s)')"
echo "2. uninterrupted under salloc + fathomrun (srun): $h0"

# 3. kill -9 of a rank; fathomrun restarts the job from its newest checkpoint.
mkdir -p "$work/D1"
timeout 300 salloc -n 2 "$fathomrun" --max-restarts 1 -- "$trainer" "${args[@]}" \
  --checkpoint-dir "$work/D1" >"$work/kill9.out" 2>&1 &
job=$!
wait_for_checkpoint "$work/D1" "$job" || fail "kill -9: the job wrote no checkpoint"
sleep 0.5
victims=($(ranks))
[ "${#victims[@]}" -eq 2 ] || fail "kill -9: expected 2 ranks of the job running, found: ${victims[*]:-none}"
victim=${victims[$((RANDOM % 2))]}
kill -9 "$victim"
wait "$job"
rc=$?
[ "$rc" -eq 0 ] || fail "kill -9: salloc fathomrun exited with $rc"
grep -q '^fathomrun: restarting the job: attempt 1' "$work/kill9.out" || fail "kill -9: the job was not restarted"
grep -q 'resumed from .* at step [1-9]' "$work/kill9.out" || fail "kill -9: the restarted job did not resume"
h1=$(hash_of "$work/kill9.out")
[ "$h1" = "$h0" ] || fail "kill -9: final ${h1:-no hash}, uninterrupted $h0"
echo "3. kill -9 of rank process $victim: restarted, $(grep -o 'resumed from .* at step [0-9]*' "$work/kill9.out"), $h1"

# 4. The example batch script, SIGUSR1 to its shell: save, exit 0, requeue, resume.
mkdir -p "$work/D2"
out2=$work/sbatch.out
job=$(cd "$work" && FATHOM_BUILD=$build FATHOM_CKPT=$work/D2 FATHOM_ARGS="${args[*]}" \
  timeout 30 sbatch --parsable -N 1 -n 2 -c 1 --time=10 -o "$out2" "$script") || fail "sbatch failed"
wait_for_checkpoint "$work/D2" "" || fail "sbatch: the job wrote no checkpoint"
sleep 0.5
timeout 10 scancel --signal=USR1 --batch "$job" || fail "scancel --signal=USR1 --batch $job failed"
state= restarts= deadline=$((SECONDS + 240))
while [ "$SECONDS" -lt "$deadline" ]; do  # the requeued job starts after cred_expire (10 s)
  state=$(job_field "$job" JobState)
  restarts=$(job_field "$job" Restarts)
  case "$state" in COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY) break ;; esac
  sleep 0.1
done
exit_code=$(job_field "$job" ExitCode)
[ "$state" = COMPLETED ] && [ "$exit_code" = 0:0 ] || fail "sbatch: job $job ended $state, exit code $exit_code"
[ "$restarts" = 1 ] || fail "sbatch: job $job was requeued ${restarts:-?} time(s), expected 1"
grep -q '^fathomrun: got SIGUSR1' "$out2" || fail "sbatch: fathomrun did not get SIGUSR1"
grep -q 'stopping at step [0-9]* on signal 10: checkpoint saved' "$out2" || fail "sbatch: no checkpoint on SIGUSR1"
grep -q "^stopped before the time limit; requeueing job $job" "$out2" || fail "sbatch: the script did not requeue"
grep -q "^job $job, requeue 1," "$out2" || fail "sbatch: the requeued run did not start"
stopped=$(grep -o 'stopping at step [0-9]*' "$out2" | head -n 1 | grep -o '[0-9]*$')
grep -q "resumed from .* at step $stopped " "$out2" || fail "sbatch: the requeued run did not resume at step $stopped"
h2=$(hash_of "$out2")
[ "$h2" = "$h0" ] || fail "sbatch: final ${h2:-no hash}, uninterrupted $h0"
echo "4. sbatch + SIGUSR1 to the batch script: saved at step $stopped, requeued, resumed, exit 0, $h2"

# 5. srun alone: SIGUSR1 to the step's tasks, then a second srun resumes.
mkdir -p "$work/D3"
timeout 300 salloc -n 2 srun --mpi=pmix --kill-on-bad-exit=1 "$trainer" "${args[@]}" \
  --checkpoint-dir "$work/D3" >"$work/srun1.out" 2>&1 &
pid=$!
wait_for_checkpoint "$work/D3" "$pid" || fail "srun: the job wrote no checkpoint"
sleep 0.5
job=$(timeout 10 squeue -h -o %i | head -n 1)
timeout 10 scancel --signal=USR1 "$job.0" || fail "scancel --signal=USR1 $job.0 failed"
wait "$pid"
rc=$?
[ "$rc" -eq 0 ] || fail "srun + SIGUSR1: exit $rc, expected 0"
stopped=$(grep -o 'stopping at step [0-9]*' "$work/srun1.out" | head -n 1 | grep -o '[0-9]*$')
[ -n "$stopped" ] || fail "srun + SIGUSR1: no checkpoint on the signal"
timeout 300 salloc -n 2 srun --mpi=pmix --kill-on-bad-exit=1 "$trainer" "${args[@]}" \
  --checkpoint-dir "$work/D3" >"$work/srun2.out" 2>&1
rc=$?
[ "$rc" -eq 0 ] || fail "srun, resubmitted: exit $rc"
grep -q "resumed from .* at step $stopped " "$work/srun2.out" || fail "srun, resubmitted: did not resume at step $stopped"
h3=$(hash_of "$work/srun2.out")
[ "$h3" = "$h0" ] || fail "srun, resubmitted: final ${h3:-no hash}, uninterrupted $h0"
echo "5. srun + SIGUSR1 to the step: saved at step $stopped, exit 0; resubmitted, resumed, $h3"
echo "PASS"
