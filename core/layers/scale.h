// Scale: y = factor * x for any input shape, no parameters (airbench's logit scaling, 1/9).
#pragma once

#include "core/layers/layer.h"

namespace convnet {

class Scale final : public Layer {
 public:
  // Throws ConfigError naming the layer when factor is not finite.
  Scale(std::string name, float factor);

  std::string type() const override { return "scale"; }
  std::string description() const override;  // "scale 0.11111111"

  Shape configure(const Shape& input_shape) override;  // same shape; ConfigError on an empty shape
  void forward(const Tensor& x, Tensor& y, Mode mode) override;
  // dx = factor * dy.
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;
  bool backward_reads_input() const override { return false; }
  bool backward_reads_output() const override { return false; }

  float factor() const { return factor_; }

 private:
  float factor_;
};

}  // namespace convnet
