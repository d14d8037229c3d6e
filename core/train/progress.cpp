#include "core/train/progress.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>

namespace convnet {

std::string format_duration(double seconds) {
  const auto s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return fmt::format("{}h{:02}m", s / 3600, s % 3600 / 60);
  if (s >= 60) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

Progress::Progress(int64_t total_steps, int every, int64_t first_step)
    : total_steps_(total_steps),
      every_(every),
      tty_(isatty(STDOUT_FILENO) == 1),
      start_(std::chrono::steady_clock::now()),
      first_step_(first_step) {}

void Progress::update(int64_t step, int64_t epoch, int64_t batch, int64_t batches_per_epoch, double loss,
                      double accuracy, double images_per_sec) {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double per_step = elapsed / static_cast<double>(std::max<int64_t>(step - first_step_, 1));
  const double eta = per_step * static_cast<double>(std::max<int64_t>(total_steps_ - step, 0));
  const std::string text =
      fmt::format("epoch {} [{}/{}] step {}/{}  loss {:.4f}  acc {:.2f}%  {:.0f} img/s  ETA {}", epoch + 1, batch + 1,
                  batches_per_epoch, step, total_steps_, loss, 100 * accuracy, images_per_sec, format_duration(eta));
  if (tty_) {
    std::printf("\r%s\033[K", text.c_str());
    std::fflush(stdout);
    open_line_ = true;
  } else if (step % every_ == 0 || batch + 1 == batches_per_epoch) {
    spdlog::info("{}", text);
  }
}

void Progress::finish_line() {
  if (open_line_) {
    std::printf("\n");
    std::fflush(stdout);
    open_line_ = false;
  }
}

}  // namespace convnet
