// Finite-difference gradient checker for layers (Caffe / dlib style), on a host-memory backend.
//
// For a layer and a random input x it uses the scalar loss L = sum(y * R) with a fixed random
// projection R, so dL/dy = R. The analytic gradients come from one backward with dy = R; the
// numeric ones from central differences (L(v + h) - L(v - h)) / (2h) for EVERY input element and
// EVERY parameter element. A pair passes when |a - n| <= threshold * max(|a|, |n|, 1).
// It also checks the rest of the backward contract:
// - outputs and gradients are overwritten: y, dx and every parameter gradient are poisoned (NaN,
//   inf, or large finite values that would show accumulation) before the calls that must write them;
// - backward with dx = nullptr still writes every parameter gradient, identical to the first call;
// - a repeated backward gives the same results (no hidden state consumed by backward).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/base/backend.h"
#include "core/layers/layer.h"

namespace convnet::testing {

struct GradientCheckOptions {
  int64_t batch = 2;
  Mode mode = Mode::train;  // forward mode for every evaluation (batchnorm: train, batch >= 4)
  float step = 1e-2f;       // h, for f32 arithmetic
  double threshold = 2e-3;
  uint64_t seed = 1;           // input, projection and parameter values
  uint64_t step_seed = 12345;  // passed to set_step_seed() before every forward (dropout mask)
  float input_low = -1.0f, input_high = 1.0f;
  // Redraw input values with |x| < kink_margin (ReLU: keep away from the kink at 0; use >= 2*step).
  float kink_margin = 0.0f;
  // Inputs become a shuffled grid of distinct values 5*step apart, none within 2.5*step of 0, so a
  // perturbation never changes which element of a window is the maximum (max pooling).
  bool distinct_inputs = false;
  // Overwrite the initialized parameters with uniform [param_low, param_high) values, so zero
  // biases and unit gammas do not hide mistakes.
  bool randomize_parameters = true;
  float param_low = -1.0f, param_high = 1.0f;
};

struct GradientCheckReport {
  int64_t input_checked = 0;  // elements of dx compared
  int64_t param_checked = 0;  // parameter-gradient elements compared
  int64_t failed = 0;
  double max_error = 0.0;             // max |a - n| / max(|a|, |n|, 1) (inf when NaN appeared)
  std::vector<std::string> problems;  // first few mismatches and contract violations
  bool ok() const { return failed == 0 && problems.empty(); }
  std::string summary() const;
};

// Configures `layer` for `example_shape` (per example, no batch dimension), attaches `backend`
// (which must keep tensors in host memory, i.e. the CPU backend), allocates and initializes the
// parameters, then runs the checks above. The layer must not have been configured before.
GradientCheckReport run_gradient_check(Layer& layer, const Shape& example_shape, Backend& backend,
                                       const GradientCheckOptions& options = {});

// gtest wrapper: success iff run_gradient_check(...).ok(), with the summary as the message.
::testing::AssertionResult gradients_match(Layer& layer, const Shape& example_shape, Backend& backend,
                                           const GradientCheckOptions& options = {});

}  // namespace convnet::testing
