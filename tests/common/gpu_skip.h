// How GPU tests behave without a GPU: they skip, naming the reason, so the suite passes on CPU-only
// machines (CI). With CONVNET_REQUIRE_GPU=1 (tools/gpu_check.sh sets it) they fail instead, so a
// run on a GPU machine whose device does not answer cannot pass with nothing tested.
#pragma once

#include <gtest/gtest.h>

#include "core/base/env_flag.h"
#include "cuda/device.h"

namespace convnet::testing {

inline bool gpu_required() {
  return env_flag("CONVNET_REQUIRE_GPU", false);
}

}  // namespace convnet::testing

// In a test body or SetUp(): returns from it (skipped, or failed under CONVNET_REQUIRE_GPU=1) when
// no CUDA device answers.
#define CONVNET_SKIP_WITHOUT_GPU()                                                                                 \
  do {                                                                                                             \
    if (::convnet::cuda::gpu_count() == 0) {                                                                       \
      if (::convnet::testing::gpu_required())                                                                      \
        GTEST_FAIL() << "CONVNET_REQUIRE_GPU=1 but no CUDA device: " << ::convnet::cuda::gpu_unavailable_reason(); \
      GTEST_SKIP() << "no CUDA device: " << ::convnet::cuda::gpu_unavailable_reason();                             \
    }                                                                                                              \
  } while (0)
