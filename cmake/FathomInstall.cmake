# `cmake --install build --prefix P` gives P/lib/libfathom.a, P/include/fathom.h and
# P/include/fathom/<layer>/*.h (the public headers only), and P/lib/cmake/Fathom/.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)
install(TARGETS fathom EXPORT FathomTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})

# Public headers: the closure of fathom.h's "fathom/..." includes, computed when installing
# (cmake/FathomHeaders.cmake), so a header added to an umbrella is installed with no list to
# edit and no reconfigure. fathom.h goes to include/, the rest to include/fathom/<path>.
install(CODE "
  include(\"${CMAKE_CURRENT_SOURCE_DIR}/cmake/FathomHeaders.cmake\")
  fathom_public_headers(\"${CMAKE_CURRENT_SOURCE_DIR}\" _fathom_headers)
  foreach(_h IN LISTS _fathom_headers)
    fathom_header_is_internal(\${_h} _internal)
    if(_internal)
      message(FATAL_ERROR \"Fathom: public header chain reaches internal header \${_h}\")
    endif()
    get_filename_component(_dir \${_h} DIRECTORY)
    if(_h STREQUAL \"fathom.h\")
      set(_dest \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_INCLUDEDIR}\")
    else()
      set(_dest \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_INCLUDEDIR}/fathom/\${_dir}\")
    endif()
    file(INSTALL DESTINATION \"\${_dest}\" TYPE FILE FILES \"${CMAKE_CURRENT_SOURCE_DIR}/\${_h}\")
  endforeach()
")

install(EXPORT FathomTargets NAMESPACE Fathom:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/Fathom)
configure_package_config_file(cmake/FathomConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/FathomConfig.cmake INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/Fathom)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/FathomConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/FathomConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/FathomConfigVersion.cmake
  cmake/FathomLibs.cmake DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/Fathom)
