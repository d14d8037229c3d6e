// Our convolution kernels (NHWC activations, KRSC filters), in numbered versions kept side by
// side (FIELD-GUIDE §3): v0 direct, one thread per output element, the oracle; v2 tiled implicit
// GEMM with shared-memory tiles, 128-bit loads where the channel count allows, double buffering,
// and a split reduction for backward-filter summed in a fixed order. The `cuda` backend uses v2;
// the harness (cuda/harness/conv_harness.cu) validates every version and times it.
//
// All launchers queue work on `stream` and return; pointers are device pointers; outputs are
// fully overwritten; no float atomics, so results are bit-reproducible.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "core/base/backend.h"

namespace convnet::cuda {

// One convolution problem: x [n, h, w, c], w [k, r, s, c], y [n, p, q, k].
struct ConvShape {
  int n = 1, h = 1, w = 1, c = 1;
  int k = 1, r = 1, s = 1;
  int p = 1, q = 1;  // output size, from conv_output_size()
  Conv2dParams params;
  // Fills p and q from the other fields.
  static ConvShape make(int n, int h, int w, int c, int k, int r, int s, const Conv2dParams& params);
  int64_t forward_flops() const { return 2LL * n * p * q * k * r * s * c; }
};

enum class ConvVersion { v0_direct, v2_implicit_gemm };
const char* conv_version_name(ConvVersion v);  // "v0 direct", "v2 implicit GEMM"

// Device workspace bytes backward-filter needs for `shape` (split-K partial sums); 0 for v0.
size_t conv2d_backward_filter_workspace(const ConvShape& shape, ConvVersion v = ConvVersion::v2_implicit_gemm);

// y = conv(x, w) (+ bias[k] when bias != nullptr).
void conv2d_forward(const float* x, const float* w, const float* bias, float* y, const ConvShape& shape,
                    cudaStream_t stream, ConvVersion v = ConvVersion::v2_implicit_gemm);
// dx = dL/dx from dy and w.
void conv2d_backward_data(const float* dy, const float* w, float* dx, const ConvShape& shape, cudaStream_t stream,
                          ConvVersion v = ConvVersion::v2_implicit_gemm);
// dw = dL/dw from x and dy; dbias[k] = sum of dy over n, p, q when dbias != nullptr.
// `workspace` has conv2d_backward_filter_workspace(shape, v) bytes.
void conv2d_backward_filter(const float* x, const float* dy, float* dw, float* dbias, const ConvShape& shape,
                            void* workspace, cudaStream_t stream, ConvVersion v = ConvVersion::v2_implicit_gemm);

}  // namespace convnet::cuda
