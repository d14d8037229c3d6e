// Identity: y = x, dx = dy (copies). A named point in a graph: a branch that passes its input
// through, or a place to read from with `from:`.
#pragma once

#include "core/layers/layer.h"

namespace convnet {

class Identity final : public Layer {
 public:
  explicit Identity(std::string name) : Layer(std::move(name)) {}
  std::string type() const override { return "identity"; }
  std::string description() const override { return "identity"; }
  // Any non-empty shape, unchanged.
  Shape configure(const Shape& input_shape) override;
  void forward(const Tensor& x, Tensor& y, Mode mode) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;
  bool backward_reads_input() const override { return false; }
  bool backward_reads_output() const override { return false; }
};

}  // namespace convnet
