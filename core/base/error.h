// Errors convnet reports to users. Each names where the problem is (file, line, layer, key)
// and what was expected; the CLI maps ConfigError to exit code 2 and every other Error to 1.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

#include "core/base/fail_check.h"

namespace convnet {

// A runtime failure: bad data file, I/O error, NaN loss, device failure. Exit code 1.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// A usage or configuration mistake the user can fix by editing the config or command. Exit code 2.
class ConfigError : public Error {
 public:
  explicit ConfigError(const std::string& message) : Error(message) {}
};

}  // namespace convnet

// CONVNET_CHECK(cond, "format {}", args...): throws convnet::Error naming file:line and the condition.
#define CONVNET_CHECK(cond, ...)                                                             \
  do {                                                                                       \
    if (!(cond)) ::convnet::fail_check(__FILE__, __LINE__, #cond, fmt::format(__VA_ARGS__)); \
  } while (0)
