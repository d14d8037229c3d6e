// One-dimensional grid-stride launches, shared by the elementwise kernels (include from .cu files
// only: it holds device code). Every output element is computed independently, so the block count
// changes the speed, never the result.
#pragma once

#include <algorithm>
#include <cstdint>

namespace convnet::cuda {

constexpr int kThreads = 256;  // threads per block of every grid-stride kernel
// Enough blocks to fill any current GPU several times over; the grid-stride loops cover the rest.
constexpr int64_t kMaxBlocks = 8192;

// Blocks for `work` items of one thread each, at least one, capped at kMaxBlocks.
inline unsigned grid_blocks(int64_t work) {
  return static_cast<unsigned>(std::clamp<int64_t>((work + kThreads - 1) / kThreads, 1, kMaxBlocks));
}

__device__ __forceinline__ int64_t thread_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() {
  return static_cast<int64_t>(blockDim.x) * gridDim.x;
}

}  // namespace convnet::cuda
