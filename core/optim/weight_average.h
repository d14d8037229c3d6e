// WeightAverage: an exponential moving average of a model's weights (EmaConfig, section `ema`).
//
// It holds one device tensor `average` per averaged model tensor (every parameter value and every
// f32 buffer: batchnorm running statistics; integer buffers such as num_batches_tracked are not
// averaged), on the device of the live tensor, initialised to a copy of it. update(d) computes
//   average = d * average + (1 - d) * current
// with each tensor's Backend::axpby. after_step() applies the schedule of EmaConfig (airbench94):
// - steps are 1-based counts after the update; step s belongs to epoch (s - 1) / steps_per_epoch;
// - up to and including first_update_step() (the first multiple of `every` in an epoch >=
//   start_epochs), average = current: the average starts there (airbench's LookaheadState);
// - after it, every `every` steps update(decay_at(step)), decay_at(step) = decay *
//   (step / total_steps)^decay_power;
// - lookahead: each update is followed by current = average, and so are the end of every epoch
//   (end_epoch()) and the step that reaches total_steps (airbench's update with decay 1).
// Because the schedule depends on the step count only, a resumed run needs no extra state.
// - ema: the live tensors keep training; the trainer evaluates and saves the average through
//   swap(), which exchanges the Tensor handles of `current` and `average` (no copy: Tensors
//   alias storage). Gradients and optimizer momentum belong to Parameter::grad and Sgd, not to
//   the value, so they stay with the raw weights; call swap() again before the next step.
// core/train builds the target list from a Graph (weight_average_targets in trainer.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/base/backend.h"
#include "core/config/config.h"
#include "core/layers/layer.h"

namespace convnet {

struct AveragedTensor {
  std::string name;                // full name, e.g. "features.1.running_mean"
  Tensor* current;                 // the live f32 tensor (Parameter::value or Buffer::value); must outlive this
  Backend* backend;                // the backend of the tensor's layer (its device)
  Tensor average;                  // allocated by WeightAverage
  Parameter* parameter = nullptr;  // current's owner when it is a parameter value: told of writes
};

class WeightAverage {
 public:
  enum class Mode { ema, lookahead };
  // config.mode must be ema or lookahead (ConfigError otherwise, as for every > 0 and decay in
  // [0, 1]). Allocates the averages and copies the current values into them.
  WeightAverage(const EmaConfig& config, std::vector<AveragedTensor> targets);

  Mode mode() const { return mode_; }
  const std::string& mode_name() const { return config_.mode; }
  const EmaConfig& config() const { return config_; }
  std::vector<AveragedTensor>& tensors() { return tensors_; }

  // decay * (step / total_steps)^decay_power (total_steps > 0).
  static double decay_at(const EmaConfig& config, int64_t step, int64_t total_steps);

  // The first step whose update uses the schedule: before it (and at it) the average is a copy.
  static int64_t first_update_step(const EmaConfig& config, int64_t steps_per_epoch);
  // The schedule above, after optimizer step number `step` (1-based) of `total_steps`.
  void after_step(int64_t step, int64_t total_steps, int64_t steps_per_epoch);
  // The end of an epoch (or of the run) after `step` steps: lookahead resets the weights to the
  // average once averaging has started.
  void end_epoch(int64_t step, int64_t steps_per_epoch);
  // Whether the average differs from a plain copy of the weights after `step` steps.
  bool started(int64_t step, int64_t steps_per_epoch) const {
    return step >= first_update_step(config_, steps_per_epoch);
  }
  // average = decay * average + (1 - decay) * current, for every tensor.
  void update(double decay);
  // current = average, for every tensor (lookahead).
  void copy_to_current();
  // average = current, for every tensor (before averaging starts).
  void copy_to_average();
  // Exchanges the handles of current and average (ema: evaluate / save the average).
  void swap();

 private:
  EmaConfig config_;
  Mode mode_;
  std::vector<AveragedTensor> tensors_;
};

// Swaps the average in for the lifetime of the guard (nothing when `average` is null or not in
// ema mode): the live tensors then hold the averaged weights.
class AverageSwapGuard {
 public:
  explicit AverageSwapGuard(WeightAverage* average);
  ~AverageSwapGuard();
  AverageSwapGuard(const AverageSwapGuard&) = delete;
  AverageSwapGuard& operator=(const AverageSwapGuard&) = delete;

 private:
  WeightAverage* average_;
};

}  // namespace convnet
