// Dropout (semantics of Backend::dropout_*): element i is kept iff hash_uniform(seed, i) >= p,
// so the mask depends only on (seed, i) and is identical on every backend and thread count.
#pragma once

#include <cstdint>

#include "core/base/tensor.h"

namespace convnet::cpu {

// y = x * keep / (1 - p), mask (u8) = keep. p in [0, 1]; p == 1 drops everything (y = 0).
void dropout_forward(const Tensor& x, Tensor& y, Tensor& mask, float p, uint64_t seed);
// dx = dy * mask / (1 - p); dx may alias dy.
void dropout_backward(const Tensor& dy, const Tensor& mask, float p, Tensor& dx);

}  // namespace convnet::cpu
