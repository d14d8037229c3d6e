// NCCL as the device transport (cuda/nccl_collectives.h): a communicator of one rank (the average
// of one is the identity, so every gradient comes back bit for bit through the flat buffer), and
// two ranks on two GPUs as threads of this process (the mean, exactly: a sum of two and a halving
// are exact), and GradientReducer handing a GPU graph's buckets to NCCL. Skipped without a GPU, or
// in a build without NCCL; the tests named *OnTwoGpus skip without two GPUs (tools/gpu_check.sh
// leaves them out on a one-GPU machine).
#include "cuda/nccl_collectives.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "core/base/rng.h"
#include "core/dist/replica_group.h"
#include "core/dist/with_device_collectives.h"
#include "core/train/gradient_reducer.h"
#include "cuda/cuda_backend.h"
#include "tests/common/gpu_test_util.h"
#include "tests/common/thread_group.h"
#include "tests/common/tiny_graph.h"

namespace convnet {
namespace {

using testing::random_tensor;
using testing::to_device;
using testing::to_host;

#define SKIP_WITHOUT_NCCL_GPUS(n)                                                                                \
  do {                                                                                                           \
    CONVNET_SKIP_WITHOUT_GPU();                                                                                  \
    if (cuda::nccl_version().empty()) GTEST_SKIP() << "this build has no NCCL";                                  \
    if (cuda::gpu_count() < (n)) GTEST_SKIP() << "needs " << (n) << " GPUs, " << cuda::gpu_count() << " answer"; \
  } while (0)

// Shapes of a conv, a batchnorm and a linear layer's gradients: odd sizes, so no bucket is a whole
// number of NCCL's chunks.
const std::vector<Shape> kGradientShapes = {{8, 3, 3, 5}, {8}, {10, 72}, {1}};

std::vector<Tensor> random_device_gradients(Backend& gpu, uint64_t seed) {
  Rng rng(seed);
  std::vector<Tensor> out;
  for (const Shape& s : kGradientShapes) out.push_back(to_device(gpu, random_tensor(s, rng)));
  return out;
}

std::vector<Tensor*> pointers(std::vector<Tensor>& tensors) {
  std::vector<Tensor*> out;
  for (Tensor& t : tensors) out.push_back(&t);
  return out;
}

TEST(NcclCollectives, OneRankGivesEveryGradientBackBitForBit) {
  SKIP_WITHOUT_NCCL_GPUS(1);
  std::unique_ptr<Backend> gpu = cuda::make_cuda_backend(0);
  SingleProcess host;
  const std::unique_ptr<DeviceCollectives> nccl = cuda::open_nccl(host, 0, 60);
  EXPECT_NE(nccl->name().find("nccl"), std::string::npos) << nccl->name();
  std::vector<Tensor> grads = random_device_gradients(*gpu, 1);
  std::vector<Tensor> before;
  for (const Tensor& g : grads) before.push_back(to_host(*gpu, g));
  EXPECT_TRUE(nccl->serves(grads[0]));
  EXPECT_FALSE(nccl->serves(before[0])) << "a host tensor";
  const std::unique_ptr<DeviceBucket> bucket = nccl->make_bucket(pointers(grads));
  for (int step = 0; step < 3; ++step) {  // a bucket is reused every step
    bucket->start();
    bucket->finish();
  }
  for (size_t i = 0; i < grads.size(); ++i)
    EXPECT_TRUE(testing::bitwise_equal(to_host(*gpu, grads[i]), before[i])) << "gradient " << i;
}

TEST(NcclCollectives, TwoRanksOnTwoGpusEndWithTheExactMean) {
  SKIP_WITHOUT_NCCL_GPUS(2);
  std::vector<std::vector<Tensor>> own(2), reduced(2);
  testing::run_ranks(2, [&](ReplicaGroup& host) {
    const int rank = host.rank();
    std::unique_ptr<Backend> gpu = cuda::make_cuda_backend(rank);
    std::vector<Tensor> grads = random_device_gradients(*gpu, 10 + static_cast<uint64_t>(rank));
    for (const Tensor& g : grads) own[static_cast<size_t>(rank)].push_back(to_host(*gpu, g));
    const std::unique_ptr<DeviceCollectives> nccl = cuda::open_nccl(host, rank, 60);
    const std::unique_ptr<DeviceBucket> bucket = nccl->make_bucket(pointers(grads));
    bucket->start();
    bucket->finish();
    for (const Tensor& g : grads) reduced[static_cast<size_t>(rank)].push_back(to_host(*gpu, g));
  });
  for (size_t i = 0; i < kGradientShapes.size(); ++i) {
    Tensor mean(kGradientShapes[i]);
    for (int64_t k = 0; k < mean.numel(); ++k) mean.f32()[k] = (own[0][i].f32()[k] + own[1][i].f32()[k]) * 0.5f;
    for (size_t r = 0; r < 2; ++r)
      EXPECT_TRUE(testing::bitwise_equal(reduced[r][i], mean)) << "gradient " << i << " rank " << r;
  }
}

// One rank, so the mean is the rank's own gradient: GradientReducer must hand every bucket of a
// GPU graph to NCCL and leave each gradient as backward made it, bit for bit.
TEST(NcclCollectives, GradientReducerHandsEveryGpuBucketToNccl) {
  SKIP_WITHOUT_NCCL_GPUS(1);
  std::unique_ptr<Backend> gpu = cuda::make_cuda_backend(0);
  SingleProcess host;
  const std::unique_ptr<DeviceCollectives> nccl = cuda::open_nccl(host, 0, 60);
  WithDeviceCollectives group(host, *nccl);
  Graph graph;
  testing::build_tiny_graph(graph, *gpu, 1, true);
  GradientReducer reducer(graph, group, 1);
  EXPECT_EQ(reducer.num_device_buckets(), reducer.num_buckets());
  EXPECT_GT(reducer.num_buckets(), 1u);
  Rng rng(3);
  const Tensor x = to_device(*gpu, random_tensor({3, 4, 4, 3}, rng));
  const Tensor& y = graph.forward(x, Mode::train);
  const Tensor dy = to_device(*gpu, random_tensor(y.shape(), rng));
  graph.backward(dy);
  std::vector<Tensor> own;
  for (auto& [name, p] : graph.named_parameters()) own.push_back(to_host(*gpu, p->grad));
  reducer.finish();
  size_t i = 0;
  for (auto& [name, p] : graph.named_parameters())
    EXPECT_TRUE(testing::bitwise_equal(to_host(*gpu, p->grad), own[i++])) << name;
}

}  // namespace
}  // namespace convnet
