// The predicted class of one row of logits: the index of its first maximum. One definition for
// the host (evaluation, the cpu backend) and the GPU kernels (constexpr, so nvcc compiles it for
// the device with --expt-relaxed-constexpr), so every backend counts the same predictions as
// correct. A NaN never wins a comparison: it is chosen only when it comes first.
#pragma once

#include <cstdint>

namespace convnet {

constexpr int64_t top1(const float* logits, int64_t k) {
  int64_t best = 0;
  for (int64_t j = 1; j < k; ++j)
    if (logits[j] > logits[best]) best = j;
  return best;
}

}  // namespace convnet
