// Emulation stand-in for <cuda_runtime.h>: the CUDA language extensions the kernels in cuda/ use,
// mapped onto plain C++ and the fiber emulator (tests/emu/emu_runtime.h). Generated files include
// it first, as nvcc does implicitly for every .cu file.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numbers>
#include <type_traits>

#include "cuda_runtime_api.h"
#include "tests/emu/emu_runtime.h"

// nvcc defines __CUDACC__ in every .cu file, and cuda/reduce_kernels.h hides its device helpers
// behind it. libstdc++ and glibc test it too, so it is defined only after the standard headers the
// kernels use are in (their include guards keep them from being read again with it).
#ifndef __CUDACC__
#define __CUDACC__ 1
#endif

// Execution-space and launch qualifiers mean nothing on the CPU.
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __grid_constant__
// __shared__ variables are per block and live across the block's barriers. Blocks run one at a
// time, so one static object per declaration is the block's shared memory. Like real shared
// memory it keeps whatever the previous block left: a kernel must not read it before writing it.
// `extern __shared__ T name[];` (dynamic shared memory) never gets here: tests/emu/cuda_to_cpp.py
// rewrites it into a pointer to emu::dynamic_shared_memory().
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

// float4 loads and stores check their address, since the hardware requires 16-byte alignment:
// copying from a float4 lvalue is a load, assigning to one is a store.
struct alignas(16) float4 {
  float x, y, z, w;
  float4(float a, float b, float c, float d) : x(a), y(b), z(c), w(d) {}
  float4(const float4& o) {
    emu::check_vector_access(&o);
    x = o.x;
    y = o.y;
    z = o.z;
    w = o.w;
  }
  float4& operator=(const float4& o) {
    emu::check_vector_access(this);
    x = o.x;
    y = o.y;
    z = o.z;
    w = o.w;
    return *this;
  }
};
inline float4 make_float4(float a, float b, float c, float d) {
  return float4(a, b, c, d);
}
// The 128-bit integer vector, with the same alignment check.
struct alignas(16) int4 {
  int x, y, z, w;
  int4(int a, int b, int c, int d) : x(a), y(b), z(c), w(d) {}
  int4(const int4& o) {
    emu::check_vector_access(&o);
    x = o.x;
    y = o.y;
    z = o.z;
    w = o.w;
  }
  int4& operator=(const int4& o) {
    emu::check_vector_access(this);
    x = o.x;
    y = o.y;
    z = o.z;
    w = o.w;
    return *this;
  }
};
inline int4 make_int4(int a, int b, int c, int d) {
  return int4(a, b, c, d);
}

inline void __syncthreads() {
  emu::syncthreads();
}
// Read-only cache loads are plain loads. The 128-bit ones are counted, so a test can tell which
// path of a kernel ran.
inline float __ldg(const float* p) {
  return *p;
}
inline float4 __ldg(const float4* p) {
  emu::count_global_vector_load();
  return *p;
}
// Warp-level primitives on the emulator's lock step (emu::warp_exchange); width must be 32.
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  emu::syncwarp(mask);
}
namespace emu {
template <class T>
T shuffle_from(unsigned mask, T value, unsigned src_lane, int width) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= sizeof(uint64_t), "shuffle of a type over 8 bytes");
  if (width != static_cast<int>(kWarpSize)) throw Error("a shuffle with width other than 32, which is not emulated");
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  bits = warp_exchange(mask, bits, src_lane);
  std::memcpy(&value, &bits, sizeof(T));
  return value;
}
inline unsigned lane_id() {
  return linear_thread_index() % kWarpSize;
}
}  // namespace emu
template <class T>
T __shfl_sync(unsigned mask, T value, int src_lane, int width = 32) {
  return emu::shuffle_from(mask, value, static_cast<unsigned>(src_lane) % emu::kWarpSize, width);
}
template <class T>
T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = 32) {
  return emu::shuffle_from(mask, value, emu::lane_id() ^ static_cast<unsigned>(lane_mask), width);
}
// A source lane past the warp's end leaves the value unchanged, as on the hardware.
template <class T>
T __shfl_down_sync(unsigned mask, T value, unsigned delta, int width = 32) {
  const unsigned lane = emu::lane_id();
  return emu::shuffle_from(mask, value, lane + delta < emu::kWarpSize ? lane + delta : lane, width);
}
template <class T>
T __shfl_up_sync(unsigned mask, T value, unsigned delta, int width = 32) {
  const unsigned lane = emu::lane_id();
  return emu::shuffle_from(mask, value, lane >= delta ? lane - delta : lane, width);
}

// Round-to-nearest arithmetic intrinsics: one rounding per operation, never contracted into an
// FMA (the host build does not contract either: x86-64 without -mfma has no FMA to contract to).
inline float __fadd_rn(float a, float b) {
  return a + b;
}
inline float __fsub_rn(float a, float b) {
  return a - b;
}
inline float __fmul_rn(float a, float b) {
  return a * b;
}
inline float __fdiv_rn(float a, float b) {
  return a / b;
}
inline double __dadd_rn(double a, double b) {
  return a + b;
}
inline double __dsub_rn(double a, double b) {
  return a - b;
}
inline double __dmul_rn(double a, double b) {
  return a * b;
}
inline double __ddiv_rn(double a, double b) {
  return a / b;
}

// Bit reinterpretations (TF32 / BF16 bit patterns).
inline unsigned __float_as_uint(float x) {
  return std::bit_cast<unsigned>(x);
}
inline float __uint_as_float(unsigned x) {
  return std::bit_cast<float>(x);
}

// CUDA's device min/max overloads and classification functions.
using std::isfinite;
using std::max;
using std::min;
