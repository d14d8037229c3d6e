// v4 forward convolution on the tensor cores: the implicit GEMM of v2 (cuda/conv_gemm_forward.cu),
//   y[m = (n, p, q)][k] = sum over (r, s, c) of x[n, p*stride - pad + r*dil, q*..., c] * w[k][(r, s, c)],
// with both operands K-major: a chunk is kChunk consecutive channels at one filter tap (when a
// group's C is a multiple of kChunk), which is a contiguous run of x and of the KRSC filter row.
// Otherwise the gather path packs (r, s, c) densely, element by element (the RGB layer: 27 taps
// in 2 stages).
// Groups: one GEMM per group (grid y = group x column tile) over its gc input channels (x channel
// group * gc + c) and its gk filters; y's channel is group * gk + the GEMM column.
#include "cuda/conv_tc_common.cuh"

namespace convnet::cuda {
namespace tc {
namespace {

// A[m][kred]: the im2col rows of two output pixels per thread, built on the fly.
template <class T, class E, bool kVec>
struct ImageRows {
  using Slots = ChunkSlots<T, E, Major::k>;
  using Tl = OperandTile<E, Major::k, T::BM>;
  static constexpr int kPer = Slots::kPer;
  const E* x;               // the group's first channel
  int64_t base[kPer] = {};  // x offset of the row's image
  int h0[kPer] = {}, w0[kPer] = {};
  bool row_ok[kPer] = {};
  Geometry g;
  int kred, kred_end;
  int r = 0, s = 0, c = 0;  // kred = (r * S + s) * gc + c

  __device__ ImageRows(const E* x_, const Geometry& g_, int64_t m0, int64_t first_stage)
      : x(x_), g(g_), kred(static_cast<int>(first_stage * kStageK<E>) + Slots::kk(0)), kred_end(g_.r * g_.s * g_.gc) {
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int64_t m = m0 + Slots::mn(i);
      row_ok[i] = m < int64_t{g.n} * g.p * g.q;
      if (!row_ok[i]) continue;
      const int mi = static_cast<int>(m);
      const int q = mi % g.q, t = mi / g.q;
      const int p = t % g.p, n = t / g.p;
      base[i] = int64_t{n} * g.h * g.w * g.c;
      h0[i] = p * g.stride_h - g.pad_h;
      w0[i] = q * g.stride_w - g.pad_w;
    }
    c = kred % g.gc;
    s = (kred / g.gc) % g.s;
    r = kred / g.gc / g.s;
  }

  __device__ const E* at(int i, int rr, int ss, int cc, bool& ok) const {
    const int h = h0[i] + rr * g.dil_h, w = w0[i] + ss * g.dil_w;
    ok = ok && row_ok[i] && in_range(h, g.h) && in_range(w, g.w);
    return ok ? x + base[i] + (int64_t{h} * g.w + w) * g.c + cc : x;
  }

  __device__ void load(unsigned char* tile) {
    if constexpr (kVec) {  // gc % kChunk == 0: a chunk is one tap, kChunk channels
#pragma unroll
      for (int i = 0; i < kPer; ++i) {
        bool ok = kred < kred_end;
        const E* src = at(i, r, s, c, ok);
        copy_chunk(tile, Tl::offset(Slots::mn(i), Slots::kk(i)), src, ok);
      }
    } else {
      int rr = r, ss = s, cc = c;
#pragma unroll
      for (int e = 0; e < kChunk<E>; ++e) {
#pragma unroll
        for (int i = 0; i < kPer; ++i) {
          bool ok = kred + e < kred_end;
          const E* src = at(i, rr, ss, cc, ok);
          store_element<E>(tile, Tl::offset(Slots::mn(i), Slots::kk(i) + e), ok ? load_element(src) : E(0));
        }
        if (++cc == g.gc) {
          cc = 0;
          if (++ss == g.s) {
            ss = 0;
            ++rr;
          }
        }
      }
    }
    kred += kStageK<E>;
    c += kStageK<E>;
    while (c >= g.gc) {
      c -= g.gc;
      if (++s == g.s) {
        s = 0;
        ++r;
      }
    }
  }
};

// B[k][kred] = w[k][kred]: dense rows of the KRSC filter (w: the group's first filter, n0 group-local).
template <class T, class E, bool kVec>
struct FilterRows {
  using Slots = ChunkSlots<T, E, Major::k>;
  using Tl = OperandTile<E, Major::k, T::BN>;
  static constexpr int kPer = Slots::kPer;
  const E* rows[kPer];
  int kred, kred_end;

  __device__ FilterRows(const E* w, const Geometry& g, int n0, int64_t first_stage)
      : kred(static_cast<int>(first_stage * kStageK<E>) + Slots::kk(0)), kred_end(g.r * g.s * g.gc) {
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int k = n0 + Slots::mn(i);
      rows[i] = k < g.gk ? w + int64_t{k} * kred_end : nullptr;
    }
  }
  __device__ void load(unsigned char* tile) {
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int offset = Tl::offset(Slots::mn(i), Slots::kk(i));
      if constexpr (kVec) {  // kred_end % kChunk == 0: a chunk is all in or all out
        const bool ok = rows[i] != nullptr && kred < kred_end;
        copy_chunk(tile, offset, ok ? rows[i] + kred : rows[0], ok);
      } else {
#pragma unroll
        for (int e = 0; e < kChunk<E>; ++e) {
          const bool ok = rows[i] != nullptr && kred + e < kred_end;
          store_element<E>(tile, offset + e * static_cast<int>(sizeof(E)),
                           ok ? load_element(rows[i] + kred + e) : E(0));
        }
      }
    }
    kred += kStageK<E>;
  }
};

// Slice z of the reduction (stages [z * stages_per_split, ...)) of one block tile, into y (one
// slice) or the slice's fp32 partial. With `stats` (one slice only), the tile's ConvOutputStats
// partials too: sums at stats[blockIdx.x][k], sums of squares at stats[gridDim.x + blockIdx.x][k]
// (k the output channel, over all groups).
template <class T, class E, bool kVec>
__global__ void __launch_bounds__(T::kThreads)
    forward_kernel(const E* __restrict__ x, const E* __restrict__ w, const Epilogue ep, E* __restrict__ y,
                   float* __restrict__ partial, float* __restrict__ stats, const __grid_constant__ Geometry g,
                   int64_t stages_per_split) {
  extern __shared__ __align__(128) unsigned char smem[];
  const int64_t m0 = int64_t{blockIdx.x} * T::BM;
  const gemm::GroupTile gt = gemm::group_tile(g.gk, T::BN);
  const int n0 = gt.tile * T::BN;       // group-local
  const int k_first = gt.group * g.gk;  // the group's first output channel
  const int64_t total = ceil_div(int64_t{g.r} * g.s * g.gc, kStageK<E>);
  const int64_t first = int64_t{blockIdx.z} * stages_per_split;
  const int64_t stages = max(int64_t{0}, min(stages_per_split, total - first));
  ImageRows<T, E, kVec> la(x + int64_t{gt.group} * g.gc, g, m0, first);
  FilterRows<T, E, kVec> lb(w + int64_t{k_first} * g.r * g.s * g.gc, g, n0, first);
  Accumulators<T> acc;
  mainloop<T, E, Major::k, Major::k>(smem, la, lb, stages, acc);

  const int64_t rows = int64_t{g.n} * g.p * g.q;
  float* slice = partial != nullptr ? partial + int64_t{blockIdx.z} * rows * g.k : nullptr;
  float sum[T::NF][2] = {}, sq[T::NF][2] = {};  // ConvOutputStats: this thread's columns
  for_each_pair<T>(acc, [&](int row, int col, float v0, float v1) {
    const int64_t m = m0 + row;
    const int kl = n0 + col, k = k_first + kl;
    if (m >= rows) return;
    const float v[2] = {v0, v1};
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      if (kl + j >= g.gk) break;
      const int64_t i = m * g.k + k + j;
      if (slice != nullptr) {
        slice[i] = v[j];
        continue;
      }
      const E out = to_output<E>(ep.apply(v[j], k + j));
      y[i] = out;
      const float stored = stored_value(out);
      sum[(col % T::WN) / 8][j] += stored;
      sq[(col % T::WN) / 8][j] += stored * stored;
    }
  });
  if (stats != nullptr) {  // uniform across the block (never with slices): the barrier inside is safe
    const int64_t row_blocks = gridDim.x;
    write_block_column_sums<T>(sum, sq, stats + int64_t{blockIdx.x} * g.k + k_first,
                               stats + (row_blocks + blockIdx.x) * g.k + k_first, n0, g.gk);
  }
}

template <class T, class E, bool kVec>
void launch_forward(const E* x, const E* w, const Epilogue& ep, E* y, const Geometry& g, const ConvTcPlan& plan,
                    void* workspace, cudaStream_t stream, const ConvOutputStats& stats) {
  auto* kernel = forward_kernel<T, E, kVec>;
  const size_t smem = shared_bytes<T, E, Major::k, Major::k>();
  allow_shared_bytes(kernel, smem);
  const int64_t per_split = ceil_div(ceil_div(plan.gemm_k, kStageK<E>), plan.splits);
  float* partial = plan.splits > 1 ? static_cast<float*>(workspace) : nullptr;
  const dim3 grid(static_cast<unsigned>(ceil_div(plan.gemm_m, T::BM)),
                  gemm::group_tiles(plan.groups, plan.gemm_n, T::BN), static_cast<unsigned>(plan.splits));
  float* stats_partial = nullptr;  // after the split-K partials
  if (stats.sum != nullptr) {
    const size_t offset = (plan.workspace_bytes + kConvTcStatsAlign - 1) / kConvTcStatsAlign * kConvTcStatsAlign;
    stats_partial = reinterpret_cast<float*>(static_cast<unsigned char*>(workspace) + offset);
  }
  kernel<<<grid, T::kThreads, smem, stream>>>(x, w, ep, y, partial, partial == nullptr ? stats_partial : nullptr, g,
                                              per_split);
  CONVNET_CUDA_CHECK_LAUNCH("conv forward_kernel (v4)");
  if (partial != nullptr) sum_slices<E>(partial, y, plan.outputs(), g.k, plan.splits, ep, stream);
  if (stats_partial == nullptr) return;
  if (partial != nullptr) column_moments<E>(y, plan.gemm_m, g.k, T::BM, stats_partial, stream);
  column_moment_totals(stats_partial, plan.stats_row_blocks, g.k, stats, stream);
}

}  // namespace
}  // namespace tc

template <class E>
void detail::tc_forward(const E* x, const E* w, const float* bias, E* y, ConvActivation act, const ConvShape& shape,
                        const ConvTcPlan& plan, void* workspace, cudaStream_t stream, const ConvOutputStats& stats) {
  using namespace tc;
  const Geometry g = gemm::make_geometry(shape);
  const Epilogue ep{bias, act};
  const bool vec = plan.vectorized && gemm::aligned16(x) && gemm::aligned16(w);
  if (plan.tile == ConvTcTile::large) {
    if (vec)
      launch_forward<TileLarge, E, true>(x, w, ep, y, g, plan, workspace, stream, stats);
    else
      launch_forward<TileLarge, E, false>(x, w, ep, y, g, plan, workspace, stream, stats);
  } else {
    if (vec)
      launch_forward<TileSmall, E, true>(x, w, ep, y, g, plan, workspace, stream, stats);
    else
      launch_forward<TileSmall, E, false>(x, w, ep, y, g, plan, workspace, stream, stats);
  }
}

template void detail::tc_forward<float>(const float*, const float*, const float*, float*, ConvActivation,
                                        const ConvShape&, const ConvTcPlan&, void*, cudaStream_t,
                                        const ConvOutputStats&);
template void detail::tc_forward<uint16_t>(const uint16_t*, const uint16_t*, const float*, uint16_t*, ConvActivation,
                                           const ConvShape&, const ConvTcPlan&, void*, cudaStream_t,
                                           const ConvOutputStats&);

}  // namespace convnet::cuda
