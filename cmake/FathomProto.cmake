# fathom_proto(<target> <file.proto>): compiles a .proto of the calling layer's directory into
# the library. <file>.pb.{h,cc} go to the build tree's <layer>/proto/, which is on fathom's build
# interface only (internal headers and the project's own programs include "<file>.pb.h"; no
# public header does). The custom target orders the generation before fathom's compilation
# (the command lives in the layer's directory, the library in the root one; CMP0118 makes the
# GENERATED files known there).
function(fathom_proto target proto)
  set(dir ${CMAKE_CURRENT_BINARY_DIR}/proto)
  file(MAKE_DIRECTORY ${dir})
  protobuf_generate(LANGUAGE cpp OUT_VAR srcs
    PROTOS ${CMAKE_CURRENT_SOURCE_DIR}/${proto}
    IMPORT_DIRS ${CMAKE_CURRENT_SOURCE_DIR}
    PROTOC_OUT_DIR ${dir})
  add_custom_target(${target} DEPENDS ${srcs})
  add_dependencies(fathom ${target})
  target_sources(fathom PRIVATE ${srcs})
  target_include_directories(fathom PUBLIC $<BUILD_INTERFACE:${dir}>)
endfunction()
