// Elementwise activations: ReLU and GELU (exact erf form), any input shape.
#pragma once

#include "core/layers/layer.h"

namespace convnet {

// What the elementwise activations share: no parameters, output shape = input shape.
class Activation : public Layer {
 public:
  explicit Activation(std::string name) : Layer(std::move(name)) {}
  std::string description() const override { return type(); }  // "relu", "gelu"
  Shape configure(const Shape& input_shape) override;          // same shape; ConfigError on an empty shape
};

class ReLU final : public Activation {
 public:
  using Activation::Activation;
  std::string type() const override { return "relu"; }
  void forward(const Tensor& x, Tensor& y, Mode mode) override;
  // Uses the forward output (y > 0), so y must be the output of the matching forward.
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;
  bool backward_reads_input() const override { return false; }
  bool backward_reads_output() const override { return true; }
  // In bf16 precision: y = relu(x) rounded to nearest even, the value a conv would read anyway.
  bool writes_bf16_output() const override;
};

class GELU final : public Activation {
 public:
  using Activation::Activation;
  std::string type() const override { return "gelu"; }
  void forward(const Tensor& x, Tensor& y, Mode mode) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;
  bool backward_reads_input() const override { return true; }
  bool backward_reads_output() const override { return false; }
};

}  // namespace convnet
