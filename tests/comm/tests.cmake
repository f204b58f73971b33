# DeepComm's tests run under MPI (included from tests/CMakeLists.txt, which made comm_tests).
#  - comm_tests with 2 and 4 ranks (4 oversubscribes the cores), with 1 rank without mpirun
#    (MPI singleton), and with 2 ranks limited to MPI_THREAD_SERIALIZED (the fallback path).
#  - Small dedicated programs whose job must END with a clear message: a rank that skips a
#    collective (the watchdog) and mismatched calls in debug mode. A shell wrapper prints
#    mpirun's exit status so the expected output can require a failing job; TIMEOUT is the
#    backstop that turns a hang into a failed test.
set(_comm_env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
    FATHOM_COMM_TIMEOUT=60)
# Every rank gets its own NCCL host id, so the [cuda] cases run with several ranks on one GPU
# (without a GPU they only report SKIPPED and the wrapper changes nothing).
set(_mpirun ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG})
set(_hostid ${PROJECT_SOURCE_DIR}/scripts/nccl_hostid.sh)

# The NCCL ([cuda]) cases are tests of their own, Skipped without a GPU (tests/main.cpp).
foreach(np 2 4)
  add_test(NAME comm_tests_np${np}
    COMMAND ${_mpirun} ${np} ${MPIEXEC_PREFLAGS} --oversubscribe ${_hostid} $<TARGET_FILE:comm_tests> "~[cuda]" ${MPIEXEC_POSTFLAGS})
  set_tests_properties(comm_tests_np${np} PROPERTIES ENVIRONMENT "${_comm_env}" TIMEOUT 120 LABELS comm)
  add_test(NAME comm_tests_cuda_np${np}
    COMMAND ${_mpirun} ${np} ${MPIEXEC_PREFLAGS} --oversubscribe ${_hostid} $<TARGET_FILE:comm_tests> "[cuda]" ${MPIEXEC_POSTFLAGS})
  set_tests_properties(comm_tests_cuda_np${np} PROPERTIES ENVIRONMENT "${_comm_env};FATHOM_TEST_NEEDS_CUDA=1"
    TIMEOUT 120 SKIP_RETURN_CODE ${FATHOM_TEST_SKIP_CODE} LABELS "comm;cuda")
endforeach()
add_test(NAME comm_tests_np1 COMMAND comm_tests "~[cuda]")
set_tests_properties(comm_tests_np1 PROPERTIES ENVIRONMENT "${_comm_env}" TIMEOUT 60 LABELS comm)
add_test(NAME comm_tests_np2_serialized
  COMMAND ${_mpirun} 2 ${MPIEXEC_PREFLAGS} --oversubscribe ${_hostid} $<TARGET_FILE:comm_tests> "~[cuda]" ${MPIEXEC_POSTFLAGS})
set_tests_properties(comm_tests_np2_serialized PROPERTIES
  ENVIRONMENT "${_comm_env};FATHOM_COMM_MPI_THREADS=serialized" TIMEOUT 120 LABELS comm)

# The agreement check over MPI_Allreduce, as for a group that spans nodes (one node uses
# shared memory unless FATHOM_COMM_SHM_CHECK=0).
add_test(NAME comm_tests_np2_mpi_check
  COMMAND ${_mpirun} 2 ${MPIEXEC_PREFLAGS} --oversubscribe ${_hostid} $<TARGET_FILE:comm_tests> "~[cuda]" ${MPIEXEC_POSTFLAGS})
set_tests_properties(comm_tests_np2_mpi_check PROPERTIES
  ENVIRONMENT "${_comm_env};FATHOM_COMM_SHM_CHECK=0" TIMEOUT 120 LABELS comm)

foreach(prog watchdog_skip debug_mismatch mismatch rank_fails)
  add_executable(comm_${prog} ${CMAKE_CURRENT_LIST_DIR}/programs/${prog}.cpp)
  target_link_libraries(comm_${prog} PRIVATE fathom)
endforeach()

# Runs "mpirun -n NP PROGRAM ARGS..." and then prints "mpirun exit status N".
function(comm_job_test name np env regex)
  string(JOIN " " cmd ${_mpirun} ${np} ${MPIEXEC_PREFLAGS} --oversubscribe ${ARGN} ${MPIEXEC_POSTFLAGS})
  add_test(NAME ${name} COMMAND sh -c "${cmd} 2>&1; echo \"mpirun exit status $?\"")
  set_tests_properties(${name} PROPERTIES ENVIRONMENT "${_comm_env};${env}" TIMEOUT 40
    PASS_REGULAR_EXPRESSION "${regex}" LABELS comm)
endfunction()

set(_skip "DeepComm watchdog: allreduce\\(sum\\) \\[16\\] f32 cpu \\(seq 2\\) on group 'world' \\(rank [0-9] of [24]\\) did not finish within 2 s")
comm_job_test(comm_watchdog_skip_np2 2 "FATHOM_COMM_TIMEOUT=2"
  "${_skip}.*Ranks that did not arrive: \\[1\\].*rank 1: has not called it.*mpirun exit status [1-9]"
  $<TARGET_FILE:comm_watchdog_skip> idle)
comm_job_test(comm_watchdog_skip_np4 4 "FATHOM_COMM_TIMEOUT=2"
  "${_skip}.*Ranks that did not arrive: \\[1\\].*mpirun exit status [1-9]"
  $<TARGET_FILE:comm_watchdog_skip> idle)
# Calls out of order: the agreement check fails both ranks at once (no timeout needed); the
# uncaught error reaches comm's terminate handler, which prints it with the rank.
comm_job_test(comm_watchdog_out_of_order 2 "FATHOM_COMM_TIMEOUT=60"
  "\\[rank [01]\\] uncaught exception: DeepComm check failed on group 'world' \\(rank [01] of 2\\): the ranks called different collectives as collective seq 2:.*rank 0: allreduce\\(sum\\) \\[16\\] f32 cpu \\(seq 2\\).*rank 1: barrier \\(seq 2\\).*mpirun exit status [1-9]"
  $<TARGET_FILE:comm_watchdog_skip> other)
comm_job_test(comm_debug_mismatch 2 "FATHOM_COMM_DEBUG=1;FATHOM_COMM_TIMEOUT=10"
  "ranks called different collectives as collective seq 1:.*rank 0: allreduce\\(sum\\) \\[4, 4\\] f32 cpu.*rank 1: allreduce\\(sum\\) \\[4, 5\\] f32 cpu.*send/recv mismatch: rank 0 called send\\(to 1, tag 0\\) \\[3\\] f32 cpu.*rank 1 called recv\\(from 0, tag 0\\) \\[5\\] i32 cpu.*mpirun exit status 3"
  $<TARGET_FILE:comm_debug_mismatch>)

# A malformed comm-thread priority is an error at init, before any thread starts.
add_test(NAME comm_bad_thread_nice
  COMMAND sh -c "$<TARGET_FILE:comm_watchdog_skip> 2>&1; echo \"exit status $?\"")
set_tests_properties(comm_bad_thread_nice PROPERTIES
  ENVIRONMENT "${_comm_env};FATHOM_COMM_THREAD_NICE=-30" TIMEOUT 30 LABELS comm
  PASS_REGULAR_EXPRESSION "FATHOM_COMM_THREAD_NICE='-30' must be an integer from -20 to 19, or 'off'.*exit status [1-9]")

# A launcher that promises more processes than MPI sees is an error, not three jobs that each
# train alone (run without mpirun, so MPI starts a singleton).
add_test(NAME comm_bootstrap_mismatch
  COMMAND sh -c "$<TARGET_FILE:comm_watchdog_skip> 2>&1; echo \"exit status $?\"")
set_tests_properties(comm_bootstrap_mismatch PROPERTIES
  ENVIRONMENT "${_comm_env};RANK=0;WORLD_SIZE=3;LOCAL_RANK=0" TIMEOUT 30 LABELS comm
  PASS_REGULAR_EXPRESSION "WORLD_SIZE=3 \\(launcher: torchrun\\) but MPI sees 1 process.*exit status [1-9]")

# Calls that disagree without FATHOM_COMM_DEBUG (the always-on agreement check and send
# header): both ranks get the message, no tensor is written, the group stays usable.
comm_job_test(comm_mismatch_allreduce_dtype 2 ""
  "rank 0: allreduce\\(sum\\) \\[8\\] f32 cpu \\(seq 1\\)\n  rank 1: allreduce\\(sum\\) \\[8\\] bf16 cpu \\(seq 1\\).*ALL-RANKS-CAUGHT 2.*mpirun exit status 3"
  $<TARGET_FILE:comm_mismatch> allreduce_dtype)
comm_job_test(comm_mismatch_allreduce_count 2 ""
  "rank 0: allreduce\\(sum\\) \\[8\\] f32 cpu \\(seq 1\\)\n  rank 1: allreduce\\(sum\\) \\[9\\] f32 cpu \\(seq 1\\).*ALL-RANKS-CAUGHT 2.*mpirun exit status 3"
  $<TARGET_FILE:comm_mismatch> allreduce_count)
comm_job_test(comm_mismatch_broadcast_root 2 ""
  "rank 0: broadcast\\(root 0\\) \\[8\\] f32 cpu \\(seq 1\\)\n  rank 1: broadcast\\(root 1\\) \\[8\\] f32 cpu \\(seq 1\\).*ALL-RANKS-CAUGHT 2.*mpirun exit status 3"
  $<TARGET_FILE:comm_mismatch> broadcast_root)
comm_job_test(comm_mismatch_broadcast_count 2 ""
  "rank 0: broadcast\\(root 0\\) \\[8\\] f32 cpu \\(seq 1\\)\n  rank 1: broadcast\\(root 0\\) \\[9\\] f32 cpu \\(seq 1\\).*ALL-RANKS-CAUGHT 2.*mpirun exit status 3"
  $<TARGET_FILE:comm_mismatch> broadcast_count)
# The receiver fails; its comm::abort makes the sender (in a barrier) quote the same error.
comm_job_test(comm_mismatch_sendrecv 2 ""
  "\\[rank 0\\] DeepComm: rank 1 is failing: rank 1 caught: DeepComm check failed on group 'world' \\(rank 1 of 2\\): send/recv mismatch: rank 0 called send\\(to 1, tag 0\\) \\[3\\] f32 cpu.*rank 1 called recv\\(from 0, tag 0\\) \\[5\\] i32 cpu.*mpirun exit status [1-9]"
  $<TARGET_FILE:comm_mismatch> sendrecv)

# A failing rank ends the job within seconds, named and quoted by the others (the timeout is
# 60 s, so the watchdog's timeout cannot be what ends it). The wrapper prints the seconds.
# The exit status must match _fast_status (any failure unless set).
set(_fast_status "[1-9][0-9]*")
function(comm_fast_test name regex)
  string(JOIN " " cmd ${MPIEXEC_EXECUTABLE} ${MPIEXEC_PREFLAGS} --oversubscribe ${ARGN} ${MPIEXEC_POSTFLAGS})
  add_test(NAME ${name} COMMAND sh -c "t0=$(date +%s); ${cmd} 2>&1; s=$?; echo \"mpirun exit status $s after $(( $(date +%s) - t0 )) s\"")
  set_tests_properties(${name} PROPERTIES ENVIRONMENT "${_comm_env};FATHOM_COMM_TIMEOUT=60" TIMEOUT 30
    PASS_REGULAR_EXPRESSION "${regex}.*mpirun exit status ${_fast_status} after [0-9] s" LABELS comm)
endfunction()
comm_fast_test(comm_rank_throws
  "\\[rank 0\\] DeepComm: rank 1 is failing: uncaught exception: bad label 11 in shard 1 \\(thrown\\)"
  ${MPIEXEC_NUMPROC_FLAG} 2 $<TARGET_FILE:comm_rank_fails> throw)
comm_fast_test(comm_rank_aborts
  "\\[rank 0\\] DeepComm: rank 1 is failing: rank_fails: error: bad label 11 in shard 1 \\(caught\\)"
  ${MPIEXEC_NUMPROC_FLAG} 2 $<TARGET_FILE:comm_rank_fails> abort)
comm_fast_test(comm_rank_returns
  "rank 1: barrier \\(comm::finalize's final barrier: this rank is exiting\\) \\(seq 3\\)"
  ${MPIEXEC_NUMPROC_FLAG} 2 $<TARGET_FILE:comm_rank_fails> return)
# ... and while its peer waits in a recv from it, or in a sub-group's collective, that it will
# never call: finalize tells the peers it is exiting, and the waiting rank's watchdog fails.
comm_fast_test(comm_rank_returns_in_recv
  "\\[rank 0\\] DeepComm: recv\\(from 1, tag 0\\) \\[16\\] f32 cpu \\(p2p seq 1\\) on group 'world' \\(rank 0 of 2\\) cannot finish: rank 1 is exiting \\(it entered comm::finalize: it returned from main or called exit\\) and never issued the matching send: this is this rank's recv #1 from it in this group, and it issued 0 send\\(s\\) to this rank"
  ${MPIEXEC_NUMPROC_FLAG} 2 $<TARGET_FILE:comm_rank_fails> return_recv)
comm_fast_test(comm_rank_returns_in_group
  "\\[rank 0\\] DeepComm: allreduce\\(sum\\) \\[16\\] f32 cpu \\(seq 1\\) on group 'sub' \\(rank 0 of 2\\) cannot finish: rank 1 is exiting .* and has no such group any more"
  ${MPIEXEC_NUMPROC_FLAG} 2 $<TARGET_FILE:comm_rank_fails> return_group)

# Settings that must agree, set on one rank only: comm::init names them with each rank's value.
comm_job_test(comm_debug_one_rank 1 ""
  "FATHOM_COMM_DEBUG: rank 0 on, rank 1 off.*mpirun exit status [1-9]"
  env FATHOM_COMM_DEBUG=1 $<TARGET_FILE:comm_watchdog_skip> : ${MPIEXEC_NUMPROC_FLAG} 1 $<TARGET_FILE:comm_watchdog_skip>)
comm_job_test(comm_threads_one_rank 1 ""
  "MPI thread level \\(FATHOM_COMM_MPI_THREADS\\): rank 0 multiple, rank 1 serialized.*mpirun exit status [1-9]"
  $<TARGET_FILE:comm_watchdog_skip> : ${MPIEXEC_NUMPROC_FLAG} 1 env FATHOM_COMM_MPI_THREADS=serialized $<TARGET_FILE:comm_watchdog_skip>)

# End to end: fashion_mnist with --dtype bf16 on one rank only stops at its flag check within
# seconds, naming each rank's value (needs the installed Fashion-MNIST data); DDP's own check of
# the parameter dtypes is tested in tests/parallel.
if(FATHOM_BUILD_EXAMPLES)
  set(_fast_status 2)
  comm_fast_test(comm_fashion_mnist_dtype_one_rank
    "fashion_mnist: the ranks were started with different flags \\(every rank must get the same\\):.*--dtype: rank 0 f32, rank 1 bf16"
    ${MPIEXEC_NUMPROC_FLAG} 1 $<TARGET_FILE:fashion_mnist> --epochs 1 : ${MPIEXEC_NUMPROC_FLAG} 1 $<TARGET_FILE:fashion_mnist> --epochs 1 --dtype bf16)
  # Any other flag that must agree (--batch, --epochs, --compress): named at start, not an
  # epoch later when the ranks' collectives stop lining up.
  foreach(_case "batch;64;128" "epochs;2;1" "compress;24;none")
    list(GET _case 0 _flag)
    list(GET _case 1 _value)
    list(GET _case 2 _default)
    comm_fast_test(comm_fashion_mnist_${_flag}_one_rank
      "fashion_mnist: the ranks were started with different flags \\(every rank must get the same\\):.*--${_flag}: rank 0 ${_default}, rank 1 ${_value}"
      ${MPIEXEC_NUMPROC_FLAG} 1 $<TARGET_FILE:fashion_mnist> --epochs 1 : ${MPIEXEC_NUMPROC_FLAG} 1 $<TARGET_FILE:fashion_mnist> --epochs 1 --${_flag} ${_value})
  endforeach()
  # A flag only one rank rejects: that rank says why, the other names it, the job exits 2.
  comm_fast_test(comm_fashion_mnist_bad_flag_one_rank
    "(\\[rank 1\\] fashion_mnist: --batch must be a positive integer, got -1.*\\[rank 0\\] DeepComm: rank 1 is failing: fashion_mnist: --batch must be a positive integer, got -1 \\(ending this rank too\\)|\\[rank 0\\] DeepComm: rank 1 is failing: fashion_mnist: --batch must be a positive integer, got -1 \\(ending this rank too\\).*\\[rank 1\\] fashion_mnist: --batch must be a positive integer, got -1)"
    ${MPIEXEC_NUMPROC_FLAG} 1 $<TARGET_FILE:fashion_mnist> --epochs 1 : ${MPIEXEC_NUMPROC_FLAG} 1 $<TARGET_FILE:fashion_mnist> --epochs 1 --batch -1)
  set(_fast_status "[1-9][0-9]*")
endif()
