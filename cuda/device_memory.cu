#include <algorithm>

#include "cuda/check.h"
#include "cuda/device_memory.h"

namespace convnet::cuda {

namespace {

constexpr unsigned kFillThreads = 256;
// Enough blocks to fill any GPU several times over; the grid-stride loop covers the rest.
constexpr size_t kMaxFillBlocks = 4096;

__global__ void fill_kernel(float* __restrict__ ptr, size_t n, float value) {
  const size_t stride = static_cast<size_t>(blockDim.x) * gridDim.x;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) ptr[i] = value;
}

}  // namespace

void fill_device(float* ptr, size_t n, float value, cudaStream_t stream) {
  if (n == 0) return;
  const size_t blocks = std::min((n + kFillThreads - 1) / kFillThreads, kMaxFillBlocks);
  fill_kernel<<<static_cast<unsigned>(blocks), kFillThreads, 0, stream>>>(ptr, n, value);
  CONVNET_CUDA_CHECK_LAUNCH("fill_kernel");
}

void copy_to_device(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return;
  CONVNET_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream));
  CONVNET_CUDA_CHECK(cudaStreamSynchronize(stream));
}

void copy_to_host(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return;
  CONVNET_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream));
  CONVNET_CUDA_CHECK(cudaStreamSynchronize(stream));
}

void copy_device_to_device(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return;
  CONVNET_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream));
}

}  // namespace convnet::cuda
