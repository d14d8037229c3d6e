// BatchNorm2d: batch normalization over every dimension but the last (the channel), so it serves
// both images [N, H, W, C] (PyTorch BatchNorm2d) and flat features [N, C] (BatchNorm1d).
#pragma once

#include "core/dist/replica_group.h"
#include "core/layers/layer.h"

namespace convnet {

class BatchNorm2d final : public Layer {
 public:
  // freeze_scale: gamma stays at its initial 1 (Parameter::frozen; its gradient is still written).
  // bias_lr_mult: lr_mult of beta. Throws ConfigError naming the layer when eps <= 0 or momentum
  // is outside [0, 1].
  BatchNorm2d(std::string name, float eps = 1e-5f, float momentum = 0.1f, bool freeze_scale = false,
              float bias_lr_mult = 1.0f);

  std::string type() const override { return "batch_norm"; }
  std::string description() const override;  // "batch_norm 64 eps 1e-05 momentum 0.1" (+ " frozen-scale")

  // Any non-empty shape; the output has the same shape. C = last dimension.
  Shape configure(const Shape& input_shape) override;
  // "weight" (gamma) and "bias" (beta) [C], neither weight-decayed; buffers "running_mean" [C],
  // "running_var" [C] on the device and "num_batches_tracked": an i32 scalar (shape {}) kept on
  // the host (PyTorch stores int64; the checkpoint writer converts).
  void allocate_parameters() override;
  void initialize(Rng& rng) override;  // gamma 1, beta 0, running mean 0, var 1, count 0

  // train: batch statistics, updates the running statistics and num_batches_tracked, saves the
  // batch mean and 1/sqrt(var + eps) for backward. eval: running statistics, no state change.
  void forward(const Tensor& x, Tensor& y, Mode mode) override;
  // Gradients of the last forward, which must have been a train forward (the gradient through the
  // batch statistics; an internal Error otherwise); writes dgamma, dbeta and dx.
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;

  std::vector<Parameter*> parameters() override { return {&gamma_, &beta_}; }
  std::vector<Buffer*> buffers() override { return {&running_mean_, &running_var_, &num_batches_tracked_}; }

  // Synchronized batchnorm (model.sync_batch_norm) for data-parallel training: with a group, a
  // train forward normalizes with the statistics of the rows of every rank (each rank's mean and
  // M2 from Backend::batch_norm_local_stats, combined with Chan's formula: two group sums in
  // double, so no cancellation and a fixed order), and updates the running statistics with them
  // (unbiased variance over all rows, as PyTorch's SyncBatchNorm). Backward uses the ranks' sums of
  // dy and dy * xhat for dx; dgamma and dbeta stay this rank's sums, for the gradient reducer to
  // average (each rank's loss is the mean over its shard, so the average is the one-process
  // gradient). With every rank's rows, the result equals one process's batchnorm on the whole
  // batch. Null: this rank's statistics only (the default, as DDP). `group` must outlive the layer.
  void set_replica_group(ReplicaGroup* group) { group_ = group; }

  int64_t channels() const { return channels_; }
  float eps() const { return eps_; }
  float momentum() const { return momentum_; }

 private:
  float eps_, momentum_;
  int64_t channels_ = 0;
  Parameter gamma_, beta_;
  Buffer running_mean_, running_var_, num_batches_tracked_;
  Tensor saved_mean_, saved_invstd_;
  bool last_forward_train_ = false;
  Tensor dx_scratch_;  // backend needs a dx even when the caller does not want one

  // Synchronized batchnorm: the group, the global row count and variance of the last forward,
  // and [C] scratch on the device.
  void forward_synchronized(const Tensor& x, Tensor& y);
  void backward_synchronized(const Tensor& x, const Tensor& dy, Tensor& dx);
  ReplicaGroup* group_ = nullptr;
  double global_rows_ = 0;
  Tensor global_var_, scratch_a_, scratch_b_;
};

}  // namespace convnet
