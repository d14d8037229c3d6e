// Conv2d: 2-D convolution of an NHWC image with a KRSC filter bank (square kernel), optionally
// grouped (PyTorch `groups`; groups == in_channels is depthwise).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/layers/channel_moments.h"
#include "core/layers/layer.h"

namespace convnet {

// How Conv2d::initialize() fills the weight (the bias always starts at zero; torch would draw
// airbench's whitening-conv bias uniformly, zero works as well since it is trained from there).
// Fans are torch.nn.init's for the grouped weight [K, C/groups, R, S]: fan_in = C/groups * R * S,
// fan_out = K * R * S.
enum class ConvInit {
  kaiming_normal,  // N(0, 2 / fan_out): fan_out mode, torchvision's VGG init
  pytorch,         // U(-b, b), b = 1 / sqrt(fan_in): torch's default kaiming_uniform_(a = sqrt(5))
  pytorch_dirac,   // pytorch, then in each group the first min(K, C) / groups filters set to the
                   // identity (torch dirac_(groups=) on those filters; airbench's w[:C] when
                   // ungrouped): weight[g*K/groups + d, R/2, S/2, d] = 1, all else 0 in them
  whitening,       // pytorch, later replaced by initialize_from_data() (see cpu/whitening.h);
                   // ungrouped only
};
// The config names of the modes, in enum order: "kaiming_normal", "pytorch", ...
const std::vector<std::string>& conv_init_names();

// The options beyond the geometry, as LayerSpec names them.
struct Conv2dOptions {
  std::string init = "kaiming_normal";  // a conv_init_names() entry
  float whitening_eps = 5e-4f;          // whitening: added to each eigenvalue
  int groups = 1;                       // grouped convolution: weight [K, R, S, C / groups]
  bool freeze_weight = false;           // weight Parameter::frozen
  float bias_train_epochs = 0;          // bias Parameter::train_epochs (needs a bias when > 0)
};

class Conv2d final : public Layer {
 public:
  // Throws ConfigError naming the layer when out_channels, kernel, stride, dilation or groups is
  // not positive, groups does not divide out_channels, padding is negative, the init name is
  // unknown (listing the choices), init whitening has groups > 1, whitening_eps is not positive,
  // or bias_train_epochs is negative or set without a bias.
  Conv2d(std::string name, int out_channels, int kernel, int stride = 1, int padding = 0, int dilation = 1,
         bool bias = true, const Conv2dOptions& options = {});

  std::string type() const override { return "conv2d"; }
  // "conv2d 3x3 64->128 s1 p1" (+ " d2" when dilated, " g4" with 4 groups or " depthwise" with one
  // input channel per group, " no-bias" without bias, " init pytorch" for a non-default init,
  // " frozen-weight", " bias-epochs 3").
  std::string description() const override;

  // {H, W, C} -> {P, Q, K}. ConfigError when the input is not rank 3, groups does not divide C,
  // or the (dilated) kernel does not fit in the padded input, e.g. "conv5: input 1x1 is smaller
  // than the 3x3 kernel"; for whitening also when out_channels != 2 * k * k * C or the unpadded
  // input holds no k x k patch.
  Shape configure(const Shape& input_shape) override;
  // "weight" [K, R, S, C / groups] (exported as PyTorch's [O, I / groups, kH, kW]), "bias" [K]
  // (no weight decay).
  void allocate_parameters() override;
  int64_t parameter_numel() const override;
  // Weight as ConvInit says (kaiming_normal draws exactly what it always did); bias zero.
  void initialize(Rng& rng) override;
  // Whitening only: inputs host f32 [N, H, W, C]; the weight becomes whitening_filters() of every
  // unpadded k x k patch (with the conv's dilation) of every image. The bias is left as it is.
  bool wants_data_init() const override { return init_ == ConvInit::whitening; }
  void initialize_from_data(const Tensor& inputs) override;

  // With output moments set, a train forward also writes them (see ChannelMoments).
  void forward(const Tensor& x, Tensor& y, Mode mode) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;
  bool backward_reads_input() const override { return true; }
  bool backward_reads_output() const override { return false; }
  // In bf16 precision with groups 1 (v4 BF16 and cuDNN read a bf16 x as it is and write their
  // bf16 y straight into it; the narrow-group kernels would have to widen and round).
  bool reads_bf16_input() const override;
  bool writes_bf16_output() const override { return reads_bf16_input(); }

  // The statistics of this layer's output for the batchnorm that reads it (null: none).
  void set_output_moments(std::shared_ptr<ChannelMoments> moments) { moments_ = std::move(moments); }
  const std::shared_ptr<ChannelMoments>& output_moments() const { return moments_; }

  std::vector<Parameter*> parameters() override;
  int64_t forward_flops() const override;  // 2 * P * Q * K * R * S * C / groups
  Window window() const override {
    const int64_t span = int64_t{dilation_} * (kernel_ - 1) + 1;
    return {span, span, stride_, stride_, false};
  }

  int in_channels() const { return in_channels_; }
  int out_channels() const { return out_channels_; }
  int kernel() const { return kernel_; }
  int groups() const { return groups_; }
  bool has_bias() const { return bias_; }
  ConvInit init() const { return init_; }
  Conv2dParams conv_params() const;

 private:
  Shape weight_shape() const;  // [K, R, S, C / groups]
  int out_channels_, kernel_, stride_, padding_, dilation_, groups_;
  bool bias_;
  ConvInit init_ = ConvInit::kaiming_normal;
  float whitening_eps_;
  int in_channels_ = 0;
  Parameter weight_, bias_param_;
  std::shared_ptr<ChannelMoments> moments_;
};

}  // namespace convnet
