// Every non-convolution op of the GPU backends (`cuda` and `cudnn`) against the cpu reference:
// pooling, activations, batch normalization, dropout, linear, softmax cross-entropy and the SGD
// update. Inputs are random (never zeros) with odd sizes; device outputs are poisoned first (NaN,
// or 0xA5 bytes for i32/u8) so an unwritten element fails. Integer outputs (max-pool argmax,
// dropout mask) must equal the cpu's exactly; float outputs match in relative L2.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/base/backend.h"
#include "core/base/precision.h"
#include "core/base/rng.h"
#include "core/cpu/cpu_backend.h"
#include "core/dist/replica_group.h"
#include "core/layers/batch_norm.h"
#include "cuda/device.h"
#include "tests/common/gpu_test_util.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::bitwise_equal;
using testing::close_l2;
using testing::poisoned;
using testing::random_tensor;
using testing::values_equal;

// Shuffled distinct values in (-1, 1): no two elements tie, so max pooling has one answer.
Tensor distinct_tensor(const Shape& shape, Rng& rng) {
  Tensor t(shape);
  const int64_t n = t.numel();
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
  for (int64_t i = n - 1; i > 0; --i)
    std::swap(order[static_cast<size_t>(i)], order[rng.below(static_cast<uint64_t>(i + 1))]);
  for (int64_t i = 0; i < n; ++i)
    t.f32()[i] = static_cast<float>(
        (2.0 * static_cast<double>(order[static_cast<size_t>(i)]) + 1.0) / static_cast<double>(n) - 1.0);
  return t;
}

// Values from {offset, offset + 1, ..., offset + levels - 1}: many ties inside every window.
Tensor quantized_tensor(const Shape& shape, Rng& rng, int levels, float offset) {
  Tensor t(shape);
  for (float& v : t.span()) v = offset + static_cast<float>(rng.below(static_cast<uint64_t>(levels)));
  return t;
}

Shape pool_output_shape(const Shape& x, const Pool2dParams& p) {
  return {x[0], conv_output_size(x[1], p.kernel_h, p.stride_h, p.pad_h),
          conv_output_size(x[2], p.kernel_w, p.stride_w, p.pad_w), x[3]};
}

struct PoolCase {
  Shape x;
  Pool2dParams p;
  const char* what;
};

std::vector<PoolCase> pool_cases() {
  return {
      {{3, 13, 11, 5}, {3, 3, 2, 2, 1, 1}, "overlapping 3x3 stride 2 pad 1"},
      {{2, 9, 7, 3}, {3, 3, 2, 2, 0, 0}, "overlapping 3x3 stride 2, odd sizes"},
      {{2, 8, 8, 16}, {2, 2, 2, 2, 0, 0}, "2x2 stride 2"},
      {{1, 6, 10, 7}, {3, 2, 1, 2, 1, 0}, "rectangular 3x2 stride 1x2 pad 1x0"},
      {{4, 32, 32, 64}, {2, 2, 2, 2, 0, 0}, "VGG-sized 2x2"},
      {{2, 5, 5, 33}, {5, 5, 1, 1, 2, 2}, "5x5 stride 1 pad 2 (every window overlaps)"},
  };
}

class GpuOps : public testing::GpuVsCpuTest {
 protected:
  Tensor poison_bytes(const Shape& shape, DType dtype) { return testing::poisoned_device_bytes(gpu(), shape, dtype); }

  // Max pooling forward and backward on `x`, compared with the cpu: y and argmax exactly.
  void check_max_pool(const Tensor& x, const Pool2dParams& p, const std::string& what) {
    SCOPED_TRACE(GetParam() + " max pool " + what + " on " + shape_str(x.shape()));
    const Shape y_shape = pool_output_shape(x.shape(), p);
    Tensor y = poisoned(y_shape), argmax(y_shape, DType::i32), dx = poisoned(x.shape());
    cpu().max_pool2d_forward(x, y, argmax, p);
    Rng rng(77);
    const Tensor dy = random_tensor(y_shape, rng);
    cpu().max_pool2d_backward(dy, argmax, dx, p);

    const Tensor gx = up(x), gdy = up(dy);
    Tensor gy = poison(y_shape), gargmax = poison_bytes(y_shape, DType::i32), gdx = poison(x.shape());
    gpu().max_pool2d_forward(gx, gy, gargmax, p);
    gpu().max_pool2d_backward(gdy, gargmax, gdx, p);
    EXPECT_TRUE(values_equal(down(gy), y));
    EXPECT_TRUE(bitwise_equal(down(gargmax), argmax));
    EXPECT_TRUE(close_l2(down(gdx), dx, 1e-6));
  }
};

// ---------------------------------------------------------------- pooling

TEST_P(GpuOps, MaxPoolMatchesCpuOnDistinctInputs) {
  Rng rng(1);
  for (const PoolCase& c : pool_cases()) check_max_pool(distinct_tensor(c.x, rng), c.p, c.what);
}

// Ties resolve to the first maximum in scan order, and padding never wins even when every real
// value is negative.
TEST_P(GpuOps, MaxPoolTiesAndNegativeInputsMatchCpu) {
  Rng rng(2);
  for (const PoolCase& c : pool_cases()) {
    check_max_pool(quantized_tensor(c.x, rng, 2, 0.0f), c.p, std::string(c.what) + ", values {0, 1}");
    check_max_pool(quantized_tensor(c.x, rng, 3, -5.0f), c.p, std::string(c.what) + ", values {-5, -4, -3}");
  }
}

TEST_P(GpuOps, AvgPoolMatchesCpu) {
  Rng rng(3);
  for (const PoolCase& c : pool_cases()) {
    SCOPED_TRACE(GetParam() + " avg pool " + c.what + " on " + shape_str(c.x));
    const Shape y_shape = pool_output_shape(c.x, c.p);
    const Tensor x = random_tensor(c.x, rng), dy = random_tensor(y_shape, rng);
    Tensor y = poisoned(y_shape), dx = poisoned(c.x);
    cpu().avg_pool2d_forward(x, y, c.p);
    cpu().avg_pool2d_backward(dy, dx, c.p);
    Tensor gy = poison(y_shape), gdx = poison(c.x);
    gpu().avg_pool2d_forward(up(x), gy, c.p);
    gpu().avg_pool2d_backward(up(dy), gdx, c.p);
    EXPECT_TRUE(close_l2(down(gy), y, 1e-6));
    EXPECT_TRUE(close_l2(down(gdx), dx, 1e-6));
  }
}

// ---------------------------------------------------------------- activations

const std::vector<Shape>& activation_shapes() {
  static const std::vector<Shape> shapes = {{3, 7, 5, 13}, {2, 33, 33, 17}, {1}, {1000003}};
  return shapes;
}

TEST_P(GpuOps, ReluForwardAndBackwardMatchCpu) {
  Rng rng(4);
  for (const Shape& shape : activation_shapes()) {
    SCOPED_TRACE(GetParam() + " relu on " + shape_str(shape));
    const Tensor x = random_tensor(shape, rng), dy = random_tensor(shape, rng);
    Tensor y = poisoned(shape), dx = poisoned(shape);
    cpu().relu_forward(x, y);
    cpu().relu_backward(y, dy, dx);
    Tensor gy = poison(shape), gdx = poison(shape);
    gpu().relu_forward(up(x), gy);
    gpu().relu_backward(gy, up(dy), gdx);
    EXPECT_TRUE(values_equal(down(gy), y));
    EXPECT_TRUE(values_equal(down(gdx), dx));
    // dx may alias dy.
    Tensor inplace = up(dy);
    gpu().relu_backward(gy, inplace, inplace);
    EXPECT_TRUE(values_equal(down(inplace), dx));
  }
}

// NaN passes through ReLU on every backend (cudnn with CUDNN_PROPAGATE_NAN), as on the cpu.
TEST_P(GpuOps, ReluPropagatesNanAndInfinityLikeCpu) {
  Rng rng(14);
  const Shape shape{3, 5, 5, 8};
  Tensor x = random_tensor(shape, rng);
  const Tensor dy = random_tensor(shape, rng);
  for (int64_t i = 0; i < x.numel(); i += 7) x.f32()[i] = std::numeric_limits<float>::quiet_NaN();
  x.f32()[1] = std::numeric_limits<float>::infinity();
  x.f32()[2] = -std::numeric_limits<float>::infinity();
  Tensor y = poisoned(shape), dx = poisoned(shape);
  cpu().relu_forward(x, y);
  cpu().relu_backward(y, dy, dx);
  Tensor gy = poison(shape), gdx = poison(shape);
  gpu().relu_forward(up(x), gy);
  const Tensor hy = down(gy);
  for (int64_t i = 0; i < x.numel(); ++i) {
    if (i % 7 == 0)
      ASSERT_TRUE(std::isnan(hy.f32()[i])) << GetParam() << " relu(NaN) at " << i << " gave " << hy.f32()[i];
    else
      ASSERT_EQ(hy.f32()[i], y.f32()[i]) << GetParam() << " at " << i;
  }
  // Backward from the cpu's y, so both see the same NaN positions: dx = dy there.
  gpu().relu_backward(up(y), up(dy), gdx);
  EXPECT_TRUE(values_equal(down(gdx), dx));
}

TEST_P(GpuOps, GeluForwardAndBackwardMatchCpu) {
  Rng rng(5);
  for (const Shape& shape : activation_shapes()) {
    SCOPED_TRACE(GetParam() + " gelu on " + shape_str(shape));
    const Tensor x = random_tensor(shape, rng, -4.0f, 4.0f), dy = random_tensor(shape, rng);
    Tensor y = poisoned(shape), dx = poisoned(shape);
    cpu().gelu_forward(x, y);
    cpu().gelu_backward(x, dy, dx);
    const Tensor gx = up(x);
    Tensor gy = poison(shape), gdx = poison(shape);
    gpu().gelu_forward(gx, gy);
    gpu().gelu_backward(gx, up(dy), gdx);
    EXPECT_TRUE(close_l2(down(gy), y, 1e-6));
    EXPECT_TRUE(close_l2(down(gdx), dx, 1e-6));
    Tensor inplace = up(dy);
    gpu().gelu_backward(gx, inplace, inplace);
    EXPECT_TRUE(close_l2(down(inplace), dx, 1e-6));
  }
}

// ---------------------------------------------------------------- batch normalization

struct BnInputs {
  Tensor x, gamma, beta, running_mean, running_var;
  BnInputs(const Shape& shape, Rng& rng) {
    const int64_t c = shape.back();
    x = random_tensor(shape, rng, -1.0f, 2.0f);
    gamma = random_tensor({c}, rng, 0.5f, 1.5f);
    beta = random_tensor({c}, rng, -0.5f, 0.5f);
    running_mean = random_tensor({c}, rng, -0.2f, 0.2f);
    running_var = random_tensor({c}, rng, 0.5f, 1.5f);
  }
};

const std::vector<Shape>& bn_shapes() {
  static const std::vector<Shape> shapes = {{4, 5, 7, 13}, {32, 32, 32, 3}, {37, 19}, {2, 16, 16, 64}};
  return shapes;
}

constexpr float kBnMomentum = 0.1f;
constexpr float kBnEps = 1e-5f;

// The cpu backend's training forward: the reference outputs and the statistics backward uses.
struct BnTrainReference {
  Tensor y, mean, invstd, running_mean, running_var;
};
BnTrainReference cpu_bn_train(Backend& cpu, const BnInputs& in, const Shape& shape) {
  const Shape c{shape.back()};
  BnTrainReference r{poisoned(shape), poisoned(c), poisoned(c), in.running_mean.clone(), in.running_var.clone()};
  cpu.batch_norm_forward_train(in.x, in.gamma, in.beta, r.y, r.mean, r.invstd, r.running_mean, r.running_var,
                               kBnMomentum, kBnEps);
  return r;
}

// A GPU training forward's outputs against the cpu's.
void expect_matches(const BnTrainReference& ref, const Tensor& y, const Tensor& mean, const Tensor& invstd,
                    const Tensor& running_mean, const Tensor& running_var) {
  EXPECT_TRUE(close_l2(y, ref.y, 1e-5)) << "y";
  EXPECT_TRUE(close_l2(mean, ref.mean, 1e-5)) << "saved mean";
  EXPECT_TRUE(close_l2(invstd, ref.invstd, 1e-5)) << "saved invstd";
  EXPECT_TRUE(close_l2(running_mean, ref.running_mean, 1e-5)) << "running mean";
  EXPECT_TRUE(close_l2(running_var, ref.running_var, 1e-5)) << "running var (unbiased)";
}

TEST_P(GpuOps, BatchNormTrainMatchesCpuIncludingRunningStats) {
  Rng rng(6);
  for (const Shape& shape : bn_shapes()) {
    SCOPED_TRACE(GetParam() + " batchnorm train on " + shape_str(shape));
    const BnInputs in(shape, rng);
    const Shape c{shape.back()};
    const BnTrainReference ref = cpu_bn_train(cpu(), in, shape);
    Tensor gy = poison(shape), gmean = poison(c), ginvstd = poison(c);
    Tensor grunning_mean = up(in.running_mean), grunning_var = up(in.running_var);
    gpu().batch_norm_forward_train(up(in.x), up(in.gamma), up(in.beta), gy, gmean, ginvstd, grunning_mean, grunning_var,
                                   kBnMomentum, kBnEps);
    expect_matches(ref, down(gy), down(gmean), down(ginvstd), down(grunning_mean), down(grunning_var));
  }
}

// The batchnorm half of a fused conv -> batchnorm: given the cpu's mean and M2 of x, the same
// y, saved statistics and running statistics as the cpu's unfused training forward.
TEST_P(GpuOps, BatchNormFromMomentsMatchesCpuTraining) {
  Rng rng(16);
  for (const Shape& shape : bn_shapes()) {
    SCOPED_TRACE(GetParam() + " batchnorm from moments on " + shape_str(shape));
    const BnInputs in(shape, rng);
    const Shape c{shape.back()};
    const BnTrainReference ref = cpu_bn_train(cpu(), in, shape);
    Tensor mean = poisoned(c), m2 = poisoned(c);
    cpu().batch_norm_local_stats(in.x, mean, m2);
    Tensor gy = poison(shape), gmean = poison(c), ginvstd = poison(c);
    Tensor grunning_mean = up(in.running_mean), grunning_var = up(in.running_var);
    gpu().batch_norm_forward_train_from_moments(up(in.x), up(mean), up(m2), up(in.gamma), up(in.beta), gy, gmean,
                                                ginvstd, grunning_mean, grunning_var, kBnMomentum, kBnEps);
    expect_matches(ref, down(gy), down(gmean), down(ginvstd), down(grunning_mean), down(grunning_var));
  }
}

// The conv half: conv2d_forward_with_moments gives conv2d_forward's y bit for bit, and the mean and
// M2 of that y (the cpu's two-pass statistics of the downloaded y) within fp32 sums' error. On
// cuda in tf32 and bf16 they come from v4's epilogue; elsewhere from a pass over y.
TEST(GpuConvWithMoments, StatisticsAreThoseOfTheStoredOutput) {
  CONVNET_SKIP_WITHOUT_GPU();
  std::unique_ptr<Backend> cpu = make_cpu_backend();
  const Conv2dParams p{1, 1, 1, 1, 1, 1, 1};
  for (const std::string name : {"cuda", "cudnn"}) {
    for (const Precision precision : {Precision::fp32, Precision::tf32, Precision::bf16}) {
      if (name == "cudnn" && precision == Precision::tf32) continue;
      std::unique_ptr<Backend> gpu = testing::make_gpu_backend(name);
      gpu->set_precision(precision);
      SCOPED_TRACE(name + " " + precision_name(precision));
      Rng rng(21);
      // 2 x 16 x 16 rows = 512 rows over several 128-row tiles; K = 24 columns.
      const Tensor x = random_tensor({2, 16, 16, 16}, rng, -1.0f, 2.0f);
      const Tensor w = random_tensor({24, 3, 3, 16}, rng, -0.2f, 0.4f);  // a positive mean per channel
      const Shape ys{2, 16, 16, 24};
      const Tensor gx = testing::to_device(*gpu, x), gw = testing::to_device(*gpu, w);
      Tensor gy_plain = testing::poisoned_device(*gpu, ys), gy = testing::poisoned_device(*gpu, ys);
      Tensor gmean = testing::poisoned_device(*gpu, {24}), gm2 = testing::poisoned_device(*gpu, {24});
      gpu->conv2d_forward(gx, gw, nullptr, gy_plain, p);
      gpu->conv2d_forward_with_moments(gx, gw, nullptr, gy, p, gmean, gm2);
      const Tensor y = testing::to_host(*gpu, gy);
      EXPECT_TRUE(bitwise_equal(y, testing::to_host(*gpu, gy_plain))) << "y";
      Tensor mean = poisoned({24}), m2 = poisoned({24});
      cpu->batch_norm_local_stats(y, mean, m2);
      EXPECT_TRUE(close_l2(testing::to_host(*gpu, gmean), mean, 1e-5)) << "mean";
      EXPECT_TRUE(close_l2(testing::to_host(*gpu, gm2), m2, 1e-5)) << "m2";
    }
  }
}

TEST_P(GpuOps, BatchNormEvalMatchesCpu) {
  Rng rng(7);
  for (const Shape& shape : bn_shapes()) {
    SCOPED_TRACE(GetParam() + " batchnorm eval on " + shape_str(shape));
    const BnInputs in(shape, rng);
    Tensor y = poisoned(shape);
    cpu().batch_norm_forward_eval(in.x, in.gamma, in.beta, in.running_mean, in.running_var, kBnEps, y);
    Tensor gy = poison(shape);
    gpu().batch_norm_forward_eval(up(in.x), up(in.gamma), up(in.beta), up(in.running_mean), up(in.running_var), kBnEps,
                                  gy);
    EXPECT_TRUE(close_l2(down(gy), y, 1e-5));
  }
}

TEST_P(GpuOps, BatchNormBackwardMatchesCpu) {
  Rng rng(8);
  for (const Shape& shape : bn_shapes()) {
    SCOPED_TRACE(GetParam() + " batchnorm backward on " + shape_str(shape));
    const BnInputs in(shape, rng);
    const Shape c{shape.back()};
    // The saved statistics come from a cpu training forward; both backends get the same ones.
    const BnTrainReference ref = cpu_bn_train(cpu(), in, shape);
    const Tensor dy = random_tensor(shape, rng);
    Tensor dx = poisoned(shape), dgamma = poisoned(c), dbeta = poisoned(c);
    cpu().batch_norm_backward(in.x, dy, in.gamma, ref.mean, ref.invstd, dx, dgamma, dbeta);
    Tensor gdx = poison(shape), gdgamma = poison(c), gdbeta = poison(c);
    gpu().batch_norm_backward(up(in.x), up(dy), up(in.gamma), up(ref.mean), up(ref.invstd), gdx, gdgamma, gdbeta);
    EXPECT_TRUE(close_l2(down(gdx), dx, 1e-5)) << "dx";
    EXPECT_TRUE(close_l2(down(gdgamma), dgamma, 1e-5)) << "dgamma";
    EXPECT_TRUE(close_l2(down(gdbeta), dbeta, 1e-5)) << "dbeta";
  }
}

// The synchronized pieces (local stats, backward reduce and apply) on random saved statistics and
// means, one row and empty shards included (a data-parallel rank may hold either).
TEST_P(GpuOps, BatchNormSyncPiecesMatchCpu) {
  Rng rng(10);
  std::vector<Shape> shapes = bn_shapes();
  shapes.insert(shapes.end(), {Shape{1, 7}, Shape{0, 5}, Shape{300, 33}});
  for (const Shape& shape : shapes) {
    SCOPED_TRACE(GetParam() + " batchnorm sync pieces on " + shape_str(shape));
    const BnInputs in(shape, rng);
    const Shape c{shape.back()};
    const Tensor dy = random_tensor(shape, rng), mean = random_tensor(c, rng, -1.0f, 2.0f);
    const Tensor invstd = random_tensor(c, rng, 0.5f, 2.0f), mean_dy = random_tensor(c, rng, -0.3f, 0.3f);
    const Tensor mean_dy_xhat = random_tensor(c, rng, -0.3f, 0.3f);
    Tensor lmean = poisoned(c), m2 = poisoned(c), sdy = poisoned(c), sdyx = poisoned(c), dx = poisoned(shape);
    cpu().batch_norm_local_stats(in.x, lmean, m2);
    cpu().batch_norm_backward_reduce(in.x, dy, mean, invstd, sdy, sdyx);
    cpu().batch_norm_backward_apply(in.x, dy, in.gamma, mean, invstd, mean_dy, mean_dy_xhat, dx);

    const Tensor gx = up(in.x), gdy = up(dy), ggamma = up(in.gamma), gmean = up(mean), ginvstd = up(invstd);
    const Tensor gmdy = up(mean_dy), gmdyx = up(mean_dy_xhat);
    Tensor glmean = poison(c), gm2 = poison(c), gsdy = poison(c), gsdyx = poison(c), gdx = poison(shape);
    gpu().batch_norm_local_stats(gx, glmean, gm2);
    gpu().batch_norm_backward_reduce(gx, gdy, gmean, ginvstd, gsdy, gsdyx);
    gpu().batch_norm_backward_apply(gx, gdy, ggamma, gmean, ginvstd, gmdy, gmdyx, gdx);
    EXPECT_TRUE(close_l2(down(glmean), lmean, 1e-5)) << "mean";
    EXPECT_TRUE(close_l2(down(gm2), m2, 1e-5)) << "m2";
    EXPECT_TRUE(close_l2(down(gsdy), sdy, 1e-5)) << "sum_dy";
    EXPECT_TRUE(close_l2(down(gsdyx), sdyx, 1e-5)) << "sum_dy_xhat";
    EXPECT_TRUE(close_l2(down(gdx), dx, 1e-5)) << "dx";
    Tensor inplace = up(dy);
    gpu().batch_norm_backward_apply(gx, inplace, ggamma, gmean, ginvstd, gmdy, gmdyx, inplace);
    EXPECT_TRUE(bitwise_equal(down(inplace), down(gdx))) << "dx in place";
  }
}

// The synchronized layer with one rank on the device (statistics through the host and back)
// against the fused layer on the same backend.
TEST_P(GpuOps, SyncBatchNormLayerWithOneRankMatchesFusedLayer) {
  Rng rng(11);
  const Shape example{5, 7, 13}, xs{4, 5, 7, 13};
  const Tensor x = up(random_tensor(xs, rng, 1.0f, 3.0f)), dy = up(random_tensor(xs, rng));
  SingleProcess single;
  Tensor y[2], dx[2];
  std::vector<Tensor> grads[2];
  for (int synced = 0; synced < 2; ++synced) {
    BatchNorm2d bn("bn");
    bn.configure(example);
    bn.set_backend(gpu());
    bn.allocate_parameters();
    Rng init(0);
    bn.initialize(init);
    if (synced) bn.set_replica_group(&single);
    y[synced] = poison(xs);
    dx[synced] = poison(xs);
    bn.forward(x, y[synced], Mode::train);
    bn.backward(x, y[synced], dy, &dx[synced]);
    for (const Tensor* t : std::initializer_list<const Tensor*>{&bn.parameters()[0]->grad, &bn.parameters()[1]->grad,
                                                                &bn.buffers()[0]->value, &bn.buffers()[1]->value,
                                                                &bn.saved_mean(), &bn.saved_invstd()})
      grads[synced].push_back(down(*t));
  }
  EXPECT_TRUE(close_l2(down(y[1]), down(y[0]), 1e-5)) << "y";
  EXPECT_TRUE(close_l2(down(dx[1]), down(dx[0]), 1e-5)) << "dx";
  const char* names[] = {"dgamma", "dbeta", "running mean", "running var", "saved mean", "saved invstd"};
  for (size_t i = 0; i < grads[0].size(); ++i) EXPECT_TRUE(close_l2(grads[1][i], grads[0][i], 1e-5)) << names[i];
}

// ---------------------------------------------------------------- dropout

TEST_P(GpuOps, DropoutMaskEqualsCpuMaskExactly) {
  Rng rng(9);
  const std::vector<Shape> shapes = {{5, 9, 11, 7}, {1000003}, {1}};
  const std::vector<std::pair<float, uint64_t>> settings = {{0.3f, 12345}, {0.5f, 0xDEADBEEFCAFEull}, {0.0f, 7}};
  for (const Shape& shape : shapes)
    for (const auto& [p, seed] : settings) {
      SCOPED_TRACE(GetParam() + " dropout p=" + std::to_string(p) + " seed " + std::to_string(seed) + " on " +
                   shape_str(shape));
      const Tensor x = random_tensor(shape, rng), dy = random_tensor(shape, rng);
      Tensor y = poisoned(shape), mask(shape, DType::u8), dx = poisoned(shape);
      cpu().dropout_forward(x, y, mask, p, seed);
      cpu().dropout_backward(dy, mask, p, dx);
      Tensor gy = poison(shape), gmask = poison_bytes(shape, DType::u8), gdx = poison(shape);
      gpu().dropout_forward(up(x), gy, gmask, p, seed);
      gpu().dropout_backward(up(dy), gmask, p, gdx);
      EXPECT_TRUE(bitwise_equal(down(gmask), mask)) << "mask";
      EXPECT_TRUE(close_l2(down(gy), y, 1e-6)) << "y";
      EXPECT_TRUE(close_l2(down(gdx), dx, 1e-6)) << "dx";
    }
}

// ---------------------------------------------------------------- linear

struct LinearCase {
  int64_t n, in, out;
};

TEST_P(GpuOps, LinearForwardAndBackwardMatchCpu) {
  Rng rng(10);
  const std::vector<LinearCase> cases = {{7, 37, 19}, {64, 513, 10}, {1, 1, 1}, {128, 16, 100}, {3, 2048, 5}};
  for (const LinearCase& c : cases)
    for (const bool with_bias : {true, false})
      for (const bool with_dx : {true, false}) {
        SCOPED_TRACE(GetParam() + " linear N=" + std::to_string(c.n) + " in=" + std::to_string(c.in) + " out=" +
                     std::to_string(c.out) + (with_bias ? " bias" : " no bias") + (with_dx ? " dx" : " no dx"));
        const Tensor x = random_tensor({c.n, c.in}, rng), w = random_tensor({c.out, c.in}, rng);
        const Tensor bias = random_tensor({c.out}, rng), dy = random_tensor({c.n, c.out}, rng);
        Tensor y = poisoned({c.n, c.out}), dx = poisoned({c.n, c.in}), dw = poisoned({c.out, c.in});
        Tensor dbias = poisoned({c.out});
        cpu().linear_forward(x, w, with_bias ? &bias : nullptr, y);
        cpu().linear_backward(x, w, dy, with_dx ? &dx : nullptr, dw, with_bias ? &dbias : nullptr);

        const Tensor gx = up(x), gw = up(w), gbias = up(bias);
        Tensor gy = poison({c.n, c.out}), gdx = poison({c.n, c.in}), gdw = poison({c.out, c.in});
        Tensor gdbias = poison({c.out});
        gpu().linear_forward(gx, gw, with_bias ? &gbias : nullptr, gy);
        gpu().linear_backward(gx, gw, up(dy), with_dx ? &gdx : nullptr, gdw, with_bias ? &gdbias : nullptr);
        EXPECT_TRUE(close_l2(down(gy), y, 1e-5)) << "y";
        EXPECT_TRUE(close_l2(down(gdw), dw, 1e-5)) << "dw";
        if (with_dx) {
          EXPECT_TRUE(close_l2(down(gdx), dx, 1e-5)) << "dx";
        }
        if (with_bias) {
          EXPECT_TRUE(close_l2(down(gdbias), dbias, 1e-5)) << "dbias";
        }
      }
}

// ---------------------------------------------------------------- softmax cross-entropy

struct SoftmaxCase {
  int64_t n, k;
  float range;  // logits uniform in [-range, range)
};

TEST_P(GpuOps, SoftmaxCrossEntropyMatchesCpu) {
  Rng rng(11);
  // The +-100 logits overflow expf unless the row maximum is subtracted first.
  const std::vector<SoftmaxCase> cases = {
      {13, 10, 3.0f}, {128, 100, 3.0f}, {1, 1000, 5.0f}, {1000, 7, 2.0f}, {9, 10, 100.0f}};
  for (const SoftmaxCase& c : cases)
    for (const float smoothing : {0.0f, 0.2f}) {
      SCOPED_TRACE(GetParam() + " softmax cross-entropy N=" + std::to_string(c.n) + " K=" + std::to_string(c.k) +
                   " range " + std::to_string(c.range) + " smoothing " + std::to_string(smoothing));
      const Tensor logits = random_tensor({c.n, c.k}, rng, -c.range, c.range);
      const Tensor labels = testing::random_labels(c.n, static_cast<int>(c.k), rng);
      Tensor loss = poisoned({1}), probs = poisoned({c.n, c.k}), dlogits = poisoned({c.n, c.k});
      cpu().softmax_cross_entropy_forward(logits, labels, smoothing, loss, probs);
      cpu().softmax_cross_entropy_backward(probs, labels, smoothing, dlogits);
      const Tensor glabels = up(labels);
      Tensor gloss = poison({1}), gprobs = poison({c.n, c.k}), gdlogits = poison({c.n, c.k});
      gpu().softmax_cross_entropy_forward(up(logits), glabels, smoothing, gloss, gprobs);
      gpu().softmax_cross_entropy_backward(gprobs, glabels, smoothing, gdlogits);
      const double want = loss.f32()[0], got = down(gloss).f32()[0];
      EXPECT_LT(std::abs(got - want), 1e-5 * std::abs(want)) << "loss " << got << ", cpu " << want;
      EXPECT_TRUE(close_l2(down(gprobs), probs, 1e-5)) << "probs";
      EXPECT_TRUE(close_l2(down(gdlogits), dlogits, 1e-5)) << "dlogits";
    }
}

// ---------------------------------------------------------------- SGD

struct SgdCase {
  SgdStep step;
  const char* what;
};

TEST_P(GpuOps, SgdUpdateMatchesCpu) {
  const std::vector<SgdCase> cases = {
      {{0.1f, 0.0f, 0.0f, false, false}, "plain"},
      {{0.1f, 0.0f, 1e-2f, false, false}, "no momentum, L2 decay"},
      {{0.1f, 0.9f, 0.0f, false, false}, "momentum"},
      {{0.05f, 0.9f, 0.0f, true, false}, "nesterov"},
      {{0.1f, 0.9f, 5e-3f, false, false}, "momentum, L2 decay"},
      {{0.1f, 0.9f, 5e-3f, true, true}, "nesterov, decoupled decay"},
      {{0.2f, 0.0f, 5e-2f, false, true}, "no momentum, decoupled decay"},
  };
  const int64_t n = 10007;
  for (const SgdCase& c : cases) {
    SCOPED_TRACE(GetParam() + " sgd " + c.what);
    Rng rng(12);
    const Tensor param0 = random_tensor({n}, rng);
    Tensor param = param0.clone();
    Tensor gparam = up(param0);
    const bool momentum = c.step.momentum > 0;
    Tensor buf, gbuf;
    if (momentum) {
      buf = random_tensor({n}, rng, -0.1f, 0.1f);  // a buffer from earlier steps
      gbuf = up(buf);
    }
    for (int step = 0; step < 3; ++step) {
      const Tensor grad = random_tensor({n}, rng);
      cpu().sgd_update(param, grad, buf, c.step, nullptr);
      gpu().sgd_update(gparam, up(grad), gbuf, c.step, nullptr);
      // Compare the change from the start, so a small decay error is not hidden by the parameter size.
      const Tensor got = down(gparam);
      std::vector<double> got_delta(static_cast<size_t>(n)), want_delta(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) {
        got_delta[static_cast<size_t>(i)] = static_cast<double>(got.f32()[i]) - param0.f32()[i];
        want_delta[static_cast<size_t>(i)] = static_cast<double>(param.f32()[i]) - param0.f32()[i];
      }
      EXPECT_LT(testing::relative_l2_error(got_delta, want_delta), 1e-5) << "parameter change after step " << step;
      if (momentum) {
        EXPECT_TRUE(close_l2(down(gbuf), buf, 1e-6)) << "momentum buffer after step " << step;
      }
    }
  }
}

TEST_P(GpuOps, AccumulateTrainStatsMatchesCpu) {
  // More rows than the kernel's threads, with ties, a NaN-first row and out-of-range labels; a
  // loss sequence whose third step is the first non-finite one.
  const int64_t n = 517, k = 10;
  Rng rng(31);
  Tensor logits = random_tensor({n, k}, rng, -2.0f, 2.0f);
  Tensor labels = testing::random_labels(n, static_cast<int>(k), rng);
  logits.f32()[3 * k + 2] = logits.f32()[3 * k + 6] = 9.0f;
  logits.f32()[4 * k] = std::nanf("");
  labels.data<int32_t>()[7] = -3;
  labels.data<int32_t>()[8] = static_cast<int32_t>(k);
  const std::vector<float> losses = {2.5f, 1.25f, std::numeric_limits<float>::infinity(), std::nanf(""), 0.5f};
  Tensor want = Tensor::zeros({4}, DType::f64);
  want.data<double>()[2] = -1;
  Tensor got = gpu().empty({4}, DType::f64);
  gpu().copy(got, want);
  const Tensor glogits = up(logits), glabels = up(labels);
  Tensor loss({1}), gloss = gpu().empty({1});
  for (size_t s = 0; s < losses.size(); ++s) {
    loss.f32()[0] = losses[s];
    gpu().copy(gloss, loss);
    cpu().accumulate_train_stats(loss, logits, labels, static_cast<int64_t>(s + 1), want);
    gpu().accumulate_train_stats(gloss, glogits, glabels, static_cast<int64_t>(s + 1), got);
  }
  const Tensor host = down(got);
  const double* g = host.data<double>();
  const double* w = want.data<double>();
  EXPECT_TRUE(std::isnan(g[0]) && std::isnan(w[0])) << g[0];  // the sum went through inf and NaN
  EXPECT_EQ(g[1], w[1]);
  EXPECT_EQ(g[2], 3.0);
  EXPECT_EQ(w[2], 3.0);
  EXPECT_TRUE(std::isinf(g[3]) && g[3] > 0) << g[3];
}

INSTANTIATE_TEST_SUITE_P(Backends, GpuOps, ::testing::Values("cuda", "cudnn"), testing::backend_test_name);

}  // namespace
}  // namespace convnet
