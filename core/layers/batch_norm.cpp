#include "core/layers/batch_norm.h"

#include "core/layers/layer_util.h"

namespace convnet {

BatchNorm2d::BatchNorm2d(std::string name, float eps, float momentum, bool freeze_scale, float bias_lr_mult)
    : Layer(std::move(name)), eps_(eps), momentum_(momentum) {
  if (!(eps > 0.0f)) config_error("eps must be positive, got {}", eps);
  if (!(momentum >= 0.0f && momentum <= 1.0f)) config_error("momentum must be in [0, 1], got {}", momentum);
  if (!(bias_lr_mult >= 0.0f)) config_error("bias_lr_mult must be non-negative, got {}", bias_lr_mult);
  gamma_.name = "weight";
  gamma_.weight_decay = false;
  gamma_.frozen = freeze_scale;
  beta_.name = "bias";
  beta_.weight_decay = false;
  beta_.lr_mult = bias_lr_mult;
  running_mean_.name = "running_mean";
  running_var_.name = "running_var";
  num_batches_tracked_.name = "num_batches_tracked";
}

std::string BatchNorm2d::description() const {
  std::string d = fmt::format("batch_norm {} eps {} momentum {}", channels_, eps_, momentum_);
  if (gamma_.frozen) d += " frozen-scale";
  return d;
}

Shape BatchNorm2d::configure(const Shape& in) {
  if (in.empty() || shape_numel(in) <= 0)
    config_error("expects a non-empty input with channels last, got {}", shape_str(in));
  channels_ = in.back();
  return record_shapes(in, in);
}

void BatchNorm2d::allocate_parameters() {
  CONVNET_CHECK(channels_ > 0, "{}: allocate_parameters() before configure()", name());
  Backend& b = backend();
  layer_util::allocate_parameter(b, gamma_, {channels_});
  layer_util::allocate_parameter(b, beta_, {channels_});
  running_mean_.value = b.empty({channels_});
  running_var_.value = b.empty({channels_});
  num_batches_tracked_.value = Tensor::zeros({}, DType::i32);
  saved_mean_ = b.empty({channels_});
  saved_invstd_ = b.empty({channels_});
}

void BatchNorm2d::initialize(Rng& /*rng*/) {
  Backend& b = backend();
  b.fill(gamma_.value, 1.0f);
  b.fill(beta_.value, 0.0f);
  b.fill(running_mean_.value, 0.0f);
  b.fill(running_var_.value, 1.0f);
  num_batches_tracked_.value.data<int32_t>()[0] = 0;
  // Defined saved statistics, so a backward before any train forward is finite rather than garbage.
  b.fill(saved_mean_, 0.0f);
  b.fill(saved_invstd_, 1.0f);
}

void BatchNorm2d::forward(const Tensor& x, Tensor& y, Mode mode) {
  layer_util::check_io(*this, x, y);
  last_forward_train_ = mode == Mode::train;
  if (!last_forward_train_) {
    backend().batch_norm_forward_eval(x, gamma_.value, beta_.value, running_mean_.value, running_var_.value, eps_, y);
    return;
  }
  const bool given_moments = moments_ && moments_->fresh;
  if (moments_) moments_->fresh = false;
  if (group_) {
    forward_synchronized(x, y);
  } else {
    synced_rows_ = 0;
    if (given_moments)
      backend().batch_norm_forward_train_from_moments(x, moments_->mean, moments_->m2, gamma_.value, beta_.value, y,
                                                      saved_mean_, saved_invstd_, running_mean_.value,
                                                      running_var_.value, momentum_, eps_);
    else
      backend().batch_norm_forward_train(x, gamma_.value, beta_.value, y, saved_mean_, saved_invstd_,
                                         running_mean_.value, running_var_.value, momentum_, eps_);
  }
  num_batches_tracked_.value.data<int32_t>()[0] += 1;
}

void BatchNorm2d::backward(const Tensor& x, const Tensor& /*y*/, const Tensor& dy, Tensor* dx) {
  CONVNET_CHECK(last_forward_train_, "{}: backward needs a train-mode forward (it differentiates the batch statistics)",
                name());
  Tensor* out = dx;
  if (!out) {
    layer_util::ensure_tensor(backend(), dx_scratch_, x.shape());
    out = &dx_scratch_;
  }
  if (group_)
    backward_synchronized(x, dy, *out);
  else
    backend().batch_norm_backward(x, dy, gamma_.value, saved_mean_, saved_invstd_, *out, gamma_.grad, beta_.grad);
}

bool BatchNorm2d::reads_bf16_input() const {
  return backend().precision() == Precision::bf16;
}

}  // namespace convnet
