#include "core/train/memory_estimate.h"

#include <fmt/format.h>

#include <fstream>
#include <sstream>

#include "core/base/error.h"

namespace convnet {

namespace {

std::string gib(double bytes) {
  return fmt::format("{:.1f} GiB", bytes / (int64_t{1} << 30));
}

// Graph::activation_memory sums in int64; past this many bytes (an upper bound, outputs,
// gradients and layer state of every layer counted in double) it could overflow, and the net fits nowhere anyway.
constexpr double kExactActivationLimit = 0x1p62;

}  // namespace

double parameter_copies(const Config& config) {
  return 2 + (config.optimizer.momentum > 0 ? 1 : 0) + (config.ema.mode != "none" ? 1 : 0) +
         (config.train.precision == "bf16" ? 0.5 : 0);
}

std::optional<MemoryEstimate> estimate_host_memory(const Graph& graph, int64_t batch, double copies) {
  MemoryEstimate estimate;
  double activation_bound = 0;
  for (size_t i = 0; i < graph.size(); ++i) {
    if (graph.layer_backend(i).device().kind != DeviceKind::cpu) return std::nullopt;
    estimate.parameter_count += static_cast<double>(graph.layer(i).parameter_numel());
    activation_bound += 3.0 * static_cast<double>(batch) *
                        static_cast<double>(shape_numel(graph.layer(i).output_shape())) * sizeof(float);
  }
  estimate.parameter_bytes = estimate.parameter_count * copies * sizeof(float);
  estimate.activation_bytes = activation_bound < kExactActivationLimit
                                  ? static_cast<double>(graph.activation_memory(batch).total())
                                  : activation_bound;
  return estimate;
}

std::optional<int64_t> parse_mem_available(const std::string& meminfo) {
  std::istringstream lines(meminfo);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::string name, unit;
    int64_t kib = -1;
    if (fields >> name >> kib >> unit && name == "MemAvailable:" && unit == "kB" && kib >= 0) return kib * 1024;
  }
  return std::nullopt;
}

std::optional<int64_t> available_host_memory() {
  std::ifstream in("/proc/meminfo");
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  return parse_mem_available(text.str());
}

void check_memory_fits(const MemoryEstimate& estimate, double available, const Config& config) {
  if (estimate.total() <= available) return;
  throw ConfigError(fmt::format(
      "model {} at train.batch_size {} needs about {} of host memory ({} for the activations and their "
      "gradients, {} for {:.0f} parameters with their gradients and optimizer state), but this machine has {} "
      "available (MemAvailable in /proc/meminfo); use a smaller train.batch_size or a smaller model",
      config.model.name, config.train.batch_size, gib(estimate.total()), gib(estimate.activation_bytes),
      gib(estimate.parameter_bytes), estimate.parameter_count, gib(available)));
}

void check_host_memory(const Graph& graph, const Config& config) {
  const std::optional<MemoryEstimate> estimate =
      estimate_host_memory(graph, config.train.batch_size, parameter_copies(config));
  const std::optional<int64_t> available = available_host_memory();
  if (estimate && available) check_memory_fits(*estimate, static_cast<double>(*available), config);
}

}  // namespace convnet
