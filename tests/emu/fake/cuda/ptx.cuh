// Emulation stand-in for cuda/ptx.cuh (found first on the emulation test's include path): the same
// functions, same namespace and signatures, run on the fiber emulator instead of inline PTX. The
// instruction semantics (fragment layouts, bank conflicts, rounding) are in tests/emu/emu_ptx.cpp,
// cp.async's deferred copies in the scheduler (tests/emu/emu_runtime.h).
#pragma once

#include <cuda_runtime.h>

#include <bit>
#include <cstdint>

#include "tests/emu/emu_ptx.h"
#include "tests/emu/emu_runtime.h"

namespace convnet::cuda::ptx {

// The emulator has every instruction of sm_80.
#define CONVNET_PTX_SM80 1

// Only used to form addresses: the low 32 bits keep the offsets between shared objects.
__device__ __forceinline__ uint32_t shared_address(const void* p) {
  return static_cast<uint32_t>(reinterpret_cast<uintptr_t>(p));
}

__device__ __forceinline__ void ldmatrix_x1(uint32_t (&r)[1], const void* row) {
  ::emu::ldmatrix(r, 1, false, row);
}
__device__ __forceinline__ void ldmatrix_x2(uint32_t (&r)[2], const void* row) {
  ::emu::ldmatrix(r, 2, false, row);
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* row) {
  ::emu::ldmatrix(r, 4, false, row);
}
__device__ __forceinline__ void ldmatrix_x1_trans(uint32_t (&r)[1], const void* row) {
  ::emu::ldmatrix(r, 1, true, row);
}
__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t (&r)[2], const void* row) {
  ::emu::ldmatrix(r, 2, true, row);
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) {
  ::emu::ldmatrix(r, 4, true, row);
}

__device__ __forceinline__ void mma_m16n8k8_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                                 const float (&c)[4]) {
  ::emu::mma_m16n8k8_tf32(d, a, b, c);
}
__device__ __forceinline__ void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                                  const float (&c)[4]) {
  ::emu::mma_m16n8k16_bf16(d, a, b, c);
}

__device__ __forceinline__ void cp_async_16(void* dst, const void* src, bool valid) {
  ::emu::cp_async_copy(dst, src, valid);
}
__device__ __forceinline__ void cp_async_commit() {
  ::emu::cp_async_commit();
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  static_assert(N >= 0, "cp.async.wait_group takes a group count");
  ::emu::cp_async_wait(N);
}

__device__ __forceinline__ uint32_t to_tf32(float x) {
  return ::emu::cvt_rna_tf32(x);
}
__device__ __forceinline__ uint16_t to_bf16(float x) {
  return ::emu::cvt_rn_bf16(x);
}
__device__ __forceinline__ float from_bf16(uint16_t b) {
  return std::bit_cast<float>(static_cast<uint32_t>(b) << 16);
}
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  return static_cast<uint32_t>(to_bf16(lo)) | (static_cast<uint32_t>(to_bf16(hi)) << 16);
}

}  // namespace convnet::cuda::ptx
