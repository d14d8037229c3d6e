// v4, our tensor-core convolutions (cuda/conv_tc_*.cu), run on the CPU under the emulator with its
// PTX layer (tests/emu/fake/cuda/ptx.cuh: mma.sync, ldmatrix, deferred cp.async) and checked against
// float64 references, in TF32 and in BF16, for all three passes. The cases, the references and the
// per-element bound are shared with the GPU test (tests/common/conv_tc_cases.h, conv_tc_bound.h):
// each element lies within (reduction + slices + 8) * 2^-23 * sum |a*b| of a reference computed
// on the values the tensor cores multiply (+ 2^-8 |ref| for a bf16 output), so a fragment in the
// wrong place, a stage read before it landed or a skipped tap fails. Every output starts as NaN
// (the buffers' 0xff poison) inside guard zones; every case runs again with blocks and threads in
// reverse order, and must give the same bits. The emulator's counters show that the tensor cores
// ran, on the promised load path, without bank conflicts.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/base/backend.h"
#include "core/base/precision.h"
#include "core/base/rng.h"
#include "core/base/tensor.h"
#include "cuda/bf16_kernels.h"
#include "cuda/conv_tc_kernels.h"
#include "tests/common/conv_tc_cases.h"
#include "tests/common/test_util.h"
#include "tests/emu/device_buffer.h"
#include "tests/emu/emu_runtime.h"

namespace convnet::cuda {
namespace {

using emu_test::DeviceBuf;
using testing::TcCase;

constexpr uint64_t kSeed = testing::kTcSeed;
constexpr int kSmCount = 132;  // an H100 / H200

// Random problems: channels 3, multiples of 8, or anything up to 24; kernels 1-3, stride 1-2,
// padding 0-2, dilation 1-2; forced tiles and slices mixed in. Small: the emulator runs every
// thread of every block.
std::vector<TcCase> random_cases() {
  using testing::pick;
  constexpr int kCount = 16;
  constexpr int64_t kMaxFlops = 400'000;
  Rng rng(kSeed + 1);
  std::vector<TcCase> v;
  auto channels = [&] {
    const int kind = pick(rng, 0, 2);
    return kind == 0 ? 3 : kind == 1 ? 8 * pick(rng, 1, 3) : pick(rng, 1, 24);
  };
  while (static_cast<int>(v.size()) < kCount) {
    TcCase c;
    c.n = pick(rng, 1, 2);
    c.h = pick(rng, 1, 10);
    c.w = pick(rng, 1, 10);
    c.c = channels();
    c.k = channels();
    c.r = pick(rng, 1, 3);
    c.s = pick(rng, 1, 3);
    c.p = testing::conv_params(pick(rng, 1, 2), pick(rng, 1, 2), pick(rng, 0, 2), pick(rng, 0, 2), pick(rng, 1, 2),
                               pick(rng, 1, 2));
    c.bias = pick(rng, 0, 3) != 0;
    c.act = static_cast<ConvActivation>(pick(rng, 0, 2));
    const int tile = pick(rng, 0, 2);
    c.force.tile = tile == 0 ? 128 : tile == 1 ? 64 : 0;
    c.force.splits = pick(rng, 0, 2) == 0 ? pick(rng, 2, 4) : 0;
    c.misaligned = pick(rng, 0, 7) == 0;
    if (c.h + 2 * c.p.pad_h < c.p.dilation_h * (c.r - 1) + 1 || c.w + 2 * c.p.pad_w < c.p.dilation_w * (c.s - 1) + 1)
      continue;
    const int64_t p = conv_output_size(c.h, c.r, c.p.stride_h, c.p.pad_h, c.p.dilation_h);
    const int64_t q = conv_output_size(c.w, c.s, c.p.stride_w, c.p.pad_w, c.p.dilation_w);
    if (2 * c.n * p * q * c.k * c.r * c.s * c.c > kMaxFlops) continue;
    c.label = "random #" + std::to_string(v.size());
    c.seed = hash64(kSeed + 2, v.size());
    v.push_back(c);
  }
  return v;
}

// A tensor in device memory, in the precision's element type.
DeviceBuf upload(const Tensor& t, ConvPrecision precision, bool misaligned) {
  if (precision == ConvPrecision::tf32) return DeviceBuf::of(t, misaligned);
  DeviceBuf b(static_cast<size_t>(t.numel()) * 2, misaligned);
  for (int64_t i = 0; i < t.numel(); ++i) b.as<uint16_t>()[i] = to_bf16_bits(t.f32()[i]);
  return b;
}
std::vector<float> download(DeviceBuf& b, int64_t count, bool bf16) {
  std::vector<float> v(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) v[i] = bf16 ? from_bf16_bits(b.as<uint16_t>()[i]) : b.as<float>()[i];
  return v;
}

// One case in one precision: its inputs in emulated device memory, the three passes, and what the
// emulator counted in each.
class TcProblem {
 public:
  TcProblem(const TcCase& cs, ConvPrecision precision)
      : cs_(cs), precision_(precision), bf16_(precision == ConvPrecision::bf16), in_(cs, precision) {
    for (const ConvPass pass : {ConvPass::forward, ConvPass::backward_data, ConvPass::backward_filter})
      plans_.push_back(conv_tc_plan(in_.shape, pass, precision, kSmCount, cs.force));
  }

  const std::vector<ConvTcPlan>& plans() const { return plans_; }
  const ConvTcPlan& plan(ConvPass pass) const { return plans_[static_cast<int>(pass)]; }
  const testing::TcInputs& inputs() const { return in_; }
  const emu::Stats& stats(ConvPass pass) const { return stats_[static_cast<int>(pass)]; }
  // ConvOutputStats of the last run(): sum and sum of squares of y per channel.
  const std::pair<std::vector<float>, std::vector<float>>& output_sums() const { return sums_; }

  // Runs the three passes on poisoned outputs (DeviceBuf's 0xff); returns what they wrote.
  testing::TcOutputs run() {
    const bool mis = cs_.misaligned;
    const ConvShape& shape = in_.shape;
    DeviceBuf x = upload(in_.x, precision_, mis), w = upload(in_.w, precision_, mis);
    DeviceBuf dy = upload(in_.dy, precision_, mis), bias = DeviceBuf::of(in_.bias, mis);
    const size_t e = bf16_ ? 2 : 4;
    DeviceBuf y(static_cast<size_t>(in_.dy.numel()) * e, mis), dx(static_cast<size_t>(in_.x.numel()) * e, mis);
    DeviceBuf dw(static_cast<size_t>(in_.w.numel()) * 4, mis), dbias(static_cast<size_t>(cs_.k) * 4, mis);
    std::vector<DeviceBuf> ws;
    for (const ConvTcPlan& p : plans_) ws.emplace_back(p.workspace_bytes, mis);
    // The forward pass also gives ConvOutputStats: its partials after the split-K workspace.
    const ConvTcPlan& fwd = plan(ConvPass::forward);
    ws[0] = DeviceBuf(fwd.workspace_with_stats_bytes(), mis);
    DeviceBuf sum(static_cast<size_t>(cs_.k) * 4, mis), sum_sq(static_cast<size_t>(cs_.k) * 4, mis);
    const ConvOutputStats stats{sum.f(), sum_sq.f()};
    const auto wsp = [&](ConvPass pass) { return ws[static_cast<int>(pass)].raw(); };
    const float* b = cs_.bias ? bias.f() : nullptr;
    float* db = cs_.bias ? dbias.f() : nullptr;
    const auto bf = [](DeviceBuf& buf) { return buf.as<uint16_t>(); };

    track(ConvPass::forward, [&] {
      const ConvTcPlan& p = plan(ConvPass::forward);
      if (bf16_)
        conv2d_forward_tc(bf(x), bf(w), b, bf(y), cs_.act, shape, p, wsp(ConvPass::forward), nullptr, stats);
      else
        conv2d_forward_tc(x.f(), w.f(), b, y.f(), cs_.act, shape, p, wsp(ConvPass::forward), nullptr, stats);
    });
    track(ConvPass::backward_data, [&] {
      const ConvTcPlan& p = plan(ConvPass::backward_data);
      if (bf16_)
        conv2d_backward_data_tc(bf(dy), bf(w), bf(dx), shape, p, wsp(ConvPass::backward_data), nullptr);
      else
        conv2d_backward_data_tc(dy.f(), w.f(), dx.f(), shape, p, wsp(ConvPass::backward_data), nullptr);
    });
    track(ConvPass::backward_filter, [&] {
      const ConvTcPlan& p = plan(ConvPass::backward_filter);
      if (bf16_)
        conv2d_backward_filter_tc(bf(x), bf(dy), dw.f(), db, shape, p, wsp(ConvPass::backward_filter), nullptr);
      else
        conv2d_backward_filter_tc(x.f(), dy.f(), dw.f(), db, shape, p, wsp(ConvPass::backward_filter), nullptr);
    });
    for (DeviceBuf* buf : {&x, &w, &dy, &bias, &y, &dx, &dw, &dbias}) EXPECT_TRUE(buf->guards_intact());
    for (const DeviceBuf& buf : ws) EXPECT_TRUE(buf.guards_intact()) << "workspace written out of bounds";
    testing::TcOutputs out;
    out.y = download(y, in_.dy.numel(), bf16_);
    out.dx = download(dx, in_.x.numel(), bf16_);
    out.dw = download(dw, in_.w.numel(), false);
    if (cs_.bias) out.dbias = download(dbias, cs_.k, false);
    EXPECT_TRUE(sum.guards_intact() && sum_sq.guards_intact());
    sums_ = {download(sum, cs_.k, false), download(sum_sq, cs_.k, false)};
    return out;
  }

 private:
  template <class F>
  void track(ConvPass pass, F&& run_pass) {
    emu::reset_stats();
    run_pass();
    stats_[static_cast<int>(pass)] = emu::stats();
  }

  TcCase cs_;
  ConvPrecision precision_;
  bool bf16_;
  testing::TcInputs in_;
  std::vector<ConvTcPlan> plans_;
  emu::Stats stats_[3];
  std::pair<std::vector<float>, std::vector<float>> sums_;
};

struct Param {
  TcCase cs;
  ConvPrecision precision;
};

std::string param_name(const ::testing::TestParamInfo<Param>& info) {
  return std::string(conv_precision_name(info.param.precision)) + "_" + info.param.cs.name();
}

std::vector<Param> params(const std::vector<TcCase>& cases) {
  std::vector<Param> v;
  for (const ConvPrecision p : {ConvPrecision::tf32, ConvPrecision::bf16})
    for (const TcCase& c : cases) v.push_back({c, p});
  return v;
}

class ConvTcEmulation : public ::testing::TestWithParam<Param> {};

TEST_P(ConvTcEmulation, MatchesFloat64AndRerunsBitIdenticalInReverseOrder) {
  const Param& prm = GetParam();
  SCOPED_TRACE(prm.cs.label);
  TcProblem problem(prm.cs, prm.precision);
  const testing::TcOutputs first = problem.run();
  EXPECT_TRUE(testing::within_tc_bounds(first, testing::tc_host_reference(prm.cs, problem.inputs(), prm.precision),
                                        problem.inputs().shape, problem.plans(), prm.cs.act));

  // The tensor cores did the work, on the load path the plan promised, without bank conflicts.
  for (const ConvPass pass : {ConvPass::forward, ConvPass::backward_data, ConvPass::backward_filter}) {
    const emu::Stats& st = problem.stats(pass);
    SCOPED_TRACE(conv_pass_name(pass));
    EXPECT_EQ(st.shared_bank_conflicts, 0);
    // The plan's shared memory (host arithmetic) is what the kernel launched with.
    EXPECT_EQ(st.max_dynamic_shared_bytes, problem.plan(pass).shared_bytes);
    if (st.mma == 0 && pass == ConvPass::backward_data) {  // allowed only when no tap reaches any pixel
      EXPECT_TRUE(std::all_of(first.dx.begin(), first.dx.end(), [](float v) { return v == 0.0f; }));
      continue;
    }
    EXPECT_GT(st.mma, 0);
    if (problem.plan(pass).vectorized && !prm.cs.misaligned)
      EXPECT_GT(st.cp_async, 0);
    else
      EXPECT_EQ(st.cp_async, 0);
  }

  // ConvOutputStats: the channel sums of the y the kernel stored, within fp32 summation error.
  const auto first_sums = problem.output_sums();
  testing::expect_output_sums(first.y, prm.cs.k, first_sums.first, first_sums.second);

  emu::set_order(emu::Order::reverse);
  const testing::TcOutputs second = problem.run();
  emu::set_order(emu::Order::forward);
  EXPECT_TRUE(testing::same_bits(first, second));
  EXPECT_EQ(problem.output_sums(), first_sums) << "ConvOutputStats differ between runs";
}

INSTANTIATE_TEST_SUITE_P(Fixed, ConvTcEmulation, ::testing::ValuesIn(params(testing::tc_fixed_cases())), param_name);
INSTANTIATE_TEST_SUITE_P(Random, ConvTcEmulation, ::testing::ValuesIn(params(random_cases())), param_name);

// --- the bf16 conversions of the cuda backend's bf16 precision ---------------------------------

// Every class of float: zeros, denormals, ties (odd and even), near-overflow, infinities, NaN.
TEST(Bf16Conversions, MatchCoreRoundingBitForBitAndConvertBackExactly) {
  std::vector<float> x = {0.0f, -0.0f, 1.0f, -1.5f, 1e-40f, -3e-39f, 3.4e38f, -3.4e38f};
  for (const uint32_t bits :
       {0x3f808000u, 0x3f818000u, 0x3f80ffffu, 0x7f7fffffu, 0x7f800000u, 0xff800000u, 0x00008000u, 0x00018000u})
    x.push_back(std::bit_cast<float>(bits));
  Rng rng(kSeed);
  for (int i = 0; i < 1000; ++i) x.push_back(std::bit_cast<float>(static_cast<uint32_t>(rng.next_u64())));
  const int64_t n = static_cast<int64_t>(x.size());
  DeviceBuf in(x.size() * 4), bf(x.size() * 2), back(x.size() * 4);
  std::memcpy(in.raw(), x.data(), x.size() * 4);
  launch_to_bf16(in.f(), bf.as<uint16_t>(), n, nullptr);
  launch_from_bf16(bf.as<uint16_t>(), back.f(), n, nullptr);
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t got = bf.as<uint16_t>()[i];
    if (std::isnan(x[i])) {
      EXPECT_TRUE(std::isnan(from_bf16_bits(got))) << i;
      continue;
    }
    EXPECT_EQ(got, to_bf16_bits(x[i])) << "x = " << x[i];
    EXPECT_EQ(std::bit_cast<uint32_t>(back.f()[i]), uint32_t{got} << 16);
  }
  EXPECT_TRUE(in.guards_intact() && bf.guards_intact() && back.guards_intact());
}

// --- the plan ----------------------------------------------------------------------------------

ConvShape vgg_shape(int n, int hw, int c, int k) {
  return ConvShape::make(n, hw, hw, c, k, 3, 3, testing::conv_params(1, 1, 1, 1, 1, 1));
}

// The small-spatial layers of VGG on CIFAR (4x4 and 2x2 at 512 channels, batch 128) would give
// a handful of blocks; the plan splits the reduction until every pass fills at least one wave.
TEST(ConvTcPlan, SmallSpatialLayersFillAWave) {
  for (const int hw : {4, 2})
    for (const ConvPrecision prec : {ConvPrecision::tf32, ConvPrecision::bf16})
      for (const ConvPass pass : {ConvPass::forward, ConvPass::backward_data, ConvPass::backward_filter}) {
        const ConvTcPlan plan = conv_tc_plan(vgg_shape(128, hw, 512, 512), pass, prec, kSmCount);
        EXPECT_GE(plan.blocks, kSmCount) << hw << "x" << hw << " " << conv_pass_name(pass) << " "
                                         << conv_precision_name(prec) << ": " << plan.blocks << " blocks";
      }
}

// A large layer takes the large tile without splitting; shared memory and workspace follow.
TEST(ConvTcPlan, LargeLayersTakeTheLargeTileUnsplit) {
  const ConvTcPlan plan = conv_tc_plan(vgg_shape(128, 32, 64, 64), ConvPass::forward, ConvPrecision::bf16, kSmCount);
  EXPECT_EQ(plan.tile, ConvTcTile::large);
  EXPECT_EQ(plan.splits, 1);
  EXPECT_EQ(plan.workspace_bytes, 0u);
  EXPECT_TRUE(plan.vectorized);
  EXPECT_EQ(plan.shared_bytes, 4u * (128 * 64 + 128 * 64));  // 4 stages, two K-major tiles
  EXPECT_EQ(plan.block_k, 32);
}

TEST(ConvTcPlan, ChannelsThatAreNotWholeChunksTakeTheGatherPath) {
  const ConvShape rgb = vgg_shape(8, 32, 3, 64);
  EXPECT_FALSE(conv_tc_plan(rgb, ConvPass::forward, ConvPrecision::tf32, kSmCount).vectorized);
  const ConvShape c12 = vgg_shape(8, 8, 12, 16);
  EXPECT_TRUE(conv_tc_plan(c12, ConvPass::forward, ConvPrecision::tf32, kSmCount).vectorized);
  EXPECT_FALSE(conv_tc_plan(c12, ConvPass::forward, ConvPrecision::bf16, kSmCount).vectorized);
}

Conv2dParams grouped(int groups) {
  Conv2dParams p = testing::conv_params(1, 1, 1, 1, 1, 1);
  p.groups = groups;
  return p;
}

// Groups are GEMMs side by side: blocks count every group's tiles, the split-K workspace holds
// every group's output, and a group's channel counts pick the load path.
TEST(ConvTcPlan, GroupsMultiplyTheBlocksAndTheWorkspaceCoversEveryGroup) {
  // 4 groups of 16 input and 32 output channels: a forward GEMM 2048 x 32 x 144 per group.
  const ConvShape s = ConvShape::make(8, 16, 16, 64, 128, 3, 3, grouped(4));
  ConvTcPlan plan = conv_tc_plan(s, ConvPass::forward, ConvPrecision::tf32, kSmCount, {64, 2});
  EXPECT_EQ(plan.groups, 4);
  EXPECT_EQ(plan.gemm_m, 2048);
  EXPECT_EQ(plan.gemm_n, 32);
  EXPECT_EQ(plan.gemm_k, 144);
  EXPECT_EQ(plan.outputs(), 2048 * 128);
  EXPECT_EQ(plan.blocks, 2 * 4 * (2048 / 64));
  EXPECT_EQ(plan.workspace_bytes, size_t{4} * 2 * 2048 * 128);
  EXPECT_EQ(plan.stats_workspace_bytes, size_t{4} * 2 * (2048 / 64) * 128);  // stats of every channel
  EXPECT_TRUE(plan.vectorized);
  // Unforced, 4 x 32 small tiles do not fill the 132 SMs: the reduction is split.
  plan = conv_tc_plan(s, ConvPass::forward, ConvPrecision::tf32, kSmCount);
  EXPECT_EQ(plan.tile, ConvTcTile::small);
  EXPECT_GT(plan.splits, 1);
  EXPECT_EQ(plan.blocks, plan.splits * 4 * 32);
  // Backward-filter, 3 slices: 4 groups x 1 x 3 tiles; the partial dw of all 128 filters, then
  // dbias in 2 chunks of the 2048 rows.
  plan = conv_tc_plan(s, ConvPass::backward_filter, ConvPrecision::bf16, kSmCount, {64, 3});
  EXPECT_EQ(plan.gemm_m, 32);
  EXPECT_EQ(plan.gemm_n, 144);
  EXPECT_EQ(plan.blocks, 3 * 4 * 3);
  EXPECT_EQ(plan.workspace_bytes, size_t{4} * (3 * 128 * 144 + 2 * 128));
  EXPECT_TRUE(plan.vectorized);  // 16 and 32 channels per group: whole bf16 chunks

  // Depthwise: one input channel per group gathers, in both precisions and every pass.
  const ConvShape d = ConvShape::make(8, 8, 8, 32, 64, 3, 3, grouped(32));
  for (const ConvPrecision prec : {ConvPrecision::tf32, ConvPrecision::bf16})
    for (const ConvPass pass : {ConvPass::forward, ConvPass::backward_data, ConvPass::backward_filter})
      EXPECT_FALSE(conv_tc_plan(d, pass, prec, kSmCount).vectorized);
  // 4 channels per group: whole TF32 chunks, not BF16 ones.
  const ConvShape g4 = ConvShape::make(8, 8, 8, 16, 16, 3, 3, grouped(4));
  EXPECT_TRUE(conv_tc_plan(g4, ConvPass::backward_data, ConvPrecision::tf32, kSmCount).vectorized);
  EXPECT_FALSE(conv_tc_plan(g4, ConvPass::backward_data, ConvPrecision::bf16, kSmCount).vectorized);
}

TEST(ConvTcPlan, EntryPointsRejectAPlanForAnotherGroupCount) {
  // Backward-filter GEMMs of the same extents (8 x 72 x 128): one group of 8 channels, two of 8 each.
  const ConvShape one = ConvShape::make(2, 8, 8, 8, 8, 3, 3, grouped(1));
  const ConvShape two = ConvShape::make(2, 8, 8, 16, 16, 3, 3, grouped(2));
  const ConvTcPlan plan = conv_tc_plan(one, ConvPass::backward_filter, ConvPrecision::tf32, kSmCount);
  ASSERT_EQ(plan.gemm_m, conv_tc_plan(two, ConvPass::backward_filter, ConvPrecision::tf32, kSmCount).gemm_m);
  std::vector<float> x(2 * 8 * 8 * 16), dy(2 * 8 * 8 * 16), dw(16 * 9 * 8);
  std::vector<unsigned char> ws(plan.workspace_bytes + 16);
  const std::string what = testing::error_of(
      [&] { conv2d_backward_filter_tc(x.data(), dy.data(), dw.data(), nullptr, two, plan, ws.data(), nullptr); });
  EXPECT_NE(what.find("another problem"), std::string::npos) << what;
}

TEST(ConvTcPlan, EntryPointsRejectAPlanForAnotherProblem) {
  const ConvShape a = vgg_shape(2, 8, 8, 8), b = vgg_shape(2, 8, 8, 16);
  const ConvTcPlan plan = conv_tc_plan(a, ConvPass::forward, ConvPrecision::tf32, kSmCount);
  std::vector<float> x(2 * 8 * 8 * 8), w(16 * 9 * 8), y(2 * 8 * 8 * 16);
  EXPECT_THROW(
      conv2d_forward_tc(x.data(), w.data(), nullptr, y.data(), ConvActivation::none, b, plan, nullptr, nullptr), Error);
  const ConvTcPlan bf = conv_tc_plan(a, ConvPass::forward, ConvPrecision::bf16, kSmCount);
  EXPECT_THROW(conv2d_forward_tc(x.data(), w.data(), nullptr, y.data(), ConvActivation::none, a, bf, nullptr, nullptr),
               Error);
  EXPECT_THROW(conv2d_forward_tc(nullptr, w.data(), nullptr, y.data(), ConvActivation::none, a, plan, nullptr, nullptr),
               Error);
}

}  // namespace
}  // namespace convnet::cuda
