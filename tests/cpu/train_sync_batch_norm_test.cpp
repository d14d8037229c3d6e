// use_sync_batch_norm (core/train/sync_batch_norm.h): every batchnorm of a built graph joins the group.
#include <gtest/gtest.h>

#include <memory>

#include "core/cpu/cpu_backend.h"
#include "core/dist/replica_group.h"
#include "core/layers/batch_norm.h"
#include "core/train/sync_batch_norm.h"
#include "tests/common/tiny_graph.h"

namespace convnet {
namespace {

TEST(TrainSyncBatchNorm, SetsTheGroupOnEveryBatchNormOnly) {
  const std::unique_ptr<Backend> backend = make_cpu_backend();
  Graph graph;
  testing::build_tiny_graph(graph, *backend, 1, /*batch_norm=*/true);
  SingleProcess group;
  EXPECT_EQ(use_sync_batch_norm(graph, group), 1);
  int seen = 0;
  for (size_t i = 0; i < graph.size(); ++i)
    if (const auto* bn = dynamic_cast<const BatchNorm2d*>(&graph.layer(i))) {
      EXPECT_EQ(bn->replica_group(), &group);
      ++seen;
    }
  EXPECT_EQ(seen, 1);
}

TEST(TrainSyncBatchNorm, AGraphWithoutBatchNormIsLeftAlone) {
  const std::unique_ptr<Backend> backend = make_cpu_backend();
  Graph graph;
  testing::build_tiny_graph(graph, *backend, 1, /*batch_norm=*/false);
  SingleProcess group;
  EXPECT_EQ(use_sync_batch_norm(graph, group), 0);
}

}  // namespace
}  // namespace convnet
