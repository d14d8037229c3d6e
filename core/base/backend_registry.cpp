#include "core/base/backend_registry.h"

#include <map>
#include <mutex>

#include "core/base/error.h"

namespace convnet {

namespace {
std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
std::map<std::string, BackendFactory>& registry() {
  static std::map<std::string, BackendFactory> r;
  return r;
}
}  // namespace

void register_backend(const std::string& name, BackendFactory factory) {
  std::lock_guard lock(registry_mutex());
  registry()[name] = std::move(factory);
}

std::unique_ptr<Backend> create_backend(const std::string& name) {
  BackendFactory factory;
  {
    std::lock_guard lock(registry_mutex());
    auto it = registry().find(name);
    if (it == registry().end()) {
      std::vector<std::string> names;
      for (const auto& [n, f] : registry()) names.push_back(n);
      throw ConfigError(
          fmt::format("unknown or unavailable backend '{}' (this build has: {})", name, fmt::join(names, ", ")));
    }
    factory = it->second;
  }
  return factory();
}

std::vector<std::string> registered_backends() {
  std::lock_guard lock(registry_mutex());
  std::vector<std::string> names;
  for (const auto& [n, f] : registry()) names.push_back(n);
  return names;
}

}  // namespace convnet
