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

foreach(np 2 4)
  add_test(NAME comm_tests_np${np}
    COMMAND ${_mpirun} ${np} ${MPIEXEC_PREFLAGS} --oversubscribe ${_hostid} $<TARGET_FILE:comm_tests> ${MPIEXEC_POSTFLAGS})
  set_tests_properties(comm_tests_np${np} PROPERTIES ENVIRONMENT "${_comm_env}" TIMEOUT 120 LABELS comm)
endforeach()
add_test(NAME comm_tests_np1 COMMAND comm_tests)
set_tests_properties(comm_tests_np1 PROPERTIES ENVIRONMENT "${_comm_env}" TIMEOUT 60 LABELS comm)
add_test(NAME comm_tests_np2_serialized
  COMMAND ${_mpirun} 2 ${MPIEXEC_PREFLAGS} --oversubscribe ${_hostid} $<TARGET_FILE:comm_tests> ${MPIEXEC_POSTFLAGS})
set_tests_properties(comm_tests_np2_serialized PROPERTIES
  ENVIRONMENT "${_comm_env};FATHOM_COMM_MPI_THREADS=serialized" TIMEOUT 120 LABELS comm)

foreach(prog watchdog_skip debug_mismatch)
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
# Either rank may report first: rank 0 stuck in allreduce, or rank 1 stuck in barrier.
comm_job_test(comm_watchdog_out_of_order 2 "FATHOM_COMM_TIMEOUT=2"
  "DeepComm watchdog: (allreduce\\(sum\\) \\[16\\] f32 cpu|barrier) \\(seq 2\\) on group 'world'.*rank [01]: called (barrier|allreduce\\(sum\\) \\[16\\] f32 cpu) as seq 2, a different call.*mpirun exit status [1-9]"
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
