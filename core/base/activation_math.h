// The per-element ReLU formulas, shared by the cpu backend, our CUDA kernels (activation and the
// tensor-core convolution epilogue) and the tests, so that every path agrees bit for bit.
// constexpr on plain floats: usable in device code (nvcc --expt-relaxed-constexpr).
//
// NaN propagates, as in PyTorch (torch.relu(nan) = nan): `x > 0 ? x : 0` would turn a NaN into 0,
// so a NaN born in an early layer would never reach the loss and the trainer's NaN guard would not
// fire. Written with the comparisons that are false for NaN: x < 0 and y <= 0.
#pragma once

namespace convnet {

constexpr float relu(float x) {
  return x < 0.0f ? 0.0f : x;
}

// Gradient through y = relu(x), from the output y: dy where y > 0 (or y is NaN), else 0.
constexpr float relu_grad(float y, float dy) {
  return y <= 0.0f ? 0.0f : dy;
}

}  // namespace convnet
