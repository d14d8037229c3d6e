#include "convnet/backends.h"

#include <spdlog/spdlog.h>

#include "core/base/backend_registry.h"
#include "core/base/precision.h"
#include "core/cpu/cpu_backend.h"
#ifdef CONVNET_WITH_CUDA
#include "cuda/device.h"
#include "cuda/gpu_backend.h"
#endif

namespace convnet {

void register_all_backends(int gpu_index) {
  register_cpu_backend();
#ifdef CONVNET_WITH_CUDA
  cuda::register_backends(gpu_index);
#else
  (void)gpu_index;
#endif
}

std::string resolve_backend_name(const std::string& name) {
  if (name != "auto") return name;
#ifdef CONVNET_WITH_CUDA
  if (cuda::gpu_count() > 0) return "cuda";
  spdlog::warn("train.backend auto: {}; using cpu", cuda::gpu_unavailable_reason());
#else
  spdlog::warn("train.backend auto: this build has no GPU backends; using cpu");
#endif
  return "cpu";
}

namespace {

// train.precision on `backend`. fp32 is the default, so it leaves cuda_tf32 and cudnn_tf32 (whose
// names ask for tf32) as they are; a precision a backend cannot compute is a ConfigError.
void apply_precision(Backend& backend, Precision precision) {
  if (precision == Precision::fp32 && backend.precision() == Precision::tf32) return;
  backend.set_precision(precision);
}

}  // namespace

Backends::Backends(const TrainConfig& train, int gpu_index) {
  register_all_backends(gpu_index);
  set_cpu_threads(train.threads);
  const Precision precision = parse_precision(train.precision, "train.precision");
  const std::string main_name = resolve_backend_name(train.backend);
  main_ = create_backend(main_name);
  apply_precision(*main_, precision);
  for (const auto& [layer, backend_name] : train.layer_backends) {
    const std::string name = resolve_backend_name(backend_name);
    if (name == main_name) {
      overrides_[layer] = main_.get();
      continue;
    }
    auto& slot = others_[name];
    if (!slot) {
      slot = create_backend(name);
      apply_precision(*slot, precision);
    }
    overrides_[layer] = slot.get();
  }
}

}  // namespace convnet
