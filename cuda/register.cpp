// Plugs the GPU backends into core's registry. Factories run on demand, so registering needs no
// GPU; creating a backend without one throws convnet::Error (see GpuBackend's constructor).
#include "core/base/backend_registry.h"
#include "cuda/cuda_backend.h"
#include "cuda/cudnn_backend.h"
#include "cuda/gpu_backend.h"
#include "cuda/handles.h"

namespace convnet::cuda {

void register_backends() {
  register_backend("cuda", [] { return make_cuda_backend(0, Precision::fp32); });
  register_backend("cuda_tf32", [] { return make_cuda_backend(0, Precision::tf32); });
  register_backend("cudnn", [] { return make_cudnn_backend(0, MathMode::fp32); });
  register_backend("cudnn_tf32", [] { return make_cudnn_backend(0, MathMode::tf32); });
}

}  // namespace convnet::cuda
