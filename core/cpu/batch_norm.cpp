#include "core/cpu/batch_norm.h"

#include <cmath>
#include <vector>

#include "core/base/op_checks.h"
#include "core/cpu/parallel.h"
#include "core/cpu/reduce.h"

namespace convnet::cpu {

namespace {

constexpr int64_t kRowGrain = 256;

// y = (x - mean) * scale + shift per channel, over rows of C.
void normalize(const float* x, int64_t rows, int64_t channels, const std::vector<float>& mean,
               const std::vector<float>& scale, const std::vector<float>& shift, float* y) {
  parallel_for(0, rows, kRowGrain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * channels;
      float* yr = y + r * channels;
      for (int64_t c = 0; c < channels; ++c) {
        const auto ci = static_cast<size_t>(c);
        yr[c] = (xr[c] - mean[ci]) * scale[ci] + shift[ci];
      }
    }
  });
}

// Per-channel mean and M2 = sum (x - mean)^2 in double: the mean first, then the squares around it
// (two passes, so no catastrophic cancellation for large offsets). rows == 0 gives zeros.
struct ChannelMoments {
  std::vector<double> mean, m2;
};
ChannelMoments channel_moments(const float* xp, int64_t rows, int64_t channels) {
  const auto cn = static_cast<size_t>(channels);
  ChannelMoments mo{std::vector<double>(cn), std::vector<double>(cn)};
  column_sums(xp, rows, channels, mo.mean.data());
  if (rows > 0)
    for (double& m : mo.mean) m /= static_cast<double>(rows);
  column_reduce(
      rows, channels,
      [&](int64_t r0, int64_t r1, double* acc) {
        for (int64_t r = r0; r < r1; ++r) {
          const float* xr = xp + r * channels;
          for (size_t c = 0; c < cn; ++c) {
            const double d = static_cast<double>(xr[c]) - mo.mean[c];
            acc[c] += d * d;
          }
        }
      },
      mo.m2.data());
  return mo;
}

// sums[c] = sum dy, sums[C + c] = sum dy * xhat, xhat = (x - mean) * invstd in double.
std::vector<double> backward_sums(const float* xp, const float* dyp, const float* mp, const float* ip, int64_t rows,
                                  int64_t channels) {
  const auto cn = static_cast<size_t>(channels);
  std::vector<double> sums(2 * cn);
  column_reduce(
      rows, 2 * channels,
      [&](int64_t r0, int64_t r1, double* acc) {
        for (int64_t r = r0; r < r1; ++r) {
          const float* xr = xp + r * channels;
          const float* dr = dyp + r * channels;
          for (size_t c = 0; c < cn; ++c) {
            const double xhat = (static_cast<double>(xr[c]) - mp[c]) * ip[c];
            acc[c] += dr[c];
            acc[cn + c] += dr[c] * xhat;
          }
        }
      },
      sums.data());
  return sums;
}

// dx = gamma * invstd * (dy - mean_dy - xhat * mean_dyx), xhat in float. Each element reads its
// own x and dy before writing dx, so dx may alias dy.
void apply_dx(const float* xp, const float* dyp, const float* gp, const float* mp, const float* ip,
              const float* mean_dy, const float* mean_dyx, int64_t rows, int64_t channels, float* dxp) {
  const auto cn = static_cast<size_t>(channels);
  std::vector<float> coef(cn);
  for (size_t c = 0; c < cn; ++c) coef[c] = gp[c] * ip[c];
  parallel_for(0, rows, kRowGrain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = xp + r * channels;
      const float* dr = dyp + r * channels;
      float* out = dxp + r * channels;
      for (size_t c = 0; c < cn; ++c) {
        const float xhat = (xr[c] - mp[c]) * ip[c];
        out[c] = coef[c] * (dr[c] - mean_dy[c] - xhat * mean_dyx[c]);
      }
    }
  });
}

// The rest of training-mode batchnorm once the statistics are known: saved values, running
// statistics and y, from the mean and biased variance in double.
void normalize_with_batch_statistics(const Tensor& x, int64_t channels, const std::vector<double>& mean,
                                     const std::vector<double>& var, const Tensor& gamma, const Tensor& beta, Tensor& y,
                                     Tensor& saved_mean, Tensor& saved_invstd, Tensor& running_mean,
                                     Tensor& running_var, float momentum, float eps) {
  const int64_t rows = x.numel() / channels;
  const auto cn = static_cast<size_t>(channels);
  std::vector<float> mean_f(cn), scale(cn), shift(cn);
  float* smp = saved_mean.f32();
  float* sip = saved_invstd.f32();
  float* rmp = running_mean.f32();
  float* rvp = running_var.f32();
  const float* gp = gamma.f32();
  const float* bp = beta.f32();
  const double unbias = static_cast<double>(rows) / static_cast<double>(rows - 1);
  const double m = momentum;
  for (size_t c = 0; c < cn; ++c) {
    const double invstd = 1.0 / std::sqrt(var[c] + static_cast<double>(eps));
    mean_f[c] = static_cast<float>(mean[c]);
    scale[c] = static_cast<float>(static_cast<double>(gp[c]) * invstd);
    shift[c] = bp[c];
    smp[c] = mean_f[c];
    sip[c] = static_cast<float>(invstd);
    rmp[c] = static_cast<float>((1.0 - m) * rmp[c] + m * mean[c]);
    rvp[c] = static_cast<float>((1.0 - m) * rvp[c] + m * var[c] * unbias);
  }
  normalize(x.f32(), rows, channels, mean_f, scale, shift, y.f32());
}

}  // namespace

void batch_norm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& y, Tensor& saved_mean,
                              Tensor& saved_invstd, Tensor& running_mean, Tensor& running_var, float momentum,
                              float eps) {
  const int64_t channels = OpChecks::cpu("batch_norm_forward_train")
                               .batch_norm_forward_train(x, gamma, beta, y, saved_mean, saved_invstd, running_mean,
                                                         running_var, momentum, eps);
  const int64_t rows = x.numel() / channels;
  ChannelMoments mo = channel_moments(x.f32(), rows, channels);
  for (double& v : mo.m2) v /= static_cast<double>(rows);
  normalize_with_batch_statistics(x, channels, mo.mean, mo.m2, gamma, beta, y, saved_mean, saved_invstd, running_mean,
                                  running_var, momentum, eps);
}

void batch_norm_forward_train_from_moments(const Tensor& x, const Tensor& mean, const Tensor& m2, const Tensor& gamma,
                                           const Tensor& beta, Tensor& y, Tensor& saved_mean, Tensor& saved_invstd,
                                           Tensor& running_mean, Tensor& running_var, float momentum, float eps) {
  const int64_t channels =
      OpChecks::cpu("batch_norm_forward_train_from_moments")
          .batch_norm_forward_train_from_moments(x, mean, m2, gamma, beta, y, saved_mean, saved_invstd, running_mean,
                                                 running_var, momentum, eps);
  const auto rows = static_cast<double>(x.numel() / channels);
  const auto cn = static_cast<size_t>(channels);
  std::vector<double> mean_d(cn), var(cn);
  for (size_t c = 0; c < cn; ++c) {
    mean_d[c] = mean.f32()[c];
    var[c] = static_cast<double>(m2.f32()[c]) / rows;
  }
  normalize_with_batch_statistics(x, channels, mean_d, var, gamma, beta, y, saved_mean, saved_invstd, running_mean,
                                  running_var, momentum, eps);
}

void batch_norm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                             const Tensor& running_var, float eps, Tensor& y) {
  const int64_t channels = OpChecks::cpu("batch_norm_forward_eval")
                               .batch_norm_forward_eval(x, gamma, beta, running_mean, running_var, eps, y);
  const auto cn = static_cast<size_t>(channels);
  std::vector<float> mean(cn), scale(cn), shift(cn);
  const float* gp = gamma.f32();
  const float* bp = beta.f32();
  const float* rmp = running_mean.f32();
  const float* rvp = running_var.f32();
  for (size_t c = 0; c < cn; ++c) {
    mean[c] = rmp[c];
    scale[c] = static_cast<float>(static_cast<double>(gp[c]) / std::sqrt(static_cast<double>(rvp[c]) + eps));
    shift[c] = bp[c];
  }
  normalize(x.f32(), x.numel() / channels, channels, mean, scale, shift, y.f32());
}

void batch_norm_backward(const Tensor& x, const Tensor& dy, const Tensor& gamma, const Tensor& saved_mean,
                         const Tensor& saved_invstd, Tensor& dx, Tensor& dgamma, Tensor& dbeta) {
  const int64_t channels = OpChecks::cpu("batch_norm_backward")
                               .batch_norm_backward(x, dy, gamma, saved_mean, saved_invstd, dx, dgamma, dbeta);
  const int64_t rows = x.numel() / channels;
  const auto cn = static_cast<size_t>(channels);
  const float* xp = x.f32();
  const float* dyp = dy.f32();
  const float* mp = saved_mean.f32();
  const float* ip = saved_invstd.f32();
  const float* gp = gamma.f32();

  const std::vector<double> sums = backward_sums(xp, dyp, mp, ip, rows, channels);
  std::vector<float> mean_dy(cn), mean_dyx(cn);
  float* dgp = dgamma.f32();
  float* dbp = dbeta.f32();
  const double inv_rows = rows > 0 ? 1.0 / static_cast<double>(rows) : 0.0;
  for (size_t c = 0; c < cn; ++c) {
    dbp[c] = static_cast<float>(sums[c]);
    dgp[c] = static_cast<float>(sums[cn + c]);
    mean_dy[c] = static_cast<float>(sums[c] * inv_rows);
    mean_dyx[c] = static_cast<float>(sums[cn + c] * inv_rows);
  }
  apply_dx(xp, dyp, gp, mp, ip, mean_dy.data(), mean_dyx.data(), rows, channels, dx.f32());
}

void batch_norm_local_stats(const Tensor& x, Tensor& mean, Tensor& m2) {
  const int64_t channels = OpChecks::cpu("batch_norm_local_stats").batch_norm_local_stats(x, mean, m2);
  const ChannelMoments mo = channel_moments(x.f32(), x.numel() / channels, channels);
  float* mp = mean.f32();
  float* m2p = m2.f32();
  for (size_t c = 0; c < mo.mean.size(); ++c) {
    mp[c] = static_cast<float>(mo.mean[c]);
    m2p[c] = static_cast<float>(mo.m2[c]);
  }
}

void batch_norm_backward_reduce(const Tensor& x, const Tensor& dy, const Tensor& saved_mean, const Tensor& saved_invstd,
                                Tensor& sum_dy, Tensor& sum_dy_xhat) {
  const int64_t channels = OpChecks::cpu("batch_norm_backward_reduce")
                               .batch_norm_backward_reduce(x, dy, saved_mean, saved_invstd, sum_dy, sum_dy_xhat);
  const auto cn = static_cast<size_t>(channels);
  const std::vector<double> sums =
      backward_sums(x.f32(), dy.f32(), saved_mean.f32(), saved_invstd.f32(), x.numel() / channels, channels);
  float* sp = sum_dy.f32();
  float* sxp = sum_dy_xhat.f32();
  for (size_t c = 0; c < cn; ++c) {
    sp[c] = static_cast<float>(sums[c]);
    sxp[c] = static_cast<float>(sums[cn + c]);
  }
}

void batch_norm_backward_apply(const Tensor& x, const Tensor& dy, const Tensor& gamma, const Tensor& saved_mean,
                               const Tensor& saved_invstd, const Tensor& mean_dy, const Tensor& mean_dy_xhat,
                               Tensor& dx) {
  const int64_t channels =
      OpChecks::cpu("batch_norm_backward_apply")
          .batch_norm_backward_apply(x, dy, gamma, saved_mean, saved_invstd, mean_dy, mean_dy_xhat, dx);
  apply_dx(x.f32(), dy.f32(), gamma.f32(), saved_mean.f32(), saved_invstd.f32(), mean_dy.f32(), mean_dy_xhat.f32(),
           x.numel() / channels, channels, dx.f32());
}

}  // namespace convnet::cpu
