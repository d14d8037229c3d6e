#include "core/cpu/bias.h"

#include <algorithm>
#include <vector>

#include "core/cpu/parallel.h"
#include "core/cpu/reduce.h"

namespace convnet::cpu {

void add_bias(float* y, int64_t rows, int64_t channels, const float* bias) {
  // At least ~16K elements per chunk, so small matrices stay on one thread.
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 14) / std::max<int64_t>(channels, 1));
  parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* row = y + r * channels;
      for (int64_t k = 0; k < channels; ++k) row[k] += bias[k];
    }
  });
}

void bias_gradient(const float* dy, int64_t rows, int64_t channels, float* dbias) {
  std::vector<double> sums(static_cast<size_t>(channels));
  column_sums(dy, rows, channels, sums.data());
  for (int64_t k = 0; k < channels; ++k) dbias[k] = static_cast<float>(sums[static_cast<size_t>(k)]);
}

}  // namespace convnet::cpu
