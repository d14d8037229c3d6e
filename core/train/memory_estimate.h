// The memory a net needs, estimated from a planned graph (Graph::plan: shapes known, nothing
// allocated), checked against what the machine has, so that a model too large to fit stops with
// a ConfigError naming the sizes instead of being killed by the kernel's OOM killer mid-build.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/config/config.h"
#include "core/train/graph.h"

namespace convnet {

// In double: a hostile config (thousands of wide, padded layers) can need more than 2^63 bytes.
struct MemoryEstimate {
  double parameter_count = 0;
  double parameter_bytes = 0;   // values, gradients and the optimizer's and weight average's copies
  double activation_bytes = 0;  // Graph::activation_memory at the batch size: outputs and gradients
  double total() const { return parameter_bytes + activation_bytes; }
};

// fp32 copies of every parameter a run holds: value and gradient, plus the momentum buffer
// (optimizer.momentum > 0), the average (ema.mode ema or lookahead), and half a copy for the bf16
// weight copies of train.precision bf16 (an upper bound: only conv and linear weights keep one).
double parameter_copies(const Config& config);

// The host memory the layers of `graph` placed on the host need at `batch`; std::nullopt when a
// layer runs on a GPU (the device allocator reports its own out-of-memory errors, naming the size).
std::optional<MemoryEstimate> estimate_host_memory(const Graph& graph, int64_t batch, double copies);

// MemAvailable from /proc/meminfo, in bytes; std::nullopt when it cannot be read.
std::optional<int64_t> available_host_memory();
// The MemAvailable line of /proc/meminfo text, in bytes.
std::optional<int64_t> parse_mem_available(const std::string& meminfo);

// Throws ConfigError when `estimate` exceeds `available` bytes: "model M at train.batch_size B needs
// about X GiB of host memory (... activations, ... parameters), this machine has Y GiB available".
void check_memory_fits(const MemoryEstimate& estimate, double available, const Config& config);

// The three above for `config`'s run of the planned `graph`: a no-op when a layer is on a GPU or
// MemAvailable is unknown.
void check_host_memory(const Graph& graph, const Config& config);

}  // namespace convnet
