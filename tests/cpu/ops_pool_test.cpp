// Max and average pooling on the cpu backend against hand values and the float64 naive reference.
#include <gtest/gtest.h>

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

Tensor poisoned_indices(const Shape& shape) {
  Tensor t(shape, DType::i32);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<int32_t>()[i] = -7;
  return t;
}
std::vector<int32_t> indices(const Tensor& t) {
  return {t.data<int32_t>(), t.data<int32_t>() + t.numel()};
}

Pool2dParams pool(int kh, int kw, int sh, int sw, int ph, int pw) {
  Pool2dParams p;
  p.kernel_h = kh;
  p.kernel_w = kw;
  p.stride_h = sh;
  p.stride_w = sw;
  p.pad_h = ph;
  p.pad_w = pw;
  return p;
}

Shape pooled(const Shape& x, const Pool2dParams& p) {
  return {x[0], conv_output_size(x[1], p.kernel_h, p.stride_h, p.pad_h),
          conv_output_size(x[2], p.kernel_w, p.stride_w, p.pad_w), x[3]};
}

TEST(OpsPool, HandComputedMax2x2) {
  auto be = make_cpu_backend();
  const Tensor x = Tensor::from_vector({1, 4, 4, 1}, {1, 5, 2, 0,    //
                                                      3, 4, 8, 8,    //
                                                      -1, -2, 0, 6,  //
                                                      -3, -4, 7, 1});
  const Pool2dParams p = pool(2, 2, 2, 2, 0, 0);
  Tensor y = poisoned({1, 2, 2, 1});
  Tensor argmax = poisoned_indices({1, 2, 2, 1});
  be->max_pool2d_forward(x, y, argmax, p);
  EXPECT_EQ(y.to_vector(), (std::vector<float>{5, 8, -1, 7}));
  EXPECT_EQ(indices(argmax), (std::vector<int32_t>{1, 2, 0, 2}));  // the 8,8 tie picks the first
  const naive::MaxPoolResult ref = naive::max_pool2d_forward(x, p);
  EXPECT_EQ(ref.argmax, indices(argmax));
  const Tensor dy = Tensor::from_vector({1, 2, 2, 1}, {1, 2, 3, 4});
  Tensor dx = poisoned({1, 4, 4, 1});
  be->max_pool2d_backward(dy, argmax, dx, p);
  EXPECT_EQ(dx.to_vector(), (std::vector<float>{0, 1, 0, 0,  //
                                                0, 0, 2, 0,  //
                                                3, 0, 0, 0,  //
                                                0, 0, 4, 0}));
}

// A constant negative input: every window ties, so the first real element wins and padding (zero)
// never does; kernel 3 stride 2 overlaps, so the shared centre column/row gathers from two windows.
TEST(OpsPool, TiesPickFirstRealElementAndPaddingNeverWins) {
  auto be = make_cpu_backend();
  const Tensor x = Tensor::full({1, 3, 3, 1}, -1.0f);
  const Pool2dParams p = pool(3, 3, 2, 2, 1, 1);
  Tensor y = poisoned({1, 2, 2, 1});
  Tensor argmax = poisoned_indices({1, 2, 2, 1});
  be->max_pool2d_forward(x, y, argmax, p);
  EXPECT_EQ(y.to_vector(), (std::vector<float>{-1, -1, -1, -1}));
  EXPECT_EQ(indices(argmax), (std::vector<int32_t>{4, 3, 1, 0}));
  const Tensor dy = Tensor::from_vector({1, 2, 2, 1}, {1, 2, 3, 4});
  Tensor dx = poisoned({1, 3, 3, 1});
  be->max_pool2d_backward(dy, argmax, dx, p);
  EXPECT_EQ(dx.to_vector(), (std::vector<float>{1, 2, 0, 3, 4, 0, 0, 0, 0}));
}

TEST(OpsPool, HandComputedAvgCountsPadding) {
  auto be = make_cpu_backend();
  const Tensor x = Tensor::from_vector({1, 2, 2, 1}, {1, 2, 3, 4});
  const Pool2dParams p = pool(2, 2, 1, 1, 1, 1);
  Tensor y = poisoned({1, 3, 3, 1});
  be->avg_pool2d_forward(x, y, p);
  EXPECT_EQ(y.to_vector(), (std::vector<float>{0.25f, 0.75f, 0.5f, 1.0f, 2.5f, 1.5f, 0.75f, 1.75f, 1.0f}));
  EXPECT_TRUE(close_l2(y, naive::avg_pool2d_forward(x, p), 1e-12));
  const Tensor dy = Tensor::from_vector({1, 3, 3, 1}, {1, 2, 3, 4, 5, 6, 7, 8, 9});
  Tensor dx = poisoned({1, 2, 2, 1});
  be->avg_pool2d_backward(dy, dx, p);
  EXPECT_EQ(dx.to_vector(), (std::vector<float>{3, 4, 6, 7}));
  EXPECT_TRUE(close_l2(dx, naive::avg_pool2d_backward(dy, x.shape(), p), 1e-12));
}

// Non-overlapping, overlapping, padded and rectangular windows.
const std::vector<Pool2dParams>& sweep() {
  static const std::vector<Pool2dParams> params = {
      pool(2, 2, 2, 2, 0, 0), pool(3, 3, 2, 2, 1, 1), pool(3, 3, 1, 1, 1, 1),
      pool(2, 3, 1, 2, 1, 0), pool(3, 2, 3, 1, 0, 1), pool(1, 1, 2, 2, 0, 0),
  };
  return params;
}
const std::vector<Shape>& shapes() {
  static const std::vector<Shape> s = {{2, 7, 6, 5}, {1, 8, 8, 16}, {3, 5, 9, 3}};
  return s;
}

std::string describe(const Shape& xs, const Pool2dParams& p) {
  return fmt::format("x {} kernel {}x{} stride {}x{} pad {}x{}", shape_str(xs), p.kernel_h, p.kernel_w, p.stride_h,
                     p.stride_w, p.pad_h, p.pad_w);
}

// Max pooling of x forward and backward (with a random dy) against the naive reference: y exactly,
// the argmax, and dx.
void expect_max_pool_matches_naive(Backend& be, const Tensor& x, const Pool2dParams& p, Rng& rng) {
  SCOPED_TRACE(describe(x.shape(), p));
  const Shape ys = pooled(x.shape(), p);
  Tensor y = poisoned(ys), dx = poisoned(x.shape());
  Tensor argmax = poisoned_indices(ys);
  be.max_pool2d_forward(x, y, argmax, p);
  const naive::MaxPoolResult ref = naive::max_pool2d_forward(x, p);
  EXPECT_TRUE(close_l2(y, ref.y, 0.0));
  EXPECT_EQ(indices(argmax), ref.argmax);
  const Tensor dy = random_tensor(ys, rng);
  be.max_pool2d_backward(dy, argmax, dx, p);
  EXPECT_TRUE(close_l2(dx, naive::max_pool2d_backward(x, dy, p), kTol));
}

TEST(OpsPool, MaxMatchesNaive) {
  auto be = make_cpu_backend();
  Rng rng(21);
  for (const Shape& xs : shapes())
    for (const Pool2dParams& p : sweep()) expect_max_pool_matches_naive(*be, random_tensor(xs, rng), p, rng);
}

// Inputs drawn from three values: ties everywhere, including across overlapping windows.
TEST(OpsPool, MaxWithManyTiesMatchesNaive) {
  auto be = make_cpu_backend();
  Rng rng(22);
  for (const Pool2dParams& p : sweep()) {
    Tensor x({2, 9, 9, 4});
    for (float& v : x.span()) v = static_cast<float>(rng.below(3)) - 1.5f;
    expect_max_pool_matches_naive(*be, x, p, rng);
  }
}

TEST(OpsPool, AvgMatchesNaive) {
  auto be = make_cpu_backend();
  Rng rng(23);
  for (const Shape& xs : shapes())
    for (const Pool2dParams& p : sweep()) {
      SCOPED_TRACE(describe(xs, p));
      const Tensor x = random_tensor(xs, rng);
      const Shape ys = pooled(xs, p);
      Tensor y = poisoned(ys), dx = poisoned(xs);
      be->avg_pool2d_forward(x, y, p);
      EXPECT_TRUE(close_l2(y, naive::avg_pool2d_forward(x, p), kTol));
      const Tensor dy = random_tensor(ys, rng);
      be->avg_pool2d_backward(dy, dx, p);
      EXPECT_TRUE(close_l2(dx, naive::avg_pool2d_backward(dy, xs, p), kTol));
    }
}

TEST(OpsPool, RejectsBadParamsAndShapes) {
  auto be = make_cpu_backend();
  const Tensor x = Tensor::full({1, 4, 4, 2}, 1.0f);
  Tensor y({1, 2, 2, 2});
  Tensor argmax({1, 2, 2, 2}, DType::i32);
  EXPECT_THROW(be->max_pool2d_forward(x, y, argmax, pool(2, 2, 2, 2, 2, 2)), Error);  // pad >= kernel
  Tensor argmax_f32({1, 2, 2, 2});
  EXPECT_THROW(be->max_pool2d_forward(x, y, argmax_f32, pool(2, 2, 2, 2, 0, 0)), Error);
  Tensor y_wrong({1, 3, 3, 2});
  EXPECT_THROW(be->avg_pool2d_forward(x, y_wrong, pool(2, 2, 2, 2, 0, 0)), Error);
  const Tensor tiny = Tensor::full({1, 1, 1, 2}, 1.0f);
  EXPECT_THROW(be->avg_pool2d_forward(tiny, y, pool(3, 3, 1, 1, 0, 0)), Error);
}

}  // namespace
}  // namespace convnet
