// Convolution on the cpu backend against the float64 naive reference (tests/common/naive_ops.h).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/base/error.h"
#include "core/cpu/conv.h"
#include "core/cpu/cpu_backend.h"
#include "tests/common/naive_ops.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using namespace testing;  // random inputs, poisoned outputs, close_l2, the naive:: reference

constexpr double kTol = 1e-5;

struct ConvProblem {
  int64_t n, h, w, c, k, r, s;
  Conv2dParams p;
  Shape x_shape() const { return {n, h, w, c}; }
  Shape w_shape() const { return {k, r, s, c / p.groups}; }
  Shape y_shape() const {
    return {n, conv_output_size(h, r, p.stride_h, p.pad_h, p.dilation_h),
            conv_output_size(w, s, p.stride_w, p.pad_w, p.dilation_w), k};
  }
  std::string str() const {
    return fmt::format("x [{},{},{},{}] w [{},{},{},{}] stride {}x{} pad {}x{} dilation {}x{} groups {}", n, h, w, c, k,
                       r, s, c / p.groups, p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dilation_h, p.dilation_w,
                       p.groups);
  }
};

// ~40 random valid problems: every C, K, kernel, stride, padding and dilation in the brief's ranges.
std::vector<ConvProblem> random_problems(int count) {
  Rng rng(2024);
  const int64_t channels[] = {1, 3, 4, 5, 8, 16};
  const int64_t filters[] = {1, 4, 7, 16};
  auto pick = [&](int lo, int hi) { return lo + static_cast<int>(rng.below(static_cast<uint64_t>(hi - lo + 1))); };
  std::vector<ConvProblem> problems;
  while (static_cast<int>(problems.size()) < count) {
    ConvProblem pr{};
    pr.n = pick(1, 3);
    pr.h = pick(1, 12);
    pr.w = pick(1, 12);
    pr.c = channels[rng.below(6)];
    pr.k = filters[rng.below(4)];
    pr.r = pick(1, 5);
    pr.s = rng.below(2) ? pr.r : pick(1, 5);  // square half the time
    pr.p.stride_h = pick(1, 3);
    pr.p.stride_w = rng.below(2) ? pr.p.stride_h : pick(1, 3);
    pr.p.pad_h = pick(0, 2);
    pr.p.pad_w = pick(0, 2);
    pr.p.dilation_h = pick(1, 2);
    pr.p.dilation_w = pick(1, 2);
    const Shape y = pr.y_shape();
    if (y[1] <= 0 || y[2] <= 0) continue;
    problems.push_back(pr);
  }
  return problems;
}

// Grouped and depthwise problems: groups 2 and 4 (also with 1x1 kernels, with and without
// im2col), depthwise with K = C and K = 2C, with stride 2, padding, dilation and batch 1, more than
// the 64 filters a depthwise filter-gradient task holds, and then ~30 random ones.
std::vector<ConvProblem> grouped_problems() {
  auto problem = [](int64_t n, int64_t h, int64_t w, int64_t c, int64_t k, int64_t r, int64_t s, int groups,
                    Conv2dParams p) {
    p.groups = groups;
    return ConvProblem{n, h, w, c, k, r, s, p};
  };
  std::vector<ConvProblem> problems = {
      problem(2, 9, 8, 6, 4, 3, 3, 2, conv_params(1, 1, 1, 1, 1, 1)),
      problem(1, 9, 10, 4, 8, 3, 3, 2, conv_params(2, 2, 1, 1, 1, 1)),
      problem(2, 11, 9, 8, 12, 3, 2, 4, conv_params(1, 2, 2, 1, 2, 1)),
      problem(2, 5, 6, 16, 8, 1, 1, 4, conv_params(1, 1, 0, 0, 1, 1)),  // identity columns
      problem(2, 5, 6, 16, 8, 1, 1, 4, conv_params(2, 2, 0, 0, 1, 1)),  // 1x1 through im2col
      problem(3, 7, 7, 6, 3, 3, 3, 3, conv_params(1, 1, 1, 1, 1, 1)),   // two channels, one filter per group
      problem(2, 8, 9, 8, 8, 3, 3, 8, conv_params(1, 1, 1, 1, 1, 1)),   // depthwise
      problem(1, 9, 9, 5, 10, 3, 3, 5, conv_params(2, 2, 1, 1, 1, 1)),  // depthwise, K = 2C, batch 1
      problem(1, 10, 8, 16, 16, 3, 3, 16, conv_params(2, 1, 2, 2, 2, 2)),
      problem(3, 9, 11, 3, 6, 5, 5, 3, conv_params(2, 2, 2, 2, 1, 2)),
      problem(2, 4, 5, 4, 8, 1, 1, 4, conv_params(1, 1, 0, 0, 1, 1)),      // depthwise 1x1
      problem(2, 5, 6, 70, 140, 3, 3, 70, conv_params(1, 1, 1, 1, 1, 1)),  // 140 filters: three blocks
  };
  Rng rng(2025);
  const int group_counts[] = {2, 3, 4};
  for (ConvProblem pr : random_problems(30)) {
    if (rng.below(2)) {  // depthwise, channel multiplier 1 or 2
      pr.c = pick(rng, 2, 9);
      pr.k = pr.c * pick(rng, 1, 2);
      pr.p.groups = static_cast<int>(pr.c);
    } else {
      pr.p.groups = group_counts[rng.below(3)];
      pr.c = pr.p.groups * pick(rng, 1, 4);
      pr.k = pr.p.groups * pick(rng, 1, 3);
    }
    problems.push_back(pr);
  }
  return problems;
}

// Every pass of `pr` on the cpu backend against the naive reference, outputs poisoned with NaN
// first; random inputs from `rng`.
void expect_forward_matches_naive(Backend& be, const ConvProblem& pr, Rng& rng, bool with_bias) {
  const Tensor x = random_tensor(pr.x_shape(), rng), w = random_tensor(pr.w_shape(), rng);
  const Tensor b = random_tensor({pr.k}, rng);
  Tensor y = poisoned(pr.y_shape());
  be.conv2d_forward(x, w, with_bias ? &b : nullptr, y, pr.p);
  EXPECT_TRUE(close_l2(y, naive::conv2d_forward(x, w, with_bias ? &b : nullptr, pr.p), kTol));
}

void expect_backward_data_matches_naive(Backend& be, const ConvProblem& pr, Rng& rng) {
  const Tensor w = random_tensor(pr.w_shape(), rng), dy = random_tensor(pr.y_shape(), rng);
  Tensor dx = poisoned(pr.x_shape());
  be.conv2d_backward_data(dy, w, dx, pr.p);
  const std::vector<double> expected = naive::conv2d_backward_data(dy, w, pr.x_shape(), pr.p);
  // Input pixels no window reaches get exactly zero (checked separately: close_l2 is relative).
  for (size_t i = 0; i < expected.size(); ++i)
    if (expected[i] == 0.0) {
      EXPECT_EQ(dx.f32()[i], 0.0f) << "at " << i;
    }
  EXPECT_TRUE(close_l2(dx, expected, kTol));
}

void expect_backward_filter_matches_naive(Backend& be, const ConvProblem& pr, Rng& rng) {
  const Tensor x = random_tensor(pr.x_shape(), rng), dy = random_tensor(pr.y_shape(), rng);
  Tensor dw = poisoned(pr.w_shape());
  Tensor db = poisoned({pr.k});
  be.conv2d_backward_filter(x, dy, dw, &db, pr.p);
  EXPECT_TRUE(close_l2(dw, naive::conv2d_backward_filter(x, dy, pr.w_shape(), pr.p), kTol));
  EXPECT_TRUE(close_l2(db, naive::sum_over_last_dim(dy), kTol));
}

TEST(OpsConv, HandComputedStride1AndPaddedStride2) {
  auto be = make_cpu_backend();
  const Tensor x = Tensor::from_vector({1, 3, 3, 1}, {1, 2, 3, 4, 5, 6, 7, 8, 9});
  const Tensor w = Tensor::from_vector({1, 2, 2, 1}, {1, 2, 3, 4});
  const Tensor b = Tensor::from_vector({1}, {0.5f});
  Tensor y = poisoned({1, 2, 2, 1});
  be->conv2d_forward(x, w, &b, y, {});
  EXPECT_EQ(y.to_vector(), (std::vector<float>{37.5f, 47.5f, 67.5f, 77.5f}));
  Conv2dParams strided;
  strided.stride_h = strided.stride_w = 2;
  strided.pad_h = strided.pad_w = 1;
  be->conv2d_forward(x, w, &b, y, strided);
  EXPECT_EQ(y.to_vector(), (std::vector<float>{4.5f, 18.5f, 36.5f, 77.5f}));
  // The naive reference agrees on the same hand values.
  EXPECT_TRUE(close_l2(y, naive::conv2d_forward(x, w, &b, strided), 1e-12));
}

TEST(OpsConv, HandComputedBackward) {
  auto be = make_cpu_backend();
  const Tensor x = Tensor::from_vector({1, 3, 3, 1}, {1, 2, 3, 4, 5, 6, 7, 8, 9});
  const Tensor w = Tensor::from_vector({1, 2, 2, 1}, {1, 2, 3, 4});
  const Tensor dy = Tensor::from_vector({1, 2, 2, 1}, {1, -1, 2, 0.5f});
  Tensor dx = poisoned({1, 3, 3, 1});
  be->conv2d_backward_data(dy, w, dx, {});
  EXPECT_EQ(dx.to_vector(), (std::vector<float>{1, 1, -2, 5, 5.5f, -3, 6, 9.5f, 2}));
  Tensor dw = poisoned({1, 2, 2, 1});
  Tensor db = poisoned({1});
  be->conv2d_backward_filter(x, dy, dw, &db, {});
  EXPECT_EQ(dw.to_vector(), (std::vector<float>{9.5f, 12, 17, 19.5f}));
  EXPECT_EQ(db.to_vector(), (std::vector<float>{2.5f}));
  EXPECT_TRUE(close_l2(dx, naive::conv2d_backward_data(dy, w, dx.shape(), {}), 1e-12));
  EXPECT_TRUE(close_l2(dw, naive::conv2d_backward_filter(x, dy, dw.shape(), {}), 1e-12));
}

// The naive passes are mutual adjoints: <dy, conv(x, w)> = <bwd_data(dy, w), x> = <bwd_filter(x, dy), w>.
TEST(OpsConv, NaiveReferencePassesAreAdjoint) {
  Rng rng(5);
  std::vector<ConvProblem> problems = random_problems(8);
  for (const ConvProblem& pr : grouped_problems()) problems.push_back(pr);
  for (const ConvProblem& pr : problems) {
    SCOPED_TRACE(pr.str());
    const Tensor x = random_tensor(pr.x_shape(), rng), w = random_tensor(pr.w_shape(), rng);
    const Tensor dy = random_tensor(pr.y_shape(), rng);
    auto dot = [](const std::vector<double>& a, const Tensor& b) {
      double s = 0;
      for (size_t i = 0; i < a.size(); ++i) s += a[i] * b.f32()[i];
      return s;
    };
    const double forward = dot(naive::conv2d_forward(x, w, nullptr, pr.p), dy);
    EXPECT_NEAR(dot(naive::conv2d_backward_data(dy, w, pr.x_shape(), pr.p), x), forward, 1e-9);
    EXPECT_NEAR(dot(naive::conv2d_backward_filter(x, dy, pr.w_shape(), pr.p), w), forward, 1e-9);
  }
}

TEST(OpsConv, RandomSweepForward) {
  auto be = make_cpu_backend();
  Rng rng(11);
  int index = 0;
  for (const ConvProblem& pr : random_problems(40)) {
    SCOPED_TRACE(pr.str());
    expect_forward_matches_naive(*be, pr, rng, index++ % 2 == 0);
  }
}

TEST(OpsConv, RandomSweepBackwardData) {
  auto be = make_cpu_backend();
  Rng rng(12);
  for (const ConvProblem& pr : random_problems(40)) {
    SCOPED_TRACE(pr.str());
    expect_backward_data_matches_naive(*be, pr, rng);
  }
}

TEST(OpsConv, RandomSweepBackwardFilterAndBias) {
  auto be = make_cpu_backend();
  Rng rng(13);
  for (const ConvProblem& pr : random_problems(40)) {
    SCOPED_TRACE(pr.str());
    expect_backward_filter_matches_naive(*be, pr, rng);
  }
}

TEST(OpsConv, GroupedAndDepthwiseForward) {
  auto be = make_cpu_backend();
  Rng rng(21);
  int index = 0;
  for (const ConvProblem& pr : grouped_problems()) {
    SCOPED_TRACE(pr.str());
    expect_forward_matches_naive(*be, pr, rng, index++ % 2 == 0);
  }
}

TEST(OpsConv, GroupedAndDepthwiseBackwardData) {
  auto be = make_cpu_backend();
  Rng rng(22);
  for (const ConvProblem& pr : grouped_problems()) {
    SCOPED_TRACE(pr.str());
    expect_backward_data_matches_naive(*be, pr, rng);
  }
}

TEST(OpsConv, GroupedAndDepthwiseBackwardFilterAndBias) {
  auto be = make_cpu_backend();
  Rng rng(23);
  for (const ConvProblem& pr : grouped_problems()) {
    SCOPED_TRACE(pr.str());
    expect_backward_filter_matches_naive(*be, pr, rng);
  }
}

// A grouped convolution is its groups' convolutions side by side: group g's output channels are
// the ungrouped convolution of its input channels with its filters.
TEST(OpsConv, GroupsAreIndependentConvolutions) {
  auto be = make_cpu_backend();
  Rng rng(24);
  Conv2dParams p = conv_params(2, 1, 1, 1, 1, 1);
  p.groups = 3;
  const ConvProblem pr{2, 7, 6, 6, 9, 3, 3, p};
  const Tensor x = random_tensor(pr.x_shape(), rng), w = random_tensor(pr.w_shape(), rng);
  Tensor y = poisoned(pr.y_shape());
  be->conv2d_forward(x, w, nullptr, y, p);
  const int64_t gc = 2, gk = 3, pixels = y.numel() / pr.k;
  for (int64_t grp = 0; grp < p.groups; ++grp) {
    Tensor xg({pr.n, pr.h, pr.w, gc}), wg({gk, pr.r, pr.s, gc});
    for (int64_t i = 0; i < xg.numel(); ++i) xg.f32()[i] = x.f32()[i / gc * pr.c + grp * gc + i % gc];
    for (int64_t i = 0; i < wg.numel(); ++i) wg.f32()[i] = w.f32()[grp * wg.numel() + i];
    Conv2dParams ungrouped = p;
    ungrouped.groups = 1;
    Tensor yg = poisoned({pr.n, y.dim(1), y.dim(2), gk});
    be->conv2d_forward(xg, wg, nullptr, yg, ungrouped);
    for (int64_t px = 0; px < pixels; ++px)
      for (int64_t j = 0; j < gk; ++j)
        EXPECT_NEAR(y.f32()[px * pr.k + grp * gk + j], yg.f32()[px * gk + j], 1e-5) << "group " << grp;
  }
}

// 1x1 convolutions skip im2col (stride 1) or use it (stride 2); both must be exact.
TEST(OpsConv, OneByOneKernels) {
  auto be = make_cpu_backend();
  Rng rng(14);
  for (int stride : {1, 2}) {
    ConvProblem pr{2, 5, 6, 8, 7, 1, 1, {}};
    pr.p.stride_h = pr.p.stride_w = stride;
    SCOPED_TRACE(pr.str());
    const Tensor x = random_tensor(pr.x_shape(), rng), w = random_tensor(pr.w_shape(), rng);
    const Tensor dy = random_tensor(pr.y_shape(), rng);
    Tensor y = poisoned(pr.y_shape()), dx = poisoned(pr.x_shape()), dw = poisoned(pr.w_shape());
    be->conv2d_forward(x, w, nullptr, y, pr.p);
    be->conv2d_backward_data(dy, w, dx, pr.p);
    be->conv2d_backward_filter(x, dy, dw, nullptr, pr.p);
    EXPECT_TRUE(close_l2(y, naive::conv2d_forward(x, w, nullptr, pr.p), kTol));
    EXPECT_TRUE(close_l2(dx, naive::conv2d_backward_data(dy, w, pr.x_shape(), pr.p), kTol));
    EXPECT_TRUE(close_l2(dw, naive::conv2d_backward_filter(x, dy, pr.w_shape(), pr.p), kTol));
  }
}

// Columns of one image exceed the 64 MB budget, so the batch runs one image per chunk and the
// filter gradient accumulates across chunks.
TEST(OpsConv, ChunkedBatchMatchesNaive) {
  ConvProblem pr{3, 104, 104, 64, 2, 5, 5, {}};
  pr.p.pad_h = pr.p.pad_w = 2;
  const Tensor probe_x(pr.x_shape()), probe_w(pr.w_shape());
  ASSERT_EQ(cpu::conv_chunk_images(cpu::conv_geometry(probe_x, probe_w, pr.p, "test")), 1);
  auto be = make_cpu_backend();
  Rng rng(15);
  const Tensor x = random_tensor(pr.x_shape(), rng), w = random_tensor(pr.w_shape(), rng);
  const Tensor dy = random_tensor(pr.y_shape(), rng);
  Tensor y = poisoned(pr.y_shape()), dx = poisoned(pr.x_shape()), dw = poisoned(pr.w_shape());
  be->conv2d_forward(x, w, nullptr, y, pr.p);
  EXPECT_TRUE(close_l2(y, naive::conv2d_forward(x, w, nullptr, pr.p), kTol));
  be->conv2d_backward_data(dy, w, dx, pr.p);
  EXPECT_TRUE(close_l2(dx, naive::conv2d_backward_data(dy, w, pr.x_shape(), pr.p), kTol));
  be->conv2d_backward_filter(x, dy, dw, nullptr, pr.p);
  EXPECT_TRUE(close_l2(dw, naive::conv2d_backward_filter(x, dy, pr.w_shape(), pr.p), kTol));
}

TEST(OpsConv, RejectsInconsistentShapes) {
  auto be = make_cpu_backend();
  const Tensor x = Tensor::full({1, 4, 4, 3}, 1.0f);
  const Tensor w_bad_c = Tensor::full({2, 3, 3, 4}, 1.0f);
  Tensor y({1, 2, 2, 2});
  EXPECT_THROW(be->conv2d_forward(x, w_bad_c, nullptr, y, {}), Error);
  const Tensor w = Tensor::full({2, 3, 3, 3}, 1.0f);
  Tensor y_wrong({1, 2, 2, 3});
  try {
    be->conv2d_forward(x, w, nullptr, y_wrong, {});
    ADD_FAILURE() << "expected an error for the wrong output shape";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("y has shape [1, 2, 2, 3], expected [1, 2, 2, 2]"), std::string::npos)
        << e.what();
  }
  const Tensor w_big = Tensor::full({2, 5, 5, 3}, 1.0f);
  EXPECT_THROW(be->conv2d_forward(x, w_big, nullptr, y, {}), Error);
  Conv2dParams zero_stride;
  zero_stride.stride_h = 0;
  EXPECT_THROW(be->conv2d_forward(x, w, nullptr, y, zero_stride), Error);
}

TEST(OpsConv, RejectsGroupsThatDoNotFit) {
  auto be = make_cpu_backend();
  const Tensor x = Tensor::full({1, 4, 4, 6}, 1.0f);
  Tensor y({1, 2, 2, 4}), dx({1, 4, 4, 6}), dw({4, 3, 3, 3});
  const Tensor w = Tensor::full({4, 3, 3, 3}, 1.0f), dy = Tensor::full({1, 2, 2, 4}, 1.0f);
  Conv2dParams p;
  p.groups = 2;
  be->conv2d_forward(x, w, nullptr, y, p);  // fits: 6 and 4 channels in 2 groups, w [4, 3, 3, 6 / 2]
  auto expect_message = [](const std::string& what, const std::string& part) {
    EXPECT_NE(what.find(part), std::string::npos) << what;
  };
  p.groups = 4;  // divides K = 4, not C = 6
  expect_message(error_of([&] { be->conv2d_forward(x, w, nullptr, y, p); }),
                 "conv2d_forward: 4 groups do not divide the 6 input and 4 output channels");
  p.groups = 3;  // divides C = 6, not K = 4
  expect_message(error_of([&] { be->conv2d_backward_data(dy, w, dx, p); }),
                 "conv2d_backward_data: 3 groups do not divide the 6 input and 4 output channels");
  p.groups = 0;
  expect_message(error_of([&] { be->conv2d_backward_filter(x, dy, dw, nullptr, p); }),
                 "conv2d_backward_filter: groups 0 must be >= 1");
  p.groups = 2;  // filters must hold C / groups = 3 channels, not 6
  const Tensor w_full = Tensor::full({4, 3, 3, 6}, 1.0f);
  expect_message(error_of([&] { be->conv2d_forward(x, w_full, nullptr, y, p); }),
                 "filters [4, 3, 3, 6] have 6 input channels, the input [1, 4, 4, 6] has 3 per group in 2 groups");
  Tensor dw_full({4, 3, 3, 6});
  EXPECT_THROW(be->conv2d_backward_filter(x, dy, dw_full, nullptr, p), Error);
  EXPECT_THROW(be->conv2d_backward_data(dy, w_full, dx, p), Error);
}

}  // namespace
}  // namespace convnet
