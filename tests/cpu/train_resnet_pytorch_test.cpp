// ResNet-20 checkpoints are akamaster/pytorch_resnet_cifar10 state dicts, proven without torch: a
// net trained a few steps on the cpu backend (so the BN running statistics are not their initial
// values) is saved, and the safetensors file alone, read the way PyTorch reads it, recomputes the
// net's eval logits. The forward below is written independently of convnet's layers, from the
// PyTorch module: NCHW activations, [O, I, kh, kw] conv weights, BatchNorm2d in eval mode with
// the running statistics, the option A shortcut F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4,
// planes // 4)), F.avg_pool2d over the whole map, and nn.Linear's [out, in] weight; in float64.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/io/safetensors.h"
#include "core/optim/sgd.h"
#include "core/train/checkpoint.h"
#include "core/train/train_step.h"
#include "models/model_builder.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::TempDir;

// akamaster's ResNet(BasicBlock, [n, n, n]).state_dict().keys(), in order: each module's
// parameters, then its buffers, then its children in the order __init__ assigns them. The option A
// shortcut is a LambdaLayer (no state) and nn.Sequential() for identity shortcuts is empty.
std::vector<std::string> akamaster_state_dict_keys(int n) {
  std::vector<std::string> keys;
  const auto conv = [&](const std::string& m) { keys.push_back(m + ".weight"); };
  const auto bn = [&](const std::string& m) {
    for (const char* k : {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"})
      keys.push_back(m + "." + k);
  };
  conv("conv1");
  bn("bn1");
  for (int stage = 1; stage <= 3; ++stage)
    for (int b = 0; b < n; ++b) {
      const std::string block = "layer" + std::to_string(stage) + "." + std::to_string(b);
      conv(block + ".conv1");
      bn(block + ".bn1");
      conv(block + ".conv2");
      bn(block + ".bn2");
    }
  keys.push_back("linear.weight");
  keys.push_back("linear.bias");
  return keys;
}

// One image's activations, NCHW without the N.
struct Map {
  int64_t c = 0, h = 0, w = 0;
  std::vector<double> v;
  Map(int64_t c_, int64_t h_, int64_t w_) : c(c_), h(h_), w(w_), v(static_cast<size_t>(c_ * h_ * w_), 0.0) {}
  double& at(int64_t k, int64_t i, int64_t j) { return v[static_cast<size_t>((k * h + i) * w + j)]; }
  double at(int64_t k, int64_t i, int64_t j) const { return v[static_cast<size_t>((k * h + i) * w + j)]; }
};

class PyTorchResNet20 {
 public:
  // pad_offset: where the shortcut's input channels go among the zero ones; planes / 4 is
  // akamaster's. Any other value is a deliberately wrong model (the test's sensitivity check).
  PyTorchResNet20(const SafetensorsFile& f, int n, int pad_offset = -1) : f_(f), n_(n), pad_offset_(pad_offset) {}

  // x: the NHWC batch the graph saw; returns [N, 10] logits.
  std::vector<double> forward(const Tensor& x) const {
    const int64_t batch = x.dim(0), hh = x.dim(1), ww = x.dim(2), cc = x.dim(3);
    std::vector<double> logits;
    for (int64_t n = 0; n < batch; ++n) {
      Map img(cc, hh, ww);  // PyTorch's NCHW input
      for (int64_t k = 0; k < cc; ++k)
        for (int64_t i = 0; i < hh; ++i)
          for (int64_t j = 0; j < ww; ++j) img.at(k, i, j) = x.f32()[((n * hh + i) * ww + j) * cc + k];
      for (double v : image_logits(img)) logits.push_back(v);
    }
    return logits;
  }

 private:
  const Tensor& get(const std::string& name) const {
    const Tensor* t = f_.find(name);
    if (t == nullptr) throw Error("checkpoint has no " + name);
    return *t;
  }

  // nn.Conv2d(bias=False), weight [O, I, kh, kw].
  Map conv(const Map& x, const std::string& module, int stride) const {
    const Tensor& wt = get(module + ".weight");
    const int64_t o = wt.dim(0), in = wt.dim(1), kh = wt.dim(2), kw = wt.dim(3);
    EXPECT_EQ(in, x.c) << module;
    const int64_t ph = kh / 2, pw = kw / 2;
    Map y(o, (x.h + 2 * ph - kh) / stride + 1, (x.w + 2 * pw - kw) / stride + 1);
    for (int64_t k = 0; k < o; ++k)
      for (int64_t i = 0; i < y.h; ++i)
        for (int64_t j = 0; j < y.w; ++j) {
          double s = 0;
          for (int64_t c = 0; c < in; ++c)
            for (int64_t r = 0; r < kh; ++r)
              for (int64_t q = 0; q < kw; ++q) {
                const int64_t ih = i * stride - ph + r, iw = j * stride - pw + q;
                if (ih < 0 || ih >= x.h || iw < 0 || iw >= x.w) continue;
                s += static_cast<double>(wt.f32()[((k * in + c) * kh + r) * kw + q]) * x.at(c, ih, iw);
              }
          y.at(k, i, j) = s;
        }
    return y;
  }

  // nn.BatchNorm2d in eval mode: (x - running_mean) / sqrt(running_var + eps) * weight + bias.
  void batch_norm(Map& x, const std::string& module) const {
    const float* g = get(module + ".weight").f32();
    const float* b = get(module + ".bias").f32();
    const float* mean = get(module + ".running_mean").f32();
    const float* var = get(module + ".running_var").f32();
    for (int64_t k = 0; k < x.c; ++k) {
      const double scale = g[k] / std::sqrt(static_cast<double>(var[k]) + 1e-5);
      for (int64_t i = 0; i < x.h; ++i)
        for (int64_t j = 0; j < x.w; ++j) x.at(k, i, j) = (x.at(k, i, j) - mean[k]) * scale + b[k];
    }
  }

  static void relu(Map& x) {
    for (double& v : x.v) v = std::max(v, 0.0);
  }

  // F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4), "constant", 0)
  Map option_a(const Map& x, int64_t planes) const {
    const int64_t before = pad_offset_ >= 0 ? pad_offset_ : planes / 4;
    Map y(x.c + 2 * (planes / 4), (x.h + 1) / 2, (x.w + 1) / 2);
    for (int64_t k = 0; k < x.c; ++k)
      for (int64_t i = 0; i < y.h; ++i)
        for (int64_t j = 0; j < y.w; ++j) y.at(before + k, i, j) = x.at(k, 2 * i, 2 * j);
    return y;
  }

  std::vector<double> image_logits(const Map& img) const {
    Map x = conv(img, "conv1", 1);
    batch_norm(x, "bn1");
    relu(x);
    int64_t in_planes = 16;
    const int64_t planes_of[] = {16, 32, 64}, stride_of[] = {1, 2, 2};
    for (int stage = 0; stage < 3; ++stage)
      for (int b = 0; b < n_; ++b) {
        const std::string m = "layer" + std::to_string(stage + 1) + "." + std::to_string(b);
        const int64_t planes = planes_of[stage];
        const int stride = b == 0 ? static_cast<int>(stride_of[stage]) : 1;
        Map out = conv(x, m + ".conv1", stride);
        batch_norm(out, m + ".bn1");
        relu(out);
        out = conv(out, m + ".conv2", 1);
        batch_norm(out, m + ".bn2");
        const Map shortcut = stride != 1 || in_planes != planes ? option_a(x, planes) : x;
        EXPECT_EQ(shortcut.v.size(), out.v.size()) << m;
        for (size_t e = 0; e < out.v.size(); ++e) out.v[e] += shortcut.v[e];
        relu(out);
        x = std::move(out);
        in_planes = planes;
      }
    // F.avg_pool2d(out, out.size()[3]) on the square map, view(N, -1), nn.Linear.
    const Tensor& wt = get("linear.weight");
    const Tensor& bias = get("linear.bias");
    std::vector<double> pooled(static_cast<size_t>(x.c), 0.0);
    for (int64_t k = 0; k < x.c; ++k) {
      for (int64_t i = 0; i < x.h; ++i)
        for (int64_t j = 0; j < x.w; ++j) pooled[static_cast<size_t>(k)] += x.at(k, i, j);
      pooled[static_cast<size_t>(k)] /= static_cast<double>(x.h * x.w);
    }
    std::vector<double> logits;
    for (int64_t o = 0; o < wt.dim(0); ++o) {
      double s = bias.f32()[o];
      for (int64_t k = 0; k < wt.dim(1); ++k) s += static_cast<double>(wt.f32()[o * wt.dim(1) + k]) * pooled[k];
      logits.push_back(s);
    }
    return logits;
  }

  const SafetensorsFile& f_;
  int n_;
  int pad_offset_;
};

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

// max |a - b| / max |b|: every logit within `tolerance` of the reference's scale.
double max_relative_difference(const Tensor& a, const std::vector<double>& b) {
  double d = 0;
  for (size_t i = 0; i < b.size(); ++i) d = std::max(d, std::fabs(a.f32()[i] - b[i]));
  return d / max_abs(b);
}

TEST(TrainResNetPyTorch, TrainedResNet20CheckpointIsAnAkamasterStateDict) {
  constexpr int kSteps = 3;
  auto backend = make_cpu_backend();
  ModelConfig model;
  model.name = "resnet20";
  const Shape example = {8, 8, 3};  // small images keep the float64 reference fast: 8x8, 4x4, 2x2 maps
  Graph graph;
  add_model_layers(model, example, graph);
  Rng init(7);
  graph.build(example, *backend, init);

  OptimizerConfig opt;  // SGD momentum 0.9, weight decay 5e-4
  Sgd sgd(opt, make_parameter_groups(opt, graph.named_parameters(), graph.parameter_backends()));
  TrainStep step(graph, sgd, 0.0f, 1);
  Rng data(11);
  for (int s = 1; s <= kSteps; ++s) {
    // Inputs with a non-zero mean and spread, so the running statistics move visibly.
    const Tensor images = testing::random_tensor({16, 8, 8, 3}, data, -0.5f, 2.0f);
    const Tensor labels = testing::random_labels(16, 10, data);
    step.forward(images, labels, s);
    step.backward_and_update(0.05, 0);
  }

  TempDir dir;
  const std::string path = dir.file("resnet20.safetensors");
  save_checkpoint(path, graph, &sgd, TrainingState{});
  const SafetensorsFile f = read_safetensors(path);

  // The model tensors are exactly the state dict; the rest is the optimizer's.
  std::vector<std::string> model_names;
  for (const NamedTensor& t : f.tensors)
    if (t.name.rfind("optimizer.", 0) != 0) model_names.push_back(t.name);
  EXPECT_EQ(model_names, akamaster_state_dict_keys(3));
  EXPECT_EQ(f.find("conv1.weight")->shape(), (Shape{16, 3, 3, 3}));
  EXPECT_EQ(f.find("layer2.0.conv1.weight")->shape(), (Shape{32, 16, 3, 3}));
  EXPECT_EQ(f.find("layer3.2.conv2.weight")->shape(), (Shape{64, 64, 3, 3}));
  EXPECT_EQ(f.find("linear.weight")->shape(), (Shape{10, 64}));

  // Non-trivial BN state: three training steps moved every running mean and variance.
  const NamedTensor* tracked = nullptr;
  for (const NamedTensor& t : f.tensors)
    if (t.name == "layer2.1.bn2.num_batches_tracked") tracked = &t;
  ASSERT_NE(tracked, nullptr);
  EXPECT_TRUE(tracked->as_i64);
  EXPECT_EQ(tracked->tensor.data<int32_t>()[0], kSteps);
  const Tensor& mean = *f.find("layer1.0.bn1.running_mean");
  const Tensor& var = *f.find("layer1.0.bn1.running_var");
  double moved = 0;
  for (int64_t k = 0; k < mean.numel(); ++k) moved += std::fabs(mean.f32()[k]) + std::fabs(var.f32()[k] - 1.0f);
  EXPECT_GT(moved / static_cast<double>(mean.numel()), 0.01);

  const Tensor x = testing::random_tensor({4, 8, 8, 3}, data, -1.0f, 1.5f);
  const Tensor& logits = graph.forward(x, Mode::eval);
  ASSERT_EQ(logits.shape(), (Shape{4, 10}));
  const std::vector<double> expected = PyTorchResNet20(f, 3).forward(x);
  EXPECT_LT(max_relative_difference(logits, expected), 1e-4);
  EXPECT_TRUE(testing::close_l2(logits, expected, 1e-4));

  // The comparison is sharp enough to see a shortcut whose channels sit elsewhere among the zeros.
  const std::vector<double> misplaced = PyTorchResNet20(f, 3, /*pad_offset=*/0).forward(x);
  EXPECT_GT(max_relative_difference(logits, misplaced), 1e-2);
}

}  // namespace
}  // namespace convnet
