// Named backends. The cpu backend is always present; GPU builds add "cuda" and "cudnn" by calling
// convnet::cuda::register_backends() (cuda/register.h) at program start.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/base/backend.h"

namespace convnet {

using BackendFactory = std::function<std::unique_ptr<Backend>()>;
void register_backend(const std::string& name, BackendFactory factory);
// Throws ConfigError naming the known backends when `name` is unknown.
std::unique_ptr<Backend> create_backend(const std::string& name);
std::vector<std::string> registered_backends();

}  // namespace convnet
