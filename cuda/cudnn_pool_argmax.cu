#include <algorithm>

#include "cuda/check.h"
#include "cuda/cudnn_pool_argmax.h"

namespace convnet::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 8192;  // grid-stride loops cover larger outputs

// One thread per output element, channels innermost so neighbouring threads read neighbouring
// channels. Scans the window's taps inside the input row by row, as the cpu backend does.
__global__ void __launch_bounds__(kThreads)
    max_pool_argmax_kernel(const float* __restrict__ x, int32_t* __restrict__ argmax, PoolGeometry s, int64_t total) {
  const Pool2dParams pr = s.params;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const int64_t c = i % s.c;
    int64_t rest = i / s.c;
    const int64_t q = rest % s.q;
    rest /= s.q;
    const int64_t p = rest % s.p;
    const int64_t img = rest / s.p;
    const int64_t h0 = p * pr.stride_h - pr.pad_h;
    const int64_t w0 = q * pr.stride_w - pr.pad_w;
    const int64_t r_lo = h0 < 0 ? -h0 : 0, r_hi = min(static_cast<int64_t>(pr.kernel_h), s.h - h0);
    const int64_t s_lo = w0 < 0 ? -w0 : 0, s_hi = min(static_cast<int64_t>(pr.kernel_w), s.w - w0);
    float best = 0.0f;
    int32_t best_index = 0;
    bool first = true;
    for (int64_t r = r_lo; r < r_hi; ++r) {
      const float* row = x + ((img * s.h + h0 + r) * s.w + w0) * s.c + c;
      for (int64_t t = s_lo; t < s_hi; ++t) {
        const float v = row[t * s.c];
        // Strictly greater keeps the first maximum; a NaN replaces any number, then stays.
        if (first || v > best || (v != v && best == best)) {
          best = v;
          best_index = static_cast<int32_t>(r * pr.kernel_w + t);
          first = false;
        }
      }
    }
    argmax[i] = best_index;
  }
}

}  // namespace

void launch_max_pool2d_argmax(const float* x, int32_t* argmax, const PoolGeometry& shape, cudaStream_t stream) {
  const int64_t total = shape.n * shape.p * shape.q * shape.c;
  if (total <= 0) return;
  const auto blocks = static_cast<unsigned>(std::clamp<int64_t>((total + kThreads - 1) / kThreads, 1, kMaxBlocks));
  max_pool_argmax_kernel<<<blocks, kThreads, 0, stream>>>(x, argmax, shape, total);
  CONVNET_CUDA_CHECK_LAUNCH("max_pool_argmax_kernel");
}

}  // namespace convnet::cuda
