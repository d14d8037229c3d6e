// Synchronized batchnorm (BatchNorm2d::set_replica_group) on the cpu backend: with SingleProcess
// it is today's fused batchnorm, and with thread ranks (tests/common/thread_group.h) holding the
// shards of one batch it is one process's batchnorm of the whole batch.
//
// Loss scaling: every rank gets its rows of ONE full-batch upstream gradient dy, unscaled, so the
// ranks' dx are the rows of the full-batch dx and the SUM of their dgamma / dbeta is the full-batch
// one. In training each rank's loss is the mean over its shard, so its dy is R times larger with R
// equal shards, and the gradient reducer's AVERAGE over the ranks gives the same gradient.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/dist/replica_group.h"
#include "core/layers/batch_norm.h"
#include "tests/common/gradient_check.h"
#include "tests/common/test_util.h"
#include "tests/common/thread_group.h"

namespace convnet {
namespace {

using testing::bitwise_equal;
using testing::close_l2;
using testing::random_tensor;

constexpr double kTol = 1e-5;
const Shape kExample{2, 3, 5};  // per example: a 2x3 image with 5 channels (30 rows of C per 5 examples)

// Rows [begin, begin + count) of t along its first dimension, as a new host tensor.
Tensor rows_of(const Tensor& t, int64_t begin, int64_t count) {
  Shape s = t.shape();
  const int64_t row = t.numel() / s[0];
  s[0] = count;
  Tensor out(s);
  if (count > 0) std::memcpy(out.f32(), t.f32() + begin * row, static_cast<size_t>(count * row) * sizeof(float));
  return out;
}

// Stacks tensors of equal trailing shape along the first dimension.
Tensor concat_rows(const std::vector<Tensor>& parts) {
  Shape s = parts.at(0).shape();
  s[0] = 0;
  for (const Tensor& p : parts) s[0] += p.shape()[0];
  Tensor out(s);
  int64_t at = 0;
  for (const Tensor& p : parts) {
    if (p.numel() > 0) std::memcpy(out.f32() + at, p.f32(), p.bytes());
    at += p.numel();
  }
  return out;
}

// One batch: inputs with an offset mean (the variance must not cancel), the upstream gradient,
// and the layer's parameters and running statistics (random, so none hides a mistake).
struct Problem {
  Tensor x, dy, gamma, beta, running_mean, running_var;
  explicit Problem(int64_t n, const Shape& example = kExample) {
    Rng rng(5);
    Shape xs{n};
    xs.insert(xs.end(), example.begin(), example.end());
    const Shape c{example.back()};
    x = random_tensor(xs, rng, 3.0f, 6.0f);
    dy = random_tensor(xs, rng);
    gamma = random_tensor(c, rng, 0.5f, 1.5f);
    beta = random_tensor(c, rng, -0.5f, 0.5f);
    running_mean = random_tensor(c, rng, -1.0f, 1.0f);
    running_var = random_tensor(c, rng, 0.5f, 2.0f);
  }
};

// What one rank's layer holds after two train steps (forward, backward) on its x and dy (the
// second step sees the first's running statistics).
struct StepResult {
  Tensor y, dx, dgamma, dbeta, saved_mean, saved_invstd, running_mean, running_var;
  int32_t batches = 0;
};

StepResult train_steps(const Problem& p, const Tensor& x, const Tensor& dy, ReplicaGroup* group) {
  const std::unique_ptr<Backend> backend = make_cpu_backend();
  BatchNorm2d bn("bn");
  bn.configure(Shape(x.shape().begin() + 1, x.shape().end()));
  bn.set_backend(*backend);
  bn.allocate_parameters();
  Rng rng(0);
  bn.initialize(rng);
  backend->copy(bn.parameters()[0]->value, p.gamma);
  backend->copy(bn.parameters()[1]->value, p.beta);
  backend->copy(bn.buffers()[0]->value, p.running_mean);
  backend->copy(bn.buffers()[1]->value, p.running_var);
  bn.set_replica_group(group);
  StepResult r;
  r.y = Tensor(x.shape());
  r.dx = Tensor(x.shape());
  for (int step = 0; step < 2; ++step) {
    bn.forward(x, r.y, Mode::train);
    bn.backward(x, r.y, dy, &r.dx);
  }
  r.dgamma = bn.parameters()[0]->grad.clone();
  r.dbeta = bn.parameters()[1]->grad.clone();
  r.saved_mean = bn.saved_mean().clone();
  r.saved_invstd = bn.saved_invstd().clone();
  r.running_mean = bn.buffers()[0]->value.clone();
  r.running_var = bn.buffers()[1]->value.clone();
  r.batches = bn.buffers()[2]->value.data<int32_t>()[0];
  return r;
}

// Sum over the ranks of one [C] tensor each.
Tensor rank_sum(const std::vector<Tensor>& parts) {
  Tensor out = parts.at(0).clone();
  for (size_t r = 1; r < parts.size(); ++r)
    for (int64_t i = 0; i < out.numel(); ++i) out.f32()[i] += parts[r].f32()[i];
  return out;
}

// Every rank's results when the batch is cut into shards of `counts` examples.
std::vector<StepResult> run_sharded(const Problem& p, const std::vector<int64_t>& counts) {
  std::vector<StepResult> results(counts.size());
  testing::run_ranks(static_cast<int>(counts.size()), [&](ReplicaGroup& group) {
    const auto r = static_cast<size_t>(group.rank());
    int64_t begin = 0;
    for (size_t i = 0; i < r; ++i) begin += counts[i];
    results[r] = train_steps(p, rows_of(p.x, begin, counts[r]), rows_of(p.dy, begin, counts[r]), &group);
  });
  return results;
}

// The sharded results against one process's fused batchnorm on the whole batch.
void expect_matches_full_batch(const std::vector<int64_t>& counts, const Shape& example = kExample) {
  int64_t n = 0;
  for (const int64_t c : counts) n += c;
  const Problem p(n, example);
  const StepResult full = train_steps(p, p.x, p.dy, nullptr);
  const std::vector<StepResult> ranks = run_sharded(p, counts);
  std::vector<Tensor> ys, dxs, dgammas, dbetas;
  for (const StepResult& r : ranks) {
    ys.push_back(r.y);
    dxs.push_back(r.dx);
    dgammas.push_back(r.dgamma);
    dbetas.push_back(r.dbeta);
    // Every rank holds the same statistics.
    EXPECT_TRUE(close_l2(r.saved_mean, full.saved_mean, kTol)) << "saved mean";
    EXPECT_TRUE(close_l2(r.saved_invstd, full.saved_invstd, kTol)) << "saved invstd";
    EXPECT_TRUE(close_l2(r.running_mean, full.running_mean, kTol)) << "running mean";
    EXPECT_TRUE(close_l2(r.running_var, full.running_var, kTol)) << "running var";
    EXPECT_EQ(r.batches, 2);
  }
  EXPECT_TRUE(close_l2(concat_rows(ys), full.y, kTol)) << "y";
  EXPECT_TRUE(close_l2(concat_rows(dxs), full.dx, kTol)) << "dx";
  EXPECT_TRUE(close_l2(rank_sum(dgammas), full.dgamma, kTol)) << "dgamma";
  EXPECT_TRUE(close_l2(rank_sum(dbetas), full.dbeta, kTol)) << "dbeta";
}

TEST(LayerBatchNormSync, SingleProcessEqualsTheFusedPath) {
  const Problem p(4);
  SingleProcess single;
  const StepResult fused = train_steps(p, p.x, p.dy, nullptr);
  const StepResult synced = train_steps(p, p.x, p.dy, &single);
  EXPECT_TRUE(close_l2(synced.y, fused.y, kTol)) << "y";
  EXPECT_TRUE(close_l2(synced.saved_mean, fused.saved_mean, kTol)) << "saved mean";
  EXPECT_TRUE(close_l2(synced.saved_invstd, fused.saved_invstd, kTol)) << "saved invstd";
  EXPECT_TRUE(close_l2(synced.running_mean, fused.running_mean, kTol)) << "running mean";
  EXPECT_TRUE(close_l2(synced.running_var, fused.running_var, kTol)) << "running var";
  EXPECT_TRUE(close_l2(synced.dx, fused.dx, kTol)) << "dx";
  EXPECT_TRUE(close_l2(synced.dgamma, fused.dgamma, kTol)) << "dgamma";
  EXPECT_TRUE(close_l2(synced.dbeta, fused.dbeta, kTol)) << "dbeta";
  EXPECT_EQ(synced.batches, 2);
}

TEST(LayerBatchNormSync, SingleProcessGradientsMatchFiniteDifferences) {
  const std::unique_ptr<Backend> backend = make_cpu_backend();
  SingleProcess single;
  BatchNorm2d bn("bn");
  bn.set_replica_group(&single);
  testing::GradientCheckOptions o;
  o.batch = 4;
  EXPECT_TRUE(testing::gradients_match(bn, {3, 3, 2}, *backend, o));
}

TEST(LayerBatchNormSync, TwoEqualShardsEqualTheFullBatch) {
  expect_matches_full_batch({3, 3});
}

TEST(LayerBatchNormSync, UnevenShardsEqualTheFullBatch) {
  expect_matches_full_batch({3, 4});
}

TEST(LayerBatchNormSync, SevenFlatRowsSplitThreeFourEqualTheFullBatch) {
  expect_matches_full_batch({3, 4}, {5});
  expect_matches_full_batch({2, 4, 1}, {33});
}

TEST(LayerBatchNormSync, ThreeShardsEqualTheFullBatch) {
  expect_matches_full_batch({2, 2, 2});
  expect_matches_full_batch({1, 4, 2});
}

TEST(LayerBatchNormSync, ARankWithoutRowsStillTakesPart) {
  expect_matches_full_batch({0, 4, 3});
}

TEST(LayerBatchNormSync, TwoRunsAreBitIdentical) {
  const Problem p(7);
  const std::vector<StepResult> a = run_sharded(p, {2, 3, 2}), b = run_sharded(p, {2, 3, 2});
  for (size_t r = 0; r < a.size(); ++r) {
    SCOPED_TRACE(r);
    EXPECT_TRUE(bitwise_equal(a[r].y, b[r].y));
    EXPECT_TRUE(bitwise_equal(a[r].dx, b[r].dx));
    EXPECT_TRUE(bitwise_equal(a[r].dgamma, b[r].dgamma));
    EXPECT_TRUE(bitwise_equal(a[r].running_var, b[r].running_var));
  }
}

TEST(LayerBatchNormSync, FewerThanTwoRowsInAllIsAnErrorOnEveryRank) {
  const Problem p(1, {5});  // flat features: one row per example
  int errors = 0;
  std::mutex m;
  testing::run_ranks(2, [&](ReplicaGroup& group) {
    const int64_t count = group.rank() == 0 ? 1 : 0;
    try {
      train_steps(p, rows_of(p.x, 0, count), rows_of(p.dy, 0, count), &group);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("more than one value per channel"), std::string::npos) << e.what();
      const std::lock_guard<std::mutex> lock(m);
      ++errors;
    }
  });
  EXPECT_EQ(errors, 2);
}

}  // namespace
}  // namespace convnet
