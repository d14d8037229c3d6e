// Graph as a DAG: layers read earlier layers by name, relative index or "input"; merges (add,
// concat) and branches. Checks the gradients through branches and merges against finite
// differences, the config errors, the sharing of gradient buffers, and the receptive fields of
// the dry-run summary against hand-computed values.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/base/error.h"
#include "core/cpu/cpu_backend.h"
#include "core/layers/pad_channels.h"
#include "core/train/graph.h"
#include "models/model_builder.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::random_tensor;

// Builds the model of a YAML `model:` section on the cpu backend.
void build_from_yaml(const std::string& model_yaml, const Shape& example, Backend& backend, Graph& graph,
                     uint64_t seed = 1) {
  const Config config = parse_config("model:\n" + model_yaml, "dag.yaml");
  add_model_layers(config.model, example, graph);
  Rng rng(seed);
  graph.build(example, backend, rng);
}

std::string build_error(const std::string& model_yaml, const Shape& example = {4, 4, 2}) {
  auto backend = make_cpu_backend();
  Graph graph;
  try {
    build_from_yaml(model_yaml, example, *backend, graph);
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no ConfigError for:\n" << model_yaml;
  return "";
}

// A net in which one output is read four times (two convs, an add, a concat) and the net's input
// twice, with a smooth activation so that finite differences hold everywhere.
constexpr const char* kBranchy = R"(  name: sequential
  layers:
    - {type: conv, name: conv_a, out_channels: 3, kernel: 3, padding: 1}
    - {type: gelu, name: act_a}
    - {type: conv, name: conv_b, out_channels: 3, kernel: 3, padding: 1}
    - {type: conv, name: conv_c, out_channels: 3, kernel: 1, from: act_a}
    - {type: add, name: sum, from: [conv_b, -1, act_a]}
    - {type: concat, name: cat, from: [sum, act_a]}
    - {type: conv, name: side, out_channels: 2, kernel: 1, from: input}
    - {type: concat, name: cat2, from: [cat, side]}
    - {type: batch_norm, name: bn}
    - {type: flatten}
    - {type: linear, out_features: 3}
)";

// L = sum(out * R) for a fixed R.
double loss_of(Graph& graph, const Tensor& x, const Tensor& r) {
  const Tensor& out = graph.forward(x, Mode::train);
  double sum = 0;
  for (int64_t i = 0; i < out.numel(); ++i) sum += static_cast<double>(out.f32()[i]) * r.f32()[i];
  return sum;
}

TEST(GraphDag, GradientsThroughBranchesAndMergesMatchFiniteDifferences) {
  auto backend = make_cpu_backend();
  Graph graph;
  build_from_yaml(kBranchy, {4, 4, 2}, *backend, graph);
  Rng rng(7);
  const Tensor x = random_tensor({4, 4, 4, 2}, rng);
  const Tensor r = random_tensor({4, 3}, rng);
  graph.forward(x, Mode::train);
  graph.backward(r);
  std::vector<std::vector<float>> analytic;
  for (auto& [name, p] : graph.named_parameters()) analytic.push_back(p->grad.to_vector());

  // The same backward again gives the same bits: the sums run in a fixed order.
  graph.forward(x, Mode::train);
  graph.backward(r);
  size_t k = 0;
  for (auto& [name, p] : graph.named_parameters()) EXPECT_EQ(p->grad.to_vector(), analytic[k++]) << name;

  constexpr float h = 1e-2f;
  int64_t checked = 0, failed = 0;
  k = 0;
  for (auto& [name, p] : graph.named_parameters()) {
    float* v = p->value.f32();
    for (int64_t i = 0; i < p->value.numel(); ++i) {
      const float saved = v[i];
      v[i] = saved + h;
      const double up = loss_of(graph, x, r);
      v[i] = saved - h;
      const double down = loss_of(graph, x, r);
      v[i] = saved;
      const double numeric = (up - down) / (2 * h), a = analytic[k][static_cast<size_t>(i)];
      ++checked;
      if (!(std::abs(a - numeric) <= 2e-3 * std::max({std::abs(a), std::abs(numeric), 1.0}))) {
        if (++failed < 5) ADD_FAILURE() << name << "[" << i << "]: analytic " << a << ", numeric " << numeric;
      }
    }
    ++k;
  }
  EXPECT_EQ(failed, 0) << "of " << checked;
  EXPECT_GT(checked, 500);
}

TEST(GraphDag, MergesComputeSumAndConcatenation) {
  auto backend = make_cpu_backend();
  Graph graph;
  build_from_yaml(R"(  name: sequential
  layers:
    - {type: scale, name: twice, factor: 2}
    - {type: identity, name: same, from: input}
    - {type: add, name: sum, from: [twice, same, input]}
    - {type: concat, name: cat, from: [sum, twice]}
)",
                  {2, 2, 3}, *backend, graph);
  Rng rng(3);
  const Tensor x = random_tensor({2, 2, 2, 3}, rng);
  const Tensor& y = graph.forward(x, Mode::eval);
  ASSERT_EQ(y.shape(), (Shape{2, 2, 2, 6}));
  for (int64_t row = 0; row < 8; ++row)
    for (int64_t c = 0; c < 3; ++c) {
      const float v = x.f32()[row * 3 + c];
      EXPECT_FLOAT_EQ(y.f32()[row * 6 + c], 4 * v);
      EXPECT_FLOAT_EQ(y.f32()[row * 6 + 3 + c], 2 * v);
    }
  EXPECT_EQ(graph.layer_inputs(2), (std::vector<int>{0, 1, Graph::kGraphInput}));
}

TEST(GraphDag, ConfigErrorsNameTheLayerAndLine) {
  const std::string head = "  name: sequential\n  layers:\n";
  EXPECT_PRED_FORMAT2(::testing::IsSubstring, "layer 'b' (config line 5): from 'nope': no layer has that name",
                      build_error(head + "    - {type: relu, name: a}\n    - {type: relu, name: b, from: nope}\n"));
  EXPECT_PRED_FORMAT2(::testing::IsSubstring, "from 'c': a layer can only read layers before it",
                      build_error(head + "    - {type: relu, name: a}\n    - {type: relu, name: b, from: c}\n"
                                         "    - {type: relu, name: c, from: b}\n"));
  EXPECT_PRED_FORMAT2(::testing::IsSubstring, "from 'b': a layer can only read layers before it",
                      build_error(head + "    - {type: relu, name: a}\n    - {type: relu, name: b, from: b}\n"));
  EXPECT_PRED_FORMAT2(::testing::IsSubstring, "from '-3' reaches before the first layer",
                      build_error(head + "    - {type: relu, name: a}\n    - {type: relu, name: b, from: -3}\n"));
  EXPECT_PRED_FORMAT2(::testing::IsSubstring, "from lists 'a' twice (as 'a' and '-1')",
                      build_error(head + "    - {type: relu, name: a}\n    - {type: add, from: [a, -1]}\n"));
  EXPECT_PRED_FORMAT2(::testing::IsSubstring, "layer 'a' (config line 4): its output is never read",
                      build_error(head + "    - {type: relu, name: a}\n    - {type: relu, name: b, from: input}\n"));
  EXPECT_PRED_FORMAT2(::testing::IsSubstring, "cannot add inputs of shapes [4, 4, 2] and [4, 4, 3]",
                      build_error(head + "    - {type: conv, name: a, out_channels: 3, kernel: 1}\n"
                                         "    - {type: add, name: s, from: [input, a]}\n"));
  EXPECT_PRED_FORMAT2(::testing::IsSubstring, "(config line 5)",
                      build_error(head + "    - {type: conv, name: a, out_channels: 3, kernel: 1}\n"
                                         "    - {type: add, name: s, from: [input, a]}\n"));
  EXPECT_PRED_FORMAT2(::testing::IsSubstring, "cannot concatenate inputs of shapes [4, 4, 2] and [2, 2, 2]",
                      build_error(head + "    - {type: max_pool, name: p}\n"
                                         "    - {type: concat, from: [input, p]}\n"));
  EXPECT_PRED_FORMAT2(::testing::IsSubstring, "merges two or more inputs, got 1",
                      build_error(head + "    - {type: add, name: s}\n"));
  EXPECT_PRED_FORMAT2(::testing::IsSubstring, "a relu layer takes one input, got 2",
                      build_error(head + "    - {type: relu, name: a}\n    - {type: relu, from: [a, input]}\n"));
}

TEST(GraphDag, FromValuesAreCheckedWhenTheConfigIsRead) {
  const auto error = [](const std::string& from) {
    try {
      parse_config("model:\n  name: sequential\n  layers:\n    - {type: relu, from: " + from + "}\n", "dag.yaml");
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_PRED_FORMAT2(::testing::IsSubstring, "dag.yaml:4", error("2"));
  EXPECT_PRED_FORMAT2(::testing::IsSubstring, "-1 is the previous layer", error("2"));
  EXPECT_PRED_FORMAT2(::testing::IsSubstring, "a non-empty list", error("[]"));
  EXPECT_PRED_FORMAT2(::testing::IsSubstring, "expected a layer name", error("{a: 1}"));
  EXPECT_EQ(error("[input, -1]"), "no error");
}

TEST(GraphDag, ConfigWithFromRoundTrips) {
  const Config config = parse_config(std::string("model:\n") + kBranchy, "dag.yaml");
  const Config again = parse_config(to_yaml(config), "again.yaml");
  ASSERT_EQ(again.model.layers.size(), config.model.layers.size());
  for (size_t i = 0; i < config.model.layers.size(); ++i)
    EXPECT_EQ(again.model.layers[i].from, config.model.layers[i].from) << i;
  EXPECT_EQ(config.model.layers[4].from, (std::vector<std::string>{"conv_b", "-1", "act_a"}));
}

TEST(GraphDag, AChainSharesTwoGradientBuffers) {
  auto backend = make_cpu_backend();
  Graph graph;
  std::string layers = "  name: sequential\n  layers:\n";
  for (int i = 0; i < 8; ++i) layers += "    - {type: relu}\n";
  build_from_yaml(layers, {4, 4, 2}, *backend, graph);
  const int64_t bytes = 16 * 4 * 4 * 2 * 4;  // one activation at batch 16
  const Graph::ActivationMemory m = graph.activation_memory(16);
  EXPECT_EQ(m.outputs, 8 * bytes);
  EXPECT_EQ(m.gradients, 2 * bytes);
}

// What layers keep themselves counts too: max pooling's i32 argmax of its output, dropout's u8
// mask of its input, a strided pad_channels' f32 subsampled input.
TEST(GraphDag, ActivationMemoryCountsTheLayersOwnState) {
  auto backend = make_cpu_backend();
  Graph graph;
  build_from_yaml(R"(  name: sequential
  layers:
    - {type: max_pool, kernel: 2}
    - {type: dropout, p: 0.5}
    - {type: avg_pool, kernel: 2}
)",
                  {8, 8, 2}, *backend, graph);
  const int64_t batch = 3;
  const int64_t argmax = batch * 4 * 4 * 2 * 4, mask = batch * 4 * 4 * 2;
  const Graph::ActivationMemory m = graph.activation_memory(batch);
  EXPECT_EQ(m.layer_state, argmax + mask);
  EXPECT_EQ(m.total(), m.outputs + m.gradients + m.layer_state);
  EXPECT_NE(graph.summary_table(batch).find("layer state"), std::string::npos);
  // The resnet shortcut's pad_channels (option A), strided: its subsampled input, f32.
  PadChannels strided("shortcut", 2, 4, 4), plain("shortcut", 1, 4, 4);
  strided.configure({8, 6, 2});
  plain.configure({8, 6, 2});
  EXPECT_EQ(strided.state_bytes(batch), batch * 4 * 3 * 2 * 4);
  EXPECT_EQ(plain.state_bytes(batch), 0);
}

TEST(GraphDag, BranchGradientsStayCorrectWithSharedBuffers) {
  // kBranchy's gradients are checked above; here a long side branch whose gradient must stay live
  // across the main path's backward (a buffer shared too early would overwrite it).
  auto backend = make_cpu_backend();
  Graph graph;
  build_from_yaml(R"(  name: sequential
  layers:
    - {type: conv, name: first, out_channels: 1, kernel: 1, bias: false}
    - {type: scale, name: start, factor: 3}
    - {type: scale, factor: 2}
    - {type: scale, factor: 2}
    - {type: scale, factor: 2}
    - {type: add, from: [-1, start]}
    - {type: conv, name: last, out_channels: 1, kernel: 1}
)",
                  {1, 1, 1}, *backend, graph, 5);
  const Tensor x = Tensor::from_vector({1, 1, 1, 1}, {1.0f});
  const Tensor dy = Tensor::from_vector({1, 1, 1, 1}, {1.0f});
  graph.forward(x, Mode::train);
  graph.backward(dy);
  // y = w_last * (8 * 3 z + 3 z) + b with z = w_first * x: dL/dw_first = 27 w_last x.
  auto params = graph.named_parameters();
  ASSERT_EQ(params[0].first, "layers.0.weight");
  ASSERT_EQ(params[1].first, "layers.6.weight");
  EXPECT_FLOAT_EQ(params[0].second->grad.f32()[0], 27.0f * params[1].second->value.f32()[0]);
}

// Receptive field (size / jump) of the named layer in the summary.
Graph::LayerSummary row_of(Graph& graph, const std::string& name) {
  for (const Graph::LayerSummary& r : graph.summary())
    if (r.name == name) return r;
  ADD_FAILURE() << "no layer " << name;
  return {};
}

TEST(GraphDag, ReceptiveFieldsOfVgg11) {
  auto backend = make_cpu_backend();
  Graph graph;
  build_from_yaml("  name: vgg11\n", {32, 32, 3}, *backend, graph);
  // Hand-computed: size += (span - 1) * jump; jump *= stride.
  const std::vector<std::pair<std::string, std::pair<int64_t, int64_t>>> expected = {
      {"conv1", {3, 1}},    {"pool1", {4, 2}},    {"conv2", {8, 2}},   {"pool2", {10, 4}}, {"conv3", {18, 4}},
      {"conv4", {26, 4}},   {"pool3", {30, 8}},   {"conv5", {46, 8}},  {"conv6", {62, 8}}, {"pool4", {70, 16}},
      {"conv7", {102, 16}}, {"conv8", {134, 16}}, {"pool5", {150, 32}}};
  for (const auto& [name, field] : expected) {
    const Graph::LayerSummary r = row_of(graph, name);
    EXPECT_EQ(r.field.size_h, field.first) << name;
    EXPECT_EQ(r.field.size_w, field.first) << name;
    EXPECT_EQ(r.field.jump_h, field.second) << name;
    EXPECT_EQ(r.first_whole, name == "conv5") << name;
    EXPECT_EQ(r.field.whole, r.field.size_h >= 32) << name;
  }
  EXPECT_TRUE(row_of(graph, "fc").field.whole);
  EXPECT_NE(graph.summary_table(128).find("conv5"), std::string::npos);
  EXPECT_NE(graph.summary_table(128).find("activations at batch 128"), std::string::npos);
}

TEST(GraphDag, ReceptiveFieldsOfDilatedConvsAndAResidualBlock) {
  auto backend = make_cpu_backend();
  Graph graph;
  build_from_yaml(R"(  name: sequential
  layers:
    - {type: conv, name: stem, out_channels: 4, kernel: 3, padding: 1}
    - {type: conv, name: dilated, out_channels: 4, kernel: 3, padding: 2, dilation: 2}
    - {type: conv, name: down, out_channels: 8, kernel: 3, padding: 1, stride: 2}
    - {type: conv, name: body, out_channels: 8, kernel: 3, padding: 1}
    - {type: conv, name: shortcut, out_channels: 8, kernel: 1, stride: 2, from: dilated}
    - {type: add, name: sum, from: [body, shortcut]}
    - {type: conv, name: wide, out_channels: 8, kernel: 3, padding: 3, dilation: 3}
)",
                  {64, 64, 3}, *backend, graph);
  // stem 3/1; dilated: span 5 -> 7/1; down 9/2; body 13/2; shortcut (1x1 on dilated) 7/2;
  // sum: the wider branch, 13/2; wide: span 7 -> 13 + 6 * 2 = 25/2.
  const std::vector<std::pair<std::string, std::pair<int64_t, int64_t>>> expected = {
      {"stem", {3, 1}},     {"dilated", {7, 1}}, {"down", {9, 2}}, {"body", {13, 2}},
      {"shortcut", {7, 2}}, {"sum", {13, 2}},    {"wide", {25, 2}}};
  for (const auto& [name, field] : expected) {
    const Graph::LayerSummary r = row_of(graph, name);
    EXPECT_EQ(r.field.size_h, field.first) << name;
    EXPECT_EQ(r.field.jump_w, field.second) << name;
    EXPECT_FALSE(r.field.whole) << name;
  }
  EXPECT_EQ(row_of(graph, "sum").inputs, (std::vector<std::string>{"body", "shortcut"}));
  EXPECT_TRUE(row_of(graph, "down").inputs.empty());
}

}  // namespace
}  // namespace convnet
