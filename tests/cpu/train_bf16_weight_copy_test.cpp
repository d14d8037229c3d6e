// The bf16 weight copies of train.precision bf16 (Parameter::bf16_copy): which weights keep one,
// that the optimizer keeps them current and every other write to a weight (weight averaging, a
// swap, a checkpoint load) retires them, and that training with them is bit-identical to training
// without, on the cpu backend (the reference for cuda and cudnn, where they save conversions).
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/layers/conv2d.h"
#include "core/optim/sgd.h"
#include "core/optim/weight_average.h"
#include "core/train/checkpoint.h"
#include "core/train/graph.h"
#include "core/train/trainer.h"
#include "models/model_builder.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::random_tensor;

// Ungrouped convs and linear layers keep copies; the grouped conv, the batchnorm and the biases
// do not.
constexpr const char* kModel = R"(model:
  name: sequential
  layers:
    - {type: conv, name: conv1, out_channels: 4, kernel: 3, padding: 1}
    - {type: batch_norm, name: bn1}
    - {type: relu}
    - {type: conv, name: grouped, out_channels: 4, kernel: 3, padding: 1, groups: 2, bias: false}
    - {type: relu}
    - {type: flatten}
    - {type: linear, name: fc, out_features: 3}
)";

void build(Graph& graph, Backend& backend) {
  const Config config = parse_config(kModel, "copies.yaml");
  add_model_layers(config.model, {6, 6, 3}, graph);
  graph.plan({6, 6, 3}, backend);
  Rng init(3);
  graph.allocate_parameters(init);
}

std::vector<std::string> with_copies(Graph& graph, bool current) {
  std::vector<std::string> names;
  for (auto& [name, p] : graph.named_parameters())
    if (p->bf16_copy.defined() && (!current || p->bf16_copy_current)) names.push_back(name);
  return names;
}

TEST(Bf16WeightCopy, UngroupedConvAndLinearWeightsKeepOneInBf16Only) {
  for (const Precision prec : {Precision::fp32, Precision::tf32, Precision::bf16}) {
    auto be = make_cpu_backend(prec);
    Graph graph;
    build(graph, *be);
    const std::vector<std::string> expected = prec == Precision::bf16
                                                  ? std::vector<std::string>{"layers.0.weight", "layers.6.weight"}
                                                  : std::vector<std::string>{};
    EXPECT_EQ(with_copies(graph, false), expected) << precision_name(prec);
    EXPECT_TRUE(with_copies(graph, true).empty()) << "nothing is current before an update";
  }
}

// A bf16 graph of kModel with its optimizer, and one training step of it on data from Rng(seed).
struct Bf16Net {
  std::unique_ptr<Backend> backend = make_cpu_backend(Precision::bf16);
  Graph graph;
  std::unique_ptr<Sgd> sgd;
  Bf16Net();
  void step(uint64_t seed) {
    Rng rng(seed);
    const Tensor x = random_tensor({4, 6, 6, 3}, rng);  // backward reads it
    graph.forward(x, Mode::train);
    graph.backward(random_tensor({4, 3}, rng));
    sgd->step(0.05);
  }
};

OptimizerConfig sgd_config() {
  OptimizerConfig oc;
  oc.momentum = 0.9;
  oc.nesterov = true;
  oc.weight_decay = 5e-4;
  return oc;
}

Bf16Net::Bf16Net() {
  build(graph, *backend);
  const OptimizerConfig oc = sgd_config();
  sgd = std::make_unique<Sgd>(oc, make_parameter_groups(oc, graph.named_parameters(), graph.parameter_backends()));
}

EmaConfig average_config(const std::string& mode) {
  EmaConfig c;
  c.mode = mode;
  c.every = 2;
  c.decay = 0.6;
  return c;
}

// Eight SGD steps in bf16 precision, with weight averaging (lookahead writes the weights every
// other step; ema swaps them in for an eval forward at step 4), keeping the copies or dropping
// them. Returns every parameter's bits and the last eval output.
struct TrainedRun {
  std::vector<std::vector<float>> params;
  std::vector<float> eval_out;
  int used_copies = 0;  // updates after which a copy was current
};
TrainedRun train(const std::string& average_mode, bool keep_copies) {
  Bf16Net net;
  Graph& graph = net.graph;
  if (!keep_copies)
    for (auto& [name, p] : graph.named_parameters()) p->bf16_copy = Tensor();
  WeightAverage average(average_config(average_mode), weight_average_targets(graph));
  Rng eval_rng(9);
  const Tensor eval_x = random_tensor({4, 6, 6, 3}, eval_rng);
  TrainedRun run;
  constexpr int kSteps = 8;
  for (int step = 1; step <= kSteps; ++step) {
    net.step(static_cast<uint64_t>(step));
    run.used_copies += static_cast<int>(with_copies(graph, true).size());
    average.after_step(step, kSteps, 4);
    if (step % 4 == 0) average.end_epoch(step, 4);
    if (step == 4) {
      const AverageSwapGuard guard(&average);
      graph.forward(eval_x, Mode::eval);
    }
  }
  for (auto& [name, p] : graph.named_parameters()) run.params.push_back(p->value.to_vector());
  run.eval_out = graph.forward(eval_x, Mode::eval).to_vector();
  return run;
}

TEST(Bf16WeightCopy, TrainingWithCopiesIsBitIdenticalToTrainingWithout) {
  for (const char* mode : {"ema", "lookahead"}) {
    SCOPED_TRACE(mode);
    const TrainedRun with = train(mode, true), without = train(mode, false);
    EXPECT_GT(with.used_copies, 0) << "the copies were never used: the comparison proves nothing";
    EXPECT_EQ(without.used_copies, 0);
    ASSERT_EQ(with.params.size(), without.params.size());
    for (size_t i = 0; i < with.params.size(); ++i) EXPECT_EQ(with.params[i], without.params[i]) << "parameter " << i;
    EXPECT_EQ(with.eval_out, without.eval_out);
  }
}

// What the comparison above guards against: a copy left current after its weight was written
// gives the old weight's results.
TEST(Bf16WeightCopy, AStaleCopyWouldChangeTheResult) {
  Bf16Net net;
  net.step(6);
  Parameter& w = *net.graph.named_parameters()[0].second;
  ASSERT_TRUE(w.bf16_copy_current);
  // The update wrote it: it holds the new weight, not the one the step's passes read.
  ASSERT_TRUE(testing::bitwise_equal(w.bf16_copy, testing::bf16_tensor(w.value)));
  net.backend->axpby(0.0f, w.value, 2.0f, w.value);  // the weight doubled behind the copy's back
  Rng rng(8);
  const Tensor x = random_tensor({4, 6, 6, 3}, rng);
  const std::vector<float> stale = net.graph.forward(x, Mode::eval).to_vector();
  w.value_written();
  EXPECT_NE(net.graph.forward(x, Mode::eval).to_vector(), stale);
}

// A retired copy is written again by the next pass that reads it, from the value it then holds.
TEST(Bf16WeightCopy, TheNextPassRewritesARetiredCopy) {
  Bf16Net net;
  Parameter& w = *net.graph.named_parameters()[0].second;
  ASSERT_FALSE(w.bf16_copy_current);                          // initialized: never written
  std::memset(w.bf16_copy.raw(), 0xff, w.bf16_copy.bytes());  // NaN bit patterns
  Rng rng(10);
  net.graph.forward(random_tensor({4, 6, 6, 3}, rng), Mode::eval);
  EXPECT_TRUE(w.bf16_copy_current);
  EXPECT_TRUE(testing::bitwise_equal(w.bf16_copy, testing::bf16_tensor(w.value)));
}

// A conv layer's backward in bf16 converts dy once for both of its passes: the bits of the two
// passes on the f32 dy, as the ops compute them.
TEST(Bf16WeightCopy, AConvBackwardSharesOneBf16DyAndKeepsTheBits) {
  auto be = make_cpu_backend(Precision::bf16);
  Conv2d conv("conv", 6, 3, 1, 1, 1, true);
  conv.configure({7, 5, 4});
  conv.set_backend(*be);
  conv.allocate_parameters();
  Rng rng(12);
  conv.initialize(rng);
  const Tensor x = random_tensor({2, 7, 5, 4}, rng), dy = random_tensor({2, 7, 5, 6}, rng);
  Tensor y = testing::poisoned({2, 7, 5, 6}), dx = testing::poisoned(x.shape());
  conv.forward(x, y, Mode::train);
  conv.backward(x, y, dy, &dx);
  Parameter& w = *conv.parameters()[0];
  Parameter& b = *conv.parameters()[1];
  Tensor want_dx = testing::poisoned(x.shape()), want_dw = testing::poisoned(w.value.shape());
  Tensor want_db = testing::poisoned({6});
  be->conv2d_backward_data(dy, w.value, want_dx, conv.conv_params());
  be->conv2d_backward_filter(x, dy, want_dw, &want_db, conv.conv_params());
  EXPECT_TRUE(testing::bitwise_equal(dx, want_dx));
  EXPECT_TRUE(testing::bitwise_equal(w.grad, want_dw));
  EXPECT_TRUE(testing::bitwise_equal(b.grad, want_db));
}

TEST(Bf16WeightCopy, WritesOtherThanTheUpdateRetireTheCopies) {
  Bf16Net net;
  Graph& graph = net.graph;
  Sgd& sgd = *net.sgd;
  const auto update = [&] {
    net.step(7);
    ASSERT_EQ(with_copies(graph, true).size(), 2u);
  };
  const testing::TempDir dir;
  update();
  save_checkpoint(dir.file("c.safetensors"), graph, &sgd, TrainingState{});
  load_checkpoint(dir.file("c.safetensors"), graph, &sgd);
  EXPECT_TRUE(with_copies(graph, true).empty()) << "load_checkpoint";
  update();
  load_model_weights(dir.file("c.safetensors"), graph);
  EXPECT_TRUE(with_copies(graph, true).empty()) << "load_model_weights";

  WeightAverage lookahead(average_config("lookahead"), weight_average_targets(graph));
  update();
  lookahead.after_step(4, 8, 1);  // past the start, on an `every` step: the weights are written
  EXPECT_TRUE(with_copies(graph, true).empty()) << "lookahead";
  WeightAverage ema(average_config("ema"), weight_average_targets(graph));
  update();
  { const AverageSwapGuard guard(&ema); }
  EXPECT_TRUE(with_copies(graph, true).empty()) << "ema swap";
  update();
  Rng init(4);
  for (size_t i = 0; i < graph.size(); ++i) graph.layer(i).initialize(init);
  EXPECT_TRUE(with_copies(graph, true).empty()) << "initialize";
}

}  // namespace
}  // namespace convnet
