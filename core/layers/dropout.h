// Dropout: in training zeroes each element with probability p and scales the rest by 1/(1-p);
// identity in evaluation.
#pragma once

#include "core/layers/layer.h"

namespace convnet {

class Dropout final : public Layer {
 public:
  // Throws ConfigError naming the layer unless 0 <= p < 1.
  Dropout(std::string name, float p);

  std::string type() const override { return "dropout"; }
  std::string description() const override;            // "dropout p=0.5"
  Shape configure(const Shape& input_shape) override;  // same shape

  // train: mask from hash_uniform(seed(), i) (backend dropout), kept for backward. eval: copy.
  void forward(const Tensor& x, Tensor& y, Mode mode) override;
  // After a train forward: dy * mask / (1 - p); after an eval forward: dx = dy.
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;
  bool backward_reads_input() const override { return false; }
  bool backward_reads_output() const override { return false; }
  int64_t state_bytes(int64_t batch) const override;  // the mask

  // The mask seed becomes hash64(step_seed, FNV-1a(name)): a new mask every step, and two
  // dropout layers in one net never share a mask.
  void set_step_seed(uint64_t seed) override;
  uint64_t seed() const { return seed_; }
  float p() const { return p_; }

 private:
  float p_;
  uint64_t salt_;
  uint64_t seed_;
  bool last_forward_train_ = false;
  Tensor mask_;
};

}  // namespace convnet
