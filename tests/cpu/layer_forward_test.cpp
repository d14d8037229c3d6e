// Forward values of the layers against naive float64 references written here from the
// definitions (PyTorch semantics), so a forward and backward that agree but are both wrong fail.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/layers/activation.h"
#include "core/layers/conv2d.h"
#include "core/layers/flatten.h"
#include "core/layers/linear.h"
#include "core/layers/pool2d.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::close_l2;
using testing::random_tensor;

class LayerForward : public ::testing::Test {
 protected:
  // Builds `layer` for x's per-example shape, randomizes its parameters, runs a poisoned forward.
  Tensor run(Layer& layer, const Tensor& x, Mode mode = Mode::eval) {
    Shape example(x.shape().begin() + 1, x.shape().end());
    layer.configure(example);
    layer.set_backend(*backend_);
    layer.allocate_parameters();
    layer.initialize(rng_);
    for (Parameter* p : layer.parameters())
      for (float& v : p->value.span()) v = rng_.uniform(-1.0f, 1.0f);
    Shape out{x.dim(0)};
    out.insert(out.end(), layer.output_shape().begin(), layer.output_shape().end());
    Tensor y = backend_->empty(out);
    y.fill(std::numeric_limits<float>::quiet_NaN());
    layer.forward(x, y, mode);
    return y;
  }
  std::unique_ptr<Backend> backend_ = make_cpu_backend();
  Rng rng_{21};
};

// x [N,H,W,C] NHWC, w [K,R,S,C]
std::vector<double> naive_conv(const Tensor& x, const Tensor& w, const Tensor* b, int stride, int pad, int dil) {
  const int64_t n = x.dim(0), h = x.dim(1), wd = x.dim(2), c = x.dim(3);
  const int64_t k = w.dim(0), r = w.dim(1), s = w.dim(2);
  const int64_t p = conv_output_size(h, r, stride, pad, dil), q = conv_output_size(wd, s, stride, pad, dil);
  std::vector<double> y;
  for (int64_t in = 0; in < n; ++in)
    for (int64_t ip = 0; ip < p; ++ip)
      for (int64_t iq = 0; iq < q; ++iq)
        for (int64_t ik = 0; ik < k; ++ik) {
          double acc = b ? b->f32()[ik] : 0.0;
          for (int64_t ir = 0; ir < r; ++ir)
            for (int64_t is = 0; is < s; ++is) {
              const int64_t ih = ip * stride - pad + ir * dil, iw = iq * stride - pad + is * dil;
              if (ih < 0 || ih >= h || iw < 0 || iw >= wd) continue;
              for (int64_t ic = 0; ic < c; ++ic)
                acc += static_cast<double>(x.f32()[((in * h + ih) * wd + iw) * c + ic]) *
                       w.f32()[((ik * r + ir) * s + is) * c + ic];
            }
          y.push_back(acc);
        }
  return y;
}

// max (is_max) or average with zero padding counted (PyTorch count_include_pad=True).
std::vector<double> naive_pool(const Tensor& x, int kernel, int stride, int pad, bool is_max) {
  const int64_t n = x.dim(0), h = x.dim(1), wd = x.dim(2), c = x.dim(3);
  const int64_t p = conv_output_size(h, kernel, stride, pad), q = conv_output_size(wd, kernel, stride, pad);
  std::vector<double> y;
  for (int64_t in = 0; in < n; ++in)
    for (int64_t ip = 0; ip < p; ++ip)
      for (int64_t iq = 0; iq < q; ++iq)
        for (int64_t ic = 0; ic < c; ++ic) {
          double acc = is_max ? -std::numeric_limits<double>::infinity() : 0.0;
          for (int64_t ir = 0; ir < kernel; ++ir)
            for (int64_t is = 0; is < kernel; ++is) {
              const int64_t ih = ip * stride - pad + ir, iw = iq * stride - pad + is;
              if (ih < 0 || ih >= h || iw < 0 || iw >= wd) continue;
              const double v = x.f32()[((in * h + ih) * wd + iw) * c + ic];
              acc = is_max ? std::max(acc, v) : acc + v;
            }
          y.push_back(is_max ? acc : acc / (kernel * kernel));
        }
  return y;
}

TEST_F(LayerForward, ConvPaddedStridedDilatedWithBias) {
  Tensor x = random_tensor({2, 7, 6, 3}, rng_);
  Conv2d conv("conv", 4, 3, 2, 2, 2);
  const Tensor y = run(conv, x);
  EXPECT_TRUE(close_l2(y, naive_conv(x, conv.parameters()[0]->value, &conv.parameters()[1]->value, 2, 2, 2), 1e-5));
}

TEST_F(LayerForward, ConvWithoutBias) {
  Tensor x = random_tensor({3, 5, 5, 2}, rng_);
  Conv2d conv("conv", 5, 3, 1, 1, 1, false);
  const Tensor y = run(conv, x);
  EXPECT_TRUE(close_l2(y, naive_conv(x, conv.parameters()[0]->value, nullptr, 1, 1, 1), 1e-5));
}

TEST_F(LayerForward, MaxAndAvgPoolPadded) {
  Tensor x = random_tensor({2, 5, 6, 3}, rng_, -2.0f, -1.0f);  // all negative: padding must not win
  MaxPool2d maxpool("maxpool", 3, 2, 1);
  EXPECT_TRUE(close_l2(run(maxpool, x), naive_pool(x, 3, 2, 1, true), 1e-6));
  AvgPool2d avgpool("avgpool", 3, 2, 1);
  EXPECT_TRUE(close_l2(run(avgpool, x), naive_pool(x, 3, 2, 1, false), 1e-6));
}

TEST_F(LayerForward, GlobalAvgPoolAveragesEveryPixel) {
  Tensor x = random_tensor({2, 3, 4, 5}, rng_);
  GlobalAvgPool gap("gap");
  const Tensor y = run(gap, x);
  ASSERT_EQ(y.shape(), (Shape{2, 5}));
  std::vector<double> expect(10, 0.0);
  for (int64_t i = 0; i < x.numel(); ++i) expect[static_cast<size_t>((i / 60) * 5 + i % 5)] += x.f32()[i] / 12.0;
  EXPECT_TRUE(close_l2(y, expect, 1e-6));
}

TEST_F(LayerForward, LinearFlattenAndActivations) {
  Tensor x = random_tensor({3, 2, 2, 2}, rng_, -3.0f, 3.0f);
  Flatten flat("flat");
  const Tensor f = run(flat, x);
  ASSERT_EQ(f.shape(), (Shape{3, 8}));
  EXPECT_EQ(f.to_vector(), x.to_vector());  // NHWC memory order

  Linear fc("fc", 4);
  const Tensor y = run(fc, f);
  const Tensor& w = fc.parameters()[0]->value;
  const Tensor& b = fc.parameters()[1]->value;
  std::vector<double> expect;
  for (int64_t n = 0; n < 3; ++n)
    for (int64_t o = 0; o < 4; ++o) {
      double acc = b.f32()[o];
      for (int64_t i = 0; i < 8; ++i) acc += static_cast<double>(f.f32()[n * 8 + i]) * w.f32()[o * 8 + i];
      expect.push_back(acc);
    }
  EXPECT_TRUE(close_l2(y, expect, 1e-6));

  ReLU relu("relu");
  GELU gelu("gelu");
  const Tensor r = run(relu, x);
  const Tensor g = run(gelu, x);
  std::vector<double> expect_relu, expect_gelu;
  for (float v : x.span()) {
    expect_relu.push_back(std::max(0.0, static_cast<double>(v)));
    expect_gelu.push_back(0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0))));
  }
  EXPECT_TRUE(close_l2(r, expect_relu, 1e-7));
  EXPECT_TRUE(close_l2(g, expect_gelu, 1e-5));
}

}  // namespace
}  // namespace convnet
