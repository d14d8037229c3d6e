// Reading a stored activation as float: an f32 tensor as it is, a bf16 one (its bits as uint16_t;
// bf16 activation storage, Layer::writes_bf16_output) widened exactly. Kernels templated on the
// element type compute the same float arithmetic on either, so a bf16 input gives the bits its f32
// widening gives.
#pragma once

#include <cstdint>

#include "cuda/ptx.cuh"

namespace convnet::cuda {

__device__ __forceinline__ float stored_value(float v) {
  return v;
}
__device__ __forceinline__ float stored_value(uint16_t bits) {
  return ptx::from_bf16(bits);
}

// Vec consecutive values from p. Vec == 4: one 128-bit load of floats, or two 32-bit loads of bf16
// pairs (the caller guarantees 4 elements' alignment: 16 bytes for f32, 8 for bf16).
template <int Vec>
__device__ void load_values(const float* p, float (&v)[Vec]) {
  if constexpr (Vec == 4) {
    const float4 t = *reinterpret_cast<const float4*>(p);
    v[0] = t.x, v[1] = t.y, v[2] = t.z, v[3] = t.w;
  } else {
    for (int k = 0; k < Vec; ++k) v[k] = p[k];
  }
}
template <int Vec>
__device__ void load_values(const uint16_t* p, float (&v)[Vec]) {
  if constexpr (Vec == 4) {
    const uint32_t* pairs = reinterpret_cast<const uint32_t*>(p);
    const uint32_t ab = pairs[0], cd = pairs[1];
    v[0] = ptx::from_bf16(static_cast<uint16_t>(ab)), v[1] = ptx::from_bf16(static_cast<uint16_t>(ab >> 16));
    v[2] = ptx::from_bf16(static_cast<uint16_t>(cd)), v[3] = ptx::from_bf16(static_cast<uint16_t>(cd >> 16));
  } else {
    for (int k = 0; k < Vec; ++k) v[k] = ptx::from_bf16(p[k]);
  }
}

}  // namespace convnet::cuda
