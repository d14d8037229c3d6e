// Conversions between the fp32 tensors layers keep and the bf16 operands of the v4 BF16
// convolutions (cuda/conv_tc_kernels.h) and of cuDNN / cuBLAS, for the `cuda` and `cudnn` backends
// in train.precision bf16. Rounding
// is to nearest even, bit for bit core's to_bf16_bits (core/base/precision.h) except NaN payloads.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace convnet::cuda {

// y[i] = the bf16 nearest x[i], for i < n.
void launch_to_bf16(const float* x, uint16_t* y, int64_t n, cudaStream_t stream);
// y[i] = x[i] as float (exact).
void launch_from_bf16(const uint16_t* x, float* y, int64_t n, cudaStream_t stream);
// y[i] = x[i] as float plus bias[i % channels], rounded to bf16 (to nearest even); without a
// bias (null) exactly launch_from_bf16. For outputs that cuDNN stores in bf16 before our fp32 bias.
void launch_from_bf16_add_bias(const uint16_t* x, const float* bias, int64_t channels, float* y, int64_t n,
                               cudaStream_t stream);
// y[i] = x[i] plus bias[i % channels] (bias may be null), rounded to bf16, stored as float; y may
// equal x. For fp32 GEMM outputs that are stored as bf16 values (y and dx in bf16).
void launch_round_to_bf16(const float* x, const float* bias, int64_t channels, float* y, int64_t n,
                          cudaStream_t stream);

}  // namespace convnet::cuda
