#include "core/layers/activation.h"

#include "core/layers/layer_util.h"

namespace convnet {

namespace {
void check_elementwise_input(const Layer& layer, const Shape& in) {
  if (in.empty() || shape_numel(in) <= 0)
    throw ConfigError(fmt::format("{}: expects a non-empty input, got {}", layer.name(), shape_str(in)));
}
}  // namespace

Shape ReLU::configure(const Shape& in) {
  check_elementwise_input(*this, in);
  return record_shapes(in, in);
}

void ReLU::forward(const Tensor& x, Tensor& y, Mode /*mode*/) {
  layer_util::check_io(*this, x, y);
  backend().relu_forward(x, y);
}

void ReLU::backward(const Tensor& /*x*/, const Tensor& y, const Tensor& dy, Tensor* dx) {
  if (dx) backend().relu_backward(y, dy, *dx);
}

Shape GELU::configure(const Shape& in) {
  check_elementwise_input(*this, in);
  return record_shapes(in, in);
}

void GELU::forward(const Tensor& x, Tensor& y, Mode /*mode*/) {
  layer_util::check_io(*this, x, y);
  backend().gelu_forward(x, y);
}

void GELU::backward(const Tensor& x, const Tensor& /*y*/, const Tensor& dy, Tensor* dx) {
  if (dx) backend().gelu_backward(x, dy, *dx);
}

}  // namespace convnet
