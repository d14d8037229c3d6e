#include "core/layers/batch_norm.h"

#include <cmath>
#include <cstddef>
#include <vector>

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
  if (last_forward_train_ && group_) {
    forward_synchronized(x, y);
    num_batches_tracked_.value.data<int32_t>()[0] += 1;
  } else if (last_forward_train_) {
    backend().batch_norm_forward_train(x, gamma_.value, beta_.value, y, saved_mean_, saved_invstd_, running_mean_.value,
                                       running_var_.value, momentum_, eps_);
    num_batches_tracked_.value.data<int32_t>()[0] += 1;
  } else {
    backend().batch_norm_forward_eval(x, gamma_.value, beta_.value, running_mean_.value, running_var_.value, eps_, y);
  }
}

void BatchNorm2d::backward(const Tensor& x, const Tensor& /*y*/, const Tensor& dy, Tensor* dx) {
  CONVNET_CHECK(last_forward_train_, "{}: backward needs a train-mode forward (it differentiates the batch statistics)",
                name());
  Tensor* out = dx;
  if (!out) {
    layer_util::ensure_tensor(backend(), dx_scratch_, x.shape());
    out = &dx_scratch_;
  }
  if (group_ && out->raw() == dy.raw()) {  // in place: the apply step reads dy while writing dx
    layer_util::ensure_tensor(backend(), dx_scratch_, x.shape());
    backward_synchronized(x, dy, dx_scratch_);
    backend().copy(*out, dx_scratch_);
  } else if (group_) {
    backward_synchronized(x, dy, *out);
  } else {
    backend().batch_norm_backward(x, dy, gamma_.value, saved_mean_, saved_invstd_, *out, gamma_.grad, beta_.grad);
  }
}

namespace {

std::vector<double> to_host_doubles(Backend& b, const Tensor& t) {
  Tensor host(t.shape());
  b.copy(host, t);
  return std::vector<double>(host.f32(), host.f32() + host.numel());
}

void from_host_doubles(Backend& b, const std::vector<double>& values, Tensor& t) {
  Tensor host(t.shape());
  for (size_t i = 0; i < values.size(); ++i) host.f32()[i] = static_cast<float>(values[i]);
  b.copy(t, host);
}

}  // namespace

void BatchNorm2d::forward_synchronized(const Tensor& x, Tensor& y) {
  Backend& b = backend();
  const auto cn = static_cast<size_t>(channels_);
  layer_util::ensure_tensor(b, scratch_a_, {channels_});
  layer_util::ensure_tensor(b, scratch_b_, {channels_});
  layer_util::ensure_tensor(b, global_var_, {channels_});
  const double rows = static_cast<double>(x.numel() / channels_);
  b.batch_norm_local_stats(x, scratch_a_, scratch_b_);
  const std::vector<double> local_mean = to_host_doubles(b, scratch_a_), local_m2 = to_host_doubles(b, scratch_b_);
  // Chan et al.: n = sum n_r, mean = sum n_r mean_r / n, M2 = sum M2_r + n_r (mean_r - mean)^2.
  std::vector<double> first(cn + 1);
  first[cn] = rows;
  for (size_t c = 0; c < cn; ++c) first[c] = rows * local_mean[c];
  group_->sum(first);
  global_rows_ = first[cn];
  if (global_rows_ < 2) throw Error(fmt::format("{}: batchnorm needs at least 2 values per channel", name()));
  std::vector<double> mean(cn), m2(cn);
  for (size_t c = 0; c < cn; ++c) {
    mean[c] = first[c] / global_rows_;
    m2[c] = rows > 0 ? local_m2[c] + rows * (local_mean[c] - mean[c]) * (local_mean[c] - mean[c]) : 0.0;
  }
  group_->sum(m2);
  std::vector<double> var(cn), invstd(cn), running_mean = to_host_doubles(b, running_mean_.value),
                                           running_var = to_host_doubles(b, running_var_.value);
  const double m = momentum_;
  for (size_t c = 0; c < cn; ++c) {
    var[c] = m2[c] / global_rows_;
    invstd[c] = 1.0 / std::sqrt(var[c] + static_cast<double>(eps_));
    running_mean[c] = (1.0 - m) * running_mean[c] + m * mean[c];
    running_var[c] = (1.0 - m) * running_var[c] + m * m2[c] / (global_rows_ - 1);
  }
  from_host_doubles(b, mean, saved_mean_);
  from_host_doubles(b, invstd, saved_invstd_);
  from_host_doubles(b, var, global_var_);
  from_host_doubles(b, running_mean, running_mean_.value);
  from_host_doubles(b, running_var, running_var_.value);
  if (x.numel() > 0) b.batch_norm_forward_eval(x, gamma_.value, beta_.value, saved_mean_, global_var_, eps_, y);
}

void BatchNorm2d::backward_synchronized(const Tensor& x, const Tensor& dy, Tensor& dx) {
  Backend& b = backend();
  const auto cn = static_cast<size_t>(channels_);
  // This rank's sums are its dgamma and dbeta; the ranks' totals give dx.
  b.batch_norm_backward_reduce(x, dy, saved_mean_, saved_invstd_, beta_.grad, gamma_.grad);
  std::vector<double> sums = to_host_doubles(b, beta_.grad), sum_dyx = to_host_doubles(b, gamma_.grad);
  sums.insert(sums.end(), sum_dyx.begin(), sum_dyx.end());
  group_->sum(sums);
  std::vector<double> mean_dy(sums.begin(), sums.begin() + static_cast<std::ptrdiff_t>(cn)),
      mean_dyx(sums.begin() + static_cast<std::ptrdiff_t>(cn), sums.end());
  for (size_t c = 0; c < cn; ++c) {
    mean_dy[c] /= global_rows_;
    mean_dyx[c] /= global_rows_;
  }
  from_host_doubles(b, mean_dy, scratch_a_);
  from_host_doubles(b, mean_dyx, scratch_b_);
  b.batch_norm_backward_apply(x, dy, gamma_.value, saved_mean_, saved_invstd_, scratch_a_, scratch_b_, dx);
}

}  // namespace convnet
