// BatchNorm2d: batch normalization over every dimension but the last (the channel), so it serves
// both images [N, H, W, C] (PyTorch BatchNorm2d) and flat features [N, C] (BatchNorm1d).
#pragma once

#include <memory>

#include "core/dist/replica_group.h"
#include "core/layers/channel_moments.h"
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
  int64_t parameter_numel() const override { return 2 * channels_; }  // gamma, beta
  void initialize(Rng& rng) override;                                 // gamma 1, beta 0, running mean 0, var 1, count 0

  // train: batch statistics, updates the running statistics and num_batches_tracked, saves the
  // batch mean and 1/sqrt(var + eps) for backward. eval: running statistics, no state change.
  void forward(const Tensor& x, Tensor& y, Mode mode) override;
  // Gradients of the last forward, which must have been a train forward (the gradient through the
  // batch statistics; an internal Error otherwise); writes dgamma, dbeta and dx.
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;
  bool backward_reads_input() const override { return true; }
  bool backward_reads_output() const override { return false; }
  // In bf16 precision: a conv output stored bf16, read widened (statistics and normalization in fp32).
  bool reads_bf16_input() const override;

  std::vector<Parameter*> parameters() override { return {&gamma_, &beta_}; }
  std::vector<Buffer*> buffers() override { return {&running_mean_, &running_var_, &num_batches_tracked_}; }

  // Synchronized batchnorm (model.sync_batch_norm) for data-parallel training; core/layers/batch_norm_sync.cpp.
  // Null (the default): every statistic is this rank's, through the fused ops above. With a group:
  //  - train forward: this rank's per-channel mean and M2 (Backend::batch_norm_local_stats) are
  //    combined over the ranks with Chan et al.'s parallel formula, in double on the host, in two
  //    group.sum calls: n = sum n_r, mean = sum n_r mean_r / n, M2 = sum M2_r + n_r (mean_r - mean)^2
  //    (a fixed order and no cancellation). x is normalized with that mean and the biased variance
  //    M2 / n; running_mean and running_var move towards the mean and the unbiased M2 / (n - 1), as
  //    PyTorch's SyncBatchNorm; num_batches_tracked counts the step. Ranks may hold different
  //    numbers of rows (0 too), but n must be >= 2 (else convnet::Error on every rank).
  //  - backward: sum dy and sum dy * xhat over the ranks (one group.sum) give dx; gamma.grad and
  //    beta.grad stay THIS rank's sums. With equal shards and each rank's loss the mean over its
  //    shard, the gradient reducer's average of the ranks' gradients is the one-process gradient.
  // Every rank must call forward and backward in the same order (they are collectives). Given each
  // rank's rows of one batch and of one upstream gradient, y and dx are those rows of one
  // process's batchnorm of the whole batch, the running statistics are its, and the ranks' SUM of
  // gamma.grad and beta.grad is its gradient. `group` must outlive the layer's use of it.
  void set_replica_group(ReplicaGroup* group) { group_ = group; }
  ReplicaGroup* replica_group() const { return group_; }

  // The statistics of this layer's input, from the convolution that produces it (see
  // ChannelMoments; null: none). A train forward takes them when fresh instead of computing its
  // own; the synchronized path never does (it needs every rank's).
  void set_input_moments(std::shared_ptr<ChannelMoments> moments) { moments_ = std::move(moments); }
  const std::shared_ptr<ChannelMoments>& input_moments() const { return moments_; }

  // The mean and 1 / sqrt(var + eps) of the last train forward, which backward uses ([C], on the device).
  const Tensor& saved_mean() const { return saved_mean_; }
  const Tensor& saved_invstd() const { return saved_invstd_; }

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
  std::shared_ptr<ChannelMoments> moments_;

  // Synchronized batchnorm: the group, the number of rows over all ranks of the last train
  // forward (0: that forward was not synchronized), and [C] device scratch for the statistics.
  void forward_synchronized(const Tensor& x, Tensor& y);
  void backward_synchronized(const Tensor& x, const Tensor& dy, Tensor& dx);
  ReplicaGroup* group_ = nullptr;
  double synced_rows_ = 0;
  Tensor sync_a_, sync_b_;
};

}  // namespace convnet
