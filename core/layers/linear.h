// Linear: fully connected layer y = x W^T + b on flat inputs, W stored [out, in] (as PyTorch).
#pragma once

#include "core/layers/layer.h"

namespace convnet {

// The training options LayerSpec gives a linear layer.
struct LinearOptions {
  bool freeze_weight = false;   // weight Parameter::frozen
  float bias_train_epochs = 0;  // bias Parameter::train_epochs (needs a bias when > 0)
};

class Linear final : public Layer {
 public:
  // The input width is inferred by configure(). Throws ConfigError naming the layer when
  // out_features is not positive, or bias_train_epochs is negative or set without a bias.
  Linear(std::string name, int out_features, bool bias = true, const LinearOptions& options = {});

  std::string type() const override { return "linear"; }
  // "linear 512->10" (+ " no-bias", " frozen-weight", " bias-epochs 3").
  std::string description() const override;

  // {F} -> {out_features}. Any other rank is a ConfigError:
  // "linear3: expects a flat input, got [4, 4, 64]: add a flatten or global_avg_pool layer before it".
  Shape configure(const Shape& input_shape) override;
  // "weight" [out, in], "bias" [out] (no weight decay).
  void allocate_parameters() override;
  int64_t parameter_numel() const override { return out_features_ * in_features_ + (bias_ ? out_features_ : 0); }
  // PyTorch default: weight and bias uniform in [-1/sqrt(in), 1/sqrt(in)) (weight first).
  void initialize(Rng& rng) override;

  void forward(const Tensor& x, Tensor& y, Mode mode) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;
  bool backward_reads_input() const override { return true; }
  bool backward_reads_output() const override { return false; }
  bool reads_bf16_input() const override;  // in bf16 precision

  std::vector<Parameter*> parameters() override;
  int64_t forward_flops() const override { return 2 * in_features_ * out_features_; }
  Window window() const override { return {1, 1, 1, 1, true}; }  // every output sees every input

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }
  bool has_bias() const { return bias_; }

 private:
  int64_t out_features_;
  bool bias_;
  int64_t in_features_ = 0;
  Parameter weight_, bias_param_;
};

}  // namespace convnet
