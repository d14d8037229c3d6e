#include "core/cpu/dropout.h"

#include "core/base/error.h"
#include "core/base/rng.h"
#include "core/cpu/checks.h"
#include "core/cpu/parallel.h"

namespace convnet::cpu {

namespace {
constexpr int64_t kGrain = 1 << 14;

float keep_scale(float p, const char* op) {
  CONVNET_CHECK(p >= 0.0f && p <= 1.0f, "{}: drop probability {} must lie in [0, 1]", op, p);
  return p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
}
}  // namespace

void dropout_forward(const Tensor& x, Tensor& y, Tensor& mask, float p, uint64_t seed) {
  const char* op = "dropout_forward";
  const float scale = keep_scale(p, op);
  check_tensor(x, op, "x");
  check_shape(y, x.shape(), op, "y");
  check_shape(mask, x.shape(), op, "mask", DType::u8);
  const float* xp = x.f32();
  float* yp = y.f32();
  uint8_t* mp = mask.data<uint8_t>();
  parallel_for(0, x.numel(), kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const bool keep = hash_uniform(seed, static_cast<uint64_t>(i)) >= p;
      mp[i] = keep ? 1 : 0;
      yp[i] = keep ? xp[i] * scale : 0.0f;
    }
  });
}

void dropout_backward(const Tensor& dy, const Tensor& mask, float p, Tensor& dx) {
  const char* op = "dropout_backward";
  const float scale = keep_scale(p, op);
  check_tensor(dy, op, "dy");
  check_shape(mask, dy.shape(), op, "mask", DType::u8);
  check_shape(dx, dy.shape(), op, "dx");
  const float* dyp = dy.f32();
  const uint8_t* mp = mask.data<uint8_t>();
  float* dxp = dx.f32();
  parallel_for(0, dy.numel(), kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) dxp[i] = mp[i] ? dyp[i] * scale : 0.0f;
  });
}

}  // namespace convnet::cpu
