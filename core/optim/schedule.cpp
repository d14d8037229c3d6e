#include "core/optim/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/base/error.h"

namespace convnet {

namespace {

int64_t epochs_to_steps(double epochs, int64_t steps_per_epoch) {
  return std::llround(epochs * static_cast<double>(steps_per_epoch));
}

}  // namespace

LrSchedule::LrSchedule(const ScheduleConfig& config, double base_lr, int64_t steps_per_epoch, int64_t total_steps)
    : config_(config), base_lr_(base_lr), steps_per_epoch_(steps_per_epoch), total_steps_(total_steps) {
  CONVNET_CHECK(steps_per_epoch >= 1, "steps_per_epoch is {}, expected >= 1", steps_per_epoch);
  CONVNET_CHECK(total_steps >= 1, "total_steps is {}, expected >= 1", total_steps);
  const std::string& name = config_.name;
  if (name != "constant" && name != "multistep" && name != "cosine" && name != "linear") {
    throw ConfigError(fmt::format("schedule.name: expected constant, multistep, cosine or linear, got '{}'", name));
  }
  if (!(config_.warmup_epochs >= 0)) {
    throw ConfigError(fmt::format("schedule.warmup_epochs: expected a value >= 0, got {}", config_.warmup_epochs));
  }
  for (double m : config_.milestones) {
    if (!(m >= 0)) throw ConfigError(fmt::format("schedule.milestones: expected epochs >= 0, got {}", m));
  }
  warmup_steps_ = epochs_to_steps(config_.warmup_epochs, steps_per_epoch_);
}

double LrSchedule::lr_at(int64_t step) const {
  CONVNET_CHECK(step >= 0, "learning rate asked for step {}", step);
  step = std::min(step, total_steps_);
  if (step < warmup_steps_) {
    const double ramp = static_cast<double>(step) / static_cast<double>(warmup_steps_);
    return base_lr_ * (config_.warmup_start_factor + (1.0 - config_.warmup_start_factor) * ramp);
  }
  if (config_.name == "constant") return base_lr_;
  if (config_.name == "multistep") {
    int passed = 0;
    for (double m : config_.milestones) passed += epochs_to_steps(m, steps_per_epoch_) <= step ? 1 : 0;
    return base_lr_ * std::pow(config_.gamma, passed);
  }
  // Progress after warm-up; a warm-up that fills the whole run leaves t = 1 at its end.
  const int64_t span = total_steps_ - warmup_steps_;
  const double t =
      span > 0 ? std::clamp(static_cast<double>(step - warmup_steps_) / static_cast<double>(span), 0.0, 1.0) : 1.0;
  const double final_lr = config_.final_lr_factor * base_lr_;
  if (config_.name == "cosine") return final_lr + (base_lr_ - final_lr) * (1.0 + std::cos(std::numbers::pi * t)) / 2.0;
  return base_lr_ + (final_lr - base_lr_) * t;  // linear
}

}  // namespace convnet
