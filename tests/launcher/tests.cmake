# fathomrun and the launch environment (included from tests/CMakeLists.txt, which made
# launcher_tests from tests/launcher/*.cpp).
#  - launcher_tests: launch-environment parsing, node lists, fathomrun's flags and output
#    handling (one process), and the stop-signal agreement with 2 ranks under mpirun.
#  - launcher_job_*: fathomrun end to end with a fake trainer (programs/fake_trainer.cpp):
#    restart after kill -9, giving up, SIGTERM, SIGUSR1, hangs, -n 1, the command line.
#    tests/launcher/launcher_job.sh bounds every run with `timeout`; TIMEOUT is the backstop.
# All start MPI, so they carry the label comm too (the sanitizer run turns LeakSanitizer off
# for those: Open MPI's own allocations at exit).
target_link_libraries(launcher_tests PRIVATE fathomrun_core)
set(_launcher_env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    OMPI_MCA_rmaps_base_oversubscribe=1 FATHOM_COMM_TIMEOUT=60)
add_test(NAME launcher_tests COMMAND launcher_tests)
set_tests_properties(launcher_tests PROPERTIES ENVIRONMENT "${_launcher_env}" TIMEOUT 60 LABELS "launcher;comm")
add_test(NAME launcher_tests_np2
  COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 ${MPIEXEC_PREFLAGS} --oversubscribe
          $<TARGET_FILE:launcher_tests> "[mpi]" ${MPIEXEC_POSTFLAGS})
set_tests_properties(launcher_tests_np2 PROPERTIES ENVIRONMENT "${_launcher_env}" TIMEOUT 60 LABELS "launcher;comm")

add_executable(launcher_fake_trainer ${CMAKE_CURRENT_LIST_DIR}/programs/fake_trainer.cpp)
target_link_libraries(launcher_fake_trainer PRIVATE fathom)
foreach(scenario restart give_up sigterm sigusr1 hang local cli)
  add_test(NAME launcher_job_${scenario}
    COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/launcher_job.sh ${scenario} $<TARGET_FILE:fathomrun>
            $<TARGET_FILE:launcher_fake_trainer>)
  # The environment the tests run in (root in a container): fathomrun must add what mpirun
  # needs itself, so OMPI_ALLOW_RUN_AS_ROOT is deliberately not set here.
  set_tests_properties(launcher_job_${scenario} PROPERTIES
    ENVIRONMENT "FATHOM_COMM_TIMEOUT=60" TIMEOUT 60 LABELS "launcher;comm")
endforeach()
