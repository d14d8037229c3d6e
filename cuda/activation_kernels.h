// Elementwise activation kernels (semantics of Backend::relu_* and gelu_*). Each launcher queues
// one grid-stride kernel on `stream` over n floats and returns; pointers are device pointers.
// Output and gradient buffers may alias the incoming gradient (dx == dy): every element is read
// before it is written by the same thread. 128-bit loads are used when every pointer is 16-byte
// aligned; n need not be a multiple of 4.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace convnet::cuda {

// y = relu(x) (core/base/activation_math.h: x < 0 ? 0 : x, so NaN propagates like the cpu backend).
void launch_relu_forward(const float* x, float* y, int64_t n, cudaStream_t stream);
// dx = relu_grad(y, dy): 0 where y <= 0, else dy; from the forward output y.
void launch_relu_backward(const float* y, const float* dy, float* dx, int64_t n, cudaStream_t stream);
// The same with y stored bf16 (train.precision bf16): relu(x) rounded to nearest even, and the
// gradient's mask read from that stored value. The 4-wide path needs x, dy, dx 16-byte and y
// 8-byte aligned.
void launch_relu_forward_bf16(const float* x, uint16_t* y, int64_t n, cudaStream_t stream);
void launch_relu_backward_bf16(const uint16_t* y, const float* dy, float* dx, int64_t n, cudaStream_t stream);
// y = 0.5 x (1 + erf(x / sqrt 2)) (exact GELU).
void launch_gelu_forward(const float* x, float* y, int64_t n, cudaStream_t stream);
// dx = dy (Phi(x) + x phi(x)) with Phi = 0.5 (1 + erf(x / sqrt 2)), phi = exp(-x^2 / 2) / sqrt(2 pi).
void launch_gelu_backward(const float* x, const float* dy, float* dx, int64_t n, cudaStream_t stream);

}  // namespace convnet::cuda
