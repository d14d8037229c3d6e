// convnet --version: the build, its dependencies, and the GPUs this process can see.
#include <fmt/format.h>
#include <spdlog/version.h>

#include "core/dist/mpi_group.h"
#include "tools/commands.h"

#ifdef CONVNET_WITH_CUDA
#include "cuda/device.h"
#include "cuda/nccl_collectives.h"
#endif

#ifndef CONVNET_VERSION
#define CONVNET_VERSION "0.1.0"
#endif

namespace convnet::cli {

std::string convnet_version() {
  return CONVNET_VERSION;
}

std::string version_text() {
  std::string text = fmt::format("convnet {}\nbackends: cpu (OpenBLAS sgemm)", CONVNET_VERSION);
#ifdef CONVNET_WITH_CUDA
  text += ", cuda (our kernels), cuda_tf32 (our tensor-core kernels), cudnn, cudnn_tf32";
  text += fmt::format("\n{}\n{}", cuda::cuda_build_info(), cuda::describe_gpus());
#else
  text += "\nbuilt without CUDA";
#endif
  const std::string mpi = mpi_library_version();
  text += mpi.empty() ? "\ndata-parallel: built without MPI" : "\ndata-parallel: MPI (" + mpi + ")";
#ifdef CONVNET_WITH_CUDA
  const std::string nccl = cuda::nccl_version();
  text += nccl.empty() ? ", GPU gradients through the host (built without NCCL)" : ", NCCL " + nccl;
#endif
  return text;
}

}  // namespace convnet::cli
