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

// One convolution problem: x [n, h, w, c], w [k, r, s, c / groups], y [n, p, q, k], where
// groups = params.groups (Conv2dParams): output channel k reads the input channels of group
// k / group_k(). Every version runs each group as its own GEMM over the group's channel slices;
// strides in memory stay those of the full tensors.
struct ConvShape {
  int n = 1, h = 1, w = 1, c = 1;
  int k = 1, r = 1, s = 1;
  int p = 1, q = 1;  // output size, from conv_output_size()
  Conv2dParams params;
  // Fills p and q from the other fields. Throws convnet::Error (validate_conv_shape) when the
  // problem is invalid, e.g. the input is smaller than the dilated kernel.
  static ConvShape make(int n, int h, int w, int c, int k, int r, int s, const Conv2dParams& params);
  int groups() const { return params.groups; }
  int group_c() const { return c / params.groups; }  // input channels of one group: w's last axis
  int group_k() const { return k / params.groups; }  // output channels of one group
  int64_t forward_flops() const { return 2LL * n * p * q * k * r * s * group_c(); }
};

enum class ConvVersion { v0_direct, v2_implicit_gemm };
const char* conv_version_name(ConvVersion v);  // "v0 direct", "v2 implicit GEMM"

// Device workspace bytes backward-filter needs for `shape` (split-K partial sums); 0 for v0.
size_t conv2d_backward_filter_workspace(const ConvShape& shape, ConvVersion v = ConvVersion::v2_implicit_gemm);

// Throws convnet::Error naming `op` when `shape` is not a valid problem: a size or parameter out
// of range (sizes >= 1, stride and dilation >= 1, padding >= 0), p/q not those of
// conv_output_size(), or a GEMM extent too large for the kernels' 32-bit row indices.
// The launchers below call it before queueing any work.
void validate_conv_shape(const ConvShape& shape, const char* op);

// The three passes, for planning and printing.
enum class ConvPass { forward, backward_data, backward_filter };
const char* conv_pass_name(ConvPass pass);  // "forward", "backward-data", "backward-filter"

// How v2 runs one pass: pure host arithmetic on the shape (no device needed), shared by the
// launchers, the workspace size and the harness's printout. One GEMM per group (gc = c / groups,
// gk = k / groups input and output channels of a group):
//   forward          GEMM M = n*p*q, N = gk, reduction r*s*gc
//   backward-data    per stride phase (h % stride_h, w % stride_w): M = the phase's n*h*w pixels,
//                    N = gc, reduction over the taps that hit that phase times gk
//   backward-filter  M = gk, N = r*s*gc, reduction n*p*q split into `splits` slices
// Grid y runs groups x the tiles of one group's N (backward-filter: M), group-major.
// Block tile: 128x128x8 (8x8 outputs per thread) when the problem fills the GPU with it, else
// 64x64x16 (4x4 per thread); 256 threads either way.
struct ConvGemmPlan {
  int block_m = 128, block_n = 128, block_k = 8;
  int64_t gemm_m = 0, gemm_n = 0, gemm_k = 0;  // one group's; backward-data: the whole n*h*w, gc, r*s*gk
  int groups = 1;                              // GEMMs side by side (grid y)
  int phases = 1;                              // backward-data: stride_h * stride_w (grid z), else 1
  int splits = 1;                              // backward-filter: reduction slices (grid z), else 1
  int64_t k_tiles_per_split = 0;               // reduction tiles each slice covers (the last may have fewer)
  // backward-filter dbias: sum of dy rows in `bias_chunks` chunks of `bias_rows_per_chunk` rows,
  // then the chunk sums in order (1 chunk: written straight to dbias).
  int bias_chunks = 1;
  int64_t bias_rows_per_chunk = 0;
  // 128-bit loads: the reduction's contiguous channel counts (per group) are multiples of 4 (the
  // launcher also needs 16-byte aligned pointers, else it takes the scalar path).
  bool vectorized = false;
};
ConvGemmPlan conv_gemm_plan(const ConvShape& shape, ConvPass pass);

// Split-K policy constants (documented for tests and the harness): aim for this many blocks
// (two waves on an H100's 132 SMs), never fewer than this many reduction tiles per slice.
inline constexpr int kConvTargetBlocks = 264;
inline constexpr int kConvMinTilesPerSplit = 16;
inline constexpr int kConvMaxSplits = 256;
// dbias chunks: at most this many, each at least this many rows.
inline constexpr int kConvMaxBiasChunks = 256;
inline constexpr int64_t kConvMinBiasChunkRows = 1024;

// Narrow groups: more than one group and fewer than kConvNarrowGroup input or output channels in
// each (depthwise and its kin). Each group's implicit GEMM is then at most 7 wide, most of every
// 64- or 128-wide tile wasted, so the cuda backend runs such problems on other versions
// (cuda/cuda_backend.cpp says which and why). groups == 1 is never narrow: the RGB layer stays.
inline constexpr int kConvNarrowGroup = 8;
inline bool conv_narrow_groups(const ConvShape& s) {
  return s.groups() > 1 && (s.group_c() < kConvNarrowGroup || s.group_k() < kConvNarrowGroup);
}

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

namespace detail {
// The per-version launchers behind the entry points above (conv_direct.cu, conv_gemm_*.cu). They
// assume a validated shape and non-null pointers; the entry points check both first.
void direct_forward(const float* x, const float* w, const float* bias, float* y, const ConvShape& shape,
                    cudaStream_t stream);
void direct_backward_data(const float* dy, const float* w, float* dx, const ConvShape& shape, cudaStream_t stream);
void direct_backward_filter(const float* x, const float* dy, float* dw, float* dbias, const ConvShape& shape,
                            cudaStream_t stream);
void gemm_forward(const float* x, const float* w, const float* bias, float* y, const ConvShape& shape,
                  const ConvGemmPlan& plan, cudaStream_t stream);
void gemm_backward_data(const float* dy, const float* w, float* dx, const ConvShape& shape, const ConvGemmPlan& plan,
                        cudaStream_t stream);
// `workspace` holds conv_filter_workspace_floats(plan, shape) floats.
void gemm_backward_filter(const float* x, const float* dy, float* dw, float* dbias, const ConvShape& shape,
                          const ConvGemmPlan& plan, float* workspace, cudaStream_t stream);
// Workspace layout of gemm_backward_filter: [splits][k][r*s*gc] partial dw when splits > 1, then
// (at offset conv_filter_bias_offset) [bias_chunks][k] partial dbias when bias_chunks > 1.
int64_t conv_filter_bias_offset(const ConvGemmPlan& plan, const ConvShape& shape);
int64_t conv_filter_workspace_floats(const ConvGemmPlan& plan, const ConvShape& shape);
}  // namespace detail

}  // namespace convnet::cuda
