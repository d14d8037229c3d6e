// Batch normalization on the cpu backend against hand values and the float64 naive reference.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "core/base/error.h"
#include "core/cpu/cpu_backend.h"
#include "tests/common/naive_ops.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using namespace testing;  // random inputs, poisoned outputs, close_l2, the naive:: reference

constexpr double kTol = 1e-5;
constexpr float kMomentum = 0.1f, kEps = 1e-5f;

struct BnState {
  Tensor gamma, beta, running_mean, running_var;
};
BnState random_state(int64_t c, Rng& rng) {
  return {random_tensor({c}, rng, 0.5f, 1.5f), random_tensor({c}, rng), random_tensor({c}, rng),
          random_tensor({c}, rng, 0.5f, 2.0f)};
}

TEST(OpsBatchNorm, HandComputedTrainStep) {
  auto be = make_cpu_backend();
  const Tensor x = Tensor::from_vector({4, 1}, {1, 2, 3, 4});
  const Tensor gamma = Tensor::full({1}, 1.0f), beta = Tensor::full({1}, 0.0f);
  Tensor rm = Tensor::full({1}, 0.0f), rv = Tensor::full({1}, 1.0f);
  Tensor y = poisoned({4, 1}), mean = poisoned({1}), invstd = poisoned({1});
  be->batch_norm_forward_train(x, gamma, beta, y, mean, invstd, rm, rv, 0.1f, 0.0f);
  // mean 2.5, biased var 1.25, unbiased 5/3.
  EXPECT_TRUE(close_l2(y, {-1.3416407864998738, -0.44721359549995793, 0.44721359549995793, 1.3416407864998738}, 1e-7));
  EXPECT_FLOAT_EQ(mean.f32()[0], 2.5f);
  EXPECT_FLOAT_EQ(invstd.f32()[0], 0.89442719099991586f);
  EXPECT_FLOAT_EQ(rm.f32()[0], 0.25f);
  EXPECT_FLOAT_EQ(rv.f32()[0], 1.0666666666666667f);
  // The naive reference gives the same hand values.
  const naive::BatchNormTrain ref =
      naive::batch_norm_forward_train(x, gamma, beta, Tensor::full({1}, 0.0f), Tensor::full({1}, 1.0f), 0.1, 0.0);
  EXPECT_TRUE(close_l2(y, ref.y, 1e-7));
  EXPECT_DOUBLE_EQ(ref.running_var[0], 1.0666666666666667);
}

TEST(OpsBatchNorm, TrainMatchesNaive) {
  auto be = make_cpu_backend();
  Rng rng(31);
  for (const Shape& xs : {Shape{3, 5, 4, 6}, Shape{7, 10}, Shape{16, 8, 8, 3}}) {
    SCOPED_TRACE(shape_str(xs));
    const int64_t c = xs.back();
    const Tensor x = random_tensor(xs, rng, 2.0f, 4.0f);  // an offset mean exercises the two-pass variance
    BnState st = random_state(c, rng);
    const naive::BatchNormTrain ref =
        naive::batch_norm_forward_train(x, st.gamma, st.beta, st.running_mean, st.running_var, kMomentum, kEps);
    Tensor y = poisoned(xs), mean = poisoned({c}), invstd = poisoned({c});
    be->batch_norm_forward_train(x, st.gamma, st.beta, y, mean, invstd, st.running_mean, st.running_var, kMomentum,
                                 kEps);
    EXPECT_TRUE(close_l2(y, ref.y, kTol));
    EXPECT_TRUE(close_l2(mean, ref.mean, 1e-6));
    EXPECT_TRUE(close_l2(invstd, ref.invstd, 1e-6));
    EXPECT_TRUE(close_l2(st.running_mean, ref.running_mean, 1e-6));
    EXPECT_TRUE(close_l2(st.running_var, ref.running_var, 1e-6));
  }
}

TEST(OpsBatchNorm, EvalUsesRunningStatistics) {
  auto be = make_cpu_backend();
  Rng rng(32);
  const Shape xs{4, 3, 5, 7};
  const Tensor x = random_tensor(xs, rng);
  const BnState st = random_state(7, rng);
  Tensor y = poisoned(xs);
  be->batch_norm_forward_eval(x, st.gamma, st.beta, st.running_mean, st.running_var, kEps, y);
  EXPECT_TRUE(
      close_l2(y, naive::batch_norm_forward_eval(x, st.gamma, st.beta, st.running_mean, st.running_var, kEps), kTol));
}

TEST(OpsBatchNorm, BackwardMatchesNaive) {
  auto be = make_cpu_backend();
  Rng rng(33);
  for (const Shape& xs : {Shape{3, 5, 4, 6}, Shape{9, 12}}) {
    SCOPED_TRACE(shape_str(xs));
    const int64_t c = xs.back();
    const Tensor x = random_tensor(xs, rng, -1.0f, 3.0f), dy = random_tensor(xs, rng);
    BnState st = random_state(c, rng);
    Tensor y(xs), mean({c}), invstd({c});
    be->batch_norm_forward_train(x, st.gamma, st.beta, y, mean, invstd, st.running_mean, st.running_var, kMomentum,
                                 kEps);
    Tensor dx = poisoned(xs), dgamma = poisoned({c}), dbeta = poisoned({c});
    be->batch_norm_backward(x, dy, st.gamma, mean, invstd, dx, dgamma, dbeta);
    const naive::BatchNormGrads ref = naive::batch_norm_backward(x, dy, st.gamma, kEps);
    EXPECT_TRUE(close_l2(dx, ref.dx, kTol));
    EXPECT_TRUE(close_l2(dgamma, ref.dgamma, kTol));
    EXPECT_TRUE(close_l2(dbeta, ref.dbeta, kTol));
  }
}

// The naive gradients agree with central differences of the naive forward: L = sum(dy * y).
TEST(OpsBatchNorm, NaiveBackwardMatchesFiniteDifferences) {
  Rng rng(34);
  const Shape xs{6, 3};
  Tensor x = random_tensor(xs, rng);
  Tensor gamma = random_tensor({3}, rng, 0.5f, 1.5f);
  const Tensor beta = random_tensor({3}, rng), dy = random_tensor(xs, rng);
  const Tensor rm = Tensor::full({3}, 0.0f), rv = Tensor::full({3}, 1.0f);
  auto loss = [&] {
    const std::vector<double> y = naive::batch_norm_forward_train(x, gamma, beta, rm, rv, 0.1, 1e-5).y;
    double l = 0;
    for (size_t i = 0; i < y.size(); ++i) l += y[i] * dy.f32()[i];
    return l;
  };
  const naive::BatchNormGrads g = naive::batch_norm_backward(x, dy, gamma, 1e-5);
  auto numeric = [&](float& v) {
    const float saved = v;
    const float h = 1e-2f;
    v = saved + h;
    const double up = loss();
    v = saved - h;
    const double down = loss();
    v = saved;
    return (up - down) / (2.0 * static_cast<double>(h));
  };
  for (int64_t i = 0; i < x.numel(); ++i)
    EXPECT_NEAR(numeric(x.f32()[i]), g.dx[static_cast<size_t>(i)], 2e-3) << "dx " << i;
  for (int64_t j = 0; j < 3; ++j)
    EXPECT_NEAR(numeric(gamma.f32()[j]), g.dgamma[static_cast<size_t>(j)], 2e-3) << "dgamma " << j;
}

TEST(OpsBatchNorm, RejectsSingleValuePerChannelAndBadShapes) {
  auto be = make_cpu_backend();
  const Tensor x = Tensor::full({1, 4}, 1.0f);
  const Tensor g = Tensor::full({4}, 1.0f), b = Tensor::full({4}, 0.0f);
  Tensor y({1, 4}), m({4}), s({4}), rm({4}), rv({4});
  EXPECT_THROW(be->batch_norm_forward_train(x, g, b, y, m, s, rm, rv, 0.1f, 1e-5f), Error);
  const Tensor x2 = Tensor::full({2, 4}, 1.0f);
  const Tensor g_wrong = Tensor::full({3}, 1.0f);
  Tensor y2({2, 4});
  EXPECT_THROW(be->batch_norm_forward_train(x2, g_wrong, b, y2, m, s, rm, rv, 0.1f, 1e-5f), Error);
  EXPECT_THROW(be->batch_norm_forward_eval(x2, g, b, rm, rv, 1e-5f, y), Error);  // y has the wrong shape
}

// --- the synchronized pieces (Backend::batch_norm_local_stats, _backward_reduce, _backward_apply) ---

TEST(OpsBatchNormSync, LocalStatsMatchNaive) {
  auto be = make_cpu_backend();
  Rng rng(35);
  // An offset mean (1000) must not cost M2 its precision; one row gives M2 = 0, none gives zeros.
  for (const auto& [xs, offset] : std::vector<std::pair<Shape, float>>{
           {{3, 5, 4, 6}, 2.0f}, {{7, 10}, 1000.0f}, {{1, 4}, 0.0f}, {{0, 3}, 0.0f}, {{600, 3}, -5.0f}}) {
    SCOPED_TRACE(shape_str(xs));
    const int64_t c = xs.back();
    const Tensor x = random_tensor(xs, rng, offset, offset + 1.0f);
    Tensor mean = poisoned({c}), m2 = poisoned({c});
    be->batch_norm_local_stats(x, mean, m2);
    const naive::BatchNormLocalStats ref = naive::batch_norm_local_stats(x);
    EXPECT_TRUE(close_l2(mean, ref.mean, 1e-6));
    if (xs[0] > 1) {
      EXPECT_TRUE(close_l2(m2, ref.m2, 1e-6));
    } else {  // exactly zero, which a relative error cannot check
      for (int64_t j = 0; j < c; ++j) EXPECT_EQ(m2.f32()[j], 0.0f);
    }
  }
}

// Random statistics and means (not a forward's), so every input of the formulas matters.
struct SyncBackwardInputs {
  Tensor x, dy, gamma, mean, invstd, mean_dy, mean_dy_xhat;
  SyncBackwardInputs(const Shape& xs, Rng& rng) {
    const Shape c{xs.back()};
    x = random_tensor(xs, rng, -1.0f, 3.0f);
    dy = random_tensor(xs, rng);
    gamma = random_tensor(c, rng, 0.5f, 1.5f);
    mean = random_tensor(c, rng, 0.0f, 2.0f);
    invstd = random_tensor(c, rng, 0.5f, 2.0f);
    mean_dy = random_tensor(c, rng, -0.3f, 0.3f);
    mean_dy_xhat = random_tensor(c, rng, -0.3f, 0.3f);
  }
};

TEST(OpsBatchNormSync, BackwardReduceAndApplyMatchNaive) {
  auto be = make_cpu_backend();
  Rng rng(36);
  for (const Shape& xs : {Shape{3, 5, 4, 6}, Shape{9, 12}, Shape{1100, 3}}) {
    SCOPED_TRACE(shape_str(xs));
    const int64_t c = xs.back();
    const SyncBackwardInputs in(xs, rng);
    Tensor sum_dy = poisoned({c}), sum_dy_xhat = poisoned({c}), dx = poisoned(xs);
    be->batch_norm_backward_reduce(in.x, in.dy, in.mean, in.invstd, sum_dy, sum_dy_xhat);
    const naive::BatchNormSums ref = naive::batch_norm_backward_reduce(in.x, in.dy, in.mean, in.invstd);
    EXPECT_TRUE(close_l2(sum_dy, ref.sum_dy, kTol));
    EXPECT_TRUE(close_l2(sum_dy_xhat, ref.sum_dy_xhat, kTol));
    be->batch_norm_backward_apply(in.x, in.dy, in.gamma, in.mean, in.invstd, in.mean_dy, in.mean_dy_xhat, dx);
    EXPECT_TRUE(close_l2(
        dx, naive::batch_norm_backward_apply(in.x, in.dy, in.gamma, in.mean, in.invstd, in.mean_dy, in.mean_dy_xhat),
        kTol));
    // dx may alias dy.
    Tensor inplace = in.dy.clone();
    be->batch_norm_backward_apply(in.x, inplace, in.gamma, in.mean, in.invstd, in.mean_dy, in.mean_dy_xhat, inplace);
    EXPECT_TRUE(bitwise_equal(inplace, dx));
  }
}

// On one process the pieces compose to the fused ops: local_stats gives forward_train's mean and
// variance, reduce then apply (with the sums / rows) gives batch_norm_backward.
TEST(OpsBatchNormSync, PiecesComposeToTheFusedOps) {
  auto be = make_cpu_backend();
  Rng rng(37);
  const Shape xs{5, 3, 4, 7};
  const int64_t c = 7, rows = 60;
  const Tensor x = random_tensor(xs, rng, 1.0f, 3.0f), dy = random_tensor(xs, rng);
  BnState st = random_state(c, rng);
  Tensor y(xs), mean({c}), invstd({c});
  be->batch_norm_forward_train(x, st.gamma, st.beta, y, mean, invstd, st.running_mean, st.running_var, kMomentum, kEps);
  Tensor local_mean({c}), m2({c});
  be->batch_norm_local_stats(x, local_mean, m2);
  EXPECT_TRUE(bitwise_equal(local_mean, mean));
  for (int64_t j = 0; j < c; ++j)
    EXPECT_NEAR(1.0 / std::sqrt(m2.f32()[j] / rows + kEps), invstd.f32()[j], 1e-6 * invstd.f32()[j]);

  Tensor dx(xs), dgamma({c}), dbeta({c});
  be->batch_norm_backward(x, dy, st.gamma, mean, invstd, dx, dgamma, dbeta);
  Tensor sum_dy({c}), sum_dy_xhat({c}), mean_dy({c}), mean_dy_xhat({c}), dx2 = poisoned(xs);
  be->batch_norm_backward_reduce(x, dy, mean, invstd, sum_dy, sum_dy_xhat);
  EXPECT_TRUE(bitwise_equal(sum_dy, dbeta));
  EXPECT_TRUE(bitwise_equal(sum_dy_xhat, dgamma));
  for (int64_t j = 0; j < c; ++j) {
    mean_dy.f32()[j] = static_cast<float>(static_cast<double>(sum_dy.f32()[j]) / rows);
    mean_dy_xhat.f32()[j] = static_cast<float>(static_cast<double>(sum_dy_xhat.f32()[j]) / rows);
  }
  be->batch_norm_backward_apply(x, dy, st.gamma, mean, invstd, mean_dy, mean_dy_xhat, dx2);
  EXPECT_TRUE(close_l2(dx2, dx, 1e-6));
}

TEST(OpsBatchNormSync, RejectBadShapes) {
  auto be = make_cpu_backend();
  const Tensor x = Tensor::full({3, 4}, 1.0f), c4 = Tensor::full({4}, 1.0f);
  Tensor out4({4}), out3({3}), dx({3, 4}), dx_wrong({4, 4});
  EXPECT_NE(error_of([&] { be->batch_norm_local_stats(x, out3, out4); }).find("mean"), std::string::npos);
  EXPECT_THROW(be->batch_norm_backward_reduce(x, dx_wrong, c4, c4, out4, out4), Error);  // dy is not x's shape
  EXPECT_NE(error_of([&] { be->batch_norm_backward_reduce(x, x, c4, c4, out4, out3); }).find("sum_dy_xhat"),
            std::string::npos);
  EXPECT_NE(error_of([&] { be->batch_norm_backward_apply(x, x, c4, c4, c4, c4, out3, dx); }).find("mean_dy_xhat"),
            std::string::npos);
  EXPECT_THROW(be->batch_norm_backward_apply(x, x, c4, c4, c4, c4, c4, dx_wrong), Error);
}

}  // namespace
}  // namespace convnet
