// A fixture for single-layer tests on the cpu backend: build() runs a layer's setup contract
// (configure, backend, allocate, initialize from a seed) and output_for() allocates a NaN-poisoned
// output for a batch. Header-only: the layer_* tests link the layers and the cpu backend.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <memory>

#include "core/base/rng.h"
#include "core/cpu/cpu_backend.h"
#include "core/layers/layer.h"

namespace convnet::testing {

class CpuLayerTest : public ::testing::Test {
 protected:
  void build(Layer& layer, const Shape& example, uint64_t seed = 0) {
    layer.configure(example);
    layer.set_backend(*backend_);
    layer.allocate_parameters();
    Rng rng(seed);
    layer.initialize(rng);
  }
  Tensor output_for(const Layer& layer, int64_t n) {
    Shape s{n};
    s.insert(s.end(), layer.output_shape().begin(), layer.output_shape().end());
    Tensor y = backend_->empty(s);
    y.fill(std::numeric_limits<float>::quiet_NaN());
    return y;
  }
  std::unique_ptr<Backend> backend_ = make_cpu_backend();
};

}  // namespace convnet::testing
