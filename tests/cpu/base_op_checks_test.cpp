// OpChecks, the argument validation every backend shares: the device rule and its wording per
// backend, geometry derived by hand for convolution, pooling and linear layers, and the messages
// each rule throws. Device tensors here are host memory from an allocator that reports a CUDA
// device, so no GPU is needed (the checks never read data).
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "core/base/env_flag.h"
#include "core/base/error.h"
#include "core/base/op_checks.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::error_of;

// Host memory labelled as living on cuda:<index>.
class FakeDeviceAllocator final : public Allocator {
 public:
  explicit FakeDeviceAllocator(int index) : index_(index) {}
  void* allocate(size_t bytes) override { return std::malloc(bytes == 0 ? 1 : bytes); }
  void deallocate(void* ptr, size_t) noexcept override { std::free(ptr); }
  Device device() const override { return {DeviceKind::cuda, index_}; }

 private:
  int index_;
};

// gtest assertion: `message` contains `part`.
::testing::AssertionResult has(const std::string& message, const std::string& part) {
  if (message.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << message << "' does not contain '" << part << "'";
}

const Device kCuda0{DeviceKind::cuda, 0};

TEST(OpChecks, TensorsMustLiveOnTheBackendsDevice) {
  FakeDeviceAllocator cuda0(0), cuda1(1);
  const Tensor host({3}), on0({3}, DType::f32, cuda0), on1({3}, DType::f32, cuda1);

  const OpChecks cpu = OpChecks::cpu("relu_forward");
  EXPECT_EQ(error_of([&] { cpu.tensor(host, "x"); }), "");
  EXPECT_TRUE(has(error_of([&] { cpu.tensor(on0, "x"); }),
                  "relu_forward: x lives on cuda:0, the cpu backend needs host tensors"));

  const OpChecks gpu("fill", kCuda0, "cudnn_tf32");
  EXPECT_EQ(error_of([&] { gpu.tensor(on0, "t"); }), "");
  EXPECT_TRUE(has(error_of([&] { gpu.tensor(host, "t"); }),
                  "fill: t lives on cpu, the cudnn_tf32 backend needs tensors on cuda:0"));
  EXPECT_TRUE(has(error_of([&] { gpu.tensor(on1, "t"); }),
                  "fill: t lives on cuda:1, the cudnn_tf32 backend needs tensors on cuda:0"));
}

TEST(OpChecks, DefinedDtypeShapeAndRank) {
  const OpChecks c = OpChecks::cpu("op");
  EXPECT_TRUE(has(error_of([&] { c.tensor(Tensor(), "x"); }), "op: x is undefined"));
  const Tensor i32({2, 3}, DType::i32);
  EXPECT_TRUE(has(error_of([&] { c.tensor(i32, "x"); }), "op: x has dtype I32, expected F32"));
  EXPECT_EQ(error_of([&] { c.tensor(i32, "x", DType::i32); }), "");
  EXPECT_TRUE(has(error_of([&] { c.shape(i32, {3, 2}, "x", DType::i32); }), "op: x has shape [2, 3], expected [3, 2]"));
  EXPECT_EQ(error_of([&] { c.shape(i32, {2, 3}, "x", DType::i32); }), "");
  EXPECT_TRUE(has(error_of([&] { c.rank(i32, 4, "x", DType::i32); }), "op: x has shape [2, 3], expected rank 4"));
  EXPECT_EQ(error_of([&] { c.rank(i32, 2, "x", DType::i32); }), "");
}

TEST(OpChecks, ConvGeometryByHand) {
  Conv2dParams p;
  p.stride_h = 2;
  p.pad_h = 1;
  p.dilation_w = 2;
  // P = (9 + 2 - 1 * (3 - 1) - 1) / 2 + 1 = 5, Q = (7 + 0 - 2 * (2 - 1) - 1) / 1 + 1 = 5.
  const ConvGeometry g = OpChecks::cpu("conv").conv2d({2, 9, 7, 3}, {5, 3, 2, 3}, p);
  EXPECT_EQ(g.n, 2);
  EXPECT_EQ(g.h, 9);
  EXPECT_EQ(g.w, 7);
  EXPECT_EQ(g.c, 3);
  EXPECT_EQ(g.k, 5);
  EXPECT_EQ(g.r, 3);
  EXPECT_EQ(g.s, 2);
  EXPECT_EQ(g.p, 5);
  EXPECT_EQ(g.q, 5);
  EXPECT_EQ(g.patch(), 18);
  EXPECT_EQ(g.output_shape(), (Shape{2, 5, 5, 5}));
  EXPECT_EQ(g.params.dilation_w, 2);
}

TEST(OpChecks, GroupedConvGeometry) {
  Conv2dParams p;
  p.groups = 4;
  // x [2, 6, 6, 8], w [12, 3, 3, 8 / 4]: 2 input and 3 output channels per group.
  const ConvGeometry g = OpChecks::cpu("conv").conv2d({2, 6, 6, 8}, {12, 3, 3, 2}, p);
  EXPECT_EQ(g.groups, 4);
  EXPECT_EQ(g.c, 8);
  EXPECT_EQ(g.k, 12);
  EXPECT_EQ(g.group_c(), 2);
  EXPECT_EQ(g.group_k(), 3);
  EXPECT_EQ(g.patch(), 18);
  EXPECT_EQ(g.output_shape(), (Shape{2, 4, 4, 12}));
  p.groups = 8;  // depthwise, two filters per channel
  const ConvGeometry d = OpChecks::cpu("conv").conv2d({2, 6, 6, 8}, {16, 3, 3, 1}, p);
  EXPECT_EQ(d.group_c(), 1);
  EXPECT_EQ(d.group_k(), 2);
  EXPECT_EQ(d.patch(), 9);
}

TEST(OpChecks, GroupedConvErrors) {
  const OpChecks c = OpChecks::cpu("conv2d_forward");
  Conv2dParams p;
  p.groups = 0;
  EXPECT_TRUE(has(error_of([&] { c.conv2d({2, 8, 8, 4}, {4, 3, 3, 4}, p); }), "conv2d_forward: groups 0 must be >= 1"));
  p.groups = 3;
  EXPECT_TRUE(has(error_of([&] {
                    c.conv2d({2, 8, 8, 4}, {6, 3, 3, 1}, p);
                  }),
                  "conv2d_forward: 3 groups do not divide the 4 input and 6 output channels"));
  EXPECT_TRUE(has(error_of([&] {
                    c.conv2d({2, 8, 8, 6}, {4, 3, 3, 2}, p);
                  }),
                  "conv2d_forward: 3 groups do not divide the 6 input and 4 output channels"));
  p.groups = 2;
  EXPECT_TRUE(has(error_of([&] {
                    c.conv2d({2, 8, 8, 6}, {4, 3, 3, 6}, p);
                  }),
                  "conv2d_forward: filters [4, 3, 3, 6] have 6 input channels, the input [2, 8, 8, 6] has 3 per group "
                  "in 2 groups"));
  EXPECT_EQ(error_of([&] { c.conv2d({2, 8, 8, 6}, {4, 3, 3, 3}, p); }), "");
}

TEST(OpChecks, ConvErrorsNameTheOpAndTheProblem) {
  const OpChecks c = OpChecks::cpu("conv2d_forward");
  const Conv2dParams p;
  EXPECT_TRUE(has(error_of([&] {
                    c.conv2d({2, 8, 8}, {4, 3, 3, 3}, p);
                  }),
                  "conv2d_forward: input has shape [2, 8, 8], expected rank 4 [N, H, W, C]"));
  EXPECT_TRUE(has(error_of([&] {
                    c.conv2d({2, 8, 8, 3}, {4, 3, 3}, p);
                  }),
                  "conv2d_forward: filters have shape [4, 3, 3], expected rank 4 [K, R, S, C]"));
  EXPECT_TRUE(has(error_of([&] {
                    c.conv2d({2, 8, 8, 3}, {4, 3, 3, 5}, p);
                  }),
                  "conv2d_forward: filters [4, 3, 3, 5] have 5 input channels, the input [2, 8, 8, 3] has 3"));
  EXPECT_TRUE(has(error_of([&] { c.conv2d({2, 8, 8, 3}, {0, 3, 3, 3}, p); }), "conv2d_forward: empty filters"));
  EXPECT_TRUE(has(error_of([&] {
                    c.conv2d({2, 2, 8, 3}, {4, 3, 3, 3}, p);
                  }),
                  "conv2d_forward: input 2x8 (padding 0x0) is smaller than the 3x3 kernel (dilation 1x1)"));
  Conv2dParams bad = p;
  bad.stride_w = 0;
  EXPECT_TRUE(has(error_of([&] { c.conv2d({2, 8, 8, 3}, {4, 3, 3, 3}, bad); }), "stride 1x0 must be >= 1"));
  bad = p;
  bad.dilation_h = 0;
  EXPECT_TRUE(has(error_of([&] { c.conv2d({2, 8, 8, 3}, {4, 3, 3, 3}, bad); }), "dilation 0x1 must be >= 1"));
  bad = p;
  bad.pad_w = -1;
  EXPECT_TRUE(has(error_of([&] { c.conv2d({2, 8, 8, 3}, {4, 3, 3, 3}, bad); }), "padding 0x-1 must be >= 0"));
}

TEST(OpChecks, ConvPassesCheckEveryTensor) {
  const Tensor x({2, 8, 8, 3}), w({4, 3, 3, 3}), y({2, 6, 6, 4}), bias({4});
  const OpChecks fwd = OpChecks::cpu("conv2d_forward");
  EXPECT_EQ(fwd.conv2d_forward(x, w, &bias, y, {}).output_shape(), y.shape());
  const Tensor y_bad({2, 6, 6, 5}), bias_bad({5});
  EXPECT_TRUE(has(error_of([&] { fwd.conv2d_forward(x, w, nullptr, y_bad, {}); }),
                  "conv2d_forward: y has shape [2, 6, 6, 5], expected [2, 6, 6, 4]"));
  EXPECT_TRUE(has(error_of([&] { fwd.conv2d_forward(x, w, &bias_bad, y, {}); }),
                  "conv2d_forward: bias has shape [5], expected [4]"));

  const OpChecks data = OpChecks::cpu("conv2d_backward_data");
  EXPECT_EQ(data.conv2d_backward_data(y, w, x, {}).p, 6);
  EXPECT_TRUE(has(error_of([&] { data.conv2d_backward_data(y_bad, w, x, {}); }), "conv2d_backward_data: dy has shape"));

  const OpChecks filter = OpChecks::cpu("conv2d_backward_filter");
  EXPECT_EQ(filter.conv2d_backward_filter(x, y, w, &bias, {}).k, 4);
  EXPECT_TRUE(has(error_of([&] { filter.conv2d_backward_filter(x, y, w, &bias_bad, {}); }),
                  "conv2d_backward_filter: dbias has shape [5], expected [4]"));
  const Tensor dw_i32({4, 3, 3, 3}, DType::i32);
  EXPECT_TRUE(has(error_of([&] { filter.conv2d_backward_filter(x, y, dw_i32, nullptr, {}); }),
                  "conv2d_backward_filter: dw has dtype I32"));
}

TEST(OpChecks, PoolGeometryAndErrors) {
  Pool2dParams p;
  p.kernel_h = 3;
  p.kernel_w = 2;
  p.stride_h = 2;
  p.stride_w = 1;
  p.pad_h = 1;
  // P = (7 + 2 - 3) / 2 + 1 = 4, Q = (5 - 2) / 1 + 1 = 4.
  const Tensor x({3, 7, 5, 6}), y({3, 4, 4, 6}), argmax({3, 4, 4, 6}, DType::i32);
  const PoolGeometry g = OpChecks::cpu("max_pool2d_forward").max_pool2d_forward(x, y, argmax, p);
  EXPECT_EQ(g.p, 4);
  EXPECT_EQ(g.q, 4);
  EXPECT_EQ(g.c, 6);
  EXPECT_EQ(g.pooled_shape(), y.shape());

  const Tensor argmax_f32({3, 4, 4, 6});
  EXPECT_TRUE(has(error_of([&] { OpChecks::cpu("max_pool2d_backward").max_pool2d_backward(y, argmax_f32, x, p); }),
                  "max_pool2d_backward: argmax has dtype F32, expected I32"));
  const OpChecks avg = OpChecks::cpu("avg_pool2d_forward");
  EXPECT_TRUE(has(error_of([&] { avg.avg_pool2d_forward(x, argmax, p); }), "avg_pool2d_forward: y has dtype I32"));
  Pool2dParams bad = p;
  bad.pad_w = 2;
  EXPECT_TRUE(has(error_of([&] { avg.pool2d(x.shape(), bad); }),
                  "avg_pool2d_forward: padding 1x2 must be >= 0 and smaller than the 3x2 kernel"));
  EXPECT_TRUE(has(error_of([&] {
                    avg.pool2d({1, 7, 1, 1}, p);
                  }),
                  "avg_pool2d_forward: input 7x1 (padding 1x0) is smaller than the 3x2 window"));
  EXPECT_TRUE(has(error_of([&] { avg.pool2d({7, 5, 6}, p); }), "expected rank 4 [N, H, W, C]"));
}

TEST(OpChecks, LinearShapes) {
  const Tensor x({3, 7}), w({5, 7}), y({3, 5}), bias({5});
  const LinearGeometry g = OpChecks::cpu("linear_forward").linear_forward(x, w, &bias, y);
  EXPECT_EQ(g.n, 3);
  EXPECT_EQ(g.in, 7);
  EXPECT_EQ(g.out, 5);
  const Tensor w_bad({5, 8});
  EXPECT_TRUE(has(error_of([&] { OpChecks::cpu("linear_forward").linear_forward(x, w_bad, nullptr, y); }),
                  "linear_forward: w has shape [5, 8], expected [5, 7]"));
  const Tensor dx_bad({3, 5});
  Tensor dw({5, 7});
  EXPECT_TRUE(has(error_of([&] { OpChecks::cpu("linear_backward").linear_backward(x, w, y, &dx_bad, dw, nullptr); }),
                  "linear_backward: dx has shape [3, 5], expected [3, 7]"));
}

TEST(OpChecks, BatchNormChannelsAndTrainingRows) {
  const Tensor x({4, 6}), c6({6}), c5({5});
  const OpChecks train = OpChecks::cpu("batch_norm_forward_train");
  EXPECT_EQ(train.batch_norm_forward_train(x, c6, c6, x, c6, c6, c6, c6, 0.1f, 1e-5f), 6);
  EXPECT_TRUE(has(error_of([&] { train.batch_norm_forward_train(x, c5, c6, x, c6, c6, c6, c6, 0.1f, 1e-5f); }),
                  "batch_norm_forward_train: gamma has shape [5], expected [6]"));
  EXPECT_TRUE(has(error_of([&] { train.batch_norm_forward_train(x, c6, c6, x, c6, c6, c6, c6, 1.5f, 1e-5f); }),
                  "momentum 1.5 must lie in [0, 1]"));
  const Tensor one_row({1, 6});
  EXPECT_EQ(error_of([&] { train.batch_norm_forward_train(one_row, c6, c6, one_row, c6, c6, c6, c6, 0.1f, 1e-5f); }),
            "batch_norm: training needs more than one value per channel, got input [1, 6]");
  const Tensor no_channels({4, 0});
  EXPECT_TRUE(has(error_of([&] {
                    OpChecks::cpu("batch_norm_backward")
                        .batch_norm_backward(no_channels, no_channels, c6, c6, c6, no_channels, c6, c6);
                  }),
                  "batch_norm_backward: x has shape [4, 0], expected [..., C] with C > 0"));
  EXPECT_TRUE(has(
      error_of([&] { OpChecks::cpu("batch_norm_forward_eval").batch_norm_forward_eval(x, c6, c6, c6, c6, -1.0f, x); }),
      "batch_norm_forward_eval: eps -1 must be >= 0"));
}

TEST(OpChecks, DropoutLossAndSgd) {
  const Tensor x({10}), mask_u8({10}, DType::u8), mask_f32({10});
  const OpChecks drop = OpChecks::cpu("dropout_forward");
  EXPECT_EQ(error_of([&] { drop.dropout_forward(x, x, mask_u8, 0.5f); }), "");
  EXPECT_TRUE(has(error_of([&] { drop.dropout_forward(x, x, mask_u8, 1.5f); }),
                  "dropout_forward: drop probability 1.5 must lie in [0, 1]"));
  EXPECT_TRUE(has(error_of([&] { OpChecks::cpu("dropout_backward").dropout_backward(x, mask_f32, 0.5f, x); }),
                  "dropout_backward: mask has dtype F32, expected U8"));

  const Tensor logits({4, 10}), labels({4}, DType::i32), loss({1}), no_classes({4, 0});
  const OpChecks ce = OpChecks::cpu("softmax_cross_entropy_forward");
  const LossGeometry g = ce.softmax_cross_entropy_forward(logits, labels, 0.1f, loss, logits);
  EXPECT_EQ(g.n, 4);
  EXPECT_EQ(g.k, 10);
  EXPECT_TRUE(has(error_of([&] { ce.softmax_cross_entropy_forward(no_classes, labels, 0.0f, loss, no_classes); }),
                  "softmax_cross_entropy_forward: logits has shape [4, 0], expected at least one class"));
  EXPECT_TRUE(has(error_of([&] { ce.softmax_cross_entropy_forward(logits, labels, -0.5f, loss, logits); }),
                  "label smoothing -0.5 must lie in [0, 1]"));
  const Tensor labels5({5}, DType::i32);
  EXPECT_TRUE(has(error_of([&] { ce.softmax_cross_entropy_forward(logits, labels5, 0.0f, loss, logits); }),
                  "softmax_cross_entropy_forward: labels has shape [5], expected [4]"));

  // The momentum buffer is checked only when momentum is on.
  const OpChecks sgd = OpChecks::cpu("sgd_update");
  SgdStep step;
  step.momentum = 0.0f;
  EXPECT_EQ(error_of([&] { sgd.sgd_update(x, x, Tensor(), step, nullptr); }), "");
  step.momentum = 0.9f;
  EXPECT_TRUE(
      has(error_of([&] { sgd.sgd_update(x, x, Tensor(), step, nullptr); }), "sgd_update: momentum_buf is undefined"));
}

}  // namespace
}  // namespace convnet

namespace convnet {
namespace {

TEST(ConvOutputSize, MatchesPyTorchAndIsZeroWhenTheKernelDoesNotFit) {
  EXPECT_EQ(conv_output_size(32, 3, 1, 1), 32);
  EXPECT_EQ(conv_output_size(32, 3, 2, 1), 16);
  EXPECT_EQ(conv_output_size(7, 3, 2, 0, 2), 2);  // span 5: outputs at 0 and 2
  EXPECT_EQ(conv_output_size(5, 5, 3, 0, 1), 1);
  // h = 4, kernel 5, pad 2, dilation 2: the span 9 exceeds the padded 8, whatever the stride.
  EXPECT_EQ(conv_output_size(4, 5, 1, 2, 2), 0);
  EXPECT_EQ(conv_output_size(4, 5, 3, 2, 2), 0);
}

TEST(OpChecks, TrainStatsShapesAndDtypes) {
  const OpChecks check("accumulate_train_stats", Device{}, "cpu");
  Tensor loss({1}), logits({4, 3}), labels({4}, DType::i32), stats({4}, DType::f64);
  EXPECT_EQ(check.accumulate_train_stats(loss, logits, labels, stats).n, 4);
  Tensor stats_f32({4}), stats_short({3}, DType::f64), labels_short({3}, DType::i32);
  EXPECT_TRUE(has(error_of([&] { check.accumulate_train_stats(loss, logits, labels, stats_f32); }),
                  "accumulate_train_stats: stats has dtype F32, expected F64"));
  EXPECT_TRUE(has(error_of([&] { check.accumulate_train_stats(loss, logits, labels, stats_short); }),
                  "stats has shape [3], expected [4]"));
  EXPECT_TRUE(has(error_of([&] { check.accumulate_train_stats(loss, logits, labels_short, stats); }),
                  "labels has shape [3], expected [4]"));
}

TEST(OpChecks, DescribeNamesTheOpAndEachTensorCheckedOnce) {
  const OpChecks check("conv2d_forward", Device{}, "cpu");
  EXPECT_EQ(check.describe(), "cpu conv2d_forward()");
  Tensor x({2, 8, 8, 3}), w({4, 3, 3, 3}), bias({4}), y({2, 6, 6, 4});
  check.conv2d_forward(x, w, &bias, y, Conv2dParams{});
  check.tensor(x, "x");  // checked again: listed once
  EXPECT_EQ(check.describe(), "cpu conv2d_forward(x [2, 8, 8, 3], w [4, 3, 3, 3], y [2, 6, 6, 4], bias [4])");
}

TEST(EnvFlag, ZeroOneOrUnsetAndNothingElse) {
  EXPECT_FALSE(parse_env_flag("CONVNET_X", nullptr, false));
  EXPECT_TRUE(parse_env_flag("CONVNET_X", nullptr, true));
  EXPECT_TRUE(parse_env_flag("CONVNET_X", "1", false));
  EXPECT_FALSE(parse_env_flag("CONVNET_X", "0", true));
  for (const char* bad : {"", "yes", "true", "2", " 1"}) {
    try {
      parse_env_flag("CONVNET_X", bad, false);
      FAIL() << "accepted '" << bad << "'";
    } catch (const ConfigError& e) {
      EXPECT_TRUE(has(e.what(), fmt::format("CONVNET_X=\"{}\" is not valid: expected 0 or 1", bad)));
    }
  }
  ::setenv("CONVNET_TEST_ENV_FLAG", "1", 1);
  EXPECT_TRUE(env_flag("CONVNET_TEST_ENV_FLAG", false));
  ::unsetenv("CONVNET_TEST_ENV_FLAG");
  EXPECT_FALSE(env_flag("CONVNET_TEST_ENV_FLAG", false));
}

}  // namespace
}  // namespace convnet
