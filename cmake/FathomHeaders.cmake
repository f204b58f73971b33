# The public headers: fathom.h and every header reachable from it through
# `#include "fathom/..."` lines (a guarded include of a header that does not exist yet, such
# as `#if __has_include("fathom/checkpoint/safetensors.h")`, is skipped). Nothing is listed by
# hand: include a new header from its layer's umbrella (nn/nn.h, ...) or from fathom.h and it
# is installed. Used at install time (FathomInstall.cmake) and by tests/install/ (cmake -P).
#
# fathom_public_headers(<source root> <out var>): paths relative to the source root.
cmake_policy(PUSH)
cmake_policy(SET CMP0057 NEW)  # if(IN_LIST), also under cmake -P
function(fathom_public_headers root out)
  set(todo fathom.h)
  set(seen "")
  while(todo)
    list(POP_FRONT todo h)
    if(h IN_LIST seen)
      continue()
    endif()
    list(APPEND seen ${h})
    file(STRINGS ${root}/${h} lines REGEX "^[ \t]*#[ \t]*include[ \t]*\"fathom/[^\"]+\"")
    foreach(line IN LISTS lines)
      string(REGEX REPLACE "^[^\"]*\"fathom/([^\"]+)\".*$" "\\1" inc "${line}")
      if(EXISTS ${root}/${inc} AND NOT inc IN_LIST seen)
        list(APPEND todo ${inc})
      endif()
    endforeach()
  endwhile()
  list(SORT seen)
  set(${out} ${seen} PARENT_SCOPE)
endfunction()

# Headers that are internal on purpose (backends, kernels, transport details, the command-line
# flags of Fathom's own programs in examples/ and bench/): never installed, and a public header
# including one is a layering error. Regexes on the path from the root.
set(FATHOM_INTERNAL_HEADERS
  "^core/(cpu|cuda)/" "^core/backend\\.h$" "^core/backend_api\\.inc$"
  "^comm/nccl/" "^comm/mpi_" "^comm/(group_state|side_channel|watchdog)\\.h$"
  "^autograd/ops/common\\.h$" "^core/ops/compress\\.h$" "^checkpoint/(json|format|file_io|io|stream_writer)\\.h$"
  "^comm/flags\\.h$" "^log/crc32c\\.h$" "^parallel/tp_detail\\.h$")

# fathom_header_is_internal(<path> <out var>)
function(fathom_header_is_internal path out)
  set(${out} FALSE PARENT_SCOPE)
  foreach(re IN LISTS FATHOM_INTERNAL_HEADERS)
    if(path MATCHES "${re}")
      set(${out} TRUE PARENT_SCOPE)
    endif()
  endforeach()
endfunction()
cmake_policy(POP)
