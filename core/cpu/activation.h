// Elementwise activations (semantics of Backend::relu_* / gelu_*): any shape, y and dx have the
// input's shape, dx may alias dy.
#pragma once

#include "core/base/tensor.h"

namespace convnet::cpu {

// y may be f32 or bf16 (relu(x) rounded to nearest even); the caller decides whether bf16 is allowed.
void relu_forward(const Tensor& x, Tensor& y);
// dx = dy where y > 0, else 0; y f32 or bf16.
void relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx);
// y = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)).
void gelu_forward(const Tensor& x, Tensor& y);
// dx = dy * (Phi(x) + x * phi(x)).
void gelu_backward(const Tensor& x, const Tensor& dy, Tensor& dx);

}  // namespace convnet::cpu
