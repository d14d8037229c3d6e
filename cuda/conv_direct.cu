// v0 direct convolution: one thread per output element of each pass, straight from the
// definitions, summing in a fixed order in double precision (then rounded once to float). Slow and
// obviously correct: the oracle the harness checks v2 against on shapes too large for the CPU.
// Groups: an output channel k sums over the gc input channels of its group k / gk, and an input
// channel c over the gk output channels of its group c / gc; filters are [k][r][s][gc].
#include <algorithm>

#include "cuda/check.h"
#include "cuda/conv_gemm_common.cuh"

namespace convnet::cuda {
namespace {

using gemm::Geometry;

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1 << 20;  // the grid-stride loops cover the rest

unsigned blocks_for(int64_t count) {
  return static_cast<unsigned>(std::clamp<int64_t>(gemm::ceil_div(count, kThreads), 1, kMaxBlocks));
}

// y[n, p, q, k] = sum over r, s and the group's c of x[n, h, w, c] * w[k, r, s, c - group * gc] (+ bias[k]).
__global__ void direct_forward_kernel(const float* __restrict__ x, const float* __restrict__ w,
                                      const float* __restrict__ bias, float* __restrict__ y,
                                      const __grid_constant__ Geometry g) {
  const int64_t total = int64_t{g.n} * g.p * g.q * g.k;
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < total; i += int64_t{blockDim.x} * gridDim.x) {
    const int k = static_cast<int>(i % g.k);
    int64_t t = i / g.k;
    const int q = static_cast<int>(t % g.q);
    t /= g.q;
    const int p = static_cast<int>(t % g.p);
    const int n = static_cast<int>(t / g.p);
    double sum = 0.0;
    for (int r = 0; r < g.r; ++r) {
      const int h = p * g.stride_h - g.pad_h + r * g.dil_h;
      if (h < 0 || h >= g.h) continue;
      for (int s = 0; s < g.s; ++s) {
        const int wi = q * g.stride_w - g.pad_w + s * g.dil_w;
        if (wi < 0 || wi >= g.w) continue;
        const float* xp = x + ((int64_t{n} * g.h + h) * g.w + wi) * g.c + k / g.gk * g.gc;
        const float* wp = w + ((int64_t{k} * g.r + r) * g.s + s) * g.gc;
        for (int c = 0; c < g.gc; ++c) sum += static_cast<double>(xp[c]) * static_cast<double>(wp[c]);
      }
    }
    if (bias != nullptr) sum += static_cast<double>(bias[k]);
    y[i] = static_cast<float>(sum);
  }
}

// dx[n, h, w, c] = sum over the taps (r, s) that reach it from an output (p, q) and over the
// group's k of dy[n, p, q, k] * w[k, r, s, c - group * gc], where h + pad - r*dil = p*stride.
__global__ void direct_backward_data_kernel(const float* __restrict__ dy, const float* __restrict__ w,
                                            float* __restrict__ dx, const __grid_constant__ Geometry g) {
  const int64_t total = int64_t{g.n} * g.h * g.w * g.c;
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < total; i += int64_t{blockDim.x} * gridDim.x) {
    const int c = static_cast<int>(i % g.c);
    int64_t t = i / g.c;
    const int wi = static_cast<int>(t % g.w);
    t /= g.w;
    const int h = static_cast<int>(t % g.h);
    const int n = static_cast<int>(t / g.h);
    const int k0 = c / g.gc * g.gk, cg = c % g.gc;  // the group's first k; c within the group
    double sum = 0.0;
    for (int r = 0; r < g.r; ++r) {
      const int pn = h + g.pad_h - r * g.dil_h;
      if (pn < 0 || pn % g.stride_h != 0 || pn / g.stride_h >= g.p) continue;
      const int p = pn / g.stride_h;
      for (int s = 0; s < g.s; ++s) {
        const int qn = wi + g.pad_w - s * g.dil_w;
        if (qn < 0 || qn % g.stride_w != 0 || qn / g.stride_w >= g.q) continue;
        const int q = qn / g.stride_w;
        const float* dyp = dy + ((int64_t{n} * g.p + p) * g.q + q) * g.k;
        for (int k = k0; k < k0 + g.gk; ++k)
          sum += static_cast<double>(dyp[k]) * static_cast<double>(w[((int64_t{k} * g.r + r) * g.s + s) * g.gc + cg]);
      }
    }
    dx[i] = static_cast<float>(sum);
  }
}

// dw[k, r, s, c] = sum over n, p, q (in that order) of dy[n, p, q, k] * x[n, h, w, group * gc + c].
__global__ void direct_backward_filter_kernel(const float* __restrict__ x, const float* __restrict__ dy,
                                              float* __restrict__ dw, const __grid_constant__ Geometry g) {
  const int64_t total = int64_t{g.k} * g.r * g.s * g.gc;
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < total; i += int64_t{blockDim.x} * gridDim.x) {
    const int cg = static_cast<int>(i % g.gc);
    int64_t t = i / g.gc;
    const int s = static_cast<int>(t % g.s);
    t /= g.s;
    const int r = static_cast<int>(t % g.r);
    const int k = static_cast<int>(t / g.r);
    const int c = k / g.gk * g.gc + cg;  // the input channel
    double sum = 0.0;
    for (int n = 0; n < g.n; ++n)
      for (int p = 0; p < g.p; ++p) {
        const int h = p * g.stride_h - g.pad_h + r * g.dil_h;
        if (h < 0 || h >= g.h) continue;
        for (int q = 0; q < g.q; ++q) {
          const int wi = q * g.stride_w - g.pad_w + s * g.dil_w;
          if (wi < 0 || wi >= g.w) continue;
          sum += static_cast<double>(dy[((int64_t{n} * g.p + p) * g.q + q) * g.k + k]) *
                 static_cast<double>(x[((int64_t{n} * g.h + h) * g.w + wi) * g.c + c]);
        }
      }
    dw[i] = static_cast<float>(sum);
  }
}

// dbias[k] = sum over all rows of dy in row order.
__global__ void direct_bias_kernel(const float* __restrict__ dy, float* __restrict__ dbias, int64_t rows, int K) {
  for (int64_t k = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; k < K; k += int64_t{blockDim.x} * gridDim.x) {
    double sum = 0.0;
    for (int64_t row = 0; row < rows; ++row) sum += static_cast<double>(dy[row * K + k]);
    dbias[k] = static_cast<float>(sum);
  }
}

}  // namespace

void detail::direct_forward(const float* x, const float* w, const float* bias, float* y, const ConvShape& shape,
                            cudaStream_t stream) {
  const Geometry g = gemm::make_geometry(shape);
  direct_forward_kernel<<<blocks_for(int64_t{g.n} * g.p * g.q * g.k), kThreads, 0, stream>>>(x, w, bias, y, g);
  CONVNET_CUDA_CHECK_LAUNCH("conv direct_forward_kernel (v0)");
}

void detail::direct_backward_data(const float* dy, const float* w, float* dx, const ConvShape& shape,
                                  cudaStream_t stream) {
  const Geometry g = gemm::make_geometry(shape);
  direct_backward_data_kernel<<<blocks_for(int64_t{g.n} * g.h * g.w * g.c), kThreads, 0, stream>>>(dy, w, dx, g);
  CONVNET_CUDA_CHECK_LAUNCH("conv direct_backward_data_kernel (v0)");
}

void detail::direct_backward_filter(const float* x, const float* dy, float* dw, float* dbias, const ConvShape& shape,
                                    cudaStream_t stream) {
  const Geometry g = gemm::make_geometry(shape);
  direct_backward_filter_kernel<<<blocks_for(int64_t{g.k} * g.r * g.s * g.gc), kThreads, 0, stream>>>(x, dy, dw, g);
  CONVNET_CUDA_CHECK_LAUNCH("conv direct_backward_filter_kernel (v0)");
  if (dbias != nullptr) {
    direct_bias_kernel<<<blocks_for(g.k), kThreads, 0, stream>>>(dy, dbias, int64_t{g.n} * g.p * g.q, g.k);
    CONVNET_CUDA_CHECK_LAUNCH("conv direct_bias_kernel (v0)");
  }
}

}  // namespace convnet::cuda
