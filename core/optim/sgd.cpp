#include "core/optim/sgd.h"

#include "core/base/error.h"

namespace convnet {

namespace {

bool decoupled_mode(const OptimizerConfig& config) {
  if (config.weight_decay_mode == "l2") return false;
  if (config.weight_decay_mode == "decoupled") return true;
  throw ConfigError(
      fmt::format("optimizer.weight_decay_mode: expected l2 or decoupled, got '{}'", config.weight_decay_mode));
}

void validate(const OptimizerConfig& config) {
  if (config.name != "sgd") throw ConfigError(fmt::format("optimizer.name: expected sgd, got '{}'", config.name));
  if (config.momentum < 0 || config.momentum >= 1) {
    throw ConfigError(fmt::format("optimizer.momentum: expected a value in [0, 1), got {}", config.momentum));
  }
  if (config.nesterov && config.momentum == 0) {
    throw ConfigError("optimizer.nesterov: Nesterov momentum needs optimizer.momentum > 0");
  }
  if (config.weight_decay < 0) {
    throw ConfigError(fmt::format("optimizer.weight_decay: expected a value >= 0, got {}", config.weight_decay));
  }
  decoupled_mode(config);
}

}  // namespace

std::vector<OptimizedParameter> make_parameter_groups(const OptimizerConfig& config,
                                                      const std::vector<std::pair<std::string, Parameter*>>& named,
                                                      const std::vector<Backend*>& backends) {
  validate(config);
  CONVNET_CHECK(named.size() == backends.size(), "{} parameters but {} backends", named.size(), backends.size());
  std::vector<OptimizedParameter> out;
  out.reserve(named.size());
  for (size_t i = 0; i < named.size(); ++i) {
    const auto& [full_name, param] = named[i];
    Backend* backend = backends[i];
    CONVNET_CHECK(param != nullptr && backend != nullptr, "parameter {} has no value or backend", full_name);
    CONVNET_CHECK(param->value.defined(), "parameter {} is not allocated", full_name);

    OptimizedParameter p{full_name, param, backend, Tensor(), 0.0f, param->lr_mult};
    const bool decays = param->weight_decay || config.decay_norm_and_bias;
    p.weight_decay = decays ? static_cast<float>(config.weight_decay) : 0.0f;
    // Biases (including batchnorm shifts) are recognised by their local name; batchnorm scales are
    // the only "weight" parameters that opt out of weight decay.
    if (param->name == "bias") p.lr_mult *= static_cast<float>(config.bias_lr_mult);
    if (param->name == "weight" && !param->weight_decay) p.lr_mult *= static_cast<float>(config.norm_lr_mult);
    if (!config.decay_scales_with_lr_mult && p.lr_mult > 0 && p.weight_decay > 0)
      p.weight_decay = static_cast<float>(config.weight_decay / static_cast<double>(p.lr_mult));
    if (config.momentum > 0) {
      // Frozen parameters get a buffer too, so the optimizer state has the same entries either way.
      p.momentum = backend->empty(param->value.shape());
      backend->fill(p.momentum, 0.0f);
    }
    out.push_back(std::move(p));
  }
  return out;
}

Sgd::Sgd(const OptimizerConfig& config, std::vector<OptimizedParameter> params)
    : config_(config), params_(std::move(params)) {
  validate(config_);
  for (const OptimizedParameter& p : params_) {
    CONVNET_CHECK(p.param != nullptr && p.backend != nullptr, "parameter {} has no value or backend", p.full_name);
    CONVNET_CHECK(config_.momentum == 0 || p.momentum.defined(), "parameter {} lacks a momentum buffer", p.full_name);
  }
}

void Sgd::step(double lr, int64_t epoch) {
  const bool decoupled = decoupled_mode(config_);
  for (OptimizedParameter& p : params_) {
    if (p.param->frozen) continue;
    const double train_epochs = p.param->train_epochs;
    if (train_epochs > 0 && static_cast<double>(epoch) >= train_epochs) continue;
    CONVNET_CHECK(p.param->grad.defined(), "parameter {} has no gradient", p.full_name);
    const SgdStep s{static_cast<float>(lr * static_cast<double>(p.lr_mult)), static_cast<float>(config_.momentum),
                    p.weight_decay, config_.nesterov, decoupled};
    Tensor* copy = p.param->bf16_copy.defined() ? &p.param->bf16_copy : nullptr;
    p.backend->sgd_update(p.param->value, p.param->grad, p.momentum, s, copy);
    p.param->bf16_copy_current = copy != nullptr;
  }
}

}  // namespace convnet
