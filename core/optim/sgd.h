// SGD with momentum, Nesterov and weight decay (L2 or decoupled) over parameter groups.
//
// Groups (built from the graph's parameters): by default weights get weight decay, while biases
// and batchnorm parameters get none (OptimizerConfig::decay_norm_and_bias turns it on); each
// parameter's lr_mult multiplies the scheduled LR. With decay_scales_with_lr_mult = false a
// parameter whose effective lr_mult is m > 0 gets weight_decay / m, so its per-step decay
// lr * m * wd / m equals everyone else's (airbench's 64x-LR batchnorm biases).
// Frozen parameters are skipped, and so are parameters with train_epochs > 0 in every epoch
// >= train_epochs (no momentum, no decay: like torch's requires_grad = False). The update
// itself runs on each parameter's backend (Backend::sgd_update), so it is fused on the GPU.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/config/config.h"
#include "core/layers/layer.h"

namespace convnet {

struct OptimizedParameter {
  std::string full_name;  // "features.0.weight"
  Parameter* param;
  Backend* backend;
  Tensor momentum;     // same shape and device as the parameter; undefined when momentum == 0
  float weight_decay;  // effective for this parameter (0 for no-decay groups)
  float lr_mult;
};

class Sgd {
 public:
  // `params` pairs each parameter's full name with the parameter and its layer's backend.
  Sgd(const OptimizerConfig& config, std::vector<OptimizedParameter> params);
  // One update with learning rate `lr` (already scheduled) for every parameter that is not frozen
  // and, when its train_epochs > 0, trains in `epoch` (0-based): epoch < train_epochs.
  void step(double lr, int64_t epoch = 0);
  std::vector<OptimizedParameter>& parameters() { return params_; }
  const OptimizerConfig& config() const { return config_; }

 private:
  OptimizerConfig config_;
  std::vector<OptimizedParameter> params_;
};

// Builds OptimizedParameters: decides decay and LR multipliers per group from the config and the
// parameter's own flags, allocates zeroed momentum buffers on the parameter's device.
std::vector<OptimizedParameter> make_parameter_groups(const OptimizerConfig& config,
                                                      const std::vector<std::pair<std::string, Parameter*>>& named,
                                                      const std::vector<Backend*>& backends);

}  // namespace convnet
