// Graph output reuse: outputs that no backward reads (Layer::backward_reads_input/output) share
// buffers once their last reader has run. Checked three ways: the memory of a small chain by hand;
// a net of every layer type, and ResNet-20, give the same bits with reuse on and off (outputs and
// every gradient) while holding less memory; and a layer that claims not to read an input it reads
// is caught by that comparison.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/layers/activation.h"
#include "core/layers/conv2d.h"
#include "core/layers/flatten.h"
#include "core/layers/identity.h"
#include "core/layers/linear.h"
#include "core/layers/pool2d.h"
#include "core/layers/scale.h"
#include "core/train/graph.h"
#include "models/model_builder.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::random_tensor;

// Every layer type a config can name, with branches; dropout too (the same step seed gives the
// same masks).
constexpr const char* kEveryLayer = R"(model:
  name: sequential
  layers:
    - {type: conv, name: conv1, out_channels: 6, kernel: 3, padding: 1}
    - {type: batch_norm, name: bn1}
    - {type: relu, name: relu1}
    - {type: max_pool, name: pool1, kernel: 2}
    - {type: scale, name: scaled, factor: 0.5}
    - {type: identity, name: same}
    - {type: gelu, name: gelu1}
    - {type: add, name: sum, from: [gelu1, pool1, same]}
    - {type: conv, name: conv2, out_channels: 4, kernel: 1, from: scaled}
    - {type: concat, name: cat, from: [sum, conv2]}
    - {type: avg_pool, name: pool2, kernel: 2}
    - {type: dropout, name: drop, p: 0.25}
    - {type: flatten, name: flat}
    - {type: linear, name: fc1, out_features: 8}
    - {type: relu, name: relu2}
    - {type: linear, name: fc2, out_features: 3}
)";

struct Pass {
  std::vector<float> output;
  std::vector<std::vector<float>> grads;
  int64_t output_bytes = 0;
};

// One train forward and backward of the model at `example` on cpu, reuse on or off.
Pass forward_backward(const std::string& yaml, const Shape& example, bool reuse, int64_t batch = 4) {
  auto backend = make_cpu_backend();
  Graph graph;
  add_model_layers(parse_config(yaml, "reuse.yaml").model, example, graph);
  graph.set_output_reuse(reuse);
  graph.plan(example, *backend);
  Rng init(4);
  graph.allocate_parameters(init);
  graph.set_step_seed(17);
  Rng rng(8);
  Shape x_shape{batch};
  x_shape.insert(x_shape.end(), example.begin(), example.end());
  const Tensor x = random_tensor(x_shape, rng);
  Pass pass;
  const Tensor& y = graph.forward(x, Mode::train);
  pass.output = y.to_vector();
  graph.backward(random_tensor(y.shape(), rng));
  for (auto& [name, p] : graph.named_parameters()) pass.grads.push_back(p->grad.to_vector());
  pass.output_bytes = graph.activation_memory(batch).outputs;
  return pass;
}

void expect_same_bits(const Pass& reused, const Pass& own) {
  EXPECT_EQ(reused.output, own.output) << "output";
  ASSERT_EQ(reused.grads.size(), own.grads.size());
  for (size_t i = 0; i < own.grads.size(); ++i) EXPECT_EQ(reused.grads[i], own.grads[i]) << "parameter " << i;
}

TEST(GraphOutputReuse, EveryLayerTypeGivesTheSameBitsInLessMemory) {
  const Pass reused = forward_backward(kEveryLayer, {8, 8, 3}, true);
  const Pass own = forward_backward(kEveryLayer, {8, 8, 3}, false);
  expect_same_bits(reused, own);
  EXPECT_LT(reused.output_bytes, own.output_bytes);
}

TEST(GraphOutputReuse, ResNet20GivesTheSameBitsInLessMemory) {
  const std::string yaml = "model: {name: resnet20, num_classes: 10}\n";
  const Pass reused = forward_backward(yaml, {8, 8, 3}, true, 2);
  const Pass own = forward_backward(yaml, {8, 8, 3}, false, 2);
  expect_same_bits(reused, own);
  // No backward reads a batchnorm's output (a relu or an add reads it, and neither needs its input
  // in backward) or an add's (a relu reads it): 3 of each block's 7 outputs share buffers.
  EXPECT_LT(reused.output_bytes, own.output_bytes * 9 / 10);
}

// conv -> relu -> max_pool -> flatten -> linear at batch 2. Kept: relu (its backward reads its
// output), flatten (the linear reads it), the linear's (the net's output). Shared: conv's output
// (live while conv and relu run) and max_pool's (while pool and flatten run) take one buffer, the
// larger of the two.
TEST(GraphOutputReuse, AChainSharesWhatNoBackwardReads) {
  auto backend = make_cpu_backend();
  Graph graph;
  add_model_layers(parse_config(R"(model:
  name: sequential
  layers:
    - {type: conv, out_channels: 4, kernel: 3, padding: 1}
    - {type: relu}
    - {type: max_pool, kernel: 2}
    - {type: flatten}
    - {type: linear, out_features: 5}
)",
                                "chain.yaml")
                       .model,
                   {6, 6, 2}, graph);
  graph.plan({6, 6, 2}, *backend);
  const int64_t conv = 6 * 6 * 4, relu = conv, pool = 3 * 3 * 4, flat = pool, fc = 5;
  EXPECT_EQ(graph.activation_memory(2).outputs, 2 * 4 * (relu + flat + fc + std::max(conv, pool)));
}

// GELU's arithmetic, claiming falsely that its backward does not read its input.
class MisdeclaredGelu final : public Activation {
 public:
  using Activation::Activation;
  std::string type() const override { return "gelu"; }
  void forward(const Tensor& x, Tensor& y, Mode) override { backend().gelu_forward(x, y); }
  void backward(const Tensor& x, const Tensor&, const Tensor& dy, Tensor* dx) override {
    if (dx) backend().gelu_backward(x, dy, *dx);
  }
  bool backward_reads_input() const override { return false; }  // the planted lie
  bool backward_reads_output() const override { return false; }
};

// conv -> scale -> gelu (lying) -> relu -> max_pool -> identity -> flatten -> linear: the scale's
// output shares a buffer with the identity's, so it is garbage when the gelu's backward reads it,
// and the conv's weight gradient (through that backward) changes.
TEST(GraphOutputReuse, ALayerMisdeclaringWhatItReadsIsCaught) {
  const auto gradient = [](bool reuse) {
    auto backend = make_cpu_backend();
    Graph graph;
    graph.add(std::make_unique<Conv2d>("conv", 2, 1), "conv");
    graph.add(std::make_unique<Scale>("scale", 3.0f), "scale");
    graph.add(std::make_unique<MisdeclaredGelu>("gelu"), "gelu");
    graph.add(std::make_unique<ReLU>("relu"), "relu");
    graph.add(std::make_unique<MaxPool2d>("pool", 2), "pool");
    graph.add(std::make_unique<Identity>("same"), "same");
    graph.add(std::make_unique<Flatten>("flat"), "flat");
    graph.add(std::make_unique<Linear>("fc", 3), "fc");
    graph.set_output_reuse(reuse);
    Rng init(1);
    graph.build({4, 4, 2}, *backend, init);
    Rng rng(2);
    const Tensor x = random_tensor({2, 4, 4, 2}, rng);
    const Tensor& y = graph.forward(x, Mode::train);
    graph.backward(random_tensor(y.shape(), rng));
    return graph.named_parameters()[0].second->grad.to_vector();  // conv.weight
  };
  EXPECT_NE(gradient(true), gradient(false));
}

}  // namespace
}  // namespace convnet
