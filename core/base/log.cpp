#include "core/base/log.h"

namespace convnet {

void configure_logging(const std::string& level) {
  spdlog::set_pattern("[%H:%M:%S] %^%l%$ %v");
  spdlog::set_level(spdlog::level::from_str(level));
}

}  // namespace convnet
