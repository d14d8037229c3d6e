#include "core/cpu/softmax_cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/base/error.h"
#include "core/base/op_checks.h"
#include "core/cpu/parallel.h"

namespace convnet::cpu {

namespace {

// Every label of a validated problem lies in [0, K).
void check_labels(const Tensor& labels, const LossGeometry& g, const char* op) {
  const int32_t* lp = labels.data<int32_t>();
  for (int64_t i = 0; i < g.n; ++i)
    if (lp[i] < 0 || lp[i] >= g.k)
      throw Error(fmt::format("{}: label {} out of range [0, {}) at batch index {}", op, lp[i], g.k, i));
}

}  // namespace

void softmax_cross_entropy_forward(const Tensor& logits, const Tensor& labels, float smoothing, Tensor& loss,
                                   Tensor& probs) {
  const char* op = "softmax_cross_entropy_forward";
  const LossGeometry g = OpChecks::cpu(op).softmax_cross_entropy_forward(logits, labels, smoothing, loss, probs);
  check_labels(labels, g, op);
  const int64_t n = g.n, k = g.k;  // not a structured binding: clang 14 cannot capture those in lambdas
  const float* zp = logits.f32();
  const int32_t* lp = labels.data<int32_t>();
  float* pp = probs.f32();
  const double s = smoothing;
  std::vector<double> row_loss(static_cast<size_t>(n));
  parallel_for(0, n, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* z = zp + r * k;
      float* prob = pp + r * k;
      const float zmax = *std::max_element(z, z + k);
      double sum = 0.0, zsum = 0.0;
      for (int64_t j = 0; j < k; ++j) {
        sum += std::exp(static_cast<double>(z[j] - zmax));
        zsum += z[j];
      }
      const double lse = static_cast<double>(zmax) + std::log(sum);
      for (int64_t j = 0; j < k; ++j) prob[j] = static_cast<float>(std::exp(static_cast<double>(z[j]) - lse));
      // -sum_j t_j log p_j with sum_j t_j = 1: lse - (1 - s) z_label - s * mean(z).
      const double target_dot = (1.0 - s) * z[lp[r]] + s * zsum / static_cast<double>(k);
      row_loss[static_cast<size_t>(r)] = lse - target_dot;
    }
  });
  double total = 0.0;  // summed in row order: deterministic
  for (double v : row_loss) total += v;
  loss.f32()[0] = static_cast<float>(n > 0 ? total / static_cast<double>(n) : 0.0);
}

void softmax_cross_entropy_backward(const Tensor& probs, const Tensor& labels, float smoothing, Tensor& dlogits) {
  const char* op = "softmax_cross_entropy_backward";
  const LossGeometry g = OpChecks::cpu(op).softmax_cross_entropy_backward(probs, labels, smoothing, dlogits);
  check_labels(labels, g, op);
  const int64_t n = g.n, k = g.k;  // not a structured binding: clang 14 cannot capture those in lambdas
  const float* pp = probs.f32();
  const int32_t* lp = labels.data<int32_t>();
  float* dp = dlogits.f32();
  const float off = smoothing / static_cast<float>(k);
  const float on = 1.0f - smoothing + off;
  const float inv_n = 1.0f / static_cast<float>(std::max<int64_t>(n, 1));
  parallel_for(0, n, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t j = 0; j < k; ++j) {
        const float target = j == lp[r] ? on : off;
        dp[r * k + j] = (pp[r * k + j] - target) * inv_n;
      }
  });
}

}  // namespace convnet::cpu
