// y = alpha * x + beta * y (semantics of Backend::axpby): the scale layer and weight averaging.
#pragma once

#include "core/base/tensor.h"

namespace convnet::cpu {

// beta == 0 overwrites y without reading it; x may alias y.
void axpby(float alpha, const Tensor& x, float beta, Tensor& y);

}  // namespace convnet::cpu
