// The fused SGD update on the cpu backend: hand-computed three-step trajectories and the naive reference.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/base/error.h"
#include "core/cpu/cpu_backend.h"
#include "tests/common/naive_ops.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using namespace testing;  // random inputs, poisoned outputs, close_l2, the naive:: reference

SgdStep make_step(float momentum, float weight_decay, bool nesterov, bool decoupled) {
  SgdStep s;
  s.lr = 0.1f;
  s.momentum = momentum;
  s.weight_decay = weight_decay;
  s.nesterov = nesterov;
  s.decoupled_decay = decoupled;
  return s;
}

struct HandCase {
  std::string name;
  SgdStep step;
  std::vector<std::vector<double>> params;  // after each of the three steps
};

// param starts at {1, -2}; grads {0.5, -1}, {0.25, 0.5}, {-0.5, 1}; lr 0.1. Worked out by hand
// from the SgdStep definition (e.g. nesterov step 1: buf = 0.5, step = 0.5 + 0.9 * 0.5, p = 0.905).
std::vector<HandCase> hand_cases() {
  return {
      {"plain", make_step(0, 0, false, false), {{0.95, -1.9}, {0.925, -1.95}, {0.975, -2.05}}},
      {"momentum", make_step(0.9f, 0, false, false), {{0.95, -1.9}, {0.88, -1.86}, {0.867, -1.924}}},
      {"nesterov", make_step(0.9f, 0, true, false), {{0.905, -1.81}, {0.817, -1.824}, {0.8553, -1.9816}}},
      {"l2", make_step(0.9f, 0.1f, false, false), {{0.94, -1.88}, {0.8516, -1.8032}, {0.813524, -1.816048}}},
      {"decoupled", make_step(0.9f, 0.1f, false, true), {{0.94, -1.88}, {0.8606, -1.8212}, {0.838994, -1.866988}}},
  };
}

const std::vector<std::vector<float>> kGrads = {{0.5f, -1.0f}, {0.25f, 0.5f}, {-0.5f, 1.0f}};

TEST(OpsSgd, HandComputedThreeSteps) {
  auto be = make_cpu_backend();
  for (const HandCase& c : hand_cases()) {
    SCOPED_TRACE(c.name);
    Tensor param = Tensor::from_vector({2}, {1.0f, -2.0f});
    Tensor buf = Tensor::zeros({2});
    for (size_t t = 0; t < 3; ++t) {
      be->sgd_update(param, Tensor::from_vector({2}, kGrads[t]), buf, c.step, nullptr);
      EXPECT_TRUE(close_l2(param, c.params[t], 1e-6)) << "after step " << t + 1;
    }
  }
}

TEST(OpsSgd, NaiveReferenceMatchesHandValues) {
  for (const HandCase& c : hand_cases()) {
    SCOPED_TRACE(c.name);
    std::vector<double> param{1.0, -2.0}, buf{0.0, 0.0};
    for (size_t t = 0; t < 3; ++t) {
      naive::sgd_update(param, {kGrads[t][0], kGrads[t][1]}, buf, c.step);
      EXPECT_NEAR(param[0], c.params[t][0], 1e-7);
      EXPECT_NEAR(param[1], c.params[t][1], 1e-7);
    }
  }
}

TEST(OpsSgd, RandomMatchesNaiveForEveryVariant) {
  auto be = make_cpu_backend();
  Rng rng(61);
  for (float momentum : {0.0f, 0.9f})
    for (float wd : {0.0f, 5e-4f})
      for (bool nesterov : {false, true})
        for (bool decoupled : {false, true}) {
          if (nesterov && momentum == 0.0f) continue;
          const SgdStep step = make_step(momentum, wd, nesterov, decoupled);
          SCOPED_TRACE(fmt::format("momentum {} wd {} nesterov {} decoupled {}", momentum, wd, nesterov, decoupled));
          Tensor param = random_tensor({3, 50, 7}, rng);
          Tensor buf = Tensor::zeros(param.shape());
          std::vector<double> p_ref = testing::to_double(param), b_ref(p_ref.size(), 0.0);
          for (int t = 0; t < 4; ++t) {
            const Tensor grad = random_tensor(param.shape(), rng);
            be->sgd_update(param, grad, buf, step, nullptr);
            naive::sgd_update(p_ref, testing::to_double(grad), b_ref, step);
          }
          EXPECT_TRUE(close_l2(param, p_ref, 1e-6));
          if (momentum != 0.0f) {
            EXPECT_TRUE(close_l2(buf, b_ref, 1e-6));
          }
        }
}

TEST(OpsSgd, NoMomentumAcceptsUndefinedBufferAndChecksShapes) {
  auto be = make_cpu_backend();
  Tensor param = Tensor::from_vector({2}, {1.0f, -2.0f});
  Tensor no_buf;
  be->sgd_update(param, Tensor::from_vector({2}, {0.5f, -1.0f}), no_buf, make_step(0, 0, false, false), nullptr);
  EXPECT_TRUE(close_l2(param, {0.95, -1.9}, 1e-7));
  EXPECT_THROW(be->sgd_update(param, Tensor::zeros({3}), no_buf, make_step(0, 0, false, false), nullptr), Error);
  EXPECT_THROW(be->sgd_update(param, Tensor::zeros({2}), no_buf, make_step(0.9f, 0, false, false), nullptr), Error);
}

}  // namespace
}  // namespace convnet
