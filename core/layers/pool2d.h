// Pooling layers over NHWC images: MaxPool2d, AvgPool2d (square windows) and GlobalAvgPool.
#pragma once

#include "core/layers/layer.h"

namespace convnet {

// Shared configuration of the windowed pools (PyTorch floor mode: partial windows are dropped).
class Pool2d : public Layer {
 public:
  // stride 0 means "same as kernel" (the PyTorch default). Throws ConfigError naming the layer
  // when kernel or stride is not positive, padding is negative, or padding > kernel / 2 (PyTorch's
  // rule, which also guarantees every window holds at least one real pixel).
  Pool2d(std::string name, int kernel, int stride, int padding);

  // "max_pool2d 3x3 s2" (+ " p1" when padded).
  std::string description() const override;
  // {H, W, C} -> {P, Q, C}; ConfigError when the input is not rank 3 or the padded input is
  // smaller than the window.
  Shape configure(const Shape& input_shape) override;

  Pool2dParams pool_params() const;
  Window window() const override { return {kernel_, kernel_, stride_, stride_, false}; }
  int kernel() const { return kernel_; }
  int stride() const { return stride_; }
  int padding() const { return padding_; }

 private:
  int kernel_, stride_, padding_;
};

class MaxPool2d final : public Pool2d {
 public:
  MaxPool2d(std::string name, int kernel, int stride = 0, int padding = 0);
  std::string type() const override { return "max_pool2d"; }
  // Keeps the argmax of every window (i32 [N, P, Q, C]) for backward.
  void forward(const Tensor& x, Tensor& y, Mode mode) override;
  // Routes dy to the argmax of the last forward.
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;
  bool backward_reads_input() const override { return false; }
  bool backward_reads_output() const override { return false; }
  int64_t state_bytes(int64_t batch) const override;  // the argmax

 private:
  Tensor argmax_;
};

class AvgPool2d final : public Pool2d {
 public:
  // Padding counts as zeros in the average (PyTorch count_include_pad=True).
  AvgPool2d(std::string name, int kernel, int stride = 0, int padding = 0);
  std::string type() const override { return "avg_pool2d"; }
  void forward(const Tensor& x, Tensor& y, Mode mode) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;
  bool backward_reads_input() const override { return false; }
  bool backward_reads_output() const override { return false; }
};

// Mean over all pixels: {H, W, C} -> {C} (PyTorch AdaptiveAvgPool2d(1) followed by flatten).
class GlobalAvgPool final : public Layer {
 public:
  explicit GlobalAvgPool(std::string name) : Layer(std::move(name)) {}
  std::string type() const override { return "global_avg_pool"; }
  std::string description() const override { return "global_avg_pool"; }
  // ConfigError when the input is not rank 3.
  Shape configure(const Shape& input_shape) override;
  void forward(const Tensor& x, Tensor& y, Mode mode) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;
  bool backward_reads_input() const override { return false; }
  bool backward_reads_output() const override { return false; }
  Window window() const override { return {1, 1, 1, 1, true}; }

 private:
  Pool2dParams whole_image() const;  // one H x W window
};

}  // namespace convnet
