// dbias[k] = sum over the rows (n, p, q) of dy[row][k], for every convolution version: the rows are
// summed in fixed-size chunks side by side, then the chunk sums in chunk order, so the result does
// not depend on scheduling (no atomics). dy is float or bf16; the sums are fp32.
#include <algorithm>

#include "cuda/check.h"
#include "cuda/conv_gemm_common.cuh"
#include "cuda/conv_tc_kernels.h"
#include "cuda/ptx.cuh"

namespace convnet::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kBiasChannels = 32;                     // channels per block (one warp across)
constexpr int kBiasLanes = kThreads / kBiasChannels;  // rows summed side by side
static_assert(kConvMaxBiasChunks <= kThreads, "bias_total_kernel sums at most one chunk per thread");

__device__ __forceinline__ float value(const float* p) {
  return __ldg(p);
}
__device__ __forceinline__ float value(const uint16_t* p) {
  return ptx::from_bf16(*p);
}

// out[chunk][k] = sum of dy[row][k] over the chunk's rows: lane j takes rows j, j + 8, ... in
// order, then the 8 lane sums are added in lane order.
template <class E>
__global__ void bias_chunk_kernel(const E* __restrict__ dy, float* __restrict__ out, int64_t rows, int K,
                                  int64_t rows_per_chunk) {
  __shared__ float lane_sum[kBiasLanes][kBiasChannels + 1];
  const int kx = static_cast<int>(threadIdx.x) % kBiasChannels, lane = static_cast<int>(threadIdx.x) / kBiasChannels;
  const int k = static_cast<int>(blockIdx.x) * kBiasChannels + kx;
  const int64_t begin = int64_t{blockIdx.y} * rows_per_chunk;
  const int64_t end = min(begin + rows_per_chunk, rows);
  float sum = 0.0f;
  if (k < K)
    for (int64_t r = begin + lane; r < end; r += kBiasLanes) sum += value(dy + r * K + k);
  lane_sum[lane][kx] = sum;
  __syncthreads();
  if (lane == 0 && k < K) {
    float total = 0.0f;
#pragma unroll
    for (int j = 0; j < kBiasLanes; ++j) total += lane_sum[j][kx];
    out[int64_t{blockIdx.y} * K + k] = total;
  }
}

// dbias[k] = sum of the chunk sums (chunks <= kThreads): a fixed-shape tree in shared memory.
__global__ void bias_total_kernel(const float* __restrict__ chunk_sums, float* __restrict__ dbias, int chunks, int K) {
  __shared__ float part[kThreads];
  const int k = static_cast<int>(blockIdx.x);
  const int t = static_cast<int>(threadIdx.x);
  part[t] = t < chunks ? chunk_sums[int64_t{t} * K + k] : 0.0f;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (t < half) part[t] += part[t + half];
    __syncthreads();
  }
  if (t == 0) dbias[k] = part[0];
}

}  // namespace

template <class E>
void detail::bias_gradient(const E* dy, float* dbias, int64_t rows, int k, int64_t rows_per_chunk, float* chunk_sums,
                           cudaStream_t stream) {
  const int chunks = static_cast<int>(gemm::ceil_div(rows, rows_per_chunk));
  float* chunk_out = chunks > 1 ? chunk_sums : dbias;
  const dim3 grid(static_cast<unsigned>(gemm::ceil_div(k, kBiasChannels)), static_cast<unsigned>(chunks));
  bias_chunk_kernel<E><<<grid, kThreads, 0, stream>>>(dy, chunk_out, rows, k, rows_per_chunk);
  CONVNET_CUDA_CHECK_LAUNCH("conv bias_chunk_kernel");
  if (chunks > 1) {
    bias_total_kernel<<<static_cast<unsigned>(k), kThreads, 0, stream>>>(chunk_out, dbias, chunks, k);
    CONVNET_CUDA_CHECK_LAUNCH("conv bias_total_kernel");
  }
}

template void detail::bias_gradient<float>(const float*, float*, int64_t, int, int64_t, float*, cudaStream_t);
template void detail::bias_gradient<uint16_t>(const uint16_t*, float*, int64_t, int, int64_t, float*, cudaStream_t);

}  // namespace convnet::cuda
