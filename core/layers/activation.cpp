#include "core/layers/activation.h"

#include "core/layers/layer_util.h"

namespace convnet {

Shape Activation::configure(const Shape& in) {
  layer_util::check_nonempty_input(*this, in);
  return record_shapes(in, in);
}

void ReLU::forward(const Tensor& x, Tensor& y, Mode /*mode*/) {
  layer_util::check_io(*this, x, y);
  backend().relu_forward(x, y);
}

void ReLU::backward(const Tensor& /*x*/, const Tensor& y, const Tensor& dy, Tensor* dx) {
  if (dx) backend().relu_backward(y, dy, *dx);
}

bool ReLU::writes_bf16_output() const {
  return backend().precision() == Precision::bf16;
}

void GELU::forward(const Tensor& x, Tensor& y, Mode /*mode*/) {
  layer_util::check_io(*this, x, y);
  backend().gelu_forward(x, y);
}

void GELU::backward(const Tensor& x, const Tensor& /*y*/, const Tensor& dy, Tensor* dx) {
  if (dx) backend().gelu_backward(x, dy, *dx);
}

}  // namespace convnet
