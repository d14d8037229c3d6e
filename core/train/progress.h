// Progress while an epoch runs: on a terminal one line rewritten in place (step, images/s, loss,
// accuracy, ETA); otherwise a plain log line every `every` steps, so CI logs stay readable.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace convnet {

class Progress {
 public:
  Progress(int64_t total_steps, int every);
  // Call after each step with the running epoch means.
  void update(int64_t step, int64_t epoch, int64_t batch, int64_t batches_per_epoch, double loss, double accuracy,
              double images_per_sec);
  void finish_line();  // ends an in-place line before other output

 private:
  int64_t total_steps_;
  int every_;
  bool tty_;
  bool open_line_ = false;
  std::chrono::steady_clock::time_point start_;
  int64_t first_step_ = -1;
};

std::string format_duration(double seconds);  // "1h02m", "3m07s", "42s"

}  // namespace convnet
