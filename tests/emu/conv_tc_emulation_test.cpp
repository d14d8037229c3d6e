// v4, our tensor-core convolutions (cuda/conv_tc_*.cu), run on the CPU under the emulator with its
// PTX layer (tests/emu/fake/cuda/ptx.cuh: mma.sync, ldmatrix, deferred cp.async) and checked against
// float64 references (tests/common/naive_ops.h), in TF32 and in BF16, for all three passes.
//
// The references see the inputs the tensor cores see: TF32 inputs rounded as cvt.rna does, BF16
// inputs are bf16 values to begin with. What is left is fp32 accumulation (and the final bf16
// rounding of y and dx), so each element must lie within
//     (reduction length + slices + 8) * 2^-23 * sum |a*b|   (+ 2^-8 |ref| for a bf16 output)
// of the reference, where sum |a*b| is the same convolution of the absolute values. A fragment in
// the wrong place, a stage read before it landed or a skipped tap is off by O(sum |a*b|).
// Every output starts as NaN (the buffers' 0xff poison) inside guard zones; every case runs again
// with blocks and threads in reverse order, and must give the same bits.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "core/base/backend.h"
#include "core/base/precision.h"
#include "core/base/rng.h"
#include "core/base/tensor.h"
#include "cuda/bf16_kernels.h"
#include "cuda/conv_tc_kernels.h"
#include "tests/common/naive_ops.h"
#include "tests/common/test_util.h"
#include "tests/emu/device_buffer.h"
#include "tests/emu/emu_ptx.h"
#include "tests/emu/emu_runtime.h"

namespace convnet::cuda {
namespace {

using emu_test::DeviceBuf;

constexpr uint64_t kSeed = 0x7c0dec0deULL;
constexpr int kSmCount = 132;  // an H100 / H200

struct Case {
  std::string label;
  int n = 1, h = 1, w = 1, c = 1, k = 1, r = 1, s = 1;
  Conv2dParams p;
  bool bias = true;
  ConvActivation act = ConvActivation::none;
  ConvTcOverrides force;  // tile and splits, 0 = the plan's
  bool misaligned = false;
  uint64_t seed = 0;

  std::string name() const {
    std::ostringstream o;
    o << "n" << n << "_" << h << "x" << w << "x" << c << "_k" << k << "_" << r << "x" << s << "_st" << p.stride_h << "x"
      << p.stride_w << "_pad" << p.pad_h << "x" << p.pad_w << "_dil" << p.dilation_h << "x" << p.dilation_w;
    if (!bias) o << "_nobias";
    if (act == ConvActivation::relu) o << "_relu";
    if (act == ConvActivation::gelu) o << "_gelu";
    if (force.tile) o << "_tile" << force.tile;
    if (force.splits) o << "_splits" << force.splits;
    if (misaligned) o << "_misaligned";
    return o.str();
  }
};

Case make_case(std::string label, int n, int h, int w, int c, int k, int r, int s, Conv2dParams p) {
  Case cs;
  cs.label = std::move(label);
  cs.n = n;
  cs.h = h;
  cs.w = w;
  cs.c = c;
  cs.k = k;
  cs.r = r;
  cs.s = s;
  cs.p = p;
  return cs;
}

std::vector<Case> fixed_cases() {
  using testing::conv_params;
  std::vector<Case> v;
  v.push_back(make_case("RGB input layer, C=3: the gather path", 2, 8, 8, 3, 16, 3, 3, conv_params(1, 1, 1, 1, 1, 1)));
  v.push_back(
      make_case("C, K multiples of 8: the cp.async path", 2, 8, 8, 16, 16, 3, 3, conv_params(1, 1, 1, 1, 1, 1)));
  v.push_back(make_case("C multiple of 4 not 8: vector in TF32, gather in BF16", 1, 6, 6, 12, 20, 3, 3,
                        conv_params(1, 1, 1, 1, 1, 1)));
  v.push_back(make_case("odd C and K, stride 2", 1, 9, 7, 5, 6, 3, 3, conv_params(2, 2, 1, 1, 1, 1)));
  v.push_back(make_case("stride 3, no padding: 9 phases", 2, 13, 13, 8, 8, 3, 3, conv_params(3, 3, 0, 0, 1, 1)));
  v.push_back(make_case("5x5 kernel, dilation 2", 1, 11, 10, 8, 8, 5, 5, conv_params(1, 1, 2, 2, 2, 2)));
  v.push_back(make_case("one element everywhere", 1, 1, 1, 1, 1, 1, 1, conv_params(1, 1, 0, 0, 1, 1)));
  v.push_back(
      make_case("stride 2 with dilation 2: phases no tap reaches", 2, 9, 9, 8, 8, 3, 3, conv_params(2, 2, 2, 2, 2, 2)));
  v.push_back(
      make_case("1x1 kernel, stride 3: pixels no output reads", 2, 7, 8, 8, 16, 1, 1, conv_params(3, 3, 0, 0, 1, 1)));
  v.push_back(make_case("rows and columns past one block tile", 3, 9, 9, 8, 72, 1, 1, conv_params(1, 1, 0, 0, 1, 1)));
  {
    Case c = make_case("ReLU epilogue, forced 3 slices", 2, 6, 6, 16, 8, 3, 3, conv_params(1, 1, 1, 1, 1, 1));
    c.act = ConvActivation::relu;
    c.force.splits = 3;
    v.push_back(c);
  }
  {
    Case c = make_case("GELU epilogue, large tile", 1, 6, 6, 8, 8, 3, 3, conv_params(1, 1, 1, 1, 1, 1));
    c.act = ConvActivation::gelu;
    c.force.tile = 128;
    v.push_back(c);
  }
  {
    Case c = make_case("every buffer misaligned: the gather path", 2, 6, 6, 8, 8, 3, 3, conv_params(1, 1, 1, 1, 1, 1));
    c.misaligned = true;
    c.bias = false;
    v.push_back(c);
  }
  {
    Case c = make_case("a long reduction in 5 slices, small tile", 2, 8, 8, 32, 8, 3, 3, conv_params(1, 1, 1, 1, 1, 1));
    c.force = {64, 5};
    v.push_back(c);
  }
  for (size_t i = 0; i < v.size(); ++i) v[i].seed = hash64(kSeed, i);
  return v;
}

int pick(Rng& rng, int low, int high) {
  return low + static_cast<int>(rng.below(static_cast<uint64_t>(high - low + 1)));
}

// Random problems: channels 3, multiples of 8, or anything up to 24; kernels 1-3, stride 1-2,
// padding 0-2, dilation 1-2; forced tiles and slices mixed in. Small: the emulator runs every
// thread of every block.
std::vector<Case> random_cases() {
  constexpr int kCount = 16;
  constexpr int64_t kMaxFlops = 400'000;
  Rng rng(kSeed + 1);
  std::vector<Case> v;
  auto channels = [&] {
    const int kind = pick(rng, 0, 2);
    return kind == 0 ? 3 : kind == 1 ? 8 * pick(rng, 1, 3) : pick(rng, 1, 24);
  };
  while (static_cast<int>(v.size()) < kCount) {
    Case c;
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

float tf32_value(float x) {
  const uint32_t bits = emu::cvt_rna_tf32(x);
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
float bf16_value(uint16_t b) {
  const uint32_t bits = uint32_t{b} << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// The tensor's values as the precision's kernel receives them (BF16: rounded once, for good).
Tensor representable(const Tensor& t, ConvPrecision precision) {
  Tensor out = t.clone();
  float* v = out.f32();
  for (int64_t i = 0; i < out.numel(); ++i)
    v[i] = precision == ConvPrecision::bf16 ? bf16_value(emu::cvt_rn_bf16(v[i])) : v[i];
  return out;
}
// The values the tensor cores multiply.
Tensor as_multiplied(const Tensor& t, ConvPrecision precision) {
  Tensor out = t.clone();
  if (precision == ConvPrecision::tf32)
    for (int64_t i = 0; i < out.numel(); ++i) out.f32()[i] = tf32_value(out.f32()[i]);
  return out;
}
Tensor absolute(const Tensor& t) {
  Tensor out = t.clone();
  for (int64_t i = 0; i < out.numel(); ++i) out.f32()[i] = std::fabs(out.f32()[i]);
  return out;
}

// A tensor in device memory, in the precision's element type.
DeviceBuf upload(const Tensor& t, ConvPrecision precision, bool misaligned) {
  if (precision == ConvPrecision::tf32) return DeviceBuf::of(t, misaligned);
  DeviceBuf b(static_cast<size_t>(t.numel()) * 2, misaligned);
  for (int64_t i = 0; i < t.numel(); ++i) b.as<uint16_t>()[i] = emu::cvt_rn_bf16(t.f32()[i]);
  return b;
}
std::vector<float> download(DeviceBuf& b, int64_t count, bool bf16) {
  std::vector<float> v(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) v[i] = bf16 ? bf16_value(b.as<uint16_t>()[i]) : b.as<float>()[i];
  return v;
}

double activate(double v, ConvActivation act) {
  if (act == ConvActivation::relu) return v > 0 ? v : 0;
  if (act == ConvActivation::gelu) return testing::naive::gelu(v);
  return v;
}

struct Outputs {
  std::vector<float> y, dx, dw, dbias;
};

class TcProblem {
 public:
  TcProblem(const Case& cs, ConvPrecision precision)
      : cs_(cs),
        precision_(precision),
        bf16_(precision == ConvPrecision::bf16),
        shape_(ConvShape::make(cs.n, cs.h, cs.w, cs.c, cs.k, cs.r, cs.s, cs.p)) {
    Rng rng(cs.seed);
    x_ = representable(testing::random_tensor({cs.n, cs.h, cs.w, cs.c}, rng), precision);
    w_ = representable(testing::random_tensor({cs.k, cs.r, cs.s, cs.c}, rng), precision);
    bias_ = testing::random_tensor({cs.k}, rng);
    dy_ = representable(testing::random_tensor({cs.n, shape_.p, shape_.q, cs.k}, rng), precision);
    for (const ConvPass pass : {ConvPass::forward, ConvPass::backward_data, ConvPass::backward_filter})
      plans_.push_back(conv_tc_plan(shape_, pass, precision, kSmCount, cs.force));
  }

  const ConvTcPlan& plan(ConvPass pass) const { return plans_[static_cast<int>(pass)]; }

  // Runs the three passes on poisoned outputs; returns what they wrote.
  Outputs run() {
    const bool mis = cs_.misaligned;
    DeviceBuf x = upload(x_, precision_, mis), w = upload(w_, precision_, mis), dy = upload(dy_, precision_, mis);
    DeviceBuf bias = DeviceBuf::of(bias_, mis);
    const size_t e = bf16_ ? 2 : 4;
    DeviceBuf y(static_cast<size_t>(dy_.numel()) * e, mis), dx(static_cast<size_t>(x_.numel()) * e, mis);
    DeviceBuf dw(static_cast<size_t>(w_.numel()) * 4, mis), dbias(static_cast<size_t>(cs_.k) * 4, mis);
    std::vector<DeviceBuf> ws;
    for (const ConvTcPlan& p : plans_) ws.emplace_back(p.workspace_bytes, mis);
    const auto wsp = [&](ConvPass pass) { return ws[static_cast<int>(pass)].raw(); };
    const float* b = cs_.bias ? bias.f() : nullptr;
    float* db = cs_.bias ? dbias.f() : nullptr;

    passes_.clear();
    track(ConvPass::forward, [&] {
      if (bf16_)
        conv2d_forward_tc(x.as<uint16_t>(), w.as<uint16_t>(), b, y.as<uint16_t>(), cs_.act, shape_,
                          plan(ConvPass::forward), wsp(ConvPass::forward), nullptr);
      else
        conv2d_forward_tc(x.f(), w.f(), b, y.f(), cs_.act, shape_, plan(ConvPass::forward), wsp(ConvPass::forward),
                          nullptr);
    });
    track(ConvPass::backward_data, [&] {
      if (bf16_)
        conv2d_backward_data_tc(dy.as<uint16_t>(), w.as<uint16_t>(), dx.as<uint16_t>(), shape_,
                                plan(ConvPass::backward_data), wsp(ConvPass::backward_data), nullptr);
      else
        conv2d_backward_data_tc(dy.f(), w.f(), dx.f(), shape_, plan(ConvPass::backward_data),
                                wsp(ConvPass::backward_data), nullptr);
    });
    track(ConvPass::backward_filter, [&] {
      if (bf16_)
        conv2d_backward_filter_tc(x.as<uint16_t>(), dy.as<uint16_t>(), dw.f(), db, shape_,
                                  plan(ConvPass::backward_filter), wsp(ConvPass::backward_filter), nullptr);
      else
        conv2d_backward_filter_tc(x.f(), dy.f(), dw.f(), db, shape_, plan(ConvPass::backward_filter),
                                  wsp(ConvPass::backward_filter), nullptr);
    });
    for (DeviceBuf* buf : {&x, &w, &dy, &bias, &y, &dx, &dw, &dbias}) EXPECT_TRUE(buf->guards_intact());
    for (const DeviceBuf& buf : ws) EXPECT_TRUE(buf.guards_intact()) << "workspace written out of bounds";
    Outputs out;
    out.y = download(y, dy_.numel(), bf16_);
    out.dx = download(dx, x_.numel(), bf16_);
    out.dw = download(dw, w_.numel(), false);
    if (cs_.bias) out.dbias = download(dbias, cs_.k, false);
    return out;
  }

  void check(const Outputs& out) const {
    const Tensor xm = as_multiplied(x_, precision_), wm = as_multiplied(w_, precision_);
    const Tensor dym = as_multiplied(dy_, precision_);
    const Tensor* b = cs_.bias ? &bias_ : nullptr;
    const Tensor abs_bias = absolute(bias_);
    const auto y_ref = testing::naive::conv2d_forward(xm, wm, b, cs_.p);
    const auto y_mag =
        testing::naive::conv2d_forward(absolute(xm), absolute(wm), cs_.bias ? &abs_bias : nullptr, cs_.p);
    std::vector<double> y_act(y_ref.size());
    for (size_t i = 0; i < y_ref.size(); ++i) y_act[i] = activate(y_ref[i], cs_.act);
    // GELU's slope reaches 1.13 and erff adds its own few ulps.
    const double act_gain = cs_.act == ConvActivation::gelu ? 1.2 : 1.0;
    expect_close("forward y", out.y, y_act, y_mag, act_gain, shape_.r * shape_.s * shape_.c, ConvPass::forward, bf16_);
    expect_close("backward-data dx", out.dx, testing::naive::conv2d_backward_data(dym, wm, x_.shape(), cs_.p),
                 testing::naive::conv2d_backward_data(absolute(dym), absolute(wm), x_.shape(), cs_.p), 1.0,
                 shape_.r * shape_.s * shape_.k, ConvPass::backward_data, bf16_);
    expect_close("backward-filter dw", out.dw, testing::naive::conv2d_backward_filter(xm, dym, w_.shape(), cs_.p),
                 testing::naive::conv2d_backward_filter(absolute(xm), absolute(dym), w_.shape(), cs_.p), 1.0,
                 int64_t{shape_.n} * shape_.p * shape_.q, ConvPass::backward_filter, false);
    if (cs_.bias)
      expect_close("backward-filter dbias", out.dbias, testing::naive::sum_over_last_dim(dy_),
                   testing::naive::sum_over_last_dim(absolute(dy_)), 1.0, int64_t{shape_.n} * shape_.p * shape_.q,
                   ConvPass::backward_filter, false);
  }

  // The launches of each pass: whether the tensor cores ran, and on which load path.
  struct PassStats {
    emu::Stats stats;
  };
  const std::vector<PassStats>& passes() const { return passes_; }

 private:
  template <class F>
  void track(ConvPass pass, F&& run_pass) {
    emu::reset_stats();
    run_pass();
    passes_.push_back({emu::stats()});
    (void)pass;
  }

  void expect_close(const char* what, const std::vector<float>& got, const std::vector<double>& ref,
                    const std::vector<double>& mag, double gain, int64_t reduction, ConvPass pass,
                    bool bf16_output) const {
    ASSERT_EQ(got.size(), ref.size()) << what;
    const double u = std::ldexp(1.0, -23);
    const double slack = static_cast<double>(reduction + plan(pass).splits + 8) * u;
    int bad = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      const double bound =
          gain * (slack * mag[i] + (bf16_output ? std::ldexp(std::fabs(ref[i]), -8) : 4 * u * std::fabs(ref[i]))) +
          1e-30;
      const double err = std::fabs(static_cast<double>(got[i]) - ref[i]);
      if (!(err <= bound) && ++bad <= 3)  // NaN fails
        ADD_FAILURE() << what << "[" << i << "] = " << got[i] << ", expected " << ref[i] << " (error " << err
                      << ", bound " << bound << ")";
    }
    EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << got.size() << " elements out of bounds";
  }

  Case cs_;
  ConvPrecision precision_;
  bool bf16_;
  ConvShape shape_;
  Tensor x_, w_, bias_, dy_;
  std::vector<ConvTcPlan> plans_;
  std::vector<PassStats> passes_;
};

struct Param {
  Case cs;
  ConvPrecision precision;
};

std::string param_name(const ::testing::TestParamInfo<Param>& info) {
  return std::string(conv_precision_name(info.param.precision)) + "_" + info.param.cs.name();
}

std::vector<Param> params(const std::vector<Case>& cases) {
  std::vector<Param> v;
  for (const ConvPrecision p : {ConvPrecision::tf32, ConvPrecision::bf16})
    for (const Case& c : cases) v.push_back({c, p});
  return v;
}

class ConvTcEmulation : public ::testing::TestWithParam<Param> {};

TEST_P(ConvTcEmulation, MatchesFloat64AndRerunsBitIdenticalInReverseOrder) {
  const Param& prm = GetParam();
  SCOPED_TRACE(prm.cs.label);
  TcProblem problem(prm.cs, prm.precision);
  const Outputs first = problem.run();
  problem.check(first);

  // The tensor cores did the work, on the load path the plan promised, without bank conflicts.
  for (const ConvPass pass : {ConvPass::forward, ConvPass::backward_data, ConvPass::backward_filter}) {
    const emu::Stats& st = problem.passes()[static_cast<int>(pass)].stats;
    const ConvTcPlan& plan = problem.plan(pass);
    SCOPED_TRACE(conv_pass_name(pass));
    EXPECT_EQ(st.shared_bank_conflicts, 0);
    if (st.mma == 0 && pass == ConvPass::backward_data) {  // allowed only when no tap reaches any pixel
      EXPECT_TRUE(std::all_of(first.dx.begin(), first.dx.end(), [](float v) { return v == 0.0f; }));
      continue;
    }
    EXPECT_GT(st.mma, 0);
    if (plan.vectorized && !prm.cs.misaligned)
      EXPECT_GT(st.cp_async, 0);
    else
      EXPECT_EQ(st.cp_async, 0);
  }

  Outputs second;
  emu::set_order(emu::Order::reverse);
  second = problem.run();
  emu::set_order(emu::Order::forward);
  const auto same = [](const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
  };
  EXPECT_TRUE(same(first.y, second.y)) << "y differs between runs";
  EXPECT_TRUE(same(first.dx, second.dx)) << "dx differs between runs";
  EXPECT_TRUE(same(first.dw, second.dw)) << "dw differs between runs";
  EXPECT_TRUE(same(first.dbias, second.dbias)) << "dbias differs between runs";
}

INSTANTIATE_TEST_SUITE_P(Fixed, ConvTcEmulation, ::testing::ValuesIn(params(fixed_cases())), param_name);
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
