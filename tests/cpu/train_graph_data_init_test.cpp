// Graph::initialize_from_data: layers that want data-dependent init get their input for every
// image, computed with the earlier layers already initialised (a second whitening conv after a
// ReLU sees the post-ReLU output of the whitened first conv), in chunks, without disturbing the
// graph's training forward.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/whitening.h"
#include "core/layers/activation.h"
#include "core/layers/conv2d.h"
#include "core/layers/flatten.h"
#include "core/layers/linear.h"
#include "core/train/graph.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::random_tensor;

// Identity layer that wants data init and records what it was given.
class Recorder final : public Layer {
 public:
  explicit Recorder(std::string name) : Layer(std::move(name)) {}
  std::string type() const override { return "recorder"; }
  std::string description() const override { return "recorder"; }
  Shape configure(const Shape& in) override { return record_shapes(in, in); }
  void forward(const Tensor& x, Tensor& y, Mode /*mode*/) override { backend().copy(y, x); }
  void backward(const Tensor&, const Tensor&, const Tensor& dy, Tensor* dx) override {
    if (dx) backend().copy(*dx, dy);
  }
  bool wants_data_init() const override { return true; }
  void initialize_from_data(const Tensor& inputs) override {
    ASSERT_TRUE(inputs.is_cpu());
    seen.push_back(inputs.clone());
  }
  std::vector<Tensor> seen;
};

Conv2dOptions whitening() {
  Conv2dOptions o;
  o.init = "whitening";
  return o;
}

// Uncentred covariance [D, D] of x [P, D] (row-major) after y = x W^T, W [D, D] row-major.
std::vector<double> whitened_covariance(const std::vector<double>& x, int64_t p, const float* w, int64_t d) {
  std::vector<double> cov(static_cast<size_t>(d * d), 0.0), y(static_cast<size_t>(d));
  for (int64_t row = 0; row < p; ++row) {
    for (int64_t j = 0; j < d; ++j) {
      double acc = 0;
      for (int64_t e = 0; e < d; ++e) acc += static_cast<double>(w[j * d + e]) * x[static_cast<size_t>(row * d + e)];
      y[static_cast<size_t>(j)] = acc;
    }
    for (int64_t i = 0; i < d; ++i)
      for (int64_t j = 0; j < d; ++j)
        cov[static_cast<size_t>(i * d + j)] += y[static_cast<size_t>(i)] * y[static_cast<size_t>(j)];
  }
  for (double& v : cov) v /= static_cast<double>(p);
  return cov;
}

// max |cov - diag(1 - eps |w_j|^2)|: 0 when W whitens x (see cpu/whitening.h).
double whitening_error(const std::vector<double>& x, int64_t p, const float* w, int64_t d, double eps) {
  const std::vector<double> cov = whitened_covariance(x, p, w, d);
  double worst = 0;
  for (int64_t i = 0; i < d; ++i)
    for (int64_t j = 0; j < d; ++j) {
      double expected = 0;
      if (i == j) {
        double n2 = 0;
        for (int64_t e = 0; e < d; ++e) n2 += static_cast<double>(w[i * d + e]) * w[i * d + e];
        expected = 1 - eps * n2;
      }
      worst = std::max(worst, std::abs(cov[static_cast<size_t>(i * d + j)] - expected));
    }
  return worst;
}

class GraphDataInit : public ::testing::Test {
 protected:
  // white1: conv 2x2 3->24 whitening -> relu -> recorder -> white2: conv 1x1 24->48 whitening ->
  // relu -> flatten -> fc 10, on 6x6x3 images.
  void build() {
    graph_.add(std::make_unique<Conv2d>("white1", 24, 2, 1, 0, 1, true, whitening()), "net.0");
    graph_.add(std::make_unique<ReLU>("relu1"), "net.1");
    auto recorder = std::make_unique<Recorder>("rec");
    recorder_ = recorder.get();
    graph_.add(std::move(recorder), "net.2");
    graph_.add(std::make_unique<Conv2d>("white2", 48, 1, 1, 0, 1, true, whitening()), "net.3");
    graph_.add(std::make_unique<ReLU>("relu2"), "net.4");
    graph_.add(std::make_unique<Flatten>("flat"), "net.5");
    graph_.add(std::make_unique<Linear>("fc", 10), "net.6");
    Rng rng(1);
    graph_.build({6, 6, 3}, *backend_, rng);
  }
  std::unique_ptr<Backend> backend_ = make_cpu_backend();
  Graph graph_;
  Recorder* recorder_ = nullptr;
};

TEST_F(GraphDataInit, LaterLayersSeeTheInitialisedEarlierOnes) {
  build();
  ASSERT_TRUE(graph_.needs_data_init());
  Rng rng(4);
  const int64_t n = 300;  // more than one chunk
  Tensor images = random_tensor({n, 6, 6, 3}, rng);
  // Correlated channels with a non-zero mean.
  for (int64_t i = 0; i < n * 36; ++i) {
    float* px = images.f32() + i * 3;
    px[1] = 0.8f * px[0] + 0.2f * px[1] + 0.1f;
    px[2] = 0.5f * px[2] - 0.3f * px[0];
  }
  const Tensor pytorch_w1 = graph_.layer(0).parameters()[0]->value.clone();

  // A training-size forward first, to see it is unaffected by the data init.
  Tensor batch = random_tensor({4, 6, 6, 3}, rng);
  graph_.forward(batch, Mode::train);

  graph_.initialize_from_data(images);

  // white1 got the images themselves: its filters are exactly those of the images.
  const cpu::WhiteningFilters direct = cpu::whitening_filters(images, 2, 1, 5e-4f);  // eps as the layer holds it
  EXPECT_EQ(graph_.layer(0).parameters()[0]->value.to_vector(), direct.filters.to_vector());

  // The recorder got relu(conv(images, whitened W1)) for all N images, computed here in float64.
  ASSERT_EQ(recorder_->seen.size(), 1u);
  const Tensor& seen = recorder_->seen[0];
  ASSERT_EQ(seen.shape(), (Shape{n, 5, 5, 24}));
  auto relu_conv = [&](const Tensor& w1) {
    std::vector<double> out(static_cast<size_t>(n * 25 * 24));
    for (int64_t img = 0; img < n; ++img)
      for (int64_t y = 0; y < 5; ++y)
        for (int64_t x = 0; x < 5; ++x)
          for (int64_t k = 0; k < 24; ++k) {
            double acc = 0;
            for (int64_t r = 0; r < 2; ++r)
              for (int64_t s = 0; s < 2; ++s)
                for (int64_t c = 0; c < 3; ++c)
                  acc += static_cast<double>(w1.f32()[((k * 2 + r) * 2 + s) * 3 + c]) *
                         images.f32()[((img * 6 + y + r) * 6 + x + s) * 3 + c];
            out[static_cast<size_t>(((img * 5 + y) * 5 + x) * 24 + k)] = std::max(acc, 0.0);
          }
    return out;
  };
  const std::vector<double> post_relu = relu_conv(graph_.layer(0).parameters()[0]->value);
  EXPECT_TRUE(testing::close_l2(seen, post_relu, 1e-5));

  // white2 (1x1, so its patches are the pixels) whitens exactly that input, and not what it would
  // have seen before the ReLU or with white1 still at its pytorch init.
  const float* w2 = graph_.layer(3).parameters()[0]->value.f32();
  const int64_t pixels = n * 25;
  EXPECT_LT(whitening_error(post_relu, pixels, w2, 24, 5e-4f), 1e-5);
  EXPECT_GT(whitening_error(relu_conv(pytorch_w1), pixels, w2, 24, 5e-4f), 0.1);
  std::vector<double> pre_relu = post_relu;
  // Pre-ReLU: channel 12 + k is the negation of channel k, so x = relu(z) - relu(-z) per pair.
  for (int64_t p = 0; p < pixels; ++p)
    for (int64_t k = 0; k < 12; ++k) {
      const size_t a = static_cast<size_t>(p * 24 + k), b = a + 12;
      const double z = post_relu[a] - post_relu[b];
      pre_relu[a] = z;
      pre_relu[b] = -z;
    }
  EXPECT_GT(whitening_error(pre_relu, pixels, w2, 24, 5e-4f), 0.1);

  // The training-size forward still works after the chunked data-init passes, deterministically.
  const Tensor& y1 = graph_.forward(batch, Mode::eval);
  EXPECT_EQ(y1.shape(), (Shape{4, 10}));
  const std::vector<float> first = y1.to_vector();
  EXPECT_EQ(graph_.forward(batch, Mode::eval).to_vector(), first);
  for (float v : first) EXPECT_TRUE(std::isfinite(v));
}

TEST_F(GraphDataInit, NoOpWithoutDataInitLayersAndBadImagesAreErrors) {
  Graph plain;
  plain.add(std::make_unique<Conv2d>("conv", 4, 3), "features.0");
  Rng rng(2);
  plain.build({5, 5, 3}, *backend_, rng);
  EXPECT_FALSE(plain.needs_data_init());
  const std::vector<float> before = plain.layer(0).parameters()[0]->value.to_vector();
  plain.initialize_from_data(random_tensor({3, 5, 5, 3}, rng));
  EXPECT_EQ(plain.layer(0).parameters()[0]->value.to_vector(), before);

  build();
  const std::string message = testing::error_of<Error>([&] {
    graph_.initialize_from_data(random_tensor({3, 5, 5, 3}, rng));
  });
  EXPECT_NE(message.find("data-dependent init: images [3, 5, 5, 3]"), std::string::npos) << message;
  EXPECT_NE(message.find("[N > 0] + [6, 6, 3]"), std::string::npos) << message;
  EXPECT_TRUE(recorder_->seen.empty());
}

}  // namespace
}  // namespace convnet
