# DDP's tests run under MPI with 2 and 4 ranks (4 oversubscribes the cores), each rank with
# its own NCCL host id so the [cuda] case can put them all on one GPU.
set(_par_env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    OMPI_MCA_rmaps_base_oversubscribe=1 FATHOM_COMM_TIMEOUT=60)
foreach(np 2 4)
  add_test(NAME parallel_tests_np${np}
    COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} ${MPIEXEC_PREFLAGS} --oversubscribe
            ${PROJECT_SOURCE_DIR}/scripts/nccl_hostid.sh $<TARGET_FILE:parallel_tests> ${MPIEXEC_POSTFLAGS})
  set_tests_properties(parallel_tests_np${np} PROPERTIES ENVIRONMENT "${_par_env}" TIMEOUT 300 LABELS parallel)
endforeach()
