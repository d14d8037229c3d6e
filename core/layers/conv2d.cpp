#include "core/layers/conv2d.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>

#include "core/cpu/whitening.h"
#include "core/layers/layer_util.h"

namespace convnet {

const std::vector<std::string>& conv_init_names() {
  static const std::vector<std::string> names = {"kaiming_normal", "pytorch", "pytorch_dirac", "whitening"};
  return names;
}

Conv2d::Conv2d(std::string name, int out_channels, int kernel, int stride, int padding, int dilation, bool bias,
               const Conv2dOptions& options)
    : Layer(std::move(name)),
      out_channels_(out_channels),
      kernel_(kernel),
      stride_(stride),
      padding_(padding),
      dilation_(dilation),
      groups_(options.groups),
      bias_(bias),
      whitening_eps_(options.whitening_eps) {
  if (out_channels <= 0) config_error("out_channels must be positive, got {}", out_channels);
  layer_util::check_window(*this, kernel, stride, padding);
  if (dilation <= 0) config_error("dilation must be positive, got {}", dilation);
  if (groups_ <= 0) config_error("groups must be positive, got {}", groups_);
  if (out_channels % groups_ != 0)
    config_error("groups {} does not divide the {} output channels", groups_, out_channels);
  const auto& names = conv_init_names();
  const auto it = std::find(names.begin(), names.end(), options.init);
  if (it == names.end()) config_error("unknown init \"{}\"; expected one of: {}", options.init, fmt::join(names, ", "));
  init_ = static_cast<ConvInit>(it - names.begin());
  // Whitening filters see every input channel of a patch: no grouped form.
  if (init_ == ConvInit::whitening && groups_ != 1) config_error("init whitening needs groups 1, got {}", groups_);
  if (!(options.whitening_eps > 0)) config_error("whitening_eps must be positive, got {}", options.whitening_eps);
  if (!(options.bias_train_epochs >= 0))
    config_error("bias_train_epochs must be non-negative, got {}", options.bias_train_epochs);
  if (options.bias_train_epochs > 0 && !bias)
    config_error("bias_train_epochs = {} but the layer has no bias", options.bias_train_epochs);
  weight_.name = "weight";
  weight_.layout = ExportLayout::krsc_to_oihw;
  weight_.frozen = options.freeze_weight;
  bias_param_.name = "bias";
  bias_param_.weight_decay = false;
  bias_param_.train_epochs = options.bias_train_epochs;
}

std::string Conv2d::description() const {
  std::string in = in_channels_ > 0 ? std::to_string(in_channels_) : "?";
  std::string d = fmt::format("conv2d {}x{} {}->{} s{} p{}", kernel_, kernel_, in, out_channels_, stride_, padding_);
  if (dilation_ != 1) d += fmt::format(" d{}", dilation_);
  if (groups_ != 1) d += groups_ == in_channels_ ? std::string(" depthwise") : fmt::format(" g{}", groups_);
  if (!bias_) d += " no-bias";
  if (init_ != ConvInit::kaiming_normal) d += " init " + conv_init_names()[static_cast<size_t>(init_)];
  if (weight_.frozen) d += " frozen-weight";
  if (bias_param_.train_epochs > 0) d += fmt::format(" bias-epochs {}", bias_param_.train_epochs);
  return d;
}

Conv2dParams Conv2d::conv_params() const {
  Conv2dParams p;
  p.stride_h = p.stride_w = stride_;
  p.pad_h = p.pad_w = padding_;
  p.dilation_h = p.dilation_w = dilation_;
  p.groups = groups_;
  return p;
}

Shape Conv2d::configure(const Shape& in) {
  layer_util::check_image_input(*this, in);
  const int64_t h = in[0], w = in[1], c = in[2];
  const int64_t span = static_cast<int64_t>(dilation_) * (kernel_ - 1) + 1;
  if (h + 2 * padding_ < span || w + 2 * padding_ < span) {
    std::string detail;
    if (padding_ != 0 || dilation_ != 1)
      detail = fmt::format(" (padding {}, dilation {}: the kernel spans {}x{} of the {}x{} padded input)", padding_,
                           dilation_, span, span, h + 2 * padding_, w + 2 * padding_);
    config_error("input {}x{} is smaller than the {}x{} kernel{}", h, w, kernel_, kernel_, detail);
  }
  if (c > INT32_MAX) config_error("too many input channels: {}", c);
  if (c % groups_ != 0) config_error("groups {} does not divide the {} input channels", groups_, c);
  in_channels_ = static_cast<int>(c);
  if (init_ == ConvInit::whitening) {
    const int64_t need = 2 * static_cast<int64_t>(kernel_) * kernel_ * c;
    if (out_channels_ != need)
      config_error(
          "init whitening needs out_channels = 2 * {} * {} * {} = {} (one filter per patch dimension and "
          "its negation), got {}",
          kernel_, kernel_, c, need, out_channels_);
    if (h < span || w < span)
      config_error("init whitening: input {}x{} holds no unpadded {}x{} patch", h, w, span, span);
  }
  const int64_t p = conv_output_size(h, kernel_, stride_, padding_, dilation_);
  const int64_t q = conv_output_size(w, kernel_, stride_, padding_, dilation_);
  return record_shapes(in, {p, q, out_channels_});
}

void Conv2d::allocate_parameters() {
  CONVNET_CHECK(in_channels_ > 0, "{}: allocate_parameters() before configure()", name());
  layer_util::allocate_parameter(backend(), weight_, weight_shape());
  // Grouped convolutions on cuda read fp32 weights for narrow groups: no copy for them.
  if (groups_ == 1) layer_util::keep_bf16_copy(backend(), weight_);
  if (bias_) layer_util::allocate_parameter(backend(), bias_param_, {out_channels_});
}

Shape Conv2d::weight_shape() const {
  return {out_channels_, kernel_, kernel_, in_channels_ / groups_};
}

int64_t Conv2d::parameter_numel() const {
  return shape_numel(weight_shape()) + (bias_ ? out_channels_ : 0);
}

void Conv2d::initialize(Rng& rng) {
  Tensor w(weight_.value.shape());
  if (init_ == ConvInit::kaiming_normal) {
    const double fan_out = static_cast<double>(out_channels_) * kernel_ * kernel_;
    const double std = std::sqrt(2.0 / fan_out);
    for (float& v : w.span()) v = static_cast<float>(std * rng.normal());
  } else {
    const double fan_in = static_cast<double>(in_channels_ / groups_) * kernel_ * kernel_;
    const float bound = static_cast<float>(1.0 / std::sqrt(fan_in));
    for (float& v : w.span()) v = rng.uniform(-bound, bound);
    if (init_ == ConvInit::pytorch_dirac) {
      const int64_t c = in_channels_ / groups_, per_group = out_channels_ / groups_;  // per group
      const int64_t k = kernel_, centre = kernel_ / 2, per_filter = k * k * c;
      float* p = w.f32();
      for (int64_t g = 0; g < groups_; ++g)
        for (int64_t d = 0; d < std::min(per_group, c); ++d) {
          float* filter = p + (g * per_group + d) * per_filter;
          std::fill(filter, filter + per_filter, 0.0f);
          filter[(centre * k + centre) * c + d] = 1.0f;
        }
    }
  }
  layer_util::upload_value(backend(), weight_, w);
  if (bias_) backend().fill(bias_param_.value, 0.0f);
}

void Conv2d::initialize_from_data(const Tensor& inputs) {
  CONVNET_CHECK(init_ == ConvInit::whitening, "{}: initialize_from_data() without init whitening", name());
  CONVNET_CHECK(inputs.is_cpu() && inputs.rank() == 4 && inputs.dim(0) > 0 &&
                    inputs.shape() == layer_util::with_batch(inputs.dim(0), input_shape()),
                "{}: data init input {} does not match [N] + {}", name(), shape_str(inputs.shape()),
                shape_str(input_shape()));
  const cpu::WhiteningFilters white = cpu::whitening_filters(inputs, kernel_, dilation_, whitening_eps_);
  layer_util::upload_value(backend(), weight_, white.filters);
  spdlog::debug("{}: whitening from {} patches of {} images, eigenvalues {:.3g} .. {:.3g}", name(), white.patches,
                inputs.dim(0), white.eigenvalues.front(), white.eigenvalues.back());
}

void Conv2d::forward(const Tensor& x, Tensor& y, Mode mode) {
  layer_util::check_io(*this, x, y);
  const Tensor* bias = bias_ ? &bias_param_.value : nullptr;
  if (!moments_ || mode != Mode::train) {
    backend().conv2d_forward(x, layer_util::weight_operand(backend(), weight_), bias, y, conv_params());
    if (moments_) moments_->fresh = false;
    return;
  }
  layer_util::ensure_tensor(backend(), moments_->mean, {out_channels_});
  layer_util::ensure_tensor(backend(), moments_->m2, {out_channels_});
  backend().conv2d_forward_with_moments(x, layer_util::weight_operand(backend(), weight_), bias, y, conv_params(),
                                        moments_->mean, moments_->m2);
  moments_->fresh = true;
}

void Conv2d::backward(const Tensor& x, const Tensor& /*y*/, const Tensor& dy, Tensor* dx) {
  const Conv2dParams p = conv_params();
  // Both passes read dy: in bf16, convert it once for the two (groups 1, as for the weight copy).
  const bool share = dx && groups_ == 1 && backend().precision() == Precision::bf16;
  const Tensor dy_operand = share ? layer_util::bf16_values(backend(), dy) : dy;
  if (dx) backend().conv2d_backward_data(dy_operand, layer_util::weight_operand(backend(), weight_), *dx, p);
  backend().conv2d_backward_filter(x, dy_operand, weight_.grad, bias_ ? &bias_param_.grad : nullptr, p);
}

bool Conv2d::reads_bf16_input() const {
  return groups_ == 1 && backend().precision() == Precision::bf16;
}

std::vector<Parameter*> Conv2d::parameters() {
  if (bias_) return {&weight_, &bias_param_};
  return {&weight_};
}

int64_t Conv2d::forward_flops() const {
  const Shape& out = output_shape();
  if (out.size() != 3) return 0;
  return 2 * out[0] * out[1] * out[2] * kernel_ * kernel_ * (in_channels_ / groups_);
}

}  // namespace convnet
