# DDP's tests run under MPI with 2 and 4 ranks (4 oversubscribes the cores), each rank with
# its own NCCL host id so the [cuda] case can put them all on one GPU.
set(_par_env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    OMPI_MCA_rmaps_base_oversubscribe=1 FATHOM_COMM_TIMEOUT=60)
# The [cuda] (NCCL) cases are tests of their own, Skipped without a GPU (tests/main.cpp).
foreach(np 2 4)
  foreach(part cpu cuda)
    if(part STREQUAL "cpu")
      set(_name parallel_tests_np${np})
      set(_spec "~[cuda]")
    else()
      set(_name parallel_tests_cuda_np${np})
      set(_spec "[cuda]")
    endif()
    add_test(NAME ${_name}
      COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} ${MPIEXEC_PREFLAGS} --oversubscribe
              ${PROJECT_SOURCE_DIR}/scripts/nccl_hostid.sh $<TARGET_FILE:parallel_tests> ${_spec} ${MPIEXEC_POSTFLAGS})
    set_tests_properties(${_name} PROPERTIES ENVIRONMENT "${_par_env}" TIMEOUT 300 LABELS parallel)
  endforeach()
  set_tests_properties(parallel_tests_cuda_np${np} PROPERTIES
    ENVIRONMENT "${_par_env};FATHOM_TEST_NEEDS_CUDA=1" SKIP_RETURN_CODE ${FATHOM_TEST_SKIP_CODE}
    LABELS "parallel;cuda")
endforeach()
# The 3D composition (parallel/gpt_3d.h) on 8 ranks: every (dp, tp, pp) mesh of 1s and 2s. On a
# 2-core machine 8 ranks oversubscribe 4x, so only the [3d] cases run here, on a tiny model.
add_test(NAME parallel_tests_np8
  COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 8 ${MPIEXEC_PREFLAGS} --oversubscribe
          $<TARGET_FILE:parallel_tests> "[3d]" ${MPIEXEC_POSTFLAGS})
set_tests_properties(parallel_tests_np8 PROPERTIES ENVIRONMENT "${_par_env}" TIMEOUT 300 LABELS parallel)
