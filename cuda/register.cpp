// Plugs the GPU backends into core's registry. Factories run on demand, so registering needs no
// GPU; creating a backend without one throws convnet::Error (see GpuBackend's constructor).
#include "core/base/backend_registry.h"
#include "cuda/cuda_backend.h"
#include "cuda/cudnn_backend.h"
#include "cuda/gpu_backend.h"
#include "cuda/handles.h"

namespace convnet::cuda {

void register_backends(int device_index) {
  register_backend("cuda", [device_index] { return make_cuda_backend(device_index, Precision::fp32); });
  register_backend("cuda_tf32", [device_index] { return make_cuda_backend(device_index, Precision::tf32); });
  register_backend("cudnn", [device_index] { return make_cudnn_backend(device_index, MathMode::fp32); });
  register_backend("cudnn_tf32", [device_index] { return make_cudnn_backend(device_index, MathMode::tf32); });
}

}  // namespace convnet::cuda
