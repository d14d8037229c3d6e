// Progress while an epoch runs: on a terminal one line rewritten in place (step, images/s, loss,
// accuracy, ETA); otherwise a plain log line every `every` steps, so CI logs stay readable.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace convnet {

class Progress {
 public:
  // `first_step`: the steps already done when the clock starts (a resumed run's), so the ETA is
  // measured over this run's steps only.
  Progress(int64_t total_steps, int every, int64_t first_step = 0);
  // Call with the running epoch means after a step (every step, or every few: the trainer calls it
  // when it reads the statistics back).
  void update(int64_t step, int64_t epoch, int64_t batch, int64_t batches_per_epoch, double loss, double accuracy,
              double images_per_sec);
  void finish_line();  // ends an in-place line before other output

 private:
  int64_t total_steps_;
  int every_;
  bool tty_;
  bool open_line_ = false;
  std::chrono::steady_clock::time_point start_;
  int64_t first_step_;
};

std::string format_duration(double seconds);  // "1h02m", "3m07s", "42s"

}  // namespace convnet
