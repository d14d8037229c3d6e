// Max and average 2-D pooling kernels on NHWC tensors (semantics of Backend::*_pool2d_*, the same
// as core/cpu/pool.cpp bit for bit: same tap order, same comparisons, same summation order).
//
// Forward: one thread per output element (image, p, q, channel group). Backward is a gather: one
// thread per input element loops over the output windows that cover it in a fixed order, so
// overlapping windows need no atomics and results are deterministic. When C % 4 == 0 and every
// pointer is 16-byte aligned, a thread handles 4 consecutive channels with 128-bit loads.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/base/op_checks.h"

namespace convnet::cuda {

// Every launcher takes a PoolGeometry validated by OpChecks (core/base/op_checks.h): x [n, h, w, c]
// pooled to [n, p, q, c], kernel and stride >= 1, 0 <= pad < kernel per axis (so every window
// holds a real input element).

// y = window maximum; argmax = window-local index r * kernel_w + s of the first maximum in scan
// order (a NaN wins over numbers, the first NaN is kept); padding never wins.
void launch_max_pool2d_forward(const float* x, float* y, int32_t* argmax, const PoolGeometry& shape,
                               cudaStream_t stream);
// dx [n, h, w, c] = sum of dy over the windows whose argmax is this input element.
void launch_max_pool2d_backward(const float* dy, const int32_t* argmax, float* dx, const PoolGeometry& shape,
                                cudaStream_t stream);
// y = sum of the window's real inputs / (kernel_h * kernel_w) (padding counts as zeros).
void launch_avg_pool2d_forward(const float* x, float* y, const PoolGeometry& shape, cudaStream_t stream);
// dx = sum of dy over the windows covering the element, times 1 / (kernel_h * kernel_w).
void launch_avg_pool2d_backward(const float* dy, float* dx, const PoolGeometry& shape, cudaStream_t stream);

}  // namespace convnet::cuda
