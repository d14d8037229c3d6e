#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "cuda/check.h"
#include "cuda/grid_stride.h"
#include "cuda/pool_kernels.h"

namespace convnet::cuda {

namespace {

// Vec consecutive channels: one 128-bit access when Vec == 4 (the caller guarantees alignment).
template <int Vec, class T>
__device__ void load(const T* p, T (&v)[Vec]) {
  if constexpr (Vec == 4) {
    using T4 = std::conditional_t<std::is_same_v<T, float>, float4, int4>;
    const T4 t = *reinterpret_cast<const T4*>(p);
    v[0] = t.x, v[1] = t.y, v[2] = t.z, v[3] = t.w;
  } else {
    for (int k = 0; k < Vec; ++k) v[k] = p[k];
  }
}
template <int Vec, class T>
__device__ void store(T* p, const T (&v)[Vec]) {
  if constexpr (Vec == 4) {
    using T4 = std::conditional_t<std::is_same_v<T, float>, float4, int4>;
    *reinterpret_cast<T4*>(p) = T4{v[0], v[1], v[2], v[3]};
  } else {
    for (int k = 0; k < Vec; ++k) p[k] = v[k];
  }
}

// The taps of one output window that lie inside the input: rows [r_lo, r_hi) x cols [s_lo, s_hi)
// of the kernel; tap (r, s) reads input cell origin + r * w + s (origin, the cell of tap (0, 0),
// may lie in the padding).
struct Window {
  int64_t origin, r_lo, r_hi, s_lo, s_hi;
};
__device__ Window window_of(const PoolGeometry& g, int64_t out_cell) {
  const Pool2dParams& pr = g.params;
  const int64_t oq = out_cell % g.q;
  const int64_t rest = out_cell / g.q;
  const int64_t op = rest % g.p;
  const int64_t img = rest / g.p;
  const int64_t h0 = op * pr.stride_h - pr.pad_h;
  const int64_t w0 = oq * pr.stride_w - pr.pad_w;
  return {(img * g.h + h0) * g.w + w0, max(int64_t{0}, -h0), min(int64_t{pr.kernel_h}, g.h - h0), max(int64_t{0}, -w0),
          min(int64_t{pr.kernel_w}, g.w - w0)};
}

// Output positions [lo, hi] (inclusive; empty when hi < lo) whose window covers input index i.
struct Covering {
  int64_t lo, hi;
};
__device__ Covering windows_covering(int64_t i, int64_t kernel, int64_t stride, int64_t pad, int64_t out) {
  const int64_t first = i + pad - kernel + 1;
  return {first <= 0 ? 0 : (first + stride - 1) / stride, min(out - 1, (i + pad) / stride)};
}

// The input element a backward thread owns, and the windows covering it.
struct InputCell {
  int64_t img, ih, iw;
  Covering oh, oq;
};
__device__ InputCell input_cell(const PoolGeometry& g, int64_t cell) {
  const Pool2dParams& pr = g.params;
  const int64_t iw = cell % g.w;
  const int64_t rest = cell / g.w;
  const int64_t ih = rest % g.h;
  const int64_t img = rest / g.h;
  return {img, ih, iw, windows_covering(ih, pr.kernel_h, pr.stride_h, pr.pad_h, g.p),
          windows_covering(iw, pr.kernel_w, pr.stride_w, pr.pad_w, g.q)};
}

template <int Vec>
__global__ void __launch_bounds__(kThreads) max_pool_forward_kernel(const float* __restrict__ x, float* __restrict__ y,
                                                                    int32_t* __restrict__ argmax, PoolGeometry g) {
  const int64_t groups = g.c / Vec;
  const int64_t total = g.n * g.p * g.q * groups;
  for (int64_t i = thread_index(); i < total; i += grid_stride()) {
    const int64_t c = (i % groups) * Vec;
    const Window win = window_of(g, i / groups);
    // Start from the first real tap (padding never wins); comparing it with itself again below
    // changes nothing, since neither > nor the NaN rule fires for equal values.
    float best[Vec];
    int32_t idx[Vec];
    load<Vec>(x + (win.origin + win.r_lo * g.w + win.s_lo) * g.c + c, best);
    for (int k = 0; k < Vec; ++k) idx[k] = static_cast<int32_t>(win.r_lo * g.params.kernel_w + win.s_lo);
    for (int64_t r = win.r_lo; r < win.r_hi; ++r) {
      for (int64_t s = win.s_lo; s < win.s_hi; ++s) {
        float v[Vec];
        load<Vec>(x + (win.origin + r * g.w + s) * g.c + c, v);
        const auto local = static_cast<int32_t>(r * g.params.kernel_w + s);
        for (int k = 0; k < Vec; ++k) {
          // Strictly greater keeps the first maximum; a NaN replaces a number (core/cpu/pool.cpp).
          const bool take = (v[k] > best[k]) | ((v[k] != v[k]) & (best[k] == best[k]));
          best[k] = take ? v[k] : best[k];
          idx[k] = take ? local : idx[k];
        }
      }
    }
    store<Vec>(y + i * Vec, best);
    store<Vec>(argmax + i * Vec, idx);
  }
}

template <int Vec>
__global__ void __launch_bounds__(kThreads)
    max_pool_backward_kernel(const float* __restrict__ dy, const int32_t* __restrict__ argmax, float* __restrict__ dx,
                             PoolGeometry g) {
  const Pool2dParams pr = g.params;
  const int64_t groups = g.c / Vec;
  const int64_t total = g.n * g.h * g.w * groups;
  for (int64_t i = thread_index(); i < total; i += grid_stride()) {
    const int64_t c = (i % groups) * Vec;
    const InputCell in = input_cell(g, i / groups);
    float acc[Vec];
    for (int k = 0; k < Vec; ++k) acc[k] = 0.0f;
    for (int64_t oh = in.oh.lo; oh <= in.oh.hi; ++oh) {
      const int64_t r = in.ih + pr.pad_h - oh * pr.stride_h;
      for (int64_t oq = in.oq.lo; oq <= in.oq.hi; ++oq) {
        const int64_t s = in.iw + pr.pad_w - oq * pr.stride_w;
        const auto local = static_cast<int32_t>(r * pr.kernel_w + s);
        const int64_t out = ((in.img * g.p + oh) * g.q + oq) * g.c + c;
        float d[Vec];
        int32_t a[Vec];
        load<Vec>(dy + out, d);
        load<Vec>(argmax + out, a);
        for (int k = 0; k < Vec; ++k) acc[k] += a[k] == local ? d[k] : 0.0f;
      }
    }
    store<Vec>(dx + i * Vec, acc);
  }
}

template <int Vec>
__global__ void __launch_bounds__(kThreads)
    avg_pool_forward_kernel(const float* __restrict__ x, float* __restrict__ y, PoolGeometry g, float factor) {
  const int64_t groups = g.c / Vec;
  const int64_t total = g.n * g.p * g.q * groups;
  for (int64_t i = thread_index(); i < total; i += grid_stride()) {
    const int64_t c = (i % groups) * Vec;
    const Window win = window_of(g, i / groups);
    float acc[Vec];
    for (int k = 0; k < Vec; ++k) acc[k] = 0.0f;
    for (int64_t r = win.r_lo; r < win.r_hi; ++r) {
      for (int64_t s = win.s_lo; s < win.s_hi; ++s) {
        float v[Vec];
        load<Vec>(x + (win.origin + r * g.w + s) * g.c + c, v);
        for (int k = 0; k < Vec; ++k) acc[k] += v[k];
      }
    }
    for (int k = 0; k < Vec; ++k) acc[k] *= factor;
    store<Vec>(y + i * Vec, acc);
  }
}

template <int Vec>
__global__ void __launch_bounds__(kThreads)
    avg_pool_backward_kernel(const float* __restrict__ dy, float* __restrict__ dx, PoolGeometry g, float factor) {
  const int64_t groups = g.c / Vec;
  const int64_t total = g.n * g.h * g.w * groups;
  for (int64_t i = thread_index(); i < total; i += grid_stride()) {
    const int64_t c = (i % groups) * Vec;
    const InputCell in = input_cell(g, i / groups);
    float acc[Vec];
    for (int k = 0; k < Vec; ++k) acc[k] = 0.0f;
    for (int64_t oh = in.oh.lo; oh <= in.oh.hi; ++oh) {
      for (int64_t oq = in.oq.lo; oq <= in.oq.hi; ++oq) {
        float d[Vec];
        load<Vec>(dy + ((in.img * g.p + oh) * g.q + oq) * g.c + c, d);
        for (int k = 0; k < Vec; ++k) acc[k] += d[k];
      }
    }
    for (int k = 0; k < Vec; ++k) acc[k] *= factor;
    store<Vec>(dx + i * Vec, acc);
  }
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// 4 channels per thread when C allows it and every pointer is 16-byte aligned.
template <class... Ptrs>
bool use_vec4(const PoolGeometry& g, const Ptrs*... ptrs) {
  return g.c % 4 == 0 && (aligned16(ptrs) && ...);
}

// Calls launch(vec, blocks) for a grid-stride kernel over `elements` values: vec is
// std::integral_constant<int, 4> (a thread per 4 channels) when `vec4`, else <int, 1>; then checks
// the launch of `kernel`. Launches nothing for no elements.
template <class Launch>
void launch_by_width(int64_t elements, bool vec4, const char* kernel, Launch&& launch) {
  if (elements == 0) return;
  if (vec4)
    launch(std::integral_constant<int, 4>{}, grid_blocks(elements / 4));
  else
    launch(std::integral_constant<int, 1>{}, grid_blocks(elements));
  CONVNET_CUDA_CHECK_LAUNCH(kernel);
}

// Padding counts towards the window size (count_include_pad), the same float as the cpu backend.
float average_factor(const Pool2dParams& pr) {
  return 1.0f / static_cast<float>(pr.kernel_h * pr.kernel_w);
}

}  // namespace

void launch_max_pool2d_forward(const float* x, float* y, int32_t* argmax, const PoolGeometry& g, cudaStream_t stream) {
  launch_by_width(g.n * g.p * g.q * g.c, use_vec4(g, x, y, argmax), "max_pool_forward_kernel",
                  [&](auto vec, unsigned blocks) {
                    max_pool_forward_kernel<decltype(vec)::value><<<blocks, kThreads, 0, stream>>>(x, y, argmax, g);
                  });
}

void launch_max_pool2d_backward(const float* dy, const int32_t* argmax, float* dx, const PoolGeometry& g,
                                cudaStream_t stream) {
  launch_by_width(g.n * g.h * g.w * g.c, use_vec4(g, dy, argmax, dx), "max_pool_backward_kernel",
                  [&](auto vec, unsigned blocks) {
                    max_pool_backward_kernel<decltype(vec)::value><<<blocks, kThreads, 0, stream>>>(dy, argmax, dx, g);
                  });
}

void launch_avg_pool2d_forward(const float* x, float* y, const PoolGeometry& g, cudaStream_t stream) {
  const float factor = average_factor(g.params);
  launch_by_width(g.n * g.p * g.q * g.c, use_vec4(g, x, y), "avg_pool_forward_kernel", [&](auto vec, unsigned blocks) {
    avg_pool_forward_kernel<decltype(vec)::value><<<blocks, kThreads, 0, stream>>>(x, y, g, factor);
  });
}

void launch_avg_pool2d_backward(const float* dy, float* dx, const PoolGeometry& g, cudaStream_t stream) {
  const float factor = average_factor(g.params);
  launch_by_width(g.n * g.h * g.w * g.c, use_vec4(g, dy, dx), "avg_pool_backward_kernel",
                  [&](auto vec, unsigned blocks) {
                    avg_pool_backward_kernel<decltype(vec)::value><<<blocks, kThreads, 0, stream>>>(dy, dx, g, factor);
                  });
}

}  // namespace convnet::cuda
