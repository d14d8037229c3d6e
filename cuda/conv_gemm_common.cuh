// Device building blocks of the v2 implicit-GEMM convolution kernels (private to cuda/conv_*.cu).
//
// A block of 256 threads computes a BM x BN tile of the GEMM output, walking the reduction in
// BK-deep tiles. Operand tiles live in shared memory reduction-major (As[kk][row], Bs[kk][col]) and
// double-buffered: while the threads multiply tile t from one buffer, each holds its share of tile
// t+1 (one 4-element group per operand) in registers, and stores it into the other buffer after the
// multiply, so one barrier per tile suffices. Each thread owns TM x TN outputs as 4x4 sub-blocks
// spaced 64 rows/columns apart, read from shared memory as float4.
//
// Loaders fetch the 4-element groups from global memory: a "row" loader reads 4 consecutive
// reduction indices of one output row (stored transposed), a "column" loader reads 4 consecutive
// output columns of one reduction index (stored as one float4). Each pass supplies its own loaders;
// every element is predicated, with zeros for padding and out-of-range indices.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/conv_kernels.h"

namespace convnet::cuda::gemm {

inline constexpr int kThreads = 256;

template <int BM_, int BN_, int BK_, int MIN_BLOCKS_>
struct Tile {
  static constexpr int BM = BM_, BN = BN_, BK = BK_;
  // Blocks per SM the register budget is sized for (__launch_bounds__).
  static constexpr int kMinBlocks = MIN_BLOCKS_;
  static constexpr int TM = BM / 16, TN = BN / 16;  // outputs per thread: 16x16 threads
  // Shared-memory row strides, padded by one float4 so transposed stores spread over the banks.
  static constexpr int AS = BM + 4, BS = BN + 4;
  static_assert(BM * BK == 4 * kThreads && BN * BK == 4 * kThreads, "one 4-element group per thread and operand");
  static_assert(TM % 4 == 0 && TN % 4 == 0 && TM <= 8 && TN <= 8, "4x4 sub-blocks 64 apart");
};
using TileLarge = Tile<128, 128, 8, 1>;
using TileSmall = Tile<64, 64, 16, 2>;

// Problem sizes as the kernels see them (plain ints: validate_conv_shape bounds every extent).
// c and k are the full tensors' channels (their row strides); gc and gk those of one group, which
// the GEMMs run over.
struct Geometry {
  int n, h, w, c, k, r, s, p, q;
  int stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
  int groups, gc, gk;
};

inline Geometry make_geometry(const ConvShape& s) {
  const Conv2dParams& p = s.params;
  return Geometry{s.n,     s.h,          s.w,          s.c,        s.k,         s.r,
                  s.s,     s.p,          s.q,          p.stride_h, p.stride_w,  p.pad_h,
                  p.pad_w, p.dilation_h, p.dilation_w, s.groups(), s.group_c(), s.group_k()};
}

__host__ __device__ constexpr int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// Grid y of the implicit GEMMs runs the groups one after another, each over the tiles of its
// `extent` GEMM columns (or rows) in blocks of `block`: y = group * tiles + tile.
struct GroupTile {
  int group, tile;
};
__device__ __forceinline__ GroupTile group_tile(int extent, int block) {
  const int tiles = static_cast<int>(ceil_div(extent, block));
  const int y = static_cast<int>(blockIdx.y);
  return GroupTile{y / tiles, y % tiles};
}
// The grid's y extent for those tiles.
inline unsigned group_tiles(int groups, int64_t extent, int block) {
  return static_cast<unsigned>(groups * ceil_div(extent, block));
}

// 16-byte alignment of every pointer the vector path dereferences.
inline bool aligned16(const void* p) {
  return p == nullptr || reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

__device__ __forceinline__ float4 load4(const float* p) {
  return __ldg(reinterpret_cast<const float4*>(p));
}
__device__ __forceinline__ void set4(float (&v)[4], float4 x) {
  v[0] = x.x;
  v[1] = x.y;
  v[2] = x.z;
  v[3] = x.w;
}
__device__ __forceinline__ void zero4(float (&v)[4]) {
  v[0] = v[1] = v[2] = v[3] = 0.0f;
}
// 0 <= i < n for signed i, in one comparison.
__device__ __forceinline__ bool in_range(int i, int n) {
  return static_cast<unsigned>(i) < static_cast<unsigned>(n);
}

// Thread -> 4-element group of a tile of ROWS x BK stored transposed (row loaders).
template <int BK>
struct RowSlot {
  __device__ static int row() { return static_cast<int>(threadIdx.x) / (BK / 4); }
  __device__ static int kq() { return (static_cast<int>(threadIdx.x) % (BK / 4)) * 4; }
  template <int STRIDE>
  __device__ static void store(const float (&v)[4], float* smem) {
    const int r = row(), k = kq();
#pragma unroll
    for (int i = 0; i < 4; ++i) smem[(k + i) * STRIDE + r] = v[i];
  }
};

// Thread -> 4-element group of a tile of BK x COLS stored as is (column loaders).
template <int COLS>
struct ColSlot {
  __device__ static int kk() { return static_cast<int>(threadIdx.x) / (COLS / 4); }
  __device__ static int cq() { return (static_cast<int>(threadIdx.x) % (COLS / 4)) * 4; }
  template <int STRIDE>
  __device__ static void store(const float (&v)[4], float* smem) {
    *reinterpret_cast<float4*>(smem + kk() * STRIDE + cq()) = make_float4(v[0], v[1], v[2], v[3]);
  }
};

// acc += the product of the two BK-deep tiles in shared memory.
template <class T>
__device__ __forceinline__ void multiply_tile(const float* as, const float* bs, float (&acc)[T::TM][T::TN]) {
  const int tx = static_cast<int>(threadIdx.x) % 16, ty = static_cast<int>(threadIdx.x) / 16;
#pragma unroll
  for (int kk = 0; kk < T::BK; ++kk) {
    float a[T::TM], b[T::TN];
#pragma unroll
    for (int h = 0; h < T::TM / 4; ++h) {
      const float4 v = *reinterpret_cast<const float4*>(as + kk * T::AS + h * 64 + ty * 4);
      a[h * 4 + 0] = v.x;
      a[h * 4 + 1] = v.y;
      a[h * 4 + 2] = v.z;
      a[h * 4 + 3] = v.w;
    }
#pragma unroll
    for (int g = 0; g < T::TN / 4; ++g) {
      const float4 v = *reinterpret_cast<const float4*>(bs + kk * T::BS + g * 64 + tx * 4);
      b[g * 4 + 0] = v.x;
      b[g * 4 + 1] = v.y;
      b[g * 4 + 2] = v.z;
      b[g * 4 + 3] = v.w;
    }
#pragma unroll
    for (int i = 0; i < T::TM; ++i)
#pragma unroll
      for (int j = 0; j < T::TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
  }
}

// The double-buffered main loop over `tiles` reduction tiles. The loaders start at their first
// tile and advance by one tile per load(v). acc is zeroed first, so tiles == 0 gives zeros.
template <class T, class LoaderA, class LoaderB>
__device__ __forceinline__ void gemm_mainloop(LoaderA& la, LoaderB& lb, int64_t tiles, float (&acc)[T::TM][T::TN]) {
  __shared__ __align__(16) float as[2][T::BK * T::AS];
  __shared__ __align__(16) float bs[2][T::BK * T::BS];
#pragma unroll
  for (int i = 0; i < T::TM; ++i)
#pragma unroll
    for (int j = 0; j < T::TN; ++j) acc[i][j] = 0.0f;
  if (tiles <= 0) return;
  float ra[4], rb[4];
  la.load(ra);
  lb.load(rb);
  la.store(ra, as[0]);
  lb.store(rb, bs[0]);
  __syncthreads();
  int buf = 0;
  for (int64_t t = 0; t < tiles; ++t) {
    const bool more = t + 1 < tiles;
    if (more) {  // issue the next tile's global loads before multiplying this one
      la.load(ra);
      lb.load(rb);
    }
    multiply_tile<T>(as[buf], bs[buf], acc);
    if (more) {  // the other buffer was last read before the previous barrier
      la.store(ra, as[buf ^ 1]);
      lb.store(rb, bs[buf ^ 1]);
    }
    __syncthreads();
    buf ^= 1;
  }
}

// Calls out(row, col, v) for this thread's outputs, 4 consecutive columns at a time (block-local
// row and column).
template <class T, class Out>
__device__ __forceinline__ void for_each_output(const float (&acc)[T::TM][T::TN], Out&& out) {
  const int tx = static_cast<int>(threadIdx.x) % 16, ty = static_cast<int>(threadIdx.x) / 16;
#pragma unroll
  for (int h = 0; h < T::TM / 4; ++h)
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int g = 0; g < T::TN / 4; ++g) {
        const int row = h * 64 + ty * 4 + i;
        const int col = g * 64 + tx * 4;
        const float v[4] = {acc[h * 4 + i][g * 4 + 0], acc[h * 4 + i][g * 4 + 1], acc[h * 4 + i][g * 4 + 2],
                            acc[h * 4 + i][g * 4 + 3]};
        out(row, col, v);
      }
}

// Stores 4 consecutive outputs dst[0..3] of which the first `valid` exist: one float4 store when
// `vec` (the caller guarantees 16-byte alignment) and all 4 exist, else scalars.
__device__ __forceinline__ void store_group(float* dst, const float (&v)[4], int valid, bool vec) {
  if (vec && valid >= 4) {
    *reinterpret_cast<float4*>(dst) = make_float4(v[0], v[1], v[2], v[3]);
    return;
  }
#pragma unroll
  for (int j = 0; j < 4; ++j)
    if (j < valid) dst[j] = v[j];
}

}  // namespace convnet::cuda::gemm
