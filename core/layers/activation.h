// Elementwise activations: ReLU and GELU (exact erf form), any input shape.
#pragma once

#include "core/layers/layer.h"

namespace convnet {

class ReLU final : public Layer {
 public:
  explicit ReLU(std::string name) : Layer(std::move(name)) {}
  std::string type() const override { return "relu"; }
  std::string description() const override { return "relu"; }
  Shape configure(const Shape& input_shape) override;  // same shape; ConfigError on an empty shape
  void forward(const Tensor& x, Tensor& y, Mode mode) override;
  // Uses the forward output (y > 0), so y must be the output of the matching forward.
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;
};

class GELU final : public Layer {
 public:
  explicit GELU(std::string name) : Layer(std::move(name)) {}
  std::string type() const override { return "gelu"; }
  std::string description() const override { return "gelu"; }
  Shape configure(const Shape& input_shape) override;  // same shape; ConfigError on an empty shape
  void forward(const Tensor& x, Tensor& y, Mode mode) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;
};

}  // namespace convnet
