#include "tools/pass_timer.h"

#include <algorithm>

namespace convnet::cli {

Timing time_pass(Backend& backend, const std::function<void()>& pass, int repeats, int warmup) {
  for (int i = 0; i < warmup; ++i) pass();
  backend.synchronize();
  std::vector<double> ms;
  for (int i = 0; i < repeats; ++i) {
    backend.flush_caches();  // every repetition starts cold, as in a real training step
    ms.push_back(backend.elapsed_ms(pass));
  }
  std::sort(ms.begin(), ms.end());
  return {ms[ms.size() / 2], ms.front(), ms.back()};
}

}  // namespace convnet::cli
