include(GNUInstallDirs)
include(CMakePackageConfigHelpers)
install(TARGETS fathom fathom_deps EXPORT FathomTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
if(FATHOM_WITH_CUDA)
  install(TARGETS fathom_cuda_deps EXPORT FathomTargets)
endif()
install(FILES fathom.h DESTINATION include)
foreach(layer core autograd data nn optim comm parallel checkpoint)
  install(DIRECTORY ${layer}/ DESTINATION include/fathom/${layer} FILES_MATCHING PATTERN "*.h")
endforeach()
install(EXPORT FathomTargets NAMESPACE Fathom:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/Fathom)
configure_package_config_file(cmake/FathomConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/FathomConfig.cmake INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/Fathom)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/FathomConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/FathomConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/FathomConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/Fathom)
