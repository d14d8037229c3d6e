// Elementwise activation kernels (semantics of Backend::relu_* and gelu_*). Each launcher queues
// one grid-stride kernel on `stream` over n floats and returns; pointers are device pointers.
// Output and gradient buffers may alias the incoming gradient (dx == dy): every element is read
// before it is written by the same thread. 128-bit loads are used when every pointer is 16-byte
// aligned; n need not be a multiple of 4.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace convnet::cuda {

// y = max(x, 0) (x > 0 ? x : 0, so NaN maps to 0 like the cpu backend).
void launch_relu_forward(const float* x, float* y, int64_t n, cudaStream_t stream);
// dx = y > 0 ? dy : 0, from the forward output y.
void launch_relu_backward(const float* y, const float* dy, float* dx, int64_t n, cudaStream_t stream);
// y = 0.5 x (1 + erf(x / sqrt 2)) (exact GELU).
void launch_gelu_forward(const float* x, float* y, int64_t n, cudaStream_t stream);
// dx = dy (Phi(x) + x phi(x)) with Phi = 0.5 (1 + erf(x / sqrt 2)), phi = exp(-x^2 / 2) / sqrt(2 pi).
void launch_gelu_backward(const float* x, const float* dy, float* dx, int64_t n, cudaStream_t stream);

}  // namespace convnet::cuda
