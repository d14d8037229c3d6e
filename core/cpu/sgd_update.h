// One fused SGD update of a parameter tensor (semantics of Backend::sgd_update / SgdStep).
#pragma once

#include "core/base/backend.h"

namespace convnet::cpu {

// param, grad [any shape]; momentum_buf same shape (may be undefined when step.momentum == 0).
void sgd_update(Tensor& param, const Tensor& grad, Tensor& momentum_buf, const SgdStep& step);

}  // namespace convnet::cpu
