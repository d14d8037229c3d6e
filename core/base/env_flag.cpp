#include "core/base/env_flag.h"

#include <cstdlib>
#include <cstring>

#include "core/base/error.h"

namespace convnet {

bool parse_env_flag(const char* variable, const char* value, bool fallback) {
  if (value == nullptr) return fallback;
  if (std::strcmp(value, "0") == 0) return false;
  if (std::strcmp(value, "1") == 0) return true;
  throw ConfigError(fmt::format("environment variable {}=\"{}\" is not valid: expected 0 or 1", variable, value));
}

bool env_flag(const char* variable, bool fallback) {
  return parse_env_flag(variable, std::getenv(variable), fallback);
}

}  // namespace convnet
