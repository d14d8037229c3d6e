// Logging through spdlog: one place decides the format, so CLI output and test output agree.
#pragma once

#include <spdlog/spdlog.h>

namespace convnet {
// Sets the default logger's level ("trace".."off") and a compact pattern. Safe to call repeatedly.
void configure_logging(const std::string& level = "info");
// configure_logging(level) unless the program has set a default logger of its own: for the library
// (convnet/model.h), whose logs must not mix with a program's stdout as spdlog's own default would.
void configure_logging_unless_set(const std::string& level);
}  // namespace convnet
