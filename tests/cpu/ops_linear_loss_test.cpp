// Linear layer and softmax cross-entropy on the cpu backend.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/base/error.h"
#include "core/cpu/cpu_backend.h"
#include "tests/common/naive_ops.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using namespace testing;  // random inputs, poisoned outputs, close_l2, the naive:: reference

constexpr double kTol = 1e-5;

Tensor labels_of(const std::vector<int32_t>& v) {
  Tensor t({static_cast<int64_t>(v.size())}, DType::i32);
  for (size_t i = 0; i < v.size(); ++i) t.data<int32_t>()[i] = v[i];
  return t;
}

TEST(OpsLinear, HandComputed) {
  auto be = make_cpu_backend();
  const Tensor x = Tensor::from_vector({1, 2}, {1, 2});
  const Tensor w = Tensor::from_vector({3, 2}, {1, 0, 0, 1, 1, 1});
  const Tensor b = Tensor::from_vector({3}, {0.5f, 0, -1});
  Tensor y = poisoned({1, 3});
  be->linear_forward(x, w, &b, y);
  EXPECT_EQ(y.to_vector(), (std::vector<float>{1.5f, 2, 2}));
  const Tensor dy = Tensor::from_vector({1, 3}, {1, -1, 2});
  Tensor dx = poisoned({1, 2}), dw = poisoned({3, 2}), db = poisoned({3});
  be->linear_backward(x, w, dy, &dx, dw, &db);
  EXPECT_EQ(dx.to_vector(), (std::vector<float>{3, 1}));
  EXPECT_EQ(dw.to_vector(), (std::vector<float>{1, 2, -1, -2, 2, 4}));
  EXPECT_EQ(db.to_vector(), (std::vector<float>{1, -1, 2}));
  EXPECT_EQ(naive::linear_forward(x, w, &b), (std::vector<double>{1.5, 2, 2}));
}

TEST(OpsLinear, ForwardMatchesNaive) {
  auto be = make_cpu_backend();
  Rng rng(51);
  for (bool with_bias : {true, false}) {
    const Tensor x = random_tensor({13, 70}, rng), w = random_tensor({11, 70}, rng), b = random_tensor({11}, rng);
    Tensor y = poisoned({13, 11});
    be->linear_forward(x, w, with_bias ? &b : nullptr, y);
    EXPECT_TRUE(close_l2(y, naive::linear_forward(x, w, with_bias ? &b : nullptr), kTol));
  }
}

TEST(OpsLinear, BackwardMatchesNaive) {
  auto be = make_cpu_backend();
  Rng rng(52);
  const Tensor x = random_tensor({13, 70}, rng), w = random_tensor({11, 70}, rng), dy = random_tensor({13, 11}, rng);
  const naive::LinearGrads ref = naive::linear_backward(x, w, dy);
  Tensor dx = poisoned({13, 70}), dw = poisoned({11, 70}), db = poisoned({11});
  be->linear_backward(x, w, dy, &dx, dw, &db);
  EXPECT_TRUE(close_l2(dx, ref.dx, kTol));
  EXPECT_TRUE(close_l2(dw, ref.dw, kTol));
  EXPECT_TRUE(close_l2(db, ref.dbias, kTol));
  // Optional outputs skipped: dw is still written.
  Tensor dw2 = poisoned({11, 70});
  be->linear_backward(x, w, dy, nullptr, dw2, nullptr);
  EXPECT_TRUE(close_l2(dw2, ref.dw, kTol));
  Tensor dx_wrong({13, 71});
  EXPECT_THROW(be->linear_backward(x, w, dy, &dx_wrong, dw, nullptr), Error);
}

// logits [[1,2,3],[1,1,1]], labels [2,0]; values from the definition in float64.
TEST(OpsSoftmaxCrossEntropy, HandComputed2x3) {
  auto be = make_cpu_backend();
  const Tensor logits = Tensor::from_vector({2, 3}, {1, 2, 3, 1, 1, 1});
  const Tensor labels = labels_of({2, 0});
  const std::vector<double> probs{
      0.09003057317038043, 0.24472847105479764, 0.6652409557748218, 1.0 / 3, 1.0 / 3, 1.0 / 3};
  struct Case {
    float smoothing;
    double loss;
    std::vector<double> dlogits;
  };
  const Case cases[] = {
      {0.0f,
       0.7531091265562451,
       {0.04501528658519022, 0.12236423552739882, -0.1673795221125891, -1.0 / 3, 1.0 / 6, 1.0 / 6}},
      {0.2f,
       0.8531091265562452,
       {0.011681953251856884, 0.08903090219406548, -0.10071285544592246, -0.2666666666666667, 0.13333333333333333,
        0.13333333333333333}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.smoothing);
    Tensor loss = poisoned({1}), p = poisoned({2, 3}), d = poisoned({2, 3});
    be->softmax_cross_entropy_forward(logits, labels, c.smoothing, loss, p);
    EXPECT_NEAR(loss.f32()[0], c.loss, 1e-6);
    EXPECT_TRUE(close_l2(p, probs, 1e-6));
    be->softmax_cross_entropy_backward(p, labels, c.smoothing, d);
    EXPECT_TRUE(close_l2(d, c.dlogits, 1e-6));
    const naive::SoftmaxCrossEntropy ref = naive::softmax_cross_entropy_forward(logits, labels, c.smoothing);
    EXPECT_NEAR(ref.loss, c.loss, 1e-7);
  }
}

TEST(OpsSoftmaxCrossEntropy, MatchesNaive) {
  auto be = make_cpu_backend();
  Rng rng(53);
  for (float smoothing : {0.0f, 0.2f}) {
    SCOPED_TRACE(smoothing);
    const Tensor logits = random_tensor({37, 10}, rng, -5.0f, 5.0f);
    const Tensor labels = random_labels(37, 10, rng);
    Tensor loss = poisoned({1}), probs = poisoned({37, 10}), d = poisoned({37, 10});
    be->softmax_cross_entropy_forward(logits, labels, smoothing, loss, probs);
    const naive::SoftmaxCrossEntropy ref = naive::softmax_cross_entropy_forward(logits, labels, smoothing);
    EXPECT_TRUE(close_l2(loss, {ref.loss}, kTol));
    EXPECT_TRUE(close_l2(probs, ref.probs, kTol));
    be->softmax_cross_entropy_backward(probs, labels, smoothing, d);
    EXPECT_TRUE(close_l2(d, naive::softmax_cross_entropy_backward(logits, labels, smoothing), kTol));
  }
}

TEST(OpsSoftmaxCrossEntropy, LargeLogitsStayFinite) {
  auto be = make_cpu_backend();
  const Tensor logits = Tensor::from_vector({2, 3}, {1000, 1001, 1002, -1000, -1000, 5000});
  const Tensor labels = labels_of({0, 1});
  Tensor loss = poisoned({1}), probs = poisoned({2, 3});
  be->softmax_cross_entropy_forward(logits, labels, 0.1f, loss, probs);
  const naive::SoftmaxCrossEntropy ref = naive::softmax_cross_entropy_forward(logits, labels, 0.1);
  ASSERT_TRUE(std::isfinite(loss.f32()[0]));
  EXPECT_TRUE(close_l2(loss, {ref.loss}, kTol));
  EXPECT_TRUE(close_l2(probs, ref.probs, kTol));
}

// The naive gradient agrees with central differences of the naive loss.
TEST(OpsSoftmaxCrossEntropy, NaiveGradientMatchesFiniteDifferences) {
  Rng rng(54);
  Tensor logits = random_tensor({4, 5}, rng, -2.0f, 2.0f);
  const Tensor labels = random_labels(4, 5, rng);
  const std::vector<double> grad = naive::softmax_cross_entropy_backward(logits, labels, 0.2);
  for (int64_t i = 0; i < logits.numel(); ++i) {
    float& v = logits.f32()[i];
    const float saved = v, h = 1e-2f;
    v = saved + h;
    const double up = naive::softmax_cross_entropy_forward(logits, labels, 0.2).loss;
    v = saved - h;
    const double down = naive::softmax_cross_entropy_forward(logits, labels, 0.2).loss;
    v = saved;
    EXPECT_NEAR((up - down) / (2.0 * h), grad[static_cast<size_t>(i)], 1e-4) << i;
  }
}

TEST(OpsSoftmaxCrossEntropy, RejectsLabelsOutOfRange) {
  auto be = make_cpu_backend();
  Rng rng(55);
  const Tensor logits = random_tensor({4, 10}, rng);
  Tensor loss({1}), probs({4, 10});
  try {
    be->softmax_cross_entropy_forward(logits, labels_of({1, 2, 12, 3}), 0.0f, loss, probs);
    ADD_FAILURE() << "expected an error for label 12";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("label 12 out of range [0, 10)"), std::string::npos) << e.what();
  }
  EXPECT_THROW(be->softmax_cross_entropy_backward(probs, labels_of({1, -1, 2, 3}), 0.0f, probs), Error);
  EXPECT_THROW(be->softmax_cross_entropy_forward(logits, labels_of({1, 2, 3}), 0.0f, loss, probs), Error);
}

}  // namespace
}  // namespace convnet
