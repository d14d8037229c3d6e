// v4 backward-filter convolution on the tensor cores: v2's implicit GEMM
// (cuda/conv_gemm_backward_filter.cu), M = k, N = r*s*c, reduction n*p*q cut into slices,
//   dw[k][(r, s, c)] = sum over (n, p, q) of dy[n, p, q, k] * x[n, p*stride - pad + r*dil, q*..., c].
// Both operands are MN-major: a chunk is kChunk consecutive output channels of one dy row (A), or
// kChunk consecutive channels of one im2col entry (B). dw is fp32 in both precisions; dbias comes
// from detail::bias_gradient (cuda/conv_bias_gradient.cu).
// Groups: one GEMM per group (grid y = group x row tile): M = its gk filters (dy channel
// group * gk + k), N = r*s*gc over its input channels (x channel group * gc + c).
#include "cuda/conv_tc_common.cuh"

namespace convnet::cuda {
namespace tc {
namespace {

// A[k][npq] = dy[npq][k]: each thread fills the same kChunk channels of two dy rows (dy: the
// group's first channel; k group-local).
template <class T, class E, bool kVec>
struct GradCols {
  using Slots = ChunkSlots<T, E, Major::mn>;
  using Tl = OperandTile<E, Major::mn, T::BM>;
  static constexpr int kPer = Slots::kPer;
  const E* dy;
  int64_t npq[kPer], npq_end;
  int k, K, ldy;  // K: the group's channels; ldy: dy's row stride (all channels)

  __device__ GradCols(const E* dy_, const Geometry& g, int m0, int64_t first_stage)
      : dy(dy_), npq_end(int64_t{g.n} * g.p * g.q), k(m0 + Slots::mn(0)), K(g.gk), ldy(g.k) {
#pragma unroll
    for (int i = 0; i < kPer; ++i) npq[i] = first_stage * kStageK<E> + Slots::kk(i);
  }

  __device__ void load(unsigned char* tile) {
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int offset = Tl::offset(Slots::mn(i), Slots::kk(i));
      const bool row_ok = npq[i] < npq_end;
      const E* row = dy + npq[i] * ldy + k;
      if constexpr (kVec) {  // gk % kChunk == 0: all kChunk channels exist or none
        const bool ok = row_ok && k < K;
        copy_chunk(tile, offset, ok ? row : dy, ok);
      } else {
#pragma unroll
        for (int e = 0; e < kChunk<E>; ++e) {
          const bool ok = row_ok && k + e < K;
          store_element<E>(tile, offset + e * static_cast<int>(sizeof(E)), ok ? load_element(row + e) : E(0));
        }
      }
      npq[i] += kStageK<E>;
    }
  }
};

// B[npq][(r, s, c)] = x[n, p*stride - pad + r*dil, q*stride - pad + s*dil, c]: the im2col entries
// of kChunk consecutive columns for two output pixels per thread. The columns are fixed per
// thread; the pixels advance by one stage per load. x: the group's first channel.
template <class T, class E, bool kVec>
struct ImageCols {
  using Slots = ChunkSlots<T, E, Major::mn>;
  using Tl = OperandTile<E, Major::mn, T::BN>;
  static constexpr int kPer = Slots::kPer;
  static constexpr int kCols = kVec ? 1 : kChunk<E>;  // the vector path: one tap for the chunk
  const E* x;
  Geometry g;
  int64_t npq[kPer], npq_end;
  int n[kPer] = {}, p[kPer] = {}, q[kPer] = {};
  int dr[kCols], ds[kCols], c[kCols];  // r*dil_h, s*dil_w and (group-local) channel of each column
  bool col_ok[kCols];

  __device__ ImageCols(const E* x_, const Geometry& g_, int n0, int64_t first_stage)
      : x(x_), g(g_), npq_end(int64_t{g_.n} * g_.p * g_.q) {
    const int cols = g.r * g.s * g.gc;
#pragma unroll
    for (int j = 0; j < kCols; ++j) {
      const int col = n0 + Slots::mn(0) + j;
      col_ok[j] = col < cols;
      c[j] = col % g.gc;
      ds[j] = (col / g.gc) % g.s * g.dil_w;
      dr[j] = col / g.gc / g.s * g.dil_h;
    }
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      npq[i] = first_stage * kStageK<E> + Slots::kk(i);
      if (npq[i] >= npq_end) continue;
      const int t = static_cast<int>(npq[i]);
      q[i] = t % g.q;
      p[i] = (t / g.q) % g.p;
      n[i] = t / g.q / g.p;
    }
  }

  // x element of column j for pixel i, or null for padding.
  __device__ const E* at(int i, int j) const {
    const int h = p[i] * g.stride_h - g.pad_h + dr[j], w = q[i] * g.stride_w - g.pad_w + ds[j];
    if (!col_ok[j] || !in_range(h, g.h) || !in_range(w, g.w)) return nullptr;
    return x + ((int64_t{n[i]} * g.h + h) * g.w + w) * g.c + c[j];
  }

  __device__ void load(unsigned char* tile) {
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int offset = Tl::offset(Slots::mn(i), Slots::kk(i));
      const bool row_ok = npq[i] < npq_end;
      if constexpr (kVec) {
        const E* src = row_ok ? at(i, 0) : nullptr;
        copy_chunk(tile, offset, src != nullptr ? src : x, src != nullptr);
      } else {
#pragma unroll
        for (int j = 0; j < kCols; ++j) {
          const E* src = row_ok ? at(i, j) : nullptr;
          store_element<E>(tile, offset + j * static_cast<int>(sizeof(E)), src != nullptr ? load_element(src) : E(0));
        }
      }
      npq[i] += kStageK<E>;
      q[i] += kStageK<E>;
      while (q[i] >= g.q) {
        q[i] -= g.q;
        if (++p[i] == g.p) {
          p[i] = 0;
          ++n[i];
        }
      }
    }
  }
};

template <class T, class E, bool kVec>
__global__ void __launch_bounds__(T::kThreads)
    backward_filter_kernel(const E* __restrict__ x, const E* __restrict__ dy, float* __restrict__ out,
                           const __grid_constant__ Geometry g, int64_t stages_per_split) {
  extern __shared__ __align__(128) unsigned char smem[];
  const int n0 = static_cast<int>(blockIdx.x) * T::BN;
  const gemm::GroupTile gt = gemm::group_tile(g.gk, T::BM);
  const int m0 = gt.tile * T::BM;  // group-local
  const int64_t total = ceil_div(int64_t{g.n} * g.p * g.q, kStageK<E>);
  const int64_t first = int64_t{blockIdx.z} * stages_per_split;
  const int64_t stages = max(int64_t{0}, min(stages_per_split, total - first));
  GradCols<T, E, kVec> la(dy + int64_t{gt.group} * g.gk, g, m0, first);
  ImageCols<T, E, kVec> lb(x + int64_t{gt.group} * g.gc, g, n0, first);
  Accumulators<T> acc;
  mainloop<T, E, Major::mn, Major::mn>(smem, la, lb, stages, acc);

  const int cols = g.r * g.s * g.gc;
  // dw rows are the filters [k][r*s*gc]; the group's start at its first filter.
  float* slice = out + (int64_t{blockIdx.z} * g.k + int64_t{gt.group} * g.gk) * cols;
  for_each_pair<T>(acc, [&](int row, int col, float v0, float v1) {
    const int k = m0 + row;
    const int rsc = n0 + col;
    if (k >= g.gk) return;
    if (rsc < cols) slice[int64_t{k} * cols + rsc] = v0;
    if (rsc + 1 < cols) slice[int64_t{k} * cols + rsc + 1] = v1;
  });
}

template <class T, class E, bool kVec>
void launch_backward_filter(const E* x, const E* dy, float* dw, const Geometry& g, const ConvTcPlan& plan,
                            float* partial, cudaStream_t stream) {
  auto* kernel = backward_filter_kernel<T, E, kVec>;
  const size_t smem = shared_bytes<T, E, Major::mn, Major::mn>();
  allow_shared_bytes(kernel, smem);
  const int64_t per_split = ceil_div(ceil_div(plan.gemm_k, kStageK<E>), plan.splits);
  const dim3 grid(static_cast<unsigned>(ceil_div(plan.gemm_n, T::BN)),
                  gemm::group_tiles(plan.groups, plan.gemm_m, T::BM), static_cast<unsigned>(plan.splits));
  kernel<<<grid, T::kThreads, smem, stream>>>(x, dy, plan.splits > 1 ? partial : dw, g, per_split);
  CONVNET_CUDA_CHECK_LAUNCH("conv backward_filter_kernel (v4)");
  if (plan.splits > 1)
    sum_slices<float>(partial, dw, plan.outputs(), static_cast<int>(plan.gemm_n), plan.splits, Epilogue{}, stream);
}

}  // namespace
}  // namespace tc

template <class E>
void detail::tc_backward_filter(const E* x, const E* dy, float* dw, float* dbias, const ConvShape& shape,
                                const ConvTcPlan& plan, void* workspace, cudaStream_t stream) {
  using namespace tc;
  const Geometry g = gemm::make_geometry(shape);
  float* partial = static_cast<float*>(workspace);
  const bool vec = plan.vectorized && gemm::aligned16(x) && gemm::aligned16(dy);
  if (plan.tile == ConvTcTile::large) {
    if (vec)
      launch_backward_filter<TileLarge, E, true>(x, dy, dw, g, plan, partial, stream);
    else
      launch_backward_filter<TileLarge, E, false>(x, dy, dw, g, plan, partial, stream);
  } else {
    if (vec)
      launch_backward_filter<TileSmall, E, true>(x, dy, dw, g, plan, partial, stream);
    else
      launch_backward_filter<TileSmall, E, false>(x, dy, dw, g, plan, partial, stream);
  }
  if (dbias != nullptr) {
    const int64_t partial_floats = plan.splits > 1 ? plan.splits * plan.outputs() : 0;
    float* chunk_sums = partial == nullptr ? nullptr : partial + ceil_div(partial_floats, 4) * 4;
    const int64_t rows = int64_t{g.n} * g.p * g.q;
    bias_gradient(dy, dbias, rows, g.k, conv_bias_rows_per_chunk(rows), chunk_sums, stream);
  }
}

template void detail::tc_backward_filter<float>(const float*, const float*, float*, float*, const ConvShape&,
                                                const ConvTcPlan&, void*, cudaStream_t);
template void detail::tc_backward_filter<uint16_t>(const uint16_t*, const uint16_t*, float*, float*, const ConvShape&,
                                                   const ConvTcPlan&, void*, cudaStream_t);

}  // namespace convnet::cuda
