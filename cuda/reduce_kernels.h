// Deterministic column reductions on the GPU: per-column sums over the rows of a row-major
// [rows, cols] matrix, accumulated in double, without atomics.
//
// Two stages. Stage 1 cuts the rows into chunks of kReduceChunkRows (a constant, so the cut
// depends on the shape only, never on the GPU) and one block per (chunk, 32-column tile) writes
// that chunk's partial sums; inside a block, 8 row lanes each add a fixed stride of rows and the
// lanes are combined in lane order. Stage 2 adds the partials chunk by chunk, again in a fixed
// order. Results are therefore bit-identical from run to run and from GPU to GPU.
//
// A stage-1 pass may produce several sums per column at once (`values`, e.g. sum dy and sum
// dy * xhat for batch-norm backward); the partials are laid out [chunk][value][col], so stage 2
// is one column sum over a [chunks, values * cols] matrix and its output is [value][col].
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace convnet::cuda {

inline constexpr int kReduceCols = 32;            // columns per block: one warp reads 128 contiguous bytes
inline constexpr int kReduceLanes = 8;            // row lanes per block (blockDim = 32 x 8 = 256 threads)
inline constexpr int64_t kReduceChunkRows = 256;  // rows per stage-1 chunk (32 per lane)

// Largest column count a stage-1 pass covers (column tiles run along gridDim.y, at most 65535).
inline constexpr int64_t kReduceMaxCols = int64_t{65535} * kReduceCols;

// How a [rows, cols] reduction producing `values` sums per column is cut into blocks.
// Preconditions (the caller validates them; kernel files do not throw): rows >= 0,
// 0 < cols <= kReduceMaxCols, 1 <= values <= 4.
struct ColumnReducePlan {
  int64_t rows = 0, cols = 0;
  int values = 1;
  int64_t chunks = 0;     // ceil(rows / kReduceChunkRows); 0 when rows == 0
  int64_t col_tiles = 0;  // ceil(cols / kReduceCols)

  static ColumnReducePlan make(int64_t rows, int64_t cols, int values = 1) {
    ColumnReducePlan plan;
    plan.rows = rows;
    plan.cols = cols;
    plan.values = values;
    plan.chunks = (rows + kReduceChunkRows - 1) / kReduceChunkRows;
    plan.col_tiles = (cols + kReduceCols - 1) / kReduceCols;
    return plan;
  }
  // Device bytes of the stage-1 partial sums: chunks x values x cols doubles (0 when rows == 0).
  size_t partial_bytes() const {
    return static_cast<size_t>(chunks) * static_cast<size_t>(values) * static_cast<size_t>(cols) * sizeof(double);
  }
  // Stage-1 launch geometry: x = chunk, y = column tile; 32 x 8 threads.
  dim3 grid() const { return dim3(static_cast<unsigned>(chunks), static_cast<unsigned>(col_tiles)); }
  static dim3 block() { return dim3(kReduceCols, kReduceLanes); }
};

// Stage 2: out[j] = sum over chunk of partials[chunk * width + j] for j in [0, width), where
// width = plan.values * plan.cols, chunks added in order. Writes zeros when plan.chunks == 0.
void launch_combine_partials(const ColumnReducePlan& plan, const double* partials, double* out, cudaStream_t stream);

// Both stages for plain column sums of a float [rows, cols] matrix: out[c] = sum over r of
// data[r * cols + c]. `partials` is device scratch of ColumnReducePlan::make(rows, cols)
// .partial_bytes() bytes; out holds cols doubles and must not overlap it.
void launch_column_sums(const float* data, int64_t rows, int64_t cols, double* partials, double* out,
                        cudaStream_t stream);

#ifdef __CUDACC__
// The column the calling thread reduces inside column_partials (may be >= cols in the last tile),
// so a kernel can load per-column constants once before the row loop.
__device__ inline int64_t column_partials_col() {
  return static_cast<int64_t>(blockIdx.y) * kReduceCols + threadIdx.x;
}

// Stage-1 body for kernels launched with plan.grid() x ColumnReducePlan::block(): the calling
// block adds term(row, col, acc) for the rows of chunk blockIdx.x and columns of tile blockIdx.y
// (term adds Values doubles into acc[0..Values)) and writes partials[(chunk * Values + v) * cols
// + col]. Must be called by every thread of the block (it synchronizes).
template <int Values, class Term>
__device__ void column_partials(const ColumnReducePlan& plan, double* partials, Term term) {
  static_assert(Values >= 1 && Values <= 4, "column_partials: 1 to 4 values per column");
  __shared__ double lane_sums[Values][kReduceLanes][kReduceCols];
  const int64_t chunk = blockIdx.x;
  const int64_t col = column_partials_col();
  const int64_t row_begin = chunk * kReduceChunkRows;
  const int64_t row_end = row_begin + kReduceChunkRows < plan.rows ? row_begin + kReduceChunkRows : plan.rows;
  double acc[Values];
  for (int v = 0; v < Values; ++v) acc[v] = 0.0;
  if (col < plan.cols)
    for (int64_t row = row_begin + threadIdx.y; row < row_end; row += kReduceLanes) term(row, col, acc);
  for (int v = 0; v < Values; ++v) lane_sums[v][threadIdx.y][threadIdx.x] = acc[v];
  __syncthreads();
  if (threadIdx.y == 0 && col < plan.cols) {
    for (int v = 0; v < Values; ++v) {
      double sum = 0.0;
      for (int lane = 0; lane < kReduceLanes; ++lane) sum += lane_sums[v][lane][threadIdx.x];
      partials[(chunk * Values + v) * plan.cols + col] = sum;
    }
  }
}
#endif

}  // namespace convnet::cuda
