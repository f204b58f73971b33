# Dependencies, all Debian packages (scripts/deps.sh installs them). Collected into two
# interface targets so the install tree's config can recreate them with find_dependency.
find_package(OpenMP REQUIRED COMPONENTS CXX)
find_package(Threads REQUIRED)
# OpenBLAS itself, never the generic libblas.so.3 (often the reference BLAS, ten times slower).
set(BLA_VENDOR OpenBLAS)
find_package(BLAS REQUIRED)
# Prefer Debian's OpenMP build of OpenBLAS: the pthread build brings a second thread pool that
# spins against our OpenMP threads (measured: 60% of a training step spent spin-waiting on 2
# cores). Both builds share the soname libopenblas.so.0, so the directory goes into the
# RUNPATH (build and install tree) to load this one rather than the system alternative.
find_library(FATHOM_OPENBLAS_OPENMP NAMES openblas NO_DEFAULT_PATH
  PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp /usr/lib/x86_64-linux-gnu/openblas-openmp)
if(FATHOM_OPENBLAS_OPENMP)
  set(BLAS_LIBRARIES ${FATHOM_OPENBLAS_OPENMP})
  get_filename_component(_blas_dir ${FATHOM_OPENBLAS_OPENMP} DIRECTORY)
  list(APPEND CMAKE_INSTALL_RPATH ${_blas_dir})
  set(CMAKE_BUILD_RPATH ${_blas_dir} ${CMAKE_BUILD_RPATH})
endif()
message(STATUS "Fathom: BLAS ${BLAS_LIBRARIES}")
find_path(FATHOM_CBLAS_INCLUDE cblas.h PATH_SUFFIXES openblas x86_64-linux-gnu/openblas-pthread REQUIRED)
find_package(MPI REQUIRED COMPONENTS CXX)
find_package(Protobuf REQUIRED)
find_package(glog REQUIRED)
find_package(ZLIB REQUIRED)  # gzip-compressed datasets (Debian ships MNIST as .gz)

add_library(fathom_deps INTERFACE)
target_include_directories(fathom_deps INTERFACE ${FATHOM_CBLAS_INCLUDE})
target_link_libraries(fathom_deps INTERFACE OpenMP::OpenMP_CXX Threads::Threads ${BLAS_LIBRARIES}
  MPI::MPI_CXX protobuf::libprotobuf glog::glog ZLIB::ZLIB)

set(FATHOM_WITH_CUDA OFF)
if(NOT FATHOM_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 90)
    endif()
    enable_language(CUDA)
    # CMake 3.25 knows no C++20 flag for nvcc (nvcc >= 12 has -std=c++20): tell it, else
    # generation fails with "requires the language dialect CUDA20".
    if(NOT DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
      set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
      set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
    endif()
    set(CMAKE_CUDA_STANDARD 20)
    find_package(CUDAToolkit REQUIRED)
    find_path(FATHOM_CUDNN_INCLUDE cudnn.h HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/include REQUIRED)
    find_library(FATHOM_CUDNN_LIB cudnn HINTS ${CUDAToolkit_LIBRARY_DIR} /usr/lib/x86_64-linux-gnu REQUIRED)
    find_path(FATHOM_NCCL_INCLUDE nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/include REQUIRED)
    find_library(FATHOM_NCCL_LIB nccl HINTS ${CUDAToolkit_LIBRARY_DIR} /usr/lib/x86_64-linux-gnu REQUIRED)
    add_library(fathom_cuda_deps INTERFACE)
    target_include_directories(fathom_cuda_deps INTERFACE ${FATHOM_CUDNN_INCLUDE} ${FATHOM_NCCL_INCLUDE})
    target_link_libraries(fathom_cuda_deps INTERFACE CUDA::cudart CUDA::cublasLt CUDA::cublas
      ${FATHOM_CUDNN_LIB} ${FATHOM_NCCL_LIB})
    set(FATHOM_WITH_CUDA ON)
    message(STATUS "Fathom: CUDA backend ON (architectures ${CMAKE_CUDA_ARCHITECTURES})")
  elseif(FATHOM_CUDA STREQUAL "ON")
    message(FATAL_ERROR "FATHOM_CUDA=ON but no CUDA compiler was found (looked for nvcc on PATH "
                        "and /usr/local/cuda/bin/nvcc). Install the CUDA toolkit or pass -DFATHOM_CUDA=OFF.")
  else()
    message(STATUS "Fathom: CUDA backend OFF (no CUDA toolkit found)")
  endif()
endif()
