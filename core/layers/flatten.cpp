#include "core/layers/flatten.h"

#include "core/layers/layer_util.h"

namespace convnet {

std::string Flatten::description() const {
  if (output_shape().empty()) return "flatten";
  return fmt::format("flatten {} -> {}", shape_str(input_shape()), output_shape()[0]);
}

Shape Flatten::configure(const Shape& in) {
  layer_util::check_nonempty_input(*this, in);
  return record_shapes(in, {shape_numel(in)});
}

void Flatten::forward(const Tensor& x, Tensor& y, Mode /*mode*/) {
  layer_util::check_io(*this, x, y);
  Tensor y_view = y.reshaped(x.shape());
  backend().copy(y_view, x);
}

void Flatten::backward(const Tensor& /*x*/, const Tensor& /*y*/, const Tensor& dy, Tensor* dx) {
  if (!dx) return;
  backend().copy(*dx, dy.reshaped(dx->shape()));
}

}  // namespace convnet
