// Logging through spdlog: one place decides the format, so CLI output and test output agree.
#pragma once

#include <spdlog/spdlog.h>

namespace convnet {
// Sets the default logger's level ("trace".."off") and a compact pattern. Safe to call repeatedly.
void configure_logging(const std::string& level = "info");
}  // namespace convnet
