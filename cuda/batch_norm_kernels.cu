#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "cuda/batch_norm_kernels.h"
#include "cuda/check.h"
#include "cuda/grid_stride.h"
#include "cuda/reduce_kernels.h"
#include "cuda/stored_value.cuh"

namespace convnet::cuda {

namespace {

constexpr size_t kScratchAlign = 256;

size_t align_up(size_t bytes) {
  return (bytes + kScratchAlign - 1) / kScratchAlign * kScratchAlign;
}

// Scratch layout (each region 256-byte aligned): stage-1 partials for up to two values per
// channel, 2 x C double sums, then three C-float coefficient arrays.
struct Scratch {
  double* partials;
  double* sums;
  float* coef[3];
};
size_t partials_bytes(int64_t rows, int64_t channels) {
  return align_up(ColumnReducePlan::make(rows, channels, 2).partial_bytes());
}
size_t sums_bytes(int64_t channels) {
  return align_up(2 * static_cast<size_t>(channels) * sizeof(double));
}
size_t coef_bytes(int64_t channels) {
  return align_up(static_cast<size_t>(channels) * sizeof(float));
}

Scratch carve(void* base, int64_t rows, int64_t channels) {
  char* p = static_cast<char*>(base);
  Scratch s{};
  s.partials = reinterpret_cast<double*>(p);
  p += partials_bytes(rows, channels);
  s.sums = reinterpret_cast<double*>(p);
  p += sums_bytes(channels);
  for (float*& coef : s.coef) {
    coef = reinterpret_cast<float*>(p);
    p += coef_bytes(channels);
  }
  return s;
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// Whether 4 elements from p make one vector access (16 bytes of f32, 8 of bf16).
template <class In>
bool aligned_vector(const In* p) {
  return reinterpret_cast<uintptr_t>(p) % (4 * sizeof(In)) == 0;
}

// f(x as its element type's pointer): the kernels are templated on it.
template <class F>
void with_x(ActivationIn x, F&& f) {
  if (x.bf16) {
    f(static_cast<const uint16_t*>(x.data));
  } else {
    f(static_cast<const float*>(x.data));
  }
}

template <int Vec>
__device__ void store(float* p, const float (&v)[Vec]) {
  if constexpr (Vec == 4) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  } else {
    for (int k = 0; k < Vec; ++k) p[k] = v[k];
  }
}

// Training, first pass: partial sums of x (launch_column_sums' order, for either element type).
template <class In>
__global__ void __launch_bounds__(kThreads)
    sum_partials_kernel(const In* __restrict__ x, ColumnReducePlan plan, double* __restrict__ partials) {
  const int64_t cols = plan.cols;
  column_partials<1>(plan, partials, [=](int64_t row, int64_t c, double* acc) {
    acc[0] += static_cast<double>(stored_value(x[row * cols + c]));
  });
}

// Training, second pass: partial sums of (x - mean)^2 with mean = sums[c] / rows from the first.
template <class In>
__global__ void __launch_bounds__(kThreads)
    squared_deviation_partials_kernel(const In* __restrict__ x, const double* __restrict__ sums, ColumnReducePlan plan,
                                      double* __restrict__ partials) {
  const int64_t col = column_partials_col();
  const double mean = col < plan.cols ? sums[col] / static_cast<double>(plan.rows) : 0.0;
  const int64_t cols = plan.cols;
  column_partials<1>(plan, partials, [=](int64_t row, int64_t c, double* acc) {
    const double d = static_cast<double>(stored_value(x[row * cols + c])) - mean;
    acc[0] += d * d;
  });
}

// Training, per channel c: from the batch mean and biased variance, the normalizing scale, the
// saved values and the running-stat update (core/cpu/batch_norm.cpp's formulas).
struct TrainStatisticsOut {
  float *scale, *saved_mean, *saved_invstd, *running_mean, *running_var;
};
__device__ void write_train_statistics(int64_t c, double mean, double var, const float* gamma, double rows,
                                       float momentum, float eps, const TrainStatisticsOut& out) {
  const double m = momentum;
  const double invstd = 1.0 / sqrt(var + static_cast<double>(eps));
  out.scale[c] = static_cast<float>(static_cast<double>(gamma[c]) * invstd);
  out.saved_mean[c] = static_cast<float>(mean);
  out.saved_invstd[c] = static_cast<float>(invstd);
  out.running_mean[c] = static_cast<float>((1.0 - m) * out.running_mean[c] + m * mean);
  out.running_var[c] = static_cast<float>((1.0 - m) * out.running_var[c] + m * var * (rows / (rows - 1.0)));
}

// The statistics from sums = [sum x | sum (x - mean)^2].
__global__ void __launch_bounds__(kThreads)
    train_statistics_kernel(const double* __restrict__ sums, const float* __restrict__ gamma, int64_t rows,
                            int64_t channels, float momentum, float eps, TrainStatisticsOut out) {
  const auto n = static_cast<double>(rows);
  for (int64_t c = thread_index(); c < channels; c += grid_stride())
    write_train_statistics(c, sums[c] / n, sums[channels + c] / n, gamma, n, momentum, eps, out);
}

// The statistics from a convolution's mean and M2 (float, Backend::conv2d_forward_with_moments).
__global__ void __launch_bounds__(kThreads)
    train_statistics_from_moments_kernel(const float* __restrict__ mean, const float* __restrict__ m2,
                                         const float* __restrict__ gamma, int64_t rows, int64_t channels,
                                         float momentum, float eps, TrainStatisticsOut out) {
  const auto n = static_cast<double>(rows);
  for (int64_t c = thread_index(); c < channels; c += grid_stride())
    write_train_statistics(c, mean[c], static_cast<double>(m2[c]) / n, gamma, n, momentum, eps, out);
}

__global__ void __launch_bounds__(kThreads)
    moments_from_sums_kernel(float* __restrict__ sum_into_mean, float* __restrict__ sum_sq_into_m2, int64_t rows,
                             int64_t channels) {
  const auto n = static_cast<double>(rows);
  for (int64_t c = thread_index(); c < channels; c += grid_stride()) {
    const double sum = sum_into_mean[c];
    const double mean = sum / n;
    sum_into_mean[c] = static_cast<float>(mean);
    sum_sq_into_m2[c] = static_cast<float>(fmax(static_cast<double>(sum_sq_into_m2[c]) - sum * mean, 0.0));
  }
}

// Inference: scale = gamma / sqrt(running_var + eps), in double like the cpu backend.
__global__ void __launch_bounds__(kThreads)
    eval_scale_kernel(const float* __restrict__ gamma, const float* __restrict__ running_var, int64_t channels,
                      float eps, float* __restrict__ scale) {
  for (int64_t c = thread_index(); c < channels; c += grid_stride())
    scale[c] = static_cast<float>(static_cast<double>(gamma[c]) /
                                  sqrt(static_cast<double>(running_var[c]) + static_cast<double>(eps)));
}

// y = (x - mean[c]) * scale[c] + shift[c] over n = rows * channels elements. Vec == 4 needs
// channels % 4 == 0 (a vector never straddles two rows). An f32 x and y may alias.
template <int Vec, class In>
__global__ void __launch_bounds__(kThreads)
    normalize_kernel(const In* x, const float* __restrict__ mean, const float* __restrict__ scale,
                     const float* __restrict__ shift, int64_t channels, int64_t n, float* y) {
  for (int64_t v = thread_index(); v < n / Vec; v += grid_stride()) {
    const int64_t c = (v * Vec) % channels;
    float val[Vec];
    load_values<Vec>(x + v * Vec, val);
    for (int k = 0; k < Vec; ++k) val[k] = (val[k] - mean[c + k]) * scale[c + k] + shift[c + k];
    store<Vec>(y + v * Vec, val);
  }
}

// Backward, one pass: partial sums of dy and dy * xhat, xhat = (x - mean) * invstd in double.
template <class In>
__global__ void __launch_bounds__(kThreads)
    backward_partials_kernel(const In* __restrict__ x, const float* __restrict__ dy,
                             const float* __restrict__ saved_mean, const float* __restrict__ saved_invstd,
                             ColumnReducePlan plan, double* __restrict__ partials) {
  const int64_t col = column_partials_col();
  const double mean = col < plan.cols ? saved_mean[col] : 0.0;
  const double invstd = col < plan.cols ? saved_invstd[col] : 0.0;
  const int64_t cols = plan.cols;
  column_partials<2>(plan, partials, [=](int64_t row, int64_t c, double* acc) {
    const int64_t i = row * cols + c;
    const double xhat = (static_cast<double>(stored_value(x[i])) - mean) * invstd;
    const double g = dy[i];
    acc[0] += g;
    acc[1] += g * xhat;
  });
}

// Backward: per channel, dbeta, dgamma and the coefficients of dx from sums = [sum dy | sum dy * xhat].
__global__ void __launch_bounds__(kThreads)
    backward_coefficients_kernel(const double* __restrict__ sums, const float* __restrict__ gamma,
                                 const float* __restrict__ saved_invstd, int64_t rows, int64_t channels,
                                 float* __restrict__ dgamma, float* __restrict__ dbeta, float* __restrict__ coef,
                                 float* __restrict__ mean_dy, float* __restrict__ mean_dyx) {
  const double inv_rows = rows > 0 ? 1.0 / static_cast<double>(rows) : 0.0;
  for (int64_t c = thread_index(); c < channels; c += grid_stride()) {
    dbeta[c] = static_cast<float>(sums[c]);
    dgamma[c] = static_cast<float>(sums[channels + c]);
    coef[c] = gamma[c] * saved_invstd[c];
    mean_dy[c] = static_cast<float>(sums[c] * inv_rows);
    mean_dyx[c] = static_cast<float>(sums[channels + c] * inv_rows);
  }
}

// Synchronized pieces: first = sums[0, C) / divisor and second = sums[C, 2C), as floats.
__global__ void __launch_bounds__(kThreads)
    split_sums_kernel(const double* __restrict__ sums, int64_t channels, double divisor, float* __restrict__ first,
                      float* __restrict__ second) {
  for (int64_t c = thread_index(); c < channels; c += grid_stride()) {
    first[c] = static_cast<float>(sums[c] / divisor);
    second[c] = static_cast<float>(sums[channels + c]);
  }
}

// coef = gamma * invstd in float, as backward_coefficients_kernel.
__global__ void __launch_bounds__(kThreads)
    dx_coefficient_kernel(const float* __restrict__ gamma, const float* __restrict__ saved_invstd, int64_t channels,
                          float* __restrict__ coef) {
  for (int64_t c = thread_index(); c < channels; c += grid_stride()) coef[c] = gamma[c] * saved_invstd[c];
}

// dx = coef * (dy - mean_dy - xhat * mean_dyx), xhat = (x - mean) * invstd in float. dx may alias dy.
template <int Vec, class In>
__global__ void __launch_bounds__(kThreads)
    backward_dx_kernel(const In* x, const float* dy, const float* __restrict__ mean, const float* __restrict__ invstd,
                       const float* __restrict__ coef, const float* __restrict__ mean_dy,
                       const float* __restrict__ mean_dyx, int64_t channels, int64_t n, float* dx) {
  for (int64_t v = thread_index(); v < n / Vec; v += grid_stride()) {
    const int64_t c = (v * Vec) % channels;
    float xv[Vec], g[Vec];
    load_values<Vec>(x + v * Vec, xv);
    load_values<Vec>(dy + v * Vec, g);
    for (int k = 0; k < Vec; ++k) {
      const float xhat = (xv[k] - mean[c + k]) * invstd[c + k];
      g[k] = coef[c + k] * (g[k] - mean_dy[c + k] - xhat * mean_dyx[c + k]);
    }
    store<Vec>(dx + v * Vec, g);
  }
}

void launch_normalize(ActivationIn x, const float* mean, const float* scale, const float* shift, int64_t rows,
                      int64_t channels, float* y, cudaStream_t stream) {
  const int64_t n = rows * channels;
  if (n == 0) return;
  with_x(x, [&](const auto* xp) {
    using In = std::remove_cv_t<std::remove_pointer_t<decltype(xp)>>;
    if (channels % 4 == 0 && aligned_vector(xp) && aligned16(y)) {
      normalize_kernel<4, In><<<grid_blocks(n / 4), kThreads, 0, stream>>>(xp, mean, scale, shift, channels, n, y);
    } else {
      normalize_kernel<1, In><<<grid_blocks(n), kThreads, 0, stream>>>(xp, mean, scale, shift, channels, n, y);
    }
  });
  CONVNET_CUDA_CHECK_LAUNCH("normalize_kernel");
}

// The two passes of training statistics: s.sums[0, C) = sum x, s.sums[C, 2C) = sum (x - mean)^2
// (the partials are reused: the stream orders pass 2 after pass 1's combine). rows == 0: zeros.
void launch_mean_and_m2(ActivationIn x, int64_t rows, int64_t channels, const Scratch& s, cudaStream_t stream) {
  const ColumnReducePlan plan = ColumnReducePlan::make(rows, channels, 1);
  with_x(x, [&](const auto* xp) {
    using In = std::remove_cv_t<std::remove_pointer_t<decltype(xp)>>;
    if (plan.chunks > 0) {
      sum_partials_kernel<In><<<plan.grid(), ColumnReducePlan::block(), 0, stream>>>(xp, plan, s.partials);
      CONVNET_CUDA_CHECK_LAUNCH("sum_partials_kernel");
    }
    launch_combine_partials(plan, s.partials, s.sums, stream);
    if (plan.chunks > 0) {
      squared_deviation_partials_kernel<In>
          <<<plan.grid(), ColumnReducePlan::block(), 0, stream>>>(xp, s.sums, plan, s.partials);
      CONVNET_CUDA_CHECK_LAUNCH("squared_deviation_partials_kernel");
    }
  });
  launch_combine_partials(plan, s.partials, s.sums + channels, stream);
}

// Backward's one pass: s.sums[0, C) = sum dy, s.sums[C, 2C) = sum dy * xhat.
void launch_backward_sums(ActivationIn x, const float* dy, const float* saved_mean, const float* saved_invstd,
                          int64_t rows, int64_t channels, const Scratch& s, cudaStream_t stream) {
  const ColumnReducePlan plan = ColumnReducePlan::make(rows, channels, 2);
  if (plan.chunks > 0) {
    with_x(x, [&](const auto* xp) {
      using In = std::remove_cv_t<std::remove_pointer_t<decltype(xp)>>;
      backward_partials_kernel<In>
          <<<plan.grid(), ColumnReducePlan::block(), 0, stream>>>(xp, dy, saved_mean, saved_invstd, plan, s.partials);
    });
    CONVNET_CUDA_CHECK_LAUNCH("backward_partials_kernel");
  }
  launch_combine_partials(plan, s.partials, s.sums, stream);
}

void launch_split_sums(const Scratch& s, int64_t channels, double divisor, float* first, float* second,
                       cudaStream_t stream) {
  split_sums_kernel<<<grid_blocks(channels), kThreads, 0, stream>>>(s.sums, channels, divisor, first, second);
  CONVNET_CUDA_CHECK_LAUNCH("split_sums_kernel");
}

void launch_backward_dx(ActivationIn x, const float* dy, const float* saved_mean, const float* saved_invstd,
                        const float* coef, const float* mean_dy, const float* mean_dyx, int64_t rows, int64_t channels,
                        float* dx, cudaStream_t stream) {
  const int64_t n = rows * channels;
  if (n == 0) return;
  with_x(x, [&](const auto* xp) {
    using In = std::remove_cv_t<std::remove_pointer_t<decltype(xp)>>;
    if (channels % 4 == 0 && aligned_vector(xp) && aligned16(dy) && aligned16(dx)) {
      backward_dx_kernel<4, In><<<grid_blocks(n / 4), kThreads, 0, stream>>>(xp, dy, saved_mean, saved_invstd, coef,
                                                                             mean_dy, mean_dyx, channels, n, dx);
    } else {
      backward_dx_kernel<1, In><<<grid_blocks(n), kThreads, 0, stream>>>(xp, dy, saved_mean, saved_invstd, coef,
                                                                         mean_dy, mean_dyx, channels, n, dx);
    }
  });
  CONVNET_CUDA_CHECK_LAUNCH("backward_dx_kernel");
}

}  // namespace

size_t batch_norm_scratch_bytes(int64_t rows, int64_t channels) {
  return partials_bytes(rows, channels) + sums_bytes(channels) + 3 * coef_bytes(channels);
}

void launch_batch_norm_forward_train(ActivationIn x, const float* gamma, const float* beta, float* y, float* saved_mean,
                                     float* saved_invstd, float* running_mean, float* running_var, int64_t rows,
                                     int64_t channels, float momentum, float eps, void* scratch, cudaStream_t stream) {
  const Scratch s = carve(scratch, rows, channels);
  launch_mean_and_m2(x, rows, channels, s, stream);
  const TrainStatisticsOut out{s.coef[0], saved_mean, saved_invstd, running_mean, running_var};
  train_statistics_kernel<<<grid_blocks(channels), kThreads, 0, stream>>>(s.sums, gamma, rows, channels, momentum, eps,
                                                                          out);
  CONVNET_CUDA_CHECK_LAUNCH("train_statistics_kernel");
  launch_normalize(x, saved_mean, out.scale, beta, rows, channels, y, stream);
}

void launch_batch_norm_forward_train_from_moments(ActivationIn x, const float* mean, const float* m2,
                                                  const float* gamma, const float* beta, float* y, float* saved_mean,
                                                  float* saved_invstd, float* running_mean, float* running_var,
                                                  int64_t rows, int64_t channels, float momentum, float eps,
                                                  void* scratch, cudaStream_t stream) {
  const TrainStatisticsOut out{carve(scratch, rows, channels).coef[0], saved_mean, saved_invstd, running_mean,
                               running_var};
  train_statistics_from_moments_kernel<<<grid_blocks(channels), kThreads, 0, stream>>>(mean, m2, gamma, rows, channels,
                                                                                       momentum, eps, out);
  CONVNET_CUDA_CHECK_LAUNCH("train_statistics_from_moments_kernel");
  launch_normalize(x, saved_mean, out.scale, beta, rows, channels, y, stream);
}

void launch_moments_from_sums(float* sum_into_mean, float* sum_sq_into_m2, int64_t rows, int64_t channels,
                              cudaStream_t stream) {
  moments_from_sums_kernel<<<grid_blocks(channels), kThreads, 0, stream>>>(sum_into_mean, sum_sq_into_m2, rows,
                                                                           channels);
  CONVNET_CUDA_CHECK_LAUNCH("moments_from_sums_kernel");
}

void launch_batch_norm_forward_eval(ActivationIn x, const float* gamma, const float* beta, const float* running_mean,
                                    const float* running_var, int64_t rows, int64_t channels, float eps, float* y,
                                    void* scratch, cudaStream_t stream) {
  const Scratch s = carve(scratch, rows, channels);
  float* scale = s.coef[0];
  eval_scale_kernel<<<grid_blocks(channels), kThreads, 0, stream>>>(gamma, running_var, channels, eps, scale);
  CONVNET_CUDA_CHECK_LAUNCH("eval_scale_kernel");
  launch_normalize(x, running_mean, scale, beta, rows, channels, y, stream);
}

void launch_batch_norm_backward(ActivationIn x, const float* dy, const float* gamma, const float* saved_mean,
                                const float* saved_invstd, int64_t rows, int64_t channels, float* dx, float* dgamma,
                                float* dbeta, void* scratch, cudaStream_t stream) {
  const Scratch s = carve(scratch, rows, channels);
  launch_backward_sums(x, dy, saved_mean, saved_invstd, rows, channels, s, stream);
  float* coef = s.coef[0];
  float* mean_dy = s.coef[1];
  float* mean_dyx = s.coef[2];
  backward_coefficients_kernel<<<grid_blocks(channels), kThreads, 0, stream>>>(
      s.sums, gamma, saved_invstd, rows, channels, dgamma, dbeta, coef, mean_dy, mean_dyx);
  CONVNET_CUDA_CHECK_LAUNCH("backward_coefficients_kernel");
  launch_backward_dx(x, dy, saved_mean, saved_invstd, coef, mean_dy, mean_dyx, rows, channels, dx, stream);
}

void launch_batch_norm_local_stats(ActivationIn x, int64_t rows, int64_t channels, float* mean, float* m2,
                                   void* scratch, cudaStream_t stream) {
  const Scratch s = carve(scratch, rows, channels);
  launch_mean_and_m2(x, rows, channels, s, stream);
  // rows == 0: the sums are zeros, and so are mean and m2.
  launch_split_sums(s, channels, rows > 0 ? static_cast<double>(rows) : 1.0, mean, m2, stream);
}

void launch_batch_norm_backward_reduce(ActivationIn x, const float* dy, const float* saved_mean,
                                       const float* saved_invstd, int64_t rows, int64_t channels, float* sum_dy,
                                       float* sum_dy_xhat, void* scratch, cudaStream_t stream) {
  const Scratch s = carve(scratch, rows, channels);
  launch_backward_sums(x, dy, saved_mean, saved_invstd, rows, channels, s, stream);
  launch_split_sums(s, channels, 1.0, sum_dy, sum_dy_xhat, stream);
}

void launch_batch_norm_backward_apply(ActivationIn x, const float* dy, const float* gamma, const float* saved_mean,
                                      const float* saved_invstd, const float* mean_dy, const float* mean_dy_xhat,
                                      int64_t rows, int64_t channels, float* dx, void* scratch, cudaStream_t stream) {
  float* coef = carve(scratch, rows, channels).coef[0];
  dx_coefficient_kernel<<<grid_blocks(channels), kThreads, 0, stream>>>(gamma, saved_invstd, channels, coef);
  CONVNET_CUDA_CHECK_LAUNCH("dx_coefficient_kernel");
  launch_backward_dx(x, dy, saved_mean, saved_invstd, coef, mean_dy, mean_dy_xhat, rows, channels, dx, stream);
}

}  // namespace convnet::cuda
