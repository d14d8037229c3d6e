// End-to-end training on the GPU backends: a small VGG (conv-BN-ReLU, max pool, average pool,
// linear) built from the same seed on cpu, cuda and cudnn, trained for five SGD steps on the same
// batch with the trainer's step (TrainStep, statistics summed on the device). The losses must
// follow the cpu's, two `cuda` runs must end with bit-identical parameters (no float atomics,
// fixed reduction orders), and a graph mixing cuda and cudnn layers (per-layer backends on one
// device, no synchronize between them) must follow the cpu as well.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "core/base/backend.h"
#include "core/base/rng.h"
#include "core/config/config.h"
#include "core/cpu/cpu_backend.h"
#include "core/optim/sgd.h"
#include "core/train/conv_bn_fusion.h"
#include "core/train/graph.h"
#include "core/train/train_step.h"
#include "cuda/device.h"
#include "models/model_builder.h"
#include "tests/common/gpu_skip.h"
#include "tests/common/gpu_test_util.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

constexpr int kSteps = 5;
constexpr int64_t kBatch = 16;
constexpr float kSmoothing = 0.1f;
const Shape kExample = {8, 8, 3};

struct TrainRun {
  std::vector<double> losses;                              // one per step
  std::vector<std::pair<std::string, Tensor>> parameters;  // final values, on the host
  int fused_pairs = 0;                                     // conv -> batch_norm pairs fused
  int bf16_outputs = 0;                                    // outputs stored bf16 (Graph::output_dtype)
};

// Five training steps on `backend` (and `layer_backends` for the layers they name), as the trainer
// does them (TrainStep). Graph, data and optimizer are identical across calls. Each step's loss is
// the growth of the device-side loss sum, read back after the step's forward.
// What a run varies besides its backends: each must leave the results as they are (or close).
struct RunOptions {
  ConvBnFusion fusion = ConvBnFusion::never;
  bool output_reuse = true;                              // Graph::set_output_reuse
  bool bf16_copies = true;                               // keep the weights' bf16 copies (Parameter::bf16_copy) in bf16
  bool bf16_storage = true;                              // Graph::set_bf16_storage
  std::vector<std::string> cfg = {"8", "M", "16", "M"};  // the VGG's
};

TrainRun train_five_steps(Backend& backend, const std::map<std::string, Backend*>& layer_backends = {},
                          const RunOptions& options = {}) {
  ModelConfig model;
  model.name = "vgg";
  model.cfg = options.cfg;
  model.pool = "avg";
  Graph graph;
  add_model_layers(model, kExample, graph);
  graph.set_output_reuse(options.output_reuse);
  graph.set_bf16_storage(options.bf16_storage);
  graph.plan(kExample, backend, layer_backends);
  TrainRun run;
  for (size_t i = 0; i < graph.size(); ++i) run.bf16_outputs += graph.output_dtype(i) == DType::bf16 ? 1 : 0;
  run.fused_pairs = fuse_conv_batch_norm(graph, options.fusion);
  Rng init(2024);
  graph.allocate_parameters(init);
  if (!options.bf16_copies)
    for (auto& [name, p] : graph.named_parameters()) p->bf16_copy = Tensor();

  Rng data(7);
  const Tensor images = testing::random_tensor({kBatch, kExample[0], kExample[1], kExample[2]}, data);
  const Tensor labels = testing::random_labels(kBatch, model.num_classes, data);

  OptimizerConfig optimizer;
  optimizer.lr = 0.05;
  optimizer.momentum = 0.9;
  optimizer.nesterov = true;
  optimizer.weight_decay = 5e-4;
  Sgd sgd(optimizer, make_parameter_groups(optimizer, graph.named_parameters(), graph.parameter_backends()));

  TrainStep step(graph, sgd, kSmoothing, 99);
  double loss_sum = 0;
  for (int s = 1; s <= kSteps; ++s) {
    step.forward(images, labels, s);
    const TrainStats stats = step.read_stats();
    EXPECT_TRUE(stats.finite()) << "step " << s;
    run.losses.push_back(stats.loss_sum - loss_sum);  // exact: float losses summed in double
    loss_sum = stats.loss_sum;
    step.backward_and_update(optimizer.lr, 0);
  }
  const std::vector<Backend*> backends = graph.parameter_backends();
  const auto named = graph.named_parameters();
  for (size_t i = 0; i < named.size(); ++i)
    run.parameters.emplace_back(named[i].first, testing::to_host(*backends[i], named[i].second->value));
  return run;
}

// Every step's loss within loss_tol (relative) of the reference run's, every final parameter
// within param_tol (relative L2).
void expect_follows(const TrainRun& got, const TrainRun& want, double loss_tol, double param_tol,
                    const std::string& what) {
  ASSERT_EQ(got.losses.size(), want.losses.size()) << what;
  for (size_t i = 0; i < got.losses.size(); ++i)
    EXPECT_LT(std::abs(got.losses[i] - want.losses[i]), loss_tol * std::abs(want.losses[i]))
        << what << " step " << i + 1 << ": loss " << got.losses[i] << ", reference " << want.losses[i];
  ASSERT_EQ(got.parameters.size(), want.parameters.size()) << what;
  for (size_t i = 0; i < got.parameters.size(); ++i) {
    EXPECT_EQ(got.parameters[i].first, want.parameters[i].first);
    EXPECT_TRUE(testing::close_l2(got.parameters[i].second, want.parameters[i].second, param_tol))
        << what << " " << got.parameters[i].first << " after " << kSteps << " steps";
  }
}

class GpuTraining : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { CONVNET_SKIP_WITHOUT_GPU(); }
};

TEST_P(GpuTraining, FiveStepLossesFollowTheCpu) {
  std::unique_ptr<Backend> cpu = make_cpu_backend();
  const TrainRun want = train_five_steps(*cpu);
  ASSERT_EQ(want.losses.size(), static_cast<size_t>(kSteps));
  // The run is not degenerate: the net learns the fixed batch.
  EXPECT_LT(want.losses.back(), want.losses.front());

  std::unique_ptr<Backend> gpu = testing::make_gpu_backend(GetParam());
  expect_follows(train_five_steps(*gpu), want, 1e-4, 1e-3, GetParam());
  // conv -> batch_norm fused, forced (no fp32 backend fuses by itself): the statistics from a pass
  // over the conv output (Backend's default), the batchnorm half on our kernels, cudnn's too.
  const TrainRun fused = train_five_steps(*gpu, {}, {.fusion = ConvBnFusion::always});
  EXPECT_EQ(fused.fused_pairs, 2) << "conv1 -> bn1 and conv2 -> bn2";
  expect_follows(fused, want, 1e-4, 1e-3, GetParam() + " fused");
}

INSTANTIATE_TEST_SUITE_P(Backends, GpuTraining, ::testing::Values("cuda", "cudnn"), testing::backend_test_name);

// train.precision tf32 and bf16: the cuda backend (v4 tensor-core convolutions) follows the cpu
// reference computing in the same precision (operands rounded the same way). Only the summation
// order differs, which a bf16 output rounding can amplify to one bf16 ulp, hence the looser bounds.
class GpuTrainingPrecision : public ::testing::TestWithParam<Precision> {
 protected:
  void SetUp() override { CONVNET_SKIP_WITHOUT_GPU(); }
};

TEST_P(GpuTrainingPrecision, CudaFollowsTheCpuInTheSamePrecision) {
  const Precision precision = GetParam();
  const double loss_tol = precision == Precision::bf16 ? 1e-2 : 2e-3;
  std::unique_ptr<Backend> cpu = make_cpu_backend();
  cpu->set_precision(precision);
  const TrainRun want = train_five_steps(*cpu);
  std::unique_ptr<Backend> gpu = testing::make_gpu_backend("cuda");
  gpu->set_precision(precision);
  expect_follows(train_five_steps(*gpu), want, loss_tol, 10 * loss_tol, precision_name(precision));
  // conv -> batch_norm fused as train.conv_bn_fusion: auto does on cuda in tf32 and bf16: the
  // batchnorms take their statistics from v4's epilogue, and still follow the unfused cpu.
  ASSERT_TRUE(gpu->fuses_conv_batch_norm());
  const TrainRun fused = train_five_steps(*gpu, {}, {.fusion = ConvBnFusion::automatic});
  EXPECT_EQ(fused.fused_pairs, 2) << "conv1 -> bn1 and conv2 -> bn2";
  expect_follows(fused, want, loss_tol, 10 * loss_tol, std::string(precision_name(precision)) + " fused");
}

INSTANTIATE_TEST_SUITE_P(Precisions, GpuTrainingPrecision, ::testing::Values(Precision::tf32, Precision::bf16),
                         [](const auto& param_info) { return std::string(precision_name(param_info.param)); });

// train.precision bf16 on cudnn (bf16 copies into cuDNN and cuBLAS): its five steps follow the cpu
// in bf16, and our cuda backend in bf16 follows cudnn in bf16. cudnn's conv dw is rounded to bf16
// (the cpu's is fp32) and its y rounded before and after the bias: the bf16 bounds cover that.
TEST(GpuTrainingBf16, CudnnFollowsTheCpuAndCudaFollowsCudnn) {
  CONVNET_SKIP_WITHOUT_GPU();
  constexpr double kLossTol = 1e-2;
  std::unique_ptr<Backend> cpu = make_cpu_backend();
  cpu->set_precision(Precision::bf16);
  const TrainRun want = train_five_steps(*cpu);
  std::unique_ptr<Backend> cudnn = testing::make_gpu_backend("cudnn");
  cudnn->set_precision(Precision::bf16);
  const TrainRun got = train_five_steps(*cudnn);
  std::unique_ptr<Backend> cuda = testing::make_gpu_backend("cuda");
  cuda->set_precision(Precision::bf16);
  const TrainRun ours = train_five_steps(*cuda);
  for (const auto& [run, ref, what] :
       {std::tuple{&got, &want, "cudnn bf16 vs cpu bf16"}, std::tuple{&ours, &got, "cuda bf16 vs cudnn bf16"}}) {
    ASSERT_EQ(run->losses.size(), ref->losses.size()) << what;
    for (size_t i = 0; i < run->losses.size(); ++i)
      EXPECT_LT(std::abs(run->losses[i] - ref->losses[i]), kLossTol * std::abs(ref->losses[i]))
          << what << " step " << i + 1 << ": loss " << run->losses[i] << ", reference " << ref->losses[i];
    ASSERT_EQ(run->parameters.size(), ref->parameters.size()) << what;
    for (size_t i = 0; i < run->parameters.size(); ++i)
      EXPECT_TRUE(testing::close_l2(run->parameters[i].second, ref->parameters[i].second, 10 * kLossTol))
          << what << " " << run->parameters[i].first << " after " << kSteps << " steps";
  }
}

// cuda for most layers, cudnn for the first convolution, a batch norm and the classifier: every
// hand-over between the two (forward and backward) happens on the device's one compute stream.
TEST(GpuTrainingMixed, CudaAndCudnnLayersInOneGraphFollowTheCpu) {
  CONVNET_SKIP_WITHOUT_GPU();
  std::unique_ptr<Backend> cpu = make_cpu_backend();
  const TrainRun want = train_five_steps(*cpu);
  std::unique_ptr<Backend> cuda_backend = testing::make_gpu_backend("cuda");
  std::unique_ptr<Backend> cudnn_backend = testing::make_gpu_backend("cudnn");
  const std::map<std::string, Backend*> overrides = {
      {"conv1", cudnn_backend.get()}, {"bn2", cudnn_backend.get()}, {"fc", cudnn_backend.get()}};
  const TrainRun got = train_five_steps(*cuda_backend, overrides);
  ASSERT_EQ(got.losses.size(), want.losses.size());
  for (size_t i = 0; i < got.losses.size(); ++i)
    EXPECT_LT(std::abs(got.losses[i] - want.losses[i]), 1e-4 * std::abs(want.losses[i])) << "step " << i + 1;
  ASSERT_EQ(got.parameters.size(), want.parameters.size());
  for (size_t i = 0; i < got.parameters.size(); ++i)
    EXPECT_TRUE(testing::close_l2(got.parameters[i].second, want.parameters[i].second, 1e-3))
        << got.parameters[i].first << " after " << kSteps << " steps";
}

// The same bits from two runs: on two cuda backends, and with the graph's output reuse on and off
// (Graph::set_output_reuse; the GPU kernels read what the layers declare, in stream order).
void expect_same_bits(const TrainRun& first, const TrainRun& second, const std::string& what) {
  EXPECT_EQ(first.losses, second.losses) << what;
  ASSERT_EQ(first.parameters.size(), second.parameters.size());
  ASSERT_FALSE(first.parameters.empty());
  for (size_t i = 0; i < first.parameters.size(); ++i) {
    const Tensor& a = first.parameters[i].second;
    const Tensor& b = second.parameters[i].second;
    ASSERT_EQ(a.bytes(), b.bytes()) << first.parameters[i].first;
    EXPECT_EQ(std::memcmp(a.raw(), b.raw(), a.bytes()), 0) << first.parameters[i].first << " differs: " << what;
  }
}

TEST(GpuTrainingDeterminism, TwoCudaRunsGiveBitIdenticalParameters) {
  CONVNET_SKIP_WITHOUT_GPU();
  std::unique_ptr<Backend> first_backend = testing::make_gpu_backend("cuda");
  const TrainRun first = train_five_steps(*first_backend);
  std::unique_ptr<Backend> second_backend = testing::make_gpu_backend("cuda");
  expect_same_bits(first, train_five_steps(*second_backend), "between runs");
}

TEST(GpuTrainingDeterminism, OutputReuseChangesNoBit) {
  CONVNET_SKIP_WITHOUT_GPU();
  for (const std::string name : {"cuda", "cudnn"}) {
    std::unique_ptr<Backend> backend = testing::make_gpu_backend(name);
    expect_same_bits(train_five_steps(*backend), train_five_steps(*backend, {}, {.output_reuse = false}),
                     name + ": output reuse on vs off");
  }
}

// bf16 training reads the weights' bf16 copies, written by the fused SGD update, instead of
// converting the fp32 weights at every pass: the same bits either way, on both backends.
TEST(GpuTrainingDeterminism, Bf16WeightCopiesChangeNoBit) {
  CONVNET_SKIP_WITHOUT_GPU();
  for (const std::string name : {"cuda", "cudnn"}) {
    std::unique_ptr<Backend> backend = testing::make_gpu_backend(name);
    backend->set_precision(Precision::bf16);
    expect_same_bits(train_five_steps(*backend), train_five_steps(*backend, {}, {.bf16_copies = false}),
                     name + ": bf16 weight copies on vs off");
  }
}

// bf16 activation storage: conv outputs (v4 or cuDNN writing bf16 y straight, batchnorm reading
// it) and the relus a conv reads (cuda's relu kernel, cudnn's relu then a rounding) are stored
// bf16, and their readers take them as they are: the same bits as f32 storage, on both backends.
TEST(GpuTrainingDeterminism, Bf16StorageChangesNoBit) {
  CONVNET_SKIP_WITHOUT_GPU();
  const std::vector<std::string> cfg = {"8", "8", "M", "16", "16", "M"};
  for (const std::string name : {"cuda", "cudnn"}) {
    std::unique_ptr<Backend> backend = testing::make_gpu_backend(name);
    backend->set_precision(Precision::bf16);
    const TrainRun stored = train_five_steps(*backend, {}, {.cfg = cfg});
    const TrainRun f32 = train_five_steps(*backend, {}, {.bf16_storage = false, .cfg = cfg});
    EXPECT_EQ(stored.bf16_outputs, 6) << name << ": the 4 convs (read by batchnorms), the relus before a conv";
    EXPECT_EQ(f32.bf16_outputs, 0) << name;
    expect_same_bits(stored, f32, name + ": bf16 storage on vs off");
  }
}

}  // namespace
}  // namespace convnet
