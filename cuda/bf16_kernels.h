// Conversions between the fp32 tensors layers keep and the bf16 operands of the v4 BF16
// convolutions (cuda/conv_tc_kernels.h), for the `cuda` backend in train.precision bf16. Rounding
// is to nearest even, bit for bit core's to_bf16_bits (core/base/precision.h) except NaN payloads.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace convnet::cuda {

// y[i] = the bf16 nearest x[i], for i < n.
void launch_to_bf16(const float* x, uint16_t* y, int64_t n, cudaStream_t stream);
// y[i] = x[i] as float (exact).
void launch_from_bf16(const uint16_t* x, float* y, int64_t n, cudaStream_t stream);

}  // namespace convnet::cuda
