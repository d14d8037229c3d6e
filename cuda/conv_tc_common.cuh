// Device building blocks of the v4 tensor-core convolutions (private to cuda/conv_tc_*.cu).
//
// A block computes a BM x BN tile of the GEMM output; each warp a WM x WN sub-tile as MF x NF
// mma fragments (16 x 8 each, fp32 accumulators in registers). The reduction streams through
// shared memory in stages of 64 bytes per row (16 TF32 or 32 BF16 elements: two mma k-steps),
// STAGES deep: while the warps multiply stage t, the cp.async copies of stages t+1..t+STAGES-1 are
// in flight. One barrier per stage: the copy into a stage is issued only after the barrier that
// follows every warp's last read of it.
//
// Operand tiles come in two layouts, after which global dimension is contiguous:
//   K-major   (the reduction is contiguous, e.g. im2col rows, KRSC filters): ROWS rows of 64
//             bytes; 16-byte chunk c of row r is stored at chunk c ^ ((r >> 1) & 3), so the 8
//             rows one ldmatrix phase reads fall on 8 different bank groups. Read with ldmatrix.
//   MN-major  (the output rows/columns are contiguous, e.g. dy read along k for backward-filter):
//             one shared row per reduction index, ROWS elements plus a pad that shifts each row
//             by 8 banks (TF32) or 4 banks (BF16). Read with ldmatrix.trans (BF16) or one 32-bit
//             load per element (TF32: .trans moves 16-bit halves, which would split a float).
// Loaders (one per operand and pass, in the pass's .cu file) fill a stage: each thread owns two
// 16-byte chunks per operand. The vector path copies them with cp.async (zero-filled where the
// implicit GEMM reads padding); the gather path loads element by element with plain stores,
// which is as safe since a stage is written only after the barrier that ends its last reads.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/base/activation_math.h"
#include "cuda/check.h"
#include "cuda/conv_gemm_common.cuh"
#include "cuda/conv_tc_kernels.h"
#include "cuda/ptx.cuh"

namespace convnet::cuda::tc {

using gemm::ceil_div;
using gemm::Geometry;
using gemm::in_range;

inline constexpr int kRowBytes = 64;    // reduction bytes per stage row
inline constexpr int kChunkBytes = 16;  // one cp.async
inline constexpr int kWarp = 32;
// Above this a kernel must raise cudaFuncAttributeMaxDynamicSharedMemorySize first.
inline constexpr size_t kDefaultSharedBytes = 48 * 1024;

// E: the element type in memory, float (TF32) or uint16_t (BF16 bits).
template <class E>
inline constexpr int kStageK = kRowBytes / static_cast<int>(sizeof(E));  // reduction elements per stage
template <class E>
inline constexpr int kChunk = kChunkBytes / static_cast<int>(sizeof(E));  // elements per chunk

template <int BM_, int BN_, int WARPS_M_, int WARPS_N_, int STAGES_>
struct Tile {
  static constexpr int BM = BM_, BN = BN_, WARPS_M = WARPS_M_, WARPS_N = WARPS_N_, STAGES = STAGES_;
  static constexpr int kThreads = kWarp * WARPS_M * WARPS_N;
  static constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;
  static constexpr int MF = WM / 16, NF = WN / 8;  // mma fragments per warp
  static_assert(WM % 16 == 0 && WN % 16 == 0, "B fragments are loaded two at a time");
  static_assert(BM * kRowBytes / kChunkBytes == 2 * kThreads && BN == BM, "two chunks per thread and operand");
};
using TileLarge = Tile<128, 128, 2, 4, 4>;
using TileSmall = Tile<64, 64, 2, 2, 4>;

enum class Major { k, mn };

// One operand's shared-memory tile for one stage. ROWS is BM (operand A) or BN (operand B).
template <class E, Major L, int ROWS>
struct OperandTile {
  static constexpr int kPad = sizeof(E) == 4 ? 32 : 16;
  static constexpr int kStride = L == Major::k ? kRowBytes : ROWS * static_cast<int>(sizeof(E)) + kPad;
  static constexpr int kBytes = L == Major::k ? ROWS * kRowBytes : kStageK<E> * kStride;
  // Chunks per tile row of the MN-major layout.
  static constexpr int kRowChunks = ROWS / kChunk<E>;

  // Byte offset of element (mn, kk): mn an output row (A) or column (B), kk the reduction index
  // within the stage. Chunk-aligned for kk (K-major) or mn (MN-major) a multiple of kChunk.
  __device__ static int offset(int mn, int kk) {
    if constexpr (L == Major::k) {
      const int byte = kk * static_cast<int>(sizeof(E));
      const int chunk = (byte / kChunkBytes) ^ ((mn >> 1) & 3);
      return mn * kRowBytes + chunk * kChunkBytes + byte % kChunkBytes;
    } else {
      return kk * kStride + mn * static_cast<int>(sizeof(E));
    }
  }
};

// The two chunks a thread fills per operand and stage: (mn, kk) of their first element.
//   K-major:  mn = t / 4 + i * (threads / 4), kk = (t % 4) * chunk
//   MN-major: kk = t / rowchunks + i * (threads / rowchunks), mn = (t % rowchunks) * chunk
template <class T, class E, Major L>
struct ChunkSlots {
  static constexpr int kPer = 2;
  __device__ static int mn(int i) {
    const int t = static_cast<int>(threadIdx.x);
    if constexpr (L == Major::k) return t / 4 + i * (T::kThreads / 4);
    constexpr int rc = T::BM / kChunk<E>;
    return (t % rc) * kChunk<E>;
  }
  __device__ static int kk(int i) {
    const int t = static_cast<int>(threadIdx.x);
    if constexpr (L == Major::k) return (t % 4) * kChunk<E>;
    constexpr int rc = T::BM / kChunk<E>;
    return t / rc + i * (T::kThreads / rc);
  }
};

// Loads one chunk of the vector path: kChunk elements at src, or zeros when !valid.
__device__ __forceinline__ void copy_chunk(unsigned char* tile, int offset, const void* src, bool valid) {
  ptx::cp_async_16(tile + offset, src, valid);
}
// One element of the gather path.
template <class E>
__device__ __forceinline__ void store_element(unsigned char* tile, int offset, E v) {
  *reinterpret_cast<E*>(tile + offset) = v;
}
template <class E>
__device__ __forceinline__ E load_element(const E* p) {
  if constexpr (sizeof(E) == 4)
    return __ldg(p);
  else
    return *p;
}

// --- fragments ---------------------------------------------------------------------------------

template <class E>
__device__ __forceinline__ void round_inputs(uint32_t* r, int n) {
  if constexpr (sizeof(E) == 4) {
#pragma unroll
    for (int i = 0; i < n; ++i) r[i] = ptx::to_tf32(__uint_as_float(r[i]));
  }
}

// A fragment: 16 rows from m, k-step ks (32 bytes of the stage's 64).
template <class E, Major L, int ROWS>
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const unsigned char* tile, int m, int ks) {
  using Tl = OperandTile<E, L, ROWS>;
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  const int i = lane / 8, j = lane % 8;
  if constexpr (L == Major::k) {
    // matrices: rows 0-7 / 8-15 of the first 16 bytes, then of the second
    ptx::ldmatrix_x4(a, tile + Tl::offset(m + (i % 2) * 8 + j, (2 * ks + i / 2) * kChunk<E>));
  } else if constexpr (sizeof(E) == 2) {
    // stored [k][m]: matrices (k 0-7, m 0-7), (k 0-7, m 8-15), (k 8-15, m 0-7), (k 8-15, m 8-15)
    ptx::ldmatrix_x4_trans(a, tile + Tl::offset(m + (i % 2) * 8, ks * 16 + (i / 2) * 8 + j));
  } else {
    const int g = lane / 4, t = lane % 4, k0 = ks * 8 + t;
    const auto at = [&](int mm, int kk) { return *reinterpret_cast<const uint32_t*>(tile + Tl::offset(mm, kk)); };
    a[0] = at(m + g, k0);
    a[1] = at(m + g + 8, k0);
    a[2] = at(m + g, k0 + 4);
    a[3] = at(m + g + 8, k0 + 4);
  }
  round_inputs<E>(a, 4);
}

// Two B fragments: columns n..n+7 (b[0]) and n+8..n+15 (b[1]), k-step ks.
template <class E, Major L, int ROWS>
__device__ __forceinline__ void load_b(uint32_t (&b)[2][2], const unsigned char* tile, int n, int ks) {
  using Tl = OperandTile<E, L, ROWS>;
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  const int i = lane / 8, j = lane % 8;
  uint32_t r[4];
  if constexpr (L == Major::k) {
    // matrices: (n 0-7, first 16 bytes), (n 0-7, second), (n 8-15, first), (n 8-15, second)
    ptx::ldmatrix_x4(r, tile + Tl::offset(n + (i / 2) * 8 + j, (2 * ks + i % 2) * kChunk<E>));
  } else if constexpr (sizeof(E) == 2) {
    // stored [k][n]: matrices (k 0-7, n 0-7), (k 8-15, n 0-7), (k 0-7, n 8-15), (k 8-15, n 8-15)
    ptx::ldmatrix_x4_trans(r, tile + Tl::offset(n + (i / 2) * 8, ks * 16 + (i % 2) * 8 + j));
  } else {
    const int g = lane / 4, t = lane % 4, k0 = ks * 8 + t;
    const auto at = [&](int nn, int kk) { return *reinterpret_cast<const uint32_t*>(tile + Tl::offset(nn, kk)); };
    r[0] = at(n + g, k0);
    r[1] = at(n + g, k0 + 4);
    r[2] = at(n + 8 + g, k0);
    r[3] = at(n + 8 + g, k0 + 4);
  }
  round_inputs<E>(r, 4);
  b[0][0] = r[0];
  b[0][1] = r[1];
  b[1][0] = r[2];
  b[1][1] = r[3];
}

template <class E>
__device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  const float c[4] = {d[0], d[1], d[2], d[3]};
  if constexpr (sizeof(E) == 4)
    ptx::mma_m16n8k8_tf32(d, a, b, c);
  else
    ptx::mma_m16n8k16_bf16(d, a, b, c);
}

template <class T>
using Accumulators = float[T::MF][T::NF][4];

// --- the pipeline ------------------------------------------------------------------------------

// Shared bytes per block for tile T, operand layouts LA and LB.
template <class T, class E, Major LA, Major LB>
constexpr size_t shared_bytes() {
  return static_cast<size_t>(T::STAGES) * (OperandTile<E, LA, T::BM>::kBytes + OperandTile<E, LB, T::BN>::kBytes);
}

template <class T, class E, Major LA, Major LB>
__device__ __forceinline__ void multiply_stage(const unsigned char* ta, const unsigned char* tb, Accumulators<T>& acc) {
  const int warp = static_cast<int>(threadIdx.x) / kWarp;
  const int wm = (warp / T::WARPS_N) * T::WM, wn = (warp % T::WARPS_N) * T::WN;
#pragma unroll
  for (int ks = 0; ks < 2; ++ks) {
    uint32_t a[T::MF][4];
    uint32_t b[T::NF / 2][2][2];
#pragma unroll
    for (int mf = 0; mf < T::MF; ++mf) load_a<E, LA, T::BM>(a[mf], ta, wm + mf * 16, ks);
#pragma unroll
    for (int np = 0; np < T::NF / 2; ++np) load_b<E, LB, T::BN>(b[np], tb, wn + np * 16, ks);
#pragma unroll
    for (int mf = 0; mf < T::MF; ++mf)
#pragma unroll
      for (int nf = 0; nf < T::NF; ++nf) mma<E>(acc[mf][nf], a[mf], b[nf / 2][nf % 2]);
  }
}

// acc = the product over `stages` reduction stages; the loaders start at their first stage and
// advance by one per load(tile). stages == 0 gives zeros. Every thread of the block calls it.
template <class T, class E, Major LA, Major LB, class LoaderA, class LoaderB>
__device__ __forceinline__ void mainloop(unsigned char* smem, LoaderA& la, LoaderB& lb, int64_t stages,
                                         Accumulators<T>& acc) {
  constexpr int kA = OperandTile<E, LA, T::BM>::kBytes;
  constexpr int kStage = kA + OperandTile<E, LB, T::BN>::kBytes;
#pragma unroll
  for (int mf = 0; mf < T::MF; ++mf)
#pragma unroll
    for (int nf = 0; nf < T::NF; ++nf)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mf][nf][e] = 0.0f;
        // Prologue: STAGES - 1 stages in flight. Every iteration commits a group, empty or not, so
        // wait<STAGES - 2> always means "the oldest stage has landed".
#pragma unroll
  for (int s = 0; s < T::STAGES - 1; ++s) {
    if (s < stages) {
      la.load(smem + s * kStage);
      lb.load(smem + s * kStage + kA);
    }
    ptx::cp_async_commit();
  }
  for (int64_t t = 0; t < stages; ++t) {
    ptx::cp_async_wait<T::STAGES - 2>();
    __syncthreads();  // stage t landed for every thread; every warp is done with stage t - 1
    const int64_t next = t + T::STAGES - 1;
    if (next < stages) {
      const int s = static_cast<int>(next % T::STAGES);
      la.load(smem + s * kStage);
      lb.load(smem + s * kStage + kA);
    }
    ptx::cp_async_commit();
    const int s = static_cast<int>(t % T::STAGES);
    multiply_stage<T, E, LA, LB>(smem + s * kStage, smem + s * kStage + kA, acc);
  }
  ptx::cp_async_wait<0>();  // only empty groups remain; a kernel never exits with copies pending
}

// Calls out(row, col, v0, v1) for this thread's accumulators: block-local row, and two consecutive
// columns col, col + 1.
template <class T, class Out>
__device__ __forceinline__ void for_each_pair(const Accumulators<T>& acc, Out&& out) {
  const int lane = static_cast<int>(threadIdx.x) % kWarp, warp = static_cast<int>(threadIdx.x) / kWarp;
  const int wm = (warp / T::WARPS_N) * T::WM, wn = (warp % T::WARPS_N) * T::WN;
  const int g = lane / 4, t = lane % 4;
#pragma unroll
  for (int mf = 0; mf < T::MF; ++mf)
#pragma unroll
    for (int nf = 0; nf < T::NF; ++nf)
#pragma unroll
      for (int h = 0; h < 2; ++h)
        out(wm + mf * 16 + g + h * 8, wn + nf * 8 + 2 * t, acc[mf][nf][2 * h], acc[mf][nf][2 * h + 1]);
}

// --- epilogue ----------------------------------------------------------------------------------

__device__ __forceinline__ float activate(float v, ConvActivation act) {
  switch (act) {
    case ConvActivation::relu:
      return relu(v);
    case ConvActivation::gelu:
      return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    case ConvActivation::none:
      break;
  }
  return v;
}

template <class O>
__device__ __forceinline__ O to_output(float v) {
  if constexpr (sizeof(O) == 4)
    return v;
  else
    return ptx::to_bf16(v);
}

// What the epilogue does with a finished value: bias (forward), activation, rounding to O.
struct Epilogue {
  const float* bias = nullptr;  // indexed by the output column
  ConvActivation act = ConvActivation::none;
  __device__ float apply(float v, int col) const {
    if (bias != nullptr) v += __ldg(bias + col);
    return activate(v, act);
  }
};

// out[i] = epilogue(sum over slices z of partial[z * count + i]), z in order; column = i % columns.
template <class O>
__global__ void sum_slices_kernel(const float* __restrict__ partial, O* __restrict__ out, int64_t count, int columns,
                                  int splits, Epilogue ep) {
  const int64_t stride = int64_t{blockDim.x} * gridDim.x;
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < count; i += stride) {
    float sum = 0.0f;
    for (int z = 0; z < splits; ++z) sum += partial[z * count + i];
    out[i] = to_output<O>(ep.apply(sum, static_cast<int>(i % columns)));
  }
}

// An output as the next layer reads it (a bf16 output rounded), for ConvOutputStats.
__device__ __forceinline__ float stored_value(float v) {
  return v;
}
__device__ __forceinline__ float stored_value(uint16_t v) {
  return ptx::from_bf16(v);
}

// ConvOutputStats in the epilogue of one block tile. Each thread holds the sums of its columns
// over its rows (sum, sq indexed [fragment column][column of the pair]); they are added across
// the 8 lanes that share those columns (an xor butterfly: every lane ends with the same bits),
// then across the WARPS_M warps in row order, and the block writes its partials for the columns
// n0.. of `cols` at part_sum[col] and part_sq[col]. Every thread of the block calls it.
template <class T>
__device__ __forceinline__ void write_block_column_sums(float (&sum)[T::NF][2], float (&sq)[T::NF][2], float* part_sum,
                                                        float* part_sq, int n0, int cols) {
  __shared__ float red[2][T::WARPS_M][T::BN];
  const int tid = static_cast<int>(threadIdx.x), lane = tid % kWarp, warp = tid / kWarp;
  const int wm = warp / T::WARPS_N, wn = (warp % T::WARPS_N) * T::WN;
#pragma unroll
  for (int nf = 0; nf < T::NF; ++nf)
#pragma unroll
    for (int j = 0; j < 2; ++j)
#pragma unroll
      for (int offset = 4; offset < kWarp; offset *= 2) {
        sum[nf][j] += __shfl_xor_sync(0xffffffffu, sum[nf][j], offset);
        sq[nf][j] += __shfl_xor_sync(0xffffffffu, sq[nf][j], offset);
      }
  if (lane < 4) {
#pragma unroll
    for (int nf = 0; nf < T::NF; ++nf)
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        red[0][wm][wn + nf * 8 + 2 * lane + j] = sum[nf][j];
        red[1][wm][wn + nf * 8 + 2 * lane + j] = sq[nf][j];
      }
  }
  __syncthreads();
  for (int c = tid; c < T::BN; c += T::kThreads) {
    if (n0 + c >= cols) continue;
    float s = 0.0f, q = 0.0f;
#pragma unroll
    for (int w = 0; w < T::WARPS_M; ++w) {
      s += red[0][w][c];
      q += red[1][w][c];
    }
    part_sum[n0 + c] = s;
    part_sq[n0 + c] = q;
  }
}

// ConvOutputStats without the GEMM's epilogue (after split-K): the same per-row-block partials
// from one pass over y [rows, cols], then, for either path, the blocks added in row order into
// stats (cuda/conv_tc_common.cu). `partial` holds 2 * row_blocks * cols floats.
template <class E>
void column_moments(const E* y, int64_t rows, int cols, int block_rows, float* partial, cudaStream_t stream);
void column_moment_totals(const float* partial, int64_t row_blocks, int cols, const ConvOutputStats& stats,
                          cudaStream_t stream);

// Queues sum_slices_kernel over `count` outputs (cuda/conv_tc_common.cu).
template <class O>
void sum_slices(const float* partial, O* out, int64_t count, int columns, int splits, Epilogue ep, cudaStream_t stream);

// Shared-memory bytes above the default need the kernel's attribute raised first. The attribute
// is per device, so it is set on every launch (a cheap host call).
template <class Kernel>
void allow_shared_bytes(Kernel* kernel, size_t bytes) {
  if (bytes > kDefaultSharedBytes)
    CONVNET_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

}  // namespace convnet::cuda::tc
