// v2 backward-data convolution as an implicit GEMM, one GEMM per stride phase:
//   dx[n, h, w, c] = sum over taps (r, s) and k of dy[n, p, q, k] * w[k, r, s, c]
// where h + pad_h - r*dil_h = p*stride_h (same along w). Whether tap r can hit row h depends only
// on h % stride_h, so the pixels are grouped by phase (h % stride_h, w % stride_w), one grid z per
// phase, and each phase's reduction runs over the taps that hit it (an arithmetic progression of
// r and of s) times k. No zeros are inserted and no tap is wasted; stride 1 is a single phase with
// every tap (the forward convolution of dy with the flipped, transposed filter).
// The reduction index runs (tap_r, tap_s, k) with k fastest: contiguous channels of dy.
// Groups: one GEMM per group (grid y = group x column tile): its gc input channels (dx channel
// group * gc + c) from its gk output channels (dy channel group * gk + k) and filters.
#include "cuda/check.h"
#include "cuda/conv_gemm_common.cuh"
#include "cuda/conv_phase.cuh"

namespace convnet::cuda {
namespace gemm {
namespace {

// A[m][kred] = dy[n, p, q, k] for the pixel of row m and the kred-th (tap, k), zero when the tap
// lands outside dy.
template <class T, bool kVec>
struct GradRowLoader {
  using Slot = RowSlot<T::BK>;
  const float* dy;
  int64_t base = 0;  // dy offset of image n
  // Output row and column the first hitting tap reaches; each further tap moves them back by
  // dp = step * dil / stride (exact: step * dil is a multiple of stride), so no division per load.
  int p_first = 0, q_first = 0, dp, dq;
  bool row_ok = false;
  int kred, kred_end;
  int jr = 0, js = 0, k = 0;  // kred = (jr * ts.count + js) * K + k
  int K, P, Q, s_count;
  int ldy;  // dy's row stride: all channels

  // dy_ points at the group's first channel.
  __device__ GradRowLoader(const float* dy_, const Geometry& g, const Phase& ph, int64_t m0)
      : dy(dy_),
        dp(ph.tr.step * g.dil_h / g.stride_h),
        dq(ph.ts.step * g.dil_w / g.stride_w),
        kred(Slot::kq()),
        kred_end(ph.tr.count * ph.ts.count * g.gk),
        K(g.gk),
        P(g.p),
        Q(g.q),
        s_count(ph.ts.count),
        ldy(g.k) {
    const int64_t m = m0 + Slot::row();
    row_ok = m < int64_t{g.n} * ph.hp * ph.wp;
    if (row_ok) {
      const Pixel px = phase_pixel(g, ph, static_cast<int>(m));
      base = int64_t{px.n} * P * Q * ldy;
      // h + pad - first * dil is a multiple of stride_h (the phase's defining property), so the
      // division is exact, negative values included.
      p_first = (px.h + g.pad_h - ph.tr.first * g.dil_h) / g.stride_h;
      q_first = (px.w + g.pad_w - ph.ts.first * g.dil_w) / g.stride_w;
    }
    if (kred_end > 0) {
      k = kred % K;
      js = (kred / K) % s_count;
      jr = kred / K / s_count;
    }
  }

  // dy offset of tap (r_index, s_index) for this row, or -1 when the tap lands outside dy.
  __device__ int64_t offset(int r_index, int s_index) const {
    const int p = p_first - r_index * dp, q = q_first - s_index * dq;
    if (!in_range(p, P) || !in_range(q, Q)) return -1;
    return base + (int64_t{p} * Q + q) * ldy;
  }

  __device__ void load(float (&v)[4]) {
    if constexpr (kVec) {  // gk % 4 == 0: the group of 4 is one tap, 4 channels
      zero4(v);
      if (row_ok && kred < kred_end) {
        const int64_t off = offset(jr, js);
        if (off >= 0) set4(v, load4(dy + off + k));
      }
    } else {
      int a = jr, b = js, kk = k;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        v[i] = 0.0f;
        if (row_ok && kred + i < kred_end) {
          const int64_t off = offset(a, b);
          if (off >= 0) v[i] = __ldg(dy + off + kk);
        }
        if (++kk == K) {
          kk = 0;
          if (++b == s_count) {
            b = 0;
            ++a;
          }
        }
      }
    }
    kred += T::BK;
    k += T::BK;
    while (k >= K) {
      k -= K;
      if (++js == s_count) {
        js = 0;
        ++jr;
      }
    }
  }
  __device__ void store(const float (&v)[4], float* smem) const {
    Slot::template store<T::AS>(v, smem);
  }
};

// B[kred][c] = w[k, r, s, c] for the kred-th (tap, k): 4 consecutive channels of one filter row.
template <class T, bool kVec>
struct FilterColLoader {
  using Slot = ColSlot<T::BN>;
  const float* w;
  int kred, kred_end;
  int jr = 0, js = 0, k = 0;
  int c, C, R, S, K;  // C, K: one group's
  Taps tr, ts;

  // w_ points at the group's first filter; n0 is group-local.
  __device__ FilterColLoader(const float* w_, const Geometry& g, const Phase& ph, int n0)
      : w(w_),
        kred(Slot::kk()),
        kred_end(ph.tr.count * ph.ts.count * g.gk),
        c(n0 + Slot::cq()),
        C(g.gc),
        R(g.r),
        S(g.s),
        K(g.gk),
        tr(ph.tr),
        ts(ph.ts) {
    if (kred_end > 0) {
      k = kred % K;
      js = (kred / K) % ts.count;
      jr = kred / K / ts.count;
    }
  }

  __device__ void load(float (&v)[4]) {
    zero4(v);
    if (kred < kred_end && c < C) {
      const int r = tr.first + jr * tr.step, s = ts.first + js * ts.step;
      const float* row = w + ((int64_t{k} * R + r) * S + s) * C;
      if constexpr (kVec) {  // C % 4 == 0: all 4 channels exist
        set4(v, load4(row + c));
      } else {
#pragma unroll
        for (int i = 0; i < 4; ++i)
          if (c + i < C) v[i] = __ldg(row + c + i);
      }
    }
    kred += T::BK;
    k += T::BK;
    while (k >= K) {
      k -= K;
      if (++js == ts.count) {
        js = 0;
        ++jr;
      }
    }
  }
  __device__ void store(const float (&v)[4], float* smem) const {
    Slot::template store<T::BS>(v, smem);
  }
};

template <class T, bool kVec>
__global__ void __launch_bounds__(kThreads, T::kMinBlocks)
    backward_data_kernel(const float* __restrict__ dy, const float* __restrict__ w, float* __restrict__ dx,
                         const __grid_constant__ Geometry g) {
  const Phase ph = make_phase(g, static_cast<int>(blockIdx.z));
  const int64_t rows = int64_t{g.n} * ph.hp * ph.wp;
  const int64_t m0 = int64_t{blockIdx.x} * T::BM;
  if (m0 >= rows) return;  // grid x covers the largest phase; the whole block leaves together
  const GroupTile gt = group_tile(g.gc, T::BN);
  const int n0 = gt.tile * T::BN;  // group-local
  GradRowLoader<T, kVec> la(dy + int64_t{gt.group} * g.gk, g, ph, m0);
  FilterColLoader<T, kVec> lb(w + int64_t{gt.group} * g.gk * g.r * g.s * g.gc, g, ph, n0);
  float acc[T::TM][T::TN];
  gemm_mainloop<T>(la, lb, ceil_div(int64_t{ph.tr.count} * ph.ts.count * g.gk, T::BK), acc);

  for_each_output<T>(acc, [&](int row, int col, const float(&v)[4]) {
    const int64_t m = m0 + row;
    const int c = n0 + col;
    if (m >= rows || c >= g.gc) return;
    const Pixel px = phase_pixel(g, ph, static_cast<int>(m));
    float* dst = dx + ((int64_t{px.n} * g.h + px.h) * g.w + px.w) * g.c + gt.group * g.gc + c;
    store_group(dst, v, g.gc - c, kVec);  // kVec: gc % 4 == 0 and dx 16-byte aligned
  });
}

template <class T, bool kVec>
void launch_backward_data(const float* dy, const float* w, float* dx, const Geometry& g, const ConvGemmPlan& plan,
                          cudaStream_t stream) {
  // Phase 0 has the most pixels: ceil(h / stride_h) * ceil(w / stride_w) per image.
  const int64_t rows = int64_t{g.n} * ceil_div(g.h, g.stride_h) * ceil_div(g.w, g.stride_w);
  const dim3 grid(static_cast<unsigned>(ceil_div(rows, T::BM)), group_tiles(plan.groups, plan.gemm_n, T::BN),
                  static_cast<unsigned>(plan.phases));
  backward_data_kernel<T, kVec><<<grid, kThreads, 0, stream>>>(dy, w, dx, g);
  CONVNET_CUDA_CHECK_LAUNCH("conv backward_data_kernel (v2)");
}

}  // namespace
}  // namespace gemm

void detail::gemm_backward_data(const float* dy, const float* w, float* dx, const ConvShape& shape,
                                const ConvGemmPlan& plan, cudaStream_t stream) {
  using namespace gemm;
  const Geometry g = make_geometry(shape);
  const bool vec = plan.vectorized && aligned16(dy) && aligned16(w) && aligned16(dx);
  if (plan.block_m == TileLarge::BM) {
    if (vec)
      launch_backward_data<TileLarge, true>(dy, w, dx, g, plan, stream);
    else
      launch_backward_data<TileLarge, false>(dy, w, dx, g, plan, stream);
  } else {
    if (vec)
      launch_backward_data<TileSmall, true>(dy, w, dx, g, plan, stream);
    else
      launch_backward_data<TileSmall, false>(dy, w, dx, g, plan, stream);
  }
}

}  // namespace convnet::cuda
