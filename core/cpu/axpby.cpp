#include "core/cpu/axpby.h"

#include "core/base/op_checks.h"
#include "core/cpu/parallel.h"

namespace convnet::cpu {

void axpby(float alpha, const Tensor& x, float beta, Tensor& y) {
  OpChecks::cpu("axpby").axpby(alpha, x, beta, y);
  const float* xp = x.f32();
  float* yp = y.f32();
  parallel_for(0, x.numel(), 1 << 16, [&](int64_t i0, int64_t i1) {
    if (beta == 0.0f) {
      for (int64_t i = i0; i < i1; ++i) yp[i] = alpha * xp[i];
    } else {
      for (int64_t i = i0; i < i1; ++i) yp[i] = alpha * xp[i] + beta * yp[i];
    }
  });
}

}  // namespace convnet::cpu
