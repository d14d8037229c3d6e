#include "core/layers/linear.h"

#include <cmath>

#include "core/layers/layer_util.h"

namespace convnet {

Linear::Linear(std::string name, int out_features, bool bias, const LinearOptions& options)
    : Layer(std::move(name)), out_features_(out_features), bias_(bias) {
  if (out_features <= 0) config_error("out_features must be positive, got {}", out_features);
  if (!(options.bias_train_epochs >= 0))
    config_error("bias_train_epochs must be non-negative, got {}", options.bias_train_epochs);
  if (options.bias_train_epochs > 0 && !bias)
    config_error("bias_train_epochs = {} but the layer has no bias", options.bias_train_epochs);
  weight_.name = "weight";
  weight_.frozen = options.freeze_weight;
  bias_param_.name = "bias";
  bias_param_.weight_decay = false;
  bias_param_.train_epochs = options.bias_train_epochs;
}

std::string Linear::description() const {
  std::string in = in_features_ > 0 ? std::to_string(in_features_) : "?";
  std::string d = fmt::format("linear {}->{}{}", in, out_features_, bias_ ? "" : " no-bias");
  if (weight_.frozen) d += " frozen-weight";
  if (bias_param_.train_epochs > 0) d += fmt::format(" bias-epochs {}", bias_param_.train_epochs);
  return d;
}

Shape Linear::configure(const Shape& in) {
  if (in.size() != 1)
    config_error("expects a flat input, got {}: add a flatten or global_avg_pool layer before it", shape_str(in));
  if (in[0] <= 0) config_error("empty input {}", shape_str(in));
  in_features_ = in[0];
  return record_shapes(in, {out_features_});
}

void Linear::allocate_parameters() {
  CONVNET_CHECK(in_features_ > 0, "{}: allocate_parameters() before configure()", name());
  layer_util::allocate_parameter(backend(), weight_, {out_features_, in_features_});
  layer_util::keep_bf16_copy(backend(), weight_);
  if (bias_) layer_util::allocate_parameter(backend(), bias_param_, {out_features_});
}

void Linear::initialize(Rng& rng) {
  const float bound = static_cast<float>(1.0 / std::sqrt(static_cast<double>(in_features_)));
  Tensor w(weight_.value.shape());
  for (float& v : w.span()) v = rng.uniform(-bound, bound);
  layer_util::upload_value(backend(), weight_, w);
  if (bias_) {
    Tensor b(bias_param_.value.shape());
    for (float& v : b.span()) v = rng.uniform(-bound, bound);
    layer_util::upload(backend(), bias_param_.value, b);
  }
}

void Linear::forward(const Tensor& x, Tensor& y, Mode /*mode*/) {
  layer_util::check_io(*this, x, y);
  backend().linear_forward(x, layer_util::weight_operand(backend(), weight_), bias_ ? &bias_param_.value : nullptr, y);
}

void Linear::backward(const Tensor& x, const Tensor& /*y*/, const Tensor& dy, Tensor* dx) {
  backend().linear_backward(x, layer_util::weight_operand(backend(), weight_), dy, dx, weight_.grad,
                            bias_ ? &bias_param_.grad : nullptr);
}

bool Linear::reads_bf16_input() const {
  return backend().precision() == Precision::bf16;
}

std::vector<Parameter*> Linear::parameters() {
  if (bias_) return {&weight_, &bias_param_};
  return {&weight_};
}

}  // namespace convnet
