// The cpu ops of synchronized batchnorm (Backend::batch_norm_local_stats, backward_reduce,
// backward_apply) against float64 naive formulas, and composed on one rank they equal the fused
// batch_norm_forward_train / batch_norm_backward.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/cpu/batch_norm.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

Tensor random(Shape shape, uint64_t seed, double offset = 0) {
  Rng rng(seed);
  Tensor t(shape);
  for (float& v : t.span()) v = static_cast<float>(offset + rng.normal());
  return t;
}

TEST(OpsBatchNormSync, LocalStatsAndBackwardSumsMatchFloat64) {
  const int64_t rows = 37, c = 5;
  const Tensor x = random({rows, c}, 1, 100.0), dy = random({rows, c}, 2);  // a large offset: no cancellation
  Tensor mean({c}), m2({c}), sum_dy({c}), sum_dyx({c});
  mean.fill(NAN);
  m2.fill(NAN);
  cpu::batch_norm_local_stats(x, mean, m2);
  std::vector<double> m(c, 0), s(c, 0), invstd(c), sdy(c, 0), sdyx(c, 0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < c; ++k) m[k] += x.f32()[r * c + k] / double(rows);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < c; ++k) s[k] += std::pow(x.f32()[r * c + k] - m[k], 2);
  EXPECT_TRUE(testing::close_l2(mean, m, 1e-6));
  EXPECT_TRUE(testing::close_l2(m2, s, 1e-5));
  Tensor inv({c});
  for (int64_t k = 0; k < c; ++k) inv.f32()[k] = static_cast<float>(1 / std::sqrt(s[k] / double(rows) + 1e-5));
  sum_dy.fill(NAN);
  sum_dyx.fill(NAN);
  cpu::batch_norm_backward_reduce(x, dy, mean, inv, sum_dy, sum_dyx);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < c; ++k) {
      sdy[k] += dy.f32()[r * c + k];
      sdyx[k] += dy.f32()[r * c + k] * (double(x.f32()[r * c + k]) - mean.f32()[k]) * inv.f32()[k];
    }
  EXPECT_TRUE(testing::close_l2(sum_dy, sdy, 1e-5));
  EXPECT_TRUE(testing::close_l2(sum_dyx, sdyx, 1e-5));
}

TEST(OpsBatchNormSync, ComposedOnOneRankEqualTheFusedOps) {
  const int64_t rows = 24, c = 3;
  const Tensor x = random({rows, c}, 3), dy = random({rows, c}, 4), gamma = random({c}, 5);
  Tensor beta = random({c}, 6), y({rows, c}), mean({c}), invstd({c}), rm = Tensor::zeros({c}),
         rv = Tensor::full({c}, 1);
  cpu::batch_norm_forward_train(x, gamma, beta, y, mean, invstd, rm, rv, 0.1f, 1e-5f);
  Tensor dx({rows, c}), dgamma({c}), dbeta({c});
  cpu::batch_norm_backward(x, dy, gamma, mean, invstd, dx, dgamma, dbeta);

  Tensor sum_dy({c}), sum_dyx({c}), mean_dy({c}), mean_dyx({c}), dx2({rows, c});
  cpu::batch_norm_backward_reduce(x, dy, mean, invstd, sum_dy, sum_dyx);
  EXPECT_TRUE(testing::close_l2(sum_dy, dbeta, 1e-6));
  EXPECT_TRUE(testing::close_l2(sum_dyx, dgamma, 1e-6));
  for (int64_t k = 0; k < c; ++k) {
    mean_dy.f32()[k] = sum_dy.f32()[k] / float(rows);
    mean_dyx.f32()[k] = sum_dyx.f32()[k] / float(rows);
  }
  dx2.fill(NAN);
  cpu::batch_norm_backward_apply(x, dy, gamma, mean, invstd, mean_dy, mean_dyx, dx2);
  EXPECT_TRUE(testing::close_l2(dx2, dx, 1e-5));
}

}  // namespace
}  // namespace convnet
