#include "core/layers/scale.h"

#include <cmath>

#include "core/layers/layer_util.h"

namespace convnet {

Scale::Scale(std::string name, float factor) : Layer(std::move(name)), factor_(factor) {
  if (!std::isfinite(factor)) config_error("factor must be finite, got {}", factor);
}

std::string Scale::description() const {
  return fmt::format("scale {}", factor_);
}

Shape Scale::configure(const Shape& in) {
  layer_util::check_nonempty_input(*this, in);
  return record_shapes(in, in);
}

void Scale::forward(const Tensor& x, Tensor& y, Mode /*mode*/) {
  layer_util::check_io(*this, x, y);
  backend().axpby(factor_, x, 0.0f, y);
}

void Scale::backward(const Tensor& /*x*/, const Tensor& /*y*/, const Tensor& dy, Tensor* dx) {
  if (dx) backend().axpby(factor_, dy, 0.0f, *dx);
}

}  // namespace convnet
