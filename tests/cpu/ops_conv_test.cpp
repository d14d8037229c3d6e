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
  Shape w_shape() const { return {k, r, s, c}; }
  Shape y_shape() const {
    return {n, conv_output_size(h, r, p.stride_h, p.pad_h, p.dilation_h),
            conv_output_size(w, s, p.stride_w, p.pad_w, p.dilation_w), k};
  }
  std::string str() const {
    return fmt::format("x [{},{},{},{}] w [{},{},{},{}] stride {}x{} pad {}x{} dilation {}x{}", n, h, w, c, k, r, s, c,
                       p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dilation_h, p.dilation_w);
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
  for (const ConvProblem& pr : random_problems(8)) {
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
    const Tensor x = random_tensor(pr.x_shape(), rng), w = random_tensor(pr.w_shape(), rng);
    const Tensor b = random_tensor({pr.k}, rng);
    const bool with_bias = index++ % 2 == 0;
    Tensor y = poisoned(pr.y_shape());
    be->conv2d_forward(x, w, with_bias ? &b : nullptr, y, pr.p);
    EXPECT_TRUE(close_l2(y, naive::conv2d_forward(x, w, with_bias ? &b : nullptr, pr.p), kTol));
  }
}

TEST(OpsConv, RandomSweepBackwardData) {
  auto be = make_cpu_backend();
  Rng rng(12);
  for (const ConvProblem& pr : random_problems(40)) {
    SCOPED_TRACE(pr.str());
    const Tensor w = random_tensor(pr.w_shape(), rng), dy = random_tensor(pr.y_shape(), rng);
    Tensor dx = poisoned(pr.x_shape());
    be->conv2d_backward_data(dy, w, dx, pr.p);
    const std::vector<double> expected = naive::conv2d_backward_data(dy, w, pr.x_shape(), pr.p);
    // Input pixels no window reaches get exactly zero (checked separately: close_l2 is relative).
    for (size_t i = 0; i < expected.size(); ++i)
      if (expected[i] == 0.0) {
        EXPECT_EQ(dx.f32()[i], 0.0f) << "at " << i;
      }
    EXPECT_TRUE(close_l2(dx, expected, kTol));
  }
}

TEST(OpsConv, RandomSweepBackwardFilterAndBias) {
  auto be = make_cpu_backend();
  Rng rng(13);
  for (const ConvProblem& pr : random_problems(40)) {
    SCOPED_TRACE(pr.str());
    const Tensor x = random_tensor(pr.x_shape(), rng), dy = random_tensor(pr.y_shape(), rng);
    Tensor dw = poisoned(pr.w_shape());
    Tensor db = poisoned({pr.k});
    be->conv2d_backward_filter(x, dy, dw, &db, pr.p);
    EXPECT_TRUE(close_l2(dw, naive::conv2d_backward_filter(x, dy, pr.w_shape(), pr.p), kTol));
    EXPECT_TRUE(close_l2(db, naive::sum_over_last_dim(dy), kTol));
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

}  // namespace
}  // namespace convnet
