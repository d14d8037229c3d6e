// Deterministic per-column reductions in double precision.
//
// Rows are cut into fixed blocks of kReduceBlockRows (independent of the thread count); blocks are
// accumulated in parallel into their own partial sums, and the partials are added in block order.
// So a sum over N*H*W rows gives bit-identical results with any number of threads.
#pragma once

#include <cstdint>
#include <functional>

namespace convnet {

inline constexpr int64_t kReduceBlockRows = 512;

// out[0..cols) = sum over all blocks of what accumulate(row_begin, row_end, acc) adds into the
// zero-initialised acc[0..cols) for its block of rows. accumulate must only add into acc.
void column_reduce(int64_t rows, int64_t cols,
                   const std::function<void(int64_t row_begin, int64_t row_end, double* acc)>& accumulate, double* out);

// out[c] = sum over r of data[r * cols + c] for a row-major [rows, cols] matrix.
void column_sums(const float* data, int64_t rows, int64_t cols, double* out);

}  // namespace convnet
