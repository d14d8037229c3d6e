// bf16 activation storage (train.precision bf16, Graph::set_bf16_storage): a groups-1 conv output
// that only batchnorms read, and a relu output that only groups-1 conv and linear layers read, are
// stored bf16. Checked on the cpu backend (the reference
// for cuda and cudnn, where it halves those outputs' traffic and removes the readers' conversion
// passes): which outputs are stored bf16, that training is bit-identical to f32 storage (the
// readers round their operands to bf16 anyway), and that the memory summary counts half the bytes.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/optim/sgd.h"
#include "core/train/graph.h"
#include "models/model_builder.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::random_tensor;

// Each output's readers, and so its storage in bf16 precision, are listed below.
constexpr const char* kModel = R"(model:
  name: sequential
  layers:
    - {type: conv, name: c1, out_channels: 8, kernel: 3, padding: 1}
    - {type: batch_norm, name: bn1}
    - {type: relu, name: r1}
    - {type: conv, name: c2, out_channels: 8, kernel: 3, padding: 1}
    - {type: relu, name: r2}
    - {type: conv, name: c3, out_channels: 8, kernel: 3, padding: 1}
    - {type: add, name: sum, from: [r2, c3]}
    - {type: relu, name: r3}
    - {type: conv, name: g, out_channels: 8, kernel: 3, padding: 1, groups: 2}
    - {type: relu, name: r4}
    - {type: max_pool, name: pool, kernel: 2}
    - {type: flatten, name: flat}
    - {type: linear, name: fc1, out_features: 16}
    - {type: relu, name: r5}
    - {type: linear, name: fc2, out_features: 3}
)";
// c1: bn1 (bf16). r1: c2 (bf16). c2: a relu (f32). r2: c3 and the add (f32). r3: a grouped conv
// (f32). r4: a pool (f32). r5: fc2 (bf16).
const std::vector<std::string> kBf16Outputs = {"c1", "r1", "r5"};
const Shape kExample = {6, 6, 3};

void build(Graph& graph, Backend& backend, const std::string& yaml, const Shape& example, bool bf16_storage) {
  add_model_layers(parse_config(yaml, "storage.yaml").model, example, graph);
  graph.set_bf16_storage(bf16_storage);
  graph.plan(example, backend);
  Rng init(5);
  graph.allocate_parameters(init);
}

std::vector<std::string> bf16_outputs(const Graph& graph) {
  std::vector<std::string> names;
  for (size_t i = 0; i < graph.size(); ++i)
    if (graph.output_dtype(i) == DType::bf16) names.push_back(graph.layer(i).name());
  return names;
}

TEST(Bf16Storage, ConvOutputsForBatchNormAndReluOutputsForConvAndLinearAreBf16InBf16PrecisionOnly) {
  for (const Precision prec : {Precision::fp32, Precision::tf32, Precision::bf16}) {
    for (const bool storage : {true, false}) {
      SCOPED_TRACE(::testing::Message() << precision_name(prec) << (storage ? " storage on" : " storage off"));
      auto be = make_cpu_backend(prec);
      Graph graph;
      build(graph, *be, kModel, kExample, storage);
      const bool expect = prec == Precision::bf16 && storage;
      EXPECT_EQ(bf16_outputs(graph), expect ? kBf16Outputs : std::vector<std::string>{});
    }
  }
}

// A trained run: every parameter's bits after the steps, the last train output and an eval
// output, and the output bytes the memory summary counts.
struct Trained {
  std::vector<std::vector<float>> params;
  std::vector<float> train_out, eval_out;
  int64_t output_bytes = 0;
  std::vector<std::string> bf16_outputs;
};

Trained train(const std::string& yaml, const Shape& example, bool bf16_storage, int steps) {
  auto be = make_cpu_backend(Precision::bf16);
  Graph graph;
  build(graph, *be, yaml, example, bf16_storage);
  OptimizerConfig oc;
  oc.momentum = 0.9;
  oc.weight_decay = 5e-4;
  Sgd sgd(oc, make_parameter_groups(oc, graph.named_parameters(), graph.parameter_backends()));
  Shape x_shape{4};
  x_shape.insert(x_shape.end(), example.begin(), example.end());
  Trained run;
  for (int step = 1; step <= steps; ++step) {
    Rng rng(static_cast<uint64_t>(step));
    const Tensor x = random_tensor(x_shape, rng);  // backward reads it
    const Tensor& y = graph.forward(x, Mode::train);
    run.train_out = y.to_vector();
    graph.backward(random_tensor(y.shape(), rng));
    sgd.step(0.05);
  }
  Rng eval_rng(99);
  run.eval_out = graph.forward(random_tensor(x_shape, eval_rng), Mode::eval).to_vector();
  for (auto& [name, p] : graph.named_parameters()) run.params.push_back(p->value.to_vector());
  run.output_bytes = graph.activation_memory(4).outputs;
  run.bf16_outputs = bf16_outputs(graph);
  return run;
}

void expect_same_bits(const Trained& a, const Trained& b) {
  EXPECT_EQ(a.train_out, b.train_out) << "train output";
  EXPECT_EQ(a.eval_out, b.eval_out) << "eval output";
  ASSERT_EQ(a.params.size(), b.params.size());
  for (size_t i = 0; i < a.params.size(); ++i) EXPECT_EQ(a.params[i], b.params[i]) << "parameter " << i;
}

TEST(Bf16Storage, TrainingIsBitIdenticalToF32StorageInHalfTheBytesOfThoseOutputs) {
  const Trained bf16 = train(kModel, kExample, true, 5), f32 = train(kModel, kExample, false, 5);
  ASSERT_EQ(bf16.bf16_outputs, kBf16Outputs);
  expect_same_bits(bf16, f32);
  // c1 and r1: [6, 6, 8] per example, r5: [16]; at batch 4, 2 bytes saved per element.
  EXPECT_EQ(f32.output_bytes - bf16.output_bytes, 4 * (2 * 6 * 6 * 8 + 16) * 2);
}

// ResNet-20: every conv output (each is read by its batchnorm alone) and each block's first relu
// (read by its second conv) are stored bf16: 19 + 9. Block outputs are read by the next block's
// add or shortcut too, and stay f32.
TEST(Bf16Storage, ResNet20StoresConvOutputsAndInnerRelusBf16AndKeepsTheBits) {
  const std::string yaml = "model: {name: resnet20, num_classes: 10}\n";
  const Trained bf16 = train(yaml, {8, 8, 3}, true, 2), f32 = train(yaml, {8, 8, 3}, false, 2);
  EXPECT_EQ(bf16.bf16_outputs.size(), 28u);
  EXPECT_TRUE(f32.bf16_outputs.empty());
  expect_same_bits(bf16, f32);
  EXPECT_LT(bf16.output_bytes, f32.output_bytes);
}

// Per-layer backends: a reader on another backend of the same device still takes bf16 (all
// are cpu here); an fp32 layer neither reads nor writes bf16, so r1 (read by c2) and c2 stay f32.
TEST(Bf16Storage, AReaderInAnotherPrecisionKeepsTheOutputF32) {
  auto bf16 = make_cpu_backend(Precision::bf16), fp32 = make_cpu_backend(Precision::fp32);
  Graph graph;
  add_model_layers(parse_config(kModel, "storage.yaml").model, kExample, graph);
  graph.plan(kExample, *bf16, {{"c2", fp32.get()}});
  EXPECT_EQ(bf16_outputs(graph), (std::vector<std::string>{"c1", "r5"}));
}

}  // namespace
}  // namespace convnet
