// GradientReducer: every rank ends backward with the mean of the ranks' gradients (checked on
// thread-ranks against the mean computed here), the buckets start during backward in reverse
// layer order (the last layers' first), bucket sizes follow bucket_bytes, and frozen parameters
// are left out. With a device transport (ReplicaGroup::device_collectives; NCCL on a GPU), the
// buckets it serves go through it, and the others through the host sums.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <set>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/dist/with_device_collectives.h"
#include "core/train/gradient_reducer.h"
#include "tests/common/test_util.h"
#include "tests/common/thread_group.h"
#include "tests/common/tiny_graph.h"

namespace convnet {
namespace {

// Forward and backward of the tiny net on a random batch and output gradient drawn from `seed`.
void backward_of(Graph& graph, uint64_t seed) {
  Rng rng(seed);
  Tensor x({3, 4, 4, 3});
  for (float& v : x.span()) v = static_cast<float>(rng.normal());
  const Tensor& y = graph.forward(x, Mode::train);
  Tensor dy(y.shape());
  for (float& v : dy.span()) v = static_cast<float>(rng.normal());
  graph.backward(dy);
}

std::vector<std::vector<float>> gradients(Graph& graph) {
  std::vector<std::vector<float>> out;
  for (auto& [name, p] : graph.named_parameters()) out.push_back(p->grad.to_vector());
  return out;
}

TEST(GradientReducer, EveryRankEndsWithTheMeanOfTheRanksGradients) {
  constexpr int kRanks = 3;
  // Each rank's own gradients (different data per rank), computed alone first.
  std::vector<std::vector<std::vector<float>>> own(kRanks);
  for (int r = 0; r < kRanks; ++r) {
    std::unique_ptr<Backend> cpu = make_cpu_backend();
    Graph graph;
    testing::build_tiny_graph(graph, *cpu, 1, true);
    backward_of(graph, 100 + static_cast<uint64_t>(r));
    own[static_cast<size_t>(r)] = gradients(graph);
  }
  std::vector<std::vector<std::vector<float>>> reduced(kRanks);
  for (size_t bucket_bytes : {size_t{1}, size_t{1} << 20}) {  // one bucket per layer; one in all
    testing::run_ranks(kRanks, [&](ReplicaGroup& group) {
      std::unique_ptr<Backend> cpu = make_cpu_backend();
      Graph graph;
      testing::build_tiny_graph(graph, *cpu, 1, true);
      GradientReducer reducer(graph, group, bucket_bytes);
      EXPECT_EQ(reducer.num_buckets(), bucket_bytes == 1 ? 3u : 1u);  // conv, batch_norm, linear
      backward_of(graph, 100 + static_cast<uint64_t>(group.rank()));
      reducer.finish();
      reduced[static_cast<size_t>(group.rank())] = gradients(graph);
    });
    for (size_t p = 0; p < own[0].size(); ++p)
      for (size_t i = 0; i < own[0][p].size(); ++i) {
        const float mean = (own[0][p][i] + own[1][p][i] + own[2][p][i]) * (1.0f / 3);
        for (int r = 0; r < kRanks; ++r)
          ASSERT_NEAR(reduced[static_cast<size_t>(r)][p][i], mean, 1e-6f * (1 + std::abs(mean)))
              << "parameter " << p << " element " << i << " rank " << r;
      }
  }
}

// Records the size of each sum started, and whether backward was still running.
class RecordingGroup final : public ReplicaGroup {
 public:
  int rank() const override { return 0; }
  int size() const override { return 2; }
  std::string name() const override { return "recording"; }
  void sum(std::span<double>) override {}
  void sum(std::span<float>) override {}
  void max(std::span<double>) override {}
  std::unique_ptr<PendingSum> start_sum(std::span<float> v) override {
    started.push_back(v.size());
    return SingleProcess().start_sum(v);
  }
  void broadcast(std::string&) override {}
  void broadcast(std::span<float>) override {}
  void barrier() override {}
  std::vector<size_t> started;
};

TEST(GradientReducer, BucketsStartDuringBackwardLastLayersFirstAndSkipFrozenParameters) {
  std::unique_ptr<Backend> cpu = make_cpu_backend();
  Graph graph;
  testing::build_tiny_graph(graph, *cpu, 1, true);
  graph.layer(1).parameters()[0]->frozen = true;  // batchnorm gamma
  RecordingGroup group;
  GradientReducer reducer(graph, group, 1);
  backward_of(graph, 7);
  // Started by the backward hook, before finish(): linear (5x64 + 5), batchnorm beta (4), conv (4x3x3x3 + 4).
  EXPECT_EQ(group.started, (std::vector<size_t>{5 * 64 + 5, 4, 4 * 27 + 4}));
  EXPECT_EQ(reducer.bytes(), (5 * 64 + 5 + 4 + 4 * 27 + 4) * sizeof(float));
  reducer.finish();
  backward_of(graph, 8);  // the next step starts the same buckets again
  EXPECT_EQ(group.started.size(), 6u);
  reducer.finish();
}

// A device transport for cpu tensors: serves the gradients of the given parameters, sums them over
// the host group (so results can be compared bit for bit with the host path) and records the size
// of each bucket it starts.
class StandInTransport final : public DeviceCollectives {
 public:
  StandInTransport(ReplicaGroup& group, std::set<const Tensor*> served) : group_(group), served_(std::move(served)) {}
  std::string name() const override { return "stand-in"; }
  bool serves(const Tensor& t) const override { return served_.contains(&t); }
  std::unique_ptr<DeviceBucket> make_bucket(std::vector<Tensor*> gradients) override {
    for (const Tensor* g : gradients) EXPECT_TRUE(serves(*g));
    return std::make_unique<Bucket>(*this, std::move(gradients));
  }
  std::vector<size_t> started;

 private:
  struct Bucket final : DeviceBucket {
    Bucket(StandInTransport& t, std::vector<Tensor*> g) : transport(t), gradients(std::move(g)) {}
    void start() override {
      packed.clear();
      for (const Tensor* g : gradients) packed.insert(packed.end(), g->f32(), g->f32() + g->numel());
      transport.started.push_back(packed.size());
    }
    void finish() override {
      transport.group_.sum(std::span<float>(packed));
      const float scale = 1.0f / static_cast<float>(transport.group_.size());
      size_t at = 0;
      for (Tensor* g : gradients)
        for (float& v : g->span()) v = packed[at++] * scale;
    }
    StandInTransport& transport;
    std::vector<Tensor*> gradients;
    std::vector<float> packed;
  };
  ReplicaGroup& group_;
  std::set<const Tensor*> served_;
};

std::set<const Tensor*> gradients_of_layer(Graph& graph, size_t layer) {
  std::set<const Tensor*> out;
  for (Parameter* p : graph.layer(layer).parameters()) out.insert(&p->grad);
  return out;
}

TEST(GradientReducer, DeviceTransportSumsTheBucketsItServesWithTheSameResult) {
  constexpr int kRanks = 3;
  std::vector<std::vector<std::vector<float>>> host_only(kRanks), mixed(kRanks);
  for (const bool with_transport : {false, true}) {
    testing::run_ranks(kRanks, [&](ReplicaGroup& host) {
      std::unique_ptr<Backend> cpu = make_cpu_backend();
      Graph graph;
      testing::build_tiny_graph(graph, *cpu, 1, true);
      StandInTransport transport(host, gradients_of_layer(graph, graph.size() - 1));  // the linear layer's
      WithDeviceCollectives group(host, transport);
      GradientReducer reducer(graph, with_transport ? group : host, size_t{1} << 20);
      // The served linear layer in a bucket of its own, then batchnorm and conv together on the host.
      EXPECT_EQ(reducer.num_buckets(), with_transport ? 2u : 1u);
      EXPECT_EQ(reducer.num_device_buckets(), with_transport ? 1u : 0u);
      backward_of(graph, 100 + static_cast<uint64_t>(host.rank()));
      if (with_transport) {
        EXPECT_EQ(transport.started, (std::vector<size_t>{5 * 64 + 5}));  // during backward
      }
      reducer.finish();
      (with_transport ? mixed : host_only)[static_cast<size_t>(host.rank())] = gradients(graph);
    });
  }
  for (int r = 0; r < kRanks; ++r) {
    EXPECT_EQ(mixed[static_cast<size_t>(r)], host_only[static_cast<size_t>(r)]) << "rank " << r;
    EXPECT_EQ(mixed[static_cast<size_t>(r)], mixed[0]) << "rank " << r;
  }
}

TEST(GradientReducer, DeviceTransportServingEverythingLeavesTheHostSumsUnused) {
  std::unique_ptr<Backend> cpu = make_cpu_backend();
  Graph graph;
  testing::build_tiny_graph(graph, *cpu, 1, true);
  RecordingGroup host;
  std::set<const Tensor*> all;
  for (size_t i = 0; i < graph.size(); ++i) all.merge(gradients_of_layer(graph, i));
  StandInTransport transport(host, all);
  WithDeviceCollectives group(host, transport);
  GradientReducer reducer(graph, group, 1);
  EXPECT_EQ(reducer.num_device_buckets(), 3u);
  backward_of(graph, 7);
  EXPECT_EQ(transport.started, (std::vector<size_t>{5 * 64 + 5, 4 + 4, 4 * 27 + 4}));
  EXPECT_TRUE(host.started.empty());
  reducer.finish();
}

}  // namespace
}  // namespace convnet
