#include "core/base/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace convnet {

void configure_logging(const std::string& level) {
  // Logs go to stderr so that stdout carries only results (tables, --json objects, progress).
  static const bool installed = [] {
    spdlog::set_default_logger(spdlog::stderr_color_mt("convnet"));
    return true;
  }();
  (void)installed;
  spdlog::set_pattern("[%H:%M:%S] %^%l%$ %v");
  spdlog::set_level(spdlog::level::from_str(level));
}

void configure_logging_unless_set(const std::string& level) {
  // spdlog's own default logger is the unnamed one on stdout; anything else is the program's choice.
  if (spdlog::default_logger()->name().empty()) configure_logging(level);
}

}  // namespace convnet
