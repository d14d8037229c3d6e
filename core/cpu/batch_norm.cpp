#include "core/cpu/batch_norm.h"

#include <cmath>
#include <vector>

#include "core/base/error.h"
#include "core/cpu/checks.h"
#include "core/cpu/parallel.h"
#include "core/cpu/reduce.h"

namespace convnet::cpu {

namespace {

constexpr int64_t kRowGrain = 256;

// Validates x (rank >= 1, f32) and returns its channel count C (last dim).
int64_t channels_of(const Tensor& x, const char* op) {
  check_tensor(x, op, "x");
  CONVNET_CHECK(x.rank() >= 1 && x.dim(-1) > 0, "{}: x has shape {}, expected [..., C] with C > 0", op,
                shape_str(x.shape()));
  return x.dim(-1);
}

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

}  // namespace

void batch_norm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& y, Tensor& saved_mean,
                              Tensor& saved_invstd, Tensor& running_mean, Tensor& running_var, float momentum,
                              float eps) {
  const char* op = "batch_norm_forward_train";
  const int64_t channels = channels_of(x, op);
  const Shape cshape{channels};
  check_shape(gamma, cshape, op, "gamma");
  check_shape(beta, cshape, op, "beta");
  check_shape(y, x.shape(), op, "y");
  check_shape(saved_mean, cshape, op, "saved_mean");
  check_shape(saved_invstd, cshape, op, "saved_invstd");
  check_shape(running_mean, cshape, op, "running_mean");
  check_shape(running_var, cshape, op, "running_var");
  CONVNET_CHECK(eps >= 0.0f, "{}: eps {} must be >= 0", op, eps);
  CONVNET_CHECK(momentum >= 0.0f && momentum <= 1.0f, "{}: momentum {} must lie in [0, 1]", op, momentum);
  const int64_t rows = x.numel() / channels;
  if (rows < 2)
    throw Error(
        fmt::format("batch_norm: training needs more than one value per channel, got input {}", shape_str(x.shape())));

  const float* xp = x.f32();
  const auto cn = static_cast<size_t>(channels);
  std::vector<double> mean(cn), var(cn);
  column_sums(xp, rows, channels, mean.data());
  for (double& m : mean) m /= static_cast<double>(rows);
  // Second pass around the mean: no catastrophic cancellation for large offsets.
  column_reduce(
      rows, channels,
      [&](int64_t r0, int64_t r1, double* acc) {
        for (int64_t r = r0; r < r1; ++r) {
          const float* xr = xp + r * channels;
          for (size_t c = 0; c < cn; ++c) {
            const double d = static_cast<double>(xr[c]) - mean[c];
            acc[c] += d * d;
          }
        }
      },
      var.data());
  for (double& v : var) v /= static_cast<double>(rows);

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
  normalize(xp, rows, channels, mean_f, scale, shift, y.f32());
}

void batch_norm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                             const Tensor& running_var, float eps, Tensor& y) {
  const char* op = "batch_norm_forward_eval";
  const int64_t channels = channels_of(x, op);
  const Shape cshape{channels};
  check_shape(gamma, cshape, op, "gamma");
  check_shape(beta, cshape, op, "beta");
  check_shape(running_mean, cshape, op, "running_mean");
  check_shape(running_var, cshape, op, "running_var");
  check_shape(y, x.shape(), op, "y");
  CONVNET_CHECK(eps >= 0.0f, "{}: eps {} must be >= 0", op, eps);
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
  const char* op = "batch_norm_backward";
  const int64_t channels = channels_of(x, op);
  const Shape cshape{channels};
  check_shape(dy, x.shape(), op, "dy");
  check_shape(gamma, cshape, op, "gamma");
  check_shape(saved_mean, cshape, op, "saved_mean");
  check_shape(saved_invstd, cshape, op, "saved_invstd");
  check_shape(dx, x.shape(), op, "dx");
  check_shape(dgamma, cshape, op, "dgamma");
  check_shape(dbeta, cshape, op, "dbeta");
  const int64_t rows = x.numel() / channels;
  const auto cn = static_cast<size_t>(channels);
  const float* xp = x.f32();
  const float* dyp = dy.f32();
  const float* mp = saved_mean.f32();
  const float* ip = saved_invstd.f32();
  const float* gp = gamma.f32();

  // sums[c] = sum dy, sums[C + c] = sum dy * xhat.
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

  std::vector<float> coef(cn), mean_dy(cn), mean_dyx(cn);
  float* dgp = dgamma.f32();
  float* dbp = dbeta.f32();
  const double inv_rows = rows > 0 ? 1.0 / static_cast<double>(rows) : 0.0;
  for (size_t c = 0; c < cn; ++c) {
    dbp[c] = static_cast<float>(sums[c]);
    dgp[c] = static_cast<float>(sums[cn + c]);
    coef[c] = gp[c] * ip[c];
    mean_dy[c] = static_cast<float>(sums[c] * inv_rows);
    mean_dyx[c] = static_cast<float>(sums[cn + c] * inv_rows);
  }
  float* dxp = dx.f32();
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

}  // namespace convnet::cpu
