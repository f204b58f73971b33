#!/usr/bin/env bash
# Builds fuzz_checkpoint with clang inside a GCC build (tests.cmake): CMake runs
#   clang_launcher.sh compile|link CLANGXX <the compiler CMake chose> <its arguments...>
# as this target's compiler launcher and link launcher; we run clang++ with the same arguments
# plus libFuzzer and AddressSanitizer. GCC's OpenMP runtime stays: the library was built with
# GCC, so its OpenMP calls need libgomp (-fopenmp=libgomp), not clang's libomp.
set -euo pipefail
mode=$1 clang=$2
shift 3
args=()
for a in "$@"; do
  case $a in
    -fopenmp) [ "$mode" = link ] && args+=(-fopenmp=libgomp) ;;  # no OpenMP in fuzzed code
    *) args+=("$a") ;;
  esac
done
if [ "$mode" = compile ]; then
  exec "$clang" "${args[@]}" -fsanitize=fuzzer-no-link,address -fno-omit-frame-pointer -g
else
  exec "$clang" "${args[@]}" -fsanitize=fuzzer,address
fi
