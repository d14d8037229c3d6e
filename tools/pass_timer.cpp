#include "tools/pass_timer.h"

#include <algorithm>
#include <chrono>

namespace convnet::cli {

Timing time_pass(Backend& backend, const std::function<void()>& pass, int repeats, int warmup) {
  for (int i = 0; i < warmup; ++i) pass();
  backend.synchronize();
  std::vector<double> ms;
  for (int i = 0; i < repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    pass();
    backend.synchronize();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(ms.begin(), ms.end());
  return {ms[ms.size() / 2], ms.front(), ms.back()};
}

}  // namespace convnet::cli
