// The host side of the v4 tensor-core convolutions (cuda/conv_tc_kernels.h): the per-shape plan
// (block tile, split-K, workspace, shared memory) and the checked entry points.
#include <algorithm>
#include <cstdint>

#include "core/base/error.h"
#include "cuda/conv_tc_kernels.h"

namespace convnet::cuda {

namespace {

// Each slice of a split reduction keeps at least this many pipeline stages, so the pipeline
// fills and the partial sums do not outweigh the GEMM; at most this many slices.
constexpr int64_t kMinStagesPerSplit = 4;
constexpr int kMaxSplits = 64;
constexpr int kRowBytes = 64;  // reduction bytes per stage row (cuda/conv_tc_common.cuh)
constexpr int kStages = 4;

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

int element_bytes(ConvPrecision p) {
  return p == ConvPrecision::tf32 ? 4 : 2;
}

// Shared bytes of one operand tile per stage (cuda/conv_tc_common.cuh, OperandTile).
int64_t operand_bytes(bool k_major, int rows, ConvPrecision p) {
  const int e = element_bytes(p);
  if (k_major) return int64_t{rows} * kRowBytes;
  return int64_t{kRowBytes / e} * (rows * e + (e == 4 ? 32 : 16));
}

struct Extents {
  int64_t m = 0, n = 0, k = 0;  // one group's GEMM extents (backward-data: the whole n*h*w)
  int64_t block_rows = 0;       // GEMM rows one grid covers (backward-data: the largest phase)
  int64_t stages_k = 0;         // the longest reduction a block walks (backward-data: a phase's)
  int groups = 1;
  int phases = 1;
  bool a_k_major = true, b_k_major = true;
  bool vectorized = false;
};

Extents extents(const ConvShape& s, ConvPass pass, ConvPrecision precision) {
  // One group's channels: every GEMM below is one group's.
  const int64_t n = s.n, h = s.h, w = s.w, c = s.group_c(), k = s.group_k(), r = s.r, sw = s.s, p = s.p, q = s.q;
  const int chunk = 16 / element_bytes(precision);
  Extents e;
  e.groups = s.groups();
  switch (pass) {
    case ConvPass::forward:
      e.m = e.block_rows = n * p * q;
      e.n = k;
      e.k = e.stages_k = r * sw * c;
      e.vectorized = c % chunk == 0;
      break;
    case ConvPass::backward_data: {
      const int sh = s.params.stride_h, st = s.params.stride_w;
      e.m = n * h * w;
      e.n = c;
      e.k = r * sw * k;
      e.phases = sh * st;
      e.block_rows = n * ceil_div(h, sh) * ceil_div(w, st);
      e.stages_k = ceil_div(r, sh) * ceil_div(sw, st) * k;  // at most this many taps hit a phase
      e.b_k_major = false;
      e.vectorized = c % chunk == 0 && k % chunk == 0;
      break;
    }
    case ConvPass::backward_filter:
      e.m = e.block_rows = k;
      e.n = r * sw * c;
      e.k = e.stages_k = n * p * q;
      e.a_k_major = e.b_k_major = false;
      e.vectorized = c % chunk == 0 && k % chunk == 0;
      break;
  }
  return e;
}

}  // namespace

const char* conv_precision_name(ConvPrecision p) {
  return p == ConvPrecision::tf32 ? "tf32" : "bf16";
}

ConvTcPlan conv_tc_plan(const ConvShape& shape, ConvPass pass, ConvPrecision precision, int sm_count,
                        const ConvTcOverrides& overrides) {
  validate_conv_shape(shape, "conv_tc_plan");
  CONVNET_CHECK(sm_count >= 1, "conv_tc_plan: {} SMs", sm_count);
  CONVNET_CHECK(overrides.tile == 0 || overrides.tile == 64 || overrides.tile == 128,
                "conv_tc_plan: tile {} (64 or 128)", overrides.tile);
  CONVNET_CHECK(overrides.splits >= 0, "conv_tc_plan: {} splits", overrides.splits);
  const Extents e = extents(shape, pass, precision);
  ConvTcPlan plan;
  plan.precision = precision;
  plan.gemm_m = e.m;
  plan.gemm_n = e.n;
  plan.gemm_k = e.k;
  plan.groups = e.groups;
  plan.phases = e.phases;
  plan.vectorized = e.vectorized;
  plan.block_k = kRowBytes / element_bytes(precision);

  // Blocks of a tile size (every group's tiles); the large tile when it alone fills a wave of the GPU.
  const auto blocks_of = [&](int tile) {
    return ceil_div(e.block_rows, tile) * ceil_div(e.n, tile) * e.phases * e.groups;
  };
  const bool large = overrides.tile != 0 ? overrides.tile == 128 : blocks_of(128) >= sm_count;
  plan.tile = large ? ConvTcTile::large : ConvTcTile::small;
  plan.block_m = plan.block_n = large ? 128 : 64;
  plan.threads = large ? 256 : 128;
  const int64_t tiles = blocks_of(plan.block_m);

  // Split the reduction until two waves of blocks run, keeping each slice a few stages long.
  const int64_t stages = std::max<int64_t>(1, ceil_div(e.stages_k, plan.block_k));
  int64_t splits = 1;
  if (overrides.splits > 0)
    splits = std::min<int64_t>(overrides.splits, stages);
  else if (tiles < sm_count)
    splits = std::clamp<int64_t>(ceil_div(2 * int64_t{sm_count}, tiles), 1,
                                 std::min<int64_t>(kMaxSplits, std::max<int64_t>(1, stages / kMinStagesPerSplit)));
  plan.splits = static_cast<int>(ceil_div(stages, ceil_div(stages, splits)));  // no slice left empty
  plan.blocks = tiles * plan.splits;

  plan.shared_bytes = static_cast<size_t>(kStages * (operand_bytes(e.a_k_major, plan.block_m, precision) +
                                                     operand_bytes(e.b_k_major, plan.block_n, precision)));
  int64_t floats = plan.splits > 1 ? plan.splits * plan.outputs() : 0;
  if (pass == ConvPass::backward_filter) {
    const int64_t rows = int64_t{shape.n} * shape.p * shape.q;
    const int chunks = detail::conv_bias_chunks(rows);
    if (chunks > 1) floats = ceil_div(floats, 4) * 4 + int64_t{chunks} * shape.k;
  }
  plan.workspace_bytes = static_cast<size_t>(floats) * sizeof(float);
  if (pass == ConvPass::forward) {
    plan.stats_row_blocks = ceil_div(e.m, plan.block_m);
    plan.stats_workspace_bytes = static_cast<size_t>(2 * plan.stats_row_blocks * shape.k) * sizeof(float);
  }
  return plan;
}

namespace {

// The plan must be the one conv_tc_plan made for this shape, pass and precision.
void check_plan(const ConvShape& shape, ConvPass pass, ConvPrecision precision, const ConvTcPlan& plan,
                const void* workspace, const char* op) {
  validate_conv_shape(shape, op);
  const Extents e = extents(shape, pass, precision);
  CONVNET_CHECK(plan.precision == precision && plan.gemm_m == e.m && plan.gemm_n == e.n && plan.gemm_k == e.k &&
                    plan.groups == e.groups && plan.phases == e.phases && (!plan.vectorized || e.vectorized),
                "{}: the plan ({} GEMM {}x{}x{} in {} group(s)) was made for another problem or precision ({} GEMM "
                "{}x{}x{} in {} group(s))",
                op, conv_precision_name(plan.precision), plan.gemm_m, plan.gemm_n, plan.gemm_k, plan.groups,
                conv_precision_name(precision), e.m, e.n, e.k, e.groups);
  CONVNET_CHECK(plan.splits >= 1 && plan.splits <= kMaxSplits * 4, "{}: plan with {} splits", op, plan.splits);
  CONVNET_CHECK(plan.workspace_bytes == 0 || workspace != nullptr, "{}: needs a workspace of {} bytes, got none", op,
                plan.workspace_bytes);
}

void check_pointers(const char* op, const char* names, const void* a, const void* b, const void* c) {
  CONVNET_CHECK(a && b && c, "{}: null device pointer ({}: {}, {}, {})", op, names, a, b, c);
}

template <class E>
void forward(const E* x, const E* w, const float* bias, E* y, ConvActivation act, const ConvShape& shape,
             const ConvTcPlan& plan, void* workspace, cudaStream_t stream, const ConvOutputStats& stats,
             ConvPrecision precision) {
  const char* op = "conv2d_forward_tc";
  check_plan(shape, ConvPass::forward, precision, plan, workspace, op);
  check_pointers(op, "x, w, y", x, w, y);
  CONVNET_CHECK((stats.sum == nullptr) == (stats.sum_sq == nullptr),
                "{}: output statistics need both sum and sum_sq (got {}, {})", op, static_cast<void*>(stats.sum),
                static_cast<void*>(stats.sum_sq));
  CONVNET_CHECK(stats.sum == nullptr || workspace != nullptr,
                "{}: output statistics need a workspace of {} + {} bytes, got none", op, plan.workspace_bytes,
                plan.stats_workspace_bytes);
  detail::tc_forward(x, w, bias, y, act, shape, plan, workspace, stream, stats);
}

template <class E>
void backward_data(const E* dy, const E* w, E* dx, const ConvShape& shape, const ConvTcPlan& plan, void* workspace,
                   cudaStream_t stream, ConvPrecision precision) {
  const char* op = "conv2d_backward_data_tc";
  check_plan(shape, ConvPass::backward_data, precision, plan, workspace, op);
  check_pointers(op, "dy, w, dx", dy, w, dx);
  detail::tc_backward_data(dy, w, dx, shape, plan, workspace, stream);
}

template <class E>
void backward_filter(const E* x, const E* dy, float* dw, float* dbias, const ConvShape& shape, const ConvTcPlan& plan,
                     void* workspace, cudaStream_t stream, ConvPrecision precision) {
  const char* op = "conv2d_backward_filter_tc";
  check_plan(shape, ConvPass::backward_filter, precision, plan, workspace, op);
  check_pointers(op, "x, dy, dw", x, dy, dw);
  detail::tc_backward_filter(x, dy, dw, dbias, shape, plan, workspace, stream);
}

}  // namespace

void conv2d_forward_tc(const float* x, const float* w, const float* bias, float* y, ConvActivation act,
                       const ConvShape& shape, const ConvTcPlan& plan, void* workspace, cudaStream_t stream,
                       const ConvOutputStats& stats) {
  forward(x, w, bias, y, act, shape, plan, workspace, stream, stats, ConvPrecision::tf32);
}
void conv2d_forward_tc(const uint16_t* x, const uint16_t* w, const float* bias, uint16_t* y, ConvActivation act,
                       const ConvShape& shape, const ConvTcPlan& plan, void* workspace, cudaStream_t stream,
                       const ConvOutputStats& stats) {
  forward(x, w, bias, y, act, shape, plan, workspace, stream, stats, ConvPrecision::bf16);
}
void conv2d_backward_data_tc(const float* dy, const float* w, float* dx, const ConvShape& shape, const ConvTcPlan& plan,
                             void* workspace, cudaStream_t stream) {
  backward_data(dy, w, dx, shape, plan, workspace, stream, ConvPrecision::tf32);
}
void conv2d_backward_data_tc(const uint16_t* dy, const uint16_t* w, uint16_t* dx, const ConvShape& shape,
                             const ConvTcPlan& plan, void* workspace, cudaStream_t stream) {
  backward_data(dy, w, dx, shape, plan, workspace, stream, ConvPrecision::bf16);
}
void conv2d_backward_filter_tc(const float* x, const float* dy, float* dw, float* dbias, const ConvShape& shape,
                               const ConvTcPlan& plan, void* workspace, cudaStream_t stream) {
  backward_filter(x, dy, dw, dbias, shape, plan, workspace, stream, ConvPrecision::tf32);
}
void conv2d_backward_filter_tc(const uint16_t* x, const uint16_t* dy, float* dw, float* dbias, const ConvShape& shape,
                               const ConvTcPlan& plan, void* workspace, cudaStream_t stream) {
  backward_filter(x, dy, dw, dbias, shape, plan, workspace, stream, ConvPrecision::bf16);
}

}  // namespace convnet::cuda
