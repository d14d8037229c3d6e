#include <algorithm>
#include <cstdint>
#include <numbers>

#include "core/base/activation_math.h"
#include "cuda/activation_kernels.h"
#include "cuda/check.h"
#include "cuda/grid_stride.h"
#include "cuda/ptx.cuh"

namespace convnet::cuda {

namespace {

constexpr auto kInvSqrt2 = static_cast<float>(1.0 / std::numbers::sqrt2);
constexpr auto kInvSqrt2Pi = static_cast<float>(std::numbers::inv_sqrtpi / std::numbers::sqrt2);

// The per-element formulas, identical to core/cpu/activation.cpp.
struct Relu {
  __device__ float operator()(float x) const { return relu(x); }
};
struct ReluGrad {  // (y, dy)
  __device__ float operator()(float y, float dy) const { return relu_grad(y, dy); }
};
struct Gelu {
  __device__ float operator()(float x) const { return 0.5f * x * (1.0f + erff(x * kInvSqrt2)); }
};
struct GeluGrad {  // (x, dy)
  __device__ float operator()(float x, float dy) const {
    const float cdf = 0.5f * (1.0f + erff(x * kInvSqrt2));
    const float pdf = kInvSqrt2Pi * expf(-0.5f * x * x);
    return dy * (cdf + x * pdf);
  }
};

// out = f(a) for n elements; the first `vectors` groups of 4 go through float4 (0 when a pointer
// is misaligned), the remaining elements one by one. No __restrict__: out may alias a.
template <class F>
__global__ void __launch_bounds__(kThreads) map1_kernel(const float* a, float* out, int64_t n, int64_t vectors, F f) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t v = tid; v < vectors; v += stride) {
    const float4 x = reinterpret_cast<const float4*>(a)[v];
    reinterpret_cast<float4*>(out)[v] = make_float4(f(x.x), f(x.y), f(x.z), f(x.w));
  }
  for (int64_t i = 4 * vectors + tid; i < n; i += stride) out[i] = f(a[i]);
}

// out = f(a, b), same scheme as map1_kernel; out may alias a or b.
template <class F>
__global__ void __launch_bounds__(kThreads)
    map2_kernel(const float* a, const float* b, float* out, int64_t n, int64_t vectors, F f) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t v = tid; v < vectors; v += stride) {
    const float4 x = reinterpret_cast<const float4*>(a)[v];
    const float4 y = reinterpret_cast<const float4*>(b)[v];
    reinterpret_cast<float4*>(out)[v] = make_float4(f(x.x, y.x), f(x.y, y.y), f(x.z, y.z), f(x.w, y.w));
  }
  for (int64_t i = 4 * vectors + tid; i < n; i += stride) out[i] = f(a[i], b[i]);
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

template <class F>
void map1(const float* a, float* out, int64_t n, F f, cudaStream_t stream, const char* name) {
  if (n <= 0) return;
  const int64_t vectors = aligned16(a) && aligned16(out) ? n / 4 : 0;
  map1_kernel<<<grid_blocks(std::max(vectors, n - 4 * vectors)), kThreads, 0, stream>>>(a, out, n, vectors, f);
  CONVNET_CUDA_CHECK_LAUNCH(name);
}

template <class F>
void map2(const float* a, const float* b, float* out, int64_t n, F f, cudaStream_t stream, const char* name) {
  if (n <= 0) return;
  const int64_t vectors = aligned16(a) && aligned16(b) && aligned16(out) ? n / 4 : 0;
  map2_kernel<<<grid_blocks(std::max(vectors, n - 4 * vectors)), kThreads, 0, stream>>>(a, b, out, n, vectors, f);
  CONVNET_CUDA_CHECK_LAUNCH(name);
}

// y = relu(x) stored bf16. A vector is 4 elements: a float4 of x, two packed bf16 pairs of y.
__global__ void __launch_bounds__(kThreads)
    relu_forward_bf16_kernel(const float* __restrict__ x, uint16_t* __restrict__ y, int64_t n, int64_t vectors) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t v = tid; v < vectors; v += stride) {
    const float4 a = reinterpret_cast<const float4*>(x)[v];
    uint32_t* out = reinterpret_cast<uint32_t*>(y + 4 * v);
    out[0] = ptx::pack_bf16x2(relu(a.x), relu(a.y));
    out[1] = ptx::pack_bf16x2(relu(a.z), relu(a.w));
  }
  for (int64_t i = 4 * vectors + tid; i < n; i += stride) y[i] = ptx::to_bf16(relu(x[i]));
}

// dx = relu_grad(y, dy) from a bf16 y; same vectors. dx may alias dy: no __restrict__ on them.
__global__ void __launch_bounds__(kThreads)
    relu_backward_bf16_kernel(const uint16_t* __restrict__ y, const float* dy, float* dx, int64_t n, int64_t vectors) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const auto low = [](uint32_t pair) { return ptx::from_bf16(static_cast<uint16_t>(pair)); };
  const auto high = [](uint32_t pair) { return ptx::from_bf16(static_cast<uint16_t>(pair >> 16)); };
  for (int64_t v = tid; v < vectors; v += stride) {
    const uint32_t* in = reinterpret_cast<const uint32_t*>(y + 4 * v);
    const uint32_t ab = in[0], cd = in[1];
    const float4 g = reinterpret_cast<const float4*>(dy)[v];
    reinterpret_cast<float4*>(dx)[v] = make_float4(relu_grad(low(ab), g.x), relu_grad(high(ab), g.y),
                                                   relu_grad(low(cd), g.z), relu_grad(high(cd), g.w));
  }
  for (int64_t i = 4 * vectors + tid; i < n; i += stride) dx[i] = relu_grad(ptx::from_bf16(y[i]), dy[i]);
}

}  // namespace

void launch_relu_forward(const float* x, float* y, int64_t n, cudaStream_t stream) {
  map1(x, y, n, Relu{}, stream, "relu_forward_kernel");
}

void launch_relu_backward(const float* y, const float* dy, float* dx, int64_t n, cudaStream_t stream) {
  map2(y, dy, dx, n, ReluGrad{}, stream, "relu_backward_kernel");
}

void launch_relu_forward_bf16(const float* x, uint16_t* y, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  const int64_t vectors = aligned16(x) && reinterpret_cast<uintptr_t>(y) % 8 == 0 ? n / 4 : 0;
  relu_forward_bf16_kernel<<<grid_blocks(std::max(vectors, n - 4 * vectors)), kThreads, 0, stream>>>(x, y, n, vectors);
  CONVNET_CUDA_CHECK_LAUNCH("relu_forward_bf16_kernel");
}

void launch_relu_backward_bf16(const uint16_t* y, const float* dy, float* dx, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  const int64_t vectors = reinterpret_cast<uintptr_t>(y) % 8 == 0 && aligned16(dy) && aligned16(dx) ? n / 4 : 0;
  relu_backward_bf16_kernel<<<grid_blocks(std::max(vectors, n - 4 * vectors)), kThreads, 0, stream>>>(y, dy, dx, n,
                                                                                                      vectors);
  CONVNET_CUDA_CHECK_LAUNCH("relu_backward_bf16_kernel");
}

void launch_gelu_forward(const float* x, float* y, int64_t n, cudaStream_t stream) {
  map1(x, y, n, Gelu{}, stream, "gelu_forward_kernel");
}

void launch_gelu_backward(const float* x, const float* dy, float* dx, int64_t n, cudaStream_t stream) {
  map2(x, dy, dx, n, GeluGrad{}, stream, "gelu_backward_kernel");
}

}  // namespace convnet::cuda
