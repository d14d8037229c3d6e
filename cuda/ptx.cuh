// The PTX instructions behind the tensor-core kernels (cuda/conv_tc_*.cu), one device function
// each. Kernels use these functions and nothing else of PTX: no inline asm anywhere else. The CPU
// emulation (tests/emu/fake/cuda/ptx.cuh, found first on its include path) supplies its own
// definitions of exactly these functions, written from the PTX ISA's fragment tables, so the
// kernels are proven on machines without a GPU.
//
// Fragment layouts (PTX ISA 9.7.13, "Matrix fragments for mma.m16n8k8 / m16n8k16"), for lane l,
// group g = l / 4 and thread-in-group t = l % 4:
//   m16n8k8 .tf32   A 16x8 row-major: a0 (g, t), a1 (g+8, t), a2 (g, t+4), a3 (g+8, t+4)
//                   B 8x8 column-major: b0 (k=t, n=g), b1 (k=t+4, n=g)
//   m16n8k16 .bf16  A 16x16: a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..)
//                   B 16x8: b0 (k=2t..2t+1, n=g), b1 (k=2t+8..2t+9, n=g); low half = lower k
//   C/D 16x8 f32    c0 (g, 2t), c1 (g, 2t+1), c2 (g+8, 2t), c3 (g+8, 2t+1)
// ldmatrix (.b16, 8x8 matrices of 16-byte rows): lanes 8i..8i+7 give the row addresses of matrix
// i; lane l receives, from matrix i, register i = the 32-bit word (row g, word t); with .trans the
// two 16-bit elements (row 2t, column g) and (row 2t+1, column g). In bytes the A and B tiles of
// both mma shapes are the same (16 rows x 32 bytes, 8 rows x 32 bytes), so one shared-memory tile
// layout and one ldmatrix sequence serve TF32 and BF16.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace convnet::cuda::ptx {

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#define CONVNET_PTX_SM80 0  // tensor-core paths trap; the host never launches them on such a GPU
#else
#define CONVNET_PTX_SM80 1
#endif

__device__ __forceinline__ uint32_t shared_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// ldmatrix.sync.aligned.m8n8.xN[.trans].shared.b16: `row` is this lane's row address (16-byte
// aligned, in shared memory).
__device__ __forceinline__ void ldmatrix_x1(uint32_t (&r)[1], const void* row) {
#if CONVNET_PTX_SM80
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(shared_address(row)));
#else
  __trap();
#endif
}
__device__ __forceinline__ void ldmatrix_x2(uint32_t (&r)[2], const void* row) {
#if CONVNET_PTX_SM80
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(shared_address(row)));
#else
  __trap();
#endif
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* row) {
#if CONVNET_PTX_SM80
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(row)));
#else
  __trap();
#endif
}
__device__ __forceinline__ void ldmatrix_x1_trans(uint32_t (&r)[1], const void* row) {
#if CONVNET_PTX_SM80
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(shared_address(row)));
#else
  __trap();
#endif
}
__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t (&r)[2], const void* row) {
#if CONVNET_PTX_SM80
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(shared_address(row)));
#else
  __trap();
#endif
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) {
#if CONVNET_PTX_SM80
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(row)));
#else
  __trap();
#endif
}

// d = a * b + c: mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 (a, b hold TF32 bit patterns:
// round them with to_tf32 first, the hardware ignores the low 13 mantissa bits).
__device__ __forceinline__ void mma_m16n8k8_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                                 const float (&c)[4]) {
#if CONVNET_PTX_SM80
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%10, %11, %12, %13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#else
  __trap();
#endif
}

// d = a * b + c: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 (two bf16 per register, the
// lower k in the low half).
__device__ __forceinline__ void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                                  const float (&c)[4]) {
#if CONVNET_PTX_SM80
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%10, %11, %12, %13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#else
  __trap();
#endif
}

// cp.async.cg.shared.global [dst], [src], 16, src_size: copies 16 bytes from global to shared
// memory without passing through registers; with `valid` false it reads nothing and writes 16 zero
// bytes (src-size 0: the padding of an implicit GEMM). Both addresses 16-byte aligned. The copy
// lands only after a cp_async_wait that covers its group.
__device__ __forceinline__ void cp_async_16(void* dst, const void* src, bool valid) {
#if CONVNET_PTX_SM80
  const int src_size = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(dst)), "l"(src), "r"(src_size)
               : "memory");
#else
  __trap();
#endif
}
// cp.async.commit_group: the copies this thread issued since the last commit form one group.
__device__ __forceinline__ void cp_async_commit() {
#if CONVNET_PTX_SM80
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#else
  __trap();
#endif
}
// cp.async.wait_group N: waits until at most N of this thread's committed groups are pending. Other
// threads see the data only after a barrier that follows their own issuers' waits.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#if CONVNET_PTX_SM80
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#else
  __trap();
#endif
}

// cvt.rna.tf32.f32: the TF32 bit pattern of x (10-bit mantissa, round to nearest, ties away).
__device__ __forceinline__ uint32_t to_tf32(float x) {
#if CONVNET_PTX_SM80
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return r;
#else
  __trap();
  return 0;
#endif
}
// cvt.rn.bf16.f32: round to nearest even (NaN stays NaN).
__device__ __forceinline__ uint16_t to_bf16(float x) {
#if CONVNET_PTX_SM80
  uint16_t r;
  asm("cvt.rn.bf16.f32 %0, %1;\n" : "=h"(r) : "f"(x));
  return r;
#else
  __trap();
  return 0;
#endif
}
// bf16 -> f32 is exact: the bits move to the high half.
__device__ __forceinline__ float from_bf16(uint16_t b) {
  return __uint_as_float(static_cast<uint32_t>(b) << 16);
}
// Two bf16 in one register, `lo` in the low half (the lower k of an mma fragment).
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  return static_cast<uint32_t>(to_bf16(lo)) | (static_cast<uint32_t>(to_bf16(hi)) << 16);
}

}  // namespace convnet::cuda::ptx
