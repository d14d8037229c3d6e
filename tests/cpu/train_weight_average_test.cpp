// WeightAverage on a tiny conv + batchnorm + linear graph: which tensors are averaged, the update
// against float64, the decay schedule, lookahead write-back, ema swapping next to SGD, and the
// checkpoint layout (ema: averaged model + raw.*, lookahead: ema.*) with its round trip.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <set>

#include "core/base/error.h"
#include "core/cpu/cpu_backend.h"
#include "core/io/safetensors.h"
#include "core/optim/sgd.h"
#include "core/optim/weight_average.h"
#include "core/train/checkpoint.h"
#include "core/train/trainer.h"
#include "models/model_builder.h"
#include "tests/common/test_util.h"
#include "tests/common/tiny_graph.h"

namespace convnet {
namespace {

using testing::TempDir;

void build_tiny(Graph& graph, Backend& backend, uint64_t seed) {
  testing::build_tiny_graph(graph, backend, seed, /*batch_norm=*/true);
}

EmaConfig ema_config(const std::string& mode, int every = 1, double decay = 0.9, double power = 0) {
  EmaConfig c;
  c.mode = mode;
  c.every = every;
  c.decay = decay;
  c.decay_power = power;
  return c;
}

// Every averaged tensor's current value, by name, in float64.
std::map<std::string, std::vector<double>> snapshot(WeightAverage& avg, bool average) {
  std::map<std::string, std::vector<double>> out;
  for (AveragedTensor& t : avg.tensors()) out[t.name] = testing::to_double(average ? t.average : *t.current);
  return out;
}

// Gives every averaged tensor new random values (positive, so batchnorm variances stay valid).
void perturb(WeightAverage& avg, Rng& rng) {
  for (AveragedTensor& t : avg.tensors()) {
    const Tensor r = testing::random_tensor(t.current->shape(), rng, 0.1f, 2.0f);
    std::memcpy(t.current->raw(), r.raw(), r.bytes());
  }
}

class WeightAverageTest : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> backend_ = make_cpu_backend();
  Graph graph_;
  void SetUp() override { build_tiny(graph_, *backend_, 3); }
};

TEST_F(WeightAverageTest, AveragesTrainableParametersAndFloatBuffers) {
  graph_.layer(0).parameters()[1]->frozen = true;  // layers.0.bias never changes: not averaged
  std::set<std::string> names;
  for (const AveragedTensor& t : weight_average_targets(graph_)) names.insert(t.name);
  const std::set<std::string> expected = {"layers.0.weight",       "layers.1.weight",      "layers.1.bias",
                                          "layers.1.running_mean", "layers.1.running_var", "layers.4.weight",
                                          "layers.4.bias"};
  EXPECT_EQ(names, expected);  // not num_batches_tracked (i32), not the frozen bias
}

TEST_F(WeightAverageTest, StartsAsACopyAndUpdatesLikeFloat64) {
  WeightAverage avg(ema_config("ema"), weight_average_targets(graph_));
  std::map<std::string, std::vector<double>> expected = snapshot(avg, false);
  for (AveragedTensor& t : avg.tensors()) EXPECT_NE(t.average.raw(), t.current->raw()) << t.name;
  EXPECT_EQ(snapshot(avg, true), expected);
  Rng rng(4);
  for (double decay : {0.9, 0.25, 0.0}) {
    perturb(avg, rng);
    const auto current = snapshot(avg, false);
    avg.update(decay);
    for (AveragedTensor& t : avg.tensors()) {
      std::vector<double>& e = expected[t.name];
      for (size_t i = 0; i < e.size(); ++i) e[i] = decay * e[i] + (1 - decay) * current.at(t.name)[i];
      EXPECT_TRUE(testing::close_l2(t.average, e, 1e-6)) << t.name << " decay " << decay;
    }
    EXPECT_EQ(snapshot(avg, false), current);  // ema mode leaves the weights alone
  }
}

TEST(WeightAverageSchedule, DecayFollowsTheProgressPower) {
  EXPECT_DOUBLE_EQ(WeightAverage::decay_at(ema_config("ema", 5, 0.5, 2.0), 5, 10), 0.125);
  EXPECT_DOUBLE_EQ(WeightAverage::decay_at(ema_config("ema", 5, 0.5, 2.0), 10, 10), 0.5);
  EXPECT_DOUBLE_EQ(WeightAverage::decay_at(ema_config("ema", 5, 0.5, 0.0), 3, 10), 0.5);
  EXPECT_DOUBLE_EQ(WeightAverage::decay_at(ema_config("ema", 5, 0.5, 0.0), 0, 10), 0.5);
  // airbench94: 0.95^5 * (step / total)^3
  EXPECT_NEAR(WeightAverage::decay_at(ema_config("lookahead", 5, 0.7737809375, 3.0), 50, 100), 0.0967226171875, 1e-15);
}

TEST_F(WeightAverageTest, EveryNthStepUpdatesAndLookaheadWritesBack) {
  for (const char* mode : {"ema", "lookahead"}) {
    SCOPED_TRACE(mode);
    Graph graph;
    build_tiny(graph, *backend_, 5);
    const EmaConfig config = ema_config(mode, 3, 0.5, 1.0);
    WeightAverage avg(config, weight_average_targets(graph));
    const bool lookahead = std::string(mode) == "lookahead";
    const int64_t total = 13, steps_per_epoch = 13;
    const int64_t first = WeightAverage::first_update_step(config, steps_per_epoch);
    ASSERT_EQ(first, 3);  // the first multiple of `every`: the average starts there
    Rng rng(6);
    for (int64_t step = 1; step <= total; ++step) {
      perturb(avg, rng);
      const auto before_avg = snapshot(avg, true), current = snapshot(avg, false);
      avg.after_step(step, total, steps_per_epoch);
      if (step <= first) {
        EXPECT_EQ(snapshot(avg, true), current) << "step " << step;  // a copy until it starts
      } else if (step % 3 != 0) {
        EXPECT_EQ(snapshot(avg, true), before_avg) << "step " << step;
      } else {
        const double d = 0.5 * static_cast<double>(step) / static_cast<double>(total);
        for (AveragedTensor& t : avg.tensors()) {
          std::vector<double> e = before_avg.at(t.name);
          for (size_t i = 0; i < e.size(); ++i) e[i] = d * e[i] + (1 - d) * current.at(t.name)[i];
          EXPECT_TRUE(testing::close_l2(t.average, e, 1e-6)) << t.name << " step " << step;
        }
      }
      // Lookahead: the weights are the average after each update and after the last step.
      const bool written_back = lookahead && step > first && (step % 3 == 0 || step == total);
      EXPECT_EQ(snapshot(avg, false), written_back ? snapshot(avg, true) : current) << "step " << step;
    }
  }
}

TEST(WeightAverageSchedule, StartEpochsDelaysTheFirstUpdate) {
  EmaConfig c = ema_config("lookahead", 5, 0.5);
  c.start_epochs = 3;
  // fast94: 48 steps per epoch, so epoch 3 is steps 145-192, and 145 is a multiple of 5.
  EXPECT_EQ(WeightAverage::first_update_step(c, 48), 145);
  EXPECT_EQ(WeightAverage::first_update_step(c, 49), 150);  // epoch 3 starts at step 148
  EXPECT_EQ(WeightAverage::first_update_step(c, 50), 155);  // step 150 is still in epoch 2
  c.start_epochs = 0;
  EXPECT_EQ(WeightAverage::first_update_step(c, 48), 5);
  c.start_epochs = 0.5;
  c.every = 1;
  EXPECT_EQ(WeightAverage::first_update_step(c, 10), 6);
}

TEST_F(WeightAverageTest, LookaheadEndOfEpochWritesBackOnlyAfterTheStart) {
  EmaConfig config = ema_config("lookahead", 2, 0.5);
  config.start_epochs = 1;
  WeightAverage avg(config, weight_average_targets(graph_));
  const int64_t steps_per_epoch = 3, total = 9;
  ASSERT_EQ(WeightAverage::first_update_step(config, steps_per_epoch), 4);
  Rng rng(8);
  for (int64_t step = 1; step <= total; ++step) {
    perturb(avg, rng);
    avg.after_step(step, total, steps_per_epoch);
    if (step % steps_per_epoch != 0) continue;
    perturb(avg, rng);  // weights that differ from the average at the epoch's end
    const auto current = snapshot(avg, false), average = snapshot(avg, true);
    avg.end_epoch(step, steps_per_epoch);
    EXPECT_EQ(snapshot(avg, false), step >= 4 ? average : current) << "step " << step;
  }
}

TEST_F(WeightAverageTest, EmaSwapLeavesTheRawWeightsTraining) {
  OptimizerConfig oc;
  oc.momentum = 0.5;
  oc.weight_decay = 0;
  Sgd sgd(oc, make_parameter_groups(oc, graph_.named_parameters(), graph_.parameter_backends()));
  WeightAverage avg(ema_config("ema", 1, 0.5), weight_average_targets(graph_));
  Parameter& w = *graph_.layer(4).parameters()[0];  // layers.4.weight
  AveragedTensor* target = nullptr;
  for (AveragedTensor& t : avg.tensors())
    if (t.current == &w.value) target = &t;
  ASSERT_NE(target, nullptr);
  for (auto& [name, p] : graph_.named_parameters()) p->grad.fill(1.0f);
  const std::vector<double> w0 = testing::to_double(w.value);
  sgd.step(0.1);  // buf = 1, w1 = w0 - 0.1
  avg.update(0.5);
  const std::vector<double> avg1 = testing::to_double(target->average);
  const Tensor raw_storage = w.value;  // shares the raw storage
  {
    const AverageSwapGuard guard(&avg);
    EXPECT_EQ(testing::to_double(w.value), avg1);         // the model now shows the average
    EXPECT_EQ(target->average.raw(), raw_storage.raw());  // handles exchanged, nothing copied
    graph_.forward(Tensor::full({2, 4, 4, 3}, 0.5f), Mode::eval);
  }
  EXPECT_EQ(w.value.raw(), raw_storage.raw());  // the raw storage is back
  sgd.step(0.1);                                // buf = 0.5 * 1 + 1 = 1.5, w2 = w1 - 0.15
  std::vector<double> expected = w0;
  for (double& v : expected) v -= 0.1 + 0.15;
  EXPECT_TRUE(testing::close_l2(w.value, expected, 1e-6));
  EXPECT_EQ(testing::to_double(target->average), avg1);  // SGD never touched the average
  for (double v : testing::to_double(w.grad)) EXPECT_EQ(v, 1.0);
}

TEST_F(WeightAverageTest, LookaheadSwapGuardIsANoOp) {
  WeightAverage avg(ema_config("lookahead"), weight_average_targets(graph_));
  Parameter& w = *graph_.layer(0).parameters()[0];
  const void* raw = w.value.raw();
  {
    const AverageSwapGuard guard(&avg);
    EXPECT_EQ(w.value.raw(), raw);
  }
  const AverageSwapGuard none(nullptr);
}

TEST(WeightAverageConfig, BadSettingsAreConfigErrors) {
  EXPECT_THROW(WeightAverage(ema_config("none"), {}), ConfigError);
  EXPECT_THROW(WeightAverage(ema_config("swa"), {}), ConfigError);
  EXPECT_THROW(WeightAverage(ema_config("ema", 0), {}), ConfigError);
  EXPECT_THROW(WeightAverage(ema_config("ema", 1, 1.5), {}), ConfigError);
}

// Checkpoints: ema stores the average as the model and the raw weights as raw.*; lookahead stores
// the weights as the model and the average as ema.*. Loading restores both exactly.
TEST_F(WeightAverageTest, CheckpointLayoutAndRoundTrip) {
  for (const char* mode : {"ema", "lookahead"}) {
    SCOPED_TRACE(mode);
    const bool ema = std::string(mode) == "ema";
    Graph a;
    build_tiny(a, *backend_, 7);
    OptimizerConfig oc;
    Sgd sgd_a(oc, make_parameter_groups(oc, a.named_parameters(), a.parameter_backends()));
    WeightAverage avg_a(ema_config(mode), weight_average_targets(a));
    Rng rng(8);
    perturb(avg_a, rng);
    avg_a.update(0.5);
    perturb(avg_a, rng);  // the weights differ from the average now
    TempDir dir;
    save_checkpoint(dir.file("c.safetensors"), a, &sgd_a, TrainingState{}, &avg_a);
    const SafetensorsFile f = read_safetensors(dir.file("c.safetensors"));
    EXPECT_EQ(f.metadata.at("convnet.ema"), mode);
    for (AveragedTensor& t : avg_a.tensors()) {
      if (t.name != "layers.1.running_mean" && t.name != "layers.1.bias") continue;  // same layout in the file
      const Tensor* model = f.find(t.name);
      const Tensor* extra = f.find(std::string(ema ? "raw." : "ema.") + t.name);
      ASSERT_TRUE(model && extra) << t.name;
      EXPECT_EQ(model->to_vector(), (ema ? t.average : *t.current).to_vector()) << t.name;
      EXPECT_EQ(extra->to_vector(), (ema ? *t.current : t.average).to_vector()) << t.name;
    }

    Graph b;
    build_tiny(b, *backend_, 9);
    Sgd sgd_b(oc, make_parameter_groups(oc, b.named_parameters(), b.parameter_backends()));
    WeightAverage avg_b(ema_config(mode), weight_average_targets(b));
    load_checkpoint(dir.file("c.safetensors"), b, &sgd_b, &avg_b);
    EXPECT_EQ(snapshot(avg_b, false), snapshot(avg_a, false));
    EXPECT_EQ(snapshot(avg_b, true), snapshot(avg_a, true));

    // Evaluation (no optimizer, no average) loads the model tensors: the average for ema.
    Graph c;
    build_tiny(c, *backend_, 10);
    load_checkpoint(dir.file("c.safetensors"), c, nullptr);
    WeightAverage view_c(ema_config("lookahead"), weight_average_targets(c));
    EXPECT_EQ(snapshot(view_c, false), ema ? snapshot(avg_a, true) : snapshot(avg_a, false));

    // Resuming with another averaging mode is an Error that says so.
    Graph d;
    build_tiny(d, *backend_, 11);
    Sgd sgd_d(oc, make_parameter_groups(oc, d.named_parameters(), d.parameter_backends()));
    const std::string err = testing::error_of([&] { load_checkpoint(dir.file("c.safetensors"), d, &sgd_d); });
    EXPECT_NE(err.find(std::string("ema.mode ") + mode), std::string::npos) << err;
  }
}

TEST_F(WeightAverageTest, ResumingWithAveragingFromACheckpointWithoutItIsAnError) {
  OptimizerConfig oc;
  Sgd sgd(oc, make_parameter_groups(oc, graph_.named_parameters(), graph_.parameter_backends()));
  TempDir dir;
  save_checkpoint(dir.file("plain.safetensors"), graph_, &sgd, TrainingState{});
  WeightAverage avg(ema_config("ema"), weight_average_targets(graph_));
  const std::string err =
      testing::error_of([&] { load_checkpoint(dir.file("plain.safetensors"), graph_, &sgd, &avg); });
  EXPECT_NE(err.find("no weight-average state"), std::string::npos) << err;
  EXPECT_NE(err.find("plain.safetensors"), std::string::npos) << err;
}

}  // namespace
}  // namespace convnet
