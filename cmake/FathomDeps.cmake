# Dependencies, all Debian packages (scripts/deps.sh installs them). The library links them
# PRIVATE (FATHOM_DEPS_LINK, FATHOM_CUDA_DEPS_LINK): the installed package re-finds them
# (FathomConfig.cmake.in) and passes them on to the link line only, since no public header
# includes a dependency's header. The project's own programs (tests, examples, benchmarks),
# which also include internal headers (<mpi.h>, <nccl.h>, cblas), get their full usage
# requirements through the build-only interface targets fathom_deps and fathom_cuda_deps.
find_package(OpenMP REQUIRED COMPONENTS CXX)
find_package(Threads REQUIRED)
find_package(MPI REQUIRED COMPONENTS CXX)
find_package(Protobuf REQUIRED)
find_package(glog REQUIRED)
find_package(ZLIB REQUIRED)  # gzip-compressed datasets (Debian ships MNIST as .gz)

set(FATHOM_LIBS_CUDA OFF)
include(FathomLibs)   # Fathom::openblas, Fathom::xxhash, Fathom::dnnl
if(FATHOM_LIBS_MISSING)
  message(FATAL_ERROR "Fathom: ${FATHOM_LIBS_MISSING} not found (OpenBLAS: libopenblas and cblas.h, "
                      "Debian libopenblas-dev; xxHash: libxxhash and xxhash.h, Debian libxxhash-dev; "
                      "oneDNN: libdnnl and oneapi/dnnl/dnnl.hpp, Debian libdnnl-dev)")
endif()
message(STATUS "Fathom: BLAS ${FATHOM_OPENBLAS_LIB}")
get_filename_component(_blas_dir ${FATHOM_OPENBLAS_LIB} DIRECTORY)
list(APPEND CMAKE_INSTALL_RPATH ${_blas_dir})
set(CMAKE_BUILD_RPATH ${_blas_dir} ${CMAKE_BUILD_RPATH})

set(FATHOM_DEPS_LINK OpenMP::OpenMP_CXX Threads::Threads Fathom::openblas MPI::MPI_CXX
  protobuf::libprotobuf glog::glog ZLIB::ZLIB Fathom::xxhash Fathom::dnnl)
add_library(fathom_deps INTERFACE)
target_link_libraries(fathom_deps INTERFACE ${FATHOM_DEPS_LINK})

set(FATHOM_WITH_CUDA OFF)
set(FATHOM_CUDA_DEPS_LINK "")
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
    set(FATHOM_LIBS_CUDA ON)
    include(FathomLibs)   # Fathom::cudnn, Fathom::nccl
    if(FATHOM_LIBS_MISSING)
      message(FATAL_ERROR "Fathom: CUDA backend needs ${FATHOM_LIBS_MISSING} (cudnn.h/libcudnn, "
                          "nccl.h/libnccl next to the CUDA toolkit or in /usr)")
    endif()
    set(FATHOM_CUDA_DEPS_LINK CUDA::cudart CUDA::cublasLt CUDA::cublas Fathom::cudnn Fathom::nccl)
    add_library(fathom_cuda_deps INTERFACE)
    target_link_libraries(fathom_cuda_deps INTERFACE ${FATHOM_CUDA_DEPS_LINK})
    set(FATHOM_WITH_CUDA ON)
    message(STATUS "Fathom: CUDA backend ON (architectures ${CMAKE_CUDA_ARCHITECTURES})")
  elseif(FATHOM_CUDA STREQUAL "ON")
    message(FATAL_ERROR "FATHOM_CUDA=ON but no CUDA compiler was found (looked for nvcc on PATH "
                        "and /usr/local/cuda/bin/nvcc). Install the CUDA toolkit or pass -DFATHOM_CUDA=OFF.")
  else()
    message(STATUS "Fathom: CUDA backend OFF (no CUDA toolkit found)")
  endif()
endif()
