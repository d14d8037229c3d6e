// The split-K reduction shared by the v4 passes (the slices' fp32 partials added in slice order,
// then the epilogue: bias, activation, rounding to the output type), and ConvOutputStats' passes
// over y and over the row blocks' partials.
#include <algorithm>

#include "cuda/conv_tc_common.cuh"

namespace convnet::cuda::tc {

template <class O>
void sum_slices(const float* partial, O* out, int64_t count, int columns, int splits, Epilogue ep,
                cudaStream_t stream) {
  constexpr int kThreads = 256;
  const int64_t blocks = std::min<int64_t>(ceil_div(count, kThreads), 4096);
  sum_slices_kernel<O>
      <<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(partial, out, count, columns, splits, ep);
  CONVNET_CUDA_CHECK_LAUNCH("conv sum_slices_kernel (v4)");
}

namespace {

template <class E>
__global__ void column_moments_kernel(const E* __restrict__ y, int64_t rows, int cols, int block_rows,
                                      float* __restrict__ partial) {
  const int64_t first = int64_t{blockIdx.x} * block_rows, last = min(first + block_rows, rows);
  const int64_t blocks = gridDim.x;
  for (int c = static_cast<int>(threadIdx.x); c < cols; c += static_cast<int>(blockDim.x)) {
    float s = 0.0f, q = 0.0f;
    for (int64_t r = first; r < last; ++r) {
      const float v = stored_value(y[r * cols + c]);
      s += v;
      q += v * v;
    }
    partial[int64_t{blockIdx.x} * cols + c] = s;
    partial[(blocks + blockIdx.x) * cols + c] = q;
  }
}

__global__ void column_moment_totals_kernel(const float* __restrict__ partial, int64_t row_blocks, int cols,
                                            float* __restrict__ sum, float* __restrict__ sum_sq) {
  for (int64_t c = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; c < cols; c += int64_t{blockDim.x} * gridDim.x) {
    float s = 0.0f, q = 0.0f;
    for (int64_t b = 0; b < row_blocks; ++b) {
      s += partial[b * cols + c];
      q += partial[(row_blocks + b) * cols + c];
    }
    sum[c] = s;
    sum_sq[c] = q;
  }
}

}  // namespace

template <class E>
void column_moments(const E* y, int64_t rows, int cols, int block_rows, float* partial, cudaStream_t stream) {
  const int64_t blocks = ceil_div(rows, block_rows);
  column_moments_kernel<E><<<static_cast<unsigned>(blocks), 256, 0, stream>>>(y, rows, cols, block_rows, partial);
  CONVNET_CUDA_CHECK_LAUNCH("conv column_moments_kernel (v4)");
}

void column_moment_totals(const float* partial, int64_t row_blocks, int cols, const ConvOutputStats& stats,
                          cudaStream_t stream) {
  constexpr int kThreads = 256;
  const int64_t blocks = std::min<int64_t>(ceil_div(cols, kThreads), 4096);
  column_moment_totals_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(partial, row_blocks, cols,
                                                                                      stats.sum, stats.sum_sq);
  CONVNET_CUDA_CHECK_LAUNCH("conv column_moment_totals_kernel (v4)");
}

template void column_moments<float>(const float*, int64_t, int, int, float*, cudaStream_t);
template void column_moments<uint16_t>(const uint16_t*, int64_t, int, int, float*, cudaStream_t);

template void sum_slices<float>(const float*, float*, int64_t, int, int, Epilogue, cudaStream_t);
template void sum_slices<uint16_t>(const float*, uint16_t*, int64_t, int, int, Epilogue, cudaStream_t);

}  // namespace convnet::cuda::tc
