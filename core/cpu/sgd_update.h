// One fused SGD update of a parameter tensor (semantics of Backend::sgd_update / SgdStep).
#pragma once

#include "core/base/backend.h"

namespace convnet::cpu {

// param, grad [any shape]; momentum_buf same shape (may be undefined when step.momentum == 0);
// bf16_copy (bf16, same shape) null or written with the updated param rounded to nearest even.
void sgd_update(Tensor& param, const Tensor& grad, Tensor& momentum_buf, const SgdStep& step, Tensor* bf16_copy);

}  // namespace convnet::cpu
