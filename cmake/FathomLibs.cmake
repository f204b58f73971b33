# The libraries that ship without a CMake package, as imported targets: Fathom::openblas and
# Fathom::cblas (OpenBLAS, preferring Debian's OpenMP build), Fathom::xxhash, Fathom::dnnl, and with FATHOM_LIBS_CUDA also
# Fathom::cudnn and Fathom::nccl. Included by the build (FathomDeps.cmake) and, installed next
# to FathomConfig.cmake, by the installed package: FathomTargets.cmake names these targets and
# never a path, so the package finds the libraries again on the machine that uses it.
# CUDAToolkit must have been found before when FATHOM_LIBS_CUDA is on.
# Out: FATHOM_LIBS_MISSING, the list of what was not found (empty when all were).
set(FATHOM_LIBS_MISSING "")

macro(_fathom_lib target lib_var inc_var)
  if(${lib_var} AND ${inc_var})
    if(NOT TARGET ${target})
      add_library(${target} UNKNOWN IMPORTED)
      set_target_properties(${target} PROPERTIES IMPORTED_LOCATION "${${lib_var}}"
        INTERFACE_INCLUDE_DIRECTORIES "${${inc_var}}")
    endif()
  else()
    list(APPEND FATHOM_LIBS_MISSING ${target})
  endif()
endmacro()

# OpenBLAS itself, never the generic libblas.so.3 (often the reference BLAS, ten times slower),
# and preferably Debian's OpenMP build: Fathom runs OpenBLAS single-threaded on its own pool
# (core/cpu/matmul.cpp, docs/threads.md), and the OpenMP build starts no threads of its own,
# where the pthread build starts a pool at load that would sit beside ours. Both builds share the soname libopenblas.so.0; the directory goes into the RUNPATH
# (CMake adds it for every program linking Fathom::openblas) to load this one.
find_library(FATHOM_OPENBLAS_LIB NAMES openblas NO_DEFAULT_PATH
  PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp /usr/lib/x86_64-linux-gnu/openblas-openmp)
find_library(FATHOM_OPENBLAS_LIB NAMES openblas)  # no-op when found above
# The library calls cblas_* (its own sources include cblas.h; no public header does).
find_path(FATHOM_CBLAS_INCLUDE cblas.h PATH_SUFFIXES openblas x86_64-linux-gnu/openblas-pthread)
_fathom_lib(Fathom::openblas FATHOM_OPENBLAS_LIB FATHOM_CBLAS_INCLUDE)

# xxHash (XXH3-64, the checkpoint checksums; Debian: libxxhash-dev, which ships no CMake package).
find_path(FATHOM_XXHASH_INCLUDE xxhash.h)
find_library(FATHOM_XXHASH_LIB xxhash)
_fathom_lib(Fathom::xxhash FATHOM_XXHASH_LIB FATHOM_XXHASH_INCLUDE)

# oneDNN (the CPU convolution, pooling and batch-norm primitives, core/cpu/dnnl.h; Debian:
# libdnnl-dev 2.6, built with the OpenMP runtime). Its CMake package would do, but this keeps
# the installed package's lookup in one place like the others.
find_path(FATHOM_DNNL_INCLUDE oneapi/dnnl/dnnl.hpp)
find_library(FATHOM_DNNL_LIB dnnl)
_fathom_lib(Fathom::dnnl FATHOM_DNNL_LIB FATHOM_DNNL_INCLUDE)

if(FATHOM_LIBS_CUDA)
  find_path(FATHOM_CUDNN_INCLUDE cudnn.h HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/include)
  find_library(FATHOM_CUDNN_LIB cudnn HINTS ${CUDAToolkit_LIBRARY_DIR} /usr/lib/x86_64-linux-gnu)
  _fathom_lib(Fathom::cudnn FATHOM_CUDNN_LIB FATHOM_CUDNN_INCLUDE)
  find_path(FATHOM_NCCL_INCLUDE nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/include)
  find_library(FATHOM_NCCL_LIB nccl HINTS ${CUDAToolkit_LIBRARY_DIR} /usr/lib/x86_64-linux-gnu)
  _fathom_lib(Fathom::nccl FATHOM_NCCL_LIB FATHOM_NCCL_INCLUDE)
endif()
