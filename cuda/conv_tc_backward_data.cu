// v4 backward-data convolution on the tensor cores: v2's phase-split implicit GEMM
// (cuda/conv_gemm_backward_data.cu, cuda/conv_phase.cuh),
//   dx[pixel of the phase][c] = sum over the phase's taps (r, s) and k of dy[n, p, q, k] * w[k, r, s, c],
// grid z = phase * splits + slice. A (dy) is K-major: a chunk is kChunk consecutive k at one tap.
// B (w) is MN-major: the chunk is kChunk consecutive c of one filter row (k, r, s).
// Groups: one GEMM per group (grid y = group x column tile): its gc input channels (dx channel
// group * gc + c) from its gk output channels (dy channel group * gk + k) and filters.
#include "cuda/conv_phase.cuh"
#include "cuda/conv_tc_common.cuh"

namespace convnet::cuda {
namespace tc {
namespace {

using gemm::Phase;
using gemm::Pixel;
using gemm::Taps;

// A[m][kred] = dy[n, p, q, k] for the pixel of row m and the kred-th (tap, k); zero when the tap
// lands outside dy.
template <class T, class E, bool kVec>
struct GradRows {
  using Slots = ChunkSlots<T, E, Major::k>;
  using Tl = OperandTile<E, Major::k, T::BM>;
  static constexpr int kPer = Slots::kPer;
  const E* dy;              // the group's first channel
  int64_t base[kPer] = {};  // dy offset of the row's image
  // The output row and column the phase's first tap reaches; each further tap moves them back by
  // dp = step * dil / stride (exact).
  int p_first[kPer] = {}, q_first[kPer] = {};
  bool row_ok[kPer] = {};
  int dp, dq;
  int kred, kred_end;
  int jr = 0, js = 0, k = 0;  // kred = (jr * ts.count + js) * gk + k
  Geometry g;
  int s_count;

  __device__ GradRows(const E* dy_, const Geometry& g_, const Phase& ph, int64_t m0, int64_t first_stage)
      : dy(dy_),
        dp(ph.tr.step * g_.dil_h / g_.stride_h),
        dq(ph.ts.step * g_.dil_w / g_.stride_w),
        kred(static_cast<int>(first_stage * kStageK<E>) + Slots::kk(0)),
        kred_end(ph.tr.count * ph.ts.count * g_.gk),
        g(g_),
        s_count(ph.ts.count) {
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int64_t m = m0 + Slots::mn(i);
      row_ok[i] = m < int64_t{g.n} * ph.hp * ph.wp;
      if (!row_ok[i]) continue;
      const Pixel px = gemm::phase_pixel(g, ph, static_cast<int>(m));
      base[i] = int64_t{px.n} * g.p * g.q * g.k;
      p_first[i] = (px.h + g.pad_h - ph.tr.first * g.dil_h) / g.stride_h;
      q_first[i] = (px.w + g.pad_w - ph.ts.first * g.dil_w) / g.stride_w;
    }
    if (kred_end > 0) {
      k = kred % g.gk;
      js = (kred / g.gk) % s_count;
      jr = kred / g.gk / s_count;
    }
  }

  // dy element (tap jr, js; channel kk) of row i, or null when the tap lands outside dy.
  __device__ const E* at(int i, int a, int b, int kk) const {
    const int p = p_first[i] - a * dp, q = q_first[i] - b * dq;
    if (!row_ok[i] || !in_range(p, g.p) || !in_range(q, g.q)) return nullptr;
    return dy + base[i] + (int64_t{p} * g.q + q) * g.k + kk;
  }

  __device__ void load(unsigned char* tile) {
    if constexpr (kVec) {  // gk % kChunk == 0: a chunk is one tap, kChunk channels
#pragma unroll
      for (int i = 0; i < kPer; ++i) {
        const E* src = kred < kred_end ? at(i, jr, js, k) : nullptr;
        copy_chunk(tile, Tl::offset(Slots::mn(i), Slots::kk(i)), src != nullptr ? src : dy, src != nullptr);
      }
    } else {
      int a = jr, b = js, kk = k;
#pragma unroll
      for (int e = 0; e < kChunk<E>; ++e) {
#pragma unroll
        for (int i = 0; i < kPer; ++i) {
          const E* src = kred + e < kred_end ? at(i, a, b, kk) : nullptr;
          store_element<E>(tile, Tl::offset(Slots::mn(i), Slots::kk(i) + e), src != nullptr ? load_element(src) : E(0));
        }
        if (++kk == g.gk) {
          kk = 0;
          if (++b == s_count) {
            b = 0;
            ++a;
          }
        }
      }
    }
    kred += kStageK<E>;
    k += kStageK<E>;
    while (k >= g.gk) {
      k -= g.gk;
      if (++js == s_count) {
        js = 0;
        ++jr;
      }
    }
  }
};

// B[kred][c] = w[k, r, s, c] for the kred-th (tap, k): stored one reduction index per shared row.
// Each thread fills the same kChunk columns of two reduction rows, each with its own (tap, k).
// w: the group's first filter; k and c are group-local.
template <class T, class E, bool kVec>
struct FilterCols {
  using Slots = ChunkSlots<T, E, Major::mn>;
  using Tl = OperandTile<E, Major::mn, T::BN>;
  static constexpr int kPer = Slots::kPer;
  const E* w;
  int kred[kPer], kred_end;
  int jr[kPer] = {}, js[kPer] = {}, k[kPer] = {};
  int c;
  Geometry g;
  Taps tr, ts;

  __device__ FilterCols(const E* w_, const Geometry& g_, const Phase& ph, int n0, int64_t first_stage)
      : w(w_), kred_end(ph.tr.count * ph.ts.count * g_.gk), c(n0 + Slots::mn(0)), g(g_), tr(ph.tr), ts(ph.ts) {
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      kred[i] = static_cast<int>(first_stage * kStageK<E>) + Slots::kk(i);
      if (kred_end > 0) {
        k[i] = kred[i] % g.gk;
        js[i] = (kred[i] / g.gk) % ts.count;
        jr[i] = kred[i] / g.gk / ts.count;
      }
    }
  }

  __device__ void load(unsigned char* tile) {
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int offset = Tl::offset(Slots::mn(i), Slots::kk(i));
      const bool row_ok = kred[i] < kred_end;
      const E* row = w + ((int64_t{k[i]} * g.r + tr.first + jr[i] * tr.step) * g.s + ts.first + js[i] * ts.step) * g.gc;
      if constexpr (kVec) {  // gc % kChunk == 0: all kChunk channels exist or none
        const bool ok = row_ok && c < g.gc;
        copy_chunk(tile, offset, ok ? row + c : w, ok);
      } else {
#pragma unroll
        for (int e = 0; e < kChunk<E>; ++e) {
          const bool ok = row_ok && c + e < g.gc;
          store_element<E>(tile, offset + e * static_cast<int>(sizeof(E)), ok ? load_element(row + c + e) : E(0));
        }
      }
      kred[i] += kStageK<E>;
      k[i] += kStageK<E>;
      while (k[i] >= g.gk) {
        k[i] -= g.gk;
        if (++js[i] == ts.count) {
          js[i] = 0;
          ++jr[i];
        }
      }
    }
  }
};

template <class T, class E, bool kVec>
__global__ void __launch_bounds__(T::kThreads)
    backward_data_kernel(const E* __restrict__ dy, const E* __restrict__ w, E* __restrict__ dx,
                         float* __restrict__ partial, const __grid_constant__ Geometry g, int splits) {
  extern __shared__ __align__(128) unsigned char smem[];
  const int phase = static_cast<int>(blockIdx.z) / splits, slice = static_cast<int>(blockIdx.z) % splits;
  const Phase ph = gemm::make_phase(g, phase);
  const int64_t rows = int64_t{g.n} * ph.hp * ph.wp;
  const int64_t m0 = int64_t{blockIdx.x} * T::BM;
  if (m0 >= rows) return;  // grid x covers the largest phase; the whole block leaves together
  const gemm::GroupTile gt = gemm::group_tile(g.gc, T::BN);
  const int n0 = gt.tile * T::BN;  // group-local
  const int64_t total = ceil_div(int64_t{ph.tr.count} * ph.ts.count * g.gk, kStageK<E>);
  const int64_t per_split = ceil_div(total, splits);
  const int64_t first = slice * per_split;
  const int64_t stages = max(int64_t{0}, min(per_split, total - first));
  GradRows<T, E, kVec> la(dy + int64_t{gt.group} * g.gk, g, ph, m0, first);
  FilterCols<T, E, kVec> lb(w + int64_t{gt.group} * g.gk * g.r * g.s * g.gc, g, ph, n0, first);
  Accumulators<T> acc;
  mainloop<T, E, Major::k, Major::mn>(smem, la, lb, stages, acc);

  float* out = partial != nullptr ? partial + int64_t{slice} * g.n * g.h * g.w * g.c : nullptr;
  for_each_pair<T>(acc, [&](int row, int col, float v0, float v1) {
    const int64_t m = m0 + row;
    const int c = n0 + col;
    if (m >= rows) return;
    const Pixel px = gemm::phase_pixel(g, ph, static_cast<int>(m));
    const int64_t pixel = (int64_t{px.n} * g.h + px.h) * g.w + px.w;
    const float v[2] = {v0, v1};
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      if (c + j >= g.gc) break;
      const int64_t i = pixel * g.c + gt.group * g.gc + c + j;
      if (out != nullptr)
        out[i] = v[j];
      else
        dx[i] = to_output<E>(v[j]);
    }
  });
}

template <class T, class E, bool kVec>
void launch_backward_data(const E* dy, const E* w, E* dx, const Geometry& g, const ConvTcPlan& plan, void* workspace,
                          cudaStream_t stream) {
  auto* kernel = backward_data_kernel<T, E, kVec>;
  const size_t smem = shared_bytes<T, E, Major::k, Major::mn>();
  allow_shared_bytes(kernel, smem);
  // Phase 0 has the most pixels: ceil(h / stride_h) * ceil(w / stride_w) per image.
  const int64_t rows = int64_t{g.n} * ceil_div(g.h, g.stride_h) * ceil_div(g.w, g.stride_w);
  float* partial = plan.splits > 1 ? static_cast<float*>(workspace) : nullptr;
  const dim3 grid(static_cast<unsigned>(ceil_div(rows, T::BM)), gemm::group_tiles(plan.groups, plan.gemm_n, T::BN),
                  static_cast<unsigned>(plan.phases * plan.splits));
  kernel<<<grid, T::kThreads, smem, stream>>>(dy, w, dx, partial, g, plan.splits);
  CONVNET_CUDA_CHECK_LAUNCH("conv backward_data_kernel (v4)");
  if (partial != nullptr) sum_slices<E>(partial, dx, plan.outputs(), g.c, plan.splits, Epilogue{}, stream);
}

}  // namespace
}  // namespace tc

template <class E>
void detail::tc_backward_data(const E* dy, const E* w, E* dx, const ConvShape& shape, const ConvTcPlan& plan,
                              void* workspace, cudaStream_t stream) {
  using namespace tc;
  const Geometry g = gemm::make_geometry(shape);
  const bool vec = plan.vectorized && gemm::aligned16(dy) && gemm::aligned16(w);
  if (plan.tile == ConvTcTile::large) {
    if (vec)
      launch_backward_data<TileLarge, E, true>(dy, w, dx, g, plan, workspace, stream);
    else
      launch_backward_data<TileLarge, E, false>(dy, w, dx, g, plan, workspace, stream);
  } else {
    if (vec)
      launch_backward_data<TileSmall, E, true>(dy, w, dx, g, plan, workspace, stream);
    else
      launch_backward_data<TileSmall, E, false>(dy, w, dx, g, plan, workspace, stream);
  }
}

template void detail::tc_backward_data<float>(const float*, const float*, float*, const ConvShape&, const ConvTcPlan&,
                                              void*, cudaStream_t);
template void detail::tc_backward_data<uint16_t>(const uint16_t*, const uint16_t*, uint16_t*, const ConvShape&,
                                                 const ConvTcPlan&, void*, cudaStream_t);

}  // namespace convnet::cuda
