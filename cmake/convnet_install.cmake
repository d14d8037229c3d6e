# `cmake --install build --prefix P`: the library as a CMake package, so that another project writes
#   find_package(convnet REQUIRED)
#   target_link_libraries(app PRIVATE convnet::convnet)
# P/include/convnet holds the headers in the source tree's layout (the library's own includes say
# "core/base/error.h"), as Eigen's include/eigen3 does: programs include <convnet/convnet.h>.
# P/lib holds the static libraries, P/lib/cmake/convnet the package (cmake/convnetConfig.cmake.in).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(CONVNET_INSTALL_INCLUDEDIR ${CMAKE_INSTALL_INCLUDEDIR}/convnet)
set(CONVNET_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/convnet)

# Every library convnet::convnet links, the CUDA backends when they are built.
set(_convnet_exported convnet_api convnet_lib convnet_train convnet_dist convnet_models convnet_datasets
  convnet_base convnet_cpu convnet_layers convnet_config convnet_io convnet_optim)
if(CONVNET_HAVE_CUDA)
  list(APPEND _convnet_exported convnet_cuda)
endif()
install(TARGETS ${_convnet_exported} EXPORT convnetTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CONVNET_INSTALL_INCLUDEDIR})
# core/ and cuda/ headers the public ones reach (cuda/ only in a CUDA build: its headers need CUDA's).
set(_convnet_header_dirs convnet core datasets models)
if(CONVNET_HAVE_CUDA)
  list(APPEND _convnet_header_dirs cuda)
endif()
foreach(_dir ${_convnet_header_dirs})
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/${_dir} DESTINATION ${CONVNET_INSTALL_INCLUDEDIR}
    FILES_MATCHING PATTERN "*.h" PATTERN "*.cuh")
endforeach()
install(EXPORT convnetTargets NAMESPACE convnet:: DESTINATION ${CONVNET_INSTALL_CMAKEDIR})

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/convnetConfig.cmake.in
  ${PROJECT_BINARY_DIR}/convnetConfig.cmake INSTALL_DESTINATION ${CONVNET_INSTALL_CMAKEDIR})
# 0.x: a new minor version may change the API, so only the same major.minor is compatible.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/convnetConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/convnetConfig.cmake ${PROJECT_BINARY_DIR}/convnetConfigVersion.cmake
  DESTINATION ${CONVNET_INSTALL_CMAKEDIR})
