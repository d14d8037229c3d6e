// The build without NCCL: data-parallel GPU runs then stage gradients through host memory (MPI).
#include "core/base/error.h"
#include "cuda/nccl_collectives.h"

namespace convnet::cuda {

std::string nccl_version() {
  return {};
}

std::unique_ptr<DeviceCollectives> open_nccl(ReplicaGroup&, int, double) {
  throw Error(
      "this convnet was built without NCCL: install it (a CUDA toolkit's, or pip install nvidia-nccl-cu13) and "
      "rebuild (cmake -DNCCL_ROOT=...), or train on the host transport (slower)");
}

}  // namespace convnet::cuda
