// Emulation stand-in for <cuda_runtime.h>: the CUDA language extensions the kernels in cuda/ use,
// mapped onto plain C++ and the fiber emulator (tests/emu/emu_runtime.h). Generated files include
// it first, as nvcc does implicitly for every .cu file.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "cuda_runtime_api.h"
#include "tests/emu/emu_runtime.h"

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
// CUDA's device min/max overloads.
using std::max;
using std::min;
