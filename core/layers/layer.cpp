#include "core/layers/layer.h"

namespace convnet {

Shape Layer::configure_inputs(const std::vector<Shape>& input_shapes) {
  if (input_shapes.size() != 1) config_error("a {} layer takes one input, got {}", type(), input_shapes.size());
  return configure(input_shapes[0]);
}

void Layer::forward_inputs(std::span<const Tensor* const> xs, Tensor& y, Mode mode) {
  CONVNET_CHECK(xs.size() == 1, "{}: {} inputs for a single-input layer", name_, xs.size());
  forward(*xs[0], y, mode);
}

void Layer::backward_inputs(std::span<const Tensor* const> xs, const Tensor& y, const Tensor& dy,
                            std::span<Tensor* const> dxs) {
  CONVNET_CHECK(xs.size() == 1 && dxs.size() == 1, "{}: {} inputs for a single-input layer", name_, xs.size());
  backward(*xs[0], y, dy, dxs[0]);
}

}  // namespace convnet
