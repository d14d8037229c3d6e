// v2 backward-filter convolution as an implicit GEMM with a split reduction:
//   dw[k][(r, s, c)] = sum over (n, p, q) of dy[n, p, q, k] * x[n, p*stride - pad + r*dil, q*..., c]
// M = k, N = r*s*c, reduction n*p*q. The output is small and the reduction long, so the
// reduction is cut into `splits` slices (grid z), each writing its partial dw to the workspace;
// a second kernel adds the slices in slice order, so the result does not depend on scheduling.
// dbias: detail::bias_gradient (cuda/conv_bias_gradient.cu). No atomics.
// Groups: one GEMM per group (grid y = group x row tile): M = its gk filters (dy channel
// group * gk + k), N = r*s*gc over its input channels (x channel group * gc + c).
#include <algorithm>

#include "cuda/check.h"
#include "cuda/conv_gemm_common.cuh"
#include "cuda/conv_tc_kernels.h"

namespace convnet::cuda {
namespace gemm {
namespace {

// A[k][npq] = dy[npq][k]: 4 consecutive output channels of one dy row.
template <class T, bool kVec>
struct GradColLoader {
  using Slot = ColSlot<T::BM>;
  const float* dy;
  int64_t npq, npq_end;
  int k, K, ldy;  // K: one group's channels; ldy: dy's row stride (all channels)

  // dy_ points at the group's first channel; m0 is group-local.
  __device__ GradColLoader(const float* dy_, const Geometry& g, int m0, int64_t tile_begin)
      : dy(dy_),
        npq(tile_begin * T::BK + Slot::kk()),
        npq_end(int64_t{g.n} * g.p * g.q),
        k(m0 + Slot::cq()),
        K(g.gk),
        ldy(g.k) {}

  __device__ void load(float (&v)[4]) {
    zero4(v);
    if (npq < npq_end && k < K) {
      const float* row = dy + npq * ldy + k;
      if constexpr (kVec) {  // gk % 4 == 0: all 4 channels exist
        set4(v, load4(row));
      } else {
#pragma unroll
        for (int i = 0; i < 4; ++i)
          if (k + i < K) v[i] = __ldg(row + i);
      }
    }
    npq += T::BK;
  }
  __device__ void store(const float (&v)[4], float* smem) const {
    Slot::template store<T::AS>(v, smem);
  }
};

// B[npq][(r, s, c)] = x[n, p*stride - pad + r*dil, q*stride - pad + s*dil, c]: the im2col entries
// of 4 consecutive columns for one output pixel. The columns are fixed per thread, the pixel
// advances by BK per tile.
template <class T, bool kVec>
struct ImageColLoader {
  using Slot = ColSlot<T::BN>;
  static constexpr int kCols = kVec ? 1 : 4;  // the vector path needs one tap for the group
  const float* x;
  int64_t npq, npq_end;
  int n = 0, p = 0, q = 0;
  int H, W, C, P, Q, stride_h, stride_w, pad_h, pad_w;  // C: x's row stride (all channels)
  int dr[kCols], ds[kCols], c[kCols];                   // r*dil_h, s*dil_w and (group-local) channel of each column
  bool col_ok[kCols];

  // x_ points at the group's first channel.
  __device__ ImageColLoader(const float* x_, const Geometry& g, int n0, int64_t tile_begin)
      : x(x_),
        npq(tile_begin * T::BK + Slot::kk()),
        npq_end(int64_t{g.n} * g.p * g.q),
        H(g.h),
        W(g.w),
        C(g.c),
        P(g.p),
        Q(g.q),
        stride_h(g.stride_h),
        stride_w(g.stride_w),
        pad_h(g.pad_h),
        pad_w(g.pad_w) {
    const int cols = g.r * g.s * g.gc;
#pragma unroll
    for (int i = 0; i < kCols; ++i) {
      const int col = n0 + Slot::cq() + i;
      col_ok[i] = col < cols;
      c[i] = col % g.gc;
      ds[i] = (col / g.gc) % g.s * g.dil_w;
      dr[i] = col / g.gc / g.s * g.dil_h;
    }
    if (npq < npq_end) {
      const int t = static_cast<int>(npq);
      q = t % Q;
      p = (t / Q) % P;
      n = t / Q / P;
    }
  }

  __device__ void load(float (&v)[4]) {
    zero4(v);
    if (npq < npq_end) {
      const int hb = p * stride_h - pad_h, wb = q * stride_w - pad_w;
      const int64_t image = int64_t{n} * H;
      if constexpr (kVec) {
        const int h = hb + dr[0], w = wb + ds[0];
        if (col_ok[0] && in_range(h, H) && in_range(w, W)) set4(v, load4(x + ((image + h) * W + w) * C + c[0]));
      } else {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int h = hb + dr[i], w = wb + ds[i];
          if (col_ok[i] && in_range(h, H) && in_range(w, W)) v[i] = __ldg(x + ((image + h) * W + w) * C + c[i]);
        }
      }
    }
    npq += T::BK;
    q += T::BK;
    while (q >= Q) {
      q -= Q;
      if (++p == P) {
        p = 0;
        ++n;
      }
    }
  }
  __device__ void store(const float (&v)[4], float* smem) const {
    Slot::template store<T::BS>(v, smem);
  }
};

// Slice z of the reduction: tiles [z * tiles_per_split, ...) into out (dw itself when there is
// one slice, else the slice's partial in the workspace).
template <class T, bool kVec>
__global__ void __launch_bounds__(kThreads, T::kMinBlocks)
    backward_filter_kernel(const float* __restrict__ x, const float* __restrict__ dy, float* __restrict__ out,
                           const __grid_constant__ Geometry g, int64_t tiles_per_split) {
  const int n0 = static_cast<int>(blockIdx.x) * T::BN;
  const GroupTile gt = group_tile(g.gk, T::BM);
  const int m0 = gt.tile * T::BM;  // group-local
  const int64_t k_tiles = ceil_div(int64_t{g.n} * g.p * g.q, T::BK);
  const int64_t tile_begin = int64_t{blockIdx.z} * tiles_per_split;
  const int64_t tiles = min(tiles_per_split, k_tiles - tile_begin);
  GradColLoader<T, kVec> la(dy + int64_t{gt.group} * g.gk, g, m0, tile_begin);
  ImageColLoader<T, kVec> lb(x + int64_t{gt.group} * g.gc, g, n0, tile_begin);
  float acc[T::TM][T::TN];
  gemm_mainloop<T>(la, lb, tiles, acc);

  const int cols = g.r * g.s * g.gc;
  // dw rows are the filters [k][r*s*gc]; the group's start at its first filter.
  float* slice = out + (int64_t{blockIdx.z} * g.k + int64_t{gt.group} * g.gk) * cols;
  for_each_output<T>(acc, [&](int row, int col, const float(&v)[4]) {
    const int k = m0 + row;
    const int rsc = n0 + col;
    if (k >= g.gk || rsc >= cols) return;
    store_group(slice + int64_t{k} * cols + rsc, v, cols - rsc, kVec);  // kVec: cols % 4 == 0, aligned
  });
}

// dw[i] = sum of the slices' partials in slice order.
__global__ void sum_slices_kernel(const float* __restrict__ partial, float* __restrict__ dw, int64_t count,
                                  int splits) {
  const int64_t stride = int64_t{blockDim.x} * gridDim.x;
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < count; i += stride) {
    float sum = 0.0f;
    for (int z = 0; z < splits; ++z) sum += partial[z * count + i];
    dw[i] = sum;
  }
}

template <class T, bool kVec>
void launch_backward_filter(const float* x, const float* dy, float* out, const Geometry& g, const ConvGemmPlan& plan,
                            cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(ceil_div(plan.gemm_n, T::BN)), group_tiles(plan.groups, plan.gemm_m, T::BM),
                  static_cast<unsigned>(plan.splits));
  backward_filter_kernel<T, kVec><<<grid, kThreads, 0, stream>>>(x, dy, out, g, plan.k_tiles_per_split);
  CONVNET_CUDA_CHECK_LAUNCH("conv backward_filter_kernel (v2)");
}

}  // namespace
}  // namespace gemm

void detail::gemm_backward_filter(const float* x, const float* dy, float* dw, float* dbias, const ConvShape& shape,
                                  const ConvGemmPlan& plan, float* workspace, cudaStream_t stream) {
  using namespace gemm;
  const Geometry g = make_geometry(shape);
  float* out = plan.splits > 1 ? workspace : dw;
  const bool vec = plan.vectorized && aligned16(x) && aligned16(dy) && aligned16(out);
  if (plan.block_m == TileLarge::BM) {
    if (vec)
      launch_backward_filter<TileLarge, true>(x, dy, out, g, plan, stream);
    else
      launch_backward_filter<TileLarge, false>(x, dy, out, g, plan, stream);
  } else {
    if (vec)
      launch_backward_filter<TileSmall, true>(x, dy, out, g, plan, stream);
    else
      launch_backward_filter<TileSmall, false>(x, dy, out, g, plan, stream);
  }
  if (plan.splits > 1) {
    const int64_t count = int64_t{g.k} * g.r * g.s * g.gc;
    const int64_t blocks = std::min<int64_t>(ceil_div(count, kThreads), 4096);
    sum_slices_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(workspace, dw, count, plan.splits);
    CONVNET_CUDA_CHECK_LAUNCH("conv sum_slices_kernel (v2)");
  }
  if (dbias != nullptr) {
    float* chunk_sums = workspace + detail::conv_filter_bias_offset(plan, shape);
    detail::bias_gradient(dy, dbias, int64_t{g.n} * g.p * g.q, g.k, plan.bias_rows_per_chunk, chunk_sums, stream);
  }
}

}  // namespace convnet::cuda
