// Kernel launchers for the data ops both GPU backends share (cuda/data_kernels.cu): axpby and
// the batch builders augment_batch and image_view. Every launcher queues work on `stream` and
// returns; pointers are device pointers; a failed launch throws convnet::Error. Each kernel
// computes exactly what the cpu reference (core/cpu/axpby.cpp, core/cpu/image_ops.cpp) computes,
// operation by operation, so results are equal bit for bit.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/base/backend.h"
#include "core/base/op_checks.h"

namespace convnet::cuda {

// Backend::axpby over n elements: y = alpha * x + beta * y, two roundings for the products and
// one for the sum (never an FMA); beta == 0 writes alpha * x without reading y. x may equal y.
void launch_axpby(float alpha, const float* x, float beta, float* y, int64_t n, cudaStream_t stream);

// Backend::copy_channels for `rows` rows: dst[r * dst_stride + dst_offset + c] =
// src[r * src_stride + src_offset + c] for c < channels.
void launch_copy_channels(const float* src, int64_t src_stride, int64_t src_offset, float* dst, int64_t dst_stride,
                          int64_t dst_offset, int64_t rows, int64_t channels, cudaStream_t stream);

// Backend::augment_batch for a validated geometry g (OpChecks::augment_batch): out[i] for
// i < g.n is image order[g.first + i] of `images` transformed by augmented_pixel
// (core/base/augment_math.h). The index values live on the device and are not checked on the
// host: an index outside [0, g.m) makes that image's output all NaN (the loss turns NaN and the
// trainer stops) instead of reading out of bounds, where the cpu reference throws.
void launch_augment_batch(const uint8_t* images, const int32_t* order, const AugmentGeometry& g, float* out,
                          const AugmentBatchSpec& spec, cudaStream_t stream);

// Backend::image_view for x, y [n, h, w, c] (validated by OpChecks::image_view); y != x.
void launch_image_view(const float* x, float* y, int64_t n, int64_t h, int64_t w, int64_t c, const ImageView& view,
                       cudaStream_t stream);

}  // namespace convnet::cuda
