// Times one pass of work on a backend: warm-up, then `repeats` timed runs, each after
// Backend::flush_caches() and measured by Backend::elapsed_ms (CUDA events on GPU backends,
// steady_clock around the work and a synchronize on the CPU).
#pragma once

#include <functional>
#include <vector>

#include "core/base/backend.h"

namespace convnet::cli {

struct Timing {
  double median_ms = 0, min_ms = 0, max_ms = 0;
  double spread_pct() const { return median_ms > 0 ? 100.0 * (max_ms - min_ms) / median_ms : 0; }
};

Timing time_pass(Backend& backend, const std::function<void()>& pass, int repeats, int warmup = 2);

}  // namespace convnet::cli
