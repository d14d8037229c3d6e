// Checkpoints in PyTorch layouts: the exported weights, evaluated the PyTorch way (NCHW, OIHW,
// CHW flatten), give the same outputs as our NHWC model; round trips and validation errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "core/base/error.h"
#include "core/cpu/cpu_backend.h"
#include "core/io/safetensors.h"
#include "core/train/checkpoint.h"
#include "models/model_builder.h"
#include "tests/common/test_util.h"
#include "tests/common/tiny_graph.h"

namespace convnet {
namespace {

using testing::TempDir;

void build_small(Graph& graph, Backend& backend, uint64_t seed) {
  testing::build_tiny_graph(graph, backend, seed, /*batch_norm=*/false);
}

// The PyTorch computation on NCHW input with the exported tensors, in double.
std::vector<double> pytorch_style_forward(const SafetensorsFile& f, const Tensor& x_nhwc) {
  const Tensor& w = *f.find("layers.0.weight");  // [4, 3, 3, 3] OIHW
  const Tensor& b = *f.find("layers.0.bias");
  const Tensor& fw = *f.find("layers.3.weight");  // [5, 64], CHW order
  const Tensor& fb = *f.find("layers.3.bias");
  const int64_t n_batch = x_nhwc.dim(0);
  std::vector<double> out;
  for (int64_t n = 0; n < n_batch; ++n) {
    std::vector<double> act(4 * 4 * 4);  // [C=4][H=4][W=4]
    for (int k = 0; k < 4; ++k)
      for (int h = 0; h < 4; ++h)
        for (int wi = 0; wi < 4; ++wi) {
          double s = b.f32()[k];
          for (int c = 0; c < 3; ++c)
            for (int r = 0; r < 3; ++r)
              for (int q = 0; q < 3; ++q) {
                const int ih = h + r - 1, iw = wi + q - 1;
                if (ih < 0 || ih >= 4 || iw < 0 || iw >= 4) continue;
                s += static_cast<double>(w.f32()[((k * 3 + c) * 3 + r) * 3 + q]) *
                     x_nhwc.f32()[((n * 4 + ih) * 4 + iw) * 3 + c];
              }
          act[static_cast<size_t>((k * 4 + h) * 4 + wi)] = std::max(s, 0.0);
        }
    for (int o = 0; o < 5; ++o) {
      double s = fb.f32()[o];
      for (int i = 0; i < 64; ++i) s += static_cast<double>(fw.f32()[o * 64 + i]) * act[static_cast<size_t>(i)];
      out.push_back(s);
    }
  }
  return out;
}

TEST(TrainCheckpoint, ExportedWeightsComputeTheSameFunctionInPyTorchLayout) {
  auto backend = make_cpu_backend();
  Graph graph;
  build_small(graph, *backend, 3);
  TempDir dir;
  save_checkpoint(dir.file("c.safetensors"), graph, nullptr, TrainingState{});
  const SafetensorsFile f = read_safetensors(dir.file("c.safetensors"));
  EXPECT_EQ(f.find("layers.0.weight")->shape(), (Shape{4, 3, 3, 3}));
  EXPECT_EQ(f.find("layers.3.weight")->shape(), (Shape{5, 64}));
  EXPECT_EQ(f.metadata.at("format"), "pt");

  Rng rng(11);
  const Tensor x = testing::random_tensor({2, 4, 4, 3}, rng);
  const Tensor& y = graph.forward(x, Mode::eval);
  EXPECT_TRUE(testing::close_l2(y, pytorch_style_forward(f, x), 1e-5));
}

// PyTorch's grouped convolution of an NCHW image (double) with an OIHW weight [K, C / groups, R, S]
// and bias [K]; stride and padding on both axes. Returns [N, P, Q, K] (NHWC, like our output).
std::vector<double> pytorch_grouped_conv(const std::vector<double>& x_nchw, const Shape& nchw, const Tensor& w,
                                         const Tensor& b, int64_t groups, int64_t stride, int64_t pad) {
  const int64_t n_batch = nchw[0], c = nchw[1], h = nchw[2], wd = nchw[3];
  const int64_t k = w.dim(0), gc = w.dim(1), r = w.dim(2), s = w.dim(3), gk = k / groups;
  EXPECT_EQ(gc * groups, c);
  const int64_t p = (h + 2 * pad - r) / stride + 1, q = (wd + 2 * pad - s) / stride + 1;
  std::vector<double> y;
  for (int64_t n = 0; n < n_batch; ++n)
    for (int64_t op = 0; op < p; ++op)
      for (int64_t oq = 0; oq < q; ++oq)
        for (int64_t o = 0; o < k; ++o) {
          double sum = b.f32()[o];
          for (int64_t i = 0; i < gc; ++i)
            for (int64_t kh = 0; kh < r; ++kh)
              for (int64_t kw = 0; kw < s; ++kw) {
                const int64_t ih = op * stride - pad + kh, iw = oq * stride - pad + kw;
                if (ih < 0 || ih >= h || iw < 0 || iw >= wd) continue;
                const int64_t channel = o / gk * gc + i;  // the group's input channel i
                sum += static_cast<double>(w.f32()[((o * gc + i) * r + kh) * s + kw]) *
                       x_nchw[static_cast<size_t>(((n * c + channel) * h + ih) * wd + iw)];
              }
          y.push_back(sum);
        }
  return y;
}

// Grouped and depthwise conv weights export as PyTorch's [O, I / groups, kH, kW]: applied the
// PyTorch way they compute what the model computes, and they load back unchanged.
TEST(TrainCheckpoint, GroupedConvWeightsExportInPyTorchsGroupedLayout) {
  auto backend = make_cpu_backend();
  ModelConfig m;
  m.name = "sequential";
  LayerSpec grouped = testing::layer_spec("conv");
  grouped.out_channels = 6;
  grouped.padding = 1;
  grouped.groups = 2;
  grouped.bias = false;
  LayerSpec depthwise = testing::layer_spec("conv");
  depthwise.out_channels = 12;
  depthwise.stride = 2;
  depthwise.padding = 1;
  depthwise.groups = 6;
  m.layers = {grouped, depthwise};
  Graph a, b;
  add_model_layers(m, {5, 5, 4}, a);
  add_model_layers(m, {5, 5, 4}, b);
  Rng ra(3), rb(4);
  a.build({5, 5, 4}, *backend, ra);
  b.build({5, 5, 4}, *backend, rb);
  Parameter& bias = *a.named_parameters().back().second;  // the depthwise bias: not zero, to be seen
  Rng rng(11);
  backend->copy(bias.value, testing::random_tensor(bias.value.shape(), rng));
  TempDir dir;
  save_checkpoint(dir.file("g.safetensors"), a, nullptr, TrainingState{});
  const SafetensorsFile f = read_safetensors(dir.file("g.safetensors"));
  EXPECT_EQ(f.find("layers.0.weight")->shape(), (Shape{6, 2, 3, 3}));
  EXPECT_EQ(f.find("layers.1.weight")->shape(), (Shape{12, 1, 3, 3}));

  const Tensor x = testing::random_tensor({2, 5, 5, 4}, rng);
  std::vector<double> x_nchw(static_cast<size_t>(x.numel()));
  for (int64_t i = 0; i < x.numel(); ++i) {  // NHWC index i -> NCHW
    const int64_t ch = i % 4, pix = i / 4 % 25, n = i / 100;
    x_nchw[static_cast<size_t>((n * 4 + ch) * 25 + pix)] = x.f32()[i];
  }
  const Tensor zero_bias = Tensor::full({6}, 0.0f);
  const std::vector<double> mid =
      pytorch_grouped_conv(x_nchw, {2, 4, 5, 5}, *f.find("layers.0.weight"), zero_bias, 2, 1, 1);
  std::vector<double> mid_nchw(mid.size());
  for (size_t i = 0; i < mid.size(); ++i) {  // NHWC [2, 5, 5, 6] -> NCHW
    const size_t ch = i % 6, pix = i / 6 % 25, n = i / 150;
    mid_nchw[(n * 6 + ch) * 25 + pix] = mid[i];
  }
  const std::vector<double> expected =
      pytorch_grouped_conv(mid_nchw, {2, 6, 5, 5}, *f.find("layers.1.weight"), *f.find("layers.1.bias"), 6, 2, 1);
  EXPECT_TRUE(testing::close_l2(a.forward(x, Mode::eval), expected, 1e-5));

  load_checkpoint(dir.file("g.safetensors"), b, nullptr);
  auto pa = a.named_parameters(), pb = b.named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i)
    EXPECT_EQ(pa[i].second->value.to_vector(), pb[i].second->value.to_vector()) << pa[i].first;
}

TEST(TrainCheckpoint, RoundTripRestoresEveryParameterAndBuffer) {
  auto backend = make_cpu_backend();
  ModelConfig m;
  m.name = "vgg";
  m.cfg = {"8", "M", "16", "M"};
  m.pool = "avg";
  Graph a, b;
  add_model_layers(m, {8, 8, 3}, a);
  add_model_layers(m, {8, 8, 3}, b);
  Rng ra(1), rb(2);
  a.build({8, 8, 3}, *backend, ra);
  b.build({8, 8, 3}, *backend, rb);
  Rng rng(5);
  a.forward(testing::random_tensor({4, 8, 8, 3}, rng), Mode::train);  // moves the BN statistics
  TrainingState state;
  state.step = 17;
  state.epoch = 2;
  state.batch_in_epoch = 3;
  state.rng = Rng(99).state();
  state.best_accuracy = 0.5;
  state.config_yaml = "model: {name: vgg}\n";
  TempDir dir;
  save_checkpoint(dir.file("a.safetensors"), a, nullptr, state);
  const TrainingState loaded = load_checkpoint(dir.file("a.safetensors"), b, nullptr);
  EXPECT_EQ(loaded.step, 17);
  EXPECT_EQ(loaded.epoch, 2);
  EXPECT_EQ(loaded.batch_in_epoch, 3);
  EXPECT_EQ(loaded.rng, state.rng);
  EXPECT_EQ(loaded.best_accuracy, 0.5);
  EXPECT_EQ(loaded.config_yaml, state.config_yaml);
  auto pa = a.named_parameters(), pb = b.named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i)
    EXPECT_EQ(pa[i].second->value.to_vector(), pb[i].second->value.to_vector()) << pa[i].first;
  auto ba = a.named_buffers(), bb = b.named_buffers();
  ASSERT_EQ(ba.size(), bb.size());
  for (size_t i = 0; i < ba.size(); ++i)
    EXPECT_EQ(0, std::memcmp(ba[i].second->value.raw(), bb[i].second->value.raw(), ba[i].second->value.bytes()))
        << ba[i].first;
  // PyTorch stores num_batches_tracked as int64.
  const SafetensorsFile f = read_safetensors(dir.file("a.safetensors"));
  EXPECT_EQ(f.find("features.1.num_batches_tracked")->data<int32_t>()[0], 1);
}

TEST(TrainCheckpoint, LoadingIntoADifferentModelNamesTheTensor) {
  auto backend = make_cpu_backend();
  Graph a;
  build_small(a, *backend, 1);
  TempDir dir;
  save_checkpoint(dir.file("a.safetensors"), a, nullptr, TrainingState{});
  ModelConfig m;
  m.name = "sequential";
  LayerSpec conv = testing::layer_spec("conv");
  conv.out_channels = 6;
  conv.padding = 1;
  LayerSpec fc = testing::layer_spec("linear");
  fc.out_features = 5;
  m.layers = {conv, testing::layer_spec("relu"), testing::layer_spec("flatten"), fc};
  Graph b;
  add_model_layers(m, {4, 4, 3}, b);
  Rng rng(0);
  b.build({4, 4, 3}, *backend, rng);
  try {
    load_checkpoint(dir.file("a.safetensors"), b, nullptr);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layers.0.weight"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[6, 3, 3, 3]"), std::string::npos) << e.what();
  }
}

TEST(TrainCheckpoint, TruncatedOrForeignFilesAreRejected) {
  auto backend = make_cpu_backend();
  Graph a;
  build_small(a, *backend, 1);
  TempDir dir;
  const std::string path = dir.file("a.safetensors");
  save_checkpoint(path, a, nullptr, TrainingState{});
  const std::string bytes = testing::read_file(path);
  testing::write_file(dir.file("cut.safetensors"), std::string_view(bytes).substr(0, bytes.size() - 10));
  EXPECT_THROW(load_checkpoint(dir.file("cut.safetensors"), a, nullptr), Error);
  // A valid safetensors file that is not a convnet checkpoint.
  write_safetensors(dir.file("foreign.safetensors"), {{"w", Tensor::full({2}, 1.0f)}}, {});
  try {
    load_checkpoint(dir.file("foreign.safetensors"), a, nullptr);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a convnet checkpoint"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace convnet
