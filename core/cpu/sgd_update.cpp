#include "core/cpu/sgd_update.h"

#include "core/base/op_checks.h"
#include "core/base/precision.h"
#include "core/cpu/parallel.h"

namespace convnet::cpu {

void sgd_update(Tensor& param, const Tensor& grad, Tensor& momentum_buf, const SgdStep& step, Tensor* bf16_copy) {
  OpChecks::cpu("sgd_update").sgd_update(param, grad, momentum_buf, step, bf16_copy);
  const bool use_momentum = step.momentum != 0.0f;
  float* pp = param.f32();
  const float* gp = grad.f32();
  float* bp = use_momentum ? momentum_buf.f32() : nullptr;
  uint16_t* cp = bf16_copy ? bf16_copy->data<uint16_t>() : nullptr;
  const float lr = step.lr, mom = step.momentum, wd = step.weight_decay;
  const float coupled_wd = step.decoupled_decay ? 0.0f : wd;
  const float decoupled_wd = step.decoupled_decay ? lr * wd : 0.0f;
  parallel_for(0, param.numel(), 1 << 14, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      float p = pp[i];
      const float g = gp[i] + coupled_wd * p;
      p -= decoupled_wd * p;
      float update = g;
      if (use_momentum) {
        const float buf = mom * bp[i] + g;
        bp[i] = buf;
        update = step.nesterov ? g + mom * buf : buf;
      }
      pp[i] = p - lr * update;
      if (cp) cp[i] = to_bf16_bits(pp[i]);
    }
  });
}

}  // namespace convnet::cpu
