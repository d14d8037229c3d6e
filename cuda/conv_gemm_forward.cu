// v2 forward convolution as an implicit GEMM: y[m = (n, p, q)][k] = sum over (r, s, c) of
// x[n, p*stride - pad + r*dil, q*stride - pad + s*dil, c] * w[k][(r, s, c)] (+ bias[k]).
// The reduction index runs (r, s, c) with c fastest, so a group of 4 is a contiguous run of
// channels at one filter tap (one 128-bit load when c % 4 == 0), and it matches the KRSC filter
// layout, making the filter operand a dense row-major matrix [k][r*s*c].
// Groups: one GEMM per group (grid y = group x column tile) over the group's gc input channels
// (kred = (r, s, c) with c < gc, at x channel group * gc + c) and its gk filters.
#include "cuda/check.h"
#include "cuda/conv_gemm_common.cuh"

namespace convnet::cuda {
namespace gemm {
namespace {

// A[m][kred]: the im2col row of output pixel m, built on the fly.
template <class T, bool kVec>
struct ImageRowLoader {
  using Slot = RowSlot<T::BK>;
  const float* x;
  int64_t base = 0;  // x offset of image n
  int h0 = 0, w0 = 0;
  bool row_ok = false;
  int kred, kred_end;
  int r = 0, s = 0, c = 0;  // kred = (r * S + s) * C + c
  int H, W, C, S, dil_h, dil_w;
  int ldx;  // x's row stride: all channels

  // x_ points at the group's first channel.
  __device__ ImageRowLoader(const float* x_, const Geometry& g, int64_t m0)
      : x(x_),
        kred(Slot::kq()),
        kred_end(g.r * g.s * g.gc),
        H(g.h),
        W(g.w),
        C(g.gc),
        S(g.s),
        dil_h(g.dil_h),
        dil_w(g.dil_w),
        ldx(g.c) {
    const int64_t m = m0 + Slot::row();
    row_ok = m < int64_t{g.n} * g.p * g.q;
    if (row_ok) {
      const int mi = static_cast<int>(m);
      const int q = mi % g.q, t = mi / g.q;
      const int p = t % g.p, n = t / g.p;
      base = int64_t{n} * H * W * ldx;
      h0 = p * g.stride_h - g.pad_h;
      w0 = q * g.stride_w - g.pad_w;
    }
    c = kred % C;
    s = (kred / C) % S;
    r = kred / C / S;
  }

  __device__ float at(int rr, int ss, int cc) const {
    const int h = h0 + rr * dil_h, w = w0 + ss * dil_w;
    return in_range(h, H) && in_range(w, W) ? __ldg(x + base + (int64_t{h} * W + w) * ldx + cc) : 0.0f;
  }

  __device__ void load(float (&v)[4]) {
    if constexpr (kVec) {
      zero4(v);
      const int h = h0 + r * dil_h, w = w0 + s * dil_w;
      if (row_ok && kred < kred_end && in_range(h, H) && in_range(w, W))
        set4(v, load4(x + base + (int64_t{h} * W + w) * ldx + c));
    } else {
      int rr = r, ss = s, cc = c;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        v[i] = row_ok && kred + i < kred_end ? at(rr, ss, cc) : 0.0f;
        if (++cc == C) {
          cc = 0;
          if (++ss == S) {
            ss = 0;
            ++rr;
          }
        }
      }
    }
    kred += T::BK;
    c += T::BK;
    while (c >= C) {
      c -= C;
      if (++s == S) {
        s = 0;
        ++r;
      }
    }
  }
  __device__ void store(const float (&v)[4], float* smem) const {
    Slot::template store<T::AS>(v, smem);
  }
};

// B[kred][k] = w[k][kred]: a dense row-major matrix read along its rows.
template <class T, bool kVec>
struct FilterRowLoader {
  using Slot = RowSlot<T::BK>;
  const float* row_ptr = nullptr;
  bool row_ok;
  int kred, kred_end;

  // w points at the group's first filter; n0 is group-local.
  __device__ FilterRowLoader(const float* w, const Geometry& g, int n0) : kred(Slot::kq()), kred_end(g.r * g.s * g.gc) {
    const int k = n0 + Slot::row();
    row_ok = k < g.gk;
    if (row_ok) row_ptr = w + int64_t{k} * kred_end;
  }
  __device__ void load(float (&v)[4]) {
    if constexpr (kVec) {  // kred_end % 4 == 0, so a group is all in or all out
      zero4(v);
      if (row_ok && kred < kred_end) set4(v, load4(row_ptr + kred));
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i) v[i] = row_ok && kred + i < kred_end ? __ldg(row_ptr + kred + i) : 0.0f;
    }
    kred += T::BK;
  }
  __device__ void store(const float (&v)[4], float* smem) const {
    Slot::template store<T::BS>(v, smem);
  }
};

template <class T, bool kVec>
__global__ void __launch_bounds__(kThreads, T::kMinBlocks)
    forward_kernel(const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ bias,
                   float* __restrict__ y, const __grid_constant__ Geometry g) {
  const int64_t m0 = int64_t{blockIdx.x} * T::BM;
  const GroupTile gt = group_tile(g.gk, T::BN);
  const int n0 = gt.tile * T::BN;       // group-local
  const int k_first = gt.group * g.gk;  // the group's first output channel
  ImageRowLoader<T, kVec> la(x + int64_t{gt.group} * g.gc, g, m0);
  FilterRowLoader<T, kVec> lb(w + int64_t{k_first} * g.r * g.s * g.gc, g, n0);
  float acc[T::TM][T::TN];
  gemm_mainloop<T>(la, lb, ceil_div(int64_t{g.r} * g.s * g.gc, T::BK), acc);

  const int64_t rows = int64_t{g.n} * g.p * g.q;
  const bool vec_store = kVec && g.gk % 4 == 0;  // y rows and the group's channels start 16-byte aligned
  for_each_output<T>(acc, [&](int row, int col, const float(&v)[4]) {
    const int64_t m = m0 + row;
    const int kl = n0 + col;
    if (m >= rows || kl >= g.gk) return;
    const int k = k_first + kl;
    float out[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) out[j] = v[j] + (bias != nullptr && kl + j < g.gk ? __ldg(bias + k + j) : 0.0f);
    store_group(y + m * g.k + k, out, g.gk - kl, vec_store);
  });
}

template <class T, bool kVec>
void launch_forward(const float* x, const float* w, const float* bias, float* y, const Geometry& g,
                    const ConvGemmPlan& plan, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(ceil_div(plan.gemm_m, T::BM)), group_tiles(plan.groups, plan.gemm_n, T::BN));
  forward_kernel<T, kVec><<<grid, kThreads, 0, stream>>>(x, w, bias, y, g);
  CONVNET_CUDA_CHECK_LAUNCH("conv forward_kernel (v2)");
}

}  // namespace
}  // namespace gemm

void detail::gemm_forward(const float* x, const float* w, const float* bias, float* y, const ConvShape& shape,
                          const ConvGemmPlan& plan, cudaStream_t stream) {
  using namespace gemm;
  const Geometry g = make_geometry(shape);
  const bool vec = plan.vectorized && aligned16(x) && aligned16(w) && aligned16(y);
  if (plan.block_m == TileLarge::BM) {
    if (vec)
      launch_forward<TileLarge, true>(x, w, bias, y, g, plan, stream);
    else
      launch_forward<TileLarge, false>(x, w, bias, y, g, plan, stream);
  } else {
    if (vec)
      launch_forward<TileSmall, true>(x, w, bias, y, g, plan, stream);
    else
      launch_forward<TileSmall, false>(x, w, bias, y, g, plan, stream);
  }
}

}  // namespace convnet::cuda
