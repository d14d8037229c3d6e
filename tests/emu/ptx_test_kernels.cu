// Kernels for tests/emu/ptx_emulation_test.cpp written as CUDA sources, so that the test covers
// what tests/emu/cuda_to_cpp.py rewrites in them: `extern __shared__` declarations (three
// spellings, one over two lines), launches asking for dynamic shared memory, and
// cudaFuncSetAttribute under CONVNET_CUDA_CHECK. They include "cuda/ptx.cuh" as the tensor-core
// kernels do, which the emulation's include path resolves to tests/emu/fake/cuda/ptx.cuh.
#include "cuda/check.h"
#include "cuda/ptx.cuh"
#include "tests/emu/ptx_test_kernels.h"

namespace convnet::emu_test {
namespace {

namespace ptx = convnet::cuda::ptx;

__global__ void reverse_chunks_kernel(const float4* in, float4* out, int chunks) {
  extern __shared__ __align__(16) unsigned char staging_bytes[];
  float4* const staging = reinterpret_cast<float4*>(staging_bytes);
  for (int i = static_cast<int>(threadIdx.x); i < chunks; i += static_cast<int>(blockDim.x))
    ptx::cp_async_16(staging + i, in + i, true);
  ptx::cp_async_commit();
  ptx::cp_async_wait<0>();
  __syncthreads();  // every issuer has waited: all chunks are in
  for (int i = static_cast<int>(threadIdx.x); i < chunks; i += static_cast<int>(blockDim.x))
    out[i] = staging[chunks - 1 - i];
}

__global__ void read_fresh_dynamic_shared_kernel(uint32_t* out, int words) {
  constexpr int kLineBefore = __LINE__;
  // clang-format off
  extern __shared__ uint32_t
      fresh[];  // over two lines on purpose
  // clang-format on
  static_assert(__LINE__ == kLineBefore + 5, "cuda_to_cpp.py keeps the line count of a declaration");
  for (int i = static_cast<int>(threadIdx.x); i < words; i += static_cast<int>(blockDim.x)) out[i] = fresh[i];
}

template <class T>
__global__ void fill_kernel(T* out, T value, int n) {
  extern __shared__ float4 fill_storage[];  // one name and type for every T, as nvcc requires
  T* const slots = reinterpret_cast<T*>(fill_storage);
  for (int i = static_cast<int>(threadIdx.x); i < n; i += static_cast<int>(blockDim.x)) slots[i] = value;
  __syncthreads();
  for (int i = static_cast<int>(threadIdx.x); i < n; i += static_cast<int>(blockDim.x)) out[i] = slots[n - 1 - i];
}

}  // namespace

void reverse_chunks(const float* in, float* out, int chunks, int max_dynamic_shared_bytes) {
  const size_t bytes = static_cast<size_t>(chunks) * 16;
  if (max_dynamic_shared_bytes > 0)
    CONVNET_CUDA_CHECK(cudaFuncSetAttribute(reverse_chunks_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            max_dynamic_shared_bytes));
  reverse_chunks_kernel<<<1, 128, bytes>>>(reinterpret_cast<const float4*>(in), reinterpret_cast<float4*>(out), chunks);
  CONVNET_CUDA_CHECK_LAUNCH("reverse_chunks_kernel");
}

void read_fresh_dynamic_shared(uint32_t* out, int words) {
  read_fresh_dynamic_shared_kernel<<<1, 64, static_cast<size_t>(words) * 4>>>(out, words);
  CONVNET_CUDA_CHECK_LAUNCH("read_fresh_dynamic_shared_kernel");
}

void fill_deduced(float* out, float value, int n, size_t shared_bytes) {
  fill_kernel<<<1, 64, shared_bytes>>>(out, value, n);  // T deduced from the arguments
  CONVNET_CUDA_CHECK_LAUNCH("fill_kernel");
}

}  // namespace convnet::emu_test
