// Randomized convolution problems (tests/common/conv_problems.h) on the GPU backends against the
// cpu reference, and the cuda_tf32 backend (v4 TF32) against cuDNN in TF32: forward with and
// without bias, backward data, backward filter with and without dbias, over batch, channel,
// spatial, kernel, stride, padding and dilation choices that no hand-written list covers (odd
// channel counts, rectangular kernels, padding larger than the kernel, outputs of one pixel);
// grouped and depthwise problems on cuDNN against the cpu reference.
// Every output is poisoned with NaN first, so an element a kernel forgets to write fails.
//
// Grouped and depthwise problems (make_grouped_problems) run on the cuda backend in fp32, tf32 and
// bf16 against the float64 reference of tests/common/naive_ops.h.
//
// CONVNET_CONV_PROBLEMS=N runs only the first N problems (the compute-sanitizer stage of
// tools/gpu_check.sh uses a short list). A pass for which cuDNN's deterministic-only policy leaves
// no algorithm (some dilated or strided NHWC problems) is reported with the rejected algorithms and
// skipped, so the rest of the suite still runs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/base/backend.h"
#include "core/base/error.h"
#include "core/base/precision.h"
#include "core/base/rng.h"
#include "core/cpu/cpu_backend.h"
#include "cuda/cudnn_algorithms.h"
#include "cuda/device.h"
#include "tests/common/conv_problems.h"
#include "tests/common/gpu_skip.h"
#include "tests/common/gpu_test_util.h"
#include "tests/common/naive_ops.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::ConvProblem;
using testing::kGroupedProblems;
using testing::kProblems;
using testing::make_grouped_problems;
using testing::make_problems;
using testing::poisoned_device;
using testing::random_tensor;
using testing::to_device;
using testing::to_host;

// The three passes of one problem, as host tensors; undefined for a pass the backend cannot run.
struct ConvResult {
  Tensor y, dx, dw, dbias;
};

// cuDNN passes without an acceptable algorithm, reported instead of failing the suite.
struct Unsupported {
  int problem = 0;
  std::string pass, why;
};

// Inputs depend only on the problem index, so any subset of problems sees the same data.
struct ConvInputs {
  Tensor x, w, bias, dy;
  explicit ConvInputs(const ConvProblem& q) {
    Rng rng(q.input_seed());
    x = random_tensor(q.x_shape(), rng);
    w = random_tensor(q.w_shape(), rng);
    bias = random_tensor({q.k}, rng);
    dy = random_tensor(q.y_shape(), rng);
  }
};

ConvResult run_cpu(Backend& cpu, const ConvProblem& q, const ConvInputs& in) {
  ConvResult r{testing::poisoned(q.y_shape()), testing::poisoned(q.x_shape()), testing::poisoned(q.w_shape()),
               testing::poisoned({q.k})};
  cpu.conv2d_forward(in.x, in.w, q.bias ? &in.bias : nullptr, r.y, q.p);
  cpu.conv2d_backward_data(in.dy, in.w, r.dx, q.p);
  cpu.conv2d_backward_filter(in.x, in.dy, r.dw, q.bias ? &r.dbias : nullptr, q.p);
  return r;
}

// Runs `pass` and returns its outputs on the host; records the pass in `unsupported` (and returns
// nothing) when cuDNN has no algorithm the policy accepts.
template <class Pass>
std::vector<Tensor> run_pass(const ConvProblem& q, const char* name, std::vector<Unsupported>& unsupported,
                             Pass&& pass) {
  try {
    return pass();
  } catch (const cuda::NoCudnnAlgorithm& e) {
    unsupported.push_back({q.index, name, e.problem() + ": " + e.rejections()});
    return {};
  }
}

ConvResult run_gpu(Backend& gpu, const ConvProblem& q, const ConvInputs& in, std::vector<Unsupported>& unsupported) {
  const Tensor x = to_device(gpu, in.x), w = to_device(gpu, in.w), bias = to_device(gpu, in.bias);
  const Tensor dy = to_device(gpu, in.dy);
  ConvResult r;
  const std::vector<Tensor> forward = run_pass(q, "forward", unsupported, [&] {
    Tensor y = poisoned_device(gpu, q.y_shape());
    gpu.conv2d_forward(x, w, q.bias ? &bias : nullptr, y, q.p);
    return std::vector<Tensor>{to_host(gpu, y)};
  });
  const std::vector<Tensor> data = run_pass(q, "backward-data", unsupported, [&] {
    Tensor dx = poisoned_device(gpu, q.x_shape());
    gpu.conv2d_backward_data(dy, w, dx, q.p);
    return std::vector<Tensor>{to_host(gpu, dx)};
  });
  const std::vector<Tensor> filter = run_pass(q, "backward-filter", unsupported, [&] {
    Tensor dw = poisoned_device(gpu, q.w_shape()), dbias = poisoned_device(gpu, {q.k});
    gpu.conv2d_backward_filter(x, dy, dw, q.bias ? &dbias : nullptr, q.p);
    return std::vector<Tensor>{to_host(gpu, dw), to_host(gpu, dbias)};
  });
  if (!forward.empty()) r.y = forward[0];
  if (!data.empty()) r.dx = data[0];
  if (!filter.empty()) r.dw = filter[0], r.dbias = filter[1];
  return r;
}

// Relative L2 error allowed for TF32 on a pass summing `terms` products. TF32 keeps 10 of fp32's
// 23 mantissa bits, so each input is off by a relative |d| <= u = 2^-10 (2^-11 if the hardware
// rounds to nearest; we assume it truncates). A product x * w is then off by at most 2u + u^2, and
// fp32 accumulation of `terms` of them adds at most gamma = terms * 2^-24 / (1 - terms * 2^-24)
// relative to each term (recursive summation, Higham §4.2). For the random, zero-mean inputs
// here, these per-term errors do not add up coherently: the error's L2 norm relative to the
// result's is at most their bound eps = 2u + u^2 + gamma (1 + u)^2, whatever the problem's size. The
// factor 1.5 covers the scatter of that ratio over the few outputs of the smallest problems.
double tf32_tolerance(int64_t terms) {
  const double u = std::ldexp(1.0, -10);
  const double t = static_cast<double>(terms) * std::ldexp(1.0, -24);
  const double gamma = t / (1.0 - t);
  return 1.5 * (2 * u + u * u + gamma * (1 + u) * (1 + u));
}

enum class Precision { fp32, tf32, bf16 };

// BF16 (train.precision bf16): both backends round the operands to bf16 and y, dx to their bf16
// storage, so they differ by the summation order, amplified to a bf16 ulp (2^-8 relative) where
// it crosses a rounding boundary; cudnn also rounds dw to bf16 and rounds y before the bias and
// again after it (cuda/cudnn_backend.h). 1e-2 relative L2 covers all of it.
constexpr double kBf16Tolerance = 1e-2;

// Runs every `stride`-th of `problems` on the named backend and compares each pass with
// `reference` (the cpu backend, or another GPU backend): fp32 within 1e-5 relative L2, tf32 within
// tf32_tolerance of the pass's reduction length, twice that between two TF32 backends (each is
// within it of the exact result).
void check_problems(const std::vector<ConvProblem>& problems, const std::string& name, int stride, Precision precision,
                    const std::string& reference = "cpu") {
  std::unique_ptr<Backend> gpu = testing::make_gpu_backend(name);
  const bool cpu_reference = reference == "cpu";
  std::unique_ptr<Backend> ref = cpu_reference ? make_cpu_backend() : testing::make_gpu_backend(reference);
  if (precision == Precision::bf16) {
    gpu->set_precision(convnet::Precision::bf16);
    ref->set_precision(convnet::Precision::bf16);
  }
  const double both = cpu_reference ? 1.0 : 2.0;
  const int count = testing::problems_to_run();
  double worst[4] = {0, 0, 0, 0}, worst_ratio[4] = {0, 0, 0, 0};  // error, and error / tolerance
  const char* pass_names[4] = {"forward y", "backward data dx", "backward filter dw", "backward filter dbias"};
  int failed = 0, checked = 0;
  std::vector<Unsupported> unsupported;
  for (const ConvProblem& q : problems) {
    if (q.index >= count) break;
    if (q.index % stride != 0) continue;
    const ConvInputs in(q);
    const ConvResult want = cpu_reference ? run_cpu(*ref, q, in) : run_gpu(*ref, q, in, unsupported);
    const ConvResult got = run_gpu(*gpu, q, in, unsupported);
    const Tensor* pairs[4][2] = {
        {&got.y, &want.y}, {&got.dx, &want.dx}, {&got.dw, &want.dw}, {&got.dbias, &want.dbias}};
    bool ok = true;
    for (int pass = 0; pass < 4; ++pass) {
      if ((pass == 3 && !q.bias) || !pairs[pass][0]->defined() || !pairs[pass][1]->defined()) continue;
      const double tolerance = precision == Precision::fp32   ? 1e-5
                               : precision == Precision::bf16 ? kBf16Tolerance
                                                              : both * tf32_tolerance(q.reduction_length(pass));
      const double err = testing::relative_l2_error(*pairs[pass][0], *pairs[pass][1]);
      worst[pass] = std::max(worst[pass], err);
      worst_ratio[pass] = std::max(worst_ratio[pass], err / tolerance);
      const ::testing::AssertionResult close = testing::close_l2(*pairs[pass][0], *pairs[pass][1], tolerance);
      EXPECT_TRUE(close) << name << " " << pass_names[pass] << " differs from " << reference << " on " << q.str()
                         << " (tolerance " << tolerance << ")";
      ok = ok && static_cast<bool>(close);
    }
    ++checked;
    if (!ok && ++failed >= 10) {
      ADD_FAILURE() << "stopping after 10 failing problems";
      break;
    }
  }
  std::cout << name << " against " << reference << ": " << checked
            << " problems, worst relative L2 error (and its share of the tolerance): ";
  for (int pass = 0; pass < 4; ++pass)
    std::cout << (pass ? ", " : "") << pass_names[pass] << " " << worst[pass] << " (" << 100 * worst_ratio[pass]
              << "%)";
  std::cout << (precision == Precision::fp32   ? "; tolerance 1e-5\n"
                : precision == Precision::bf16 ? "; tolerance 1e-2 (bf16)\n"
                                               : "; tolerance from each pass's length\n");
  if (!unsupported.empty()) {
    std::cout << name << ": " << unsupported.size()
              << " passes skipped, cuDNN has no algorithm the policy accepts (reported, not failed):\n";
    for (const Unsupported& u : unsupported)
      std::cout << "  problem #" << u.problem << " " << u.pass << ": " << u.why << "\n";
    ::testing::Test::RecordProperty(name + "_unsupported_passes", static_cast<int>(unsupported.size()));
  }
}

// check_problems on the 400 ungrouped problems.
void check_backend(const std::string& name, int stride, Precision precision, const std::string& reference = "cpu") {
  const std::vector<ConvProblem> problems = make_problems();
  ASSERT_EQ(static_cast<int>(problems.size()), kProblems);
  check_problems(problems, name, stride, precision, reference);
}

class GpuConvRandom : public ::testing::Test {
 protected:
  void SetUp() override { CONVNET_SKIP_WITHOUT_GPU(); }
};

TEST_F(GpuConvRandom, ProblemsCoverTheRequestedRanges) {
  // The generator itself: every range end is reached and no output is empty.
  const std::vector<ConvProblem> problems = make_problems();
  ASSERT_EQ(static_cast<int>(problems.size()), kProblems);
  int c3 = 0, c_odd = 0, rectangular = 0, dilated = 0, stride3 = 0, pad2 = 0, no_bias = 0, one_pixel = 0;
  int64_t max_c = 0, max_k = 0, max_h = 0, max_n = 0, max_r = 0;
  for (const ConvProblem& q : problems) {
    EXPECT_GE(q.out_h(), 1) << q.str();
    EXPECT_GE(q.out_w(), 1) << q.str();
    c3 += q.c == 3;
    c_odd += q.c % 4 != 0;
    rectangular += q.r != q.s || q.h != q.w;
    dilated += q.p.dilation_h == 2 || q.p.dilation_w == 2;
    stride3 += q.p.stride_h == 3 || q.p.stride_w == 3;
    pad2 += q.p.pad_h == 2 || q.p.pad_w == 2;
    no_bias += !q.bias;
    one_pixel += q.out_h() == 1 && q.out_w() == 1;
    max_c = std::max(max_c, q.c);
    max_k = std::max(max_k, q.k);
    max_h = std::max({max_h, q.h, q.w});
    max_n = std::max(max_n, q.n);
    max_r = std::max({max_r, q.r, q.s});
  }
  EXPECT_GT(c3, 40);
  EXPECT_GT(c_odd, 200);
  EXPECT_GT(rectangular, 100);
  EXPECT_GT(dilated, 100);
  EXPECT_GT(stride3, 50);
  EXPECT_GT(pad2, 50);
  EXPECT_GT(no_bias, 20);
  EXPECT_GT(one_pixel, 0);
  EXPECT_GE(max_c, 60);
  EXPECT_GE(max_k, 60);
  EXPECT_EQ(max_h, 33);
  EXPECT_EQ(max_n, 8);
  EXPECT_EQ(max_r, 5);
}

TEST_F(GpuConvRandom, CudaMatchesCpu) {
  check_backend("cuda", 1, Precision::fp32);
}

TEST_F(GpuConvRandom, CudnnMatchesCpu) {
  check_backend("cudnn", 1, Precision::fp32);
}

// TF32 rounds the inputs to 10 mantissa bits: a tolerance derived from each pass's reduction
// length (tf32_tolerance), on every 4th problem.
TEST_F(GpuConvRandom, CudnnTf32MatchesCpuOnASubset) {
  check_backend("cudnn_tf32", 4, Precision::tf32);
}

// cuda_tf32 runs our v4 tensor-core kernels in TF32: the same tolerance as cuDNN's TF32.
TEST_F(GpuConvRandom, CudaTf32MatchesCpuOnASubset) {
  check_backend("cuda_tf32", 4, Precision::tf32);
}

// v4 TF32 against cuDNN in the same precision on every problem (no cpu run: fast).
TEST_F(GpuConvRandom, CudaTf32MatchesCudnnTf32) {
  check_backend("cuda_tf32", 1, Precision::tf32, "cudnn_tf32");
}

// Grouped (2, 3, 4, 8 groups) and depthwise (one or two filters per channel) problems on cuDNN's
// grouped convolution (the descriptor's group count) against the cpu reference.
TEST_F(GpuConvRandom, CudnnMatchesCpuOnGroupedProblems) {
  check_problems(make_grouped_problems(), "cudnn", 1, Precision::fp32);
}

TEST_F(GpuConvRandom, CudnnTf32MatchesCpuOnGroupedProblems) {
  check_problems(make_grouped_problems(), "cudnn_tf32", 2, Precision::tf32);
}

// train.precision bf16 on cuDNN (bf16 NHWC tensors, FP32 compute) against the cpu reference in
// bf16, every 2nd problem, and the grouped ones; and our v4 BF16 against cuDNN BF16.
TEST_F(GpuConvRandom, CudnnBf16MatchesCpuBf16OnASubset) {
  check_backend("cudnn", 2, Precision::bf16);
}

TEST_F(GpuConvRandom, CudnnBf16MatchesCpuBf16OnGroupedProblems) {
  check_problems(make_grouped_problems(), "cudnn", 2, Precision::bf16);
}

TEST_F(GpuConvRandom, CudaBf16MatchesCudnnBf16) {
  check_backend("cuda", 1, Precision::bf16, "cudnn");
}

// Linear layers in bf16 on cudnn (cublasGemmEx, bf16 inputs, FP32 compute) against the cpu
// reference in bf16: y, dx, dw and dbias, every output NaN-poisoned first.
TEST_F(GpuConvRandom, CudnnBf16LinearMatchesCpuBf16) {
  std::unique_ptr<Backend> cpu = make_cpu_backend();
  std::unique_ptr<Backend> gpu = testing::make_gpu_backend("cudnn");
  cpu->set_precision(convnet::Precision::bf16);
  gpu->set_precision(convnet::Precision::bf16);
  struct Size {
    int64_t n, in, out;
  };
  for (const Size sz : {Size{1, 1, 1}, Size{7, 33, 10}, Size{64, 512, 10}, Size{128, 300, 257}}) {
    Rng rng(static_cast<uint64_t>(sz.n * 1000003 + sz.in * 101 + sz.out));
    const Tensor x = random_tensor({sz.n, sz.in}, rng), w = random_tensor({sz.out, sz.in}, rng);
    const Tensor bias = random_tensor({sz.out}, rng), dy = random_tensor({sz.n, sz.out}, rng);
    Tensor y = testing::poisoned({sz.n, sz.out}), dx = testing::poisoned({sz.n, sz.in});
    Tensor dw = testing::poisoned({sz.out, sz.in}), dbias = testing::poisoned({sz.out});
    cpu->linear_forward(x, w, &bias, y);
    cpu->linear_backward(x, w, dy, &dx, dw, &dbias);
    const Tensor gx = to_device(*gpu, x), gw = to_device(*gpu, w), gb = to_device(*gpu, bias),
                 gdy = to_device(*gpu, dy);
    Tensor gy = poisoned_device(*gpu, {sz.n, sz.out}), gdx = poisoned_device(*gpu, {sz.n, sz.in});
    Tensor gdw = poisoned_device(*gpu, {sz.out, sz.in}), gdbias = poisoned_device(*gpu, {sz.out});
    gpu->linear_forward(gx, gw, &gb, gy);
    gpu->linear_backward(gx, gw, gdy, &gdx, gdw, &gdbias);
    const std::string what =
        "linear n " + std::to_string(sz.n) + " in " + std::to_string(sz.in) + " out " + std::to_string(sz.out);
    EXPECT_TRUE(testing::close_l2(to_host(*gpu, gy), y, kBf16Tolerance)) << what << " y";
    EXPECT_TRUE(testing::close_l2(to_host(*gpu, gdx), dx, kBf16Tolerance)) << what << " dx";
    EXPECT_TRUE(testing::close_l2(to_host(*gpu, gdw), dw, kBf16Tolerance)) << what << " dw";
    EXPECT_TRUE(testing::close_l2(to_host(*gpu, gdbias), dbias, kBf16Tolerance)) << what << " dbias";
  }
}

TEST(GpuConvGroupedProblems, CoverGroupedAndDepthwiseShapes) {
  // The generator itself (runs without a GPU): valid groups, every kind present.
  const std::vector<ConvProblem> problems = make_grouped_problems();
  ASSERT_EQ(static_cast<int>(problems.size()), kGroupedProblems);
  int depthwise = 0, multiplier2 = 0, batch1 = 0, strided = 0, dilated = 0, padded = 0;
  std::set<int> group_counts;
  for (const ConvProblem& q : problems) {
    EXPECT_GE(q.out_h(), 1) << q.str();
    EXPECT_GE(q.out_w(), 1) << q.str();
    EXPECT_GT(q.p.groups, 1) << q.str();
    EXPECT_EQ(q.c % q.p.groups, 0) << q.str();
    EXPECT_EQ(q.k % q.p.groups, 0) << q.str();
    EXPECT_EQ(q.w_shape()[3], q.c / q.p.groups) << q.str();
    if (q.p.groups == q.c) {
      ++depthwise;
      multiplier2 += q.k == 2 * q.c;
    } else {
      group_counts.insert(q.p.groups);
    }
    batch1 += q.n == 1;
    strided += q.p.stride_h == 2 || q.p.stride_w == 2;
    dilated += q.p.dilation_h == 2 || q.p.dilation_w == 2;
    padded += q.p.pad_h > 0 || q.p.pad_w > 0;
  }
  EXPECT_GT(depthwise, 20);
  EXPECT_GT(multiplier2, 5);
  EXPECT_GT(depthwise - multiplier2, 5);
  EXPECT_EQ(group_counts, (std::set<int>{2, 3, 4, 8}));
  EXPECT_GT(batch1, 5);
  EXPECT_GT(strided, 20);
  EXPECT_GT(dilated, 20);
  EXPECT_GT(padded, 50);
}

// Relative L2 error allowed for BF16 on a pass summing `terms` products: tf32_tolerance's bound
// with u = 2^-8 (bf16 keeps 8 significant bits), plus u once more for y and dx, which the
// kernels round to bf16.
double bf16_tolerance(int64_t terms) {
  const double u = std::ldexp(1.0, -8);
  const double t = static_cast<double>(terms) * std::ldexp(1.0, -24);
  const double gamma = t / (1.0 - t);
  return 1.5 * (3 * u + u * u + gamma * (1 + u) * (1 + u));
}

// Grouped and depthwise convolutions on the cuda backend in one precision, every output within
// the precision's tolerance of the float64 reference (the cpu backend's groups are not what this
// checks). Narrow groups run on v0 / v2 in every precision (cuda/cuda_backend.cpp), wide ones on
// v2 in fp32 and v4 otherwise; both occur.
class GpuConvGrouped : public ::testing::TestWithParam<convnet::Precision> {
 protected:
  void SetUp() override { CONVNET_SKIP_WITHOUT_GPU(); }
};

TEST_P(GpuConvGrouped, CudaMatchesTheFloat64Reference) {
  const convnet::Precision precision = GetParam();
  std::unique_ptr<Backend> gpu = testing::make_gpu_backend("cuda");
  gpu->set_precision(precision);
  const char* pass_names[4] = {"forward y", "backward data dx", "backward filter dw", "backward filter dbias"};
  double worst_ratio[4] = {0, 0, 0, 0};
  int failed = 0;
  std::vector<Unsupported> unsupported;  // only cuDNN reports any
  for (const ConvProblem& q : testing::make_grouped_problems()) {
    const ConvInputs in(q);
    const std::vector<double> want[4] = {testing::naive::conv2d_forward(in.x, in.w, q.bias ? &in.bias : nullptr, q.p),
                                         testing::naive::conv2d_backward_data(in.dy, in.w, q.x_shape(), q.p),
                                         testing::naive::conv2d_backward_filter(in.x, in.dy, q.w_shape(), q.p),
                                         testing::naive::sum_over_last_dim(in.dy)};
    const ConvResult got = run_gpu(*gpu, q, in, unsupported);
    const Tensor* outputs[4] = {&got.y, &got.dx, &got.dw, &got.dbias};
    bool ok = true;
    for (int pass = 0; pass < 4; ++pass) {
      if (pass == 3 && !q.bias) continue;
      const int64_t terms = q.reduction_length(std::min(pass, 2));
      // dw and dbias are fp32 in every precision's kernels.
      const double tolerance = precision == convnet::Precision::fp32   ? 1e-5
                               : precision == convnet::Precision::tf32 ? tf32_tolerance(terms)
                                                                       : bf16_tolerance(terms);
      worst_ratio[pass] =
          std::max(worst_ratio[pass], testing::relative_l2_error(*outputs[pass], want[pass]) / tolerance);
      const ::testing::AssertionResult close = testing::close_l2(*outputs[pass], want[pass], tolerance);
      EXPECT_TRUE(close) << precision_name(precision) << " " << pass_names[pass] << " on " << q.str();
      ok = ok && static_cast<bool>(close);
    }
    if (!ok && ++failed >= 10) {
      ADD_FAILURE() << "stopping after 10 failing problems";
      break;
    }
  }
  std::cout << "grouped problems in " << precision_name(precision) << ", worst error as a share of the tolerance:";
  for (int pass = 0; pass < 4; ++pass) std::cout << " " << pass_names[pass] << " " << 100 * worst_ratio[pass] << "%";
  std::cout << "\n";
}

std::string precision_test_name(const ::testing::TestParamInfo<convnet::Precision>& param) {
  return precision_name(param.param);
}

INSTANTIATE_TEST_SUITE_P(Precisions, GpuConvGrouped,
                         ::testing::Values(convnet::Precision::fp32, convnet::Precision::tf32,
                                           convnet::Precision::bf16),
                         precision_test_name);

TEST(GpuConvGroupedProblems, CoverNarrowWideAndDepthwiseGroups) {
  // The generator itself (no GPU): every kind of group the backend routes differently occurs.
  int depthwise = 0, multiplier2 = 0, narrow = 0, wide = 0, one_wide = 0, odd = 0;
  for (const ConvProblem& q : testing::make_grouped_problems()) {
    const int64_t gc = q.c / q.p.groups, gk = q.k / q.p.groups;
    ASSERT_EQ(gc * q.p.groups, q.c) << q.str();
    ASSERT_EQ(gk * q.p.groups, q.k) << q.str();
    ASSERT_GE(q.out_h(), 1) << q.str();
    ASSERT_GE(q.out_w(), 1) << q.str();
    depthwise += gc == 1 && q.p.groups == q.c;
    multiplier2 += gc == 1 && gk == 2;
    narrow += gc < 8 || gk < 8;
    wide += gc >= 8 && gk >= 8;
    one_wide += gc == 1;
    odd += gc % 2 == 1 && gc > 1;
  }
  EXPECT_GT(depthwise, 15);
  EXPECT_GT(multiplier2, 5);
  EXPECT_GT(narrow, 30);
  EXPECT_GT(wide, 5);
  EXPECT_GT(one_wide, 15);
  EXPECT_GE(odd, 5);
}

TEST(GpuConvTolerance, Tf32ToleranceGrowsWithTheReductionLength) {
  // Runs without a GPU: the bound is 2u + u^2 (u = 2^-10) plus about 2^-24 per term.
  const double u = 1.0 / 1024;
  EXPECT_NEAR(tf32_tolerance(1), 1.5 * (2 * u + u * u + std::ldexp(1.0, -24) * (1 + u) * (1 + u)), 1e-12);
  EXPECT_LT(tf32_tolerance(27), tf32_tolerance(8 * 33 * 33));
  EXPECT_GT(tf32_tolerance(8 * 33 * 33), 1.5 * (2.0 / 1024 + 8.0 * 33 * 33 / 16777216.0));
  EXPECT_LT(tf32_tolerance(8 * 33 * 33), 4e-3);  // loose enough for TF32, far below a wrong result
}

}  // namespace
}  // namespace convnet
