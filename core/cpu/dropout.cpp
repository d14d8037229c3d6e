#include "core/cpu/dropout.h"

#include "core/base/op_checks.h"
#include "core/base/rng.h"
#include "core/cpu/parallel.h"

namespace convnet::cpu {

namespace {
constexpr int64_t kGrain = 1 << 14;

// The scale of the kept elements, for a validated p in [0, 1].
float keep_scale(float p) {
  return p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
}
}  // namespace

void dropout_forward(const Tensor& x, Tensor& y, Tensor& mask, float p, uint64_t seed) {
  OpChecks::cpu("dropout_forward").dropout_forward(x, y, mask, p);
  const float scale = keep_scale(p);
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
  OpChecks::cpu("dropout_backward").dropout_backward(dy, mask, p, dx);
  const float scale = keep_scale(p);
  const float* dyp = dy.f32();
  const uint8_t* mp = mask.data<uint8_t>();
  float* dxp = dx.f32();
  parallel_for(0, dy.numel(), kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) dxp[i] = mp[i] ? dyp[i] * scale : 0.0f;
  });
}

}  // namespace convnet::cpu
