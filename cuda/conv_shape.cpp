// The host side of conv_kernels.h: ConvShape, its validation, the v2 plan (tiles, split-K,
// workspace) and the public entry points, which validate and then call a version's launcher.
// Everything that can throw lives here rather than in the .cu files: nvcc cannot compile fmt,
// which CONVNET_CHECK uses.
#include <algorithm>
#include <cstdint>
#include <limits>

#include "core/base/error.h"
#include "cuda/conv_kernels.h"
#include "cuda/conv_tc_kernels.h"

namespace convnet::cuda {

namespace {

// GEMM extents and row indices are 32-bit in the kernels; keep a block's worth of headroom so
// "first row of the block + local row" never overflows.
constexpr int64_t kMaxExtent = std::numeric_limits<int32_t>::max() - 1024;
constexpr int kMaxGridYZ = 65535;

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// 128x128x8 when that tiling alone gives the GPU at least a wave of blocks (over every group's
// GEMM of m x n), else 64x64x16.
void choose_tile(ConvGemmPlan& plan, int64_t m, int64_t n) {
  const bool big = m >= 128 && n >= 128 && plan.groups * ceil_div(m, 128) * ceil_div(n, 128) >= kConvTargetBlocks / 2;
  plan.block_m = big ? 128 : 64;
  plan.block_n = big ? 128 : 64;
  plan.block_k = big ? 8 : 16;
}

}  // namespace

ConvShape ConvShape::make(int n, int h, int w, int c, int k, int r, int s, const Conv2dParams& params) {
  ConvShape shape;
  shape.n = n;
  shape.h = h;
  shape.w = w;
  shape.c = c;
  shape.k = k;
  shape.r = r;
  shape.s = s;
  shape.params = params;
  // Invalid strides (no division by zero here) and out-of-range sizes leave 0, which
  // validate_conv_shape reports with the full context.
  const int64_t p = params.stride_h >= 1 ? conv_output_size(h, r, params.stride_h, params.pad_h, params.dilation_h) : 0;
  const int64_t q = params.stride_w >= 1 ? conv_output_size(w, s, params.stride_w, params.pad_w, params.dilation_w) : 0;
  shape.p = p > 0 && p <= kMaxExtent ? static_cast<int>(p) : 0;
  shape.q = q > 0 && q <= kMaxExtent ? static_cast<int>(q) : 0;
  validate_conv_shape(shape, "ConvShape::make");
  return shape;
}

const char* conv_version_name(ConvVersion v) {
  switch (v) {
    case ConvVersion::v0_direct:
      return "v0 direct";
    case ConvVersion::v2_implicit_gemm:
      return "v2 implicit GEMM";
  }
  return "unknown version";
}

const char* conv_pass_name(ConvPass pass) {
  switch (pass) {
    case ConvPass::forward:
      return "forward";
    case ConvPass::backward_data:
      return "backward-data";
    case ConvPass::backward_filter:
      return "backward-filter";
  }
  return "unknown pass";
}

void validate_conv_shape(const ConvShape& s, const char* op) {
  const Conv2dParams& p = s.params;
  CONVNET_CHECK(s.n >= 1 && s.h >= 1 && s.w >= 1 && s.c >= 1,
                "{}: input [n={}, h={}, w={}, c={}] needs every size >= 1", op, s.n, s.h, s.w, s.c);
  CONVNET_CHECK(s.k >= 1 && s.r >= 1 && s.s >= 1, "{}: filters [k={}, r={}, s={}, c={}] need every size >= 1", op, s.k,
                s.r, s.s, s.c);
  CONVNET_CHECK(p.stride_h >= 1 && p.stride_w >= 1, "{}: stride {}x{} must be >= 1", op, p.stride_h, p.stride_w);
  CONVNET_CHECK(p.dilation_h >= 1 && p.dilation_w >= 1, "{}: dilation {}x{} must be >= 1", op, p.dilation_h,
                p.dilation_w);
  CONVNET_CHECK(p.pad_h >= 0 && p.pad_w >= 0, "{}: padding {}x{} must be >= 0", op, p.pad_h, p.pad_w);
  CONVNET_CHECK(p.groups >= 1 && s.c % p.groups == 0 && s.k % p.groups == 0,
                "{}: {} groups do not divide the {} input and {} output channels", op, p.groups, s.c, s.k);
  const int64_t want_p = conv_output_size(s.h, s.r, p.stride_h, p.pad_h, p.dilation_h);
  const int64_t want_q = conv_output_size(s.w, s.s, p.stride_w, p.pad_w, p.dilation_w);
  CONVNET_CHECK(want_p > 0 && want_q > 0,
                "{}: input {}x{} (padding {}x{}) is smaller than the {}x{} kernel (dilation {}x{})", op, s.h, s.w,
                p.pad_h, p.pad_w, s.r, s.s, p.dilation_h, p.dilation_w);
  CONVNET_CHECK(s.p == want_p && s.q == want_q, "{}: output {}x{} does not match the {}x{} the input and kernel give",
                op, s.p, s.q, want_p, want_q);
  const int64_t n = s.n, h = s.h, w = s.w, c = s.c, k = s.k, r = s.r, sw = s.s, pp = s.p, q = s.q;
  const int64_t groups = p.groups, gc = s.group_c(), gk = s.group_k();
  const int64_t extents[] = {n * h * w, n * pp * q, r * sw * gc, r * sw * gk, k, c};
  for (const int64_t e : extents)
    CONVNET_CHECK(e <= kMaxExtent,
                  "{}: problem [n={}, h={}, w={}, c={}] x [k={}, r={}, s={}] is too large for 32-bit GEMM indices "
                  "(an extent of {})",
                  op, n, h, w, c, k, r, sw, e);
  CONVNET_CHECK(int64_t{p.stride_h} * p.stride_w <= kMaxGridYZ, "{}: stride {}x{} has too many phases", op, p.stride_h,
                p.stride_w);
  // Grid y: every group's tiles of its channels, at the smallest tile (64).
  CONVNET_CHECK(groups * ceil_div(std::max(gk, gc), 64) <= kMaxGridYZ,
                "{}: {} channels in {} group(s) exceed the grid limit", op, std::max(k, c), groups);
}

ConvGemmPlan conv_gemm_plan(const ConvShape& s, ConvPass pass) {
  ConvGemmPlan plan;
  plan.groups = s.groups();
  // One group's channels: every GEMM below is one group's.
  const int64_t n = s.n, h = s.h, w = s.w, c = s.group_c(), k = s.group_k(), r = s.r, sw = s.s, p = s.p, q = s.q;
  switch (pass) {
    case ConvPass::forward:
      plan.gemm_m = n * p * q;
      plan.gemm_n = k;
      plan.gemm_k = r * sw * c;
      choose_tile(plan, plan.gemm_m, plan.gemm_n);
      plan.vectorized = c % 4 == 0;
      break;
    case ConvPass::backward_data:
      plan.gemm_m = n * h * w;
      plan.gemm_n = c;
      plan.gemm_k = r * sw * k;
      plan.phases = s.params.stride_h * s.params.stride_w;
      choose_tile(plan, plan.gemm_m, plan.gemm_n);
      plan.vectorized = c % 4 == 0 && k % 4 == 0;
      break;
    case ConvPass::backward_filter: {
      plan.gemm_m = k;
      plan.gemm_n = r * sw * c;
      plan.gemm_k = n * p * q;
      // The output is small and the reduction long: large tiles only when both sides fill them,
      // and split-K supplies the parallelism.
      const bool big = plan.gemm_m >= 128 && plan.gemm_n >= 128;
      plan.block_m = big ? 128 : 64;
      plan.block_n = big ? 128 : 64;
      plan.block_k = big ? 8 : 16;
      plan.vectorized = c % 4 == 0 && k % 4 == 0;
      const int64_t tiles = plan.groups * ceil_div(plan.gemm_m, plan.block_m) * ceil_div(plan.gemm_n, plan.block_n);
      const int64_t k_tiles = ceil_div(plan.gemm_k, plan.block_k);
      const int64_t most = std::max<int64_t>(1, std::min<int64_t>(k_tiles / kConvMinTilesPerSplit, kConvMaxSplits));
      const int64_t want = std::clamp<int64_t>(ceil_div(kConvTargetBlocks, tiles), 1, most);
      plan.k_tiles_per_split = ceil_div(k_tiles, want);
      plan.splits = static_cast<int>(ceil_div(k_tiles, plan.k_tiles_per_split));  // every slice non-empty
      plan.bias_rows_per_chunk = detail::conv_bias_rows_per_chunk(plan.gemm_k);
      plan.bias_chunks = detail::conv_bias_chunks(plan.gemm_k);
      return plan;
    }
  }
  plan.k_tiles_per_split = ceil_div(plan.gemm_k, plan.block_k);
  return plan;
}

namespace detail {

int64_t conv_bias_rows_per_chunk(int64_t rows) {
  const int64_t chunks = std::clamp<int64_t>(rows / kConvMinBiasChunkRows, 1, kConvMaxBiasChunks);
  return ceil_div(rows, chunks);
}

int conv_bias_chunks(int64_t rows) {
  return static_cast<int>(ceil_div(rows, conv_bias_rows_per_chunk(rows)));
}

int64_t conv_filter_bias_offset(const ConvGemmPlan& plan, const ConvShape& s) {
  const int64_t partial_dw = plan.splits > 1 ? int64_t{plan.splits} * s.k * s.r * s.s * s.group_c() : 0;
  return ceil_div(partial_dw, 4) * 4;  // keeps the dbias partials 16-byte aligned
}

int64_t conv_filter_workspace_floats(const ConvGemmPlan& plan, const ConvShape& s) {
  const int64_t partial_bias = plan.bias_chunks > 1 ? int64_t{plan.bias_chunks} * s.k : 0;
  return conv_filter_bias_offset(plan, s) + partial_bias;
}

}  // namespace detail

size_t conv2d_backward_filter_workspace(const ConvShape& shape, ConvVersion v) {
  if (v == ConvVersion::v0_direct) return 0;
  validate_conv_shape(shape, "conv2d_backward_filter_workspace");
  const ConvGemmPlan plan = conv_gemm_plan(shape, ConvPass::backward_filter);
  return static_cast<size_t>(detail::conv_filter_workspace_floats(plan, shape)) * sizeof(float);
}

void conv2d_forward(const float* x, const float* w, const float* bias, float* y, const ConvShape& shape,
                    cudaStream_t stream, ConvVersion v) {
  const char* op = "conv2d_forward";
  validate_conv_shape(shape, op);
  CONVNET_CHECK(x && w && y, "{}: null device pointer (x {}, w {}, y {})", op, static_cast<const void*>(x),
                static_cast<const void*>(w), static_cast<const void*>(y));
  switch (v) {
    case ConvVersion::v0_direct:
      detail::direct_forward(x, w, bias, y, shape, stream);
      return;
    case ConvVersion::v2_implicit_gemm:
      detail::gemm_forward(x, w, bias, y, shape, conv_gemm_plan(shape, ConvPass::forward), stream);
      return;
  }
  CONVNET_CHECK(false, "{}: unknown kernel version {}", op, static_cast<int>(v));
}

void conv2d_backward_data(const float* dy, const float* w, float* dx, const ConvShape& shape, cudaStream_t stream,
                          ConvVersion v) {
  const char* op = "conv2d_backward_data";
  validate_conv_shape(shape, op);
  CONVNET_CHECK(dy && w && dx, "{}: null device pointer (dy {}, w {}, dx {})", op, static_cast<const void*>(dy),
                static_cast<const void*>(w), static_cast<const void*>(dx));
  switch (v) {
    case ConvVersion::v0_direct:
      detail::direct_backward_data(dy, w, dx, shape, stream);
      return;
    case ConvVersion::v2_implicit_gemm:
      detail::gemm_backward_data(dy, w, dx, shape, conv_gemm_plan(shape, ConvPass::backward_data), stream);
      return;
  }
  CONVNET_CHECK(false, "{}: unknown kernel version {}", op, static_cast<int>(v));
}

void conv2d_backward_filter(const float* x, const float* dy, float* dw, float* dbias, const ConvShape& shape,
                            void* workspace, cudaStream_t stream, ConvVersion v) {
  const char* op = "conv2d_backward_filter";
  validate_conv_shape(shape, op);
  CONVNET_CHECK(x && dy && dw, "{}: null device pointer (x {}, dy {}, dw {})", op, static_cast<const void*>(x),
                static_cast<const void*>(dy), static_cast<const void*>(dw));
  switch (v) {
    case ConvVersion::v0_direct:
      detail::direct_backward_filter(x, dy, dw, dbias, shape, stream);
      return;
    case ConvVersion::v2_implicit_gemm: {
      const ConvGemmPlan plan = conv_gemm_plan(shape, ConvPass::backward_filter);
      const int64_t floats = detail::conv_filter_workspace_floats(plan, shape);
      CONVNET_CHECK(floats == 0 || workspace != nullptr,
                    "{}: needs a workspace of {} bytes (conv2d_backward_filter_workspace), got none", op,
                    floats * int64_t{sizeof(float)});
      detail::gemm_backward_filter(x, dy, dw, dbias, shape, plan, static_cast<float*>(workspace), stream);
      return;
    }
  }
  CONVNET_CHECK(false, "{}: unknown kernel version {}", op, static_cast<int>(v));
}

}  // namespace convnet::cuda
