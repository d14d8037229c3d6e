// The backends a model runs on, from a TrainConfig: registration of every backend this build has
// (the cpu one, plus the GPU ones in a CUDA build) and their creation. Shared by the CLI and by
// convnet::Model (convnet/model.h), so that both pick a backend the same way.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "core/base/backend.h"
#include "core/config/config.h"

namespace convnet {

// Registers the backends this build has ("cpu", plus the GPU ones in a CUDA build, on GPU
// `gpu_index`).
void register_all_backends(int gpu_index = 0);

// Resolves "auto": the first GPU backend this build can run, else "cpu" with a warning.
std::string resolve_backend_name(const std::string& name);

// The backends of a run: the graph-wide one (train.backend, "auto" resolved) and any named in
// train.layer_backends, each created once. Also sets the cpu thread count (train.threads) and
// the precision (train.precision) of each. An unknown backend name is a ConfigError.
class Backends {
 public:
  // `gpu_index`: the GPU the GPU backends use (a data-parallel rank's own).
  explicit Backends(const TrainConfig& train, int gpu_index = 0);
  Backend& main() { return *main_; }
  std::map<std::string, Backend*> layer_overrides() const { return overrides_; }

 private:
  std::unique_ptr<Backend> main_;
  std::map<std::string, std::unique_ptr<Backend>> others_;
  std::map<std::string, Backend*> overrides_;
};

}  // namespace convnet
