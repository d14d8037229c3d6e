#include "core/cpu/reduce.h"

#include <algorithm>
#include <vector>

#include "core/cpu/parallel.h"

namespace convnet {

void column_reduce(int64_t rows, int64_t cols,
                   const std::function<void(int64_t row_begin, int64_t row_end, double* acc)>& accumulate,
                   double* out) {
  std::fill(out, out + cols, 0.0);
  if (rows <= 0 || cols <= 0) return;
  const int64_t blocks = (rows + kReduceBlockRows - 1) / kReduceBlockRows;
  std::vector<double> partial(static_cast<size_t>(blocks * cols), 0.0);
  parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t r0 = b * kReduceBlockRows;
      accumulate(r0, std::min(rows, r0 + kReduceBlockRows), partial.data() + b * cols);
    }
  });
  for (int64_t b = 0; b < blocks; ++b) {
    const double* p = partial.data() + b * cols;
    for (int64_t c = 0; c < cols; ++c) out[c] += p[c];
  }
}

void column_sums(const float* data, int64_t rows, int64_t cols, double* out) {
  column_reduce(
      rows, cols,
      [&](int64_t r0, int64_t r1, double* acc) {
        for (int64_t r = r0; r < r1; ++r) {
          const float* row = data + r * cols;
          for (int64_t c = 0; c < cols; ++c) acc[c] += row[c];
        }
      },
      out);
}

}  // namespace convnet
