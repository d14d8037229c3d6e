// Helpers shared by the model builders in models/ (not part of the builders' interface).
#pragma once

#include <string>

#include "core/config/config.h"

namespace convnet {

// A LayerSpec of `type` with every other field at its default.
inline LayerSpec spec_of(const std::string& type) {
  LayerSpec s;
  s.type = type;
  return s;
}

}  // namespace convnet
