// Test-time augmentation in evaluate(): the view list and its weights, and the loss, accuracy and
// confusion of the averaged logits against a float64 computation that builds the flipped and
// shifted (reflect-padded) images itself and runs the graph on each.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "core/base/error.h"
#include "core/cpu/cpu_backend.h"
#include "core/train/evaluate.h"
#include "models/model_builder.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

constexpr int kH = 5, kW = 6, kC = 3, kClasses = 4;

// Fixed host images and labels, served in batches of `batch` (the last one smaller).
class FixedSource : public BatchSource {
 public:
  FixedSource(Tensor images, Tensor labels, int64_t batch)
      : images_(std::move(images)), labels_(std::move(labels)), batch_(batch) {}
  int64_t num_examples() const override { return images_.dim(0); }
  int64_t batches_per_epoch() const override { return (num_examples() + batch_ - 1) / batch_; }
  Shape example_shape() const override { return {kH, kW, kC}; }
  int num_classes() const override { return kClasses; }
  std::vector<std::string> class_names() const override { return {"a", "b", "c", "d"}; }
  void start_epoch(int64_t /*epoch*/, int64_t first_batch) override { next_ = first_batch; }
  bool next(Batch& batch) override {
    const int64_t first = next_ * batch_;
    if (first >= num_examples()) return false;
    const int64_t n = std::min(batch_, num_examples() - first);
    const int64_t size = kH * kW * kC;
    batch.images = Tensor({n, kH, kW, kC});
    std::copy_n(images_.f32() + first * size, n * size, batch.images.f32());
    batch.labels = Tensor({n}, DType::i32);
    std::copy_n(labels_.data<int32_t>() + first, n, batch.labels.data<int32_t>());
    batch.index = next_++;
    return true;
  }
  std::string fingerprint() const override { return "fixed"; }

 private:
  Tensor images_, labels_;
  int64_t batch_, next_ = 0;
};

LayerSpec spec(const std::string& type) {
  LayerSpec s;
  s.type = type;
  return s;
}

// conv 3->4 (3x3, pad 1) -> relu -> flatten -> linear -> 4 classes: not symmetric under flips.
void build_net(Graph& graph, Backend& backend) {
  ModelConfig m;
  m.name = "sequential";
  LayerSpec conv = spec("conv");
  conv.out_channels = 4;
  conv.padding = 1;
  LayerSpec fc = spec("linear");
  fc.out_features = kClasses;
  m.layers = {conv, spec("relu"), spec("flatten"), fc};
  add_model_layers(m, {kH, kW, kC}, graph);
  Rng rng(21);
  graph.build({kH, kW, kC}, backend, rng);
}

// PyTorch's 'reflect' padding: -1 -> 1, n -> n - 2.
int reflect(int i, int n) {
  if (i < 0) return -i;
  if (i >= n) return 2 * (n - 1) - i;
  return i;
}

// out(y, x) = in(y + dy, x + dx), reflect-padded.
Tensor shifted(const Tensor& in, int dy, int dx) {
  Tensor out(in.shape());
  for (int64_t n = 0; n < in.dim(0); ++n)
    for (int y = 0; y < kH; ++y)
      for (int x = 0; x < kW; ++x)
        for (int c = 0; c < kC; ++c)
          out.f32()[((n * kH + y) * kW + x) * kC + c] =
              in.f32()[((n * kH + reflect(y + dy, kH)) * kW + reflect(x + dx, kW)) * kC + c];
  return out;
}

Tensor mirrored(const Tensor& in) {
  Tensor out(in.shape());
  for (int64_t n = 0; n < in.dim(0); ++n)
    for (int y = 0; y < kH; ++y)
      for (int x = 0; x < kW; ++x)
        for (int c = 0; c < kC; ++c)
          out.f32()[((n * kH + y) * kW + x) * kC + c] = in.f32()[((n * kH + y) * kW + (kW - 1 - x)) * kC + c];
  return out;
}

struct Expected {
  double loss = 0, accuracy = 0;
  std::vector<std::vector<int64_t>> confusion;
};

// The airbench definitions in float64: the weighted logits of the graph on the given views.
Expected expected_result(Graph& graph, const Tensor& images, const Tensor& labels,
                         const std::vector<std::pair<Tensor, double>>& views) {
  const int64_t n = images.dim(0);
  std::vector<double> logits(static_cast<size_t>(n * kClasses), 0.0);
  for (const auto& [view, weight] : views) {
    const std::vector<double> z = testing::to_double(graph.forward(view, Mode::eval));
    for (size_t i = 0; i < z.size(); ++i) logits[i] += weight * z[i];
  }
  Expected e;
  e.confusion.assign(kClasses, std::vector<int64_t>(kClasses, 0));
  for (int64_t i = 0; i < n; ++i) {
    const double* z = &logits[static_cast<size_t>(i * kClasses)];
    const double zmax = *std::max_element(z, z + kClasses);
    double sum = 0;
    for (int k = 0; k < kClasses; ++k) sum += std::exp(z[k] - zmax);
    const int y = labels.data<int32_t>()[i];
    e.loss += (std::log(sum) + zmax - z[y]) / static_cast<double>(n);
    const auto best = static_cast<size_t>(std::max_element(z, z + kClasses) - z);
    e.confusion[static_cast<size_t>(y)][best] += 1;
    e.accuracy += (static_cast<int>(best) == y) / static_cast<double>(n);
  }
  return e;
}

class TtaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    build_net(graph_, *backend_);
    Rng rng(5);
    images_ = testing::random_tensor({kN, kH, kW, kC}, rng);
    labels_ = testing::random_labels(kN, kClasses, rng);
  }
  void check(Tta tta, const std::vector<std::pair<Tensor, double>>& views) {
    const Expected e = expected_result(graph_, images_, labels_, views);
    FixedSource source(images_, labels_, 7);  // batches 7, 7, 6
    const EvalResult r = evaluate(graph_, source, tta);
    EXPECT_EQ(r.num_examples, kN);
    EXPECT_NEAR(r.loss, e.loss, 1e-5 * std::max(1.0, e.loss));
    EXPECT_EQ(r.confusion, e.confusion);
    EXPECT_NEAR(r.accuracy, e.accuracy, 1e-12);
    results_.push_back(r.loss);
  }
  static constexpr int64_t kN = 20;
  std::unique_ptr<Backend> backend_ = make_cpu_backend();
  Graph graph_;
  Tensor images_, labels_;
  std::vector<double> results_;
};

TEST_F(TtaTest, NoneFlipAndFlipTranslateAverageTheirViewsLogits) {
  const Tensor& x = images_;
  check(Tta::none, {{x, 1.0}});
  check(Tta::flip, {{x, 0.5}, {mirrored(x), 0.5}});
  // 0.5 * m(x) + 0.5 * mean(m(shift(-1, -1)), m(shift(+1, +1))), m(v) = (v + mirror(v)) / 2;
  // shift(-1, -1): output (y, x) reads input (y - 1, x - 1).
  const Tensor up_left = shifted(x, -1, -1), down_right = shifted(x, 1, 1);
  check(Tta::flip_translate, {{x, 0.25},
                              {mirrored(x), 0.25},
                              {up_left, 0.125},
                              {mirrored(up_left), 0.125},
                              {down_right, 0.125},
                              {mirrored(down_right), 0.125}});
  // The three modes really differ on this asymmetric net.
  ASSERT_EQ(results_.size(), 3u);
  EXPECT_GT(std::abs(results_[0] - results_[1]), 1e-4);
  EXPECT_GT(std::abs(results_[1] - results_[2]), 1e-4);
}

TEST(Tta, ViewsAndWeights) {
  EXPECT_EQ(tta_views(Tta::none).size(), 1u);
  for (Tta t : {Tta::none, Tta::flip, Tta::flip_translate}) {
    const std::vector<TtaView> v = tta_views(t);
    double sum = 0;
    for (const TtaView& view : v) sum += view.weight;
    EXPECT_DOUBLE_EQ(sum, 1.0) << tta_name(t);
    EXPECT_FALSE(v[0].view.flip || v[0].view.shift_x || v[0].view.shift_y) << "identity first";
    EXPECT_EQ(parse_tta(tta_name(t)), t);
  }
  const std::vector<TtaView> ft = tta_views(Tta::flip_translate);
  ASSERT_EQ(ft.size(), 6u);
  for (const TtaView& v : ft) {
    EXPECT_EQ(v.view.shift_x, v.view.shift_y);
    EXPECT_EQ(v.weight, v.view.shift_x == 0 ? 0.25 : 0.125);
    EXPECT_EQ(v.view.pad_mode, PadMode::reflect);
  }
  const std::string err = testing::error_of<ConfigError>([] { parse_tta("mirror", "--tta"); });
  EXPECT_NE(err.find("--tta"), std::string::npos) << err;
  EXPECT_NE(err.find("mirror"), std::string::npos) << err;
}

}  // namespace
}  // namespace convnet
