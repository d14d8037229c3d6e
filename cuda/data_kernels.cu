// Data kernels both GPU backends share: axpby, augment_batch and image_view. One thread per output
// element (grid-stride), so consecutive threads write consecutive floats of the NHWC output. The
// pixel arithmetic is the constexpr code of core/base/augment_math.h that the cpu reference runs
// too (nvcc --expt-relaxed-constexpr), and axpby keeps the cpu's two products and one sum as
// separate roundings (*_rn intrinsics, never contracted into an FMA): results match bit for bit.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "core/base/augment_math.h"
#include "core/base/fail_check.h"
#include "cuda/check.h"
#include "cuda/data_kernels.h"
#include "cuda/grid_stride.h"

namespace convnet::cuda {

namespace {

// The index arithmetic below uses int for coordinates within one image, like augment_math.h.
void check_image_extent(int64_t h, int64_t w, int64_t c, const char* op) {
  CONVNET_CHECK_MSG(
      h >= 1 && w >= 1 && c >= 1 && h * w * c <= INT32_MAX,
      std::string(op) + ": bad image size " + std::to_string(h) + "x" + std::to_string(w) + "x" + std::to_string(c));
}

// x and y may be the same array: each element is read and then written by one thread only.
__global__ void axpby_kernel(float alpha, const float* x, float beta, float* y, int64_t n) {
  for (int64_t i = thread_index(); i < n; i += grid_stride())
    y[i] = __fadd_rn(__fmul_rn(alpha, x[i]), __fmul_rn(beta, y[i]));
}

// beta == 0: y is never read, so garbage (NaN) in it does not leak into the result.
__global__ void scale_kernel(float alpha, const float* x, float* y, int64_t n) {
  for (int64_t i = thread_index(); i < n; i += grid_stride()) y[i] = __fmul_rn(alpha, x[i]);
}

// Element i of the rows x channels slice: consecutive threads copy consecutive channels of a row.
__global__ void copy_channels_kernel(const float* src, int64_t src_stride, float* dst, int64_t dst_stride, int64_t rows,
                                     int64_t channels) {
  for (int64_t i = thread_index(); i < rows * channels; i += grid_stride()) {
    const int64_t r = i / channels, c = i % channels;
    dst[r * dst_stride + c] = src[r * src_stride + c];
  }
}

// Element i of out [n, h, w, c]: image b = i / (h w c), pixel (py, px), channel ch. Every thread
// draws its image's parameters itself (a few hashes): cheaper than a barrier, and no shared state.
__global__ void augment_batch_kernel(const uint8_t* images, const int32_t* order, int64_t m, int64_t n, int h, int w,
                                     int c, float* out, AugmentBatchSpec spec) {
  const int64_t image_size = static_cast<int64_t>(h) * w * c;
  const int64_t total = n * image_size;
  for (int64_t i = thread_index(); i < total; i += grid_stride()) {
    const int64_t b = i / image_size;
    const int r = static_cast<int>(i - b * image_size);
    const int pixel = r / c;
    const int ch = r - pixel * c;
    const int py = pixel / w;
    const int px = pixel - py * w;
    const int64_t e = order[b];
    if (e < 0 || e >= m) {  // an invalid index poisons its image instead of reading out of bounds
      out[i] = NAN;
      continue;
    }
    const AugmentParams p = augment_params_for(spec.augment, spec.epoch, e, h, w);
    out[i] = augmented_pixel(images + e * image_size, py, px, ch, h, w, c, p, spec.augment.pad_mode,
                             spec.augment.cutout, spec.mean[ch], spec.std[ch]);
  }
}

__global__ void image_view_kernel(const float* x, float* y, int64_t n, int h, int w, int c, ImageView view) {
  const int64_t image_size = static_cast<int64_t>(h) * w * c;
  const int64_t total = n * image_size;
  for (int64_t i = thread_index(); i < total; i += grid_stride()) {
    const int64_t b = i / image_size;
    const int r = static_cast<int>(i - b * image_size);
    const int pixel = r / c;
    const int ch = r - pixel * c;
    const int oy = pixel / w;
    const int ox = pixel - oy * w;
    const int sy = crop_source(oy, view.shift_y, h, view.pad_mode);
    const int sx = crop_source(flip_source(ox, w, view.flip), view.shift_x, w, view.pad_mode);
    y[i] = (sy < 0 || sx < 0) ? 0.0f : x[b * image_size + (static_cast<int64_t>(sy) * w + sx) * c + ch];
  }
}

}  // namespace

void launch_axpby(float alpha, const float* x, float beta, float* y, int64_t n, cudaStream_t stream) {
  CONVNET_CHECK_MSG(n >= 0, "axpby: negative element count " + std::to_string(n));
  if (n == 0) return;
  if (beta == 0.0f) {
    scale_kernel<<<grid_blocks(n), kThreads, 0, stream>>>(alpha, x, y, n);
    CONVNET_CUDA_CHECK_LAUNCH("scale_kernel");
  } else {
    axpby_kernel<<<grid_blocks(n), kThreads, 0, stream>>>(alpha, x, beta, y, n);
    CONVNET_CUDA_CHECK_LAUNCH("axpby_kernel");
  }
}

void launch_copy_channels(const float* src, int64_t src_stride, int64_t src_offset, float* dst, int64_t dst_stride,
                          int64_t dst_offset, int64_t rows, int64_t channels, cudaStream_t stream) {
  CONVNET_CHECK_MSG(rows >= 0 && channels >= 0, "copy_channels: negative extent");
  if (rows == 0 || channels == 0) return;
  copy_channels_kernel<<<grid_blocks(rows * channels), kThreads, 0, stream>>>(
      src + src_offset, src_stride, dst + dst_offset, dst_stride, rows, channels);
  CONVNET_CUDA_CHECK_LAUNCH("copy_channels_kernel");
}

void launch_augment_batch(const uint8_t* images, const int32_t* order, const AugmentGeometry& g, float* out,
                          const AugmentBatchSpec& spec, cudaStream_t stream) {
  CONVNET_CHECK_MSG(g.c <= kMaxImageChannels && g.n >= 0 && g.first >= 0 && g.first + g.n <= g.order_len,
                    "augment_batch: bad geometry n=" + std::to_string(g.n) + " first=" + std::to_string(g.first) +
                        " order length=" + std::to_string(g.order_len));
  const int64_t total = g.n * g.h * g.w * g.c;
  if (total == 0) return;
  check_image_extent(g.h, g.w, g.c, "augment_batch");
  augment_batch_kernel<<<grid_blocks(total), kThreads, 0, stream>>>(images, order + g.first, g.m, g.n,
                                                                    static_cast<int>(g.h), static_cast<int>(g.w),
                                                                    static_cast<int>(g.c), out, spec);
  CONVNET_CUDA_CHECK_LAUNCH("augment_batch_kernel");
}

void launch_image_view(const float* x, float* y, int64_t n, int64_t h, int64_t w, int64_t c, const ImageView& view,
                       cudaStream_t stream) {
  CONVNET_CHECK_MSG(n >= 0, "image_view: negative batch size " + std::to_string(n));
  if (n * h * w * c == 0) return;
  check_image_extent(h, w, c, "image_view");
  image_view_kernel<<<grid_blocks(n * h * w * c), kThreads, 0, stream>>>(
      x, y, n, static_cast<int>(h), static_cast<int>(w), static_cast<int>(c), view);
  CONVNET_CUDA_CHECK_LAUNCH("image_view_kernel");
}

}  // namespace convnet::cuda
