#include "core/optim/weight_average.h"

#include <cmath>
#include <utility>

#include "core/base/error.h"

namespace convnet {

namespace {

WeightAverage::Mode parse_mode(const EmaConfig& config) {
  if (config.mode == "ema") return WeightAverage::Mode::ema;
  if (config.mode == "lookahead") return WeightAverage::Mode::lookahead;
  throw ConfigError(fmt::format("ema.mode: expected ema or lookahead for weight averaging, got '{}'", config.mode));
}

}  // namespace

WeightAverage::WeightAverage(const EmaConfig& config, std::vector<AveragedTensor> targets)
    : config_(config), mode_(parse_mode(config)), tensors_(std::move(targets)) {
  if (config_.every < 1) throw ConfigError(fmt::format("ema.every: expected a value >= 1, got {}", config_.every));
  if (!(config_.decay >= 0 && config_.decay <= 1))
    throw ConfigError(fmt::format("ema.decay: expected a value in [0, 1], got {}", config_.decay));
  if (!(config_.decay_power >= 0))
    throw ConfigError(fmt::format("ema.decay_power: expected a value >= 0, got {}", config_.decay_power));
  for (AveragedTensor& t : tensors_) {
    CONVNET_CHECK(t.current != nullptr && t.backend != nullptr, "averaged tensor {} has no value or backend", t.name);
    CONVNET_CHECK(t.current->defined() && t.current->dtype() == DType::f32, "averaged tensor {} must be f32", t.name);
    t.average = t.backend->empty(t.current->shape());
    t.backend->copy(t.average, *t.current);
  }
  for (AveragedTensor& t : tensors_) t.backend->synchronize();
}

double WeightAverage::decay_at(const EmaConfig& config, int64_t step, int64_t total_steps) {
  CONVNET_CHECK(total_steps > 0, "decay_at: total_steps must be positive, got {}", total_steps);
  const double progress = static_cast<double>(step) / static_cast<double>(total_steps);
  return config.decay * std::pow(progress, config.decay_power);  // pow(x, 0) == 1, also for x == 0
}

int64_t WeightAverage::first_update_step(const EmaConfig& config, int64_t steps_per_epoch) {
  CONVNET_CHECK(steps_per_epoch > 0, "steps_per_epoch must be positive, got {}", steps_per_epoch);
  // Step s is in epoch (s - 1) / steps_per_epoch, so epochs >= start_epochs begin after this many steps.
  const auto first_eligible =
      static_cast<int64_t>(std::ceil(config.start_epochs * static_cast<double>(steps_per_epoch))) + 1;
  const int64_t every = config.every;
  return (first_eligible + every - 1) / every * every;
}

void WeightAverage::after_step(int64_t step, int64_t total_steps, int64_t steps_per_epoch) {
  const bool lookahead = mode_ == Mode::lookahead;
  const int64_t first = first_update_step(config_, steps_per_epoch);
  if (step <= first) {
    copy_to_average();  // not started yet, or starting now: the average is the weights
    return;
  }
  if (step % config_.every == 0) {
    update(decay_at(config_, step, total_steps));
    if (lookahead) copy_to_current();
  }
  if (lookahead && step == total_steps) copy_to_current();  // airbench: a final update with decay 1
}

void WeightAverage::end_epoch(int64_t step, int64_t steps_per_epoch) {
  if (mode_ == Mode::lookahead && started(step, steps_per_epoch)) copy_to_current();
}

void WeightAverage::copy_to_average() {
  for (AveragedTensor& t : tensors_) t.backend->copy(t.average, *t.current);
}

void WeightAverage::update(double decay) {
  const auto beta = static_cast<float>(decay);
  const auto alpha = static_cast<float>(1.0 - decay);
  for (AveragedTensor& t : tensors_) t.backend->axpby(alpha, *t.current, beta, t.average);
}

void WeightAverage::copy_to_current() {
  for (AveragedTensor& t : tensors_) {
    t.backend->copy(*t.current, t.average);
    if (t.parameter) t.parameter->value_written();
  }
}

void WeightAverage::swap() {
  for (AveragedTensor& t : tensors_) {
    std::swap(*t.current, t.average);
    if (t.parameter) t.parameter->value_written();
  }
}

AverageSwapGuard::AverageSwapGuard(WeightAverage* average)
    : average_(average && average->mode() == WeightAverage::Mode::ema ? average : nullptr) {
  if (average_) average_->swap();
}

AverageSwapGuard::~AverageSwapGuard() {
  if (average_) average_->swap();
}

}  // namespace convnet
