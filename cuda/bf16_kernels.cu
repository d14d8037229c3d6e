#include "cuda/bf16_kernels.h"
#include "cuda/check.h"
#include "cuda/grid_stride.h"
#include "cuda/ptx.cuh"

namespace convnet::cuda {
namespace {

__global__ void to_bf16_kernel(const float* __restrict__ x, uint16_t* __restrict__ y, int64_t n) {
  for (int64_t i = thread_index(); i < n; i += grid_stride()) y[i] = ptx::to_bf16(x[i]);
}

__global__ void from_bf16_kernel(const uint16_t* __restrict__ x, float* __restrict__ y, int64_t n) {
  for (int64_t i = thread_index(); i < n; i += grid_stride()) y[i] = ptx::from_bf16(x[i]);
}

__global__ void from_bf16_add_bias_kernel(const uint16_t* __restrict__ x, const float* __restrict__ bias,
                                          int64_t channels, float* __restrict__ y, int64_t n) {
  for (int64_t i = thread_index(); i < n; i += grid_stride())
    y[i] = ptx::from_bf16(ptx::to_bf16(ptx::from_bf16(x[i]) + bias[i % channels]));
}

// x and y may alias: no __restrict__.
__global__ void round_to_bf16_kernel(const float* x, const float* bias, int64_t channels, float* y, int64_t n) {
  for (int64_t i = thread_index(); i < n; i += grid_stride()) {
    const float v = bias != nullptr ? x[i] + bias[i % channels] : x[i];
    y[i] = ptx::from_bf16(ptx::to_bf16(v));
  }
}

}  // namespace

void launch_to_bf16(const float* x, uint16_t* y, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  to_bf16_kernel<<<grid_blocks(n), kThreads, 0, stream>>>(x, y, n);
  CONVNET_CUDA_CHECK_LAUNCH("to_bf16_kernel");
}

void launch_from_bf16(const uint16_t* x, float* y, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  from_bf16_kernel<<<grid_blocks(n), kThreads, 0, stream>>>(x, y, n);
  CONVNET_CUDA_CHECK_LAUNCH("from_bf16_kernel");
}

void launch_from_bf16_add_bias(const uint16_t* x, const float* bias, int64_t channels, float* y, int64_t n,
                               cudaStream_t stream) {
  if (bias == nullptr) return launch_from_bf16(x, y, n, stream);
  if (n <= 0) return;
  from_bf16_add_bias_kernel<<<grid_blocks(n), kThreads, 0, stream>>>(x, bias, channels, y, n);
  CONVNET_CUDA_CHECK_LAUNCH("from_bf16_add_bias_kernel");
}

void launch_round_to_bf16(const float* x, const float* bias, int64_t channels, float* y, int64_t n,
                          cudaStream_t stream) {
  if (n <= 0) return;
  round_to_bf16_kernel<<<grid_blocks(n), kThreads, 0, stream>>>(x, bias, channels, y, n);
  CONVNET_CUDA_CHECK_LAUNCH("round_to_bf16_kernel");
}

}  // namespace convnet::cuda
