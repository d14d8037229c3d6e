// Finite-difference gradient checks of every layer and parameter (tests/common/gradient_check.h),
// plus self-tests showing the checker catches wrong, accumulated and unwritten gradients.
#include <gtest/gtest.h>

#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/layers/activation.h"
#include "core/layers/batch_norm.h"
#include "core/layers/conv2d.h"
#include "core/layers/dropout.h"
#include "core/layers/flatten.h"
#include "core/layers/linear.h"
#include "core/layers/pool2d.h"
#include "tests/common/gradient_check.h"

namespace convnet {
namespace {

using testing::GradientCheckOptions;
using testing::gradients_match;
using testing::run_gradient_check;

class LayerGradient : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> backend_ = make_cpu_backend();
};

// --- convolution ---

TEST_F(LayerGradient, ConvWithBiasPadded) {
  Conv2d conv("conv", 4, 3, 1, 1);
  EXPECT_TRUE(gradients_match(conv, {5, 5, 3}, *backend_));
}

TEST_F(LayerGradient, ConvWithoutBias) {
  Conv2d conv("conv", 3, 3, 1, 0, 1, /*bias=*/false);
  ASSERT_EQ(conv.parameters().size(), 1u);
  EXPECT_TRUE(gradients_match(conv, {4, 4, 2}, *backend_));
}

TEST_F(LayerGradient, ConvStride2Padded) {
  Conv2d conv("conv", 3, 3, 2, 1);
  EXPECT_TRUE(gradients_match(conv, {6, 6, 2}, *backend_));
}

TEST_F(LayerGradient, ConvDilated) {
  Conv2d conv("conv", 2, 3, 1, 2, /*dilation=*/2);
  EXPECT_TRUE(gradients_match(conv, {5, 6, 2}, *backend_));
}

TEST_F(LayerGradient, ConvRectangularInputThreeChannels) {
  // H != W and C = 3 (the RGB stem) catch swapped axes.
  Conv2d conv("conv", 5, 2, 1, 0);
  GradientCheckOptions o;
  o.batch = 3;
  EXPECT_TRUE(gradients_match(conv, {4, 3, 3}, *backend_, o));
}

TEST_F(LayerGradient, ConvPointwiseStride2) {
  Conv2d conv("conv", 4, 1, 2, 0);
  EXPECT_TRUE(gradients_match(conv, {5, 5, 3}, *backend_));
}

// Grouped (one GEMM per group) and depthwise (direct loops), each through every pass.
Conv2dOptions groups(int count) {
  Conv2dOptions o;
  o.groups = count;
  return o;
}

TEST_F(LayerGradient, ConvGroupedPadded) {
  Conv2d conv("conv", 6, 3, 1, 1, 1, true, groups(2));
  EXPECT_TRUE(gradients_match(conv, {5, 4, 4}, *backend_));
}

TEST_F(LayerGradient, ConvGroupedStride2Dilated) {
  Conv2d conv("conv", 3, 3, 2, 2, 2, true, groups(3));
  EXPECT_TRUE(gradients_match(conv, {6, 7, 6}, *backend_));
}

TEST_F(LayerGradient, ConvGroupedPointwise) {
  Conv2d conv("conv", 4, 1, 1, 0, 1, false, groups(2));  // identity columns: no im2col
  EXPECT_TRUE(gradients_match(conv, {4, 5, 6}, *backend_));
}

TEST_F(LayerGradient, ConvDepthwise) {
  Conv2d conv("conv", 3, 3, 1, 1, 1, true, groups(3));
  EXPECT_TRUE(gradients_match(conv, {5, 5, 3}, *backend_));
}

TEST_F(LayerGradient, ConvDepthwiseTwoFiltersPerChannelStride2) {
  Conv2d conv("conv", 4, 3, 2, 1, 1, true, groups(2));
  GradientCheckOptions o;
  o.batch = 1;
  EXPECT_TRUE(gradients_match(conv, {6, 5, 2}, *backend_, o));
}

// --- pooling ---

GradientCheckOptions distinct() {
  GradientCheckOptions o;
  o.distinct_inputs = true;
  return o;
}

TEST_F(LayerGradient, MaxPool2x2) {
  MaxPool2d pool("pool", 2);
  EXPECT_TRUE(gradients_match(pool, {4, 6, 3}, *backend_, distinct()));
}

TEST_F(LayerGradient, MaxPoolOverlappingK3S2) {
  MaxPool2d pool("pool", 3, 2);
  EXPECT_TRUE(gradients_match(pool, {7, 7, 2}, *backend_, distinct()));
}

TEST_F(LayerGradient, MaxPoolPadded) {
  // All-negative windows at the border: padding must never win.
  MaxPool2d pool("pool", 3, 2, 1);
  GradientCheckOptions o = distinct();
  o.batch = 3;
  EXPECT_TRUE(gradients_match(pool, {5, 6, 2}, *backend_, o));
}

TEST_F(LayerGradient, AvgPool2x2) {
  AvgPool2d pool("pool", 2);
  EXPECT_TRUE(gradients_match(pool, {4, 6, 3}, *backend_));
}

TEST_F(LayerGradient, AvgPoolPaddedOverlapping) {
  AvgPool2d pool("pool", 3, 2, 1);
  EXPECT_TRUE(gradients_match(pool, {5, 5, 2}, *backend_));
}

TEST_F(LayerGradient, GlobalAvgPool) {
  GlobalAvgPool pool("gap");
  EXPECT_TRUE(gradients_match(pool, {3, 4, 5}, *backend_));
}

// --- activations ---

TEST_F(LayerGradient, ReLU) {
  ReLU relu("relu");
  GradientCheckOptions o;
  o.kink_margin = 2 * o.step;
  EXPECT_TRUE(gradients_match(relu, {3, 3, 4}, *backend_, o));
}

TEST_F(LayerGradient, GELU) {
  GELU gelu("gelu");
  GradientCheckOptions o;
  o.input_low = -3.0f;
  o.input_high = 3.0f;
  EXPECT_TRUE(gradients_match(gelu, {3, 3, 4}, *backend_, o));
}

// --- batch normalization (train mode: the batch statistics depend on every input) ---

TEST_F(LayerGradient, BatchNormImage) {
  BatchNorm2d bn("bn");
  GradientCheckOptions o;
  o.batch = 4;
  EXPECT_TRUE(gradients_match(bn, {3, 3, 2}, *backend_, o));
}

TEST_F(LayerGradient, BatchNormFlatFeatures) {
  BatchNorm2d bn("bn");
  GradientCheckOptions o;
  o.batch = 6;
  EXPECT_TRUE(gradients_match(bn, {5}, *backend_, o));
}

TEST_F(LayerGradient, BatchNormFrozenScaleStillHasGammaGradient) {
  BatchNorm2d bn("bn", 1e-5f, 0.1f, /*freeze_scale=*/true);
  GradientCheckOptions o;
  o.batch = 4;
  const testing::GradientCheckReport report = run_gradient_check(bn, {2, 2, 3}, *backend_, o);
  EXPECT_TRUE(report.ok()) << report.summary();
  EXPECT_EQ(report.param_checked, 6);  // gamma and beta, 3 channels each
  EXPECT_TRUE(bn.parameters()[0]->frozen);
}

TEST_F(LayerGradient, BatchNormBackwardAfterEvalForwardIsRefused) {
  // Backward differentiates the batch statistics, which an eval forward does not use.
  BatchNorm2d bn("bn7");
  GradientCheckOptions o;
  o.mode = Mode::eval;
  try {
    run_gradient_check(bn, {2, 2, 3}, *backend_, o);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bn7: backward needs a train-mode forward"), std::string::npos) << e.what();
  }
}

// --- dropout ---

TEST_F(LayerGradient, DropoutTrainFixedSeed) {
  Dropout drop("drop", 0.3f);
  GradientCheckOptions o;
  o.batch = 3;
  EXPECT_TRUE(gradients_match(drop, {4, 4, 3}, *backend_, o));
}

TEST_F(LayerGradient, DropoutGradientFollowsMask) {
  const float p = 0.4f;
  Dropout drop("drop", p);
  drop.configure({64});
  drop.set_backend(*backend_);
  Rng rng(3);
  Tensor x = backend_->empty({4, 64}), y = backend_->empty({4, 64});
  Tensor dy = backend_->empty({4, 64}), dx = backend_->empty({4, 64});
  for (float& v : x.span()) v = rng.uniform(0.5f, 1.5f);  // never zero: y == 0 means dropped
  for (float& v : dy.span()) v = rng.uniform(0.5f, 1.5f);
  drop.set_step_seed(99);
  drop.forward(x, y, Mode::train);
  dx.fill(std::numeric_limits<float>::quiet_NaN());
  drop.backward(x, y, dy, &dx);
  int dropped = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    if (y.f32()[i] == 0.0f) {
      ++dropped;
      EXPECT_EQ(dx.f32()[i], 0.0f) << i;
    } else {
      EXPECT_FLOAT_EQ(y.f32()[i], x.f32()[i] / (1 - p)) << i;
      EXPECT_FLOAT_EQ(dx.f32()[i], dy.f32()[i] / (1 - p)) << i;
    }
  }
  EXPECT_GT(dropped, 0);
  EXPECT_LT(dropped, x.numel());
}

TEST_F(LayerGradient, DropoutEvalIsIdentity) {
  Dropout drop("drop", 0.5f);
  GradientCheckOptions o;
  o.mode = Mode::eval;
  EXPECT_TRUE(gradients_match(drop, {7}, *backend_, o));
}

// --- flatten and linear ---

TEST_F(LayerGradient, Flatten) {
  Flatten flat("flat");
  EXPECT_TRUE(gradients_match(flat, {2, 3, 4}, *backend_));
}

TEST_F(LayerGradient, LinearWithBias) {
  Linear fc("fc", 5);
  GradientCheckOptions o;
  o.batch = 3;
  EXPECT_TRUE(gradients_match(fc, {7}, *backend_, o));
}

TEST_F(LayerGradient, LinearWithoutBias) {
  Linear fc("fc", 4, /*bias=*/false);
  ASSERT_EQ(fc.parameters().size(), 1u);
  EXPECT_TRUE(gradients_match(fc, {6}, *backend_));
}

// --- the checker itself must be able to fail ---

// y = w[c] * x (per channel, on the host), with a selectable bug in backward.
enum class Bug { none, wrong_dx, accumulate_grad, skip_grad_without_dx, leave_one_grad, leave_one_output };

class ScaleLayer final : public Layer {
 public:
  explicit ScaleLayer(Bug bug) : Layer("scale"), bug_(bug) { w_.name = "weight"; }
  std::string type() const override { return "scale"; }
  std::string description() const override { return "scale"; }
  Shape configure(const Shape& in) override { return record_shapes(in, in); }
  void allocate_parameters() override {
    const int64_t c = input_shape().back();
    w_.value = backend().empty({c});
    w_.grad = backend().empty({c});
  }
  void initialize(Rng& rng) override {
    for (float& v : w_.value.span()) v = rng.uniform(0.5f, 1.5f);
  }
  void forward(const Tensor& x, Tensor& y, Mode) override {
    const int64_t c = w_.value.numel();
    for (int64_t i = 0; i < x.numel(); ++i) y.f32()[i] = w_.value.f32()[i % c] * x.f32()[i];
    if (bug_ == Bug::leave_one_output) y.f32()[0] = std::numeric_limits<float>::quiet_NaN();
  }
  void backward(const Tensor& x, const Tensor&, const Tensor& dy, Tensor* dx) override {
    const int64_t c = w_.value.numel();
    if (dx) {
      for (int64_t i = 0; i < x.numel(); ++i)
        dx->f32()[i] = w_.value.f32()[i % c] * dy.f32()[i] * (bug_ == Bug::wrong_dx ? 1.05f : 1.0f);
    }
    if (bug_ == Bug::skip_grad_without_dx && !dx) return;
    std::vector<float> g(static_cast<size_t>(c), 0.0f);
    for (int64_t i = 0; i < x.numel(); ++i) g[static_cast<size_t>(i % c)] += x.f32()[i] * dy.f32()[i];
    for (int64_t k = 0; k < c; ++k) {
      if (bug_ == Bug::leave_one_grad && k == c - 1) continue;  // whatever was there stays
      w_.grad.f32()[k] = (bug_ == Bug::accumulate_grad ? w_.grad.f32()[k] : 0.0f) + g[static_cast<size_t>(k)];
    }
  }
  std::vector<Parameter*> parameters() override { return {&w_}; }

 private:
  Bug bug_;
  Parameter w_;
};

TEST_F(LayerGradient, CheckerPassesCorrectHandWrittenLayer) {
  ScaleLayer layer(Bug::none);
  const testing::GradientCheckReport r = run_gradient_check(layer, {3, 4}, *backend_);
  EXPECT_TRUE(r.ok()) << r.summary();
  EXPECT_EQ(r.input_checked, 2 * 3 * 4);
  EXPECT_EQ(r.param_checked, 4);
}

TEST_F(LayerGradient, CheckerCatchesBugs) {
  for (Bug bug :
       {Bug::wrong_dx, Bug::accumulate_grad, Bug::skip_grad_without_dx, Bug::leave_one_grad, Bug::leave_one_output}) {
    ScaleLayer layer(bug);
    const testing::GradientCheckReport r = run_gradient_check(layer, {3, 4}, *backend_);
    EXPECT_FALSE(r.ok()) << "bug " << static_cast<int>(bug) << " went unnoticed";
  }
}

}  // namespace
}  // namespace convnet
