// Fused conv -> batch_norm (core/train/conv_bn_fusion.h): which pairs are fused, and that a fused
// graph trains as the unfused one does, on the cpu backend (the reference for the cuda backend,
// where `auto` fuses).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/base/error.h"
#include "core/cpu/cpu_backend.h"
#include "core/layers/batch_norm.h"
#include "core/layers/conv2d.h"
#include "core/train/conv_bn_fusion.h"
#include "core/train/graph.h"
#include "models/model_builder.h"
#include "tests/common/recording_backend.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::close_l2;
using testing::random_tensor;

// conv1 -> bn1 fuses; conv2 feeds bn2 and a shortcut (two readers); lin -> bn3 is not a conv;
// conv4 -> bn4 fuses.
constexpr const char* kModel = R"(model:
  name: sequential
  layers:
    - {type: conv, name: conv1, out_channels: 4, kernel: 3, padding: 1, bias: false}
    - {type: batch_norm, name: bn1}
    - {type: relu, name: act1}
    - {type: conv, name: conv2, out_channels: 4, kernel: 3, padding: 1}
    - {type: batch_norm, name: bn2}
    - {type: add, name: sum, from: [bn2, conv2]}
    - {type: conv, name: conv4, out_channels: 8, kernel: 3, stride: 2, padding: 1, bias: false}
    - {type: batch_norm, name: bn4}
    - {type: relu}
    - {type: max_pool, kernel: 2}
    - {type: flatten}
    - {type: linear, name: lin, out_features: 6}
    - {type: batch_norm, name: bn3}
    - {type: linear, out_features: 3}
)";

void plan_model(Graph& graph, Backend& backend) {
  const Config config = parse_config(kModel, "fusion.yaml");
  add_model_layers(config.model, {8, 8, 3}, graph);
  graph.plan({8, 8, 3}, backend);
}

std::vector<std::string> fused_layers(Graph& graph) {
  std::vector<std::string> names;
  for (size_t i = 0; i < graph.size(); ++i) {
    if (const auto* conv = dynamic_cast<const Conv2d*>(&graph.layer(i)); conv && conv->output_moments())
      names.push_back(conv->name());
    if (const auto* bn = dynamic_cast<const BatchNorm2d*>(&graph.layer(i)); bn && bn->input_moments())
      names.push_back(bn->name());
  }
  return names;
}

TEST(ConvBnFusion, PairsAConvWithTheBatchNormThatAloneReadsIt) {
  auto backend = make_cpu_backend();
  Graph graph;
  plan_model(graph, *backend);
  EXPECT_EQ(fuse_conv_batch_norm(graph, ConvBnFusion::always), 2);
  EXPECT_EQ(fused_layers(graph), (std::vector<std::string>{"conv1", "bn1", "conv4", "bn4"}));
}

TEST(ConvBnFusion, AutoFusesOnlyWhereTheBackendIsFasterSo) {
  auto backend = make_cpu_backend();
  ASSERT_FALSE(backend->fuses_conv_batch_norm());
  Graph graph;
  plan_model(graph, *backend);
  EXPECT_EQ(fuse_conv_batch_norm(graph, ConvBnFusion::automatic), 0);
  EXPECT_EQ(fuse_conv_batch_norm(graph, ConvBnFusion::never), 0);
  EXPECT_TRUE(fused_layers(graph).empty());
}

TEST(ConvBnFusion, APairSplitAcrossBackendsIsNotFused) {
  auto cpu = make_cpu_backend();
  testing::RecordingBackend other;
  const Config config = parse_config(kModel, "fusion.yaml");
  Graph graph;
  add_model_layers(config.model, {8, 8, 3}, graph);
  graph.plan({8, 8, 3}, *cpu, {{"bn1", &other}});
  EXPECT_EQ(fuse_conv_batch_norm(graph, ConvBnFusion::always), 1);
  EXPECT_EQ(fused_layers(graph), (std::vector<std::string>{"conv4", "bn4"}));
}

TEST(ConvBnFusion, ConfigNamesTheChoices) {
  EXPECT_EQ(parse_conv_bn_fusion("auto"), ConvBnFusion::automatic);
  EXPECT_EQ(parse_conv_bn_fusion("on"), ConvBnFusion::always);
  EXPECT_EQ(parse_conv_bn_fusion("off"), ConvBnFusion::never);
  EXPECT_THROW(parse_conv_bn_fusion("yes"), ConfigError);
  EXPECT_NO_THROW(parse_config("train:\n  conv_bn_fusion: on\n", "f.yaml"));
  try {
    parse_config("train:\n  conv_bn_fusion: always\n", "f.yaml");
    ADD_FAILURE() << "no ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("f.yaml:2"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("conv_bn_fusion"), std::string::npos) << e.what();
  }
}

// Five SGD steps (train forward, backward, update) with an eval forward between them, which must
// not leave statistics behind for the next train forward.
struct Trained {
  std::vector<std::vector<float>> params, buffers;
  std::vector<float> eval_out;
};
Trained train_steps(ConvBnFusion fusion, bool expect_fused) {
  auto backend = make_cpu_backend();
  Graph graph;
  plan_model(graph, *backend);
  EXPECT_EQ(fuse_conv_batch_norm(graph, fusion) > 0, expect_fused);
  Rng init(3);
  graph.allocate_parameters(init);
  Rng rng(5);
  Trained t;
  for (int step = 0; step < 5; ++step) {
    const Tensor x = random_tensor({6, 8, 8, 3}, rng, -1.0f, 2.0f);
    const Tensor r = random_tensor({6, 3}, rng);
    graph.forward(x, Mode::train);
    graph.backward(r);
    SgdStep sgd;
    sgd.lr = 0.05f;
    Tensor no_momentum;
    for (auto& [name, p] : graph.named_parameters()) backend->sgd_update(p->value, p->grad, no_momentum, sgd, nullptr);
    if (step == 2) graph.forward(x, Mode::eval);
  }
  for (auto& [name, p] : graph.named_parameters()) t.params.push_back(p->value.to_vector());
  for (auto& [name, b] : graph.named_buffers())
    if (b->value.dtype() == DType::f32) t.buffers.push_back(b->value.to_vector());
  Rng eval_rng(9);
  t.eval_out = graph.forward(random_tensor({6, 8, 8, 3}, eval_rng), Mode::eval).to_vector();
  return t;
}

Tensor of(const std::vector<float>& v) {
  Tensor t({static_cast<int64_t>(v.size())});
  for (size_t i = 0; i < v.size(); ++i) t.f32()[i] = v[i];
  return t;
}

TEST(ConvBnFusion, AFusedGraphTrainsAsTheUnfusedOneDoes) {
  const Trained fused = train_steps(ConvBnFusion::always, true);
  const Trained plain = train_steps(ConvBnFusion::never, false);
  ASSERT_EQ(fused.params.size(), plain.params.size());
  for (size_t i = 0; i < fused.params.size(); ++i)
    EXPECT_TRUE(close_l2(of(fused.params[i]), of(plain.params[i]), 1e-5)) << "parameter " << i;
  ASSERT_EQ(fused.buffers.size(), plain.buffers.size());
  for (size_t i = 0; i < fused.buffers.size(); ++i)
    EXPECT_TRUE(close_l2(of(fused.buffers[i]), of(plain.buffers[i]), 1e-5)) << "buffer " << i;
  EXPECT_TRUE(close_l2(of(fused.eval_out), of(plain.eval_out), 1e-5));
}

// The comparison above is not vacuous: statistics of another batch change the result.
TEST(ConvBnFusion, StaleStatisticsWouldBeCaught) {
  auto backend = make_cpu_backend();
  Rng rng(2);
  const Tensor x1 = random_tensor({6, 4}, rng, 0.0f, 1.0f), x2 = random_tensor({6, 4}, rng, 2.0f, 4.0f);
  const Tensor gamma = random_tensor({4}, rng, 0.5f, 1.5f), beta = random_tensor({4}, rng);
  Tensor mean({4}), m2({4}), y_right({6, 4}), y_stale({6, 4}), sm({4}), si({4}), rm({4}), rv({4});
  backend->fill(rm, 0.0f);
  backend->fill(rv, 1.0f);
  backend->batch_norm_local_stats(x2, mean, m2);
  backend->batch_norm_forward_train_from_moments(x2, mean, m2, gamma, beta, y_right, sm, si, rm, rv, 0.1f, 1e-5f);
  backend->batch_norm_local_stats(x1, mean, m2);
  backend->batch_norm_forward_train_from_moments(x2, mean, m2, gamma, beta, y_stale, sm, si, rm, rv, 0.1f, 1e-5f);
  EXPECT_FALSE(close_l2(y_stale, y_right, 1e-3));
}

}  // namespace
}  // namespace convnet
