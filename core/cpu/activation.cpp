#include "core/cpu/activation.h"

#include <cmath>
#include <numbers>

#include "core/base/activation_math.h"
#include "core/base/op_checks.h"
#include "core/base/precision.h"
#include "core/cpu/parallel.h"

namespace convnet::cpu {

namespace {
constexpr int64_t kGrain = 1 << 14;

template <class F>
void elementwise(int64_t n, F&& f) {
  parallel_for(0, n, kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) f(i);
  });
}
}  // namespace

void relu_forward(const Tensor& x, Tensor& y) {
  OpChecks::cpu("relu_forward").allow_bf16_operands(true).relu_forward(x, y);
  const float* xp = x.f32();
  if (y.dtype() == DType::bf16) {
    uint16_t* yp = y.data<uint16_t>();
    elementwise(x.numel(), [&](int64_t i) { yp[i] = to_bf16_bits(relu(xp[i])); });
    return;
  }
  float* yp = y.f32();
  elementwise(x.numel(), [&](int64_t i) { yp[i] = relu(xp[i]); });
}

void relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx) {
  OpChecks::cpu("relu_backward").allow_bf16_operands(true).relu_backward(y, dy, dx);
  const float* dyp = dy.f32();
  float* dxp = dx.f32();
  // Load dy unconditionally: a conditional load keeps the compiler from vectorising the select.
  if (y.dtype() == DType::bf16) {
    const uint16_t* yp = y.data<uint16_t>();
    elementwise(y.numel(), [&](int64_t i) {
      const float g = dyp[i];
      dxp[i] = relu_grad(from_bf16_bits(yp[i]), g);
    });
    return;
  }
  const float* yp = y.f32();
  elementwise(y.numel(), [&](int64_t i) {
    const float g = dyp[i];
    dxp[i] = relu_grad(yp[i], g);
  });
}

void gelu_forward(const Tensor& x, Tensor& y) {
  OpChecks::cpu("gelu_forward").activation_forward(x, y);
  const float* xp = x.f32();
  float* yp = y.f32();
  constexpr auto inv_sqrt2 = static_cast<float>(1.0 / std::numbers::sqrt2);
  elementwise(x.numel(), [&](int64_t i) {
    const float v = xp[i];
    yp[i] = 0.5f * v * (1.0f + std::erf(v * inv_sqrt2));
  });
}

void gelu_backward(const Tensor& x, const Tensor& dy, Tensor& dx) {
  OpChecks::cpu("gelu_backward").activation_backward(x, "x", dy, dx);
  const float* xp = x.f32();
  const float* dyp = dy.f32();
  float* dxp = dx.f32();
  constexpr auto inv_sqrt2 = static_cast<float>(1.0 / std::numbers::sqrt2);
  constexpr auto inv_sqrt_2pi = static_cast<float>(std::numbers::inv_sqrtpi / std::numbers::sqrt2);
  elementwise(x.numel(), [&](int64_t i) {
    const float v = xp[i];
    const float cdf = 0.5f * (1.0f + std::erf(v * inv_sqrt2));
    const float pdf = inv_sqrt_2pi * std::exp(-0.5f * v * v);
    dxp[i] = dyp[i] * (cdf + v * pdf);
  });
}

}  // namespace convnet::cpu
