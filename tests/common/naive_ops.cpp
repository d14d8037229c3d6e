#include "tests/common/naive_ops.h"

#include <cmath>
#include <limits>
#include <numbers>

#include "core/base/rng.h"

namespace convnet::testing::naive {

namespace {

size_t at(int64_t i) {
  return static_cast<size_t>(i);
}
double value(const Tensor& t, int64_t i) {
  return static_cast<double>(t.f32()[i]);
}

// Index helpers for 4-D row-major tensors.
struct Dims4 {
  int64_t d0, d1, d2, d3;
  explicit Dims4(const Shape& s) : d0(s.at(0)), d1(s.at(1)), d2(s.at(2)), d3(s.at(3)) {}
  int64_t operator()(int64_t a, int64_t b, int64_t c, int64_t d) const { return ((a * d1 + b) * d2 + c) * d3 + d; }
  int64_t numel() const { return d0 * d1 * d2 * d3; }
};

struct ConvDims {
  Dims4 x, w, y;
};
ConvDims conv_dims(const Shape& x_shape, const Shape& w_shape, const Conv2dParams& p) {
  const int64_t out_h = conv_output_size(x_shape.at(1), w_shape.at(1), p.stride_h, p.pad_h, p.dilation_h);
  const int64_t out_w = conv_output_size(x_shape.at(2), w_shape.at(2), p.stride_w, p.pad_w, p.dilation_w);
  return {Dims4(x_shape), Dims4(w_shape), Dims4(Shape{x_shape.at(0), out_h, out_w, w_shape.at(0)})};
}

// The first input channel output channel k reads: its group's (Conv2dParams::groups); the filters'
// last axis d.w.d3 is the channels per group.
int64_t first_input_channel(const ConvDims& d, const Conv2dParams& p, int64_t k) {
  return k / (d.y.d3 / p.groups) * d.w.d3;
}

// Calls f(n, op, oq, k, r, s, ih, iw) for every output element and every in-bounds kernel tap.
template <class F>
void for_each_conv_tap(const ConvDims& d, const Conv2dParams& p, F&& f) {
  for (int64_t n = 0; n < d.y.d0; ++n)
    for (int64_t op = 0; op < d.y.d1; ++op)
      for (int64_t oq = 0; oq < d.y.d2; ++oq)
        for (int64_t k = 0; k < d.y.d3; ++k)
          for (int64_t r = 0; r < d.w.d1; ++r)
            for (int64_t s = 0; s < d.w.d2; ++s) {
              const int64_t ih = op * p.stride_h - p.pad_h + r * p.dilation_h;
              const int64_t iw = oq * p.stride_w - p.pad_w + s * p.dilation_w;
              if (ih < 0 || ih >= d.x.d1 || iw < 0 || iw >= d.x.d2) continue;
              f(n, op, oq, k, r, s, ih, iw);
            }
}

struct PoolDims {
  Dims4 x, y;
};
PoolDims pool_dims(const Shape& x_shape, const Pool2dParams& p) {
  const int64_t out_h = conv_output_size(x_shape.at(1), p.kernel_h, p.stride_h, p.pad_h);
  const int64_t out_w = conv_output_size(x_shape.at(2), p.kernel_w, p.stride_w, p.pad_w);
  return {Dims4(x_shape), Dims4(Shape{x_shape.at(0), out_h, out_w, x_shape.at(3)})};
}

}  // namespace

std::vector<double> conv2d_forward(const Tensor& x, const Tensor& w, const Tensor* bias, const Conv2dParams& p) {
  const ConvDims d = conv_dims(x.shape(), w.shape(), p);
  std::vector<double> y(at(d.y.numel()), 0.0);
  for (int64_t n = 0; n < d.y.d0; ++n)
    for (int64_t op = 0; op < d.y.d1; ++op)
      for (int64_t oq = 0; oq < d.y.d2; ++oq)
        for (int64_t k = 0; k < d.y.d3; ++k) y[at(d.y(n, op, oq, k))] = bias ? value(*bias, k) : 0.0;
  for_each_conv_tap(d, p,
                    [&](int64_t n, int64_t op, int64_t oq, int64_t k, int64_t r, int64_t s, int64_t ih, int64_t iw) {
                      const int64_t c0 = first_input_channel(d, p, k);
                      double sum = 0.0;
                      for (int64_t c = 0; c < d.w.d3; ++c)
                        sum += value(x, d.x(n, ih, iw, c0 + c)) * value(w, d.w(k, r, s, c));
                      y[at(d.y(n, op, oq, k))] += sum;
                    });
  return y;
}

std::vector<double> conv2d_backward_data(const Tensor& dy, const Tensor& w, const Shape& x_shape,
                                         const Conv2dParams& p) {
  const ConvDims d = conv_dims(x_shape, w.shape(), p);
  std::vector<double> dx(at(d.x.numel()), 0.0);
  for_each_conv_tap(d, p,
                    [&](int64_t n, int64_t op, int64_t oq, int64_t k, int64_t r, int64_t s, int64_t ih, int64_t iw) {
                      const int64_t c0 = first_input_channel(d, p, k);
                      const double g = value(dy, d.y(n, op, oq, k));
                      for (int64_t c = 0; c < d.w.d3; ++c)
                        dx[at(d.x(n, ih, iw, c0 + c))] += g * value(w, d.w(k, r, s, c));
                    });
  return dx;
}

std::vector<double> conv2d_backward_filter(const Tensor& x, const Tensor& dy, const Shape& w_shape,
                                           const Conv2dParams& p) {
  const ConvDims d = conv_dims(x.shape(), w_shape, p);
  std::vector<double> dw(at(d.w.numel()), 0.0);
  for_each_conv_tap(d, p,
                    [&](int64_t n, int64_t op, int64_t oq, int64_t k, int64_t r, int64_t s, int64_t ih, int64_t iw) {
                      const int64_t c0 = first_input_channel(d, p, k);
                      const double g = value(dy, d.y(n, op, oq, k));
                      for (int64_t c = 0; c < d.w.d3; ++c)
                        dw[at(d.w(k, r, s, c))] += g * value(x, d.x(n, ih, iw, c0 + c));
                    });
  return dw;
}

std::vector<double> sum_over_last_dim(const Tensor& t) {
  const int64_t c = t.dim(-1);
  std::vector<double> out(at(c), 0.0);
  for (int64_t i = 0; i < t.numel(); ++i) out[at(i % c)] += value(t, i);
  return out;
}

MaxPoolResult max_pool2d_forward(const Tensor& x, const Pool2dParams& p) {
  const PoolDims d = pool_dims(x.shape(), p);
  MaxPoolResult out;
  out.y.assign(at(d.y.numel()), 0.0);
  out.argmax.assign(at(d.y.numel()), -1);
  for (int64_t n = 0; n < d.y.d0; ++n)
    for (int64_t op = 0; op < d.y.d1; ++op)
      for (int64_t oq = 0; oq < d.y.d2; ++oq)
        for (int64_t c = 0; c < d.y.d3; ++c) {
          double best = -std::numeric_limits<double>::infinity();
          int32_t best_index = -1;
          for (int64_t r = 0; r < p.kernel_h; ++r)
            for (int64_t s = 0; s < p.kernel_w; ++s) {
              const int64_t ih = op * p.stride_h - p.pad_h + r;
              const int64_t iw = oq * p.stride_w - p.pad_w + s;
              if (ih < 0 || ih >= d.x.d1 || iw < 0 || iw >= d.x.d2) continue;  // padding never wins
              const double v = value(x, d.x(n, ih, iw, c));
              if (best_index < 0 || v > best) {
                best = v;
                best_index = static_cast<int32_t>(r * p.kernel_w + s);
              }
            }
          out.y[at(d.y(n, op, oq, c))] = best;
          out.argmax[at(d.y(n, op, oq, c))] = best_index;
        }
  return out;
}

std::vector<double> max_pool2d_backward(const Tensor& x, const Tensor& dy, const Pool2dParams& p) {
  const PoolDims d = pool_dims(x.shape(), p);
  const MaxPoolResult fwd = max_pool2d_forward(x, p);
  std::vector<double> dx(at(d.x.numel()), 0.0);
  for (int64_t n = 0; n < d.y.d0; ++n)
    for (int64_t op = 0; op < d.y.d1; ++op)
      for (int64_t oq = 0; oq < d.y.d2; ++oq)
        for (int64_t c = 0; c < d.y.d3; ++c) {
          const int32_t a = fwd.argmax[at(d.y(n, op, oq, c))];
          const int64_t ih = op * p.stride_h - p.pad_h + a / p.kernel_w;
          const int64_t iw = oq * p.stride_w - p.pad_w + a % p.kernel_w;
          dx[at(d.x(n, ih, iw, c))] += value(dy, d.y(n, op, oq, c));
        }
  return dx;
}

std::vector<double> avg_pool2d_forward(const Tensor& x, const Pool2dParams& p) {
  const PoolDims d = pool_dims(x.shape(), p);
  std::vector<double> y(at(d.y.numel()), 0.0);
  for (int64_t n = 0; n < d.y.d0; ++n)
    for (int64_t op = 0; op < d.y.d1; ++op)
      for (int64_t oq = 0; oq < d.y.d2; ++oq)
        for (int64_t c = 0; c < d.y.d3; ++c) {
          double sum = 0.0;
          for (int64_t r = 0; r < p.kernel_h; ++r)
            for (int64_t s = 0; s < p.kernel_w; ++s) {
              const int64_t ih = op * p.stride_h - p.pad_h + r;
              const int64_t iw = oq * p.stride_w - p.pad_w + s;
              if (ih >= 0 && ih < d.x.d1 && iw >= 0 && iw < d.x.d2) sum += value(x, d.x(n, ih, iw, c));
            }
          y[at(d.y(n, op, oq, c))] = sum / static_cast<double>(p.kernel_h * p.kernel_w);
        }
  return y;
}

std::vector<double> avg_pool2d_backward(const Tensor& dy, const Shape& x_shape, const Pool2dParams& p) {
  const PoolDims d = pool_dims(x_shape, p);
  std::vector<double> dx(at(d.x.numel()), 0.0);
  const double scale = 1.0 / static_cast<double>(p.kernel_h * p.kernel_w);
  for (int64_t n = 0; n < d.y.d0; ++n)
    for (int64_t op = 0; op < d.y.d1; ++op)
      for (int64_t oq = 0; oq < d.y.d2; ++oq)
        for (int64_t c = 0; c < d.y.d3; ++c)
          for (int64_t r = 0; r < p.kernel_h; ++r)
            for (int64_t s = 0; s < p.kernel_w; ++s) {
              const int64_t ih = op * p.stride_h - p.pad_h + r;
              const int64_t iw = oq * p.stride_w - p.pad_w + s;
              if (ih >= 0 && ih < d.x.d1 && iw >= 0 && iw < d.x.d2)
                dx[at(d.x(n, ih, iw, c))] += value(dy, d.y(n, op, oq, c)) * scale;
            }
  return dx;
}

std::vector<double> relu_forward(const Tensor& x) {
  std::vector<double> y(at(x.numel()));
  for (int64_t i = 0; i < x.numel(); ++i) y[at(i)] = value(x, i) < 0.0 ? 0.0 : value(x, i);  // NaN propagates
  return y;
}

std::vector<double> relu_backward(const Tensor& y, const Tensor& dy) {
  std::vector<double> dx(at(y.numel()));
  for (int64_t i = 0; i < y.numel(); ++i) dx[at(i)] = value(y, i) <= 0.0 ? 0.0 : value(dy, i);
  return dx;
}

double gelu(double x) {
  return 0.5 * x * (1.0 + std::erf(x / std::numbers::sqrt2));
}

double gelu_derivative(double x) {
  const double cdf = 0.5 * (1.0 + std::erf(x / std::numbers::sqrt2));
  const double pdf = std::exp(-0.5 * x * x) / std::sqrt(2.0 * std::numbers::pi);
  return cdf + x * pdf;
}

std::vector<double> gelu_forward(const Tensor& x) {
  std::vector<double> y(at(x.numel()));
  for (int64_t i = 0; i < x.numel(); ++i) y[at(i)] = gelu(value(x, i));
  return y;
}

std::vector<double> gelu_backward(const Tensor& x, const Tensor& dy) {
  std::vector<double> dx(at(x.numel()));
  for (int64_t i = 0; i < x.numel(); ++i) dx[at(i)] = value(dy, i) * gelu_derivative(value(x, i));
  return dx;
}

namespace {
struct Moments {
  std::vector<double> mean, var;  // biased variance
};
Moments channel_moments(const Tensor& x) {
  const int64_t c = x.dim(-1), rows = x.numel() / c;
  Moments m{std::vector<double>(at(c), 0.0), std::vector<double>(at(c), 0.0)};
  for (int64_t i = 0; i < x.numel(); ++i) m.mean[at(i % c)] += value(x, i);
  for (double& v : m.mean) v /= static_cast<double>(rows);
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double dev = value(x, i) - m.mean[at(i % c)];
    m.var[at(i % c)] += dev * dev;
  }
  for (double& v : m.var) v /= static_cast<double>(rows);
  return m;
}
}  // namespace

BatchNormTrain batch_norm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                        const Tensor& running_mean, const Tensor& running_var, double momentum,
                                        double eps) {
  const int64_t c = x.dim(-1), rows = x.numel() / c;
  const Moments m = channel_moments(x);
  BatchNormTrain out;
  out.mean = m.mean;
  out.y.resize(at(x.numel()));
  for (int64_t j = 0; j < c; ++j) {
    out.invstd.push_back(1.0 / std::sqrt(m.var[at(j)] + eps));
    out.running_mean.push_back((1.0 - momentum) * value(running_mean, j) + momentum * m.mean[at(j)]);
    const double unbiased = m.var[at(j)] * static_cast<double>(rows) / static_cast<double>(rows - 1);
    out.running_var.push_back((1.0 - momentum) * value(running_var, j) + momentum * unbiased);
  }
  for (int64_t i = 0; i < x.numel(); ++i) {
    const size_t j = at(i % c);
    out.y[at(i)] = (value(x, i) - m.mean[j]) * out.invstd[j] * value(gamma, i % c) + value(beta, i % c);
  }
  return out;
}

std::vector<double> batch_norm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                            const Tensor& running_mean, const Tensor& running_var, double eps) {
  const int64_t c = x.dim(-1);
  std::vector<double> y(at(x.numel()));
  for (int64_t i = 0; i < x.numel(); ++i) {
    const int64_t j = i % c;
    y[at(i)] = (value(x, i) - value(running_mean, j)) / std::sqrt(value(running_var, j) + eps) * value(gamma, j) +
               value(beta, j);
  }
  return y;
}

BatchNormGrads batch_norm_backward(const Tensor& x, const Tensor& dy, const Tensor& gamma, double eps) {
  const int64_t c = x.dim(-1), rows = x.numel() / c;
  const Moments m = channel_moments(x);
  BatchNormGrads g;
  g.dgamma.assign(at(c), 0.0);
  g.dbeta.assign(at(c), 0.0);
  g.dx.resize(at(x.numel()));
  std::vector<double> invstd;
  for (double v : m.var) invstd.push_back(1.0 / std::sqrt(v + eps));
  auto xhat = [&](int64_t i) { return (value(x, i) - m.mean[at(i % c)]) * invstd[at(i % c)]; };
  for (int64_t i = 0; i < x.numel(); ++i) {
    g.dbeta[at(i % c)] += value(dy, i);
    g.dgamma[at(i % c)] += value(dy, i) * xhat(i);
  }
  const double inv_rows = 1.0 / static_cast<double>(rows);
  for (int64_t i = 0; i < x.numel(); ++i) {
    const size_t j = at(i % c);
    g.dx[at(i)] =
        value(gamma, i % c) * invstd[j] * (value(dy, i) - g.dbeta[j] * inv_rows - xhat(i) * g.dgamma[j] * inv_rows);
  }
  return g;
}

BatchNormLocalStats batch_norm_local_stats(const Tensor& x) {
  const int64_t c = x.dim(-1), rows = x.numel() / c;
  if (rows == 0) return {std::vector<double>(at(c), 0.0), std::vector<double>(at(c), 0.0)};
  const Moments m = channel_moments(x);
  BatchNormLocalStats out{m.mean, m.var};
  for (double& v : out.m2) v *= static_cast<double>(rows);
  return out;
}

BatchNormSums batch_norm_backward_reduce(const Tensor& x, const Tensor& dy, const Tensor& mean, const Tensor& invstd) {
  const int64_t c = x.dim(-1);
  BatchNormSums s{std::vector<double>(at(c), 0.0), std::vector<double>(at(c), 0.0)};
  for (int64_t i = 0; i < x.numel(); ++i) {
    const int64_t j = i % c;
    s.sum_dy[at(j)] += value(dy, i);
    s.sum_dy_xhat[at(j)] += value(dy, i) * (value(x, i) - value(mean, j)) * value(invstd, j);
  }
  return s;
}

std::vector<double> batch_norm_backward_apply(const Tensor& x, const Tensor& dy, const Tensor& gamma,
                                              const Tensor& mean, const Tensor& invstd, const Tensor& mean_dy,
                                              const Tensor& mean_dy_xhat) {
  const int64_t c = x.dim(-1);
  std::vector<double> dx(at(x.numel()));
  for (int64_t i = 0; i < x.numel(); ++i) {
    const int64_t j = i % c;
    const double xhat = (value(x, i) - value(mean, j)) * value(invstd, j);
    dx[at(i)] = value(gamma, j) * value(invstd, j) * (value(dy, i) - value(mean_dy, j) - xhat * value(mean_dy_xhat, j));
  }
  return dx;
}

DropoutResult dropout_forward(const Tensor& x, double p, uint64_t seed) {
  DropoutResult out;
  for (int64_t i = 0; i < x.numel(); ++i) {
    const bool keep = static_cast<double>(hash_uniform(seed, static_cast<uint64_t>(i))) >= p;
    out.mask.push_back(keep ? 1 : 0);
    out.y.push_back(keep ? value(x, i) / (1.0 - p) : 0.0);
  }
  return out;
}

std::vector<double> linear_forward(const Tensor& x, const Tensor& w, const Tensor* bias) {
  const int64_t n = x.dim(0), in = x.dim(1), out = w.dim(0);
  std::vector<double> y(at(n * out));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t o = 0; o < out; ++o) {
      double sum = bias ? value(*bias, o) : 0.0;
      for (int64_t j = 0; j < in; ++j) sum += value(x, i * in + j) * value(w, o * in + j);
      y[at(i * out + o)] = sum;
    }
  return y;
}

LinearGrads linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy) {
  const int64_t n = x.dim(0), in = x.dim(1), out = w.dim(0);
  LinearGrads g{std::vector<double>(at(n * in), 0.0), std::vector<double>(at(out * in), 0.0),
                std::vector<double>(at(out), 0.0)};
  for (int64_t i = 0; i < n; ++i)
    for (int64_t o = 0; o < out; ++o) {
      const double d = value(dy, i * out + o);
      g.dbias[at(o)] += d;
      for (int64_t j = 0; j < in; ++j) {
        g.dx[at(i * in + j)] += d * value(w, o * in + j);
        g.dw[at(o * in + j)] += d * value(x, i * in + j);
      }
    }
  return g;
}

namespace {
double target(int64_t j, int32_t label, int64_t k, double smoothing) {
  return (j == label ? 1.0 - smoothing : 0.0) + smoothing / static_cast<double>(k);
}
}  // namespace

SoftmaxCrossEntropy softmax_cross_entropy_forward(const Tensor& logits, const Tensor& labels, double smoothing) {
  const int64_t n = logits.dim(0), k = logits.dim(1);
  const int32_t* lp = labels.data<int32_t>();
  SoftmaxCrossEntropy out;
  out.probs.resize(at(n * k));
  for (int64_t i = 0; i < n; ++i) {
    double zmax = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < k; ++j) zmax = std::max(zmax, value(logits, i * k + j));
    double sum = 0.0;
    for (int64_t j = 0; j < k; ++j) sum += std::exp(value(logits, i * k + j) - zmax);
    for (int64_t j = 0; j < k; ++j) {
      const double log_p = value(logits, i * k + j) - zmax - std::log(sum);
      out.probs[at(i * k + j)] = std::exp(log_p);
      out.loss -= target(j, lp[i], k, smoothing) * log_p;
    }
  }
  out.loss /= static_cast<double>(n);
  return out;
}

std::vector<double> softmax_cross_entropy_backward(const Tensor& logits, const Tensor& labels, double smoothing) {
  const int64_t n = logits.dim(0), k = logits.dim(1);
  const int32_t* lp = labels.data<int32_t>();
  std::vector<double> d = softmax_cross_entropy_forward(logits, labels, smoothing).probs;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < k; ++j)
      d[at(i * k + j)] = (d[at(i * k + j)] - target(j, lp[i], k, smoothing)) / static_cast<double>(n);
  return d;
}

void sgd_update(std::vector<double>& param, const std::vector<double>& grad, std::vector<double>& buf,
                const SgdStep& step) {
  const double lr = step.lr, mom = step.momentum, wd = step.weight_decay;
  for (size_t i = 0; i < param.size(); ++i) {
    double g = grad[i];
    if (step.decoupled_decay)
      param[i] -= lr * wd * param[i];
    else
      g += wd * param[i];
    double update = g;
    if (mom != 0.0) {
      buf[i] = mom * buf[i] + g;
      update = step.nesterov ? g + mom * buf[i] : buf[i];
    }
    param[i] -= lr * update;
  }
}

}  // namespace convnet::testing::naive
