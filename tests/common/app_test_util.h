// Helpers for end-to-end training tests (tests/cpu/app_*): run `convnet train`'s wiring on a
// Config, and compare checkpoints byte for byte. Header-only: only app tests link the CLI.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>

#include "core/config/config.h"
#include "core/io/safetensors.h"
#include "tools/session.h"

namespace convnet::testing {

// Trains `c` exactly as `convnet train` would (optionally resuming).
inline TrainResult train(const Config& c, const std::string& resume = "") {
  cli::TrainStart start;
  start.resume = resume;
  return cli::run_training(c, to_yaml(c), start);
}

// Every tensor and the position metadata of two checkpoints, byte for byte.
inline void expect_same_checkpoint(const std::string& a, const std::string& b) {
  const SafetensorsFile fa = read_safetensors(a), fb = read_safetensors(b);
  ASSERT_EQ(fa.tensors.size(), fb.tensors.size());
  for (size_t i = 0; i < fa.tensors.size(); ++i) {
    const NamedTensor &x = fa.tensors[i], &y = fb.tensors[i];
    ASSERT_EQ(x.name, y.name);
    ASSERT_EQ(x.tensor.shape(), y.tensor.shape()) << x.name;
    EXPECT_EQ(0, std::memcmp(x.tensor.raw(), y.tensor.raw(), x.tensor.bytes())) << x.name << " differs";
  }
  for (const char* key : {"convnet.step", "convnet.epoch", "convnet.batch_in_epoch", "convnet.rng"})
    EXPECT_EQ(fa.metadata.at(key), fb.metadata.at(key)) << key;
}

// Every f32 tensor of two checkpoints within `tolerance` relative L2 (data-parallel ranks sum
// gradients in another order than one process), NaN never passing, and the same position.
inline void expect_close_checkpoints(const std::string& a, const std::string& b, double tolerance) {
  const SafetensorsFile fa = read_safetensors(a), fb = read_safetensors(b);
  ASSERT_EQ(fa.tensors.size(), fb.tensors.size());
  for (size_t i = 0; i < fa.tensors.size(); ++i) {
    const Tensor &x = fa.tensors[i].tensor, &y = fb.tensors[i].tensor;
    ASSERT_EQ(fa.tensors[i].name, fb.tensors[i].name);
    ASSERT_EQ(x.shape(), y.shape()) << fa.tensors[i].name;
    if (x.dtype() != DType::f32) continue;
    double diff = 0, norm = 0;
    for (int64_t k = 0; k < x.numel(); ++k) {
      const double d = static_cast<double>(x.f32()[k]) - static_cast<double>(y.f32()[k]);
      diff += d * d;
      norm += static_cast<double>(x.f32()[k]) * static_cast<double>(x.f32()[k]);
    }
    EXPECT_TRUE(std::sqrt(diff) <= tolerance * std::sqrt(norm) + 1e-12)
        << fa.tensors[i].name << ": relative L2 difference " << std::sqrt(diff / norm);
  }
  for (const char* key : {"convnet.step", "convnet.epoch", "convnet.batch_in_epoch"})
    EXPECT_EQ(fa.metadata.at(key), fb.metadata.at(key)) << key;
}

}  // namespace convnet::testing
