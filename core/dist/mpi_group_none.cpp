// The build without MPI (CMake found none): data-parallel runs are refused with the reason.
#include "core/base/error.h"
#include "core/dist/mpi_group.h"

namespace convnet {

std::string mpi_library_version() {
  return "";
}

std::unique_ptr<ReplicaGroup> open_mpi_group(double /*timeout_seconds*/) {
  throw Error(
      "this convnet was built without MPI, so it cannot train data-parallel: install libopenmpi-dev "
      "(tools/install_deps.sh) and rebuild");
}

}  // namespace convnet
