// Thread-count independence of the cpu backend, and the parallel_for helper it is built on.
#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <vector>

#include "core/base/backend_registry.h"
#include "core/cpu/cpu_backend.h"
#include "core/cpu/parallel.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::random_tensor;

// Restores the default thread count when a test ends.
class OpsThreads : public ::testing::Test {
 protected:
  void TearDown() override { set_cpu_threads(0); }
};

// Runs `compute` under 1, 2 and 3 threads and expects bit-identical outputs.
template <class F>
void expect_same_for_thread_counts(F compute) {
  set_cpu_threads(1);
  const std::vector<std::vector<float>> reference = compute();
  for (int threads : {2, 3}) {
    set_cpu_threads(threads);
    ASSERT_EQ(cpu_threads(), threads);
    const std::vector<std::vector<float>> got = compute();
    ASSERT_EQ(got.size(), reference.size());
    for (size_t i = 0; i < got.size(); ++i)
      EXPECT_EQ(got[i], reference[i]) << "output " << i << ", " << threads << " threads";
  }
}

// Ungrouped, grouped (one GEMM per group) and depthwise (direct loops) with two filters per channel.
TEST_F(OpsThreads, ConvIdenticalForAnyThreadCount) {
  auto be = make_cpu_backend();
  Rng rng(71);
  for (const int groups : {1, 4, 16}) {
    SCOPED_TRACE(groups);
    Conv2dParams p;
    p.pad_h = p.pad_w = 1;
    p.stride_w = 2;
    p.groups = groups;
    const Shape w_shape{32, 3, 3, 16 / groups};
    const Tensor x = random_tensor({4, 16, 15, 16}, rng), w = random_tensor(w_shape, rng);
    const Tensor b = random_tensor({32}, rng);
    const Tensor dy = random_tensor({4, 16, 8, 32}, rng);
    expect_same_for_thread_counts([&] {
      Tensor y({4, 16, 8, 32}), dx({4, 16, 15, 16}), dw(w_shape), db({32});
      be->conv2d_forward(x, w, &b, y, p);
      be->conv2d_backward_data(dy, w, dx, p);
      be->conv2d_backward_filter(x, dy, dw, &db, p);
      return std::vector<std::vector<float>>{y.to_vector(), dx.to_vector(), dw.to_vector(), db.to_vector()};
    });
  }
}

TEST_F(OpsThreads, BatchNormIdenticalForAnyThreadCount) {
  auto be = make_cpu_backend();
  Rng rng(72);
  const Shape xs{8, 16, 16, 8};  // 2048 rows: several reduction blocks
  const Tensor x = random_tensor(xs, rng, -1.0f, 3.0f), dy = random_tensor(xs, rng);
  const Tensor gamma = random_tensor({8}, rng), beta = random_tensor({8}, rng);
  expect_same_for_thread_counts([&] {
    Tensor y(xs), mean({8}), invstd({8}), rm = Tensor::zeros({8}), rv = Tensor::full({8}, 1.0f);
    Tensor dx(xs), dgamma({8}), dbeta({8});
    be->batch_norm_forward_train(x, gamma, beta, y, mean, invstd, rm, rv, 0.1f, 1e-5f);
    be->batch_norm_backward(x, dy, gamma, mean, invstd, dx, dgamma, dbeta);
    return std::vector<std::vector<float>>{y.to_vector(),  mean.to_vector(), invstd.to_vector(), rm.to_vector(),
                                           rv.to_vector(), dx.to_vector(),   dgamma.to_vector(), dbeta.to_vector()};
  });
}

TEST_F(OpsThreads, PoolingAndLossIdenticalForAnyThreadCount) {
  auto be = make_cpu_backend();
  Rng rng(73);
  Pool2dParams p;
  p.kernel_h = p.kernel_w = 3;
  p.pad_h = p.pad_w = 1;
  const Tensor x = random_tensor({4, 16, 16, 8}, rng), dy = random_tensor({4, 8, 8, 8}, rng);
  const Tensor logits = random_tensor({300, 10}, rng, -3.0f, 3.0f);
  const Tensor labels = testing::random_labels(300, 10, rng);
  expect_same_for_thread_counts([&] {
    Tensor y({4, 8, 8, 8}), argmax({4, 8, 8, 8}, DType::i32), dx({4, 16, 16, 8});
    be->max_pool2d_forward(x, y, argmax, p);
    be->max_pool2d_backward(dy, argmax, dx, p);
    Tensor loss({1}), probs({300, 10});
    be->softmax_cross_entropy_forward(logits, labels, 0.1f, loss, probs);
    return std::vector<std::vector<float>>{y.to_vector(), dx.to_vector(), loss.to_vector(), probs.to_vector()};
  });
}

TEST_F(OpsThreads, ParallelForCoversRangeNestsAndRethrows) {
  set_cpu_threads(3);
  std::vector<int> hits(1000, 0);
  std::atomic<int> chunks{0};
  parallel_for(5, 1000, 1, [&](int64_t b, int64_t e) {
    ++chunks;
    for (int64_t i = b; i < e; ++i) ++hits[static_cast<size_t>(i)];
    // A nested call runs serially on this thread.
    parallel_for(0, 4, 1, [](int64_t, int64_t) {});
  });
  for (size_t i = 0; i < hits.size(); ++i) ASSERT_EQ(hits[i], i < 5 ? 0 : 1) << i;
  EXPECT_EQ(chunks.load(), 3);
  EXPECT_THROW(parallel_for(0, 100, 1,
                            [](int64_t b, int64_t) {
                              if (b > 0) throw std::runtime_error("chunk failed");
                            }),
               std::runtime_error);
  // The pool still works after an exception.
  std::atomic<int64_t> sum{0};
  parallel_for(0, 100, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) sum += i;
  });
  EXPECT_EQ(sum.load(), 4950);
}

TEST_F(OpsThreads, RegistryCreatesCpuBackend) {
  register_cpu_backend();
  const auto be = create_backend("cpu");
  EXPECT_EQ(be->name(), "cpu");
  EXPECT_EQ(be->device(), Device{});
}

}  // namespace
}  // namespace convnet
