# checkpoint_tests: the single-process cases alone (no MPI), and the cases that need MPI
# ([ranks]) under mpirun with 2 and 4 ranks ([np4]: those that need 4). Labelled parallel too,
# so the sanitizer run gives them detect_leaks=0 as it does every MPI test. The Checkpointer's
# own extra tests (alone, crash, fuzz) are in checkpointer.cmake.
set(_ckpt_env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    OMPI_MCA_rmaps_base_oversubscribe=1 FATHOM_COMM_TIMEOUT=60)
add_test(NAME checkpoint_tests COMMAND checkpoint_tests "~[cuda]~[ranks]")
set_tests_properties(checkpoint_tests PROPERTIES LABELS checkpoint)
foreach(np 2 4)
  if(np EQUAL 2)
    set(_spec "[ranks]~[np4]")
  else()
    set(_spec "[ranks]")
  endif()
  add_test(NAME checkpoint_tests_np${np}
    COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} ${MPIEXEC_PREFLAGS} --oversubscribe
            $<TARGET_FILE:checkpoint_tests> ${_spec} ${MPIEXEC_POSTFLAGS})
  set_tests_properties(checkpoint_tests_np${np} PROPERTIES ENVIRONMENT "${_ckpt_env}" TIMEOUT 300
    LABELS "checkpoint;parallel")
endforeach()
if(FATHOM_LAYER_HAS_CUDA)
  add_test(NAME checkpoint_tests_cuda COMMAND checkpoint_tests "[cuda]")
  set_tests_properties(checkpoint_tests_cuda PROPERTIES ENVIRONMENT FATHOM_TEST_NEEDS_CUDA=1
    SKIP_RETURN_CODE ${FATHOM_TEST_SKIP_CODE} LABELS "checkpoint;cuda")
endif()
