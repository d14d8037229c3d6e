// Conv2d: 2-D convolution of an NHWC image with a KRSC filter bank (square kernel).
#pragma once

#include "core/layers/layer.h"

namespace convnet {

class Conv2d final : public Layer {
 public:
  // Throws ConfigError naming the layer when out_channels, kernel, stride or dilation is not
  // positive or padding is negative.
  Conv2d(std::string name, int out_channels, int kernel, int stride = 1, int padding = 0, int dilation = 1,
         bool bias = true);

  std::string type() const override { return "conv2d"; }
  // "conv2d 3x3 64->128 s1 p1" (+ " d2" when dilated, " no-bias" without bias).
  std::string description() const override;

  // {H, W, C} -> {P, Q, K}. ConfigError when the input is not rank 3 or the (dilated) kernel does
  // not fit in the padded input, e.g. "conv5: input 1x1 is smaller than the 3x3 kernel".
  Shape configure(const Shape& input_shape) override;
  // "weight" [K, R, S, C] (exported as OIHW), "bias" [K] (no weight decay).
  void allocate_parameters() override;
  // Kaiming normal, fan_out mode (torchvision VGG): std = sqrt(2 / (K * R * S)); bias zero.
  void initialize(Rng& rng) override;

  void forward(const Tensor& x, Tensor& y, Mode mode) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;

  std::vector<Parameter*> parameters() override;
  int64_t forward_flops() const override;  // 2 * P * Q * K * R * S * C

  int in_channels() const { return in_channels_; }
  int out_channels() const { return out_channels_; }
  int kernel() const { return kernel_; }
  bool has_bias() const { return bias_; }
  Conv2dParams conv_params() const;

 private:
  int out_channels_, kernel_, stride_, padding_, dilation_;
  bool bias_;
  int in_channels_ = 0;
  Parameter weight_, bias_param_;
};

}  // namespace convnet
