#!/usr/bin/env bash
# fathomrun end to end, one scenario per CTest test:
#   launcher_job.sh SCENARIO FATHOMRUN FAKE_TRAINER
# Every fathomrun run is bounded by `timeout`, so a launcher that hangs fails the test (exit
# 124) instead of stalling CTest. Checks print what they expected and the whole output.
set -u
scenario=$1 fathomrun=$2 trainer=$3
work=$(mktemp -d "${TMPDIR:-/tmp}/fathomrun_test.XXXXXX")
trap 'rm -rf "$work"' EXIT
out=$work/out.txt
failed=0
timeout=$(command -v timeout)  # absolute: some checks run with PATH=/nonexistent

fail() {
  echo "FAIL ($scenario): $*"
  failed=1
}
expect() {  # expect REGEX: some line of the output matches
  grep -Eq -- "$1" "$out" || fail "no line matches: $1"
}
expect_not() {
  grep -Eq -- "$1" "$out" && fail "a line matches what must not appear: $1"
}
expect_count() {  # expect_count N REGEX
  local n
  n=$(grep -Ec -- "$2" "$out")
  [ "$n" -eq "$1" ] || fail "$n line(s) match '$2', expected $1"
}
run_env=()  # NAME=value words for fathomrun's environment (PATH=... must not reach grep)
run() {  # run SECONDS ARGS...: fathomrun ARGS, output to $out, status to $rc
  "$timeout" "$1" env "${run_env[@]}" "$fathomrun" "${@:2}" >"$out" 2>&1
  rc=$?
}
finish() {
  if [ "$failed" -ne 0 ]; then
    echo "----- output -----"
    cat "$out"
    exit 1
  fi
  echo "PASS ($scenario)"
  exit 0
}
# The job's processes, from the pid files the trainer writes: all must be gone.
no_survivors() {
  local f pid
  for f in "$work"/pid.*; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    # A rank killed a moment ago may still be exiting (or not yet reaped) on a loaded machine:
    # it must be gone within 5 s, not within the caller's 0.5 s.
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      fail "process $pid ($(basename "$f")) survived"
      kill -9 "$pid" 2>/dev/null
    fi
  done
}
# Starts fathomrun in the background (not under `timeout`, which would take the signals
# meant for fathomrun) and waits up to 30 s for REGEX in its output.
start_bg() {  # start_bg REGEX ARGS...
  local want=$1
  shift
  "$fathomrun" "$@" >"$out" 2>&1 &
  bg=$!
  for _ in $(seq 300); do
    grep -Eq -- "$want" "$out" && return 0
    sleep 0.1
  done
  fail "never saw '$want'"
  return 1
}
# Waits up to SECONDS for the background fathomrun; sets $rc (124 and a failure if it is
# still running then, after killing it and what it started).
wait_bg() {
  for _ in $(seq $(( $1 * 10 ))); do
    kill -0 "$bg" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$bg" 2>/dev/null; then
    fail "fathomrun did not end within $1 s"
    pkill -KILL -P "$bg"
    kill -KILL "$bg"
  fi
  wait "$bg"
  rc=$?
}

case $scenario in
  restart)
    # Rank 1 kills itself with SIGKILL at step 5 of the first attempt; the job restarts,
    # resumes from the counter at step 5 and finishes all 12 steps.
    run 50 -n 2 --max-restarts 3 --restart-delay 0.2 -- "$trainer" --dir "$work" --steps 12 --kill-at 5
    [ "$rc" -eq 0 ] || fail "fathomrun exited with $rc, expected 0"
    expect '^\[rank 1\] killing myself with SIGKILL at step 5$'
    expect '^fathomrun: attempt 0 failed: rank 1 killed by signal 9 \(SIGKILL\)'
    expect '^fathomrun: restarting the job: attempt 1 of at most 4 \(FATHOM_RESTART_COUNT=1\)'
    expect_count 1 '^\[rank 0\] restart_count=0 launcher=fathomrun$'
    expect_count 1 '^\[rank 1\] restart_count=0 launcher=fathomrun$'
    expect_count 1 '^\[rank 0\] restart_count=1 launcher=fathomrun$'
    expect_count 1 '^\[rank 1\] restart_count=1 launcher=fathomrun$'
    expect '^\[rank 1\] launch: openmpi: rank 1 of 2 \(local rank 1 of 2\), under fathomrun, restart 1$'
    expect_count 1 '^\[rank 0\] resumed at step 0$'
    expect_count 1 '^\[rank 0\] resumed at step 5$'
    expect_count 1 '^\[rank 0\] done steps=12$'
    for s in $(seq 0 11); do expect "^\[rank 0\] step $s$"; done
    expect '^fathomrun: the job succeeded after 1 restart\(s\) \(2 attempt\(s\)'
    expect '^  attempt 1: succeeded after'
    expect_not '\[rank [0-9]+\] \[rank [0-9]+\]'   # never prefixed twice
    [ "$(cat "$work/step")" = 12 ] || fail "the counter file says $(cat "$work/step"), not 12"
    ;;
  give_up)
    # Rank 1 exits with code 3 on every attempt: 3 attempts, a summary, exit status 1.
    run 50 -n 2 --max-restarts 2 --restart-delay 0.2 -- "$trainer" --dir "$work" --steps 20 --fail-at 2 --every-attempt
    [ "$rc" -eq 1 ] || fail "fathomrun exited with $rc, expected 1"
    expect '^fathomrun: giving up: the job failed and all 2 restart\(s\) are used \(3 attempt\(s\), [0-9.]+ s\):$'
    for k in 0 1 2; do expect "^  attempt $k: rank 1 exited with code 3 \(mpirun exited with code 3\) after [0-9.]+ s$"; done
    expect_count 3 '^\[rank 1\] exiting with code 3 at step 2$'
    expect_not '^fathomrun: restarting the job: attempt 3'
    no_survivors
    ;;
  sigterm)
    # SIGTERM to fathomrun stops the job (no restart) quickly; nothing of it survives.
    start_bg '^\[rank 0\] step 2$' -n 2 --max-restarts 3 -- "$trainer" --dir "$work" --steps 100000 --step-ms 20
    t0=$(date +%s)
    kill -TERM "$bg"
    wait_bg 30
    elapsed=$(( $(date +%s) - t0 ))
    [ "$rc" -eq 143 ] || fail "fathomrun exited with $rc, expected 143 (128 + SIGTERM)"
    [ "$elapsed" -le 15 ] || fail "fathomrun took $elapsed s to stop"
    expect '^fathomrun: got SIGTERM: stopping the job'
    expect '^fathomrun: stopped by SIGTERM \(1 attempt\(s\)'
    expect_not 'restarting the job'
    sleep 0.5
    no_survivors
    ;;
  sigusr1)
    # SIGUSR1 (SLURM's warning before the time limit) reaches both ranks through mpirun; they
    # agree on one step (comm::any_rank_stop_requested), save and exit 0; no restart.
    start_bg '^\[rank 0\] step 3$' -n 2 --max-restarts 3 -- "$trainer" --dir "$work" --steps 100000 --step-ms 20 --stop-aware
    kill -USR1 "$bg"
    wait_bg 30
    [ "$rc" -eq 0 ] || fail "fathomrun exited with $rc, expected 0 (the job's status)"
    expect '^fathomrun: got SIGUSR1: forwarding it to the job, which will not be restarted$'
    s0=$(sed -n 's/^\[rank 0\] stopped at step \([0-9]*\) by signal 10$/\1/p' "$out")
    s1=$(sed -n 's/^\[rank 1\] stopped at step \([0-9]*\) by signal 10$/\1/p' "$out")
    [ -n "$s0" ] && [ "$s0" = "$s1" ] || fail "the ranks stopped at steps '$s0' and '$s1', not one step"
    [ -n "$s0" ] && [ "$(cat "$work/step")" = "$s0" ] || fail "the counter says $(cat "$work/step"), not $s0"
    expect_not 'restarting the job'
    no_survivors
    ;;
  hang)
    # Rank 1 goes silent at step 3 of the first attempt (DeepComm's watchdog would take 60 s);
    # --hang-timeout 5 stops the job and restarts it, and it finishes.
    run_env=(FATHOM_COMM_TIMEOUT=60)
    run 50 -n 2 --max-restarts 1 --hang-timeout 5 --restart-delay 0.2 -- \
      "$trainer" --dir "$work" --steps 8 --hang-at 3
    [ "$rc" -eq 0 ] || fail "fathomrun exited with $rc, expected 0"
    expect '^fathomrun: no output from the job for [0-9.]+ s \(--hang-timeout 5.0 s\): taking it as hung, stopping it$'
    expect '^  attempt 0: hung: no output for 5.0 s, stopped after'
    expect_count 1 '^\[rank 0\] resumed at step 3$'
    expect_count 1 '^\[rank 0\] done steps=8$'
    no_survivors
    ;;
  local)
    # -n 1 without mpirun: fathomrun runs the program itself, and restarts it.
    run 50 --max-restarts 1 --restart-delay 0.2 -- "$trainer" --dir "$work" --steps 6 --kill-at 2 --rank 0
    [ "$rc" -eq 0 ] || fail "fathomrun exited with $rc, expected 0"
    expect '^fathomrun: attempt 0 failed: rank 0 killed by signal 9 \(SIGKILL\); restarting'
    expect '^\[rank 0\] launch: single: one process, under fathomrun, restart 1$'
    expect_count 1 '^\[rank 0\] resumed at step 2$'
    expect_count 1 '^\[rank 0\] done steps=6$'
    ;;
  cli)
    run 10 --help
    [ "$rc" -eq 0 ] || fail "--help exited with $rc"
    for w in '^Usage: fathomrun \[options\] \[--\] PROGRAM \[ARGS...\]$' '--max-restarts K' '--hang-timeout S' \
             '^Environment given to every rank:$' 'FATHOM_RESTART_COUNT' '^Examples:$' '^Exit status:'; do
      expect "$w"
    done
    check_bad() {  # check_bad STATUS REGEX ARGS...
      local want=$1 re=$2
      shift 2
      run 10 "$@"
      [ "$rc" -eq "$want" ] || fail "fathomrun $* exited with $rc, expected $want"
      expect "$re"
    }
    check_bad 2 "^fathomrun: unknown option '--bogus' \(see fathomrun --help\)$" --bogus /bin/true
    check_bad 2 '^fathomrun: -n 0 must be at least 1' -n 0 /bin/true
    check_bad 2 "^fathomrun: -n 'x' is not a whole number" -n x /bin/true
    check_bad 2 "^fathomrun: --max-restarts '-1' is not a whole number" --max-restarts -1 /bin/true
    check_bad 2 '^fathomrun: --max-restarts needs a value' --max-restarts
    check_bad 2 "^fathomrun: --hang-timeout 'soon' is not a number of seconds" --hang-timeout soon /bin/true
    check_bad 2 "^fathomrun: --launcher 'ssh' must be auto, mpirun, srun or local" --launcher ssh /bin/true
    check_bad 2 '^fathomrun: no program to run' -n 2
    check_bad 2 '^fathomrun: --launcher local runs one process, but -n is 2' --launcher local -n 2 /bin/true
    check_bad 127 "^fathomrun: cannot find the program 'no-such-program-xyz' on the PATH$" -n 2 no-such-program-xyz
    check_bad 127 "^fathomrun: --mpirun './nope' is not an executable file$" --mpirun ./nope -n 2 /bin/true
    # No mpirun on the PATH: said plainly, with what to do.
    run_env=(PATH=/nonexistent)
    check_bad 127 '^fathomrun: cannot find mpirun on the PATH, and -n 2 needs an MPI launcher' -n 2 /bin/true
    # Under SLURM the ranks are started by srun, with -n from SLURM_NTASKS, and PMIx (Open
    # MPI's only way to start under srun) unless srun's own SLURM_MPI_TYPE says otherwise.
    run_env=(SLURM_JOB_ID=7 SLURM_NTASKS=4)
    run 10 --dry-run --srun /bin/true -- /bin/echo hi
    [ "$rc" -eq 0 ] || fail "--dry-run exited with $rc"
    expect '^FATHOM_LAUNCHER=fathomrun FATHOM_RESTART_COUNT=0 /bin/true -n 4 --label --kill-on-bad-exit=1 --mpi=pmix /bin/echo hi$'
    run_env=(SLURM_JOB_ID=7 SLURM_NTASKS=4 SLURM_MPI_TYPE=pmi2)
    run 10 --dry-run --srun /bin/true -- /bin/echo hi
    expect '^FATHOM_LAUNCHER=fathomrun FATHOM_RESTART_COUNT=0 /bin/true -n 4 --label --kill-on-bad-exit=1 /bin/echo hi$'
    run_env=(SLURM_JOB_ID=7 PATH=/nonexistent)
    check_bad 127 '^fathomrun: SLURM_JOB_ID is set \(a SLURM job\), but srun is not on the PATH' -n 2 /bin/true
    run_env=()
    # A program that succeeds at once: exit 0, its output prefixed.
    run 10 -- /bin/echo hello
    [ "$rc" -eq 0 ] || fail "fathomrun /bin/echo exited with $rc"
    expect '^\[rank 0\] hello$'
    ;;
  *)
    echo "unknown scenario $scenario"
    exit 2
    ;;
esac
finish
