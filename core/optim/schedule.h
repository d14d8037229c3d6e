// Step-based learning-rate schedules. Epoch-valued settings (warm-up length, milestones) are
// converted to steps with steps_per_epoch, so fractional epochs work.
//
//   constant:  lr
//   multistep: lr * gamma^(number of milestones passed)
//   cosine:    final + (lr - final) * (1 + cos(pi * t)) / 2, t = progress after warm-up in [0, 1]
//   linear:    lr + (final - lr) * t
// with final = final_lr_factor * lr. During warm-up (the first warmup_epochs) every schedule
// instead ramps linearly from warmup_start_factor * lr at step 0 to lr at the end of warm-up.
#pragma once

#include <cstdint>

#include "core/config/config.h"

namespace convnet {

class LrSchedule {
 public:
  LrSchedule(const ScheduleConfig& config, double base_lr, int64_t steps_per_epoch, int64_t total_steps);
  double lr_at(int64_t step) const;  // step counts from 0; steps past total_steps hold the final value

 private:
  ScheduleConfig config_;
  double base_lr_;
  int64_t steps_per_epoch_, total_steps_, warmup_steps_;
};

}  // namespace convnet
