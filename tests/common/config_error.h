// The ConfigError message parse_config() raises for `yaml` (read as "bad.yaml"), or "" and a test
// failure when it accepts it. Header-only, for the config tests.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/base/error.h"
#include "core/config/config.h"

namespace convnet::testing {

inline std::string config_error_of(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  try {
    parse_config(yaml, "bad.yaml", overrides);
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no ConfigError for:\n" << yaml;
  return "";
}

}  // namespace convnet::testing
