// PadChannels: the parameter-free residual shortcut of He et al. 2016 ("option A"), as
// akamaster/pytorch_resnet_cifar10 writes it:
//   F.pad(x[:, :, ::stride, ::stride], (0, 0, 0, 0, before, after))
// i.e. y keeps every stride-th pixel of x in each direction (pixel (i * stride, j * stride), so
// an odd extent rounds up: ceil(H / stride)) and surrounds its C channels with `before` zero
// channels in front and `after` behind: {H, W, C} -> {ceil(H / s), ceil(W / s), before + C + after}.
// Backward: dx is dy's middle channels at the kept pixels and zero at the others.
#pragma once

#include "core/layers/layer.h"

namespace convnet {

class PadChannels final : public Layer {
 public:
  // ConfigError naming the layer when stride < 1 or before or after is negative.
  PadChannels(std::string name, int stride, int before, int after);

  std::string type() const override { return "pad_channels"; }
  std::string description() const override;  // "pad_channels s2 +8+8"

  // ConfigError when the input is not an image [H, W, C].
  Shape configure(const Shape& input_shape) override;
  // y = 0, then y's channels [before, before + C) = the subsampled x (Backend::fill and
  // copy_channels; the subsample is a 1x1 average pool with stride `stride`, which is exact).
  void forward(const Tensor& x, Tensor& y, Mode mode) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;
  bool backward_reads_input() const override { return false; }
  bool backward_reads_output() const override { return false; }
  Window window() const override { return {1, 1, stride_, stride_, false}; }
  int64_t state_bytes(int64_t batch) const override;  // the subsampling scratch

  int stride() const { return stride_; }
  int before() const { return before_; }
  int after() const { return after_; }

 private:
  Pool2dParams subsample() const;  // 1x1 window, stride `stride`

  int stride_, before_, after_;
  Tensor subsampled_;  // [N, P, Q, C] scratch when stride > 1: x subsampled, or in backward dy's middle
};

}  // namespace convnet
