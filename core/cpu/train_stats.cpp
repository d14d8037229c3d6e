#include "core/cpu/train_stats.h"

#include <cmath>

#include "core/base/op_checks.h"
#include "core/base/top1.h"

namespace convnet::cpu {

void accumulate_train_stats(const Tensor& loss, const Tensor& logits, const Tensor& labels, int64_t step,
                            Tensor& stats) {
  const LossGeometry g = OpChecks::cpu("accumulate_train_stats").accumulate_train_stats(loss, logits, labels, stats);
  const float* z = logits.f32();
  const int32_t* y = labels.data<int32_t>();
  int64_t correct = 0;
  for (int64_t i = 0; i < g.n; ++i) correct += top1(z + i * g.k, g.k) == y[i];
  double* s = stats.data<double>();
  const float value = loss.f32()[0];
  s[0] += static_cast<double>(value);
  s[1] += static_cast<double>(correct);
  if (s[2] < 0 && !std::isfinite(value)) {
    s[2] = static_cast<double>(step);
    s[3] = static_cast<double>(value);
  }
}

}  // namespace convnet::cpu
