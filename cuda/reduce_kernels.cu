#include "cuda/check.h"
#include "cuda/reduce_kernels.h"

namespace convnet::cuda {

namespace {

constexpr int kReduceThreads = kReduceCols * kReduceLanes;

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// Stage 2 over a [chunks, width] double matrix: one block per 32-column tile; lane y adds chunks
// y, y + 8, ... in order, then lane 0 adds the 8 lane sums in lane order.
__global__ void __launch_bounds__(kReduceThreads)
    combine_partials_kernel(const double* __restrict__ partials, int64_t chunks, int64_t width,
                            double* __restrict__ out) {
  __shared__ double lane_sums[kReduceLanes][kReduceCols];
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kReduceCols + threadIdx.x;
  double acc = 0.0;
  if (col < width)
    for (int64_t chunk = threadIdx.y; chunk < chunks; chunk += kReduceLanes) acc += partials[chunk * width + col];
  lane_sums[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && col < width) {
    double sum = 0.0;
    for (int lane = 0; lane < kReduceLanes; ++lane) sum += lane_sums[lane][threadIdx.x];
    out[col] = sum;
  }
}

__global__ void __launch_bounds__(kReduceThreads)
    column_sum_partials_kernel(const float* __restrict__ data, ColumnReducePlan plan, double* __restrict__ partials) {
  const int64_t cols = plan.cols;
  column_partials<1>(plan, partials, [=](int64_t row, int64_t col, double* acc) {
    acc[0] += static_cast<double>(data[row * cols + col]);
  });
}

}  // namespace

void launch_combine_partials(const ColumnReducePlan& plan, const double* partials, double* out, cudaStream_t stream) {
  const int64_t width = plan.values * plan.cols;
  const auto blocks = static_cast<unsigned>(ceil_div(width, kReduceCols));
  combine_partials_kernel<<<blocks, ColumnReducePlan::block(), 0, stream>>>(partials, plan.chunks, width, out);
  CONVNET_CUDA_CHECK_LAUNCH("combine_partials_kernel");
}

void launch_column_sums(const float* data, int64_t rows, int64_t cols, double* partials, double* out,
                        cudaStream_t stream) {
  const ColumnReducePlan plan = ColumnReducePlan::make(rows, cols);
  if (plan.chunks > 0) {
    column_sum_partials_kernel<<<plan.grid(), ColumnReducePlan::block(), 0, stream>>>(data, plan, partials);
    CONVNET_CUDA_CHECK_LAUNCH("column_sum_partials_kernel");
  }
  launch_combine_partials(plan, partials, out, stream);
}

}  // namespace convnet::cuda
