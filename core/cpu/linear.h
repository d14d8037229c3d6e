// Fully connected layer through sgemm (semantics of Backend::linear_*): x [N, in], w [out, in].
#pragma once

#include "core/base/tensor.h"

namespace convnet::cpu {

// y [N, out] = x w^T (+ bias [out]).
void linear_forward(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y);
// dx = dy w (skipped when null), dw = dy^T x, dbias = column sums of dy (skipped when null).
void linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor& dw, Tensor* dbias);

}  // namespace convnet::cpu
