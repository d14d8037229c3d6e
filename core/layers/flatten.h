// Flatten: [N, H, W, C] -> [N, H*W*C], a copy in memory order.
//
// Our activations are NHWC, so the flat index is (h * W + w) * C + c, whereas PyTorch flattens
// NCHW as (c * H + h) * W + w. The numbers differ only by a fixed permutation: the checkpoint
// writer uses input_shape() (recorded by configure) to permute the columns of the Linear layer
// that follows, so exported weights match torch.flatten.
#pragma once

#include "core/layers/layer.h"

namespace convnet {

class Flatten final : public Layer {
 public:
  explicit Flatten(std::string name) : Layer(std::move(name)) {}
  std::string type() const override { return "flatten"; }
  std::string description() const override;  // "flatten [4, 4, 64] -> 1024"
  // Any non-empty shape -> {numel}; the input shape stays available as input_shape().
  Shape configure(const Shape& input_shape) override;
  void forward(const Tensor& x, Tensor& y, Mode mode) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;
  bool backward_reads_input() const override { return false; }
  bool backward_reads_output() const override { return false; }
};

}  // namespace convnet
