# The Checkpointer's tests beyond checkpoint_tests (tests.cmake); included from
# tests/CMakeLists.txt when the checkpoint layer's tests are built.
#  - checkpoint_tests_np1: its [checkpointer] cases alone (an MPI singleton; under mpirun with 2
#    and 4 ranks they run with the other [ranks] cases).
#  - crash_save: kill -9 during a save leaves the previous checkpoint loadable (1 and 2 ranks).
#  - fuzz_checkpoint: libFuzzer over the manifest and safetensors readers, when clang is there.
# Those that start MPI are labelled parallel, so the sanitizer run gives them detect_leaks=0
# (Open MPI leaves memory at exit, see scripts/sanitize.sh).
set(_ckpt_env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    OMPI_MCA_rmaps_base_oversubscribe=1 FATHOM_COMM_TIMEOUT=120)
add_test(NAME checkpoint_tests_np1 COMMAND checkpoint_tests "[checkpointer]~[cuda]")
set_tests_properties(checkpoint_tests_np1 PROPERTIES ENVIRONMENT "${_ckpt_env}" TIMEOUT 300
  LABELS "checkpoint;parallel")

add_executable(checkpoint_crash_save ${CMAKE_CURRENT_LIST_DIR}/programs/crash_save.cpp)
target_link_libraries(checkpoint_crash_save PRIVATE fathom)
foreach(np 1 2)
  add_test(NAME checkpoint_crash_save_np${np}
    COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/crash_save.sh $<TARGET_FILE:checkpoint_crash_save> ${np}
            ${MPIEXEC_EXECUTABLE})
  set_tests_properties(checkpoint_crash_save_np${np} PROPERTIES ENVIRONMENT "${_ckpt_env}"
    TIMEOUT 300 LABELS "checkpoint;parallel" PASS_REGULAR_EXPRESSION "PASS")
endforeach()

# fuzz_checkpoint is built with clang's libFuzzer: directly when the C++ compiler is clang,
# otherwise through clang_launcher.sh when clang++ is found (FATHOM_FUZZ=AUTO, the default) or
# required (ON). A GCC sanitizer build cannot link clang's ASan runtime: no fuzzer there.
# Without it the CTest reports Skipped (exit 77).
set(FATHOM_FUZZ AUTO CACHE STRING "Build the libFuzzer target fuzz_checkpoint: AUTO, ON or OFF")
set(_fuzz_why "")
set(_fuzz_clang "")
if(FATHOM_FUZZ STREQUAL "OFF")
  set(_fuzz_why "FATHOM_FUZZ=OFF")
elseif(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  set(_fuzz_clang ${CMAKE_CXX_COMPILER})
elseif(FATHOM_SANITIZE)
  set(_fuzz_why "a GCC sanitizer build (clang's ASan runtime cannot join GCC's)")
else()
  find_program(FATHOM_CLANGXX NAMES clang++ clang++-19 clang++-18 clang++-17 clang++-16 clang++-15 clang++-14)
  if(FATHOM_CLANGXX)
    # Does this clang have libFuzzer (Debian: libclang-rt-<v>-dev)?
    set(_probe ${CMAKE_CURRENT_BINARY_DIR}/fuzz_probe)
    file(WRITE ${_probe}.cpp "#include <cstdint>\n#include <cstddef>\nextern \"C\" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n")
    execute_process(COMMAND ${FATHOM_CLANGXX} -fsanitize=fuzzer,address ${_probe}.cpp -o ${_probe}
      RESULT_VARIABLE _probe_rc OUTPUT_QUIET ERROR_QUIET)
    if(_probe_rc EQUAL 0)
      set(_fuzz_clang ${FATHOM_CLANGXX})
    else()
      set(_fuzz_why "${FATHOM_CLANGXX} cannot link -fsanitize=fuzzer (no libFuzzer runtime)")
    endif()
  else()
    set(_fuzz_why "no clang++ found (Debian: clang)")
  endif()
endif()
if(_fuzz_why AND FATHOM_FUZZ STREQUAL "ON")
  message(FATAL_ERROR "FATHOM_FUZZ=ON but fuzz_checkpoint cannot be built: ${_fuzz_why}")
endif()

if(_fuzz_clang)
  # The readers are compiled into the target, so that libFuzzer sees their coverage; the
  # rest (core, the generated protobuf code) comes from the library.
  add_executable(fuzz_checkpoint ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_checkpoint.cpp
    ${PROJECT_SOURCE_DIR}/checkpoint/format.cpp ${PROJECT_SOURCE_DIR}/checkpoint/json.cpp
    ${PROJECT_SOURCE_DIR}/checkpoint/safetensors.cpp)
  target_link_libraries(fuzz_checkpoint PRIVATE fathom)
  if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    target_compile_options(fuzz_checkpoint PRIVATE -fsanitize=fuzzer-no-link,address -g)
    target_link_options(fuzz_checkpoint PRIVATE -fsanitize=fuzzer,address)
  else()
    set(_launch ${CMAKE_CURRENT_LIST_DIR}/fuzz/clang_launcher.sh)
    set_target_properties(fuzz_checkpoint PROPERTIES
      CXX_COMPILER_LAUNCHER "bash;${_launch};compile;${_fuzz_clang}"
      RULE_LAUNCH_LINK "bash ${_launch} link ${_fuzz_clang}")
  endif()
  add_executable(checkpoint_fuzz_seeds ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_seeds.cpp)
  target_link_libraries(checkpoint_fuzz_seeds PRIVATE fathom)
  add_test(NAME fuzz_checkpoint
    COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/fuzz/run_fuzz.sh $<TARGET_FILE:fuzz_checkpoint>
            $<TARGET_FILE:checkpoint_fuzz_seeds>)
  set_tests_properties(fuzz_checkpoint PROPERTIES ENVIRONMENT "${_ckpt_env}" TIMEOUT 300
    LABELS "checkpoint;fuzz")
else()
  add_test(NAME fuzz_checkpoint COMMAND sh -c "echo 'SKIPPED: fuzz_checkpoint not built: ${_fuzz_why}'; exit 77")
  set_tests_properties(fuzz_checkpoint PROPERTIES SKIP_RETURN_CODE ${FATHOM_TEST_SKIP_CODE}
    LABELS "checkpoint;fuzz")
endif()
