// v4: our tensor-core convolutions (FIELD-GUIDE §3), all three passes in TF32 and BF16, beside the
// fp32 versions of conv_kernels.h (v0 and v2 stay as oracles).
//
// The same implicit GEMMs as v2 (forward M = n*p*q, N = k; backward-data per stride phase M = the
// phase's pixels, N = c; backward-filter M = k, N = r*s*c), one per group with a group's channels
// (gc = c / groups, gk = k / groups) in place of c and k, computed with mma.sync on warp tiles.
// Operand tiles stream global -> shared memory with cp.async through a 4-stage pipeline; a
// reduction-contiguous tile is XOR-swizzled and read with ldmatrix, a tile whose rows are output
// columns is padded and read with ldmatrix.trans (BF16) or 32-bit loads (TF32). Channel counts
// that are not a multiple of a 16-byte chunk (the RGB input layer, C = 3; a group of one channel)
// take a gather path that packs the reduction (r, s, c) densely, so they use the tensor cores
// too. Accumulation is fp32.
//
// Precisions:
//   tf32  float tensors; every operand is rounded to TF32 (cvt.rna) as it enters the mma
//   bf16  bf16 tensors (uint16_t bit patterns) for x, w, dy, y and dx; dw is fp32 (master
//         gradients); y and dx are rounded once (RNE) from the fp32 result
// A reduction is split into `splits` slices (grid z) when the tiles alone would not fill the GPU;
// each slice writes fp32 partials to the workspace and a second kernel adds them in slice order,
// then applies the epilogue. No atomics: reruns are bit-identical.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "cuda/conv_kernels.h"

namespace convnet::cuda {

enum class ConvPrecision { tf32, bf16 };
const char* conv_precision_name(ConvPrecision p);  // "tf32", "bf16"

// Applied to forward outputs after the bias (fp32, before rounding to the output type).
enum class ConvActivation { none, relu, gelu };  // gelu: the erf form, as the gelu layer

// The two block tiles: 128x128 (8 warps of 64x32) and 64x64 (4 warps of 32x32).
enum class ConvTcTile { large, small };

struct ConvTcPlan {
  ConvPrecision precision = ConvPrecision::tf32;
  ConvTcTile tile = ConvTcTile::large;
  int block_m = 128, block_n = 128, block_k = 16;  // block_k: reduction elements per pipeline stage
  int threads = 256;
  int64_t gemm_m = 0, gemm_n = 0, gemm_k = 0;  // one group's; backward-data: the whole n*h*w, gc, r*s*gk
  int groups = 1;                              // GEMMs side by side: grid y = groups x N (backward-filter: M) tiles
  int phases = 1;                              // backward-data: stride_h * stride_w
  int splits = 1;                              // reduction slices (grid z, times phases)
  int64_t blocks = 0;                          // thread blocks of the GEMM launch
  // Elements of the pass's output (y, dx or dw): groups * gemm_m * gemm_n.
  int64_t outputs() const { return groups * gemm_m * gemm_n; }
  // 16-byte cp.async loads: the reduction's contiguous channel counts (a group's) are multiples of
  // a chunk (4 floats, 8 bf16); otherwise the gather path (the launcher also needs 16-byte aligned
  // pointers).
  bool vectorized = false;
  size_t shared_bytes = 0;     // dynamic shared memory per block
  size_t workspace_bytes = 0;  // split-K partials and the dbias chunks (backward-filter)
  // Forward with ConvOutputStats: the per-row-block partial sums after workspace_bytes (rounded
  // up to kConvTcStatsAlign): 2 * stats_row_blocks * k floats.
  int64_t stats_row_blocks = 0;
  size_t stats_workspace_bytes = 0;
  // The forward workspace when it also computes ConvOutputStats.
  size_t workspace_with_stats_bytes() const;
};
inline constexpr size_t kConvTcStatsAlign = 256;
inline size_t ConvTcPlan::workspace_with_stats_bytes() const {
  return (workspace_bytes + kConvTcStatsAlign - 1) / kConvTcStatsAlign * kConvTcStatsAlign + stats_workspace_bytes;
}

// Forces parts of the plan, for tests and the harness (0 / unset keeps the heuristic's choice).
struct ConvTcOverrides {
  int tile = 0;    // 128 or 64
  int splits = 0;  // reduction slices (capped by the reduction's tile count)
};

// The plan for one pass: picks the tile and split count from the number of blocks each gives
// against `sm_count` (waves), so a small-spatial layer still fills the GPU. Pure host arithmetic.
ConvTcPlan conv_tc_plan(const ConvShape& shape, ConvPass pass, ConvPrecision precision, int sm_count,
                        const ConvTcOverrides& overrides = {});

// Per-channel sums of the forward output, for a following batchnorm: sum[k] = sum of y and
// sum_sq[k] = sum of y^2 over (n, p, q), of y as stored (after the epilogue and any bf16 rounding),
// in fp32 and a fixed order: per block tile in the GEMM's epilogue (or, with split-K, by one
// pass over y), then the tiles in row order. Both null: not computed.
struct ConvOutputStats {
  float* sum = nullptr;
  float* sum_sq = nullptr;
};

// TF32 on float tensors. `workspace` has plan.workspace_bytes bytes (may be null when 0), plus
// plan.stats_workspace_bytes after them (see ConvTcPlan) when `stats` asks for the sums.
void conv2d_forward_tc(const float* x, const float* w, const float* bias, float* y, ConvActivation act,
                       const ConvShape& shape, const ConvTcPlan& plan, void* workspace, cudaStream_t stream,
                       const ConvOutputStats& stats = {});
void conv2d_backward_data_tc(const float* dy, const float* w, float* dx, const ConvShape& shape, const ConvTcPlan& plan,
                             void* workspace, cudaStream_t stream);
void conv2d_backward_filter_tc(const float* x, const float* dy, float* dw, float* dbias, const ConvShape& shape,
                               const ConvTcPlan& plan, void* workspace, cudaStream_t stream);

// BF16 on bf16 tensors (bit patterns); bias, dbias and dw are fp32.
void conv2d_forward_tc(const uint16_t* x, const uint16_t* w, const float* bias, uint16_t* y, ConvActivation act,
                       const ConvShape& shape, const ConvTcPlan& plan, void* workspace, cudaStream_t stream,
                       const ConvOutputStats& stats = {});
void conv2d_backward_data_tc(const uint16_t* dy, const uint16_t* w, uint16_t* dx, const ConvShape& shape,
                             const ConvTcPlan& plan, void* workspace, cudaStream_t stream);
void conv2d_backward_filter_tc(const uint16_t* x, const uint16_t* dy, float* dw, float* dbias, const ConvShape& shape,
                               const ConvTcPlan& plan, void* workspace, cudaStream_t stream);

namespace detail {
// The launchers behind the entry points (cuda/conv_tc_*.cu): validated shape and plan, non-null
// pointers. E is float (TF32) or uint16_t (BF16).
template <class E>
void tc_forward(const E* x, const E* w, const float* bias, E* y, ConvActivation act, const ConvShape& shape,
                const ConvTcPlan& plan, void* workspace, cudaStream_t stream, const ConvOutputStats& stats);
template <class E>
void tc_backward_data(const E* dy, const E* w, E* dx, const ConvShape& shape, const ConvTcPlan& plan, void* workspace,
                      cudaStream_t stream);
template <class E>
void tc_backward_filter(const E* x, const E* dy, float* dw, float* dbias, const ConvShape& shape,
                        const ConvTcPlan& plan, void* workspace, cudaStream_t stream);
// dbias[k] = sum over rows of dy[row][k], in chunks of `rows_per_chunk` rows, then the chunk sums
// in chunk order (at most kConvMaxBiasChunks chunks); `chunk_sums` holds chunks * k floats when
// there is more than one chunk. conv_bias_rows_per_chunk(rows) is the default chunking.
template <class E>
void bias_gradient(const E* dy, float* dbias, int64_t rows, int k, int64_t rows_per_chunk, float* chunk_sums,
                   cudaStream_t stream);
int conv_bias_chunks(int64_t rows);
int64_t conv_bias_rows_per_chunk(int64_t rows);
}  // namespace detail

}  // namespace convnet::cuda
