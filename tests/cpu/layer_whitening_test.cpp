// Conv init: whitening (airbench). The filters are checked through what they do, in float64:
// convolving the images with the first D = k*k*C filters gives outputs whose uncentred covariance
// is diag(l / (l + eps)) (about the identity where l >> eps), the filters are orthogonal with
// norms 1 / sqrt(l + eps) increasing (eigenvalues descending), and filters D.. are the negations.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/whitening.h"
#include "core/layers/conv2d.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::error_of;

// Smooth, channel-correlated images with a non-zero mean: white noise, an anisotropic 3x3 blur
// (stronger along x, so swapped patch axes would show), a random channel mix plus an offset.
// Host f32 [n, h, w, c].
Tensor correlated_images(int64_t n, int64_t h, int64_t w, int64_t c, float amplitude, uint64_t seed) {
  Rng rng(seed);
  std::vector<double> mix(static_cast<size_t>(c * c));
  for (double& m : mix) m = rng.uniform(-1.0f, 1.0f);
  for (int64_t i = 0; i < c; ++i) mix[static_cast<size_t>(i * c + i)] += 1.5;
  const double blur_y[3] = {0.15, 0.7, 0.15}, blur_x[3] = {0.35, 0.4, 0.25};
  Tensor images({n, h, w, c});
  std::vector<double> noise(static_cast<size_t>((h + 2) * (w + 2) * c));
  for (int64_t img = 0; img < n; ++img) {
    for (double& v : noise) v = rng.uniform(-1.0f, 1.0f);
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) {
        std::vector<double> blurred(static_cast<size_t>(c), 0.0);
        for (int64_t dy = 0; dy < 3; ++dy)
          for (int64_t dx = 0; dx < 3; ++dx)
            for (int64_t ch = 0; ch < c; ++ch)
              blurred[static_cast<size_t>(ch)] +=
                  blur_y[dy] * blur_x[dx] * noise[static_cast<size_t>(((y + dy) * (w + 2) + x + dx) * c + ch)];
        for (int64_t o = 0; o < c; ++o) {
          double v = 0.2 * static_cast<double>(o + 1);
          for (int64_t ch = 0; ch < c; ++ch)
            v += mix[static_cast<size_t>(o * c + ch)] * blurred[static_cast<size_t>(ch)];
          images.f32()[((img * h + y) * w + x) * c + o] = static_cast<float>(amplitude * v);
        }
      }
  }
  return images;
}

// Uncentred covariance [count, count] of the first `count` output channels of the valid
// (unpadded, stride 1) convolution of `images` with `weight` [K, k, k, C], dilation d, in float64.
std::vector<double> output_covariance(const Tensor& images, const Tensor& weight, int64_t count, int64_t d) {
  const int64_t n = images.dim(0), h = images.dim(1), w = images.dim(2), c = images.dim(3), k = weight.dim(1);
  const int64_t oh = h - d * (k - 1), ow = w - d * (k - 1);
  std::vector<double> cov(static_cast<size_t>(count * count), 0.0), out(static_cast<size_t>(count));
  for (int64_t img = 0; img < n; ++img)
    for (int64_t y = 0; y < oh; ++y)
      for (int64_t x = 0; x < ow; ++x) {
        for (int64_t j = 0; j < count; ++j) {
          double acc = 0;
          for (int64_t r = 0; r < k; ++r)
            for (int64_t s = 0; s < k; ++s)
              for (int64_t ch = 0; ch < c; ++ch)
                acc += static_cast<double>(weight.f32()[((j * k + r) * k + s) * c + ch]) *
                       images.f32()[((img * h + y + r * d) * w + x + s * d) * c + ch];
          out[static_cast<size_t>(j)] = acc;
        }
        for (int64_t i = 0; i < count; ++i)
          for (int64_t j = 0; j < count; ++j)
            cov[static_cast<size_t>(i * count + j)] += out[static_cast<size_t>(i)] * out[static_cast<size_t>(j)];
      }
  for (double& v : cov) v /= static_cast<double>(n * oh * ow);
  return cov;
}

struct WhiteningCase {
  int64_t n, h, w, c;
  int kernel, dilation;
  float eps, amplitude;
  int near_identity;  // at least this many outputs with l > 100 eps (covariance > 0.99)
};

// Builds a whitening conv for the case, initialises it from the images and checks the filters.
void check_whitening(const WhiteningCase& t) {
  std::unique_ptr<Backend> backend = make_cpu_backend();
  const int64_t dim = t.kernel * t.kernel * t.c;
  Conv2dOptions o;
  o.init = "whitening";
  o.whitening_eps = t.eps;
  Conv2d conv("whiten", static_cast<int>(2 * dim), t.kernel, 1, 0, t.dilation, true, o);
  conv.configure({t.h, t.w, t.c});
  conv.set_backend(*backend);
  conv.allocate_parameters();
  Rng rng(0);
  conv.initialize(rng);
  ASSERT_TRUE(conv.wants_data_init());
  const Tensor images = correlated_images(t.n, t.h, t.w, t.c, t.amplitude, 17);
  conv.initialize_from_data(images);
  const Tensor& weight = conv.parameters()[0]->value;
  ASSERT_EQ(weight.shape(), (Shape{2 * dim, t.kernel, t.kernel, t.c}));
  const float* f = weight.f32();

  // +- pairs, exactly.
  for (int64_t i = 0; i < dim * dim; ++i) ASSERT_EQ(f[dim * dim + i], -f[i]) << i;

  // Orthogonal filters with non-decreasing norms (= eigenvalues descending).
  auto dot = [&](int64_t a, int64_t b) {
    double sum = 0;
    for (int64_t e = 0; e < dim; ++e) sum += static_cast<double>(f[a * dim + e]) * f[b * dim + e];
    return sum;
  };
  std::vector<double> norm2(static_cast<size_t>(dim));
  for (int64_t i = 0; i < dim; ++i) norm2[static_cast<size_t>(i)] = dot(i, i);
  for (int64_t i = 0; i < dim; ++i)
    for (int64_t j = 0; j < i; ++j)
      EXPECT_NEAR(dot(i, j) / std::sqrt(norm2[static_cast<size_t>(i)] * norm2[static_cast<size_t>(j)]), 0.0, 1e-5)
          << "filters " << i << " and " << j;
  for (int64_t j = 1; j < dim; ++j)
    EXPECT_GE(norm2[static_cast<size_t>(j)], norm2[static_cast<size_t>(j - 1)] * (1 - 1e-6)) << j;

  // Whitened outputs: covariance diag(l / (l + eps)) with l + eps = 1 / |f|^2.
  const std::vector<double> cov = output_covariance(images, weight, dim, t.dilation);
  int near_identity = 0;
  for (int64_t i = 0; i < dim; ++i)
    for (int64_t j = 0; j < dim; ++j) {
      const double v = cov[static_cast<size_t>(i * dim + j)];
      if (i != j) {
        EXPECT_NEAR(v, 0.0, 1e-4) << i << ", " << j;
        continue;
      }
      const double expected = 1.0 - t.eps * norm2[static_cast<size_t>(i)];
      EXPECT_NEAR(v, expected, 1e-4) << "output " << i;
      const double lambda = 1.0 / norm2[static_cast<size_t>(i)] - t.eps;
      if (lambda > 100 * t.eps) {
        EXPECT_GT(v, 0.99) << "output " << i;
        ++near_identity;
      }
    }
  EXPECT_GE(near_identity, t.near_identity);

  // The bias is not part of the data init: still zero.
  EXPECT_EQ(conv.parameters()[1]->value.to_vector(), std::vector<float>(static_cast<size_t>(2 * dim), 0.0f));
}

TEST(LayerWhitening, Kernel2RgbAirbenchShape) {
  check_whitening({40, 8, 8, 3, 2, 1, 5e-4f, 3.0f, 8});  // D = 12, 24 filters, 1960 patches
}

TEST(LayerWhitening, LargeEpsShrinksTheWeakDirections) {
  check_whitening({40, 8, 8, 3, 2, 1, 0.05f, 3.0f, 0});
}

TEST(LayerWhitening, Kernel3Dilation2TwoChannels) {
  check_whitening({30, 9, 10, 2, 3, 2, 1e-3f, 4.0f, 16});  // D = 18, 5 x 6 patches per image
}

TEST(LayerWhitening, PatchCovarianceMatchesFloat64) {
  // cpu::patch_covariance against a direct sum over every patch in KRSC order.
  const Tensor images = correlated_images(7, 6, 5, 2, 1.0f, 3);
  const int64_t k = 2, c = 2, dim = k * k * c, oh = 5, ow = 4;
  std::vector<double> expect(static_cast<size_t>(dim * dim), 0.0), v(static_cast<size_t>(dim));
  for (int64_t img = 0; img < 7; ++img)
    for (int64_t y = 0; y < oh; ++y)
      for (int64_t x = 0; x < ow; ++x) {
        for (int64_t r = 0; r < k; ++r)
          for (int64_t s = 0; s < k; ++s)
            for (int64_t ch = 0; ch < c; ++ch)
              v[static_cast<size_t>((r * k + s) * c + ch)] = images.f32()[((img * 6 + y + r) * 5 + x + s) * c + ch];
        for (int64_t i = 0; i < dim; ++i)
          for (int64_t j = 0; j < dim; ++j)
            expect[static_cast<size_t>(i * dim + j)] += v[static_cast<size_t>(i)] * v[static_cast<size_t>(j)];
      }
  for (double& e : expect) e /= 7.0 * oh * ow;
  const std::vector<double> got = cpu::patch_covariance(images, 2, 1);
  ASSERT_EQ(got.size(), expect.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], expect[i], 1e-12 * (1 + std::abs(expect[i]))) << i;

  const cpu::WhiteningFilters white = cpu::whitening_filters(images, 2, 1, 1e-3);
  EXPECT_EQ(white.patches, 7 * oh * ow);
  ASSERT_EQ(white.eigenvalues.size(), static_cast<size_t>(dim));
  EXPECT_TRUE(std::is_sorted(white.eigenvalues.rbegin(), white.eigenvalues.rend()));
  double trace = 0, sum = 0;
  for (int64_t i = 0; i < dim; ++i) trace += expect[static_cast<size_t>(i * dim + i)];
  for (double l : white.eigenvalues) sum += l;
  EXPECT_NEAR(sum, trace, 1e-10 * trace);
}

TEST(LayerWhitening, ConfigErrors) {
  Conv2dOptions o;
  o.init = "whitening";
  EXPECT_NE(error_of<ConfigError>([&] {
              Conv2d("white", 23, 2, 1, 0, 1, true, o).configure({8, 8, 3});
            }).find("white: init whitening needs out_channels = 2 * 2 * 2 * 3 = 24"),
            std::string::npos);
  EXPECT_NE(error_of<ConfigError>([&] {
              Conv2d("white", 18, 3, 1, 1, 1, true, o).configure({2, 2, 1});
            }).find("white: init whitening: input 2x2 holds no unpadded 3x3 patch"),
            std::string::npos);
  EXPECT_EQ(error_of<ConfigError>([&] { Conv2d("white", 24, 2, 1, 0, 1, true, o).configure({8, 8, 3}); }), "");
}

}  // namespace
}  // namespace convnet
