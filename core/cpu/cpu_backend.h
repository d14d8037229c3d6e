// The `cpu` backend: the plain C++ reference every other backend is checked against.
// Convolution and linear layers go through im2col + OpenBLAS sgemm; everything else is simple
// loops parallelised with parallel_for (static partition, so results do not depend on timing).
#pragma once

#include <memory>

#include "core/base/backend.h"

namespace convnet {

// The cpu backend computing convolutions and linear layers in `precision` (Backend::set_precision).
std::unique_ptr<Backend> make_cpu_backend(Precision precision = Precision::fp32);
// Threads used by the CPU backend (0 = all hardware threads). GEMMs are split over them in fixed
// blocks with OpenBLAS itself single-threaded, so results never depend on this. Call before training.
void set_cpu_threads(int threads);
int cpu_threads();
// Registers "cpu" in the backend registry (core/base/backend_registry.h).
void register_cpu_backend();

}  // namespace convnet
