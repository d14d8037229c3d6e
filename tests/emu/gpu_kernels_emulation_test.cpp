// Our non-convolution CUDA kernels (activations, pooling, column reductions, batch norm, fill,
// dropout, softmax cross-entropy, SGD, the cudnn backend's max-pool argmax) run on the CPU under
// the fiber emulator (tests/emu/emu_runtime.h) and are checked against the cpu backend, the
// reference every GPU backend matches. The kernel sources are compiled as they are, launch syntax
// aside (tests/emu/cuda_to_cpp.py); the softmax kernel's warp shuffles run on the emulator's
// warp lock step.
//
// The launchers get "device" buffers that are plain host memory with guard zones on both sides.
// Every byte starts as 0xff (a NaN for floats and doubles, -1 for int32, 255 for bytes), so an
// output element a kernel skips, or scratch it reads before writing, shows up as NaN or a wrong
// index, and a write out of bounds changes a guard. Buffers are 16-byte aligned (the 128-bit
// paths) or 4 bytes past a boundary (the scalar paths). Where the cpu and GPU formulas are the
// same operation by operation, results must be equal bit for bit; elsewhere within 1e-5 relative L2.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "core/base/backend.h"
#include "core/base/op_checks.h"
#include "core/base/precision.h"
#include "core/base/rng.h"
#include "core/base/tensor.h"
#include "core/cpu/cpu_backend.h"
#include "cuda/activation_kernels.h"
#include "cuda/batch_norm_kernels.h"
#include "cuda/common_kernels.h"
#include "cuda/cudnn_pool_argmax.h"
#include "cuda/pool_kernels.h"
#include "cuda/reduce_kernels.h"
#include "tests/common/test_util.h"
#include "tests/emu/device_buffer.h"
#include "tests/emu/emu_runtime.h"
// The stand-in CUDA language header, for the shuffles the warp tests call directly.
#include "tests/emu/fake/cuda_runtime.h"

namespace convnet::cuda {
namespace {

using convnet::emu_test::bits_equal;
using convnet::emu_test::DeviceBuf;
using convnet::testing::close_l2;
using convnet::testing::random_labels;
using convnet::testing::random_tensor;

constexpr double kTol = 1e-5;

Backend& cpu() {
  static const std::unique_ptr<Backend> backend = make_cpu_backend();
  return *backend;
}

// ---------------------------------------------------------------------------------------------
// Activations

class ActivationEmulation : public ::testing::TestWithParam<std::tuple<int64_t, bool>> {};

TEST_P(ActivationEmulation, MatchesCpu) {
  const auto [n, misaligned] = GetParam();
  Rng rng(static_cast<uint64_t>(n) * 2 + (misaligned ? 1 : 0));
  const Shape shape{n};
  const Tensor x = random_tensor(shape, rng, -4.0f, 4.0f);
  const Tensor dy = random_tensor(shape, rng, -1.0f, 1.0f);
  Tensor y_relu = convnet::testing::poisoned(shape), y_gelu = convnet::testing::poisoned(shape);
  Tensor dx_relu = convnet::testing::poisoned(shape), dx_gelu = convnet::testing::poisoned(shape);
  cpu().relu_forward(x, y_relu);
  cpu().relu_backward(y_relu, dy, dx_relu);
  cpu().gelu_forward(x, y_gelu);
  cpu().gelu_backward(x, dy, dx_gelu);

  DeviceBuf gx = DeviceBuf::of(x, misaligned), gdy = DeviceBuf::of(dy, misaligned);
  const size_t bytes = x.bytes();
  DeviceBuf gy(bytes, misaligned), gdx(bytes, misaligned), gyg(bytes, misaligned), gdxg(bytes, misaligned);
  emu::reset_stats();
  launch_relu_forward(gx.f(), gy.f(), n, nullptr);
  EXPECT_TRUE(bits_equal(gy.download(shape), y_relu)) << "relu forward";
  launch_relu_backward(gy.f(), gdy.f(), gdx.f(), n, nullptr);
  EXPECT_TRUE(bits_equal(gdx.download(shape), dx_relu)) << "relu backward";
  launch_gelu_forward(gx.f(), gyg.f(), n, nullptr);
  EXPECT_TRUE(close_l2(gyg.download(shape), y_gelu, kTol)) << "gelu forward";
  launch_gelu_backward(gx.f(), gdy.f(), gdxg.f(), n, nullptr);
  EXPECT_TRUE(close_l2(gdxg.download(shape), dx_gelu, kTol)) << "gelu backward";
  // The 128-bit path runs exactly when every buffer is aligned and there is a whole vector.
  EXPECT_EQ(emu::stats().vector_accesses > 0, !misaligned && n >= 4);
  // In place: dx aliases dy.
  DeviceBuf inplace = DeviceBuf::of(dy, misaligned);
  launch_relu_backward(gy.f(), inplace.f(), inplace.f(), n, nullptr);
  EXPECT_TRUE(bits_equal(inplace.download(shape), dx_relu)) << "relu backward in place";
  for (DeviceBuf* b : {&gx, &gdy, &gy, &gdx, &gyg, &gdxg, &inplace}) EXPECT_TRUE(b->guards_intact());
}

INSTANTIATE_TEST_SUITE_P(Sizes, ActivationEmulation,
                         ::testing::Combine(::testing::Values<int64_t>(1, 3, 4, 7, 1029), ::testing::Bool()));

// NaN and infinities through the ReLU kernels, on the vector path and the scalar tail. NaN inputs
// carry a payload unlike the poison's, so a kernel that skipped an element cannot pass by luck; a
// kernel computing `x > 0 ? x : 0` (NaN to 0) fails the isnan checks.
TEST(ActivationEmulation, ReluPropagatesNanAndInfinityLikeCpu) {
  const int64_t n = 37;
  const Shape shape{n};
  Rng rng(37);
  Tensor x = random_tensor(shape, rng, -4.0f, 4.0f);
  Tensor dy = random_tensor(shape, rng, -1.0f, 1.0f);
  const float payload_nan = std::bit_cast<float>(0x7fc0beefu);
  const std::vector<int64_t> nan_at = {0, 5, 6, 35};  // vector lanes and the tail
  for (int64_t i : nan_at) x.f32()[i] = payload_nan;
  x.f32()[9] = std::numeric_limits<float>::infinity();
  x.f32()[10] = -std::numeric_limits<float>::infinity();
  dy.f32()[9] = payload_nan;  // a NaN gradient where y > 0 flows on
  Tensor y = convnet::testing::poisoned(shape), dx = convnet::testing::poisoned(shape);
  cpu().relu_forward(x, y);
  cpu().relu_backward(y, dy, dx);
  for (int64_t i : nan_at) {
    ASSERT_TRUE(std::isnan(y.f32()[i])) << i;
    ASSERT_EQ(dx.f32()[i], dy.f32()[i]) << i;
  }
  ASSERT_TRUE(std::isnan(dx.f32()[9]));

  DeviceBuf gx = DeviceBuf::of(x, false), gdy = DeviceBuf::of(dy, false);
  DeviceBuf gy(x.bytes(), false), gdx(x.bytes(), false);
  launch_relu_forward(gx.f(), gy.f(), n, nullptr);
  EXPECT_TRUE(bits_equal(gy.download(shape), y)) << "relu forward";
  launch_relu_backward(gy.f(), gdy.f(), gdx.f(), n, nullptr);
  EXPECT_TRUE(bits_equal(gdx.download(shape), dx)) << "relu backward";
}

// ReLU with a bf16 output (bf16 activation storage), bit for bit against the cpu backend in bf16
// precision: random values plus ties, a NaN, infinities and a denormal that rounds to 0, on the
// 4-wide path and the scalar tail; backward in place too. A kernel truncating instead of rounding
// to nearest even fails on the ties and on about half the random values.
class ActivationBf16Emulation : public ::testing::TestWithParam<std::tuple<int64_t, bool>> {};

TEST_P(ActivationBf16Emulation, ReluMatchesCpu) {
  const auto [n, misaligned] = GetParam();
  Rng rng(static_cast<uint64_t>(n) * 2 + (misaligned ? 1 : 0) + 500);
  const Shape shape{n};
  Tensor x = random_tensor(shape, rng, -4.0f, 4.0f);
  const std::vector<float> special = {std::bit_cast<float>(0x3f808000u),       std::bit_cast<float>(0x3f818000u),
                                      std::bit_cast<float>(0x7fc0beefu),       std::numeric_limits<float>::infinity(),
                                      -std::numeric_limits<float>::infinity(), 1.0e-45f};
  for (size_t k = 0; k < special.size() && static_cast<int64_t>(k) * 3 < n; ++k) x.f32()[k * 3] = special[k];
  const Tensor dy = random_tensor(shape, rng, -1.0f, 1.0f);
  auto bf16 = make_cpu_backend(Precision::bf16);
  Tensor y(shape, DType::bf16), dx = convnet::testing::poisoned(shape);
  bf16->relu_forward(x, y);
  bf16->relu_backward(y, dy, dx);

  DeviceBuf gx = DeviceBuf::of(x, misaligned), gdy = DeviceBuf::of(dy, misaligned);
  DeviceBuf gy(y.bytes(), misaligned), gdx(x.bytes(), misaligned);
  emu::reset_stats();
  launch_relu_forward_bf16(gx.f(), gy.as<uint16_t>(), n, nullptr);
  EXPECT_TRUE(bits_equal(gy.download(shape, DType::bf16), y)) << "relu forward";
  EXPECT_EQ(emu::stats().vector_accesses > 0, !misaligned && n >= 4);
  launch_relu_backward_bf16(gy.as<uint16_t>(), gdy.f(), gdx.f(), n, nullptr);
  EXPECT_TRUE(bits_equal(gdx.download(shape), dx)) << "relu backward";
  DeviceBuf inplace = DeviceBuf::of(dy, misaligned);
  launch_relu_backward_bf16(gy.as<uint16_t>(), inplace.f(), inplace.f(), n, nullptr);
  EXPECT_TRUE(bits_equal(inplace.download(shape), dx)) << "relu backward in place";
  for (DeviceBuf* b : {&gx, &gdy, &gy, &gdx, &inplace}) EXPECT_TRUE(b->guards_intact());
}

INSTANTIATE_TEST_SUITE_P(Sizes, ActivationBf16Emulation,
                         ::testing::Combine(::testing::Values<int64_t>(1, 3, 4, 7, 18, 1029), ::testing::Bool()));

// Every batchnorm launcher with a bf16 x (a conv output stored bf16) gives the bits it gives on
// that x widened to f32: the same float arithmetic on the same values, on the 4-wide paths (8-byte
// aligned bf16) and the scalar ones. A kernel reading the bf16 bits as something else, or skipping
// an element (the outputs start as NaN), fails.
class BatchNormBf16InputEmulation : public ::testing::TestWithParam<std::tuple<int64_t, int64_t, bool>> {};

TEST_P(BatchNormBf16InputEmulation, EveryLauncherGivesTheBitsOfTheWidenedInput) {
  const auto [rows, channels, misaligned] = GetParam();
  Rng rng(static_cast<uint64_t>(rows * 131 + channels) + (misaligned ? 7 : 0));
  const Shape xs{rows, channels}, cs{channels};
  const Tensor x_bf16 = convnet::testing::bf16_tensor(random_tensor(xs, rng, -2.0f, 3.0f));
  Tensor x_wide(xs);
  widen_bf16(x_bf16.data<uint16_t>(), x_wide.f32(), x_wide.numel());
  const Tensor dy = random_tensor(xs, rng), gamma = random_tensor(cs, rng, 0.5f, 1.5f);
  const Tensor beta = random_tensor(cs, rng), stat = random_tensor(cs, rng, 0.5f, 2.0f);
  // Runs all seven launchers on gx; returns their outputs in order.
  const auto run_all = [&](DeviceBuf& gx, bool bf16) {
    const ActivationIn x = bf16 ? ActivationIn(gx.as<uint16_t>()) : ActivationIn(gx.f());
    DeviceBuf gdy = DeviceBuf::of(dy, misaligned), ggamma = DeviceBuf::of(gamma), gbeta = DeviceBuf::of(beta);
    DeviceBuf grm = DeviceBuf::of(stat), grv = DeviceBuf::of(stat), gm2 = DeviceBuf::of(stat);
    DeviceBuf scratch(batch_norm_scratch_bytes(rows, channels));
    const size_t xb = x_wide.bytes(), cb = gamma.bytes();
    DeviceBuf y(xb, misaligned), mean(cb), invstd(cb), y_eval(xb, misaligned), dx(xb, misaligned), dg(cb), db(cb);
    DeviceBuf y_mom(xb, misaligned), lmean(cb), lm2(cb), sdy(cb), sdyx(cb), dx_apply(xb, misaligned);
    DeviceBuf mom_mean(cb), mom_invstd(cb);
    launch_batch_norm_forward_train(x, ggamma.f(), gbeta.f(), y.f(), mean.f(), invstd.f(), grm.f(), grv.f(), rows,
                                    channels, 0.1f, 1e-5f, scratch.raw(), nullptr);
    launch_batch_norm_forward_eval(x, ggamma.f(), gbeta.f(), gbeta.f(), grv.f(), rows, channels, 1e-5f, y_eval.f(),
                                   scratch.raw(), nullptr);
    launch_batch_norm_backward(x, gdy.f(), ggamma.f(), mean.f(), invstd.f(), rows, channels, dx.f(), dg.f(), db.f(),
                               scratch.raw(), nullptr);
    launch_batch_norm_forward_train_from_moments(x, gbeta.f(), gm2.f(), ggamma.f(), gbeta.f(), y_mom.f(), mom_mean.f(),
                                                 mom_invstd.f(), grm.f(), grv.f(), rows, channels, 0.1f, 1e-5f,
                                                 scratch.raw(), nullptr);
    launch_batch_norm_local_stats(x, rows, channels, lmean.f(), lm2.f(), scratch.raw(), nullptr);
    launch_batch_norm_backward_reduce(x, gdy.f(), mean.f(), invstd.f(), rows, channels, sdy.f(), sdyx.f(),
                                      scratch.raw(), nullptr);
    launch_batch_norm_backward_apply(x, gdy.f(), ggamma.f(), mean.f(), invstd.f(), sdy.f(), sdyx.f(), rows, channels,
                                     dx_apply.f(), scratch.raw(), nullptr);
    std::vector<Tensor> out;
    for (DeviceBuf* b : {&y, &y_eval, &dx, &y_mom, &dx_apply}) out.push_back(b->download(xs));
    for (DeviceBuf* b : {&mean, &invstd, &dg, &db, &lmean, &lm2, &sdy, &sdyx, &grm, &grv})
      out.push_back(b->download(cs));
    return out;
  };
  DeviceBuf gx_wide = DeviceBuf::of(x_wide, misaligned), gx_bf16 = DeviceBuf::of(x_bf16, misaligned);
  const std::vector<Tensor> want = run_all(gx_wide, false), got = run_all(gx_bf16, true);
  ASSERT_EQ(want.size(), got.size());
  for (size_t i = 0; i < want.size(); ++i) {
    for (const float v : want[i].span()) ASSERT_FALSE(std::isnan(v)) << "output " << i << " has an unwritten element";
    EXPECT_TRUE(bits_equal(got[i], want[i])) << "output " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, BatchNormBf16InputEmulation,
                         ::testing::Combine(::testing::Values<int64_t>(2, 67), ::testing::Values<int64_t>(3, 8, 64),
                                            ::testing::Bool()));

// ---------------------------------------------------------------------------------------------
// Pooling

struct PoolCase {
  int64_t n, h, w, c;
  int kh, kw, sh, sw, ph, pw;
  bool misaligned;
  bool nans;  // a few NaN inputs, for the max-pool NaN rule
};

std::ostream& operator<<(std::ostream& o, const PoolCase& p) {
  return o << "n" << p.n << "_" << p.h << "x" << p.w << "x" << p.c << "_k" << p.kh << "x" << p.kw << "_s" << p.sh << "x"
           << p.sw << "_p" << p.ph << "x" << p.pw << (p.misaligned ? "_misaligned" : "") << (p.nans ? "_nans" : "");
}
std::string pool_name(const ::testing::TestParamInfo<PoolCase>& info) {
  std::ostringstream o;
  o << info.param;
  return o.str();
}

class PoolEmulation : public ::testing::TestWithParam<PoolCase> {};

TEST_P(PoolEmulation, MatchesCpuBitForBit) {
  const PoolCase& pc = GetParam();
  Pool2dParams pr;
  pr.kernel_h = pc.kh;
  pr.kernel_w = pc.kw;
  pr.stride_h = pc.sh;
  pr.stride_w = pc.sw;
  pr.pad_h = pc.ph;
  pr.pad_w = pc.pw;
  const Shape xs{pc.n, pc.h, pc.w, pc.c};
  const PoolGeometry g = OpChecks::cpu("emulation test").pool2d(xs, pr);
  const Shape ys = g.pooled_shape();
  Rng rng(static_cast<uint64_t>(pc.h * 131 + pc.w * 17 + pc.c) + (pc.nans ? 7 : 0));
  // Few distinct values, so windows hold ties and the first-maximum rule matters.
  Tensor x(xs);
  for (int64_t i = 0; i < x.numel(); ++i) x.f32()[i] = static_cast<float>(rng.below(7)) - 3.0f;
  if (pc.nans)
    for (int64_t i = 0; i < x.numel(); i += 11) x.f32()[i] = std::numeric_limits<float>::quiet_NaN();
  const Tensor dy = random_tensor(ys, rng, -1.0f, 1.0f);

  Tensor y_max = convnet::testing::poisoned(ys), argmax(ys, DType::i32), y_avg = convnet::testing::poisoned(ys);
  Tensor dx_max = convnet::testing::poisoned(xs), dx_avg = convnet::testing::poisoned(xs);
  cpu().max_pool2d_forward(x, y_max, argmax, pr);
  cpu().max_pool2d_backward(dy, argmax, dx_max, pr);
  cpu().avg_pool2d_forward(x, y_avg, pr);
  cpu().avg_pool2d_backward(dy, dx_avg, pr);

  const bool mis = pc.misaligned;
  DeviceBuf gx = DeviceBuf::of(x, mis), gdy = DeviceBuf::of(dy, mis);
  DeviceBuf gy(y_max.bytes(), mis), garg(argmax.bytes(), mis), gdx(dx_max.bytes(), mis);
  DeviceBuf gya(y_avg.bytes(), mis), gdxa(dx_avg.bytes(), mis), garg2(argmax.bytes(), mis);
  emu::reset_stats();
  launch_max_pool2d_forward(gx.f(), gy.f(), garg.as<int32_t>(), g, nullptr);
  EXPECT_TRUE(bits_equal(gy.download(ys), y_max)) << "max forward y";
  EXPECT_TRUE(bits_equal(garg.download(ys, DType::i32), argmax)) << "max forward argmax";
  launch_max_pool2d_backward(gdy.f(), garg.as<int32_t>(), gdx.f(), g, nullptr);
  EXPECT_TRUE(bits_equal(gdx.download(xs), dx_max)) << "max backward";
  launch_avg_pool2d_forward(gx.f(), gya.f(), g, nullptr);
  EXPECT_TRUE(bits_equal(gya.download(ys), y_avg)) << "avg forward";
  launch_avg_pool2d_backward(gdy.f(), gdxa.f(), g, nullptr);
  EXPECT_TRUE(bits_equal(gdxa.download(xs), dx_avg)) << "avg backward";
  // The four pool kernels take the 128-bit path exactly when C % 4 == 0 and the buffers are aligned.
  EXPECT_EQ(emu::stats().vector_accesses > 0, pc.c % 4 == 0 && !mis);
  launch_max_pool2d_argmax(gx.f(), garg2.as<int32_t>(), g, nullptr);
  EXPECT_TRUE(bits_equal(garg2.download(ys, DType::i32), argmax)) << "cudnn argmax kernel";
  for (DeviceBuf* b : {&gx, &gdy, &gy, &garg, &gdx, &gya, &gdxa, &garg2}) EXPECT_TRUE(b->guards_intact());
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, PoolEmulation,
    ::testing::Values(PoolCase{2, 7, 6, 3, 3, 3, 2, 2, 1, 1, false, false},  // odd C: scalar path
                      PoolCase{1, 8, 8, 8, 2, 2, 2, 2, 0, 0, false, false},  // C % 4 == 0: vector path
                      PoolCase{1, 8, 8, 8, 2, 2, 2, 2, 0, 0, true, false},   // same, misaligned: scalar
                      PoolCase{2, 5, 7, 4, 3, 2, 1, 2, 1, 0, false, false},  // overlapping windows
                      PoolCase{1, 6, 5, 5, 3, 3, 1, 1, 2, 2, false, false},  // padding 2: windows mostly pad
                      PoolCase{1, 1, 1, 1, 1, 1, 1, 1, 0, 0, false, false},  // one element
                      PoolCase{2, 6, 6, 4, 3, 3, 2, 1, 1, 1, false, true},   // NaN inputs, vector path
                      PoolCase{1, 6, 6, 3, 3, 3, 1, 2, 1, 1, false, true}),  // NaN inputs, scalar path
    pool_name);

// ---------------------------------------------------------------------------------------------
// Column reductions

TEST(ReduceEmulation, ColumnSumsMatchDouble) {
  for (const auto& [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {300, 5}, {513, 40}, {0, 3}}) {
    Rng rng(static_cast<uint64_t>(rows * 100 + cols));
    const Tensor data = rows > 0 ? random_tensor({rows, cols}, rng, -1.0f, 1.0f) : Tensor();
    std::vector<double> expected(static_cast<size_t>(cols), 0.0);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) expected[static_cast<size_t>(c)] += data.f32()[r * cols + c];
    DeviceBuf gdata = rows > 0 ? DeviceBuf::of(data) : DeviceBuf(0);
    const ColumnReducePlan plan = ColumnReducePlan::make(rows, cols);
    DeviceBuf partials(plan.partial_bytes()), out(static_cast<size_t>(cols) * sizeof(double));
    launch_column_sums(gdata.f(), rows, cols, partials.as<double>(), out.as<double>(), nullptr);
    const double* got = out.as<double>();
    for (int64_t c = 0; c < cols; ++c)
      EXPECT_NEAR(got[c], expected[static_cast<size_t>(c)], 1e-9) << rows << "x" << cols << " column " << c;
    EXPECT_TRUE(out.guards_intact() && partials.guards_intact());
  }
}

// ---------------------------------------------------------------------------------------------
// Batch normalization

class BatchNormEmulation : public ::testing::TestWithParam<std::tuple<int64_t, int64_t, bool>> {};

TEST_P(BatchNormEmulation, MatchesCpu) {
  const auto [rows, channels, misaligned] = GetParam();
  Rng rng(static_cast<uint64_t>(rows * 1000 + channels) + (misaligned ? 1 : 0));
  const Shape xs{rows, channels}, cs{channels};
  const Tensor x = random_tensor(xs, rng, 2.0f, 5.0f);  // an offset: the variance must not cancel
  const Tensor dy = random_tensor(xs, rng, -1.0f, 1.0f);
  const Tensor gamma = random_tensor(cs, rng, 0.5f, 1.5f), beta = random_tensor(cs, rng, -0.5f, 0.5f);
  const Tensor run_mean0 = random_tensor(cs, rng, -1.0f, 1.0f), run_var0 = random_tensor(cs, rng, 0.5f, 2.0f);
  const float momentum = 0.1f, eps = 1e-5f;

  Tensor y = convnet::testing::poisoned(xs), mean = convnet::testing::poisoned(cs);
  Tensor invstd = convnet::testing::poisoned(cs), y_eval = convnet::testing::poisoned(xs);
  Tensor run_mean(cs), run_var(cs);
  cpu().copy(run_mean, run_mean0);
  cpu().copy(run_var, run_var0);
  cpu().batch_norm_forward_train(x, gamma, beta, y, mean, invstd, run_mean, run_var, momentum, eps);
  cpu().batch_norm_forward_eval(x, gamma, beta, run_mean0, run_var0, eps, y_eval);
  Tensor dx = convnet::testing::poisoned(xs), dgamma = convnet::testing::poisoned(cs);
  Tensor dbeta = convnet::testing::poisoned(cs);
  cpu().batch_norm_backward(x, dy, gamma, mean, invstd, dx, dgamma, dbeta);

  const bool mis = misaligned;
  DeviceBuf gx = DeviceBuf::of(x, mis), gdy = DeviceBuf::of(dy, mis), ggamma = DeviceBuf::of(gamma);
  DeviceBuf gbeta = DeviceBuf::of(beta), grm = DeviceBuf::of(run_mean0), grv = DeviceBuf::of(run_var0);
  DeviceBuf grm_eval = DeviceBuf::of(run_mean0), grv_eval = DeviceBuf::of(run_var0);
  DeviceBuf gy(x.bytes(), mis), gmean(mean.bytes()), ginvstd(invstd.bytes()), gy_eval(x.bytes(), mis);
  DeviceBuf gdx(x.bytes(), mis), gdgamma(gamma.bytes()), gdbeta(gamma.bytes());
  DeviceBuf scratch(batch_norm_scratch_bytes(rows, channels));

  emu::reset_stats();
  launch_batch_norm_forward_train(gx.f(), ggamma.f(), gbeta.f(), gy.f(), gmean.f(), ginvstd.f(), grm.f(), grv.f(), rows,
                                  channels, momentum, eps, scratch.raw(), nullptr);
  EXPECT_EQ(emu::stats().vector_accesses > 0, channels % 4 == 0 && !mis) << "the 128-bit normalize path";
  EXPECT_TRUE(close_l2(gy.download(xs), y, kTol)) << "train y";
  EXPECT_TRUE(close_l2(gmean.download(cs), mean, kTol)) << "saved mean";
  EXPECT_TRUE(close_l2(ginvstd.download(cs), invstd, kTol)) << "saved invstd";
  EXPECT_TRUE(close_l2(grm.download(cs), run_mean, kTol)) << "running mean";
  EXPECT_TRUE(close_l2(grv.download(cs), run_var, kTol)) << "running var";

  launch_batch_norm_forward_eval(gx.f(), ggamma.f(), gbeta.f(), grm_eval.f(), grv_eval.f(), rows, channels, eps,
                                 gy_eval.f(), scratch.raw(), nullptr);
  EXPECT_TRUE(close_l2(gy_eval.download(xs), y_eval, kTol)) << "eval y";

  // Backward from the cpu's saved statistics, so it is checked on its own.
  DeviceBuf smean = DeviceBuf::of(mean), sinvstd = DeviceBuf::of(invstd);
  launch_batch_norm_backward(gx.f(), gdy.f(), ggamma.f(), smean.f(), sinvstd.f(), rows, channels, gdx.f(), gdgamma.f(),
                             gdbeta.f(), scratch.raw(), nullptr);
  EXPECT_TRUE(close_l2(gdx.download(xs), dx, kTol)) << "dx";
  EXPECT_TRUE(close_l2(gdgamma.download(cs), dgamma, kTol)) << "dgamma";
  EXPECT_TRUE(close_l2(gdbeta.download(cs), dbeta, kTol)) << "dbeta";
  // dx may alias dy.
  DeviceBuf inplace = DeviceBuf::of(dy, mis), gdgamma2(gamma.bytes()), gdbeta2(gamma.bytes());
  launch_batch_norm_backward(gx.f(), inplace.f(), ggamma.f(), smean.f(), sinvstd.f(), rows, channels, inplace.f(),
                             gdgamma2.f(), gdbeta2.f(), scratch.raw(), nullptr);
  EXPECT_TRUE(bits_equal(inplace.download(xs), gdx.download(xs))) << "dx in place";

  for (DeviceBuf* b :
       {&gx, &gdy, &gy, &gmean, &ginvstd, &grm, &grv, &gy_eval, &gdx, &gdgamma, &gdbeta, &scratch, &inplace})
    EXPECT_TRUE(b->guards_intact());
}

// (rows, channels, misaligned): the minimum batch, one chunk, several chunks and column tiles,
// the vector and scalar paths.
INSTANTIATE_TEST_SUITE_P(Shapes, BatchNormEmulation,
                         ::testing::Values(std::make_tuple(int64_t{2}, int64_t{3}, false),
                                           std::make_tuple(int64_t{37}, int64_t{5}, false),
                                           std::make_tuple(int64_t{300}, int64_t{8}, false),
                                           std::make_tuple(int64_t{300}, int64_t{8}, true),
                                           std::make_tuple(int64_t{600}, int64_t{36}, false)));

// Every named (got, want) pair within kTol relative L2; the first that is not, by name.
using NamedPair = std::pair<const char*, std::pair<const Tensor*, const Tensor*>>;
::testing::AssertionResult all_close(std::initializer_list<NamedPair> pairs) {
  for (const auto& [name, tensors] : pairs) {
    const ::testing::AssertionResult r = close_l2(*tensors.first, *tensors.second, kTol);
    if (!r) return ::testing::AssertionFailure() << name << ": " << r.message();
  }
  return ::testing::AssertionSuccess();
}

// ---------------------------------------------------------------------------------------------
// Batch normalization with its statistics given (a fused conv -> batchnorm): a convolution's
// output sums turned into mean and M2, then the normalization from them

struct BnMomentsOutputs {
  Tensor mean, m2, y, saved_mean, saved_invstd, running_mean, running_var;
};

// The sums a convolution's epilogue gives (ConvOutputStats): float sums of x and x^2 per channel.
std::pair<Tensor, Tensor> channel_sums(const Tensor& x) {
  const int64_t channels = x.dim(-1), rows = x.numel() / channels;
  Tensor sum({channels}), sum_sq({channels});
  for (int64_t c = 0; c < channels; ++c) {
    double s = 0, q = 0;
    for (int64_t r = 0; r < rows; ++r) {
      const double v = x.f32()[r * channels + c];
      s += v;
      q += v * v;
    }
    sum.f32()[c] = static_cast<float>(s);
    sum_sq.f32()[c] = static_cast<float>(q);
  }
  return {sum, sum_sq};
}

// `swap_moments`: a planted bug, mean and m2 exchanged between the two launchers.
BnMomentsOutputs emulated_bn_from_moments(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                          const Tensor& run_mean0, const Tensor& run_var0, bool mis,
                                          bool swap_moments) {
  const int64_t channels = x.dim(-1), rows = x.numel() / channels;
  const Shape cs{channels};
  const auto [sum, sum_sq] = channel_sums(x);
  DeviceBuf gmean = DeviceBuf::of(sum), gm2 = DeviceBuf::of(sum_sq);
  launch_moments_from_sums(gmean.f(), gm2.f(), rows, channels, nullptr);
  DeviceBuf gx = DeviceBuf::of(x, mis), ggamma = DeviceBuf::of(gamma), gbeta = DeviceBuf::of(beta);
  DeviceBuf grm = DeviceBuf::of(run_mean0), grv = DeviceBuf::of(run_var0);
  DeviceBuf gy(x.bytes(), mis), gsmean(gamma.bytes()), gsinvstd(gamma.bytes());
  DeviceBuf scratch(batch_norm_scratch_bytes(rows, channels));
  launch_batch_norm_forward_train_from_moments(
      gx.f(), swap_moments ? gm2.f() : gmean.f(), swap_moments ? gmean.f() : gm2.f(), ggamma.f(), gbeta.f(), gy.f(),
      gsmean.f(), gsinvstd.f(), grm.f(), grv.f(), rows, channels, 0.1f, 1e-5f, scratch.raw(), nullptr);
  for (DeviceBuf* b : {&gmean, &gm2, &gx, &ggamma, &gbeta, &grm, &grv, &gy, &gsmean, &gsinvstd, &scratch})
    EXPECT_TRUE(b->guards_intact());
  return {gmean.download(cs),    gm2.download(cs), gy.download(x.shape()), gsmean.download(cs),
          gsinvstd.download(cs), grm.download(cs), grv.download(cs)};
}

::testing::AssertionResult bn_moments_match(const BnMomentsOutputs& got, const BnMomentsOutputs& want) {
  return all_close({{"mean", {&got.mean, &want.mean}},
                    {"m2", {&got.m2, &want.m2}},
                    {"y", {&got.y, &want.y}},
                    {"saved_mean", {&got.saved_mean, &want.saved_mean}},
                    {"saved_invstd", {&got.saved_invstd, &want.saved_invstd}},
                    {"running_mean", {&got.running_mean, &want.running_mean}},
                    {"running_var", {&got.running_var, &want.running_var}}});
}

class BatchNormFromMomentsEmulation : public ::testing::TestWithParam<std::tuple<int64_t, int64_t, bool>> {};

// Against the cpu's two-pass statistics and its batch_norm_forward_train (which the fused pair
// must reproduce), and so the cpu's from-moments path too.
TEST_P(BatchNormFromMomentsEmulation, MatchesCpuTraining) {
  const auto [rows, channels, misaligned] = GetParam();
  Rng rng(static_cast<uint64_t>(rows * 1000 + channels) + 7);
  const Shape xs{rows, channels}, cs{channels};
  const Tensor x = random_tensor(xs, rng, 1.0f, 3.0f);  // an offset: sum_sq - sum * mean cancels partly
  const Tensor gamma = random_tensor(cs, rng, 0.5f, 1.5f), beta = random_tensor(cs, rng, -0.5f, 0.5f);
  const Tensor run_mean0 = random_tensor(cs, rng, -1.0f, 1.0f), run_var0 = random_tensor(cs, rng, 0.5f, 2.0f);
  BnMomentsOutputs want{convnet::testing::poisoned(cs),
                        convnet::testing::poisoned(cs),
                        convnet::testing::poisoned(xs),
                        convnet::testing::poisoned(cs),
                        convnet::testing::poisoned(cs),
                        Tensor(cs),
                        Tensor(cs)};
  cpu().copy(want.running_mean, run_mean0);
  cpu().copy(want.running_var, run_var0);
  cpu().batch_norm_local_stats(x, want.mean, want.m2);
  cpu().batch_norm_forward_train(x, gamma, beta, want.y, want.saved_mean, want.saved_invstd, want.running_mean,
                                 want.running_var, 0.1f, 1e-5f);
  BnMomentsOutputs cpu_given{want.mean,
                             want.m2,
                             convnet::testing::poisoned(xs),
                             convnet::testing::poisoned(cs),
                             convnet::testing::poisoned(cs),
                             Tensor(cs),
                             Tensor(cs)};
  cpu().copy(cpu_given.running_mean, run_mean0);
  cpu().copy(cpu_given.running_var, run_var0);
  cpu().batch_norm_forward_train_from_moments(x, want.mean, want.m2, gamma, beta, cpu_given.y, cpu_given.saved_mean,
                                              cpu_given.saved_invstd, cpu_given.running_mean, cpu_given.running_var,
                                              0.1f, 1e-5f);
  EXPECT_TRUE(bn_moments_match(cpu_given, want)) << "cpu";

  emu::reset_stats();
  EXPECT_TRUE(bn_moments_match(emulated_bn_from_moments(x, gamma, beta, run_mean0, run_var0, misaligned, false), want));
  EXPECT_EQ(emu::stats().vector_accesses > 0, channels % 4 == 0 && !misaligned) << "the 128-bit normalize path";
}

INSTANTIATE_TEST_SUITE_P(Shapes, BatchNormFromMomentsEmulation,
                         ::testing::Values(std::make_tuple(int64_t{2}, int64_t{3}, false),
                                           std::make_tuple(int64_t{300}, int64_t{8}, false),
                                           std::make_tuple(int64_t{300}, int64_t{8}, true),
                                           std::make_tuple(int64_t{600}, int64_t{36}, false)));

TEST(BatchNormFromMomentsPlantedBugs, SwappedMomentsAreCaught) {
  Rng rng(11);
  const Shape xs{300, 8}, cs{8};
  const Tensor x = random_tensor(xs, rng, 1.0f, 3.0f);
  const Tensor gamma = random_tensor(cs, rng, 0.5f, 1.5f), beta = random_tensor(cs, rng, -0.5f, 0.5f);
  const Tensor run_mean0 = random_tensor(cs, rng, -1.0f, 1.0f), run_var0 = random_tensor(cs, rng, 0.5f, 2.0f);
  const BnMomentsOutputs right = emulated_bn_from_moments(x, gamma, beta, run_mean0, run_var0, false, false);
  const BnMomentsOutputs wrong = emulated_bn_from_moments(x, gamma, beta, run_mean0, run_var0, false, true);
  EXPECT_FALSE(close_l2(wrong.y, right.y, kTol));
  EXPECT_FALSE(close_l2(wrong.running_var, right.running_var, kTol));
}

// ---------------------------------------------------------------------------------------------
// Synchronized batch normalization's pieces: local statistics, backward reduce and apply

struct BnSyncCase {
  int64_t rows, channels;
  bool misaligned;
};
std::ostream& operator<<(std::ostream& o, const BnSyncCase& c) {
  return o << c.rows << "x" << c.channels << (c.misaligned ? "_misaligned" : "");
}
std::string bn_sync_name(const ::testing::TestParamInfo<BnSyncCase>& info) {
  std::ostringstream o;
  o << info.param;
  return o.str();
}

// Random saved statistics and means (not a forward's), so every input of the formulas matters.
struct BnSyncInputs {
  Tensor x, dy, gamma, mean, invstd, mean_dy, mean_dy_xhat;
  explicit BnSyncInputs(const BnSyncCase& c) {
    Rng rng(static_cast<uint64_t>(c.rows * 1000 + c.channels));
    const Shape xs{c.rows, c.channels}, cs{c.channels};
    x = random_tensor(xs, rng, 2.0f, 5.0f);  // an offset: M2 must not cancel
    dy = random_tensor(xs, rng, -1.0f, 1.0f);
    gamma = random_tensor(cs, rng, 0.5f, 1.5f);
    mean = random_tensor(cs, rng, 2.0f, 5.0f);
    invstd = random_tensor(cs, rng, 0.5f, 2.0f);
    mean_dy = random_tensor(cs, rng, -0.3f, 0.3f);
    mean_dy_xhat = random_tensor(cs, rng, -0.3f, 0.3f);
  }
};

struct BnSyncOutputs {
  Tensor mean, m2, sum_dy, sum_dy_xhat, dx;
};

BnSyncOutputs cpu_bn_sync(const BnSyncInputs& in) {
  const Shape cs{in.x.dim(-1)};
  BnSyncOutputs o{convnet::testing::poisoned(cs), convnet::testing::poisoned(cs), convnet::testing::poisoned(cs),
                  convnet::testing::poisoned(cs), convnet::testing::poisoned(in.x.shape())};
  cpu().batch_norm_local_stats(in.x, o.mean, o.m2);
  cpu().batch_norm_backward_reduce(in.x, in.dy, in.mean, in.invstd, o.sum_dy, o.sum_dy_xhat);
  cpu().batch_norm_backward_apply(in.x, in.dy, in.gamma, in.mean, in.invstd, in.mean_dy, in.mean_dy_xhat, o.dx);
  return o;
}

// Launch mistakes the comparison must catch: a tail row left out of every launch (stale sums, an
// unwritten dx row), the saved mean and invstd exchanged, the two dx means exchanged.
enum class BnSyncBug { none, last_row_dropped, saved_stats_swapped, means_swapped };

// The three launchers on poisoned "device" buffers (0xff: NaN), with `bug` planted.
BnSyncOutputs emulated_bn_sync(const BnSyncInputs& in, bool mis, BnSyncBug bug) {
  const int64_t channels = in.x.dim(-1), rows = in.x.dim(0);
  const int64_t launch_rows = bug == BnSyncBug::last_row_dropped ? rows - 1 : rows;
  const Shape xs = in.x.shape(), cs{channels};
  DeviceBuf gx = DeviceBuf::of(in.x, mis), gdy = DeviceBuf::of(in.dy, mis), ggamma = DeviceBuf::of(in.gamma);
  DeviceBuf gmean = DeviceBuf::of(in.mean), ginvstd = DeviceBuf::of(in.invstd);
  DeviceBuf gmdy = DeviceBuf::of(in.mean_dy), gmdyx = DeviceBuf::of(in.mean_dy_xhat);
  const size_t cbytes = in.gamma.bytes();
  DeviceBuf lmean(cbytes), lm2(cbytes), sdy(cbytes), sdyx(cbytes), gdx(in.x.bytes(), mis);
  DeviceBuf scratch(batch_norm_scratch_bytes(rows, channels));
  float* saved_mean = bug == BnSyncBug::saved_stats_swapped ? ginvstd.f() : gmean.f();
  float* saved_invstd = bug == BnSyncBug::saved_stats_swapped ? gmean.f() : ginvstd.f();
  float* mean_dy = bug == BnSyncBug::means_swapped ? gmdyx.f() : gmdy.f();
  float* mean_dy_xhat = bug == BnSyncBug::means_swapped ? gmdy.f() : gmdyx.f();
  launch_batch_norm_local_stats(gx.f(), launch_rows, channels, lmean.f(), lm2.f(), scratch.raw(), nullptr);
  launch_batch_norm_backward_reduce(gx.f(), gdy.f(), saved_mean, saved_invstd, launch_rows, channels, sdy.f(), sdyx.f(),
                                    scratch.raw(), nullptr);
  launch_batch_norm_backward_apply(gx.f(), gdy.f(), ggamma.f(), saved_mean, saved_invstd, mean_dy, mean_dy_xhat,
                                   launch_rows, channels, gdx.f(), scratch.raw(), nullptr);
  for (DeviceBuf* b : {&gx, &gdy, &ggamma, &gmean, &ginvstd, &gmdy, &gmdyx, &lmean, &lm2, &sdy, &sdyx, &gdx, &scratch})
    EXPECT_TRUE(b->guards_intact());
  return {lmean.download(cs), lm2.download(cs), sdy.download(cs), sdyx.download(cs), gdx.download(xs)};
}

::testing::AssertionResult bn_sync_matches(const BnSyncOutputs& got, const BnSyncOutputs& want) {
  return all_close({{"mean", {&got.mean, &want.mean}},
                    {"m2", {&got.m2, &want.m2}},
                    {"sum_dy", {&got.sum_dy, &want.sum_dy}},
                    {"sum_dy_xhat", {&got.sum_dy_xhat, &want.sum_dy_xhat}},
                    {"dx", {&got.dx, &want.dx}}});
}

class BatchNormSyncEmulation : public ::testing::TestWithParam<BnSyncCase> {};

TEST_P(BatchNormSyncEmulation, MatchesCpu) {
  const BnSyncCase& c = GetParam();
  const BnSyncInputs in(c);
  const BnSyncOutputs want = cpu_bn_sync(in);
  emu::reset_stats();
  const BnSyncOutputs got = emulated_bn_sync(in, c.misaligned, BnSyncBug::none);
  EXPECT_TRUE(bn_sync_matches(got, want));
  EXPECT_EQ(emu::stats().vector_accesses > 0, c.channels % 4 == 0 && !c.misaligned && c.rows > 0)
      << "the 128-bit dx path";
  // The reductions' order is fixed: blocks run in the other order give the same bits.
  emu::set_order(emu::Order::reverse);
  const BnSyncOutputs reversed = emulated_bn_sync(in, c.misaligned, BnSyncBug::none);
  emu::set_order(emu::Order::forward);
  EXPECT_TRUE(bits_equal(reversed.mean, got.mean) && bits_equal(reversed.m2, got.m2)) << "local stats";
  EXPECT_TRUE(bits_equal(reversed.sum_dy, got.sum_dy) && bits_equal(reversed.sum_dy_xhat, got.sum_dy_xhat));
  // dx may alias dy.
  if (c.rows == 0) return;
  DeviceBuf gx = DeviceBuf::of(in.x, c.misaligned), inplace = DeviceBuf::of(in.dy, c.misaligned);
  DeviceBuf ggamma = DeviceBuf::of(in.gamma), gmean = DeviceBuf::of(in.mean), ginvstd = DeviceBuf::of(in.invstd);
  DeviceBuf gmdy = DeviceBuf::of(in.mean_dy), gmdyx = DeviceBuf::of(in.mean_dy_xhat);
  DeviceBuf scratch(batch_norm_scratch_bytes(c.rows, c.channels));
  launch_batch_norm_backward_apply(gx.f(), inplace.f(), ggamma.f(), gmean.f(), ginvstd.f(), gmdy.f(), gmdyx.f(), c.rows,
                                   c.channels, inplace.f(), scratch.raw(), nullptr);
  EXPECT_TRUE(bits_equal(inplace.download(in.x.shape()), got.dx)) << "dx in place";
  EXPECT_TRUE(inplace.guards_intact());
}

// (rows, channels, misaligned): no rows, one row, rows within one chunk and over several (not a
// multiple of the 256-row chunk), channels under and over one 32-column tile (not a multiple of
// 32), the vector and scalar dx paths.
INSTANTIATE_TEST_SUITE_P(Shapes, BatchNormSyncEmulation,
                         ::testing::Values(BnSyncCase{0, 3, false}, BnSyncCase{1, 5, false}, BnSyncCase{2, 3, false},
                                           BnSyncCase{37, 5, false}, BnSyncCase{300, 33, false},
                                           BnSyncCase{300, 8, true}, BnSyncCase{600, 36, false},
                                           BnSyncCase{513, 64, false}),
                         bn_sync_name);

TEST(BatchNormSyncPlantedBugs, AreCaughtByTheComparison) {
  const BnSyncCase c{300, 33, false};
  const BnSyncInputs in(c);
  const BnSyncOutputs want = cpu_bn_sync(in);
  for (const BnSyncBug bug : {BnSyncBug::last_row_dropped, BnSyncBug::saved_stats_swapped, BnSyncBug::means_swapped})
    EXPECT_FALSE(bn_sync_matches(emulated_bn_sync(in, c.misaligned, bug), want)) << "bug " << static_cast<int>(bug);
  // The dropped row's dx is never written: the poison shows it.
  const BnSyncOutputs dropped = emulated_bn_sync(in, c.misaligned, BnSyncBug::last_row_dropped);
  EXPECT_TRUE(std::isnan(dropped.dx.f32()[dropped.dx.numel() - 1]));
}

// ---------------------------------------------------------------------------------------------
// Fill, dropout

TEST(CommonEmulation, FillWritesEveryElement) {
  const int64_t n = 1031;
  DeviceBuf b(static_cast<size_t>(n) * sizeof(float), true);
  launch_fill(b.f(), n, -2.5f, nullptr);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(b.f()[i], -2.5f) << "element " << i;
  EXPECT_TRUE(b.guards_intact());
}

TEST(CommonEmulation, DropoutMatchesCpuBitForBit) {
  for (const float p : {0.0f, 0.3f, 0.75f, 1.0f}) {
    const int64_t n = 1037;
    const uint64_t seed = 0x1234abcdULL + static_cast<uint64_t>(p * 100);
    Rng rng(seed);
    const Shape shape{n};
    const Tensor x = random_tensor(shape, rng, -2.0f, 2.0f), dy = random_tensor(shape, rng, -2.0f, 2.0f);
    Tensor y = convnet::testing::poisoned(shape), mask(shape, DType::u8), dx = convnet::testing::poisoned(shape);
    cpu().dropout_forward(x, y, mask, p, seed);
    cpu().dropout_backward(dy, mask, p, dx);

    DeviceBuf gx = DeviceBuf::of(x), gdy = DeviceBuf::of(dy);
    DeviceBuf gy(x.bytes()), gmask(mask.bytes()), gdx(x.bytes());
    launch_dropout_forward(gx.f(), gy.f(), gmask.as<uint8_t>(), n, p, seed, nullptr);
    EXPECT_TRUE(bits_equal(gmask.download(shape, DType::u8), mask)) << "mask, p " << p;
    EXPECT_TRUE(bits_equal(gy.download(shape), y)) << "y, p " << p;
    launch_dropout_backward(gdy.f(), gmask.as<uint8_t>(), gdx.f(), n, p, nullptr);
    EXPECT_TRUE(bits_equal(gdx.download(shape), dx)) << "dx, p " << p;
    for (DeviceBuf* b : {&gy, &gmask, &gdx}) EXPECT_TRUE(b->guards_intact());
  }
}

// ---------------------------------------------------------------------------------------------
// Softmax cross-entropy

class SoftmaxCrossEntropyEmulation : public ::testing::TestWithParam<std::tuple<int64_t, int64_t, float>> {};

TEST_P(SoftmaxCrossEntropyEmulation, MatchesCpu) {
  const auto [n, k, smoothing] = GetParam();
  Rng rng(static_cast<uint64_t>(n * 1000 + k) + static_cast<uint64_t>(smoothing * 10));
  const Shape ls{n, k};
  const Tensor logits = random_tensor(ls, rng, -6.0f, 6.0f);
  const Tensor labels = random_labels(n, static_cast<int>(k), rng);
  Tensor loss = convnet::testing::poisoned({1}), probs = convnet::testing::poisoned(ls);
  Tensor dlogits = convnet::testing::poisoned(ls);
  cpu().softmax_cross_entropy_forward(logits, labels, smoothing, loss, probs);
  cpu().softmax_cross_entropy_backward(probs, labels, smoothing, dlogits);

  DeviceBuf glogits = DeviceBuf::of(logits), glabels = DeviceBuf::of(labels);
  DeviceBuf gprobs(probs.bytes()), grow(static_cast<size_t>(n) * sizeof(float)), gloss(sizeof(float));
  DeviceBuf gdlogits(probs.bytes());
  emu::reset_stats();
  launch_softmax_cross_entropy_forward(glogits.f(), glabels.as<int32_t>(), n, k, smoothing, gprobs.f(), grow.f(),
                                       gloss.f(), nullptr);
  EXPECT_GT(emu::stats().warp_barriers, 0);  // the shuffles ran on the warp lock step
  EXPECT_TRUE(close_l2(gprobs.download(ls), probs, kTol)) << "probs";
  EXPECT_TRUE(close_l2(gloss.download({1}), loss, kTol)) << "loss";
  // Backward from the cpu's probabilities, so it is checked on its own: the same float formula.
  DeviceBuf cprobs = DeviceBuf::of(probs);
  launch_softmax_cross_entropy_backward(cprobs.f(), glabels.as<int32_t>(), n, k, smoothing, gdlogits.f(), nullptr);
  EXPECT_TRUE(bits_equal(gdlogits.download(ls), dlogits)) << "dlogits";
  for (DeviceBuf* b : {&gprobs, &grow, &gloss, &gdlogits}) EXPECT_TRUE(b->guards_intact());
}

// (n, k, smoothing): rows not a multiple of the 4 rows per block, k below, at and above the warp.
INSTANTIATE_TEST_SUITE_P(Shapes, SoftmaxCrossEntropyEmulation,
                         ::testing::Combine(::testing::Values<int64_t>(1, 13), ::testing::Values<int64_t>(10, 32, 75),
                                            ::testing::Values(0.0f, 0.2f)));

TEST(SoftmaxCrossEntropyEmulation, InvalidLabelGivesNan) {
  const int64_t n = 3, k = 5;
  Rng rng(3);
  const Tensor logits = random_tensor({n, k}, rng, -1.0f, 1.0f);
  DeviceBuf glogits = DeviceBuf::of(logits), glabels(n * sizeof(int32_t));
  const int32_t labels[n] = {1, 5, -1};
  std::memcpy(glabels.raw(), labels, sizeof labels);
  DeviceBuf gprobs(logits.bytes()), grow(n * sizeof(float)), gloss(sizeof(float)), gd(logits.bytes());
  for (int64_t i = 0; i < n; ++i) grow.f()[i] = 0.0f;  // the valid row must overwrite it
  launch_softmax_cross_entropy_forward(glogits.f(), glabels.as<int32_t>(), n, k, 0.1f, gprobs.f(), grow.f(), gloss.f(),
                                       nullptr);
  EXPECT_TRUE(std::isfinite(grow.f()[0]) && grow.f()[0] > 0.0f);
  EXPECT_TRUE(std::isnan(grow.f()[1]) && std::isnan(grow.f()[2]) && std::isnan(gloss.f()[0]));
  launch_softmax_cross_entropy_backward(gprobs.f(), glabels.as<int32_t>(), n, k, 0.1f, gd.f(), nullptr);
  for (int64_t j = 0; j < k; ++j) {
    EXPECT_TRUE(std::isfinite(gd.f()[j]));
    EXPECT_TRUE(std::isnan(gd.f()[k + j]) && std::isnan(gd.f()[2 * k + j]));
  }
}

// ---------------------------------------------------------------------------------------------
// Training statistics

// The correct predictions of host logits, counted independently of core/base/top1.h: a row's
// prediction is its first maximum, and a NaN never compares greater.
int64_t naive_correct(const Tensor& logits, const Tensor& labels) {
  const int64_t n = logits.dim(0), k = logits.dim(1);
  int64_t correct = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* row = logits.f32() + i * k;
    int64_t best = 0;
    for (int64_t j = 0; j < k; ++j)
      if (row[j] > row[best]) best = j;
    correct += best == labels.data<int32_t>()[i];
  }
  return correct;
}

TEST(CommonEmulation, TrainStatsMatchCpuBitForBitInEitherOrder) {
  // 300 rows: more than the kernel's 256 threads, so some threads count two rows; ties, NaN rows
  // and labels outside [0, k) are all present.
  const int64_t n = 300, k = 10;
  Rng rng(41);
  Tensor logits = random_tensor({n, k}, rng, -2.0f, 2.0f);
  Tensor labels = random_labels(n, static_cast<int>(k), rng);
  float* z = logits.f32();
  for (int64_t j = 0; j < k; ++j) z[5 * k + j] = 1.0f;     // all tied: predicts 0
  z[6 * k + 3] = z[6 * k + 7] = 9.0f;                      // tie: the first wins
  z[7 * k + 0] = std::numeric_limits<float>::quiet_NaN();  // NaN first: predicts 0
  z[8 * k + 4] = std::numeric_limits<float>::quiet_NaN();  // NaN later: ignored
  labels.data<int32_t>()[5] = 0, labels.data<int32_t>()[6] = 3, labels.data<int32_t>()[7] = 0;
  labels.data<int32_t>()[9] = -1, labels.data<int32_t>()[10] = static_cast<int32_t>(k);
  const int64_t want_correct = naive_correct(logits, labels);
  // Per-step losses: the first non-finite one (step 3, NaN) is the one recorded.
  const std::vector<float> losses = {2.25f, 1.5f, std::numeric_limits<float>::quiet_NaN(),
                                     std::numeric_limits<float>::infinity(), 0.75f};

  Tensor want = Tensor::zeros({4}, DType::f64);
  want.data<double>()[2] = -1;
  Tensor loss({1});
  for (size_t s = 0; s < losses.size(); ++s) {
    loss.f32()[0] = losses[s];
    cpu().accumulate_train_stats(loss, logits, labels, static_cast<int64_t>(s + 1), want);
  }
  EXPECT_EQ(want.data<double>()[1], static_cast<double>(want_correct * static_cast<int64_t>(losses.size())));
  EXPECT_EQ(want.data<double>()[2], 3.0);
  EXPECT_TRUE(std::isnan(want.data<double>()[3]));

  DeviceBuf glogits = DeviceBuf::of(logits), glabels = DeviceBuf::of(labels);
  for (const emu::Order order : {emu::Order::forward, emu::Order::reverse}) {
    emu::set_order(order);
    Tensor start = Tensor::zeros({4}, DType::f64);
    start.data<double>()[2] = -1;
    DeviceBuf gstats = DeviceBuf::of(start), gloss(sizeof(float));
    for (size_t s = 0; s < losses.size(); ++s) {
      gloss.f()[0] = losses[s];
      launch_accumulate_train_stats(gloss.f(), glogits.f(), glabels.as<int32_t>(), n, k, static_cast<int64_t>(s + 1),
                                    gstats.as<double>(), nullptr);
    }
    EXPECT_TRUE(bits_equal(gstats.download({4}, DType::f64), want))
        << (order == emu::Order::forward ? "forward" : "reverse") << " order";
    EXPECT_TRUE(gstats.guards_intact());
  }
  emu::set_order(emu::Order::forward);
}

// ---------------------------------------------------------------------------------------------
// SGD

TEST(CommonEmulation, SgdUpdateMatchesCpuBitForBit) {
  struct Variant {
    const char* name;
    SgdStep step;
  };
  auto make = [](float lr, float mom, float wd, bool nesterov, bool decoupled) {
    SgdStep s;
    s.lr = lr;
    s.momentum = mom;
    s.weight_decay = wd;
    s.nesterov = nesterov;
    s.decoupled_decay = decoupled;
    return s;
  };
  const std::vector<Variant> variants = {
      {"plain", make(0.1f, 0.0f, 0.0f, false, false)},
      {"L2 without momentum", make(0.05f, 0.0f, 5e-4f, false, false)},
      {"momentum", make(0.1f, 0.9f, 0.0f, false, false)},
      {"momentum + L2", make(0.1f, 0.9f, 5e-3f, false, false)},
      {"nesterov + L2", make(0.07f, 0.9f, 1e-2f, true, false)},
      {"decoupled decay + momentum", make(0.1f, 0.8f, 0.05f, false, true)},
      {"decoupled decay + nesterov", make(0.1f, 0.9f, 0.05f, true, true)},
  };
  const int64_t n = 1029;
  const Shape shape{n};
  for (const Variant& v : variants)
    for (const bool with_copy : {false, true}) {  // the bf16 weight copy (Backend::sgd_update)
      SCOPED_TRACE(with_copy ? "with a bf16 copy" : "without a copy");
      Rng rng(std::hash<std::string>{}(v.name));
      const Tensor param0 = random_tensor(shape, rng, -1.0f, 1.0f), grad = random_tensor(shape, rng, -1.0f, 1.0f);
      const Tensor mom0 = random_tensor(shape, rng, -0.5f, 0.5f);
      const bool use_momentum = v.step.momentum != 0.0f;
      DeviceBuf gparam = DeviceBuf::of(param0), ggrad = DeviceBuf::of(grad), gmom = DeviceBuf::of(mom0);
      DeviceBuf gcopy(static_cast<size_t>(n) * sizeof(uint16_t));  // poisoned: NaN bit patterns
      Tensor param(shape), mom = use_momentum ? Tensor(shape) : Tensor(), copy(shape, DType::bf16);
      cpu().copy(param, param0);
      if (use_momentum) cpu().copy(mom, mom0);
      for (int step = 0; step < 3; ++step) {  // several steps: the momentum buffer feeds back
        cpu().sgd_update(param, grad, mom, v.step, with_copy ? &copy : nullptr);
        launch_sgd_update(gparam.f(), ggrad.f(), use_momentum ? gmom.f() : nullptr,
                          with_copy ? gcopy.as<uint16_t>() : nullptr, n, v.step, nullptr);
      }
      EXPECT_TRUE(bits_equal(gparam.download(shape), param)) << v.name << ": param";
      if (use_momentum) {
        EXPECT_TRUE(bits_equal(gmom.download(shape), mom)) << v.name << ": momentum";
      }
      if (with_copy) {
        EXPECT_TRUE(bits_equal(gcopy.download(shape, DType::bf16), copy)) << v.name << ": bf16 copy";
      } else {
        const Tensor untouched = gcopy.download(shape, DType::bf16);
        const uint16_t* bits = untouched.data<uint16_t>();
        EXPECT_TRUE(std::all_of(bits, bits + n, [](uint16_t b) { return b == 0xffffu; }))
            << v.name << ": a copy written though none was asked for";
      }
      EXPECT_FALSE(bits_equal(gparam.download(shape), param0)) << v.name << ": the update changed nothing";
      for (DeviceBuf* b : {&gparam, &gmom, &gcopy}) EXPECT_TRUE(b->guards_intact());
    }
}

// ---------------------------------------------------------------------------------------------
// The warp lock step itself

TEST(WarpEmulation, DivergentShuffleIsAnError) {
  // One lane of the warp returns before the shuffle the others wait at.
  DeviceBuf out(64 * sizeof(float));
  float* o = out.f();
  const std::string what = [&] {
    try {
      emu::run_grid(dim3(1), dim3(64), [&] {
        const unsigned t = threadIdx.x;
        if (t == 5) return;
        o[t] = __shfl_xor_sync(0xffffffffu, static_cast<float>(t), 1);
      });
    } catch (const emu::Error& e) {
      return std::string(e.what());
    }
    return std::string();
  }();
  EXPECT_NE(what.find("warp 0"), std::string::npos) << what;
}

TEST(WarpEmulation, ShufflesExchangeInLockStep) {
  // xor: a 48-thread block, whose second warp is partial (16 lanes); down: two full warps, where
  // the lanes past the warp's end keep their own value.
  constexpr unsigned kPartial = 48, kFull = 64;
  std::vector<float> xr(kPartial, -1.0f), down(kFull, -1.0f);
  emu::run_grid(dim3(2), dim3(kPartial), [&] {
    const float a = __shfl_xor_sync(0xffffffffu, static_cast<float>(blockIdx.x * 100 + threadIdx.x), 4);
    if (blockIdx.x == 1) xr[threadIdx.x] = a;
  });
  emu::run_grid(dim3(1), dim3(kFull),
                [&] { down[threadIdx.x] = __shfl_down_sync(0xffffffffu, static_cast<float>(threadIdx.x), 3); });
  for (unsigned t = 0; t < kPartial; ++t) EXPECT_EQ(xr[t], static_cast<float>(100 + (t ^ 4u))) << t;
  for (unsigned t = 0; t < kFull; ++t) EXPECT_EQ(down[t], static_cast<float>(t % 32 + 3 < 32 ? t + 3 : t)) << t;
}

}  // namespace
}  // namespace convnet::cuda
