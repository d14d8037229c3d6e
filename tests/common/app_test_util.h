// Helpers for end-to-end training tests (tests/cpu/app_*): run `convnet train`'s wiring on a
// Config, and compare checkpoints byte for byte. Header-only: only app tests link the CLI.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "core/config/config.h"
#include "core/io/safetensors.h"
#include "tools/session.h"

namespace convnet::testing {

// Trains `c` exactly as `convnet train` would (optionally resuming).
inline TrainResult train(const Config& c, const std::string& resume = "") {
  return cli::run_training(c, to_yaml(c), resume);
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

}  // namespace convnet::testing
