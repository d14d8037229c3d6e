// The max-pooling argmax for the cudnn backend. cuDNN's max pooling returns only y, while
// Backend::max_pool2d_forward must also return the window-local index of each maximum (which
// max_pool2d_backward routes the gradient with); cuDNN's own max-pool backward would need x and y
// instead, and the cuDNN documentation lists it as non-deterministic (atomics).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "cuda/pool_kernels.h"

namespace convnet::cuda {

// argmax [n, p, q, c] = window-local index r * kernel_w + s of the first maximum of each window of
// x [n, h, w, c] in scan order (a NaN wins over numbers and the first NaN is kept; padding never
// wins), the convention of core/cpu/pool.cpp. Same preconditions as pool_kernels.h.
// Queued on `stream`; throws convnet::Error when the launch fails.
void launch_max_pool2d_argmax(const float* x, int32_t* argmax, const PoolGeometry& shape, cudaStream_t stream);

}  // namespace convnet::cuda
