#include "core/base/op_checks.h"

#include <cmath>
#include <cstdlib>
#include <utility>

#include "core/base/error.h"

namespace convnet {

OpChecks::OpChecks(const char* op, Device device, std::string backend)
    : op_(op), device_(device), backend_(std::move(backend)) {}

bool OpChecks::on_device(const Tensor& t) const {
  return device_.kind == DeviceKind::cpu ? t.is_cpu() : t.device() == device_;
}

std::string OpChecks::describe() const {
  std::string args;
  for (int i = 0; i < checked_count_; ++i)
    args += fmt::format("{}{} {}", i ? ", " : "", checked_[i].name, shape_str(checked_[i].tensor->shape()));
  return fmt::format("{} {}({})", backend_, op_, args);
}

void OpChecks::tensor(const Tensor& t, const char* name, DType dtype) const {
  bool seen = false;
  for (int i = 0; i < checked_count_; ++i) seen = seen || checked_[i].tensor == &t;
  if (!seen && checked_count_ < kMaxRecorded) checked_[checked_count_++] = {name, &t};
  CONVNET_CHECK(t.defined(), "{}: {} is undefined", op_, name);
  CONVNET_CHECK(on_device(t), "{}: {} lives on {}, the {} backend needs {}", op_, name, t.device().str(), backend_,
                device_.kind == DeviceKind::cpu ? std::string("host tensors") : "tensors on " + device_.str());
  CONVNET_CHECK(t.dtype() == dtype, "{}: {} has dtype {}, expected {}", op_, name, dtype_name(t.dtype()),
                dtype_name(dtype));
}

void OpChecks::operand(const Tensor& t, const char* name) const {
  const bool bf16 = t.defined() && t.dtype() == DType::bf16;
  CONVNET_CHECK(!bf16 || bf16_operands_, "{}: {} has dtype BF16, which only bf16 precision takes; expected F32", op_,
                name);
  tensor(t, name, bf16 ? DType::bf16 : DType::f32);
}

void OpChecks::operand_shape(const Tensor& t, const Shape& expected, const char* name) const {
  operand(t, name);
  CONVNET_CHECK(t.shape() == expected, "{}: {} has shape {}, expected {}", op_, name, shape_str(t.shape()),
                shape_str(expected));
}

void OpChecks::shape(const Tensor& t, const Shape& expected, const char* name, DType dtype) const {
  tensor(t, name, dtype);
  CONVNET_CHECK(t.shape() == expected, "{}: {} has shape {}, expected {}", op_, name, shape_str(t.shape()),
                shape_str(expected));
}

void OpChecks::rank(const Tensor& t, int expected, const char* name, DType dtype) const {
  tensor(t, name, dtype);
  has_rank(t, expected, name);
}

void OpChecks::has_rank(const Tensor& t, int expected, const char* name) const {
  CONVNET_CHECK(t.rank() == expected, "{}: {} has shape {}, expected rank {}", op_, name, shape_str(t.shape()),
                expected);
}

// --- convolution ---

ConvGeometry OpChecks::conv2d(const Shape& x_shape, const Shape& w_shape, const Conv2dParams& p) const {
  const char* op = op_;
  CONVNET_CHECK(x_shape.size() == 4, "{}: input has shape {}, expected rank 4 [N, H, W, C]", op, shape_str(x_shape));
  CONVNET_CHECK(w_shape.size() == 4, "{}: filters have shape {}, expected rank 4 [K, R, S, C]", op, shape_str(w_shape));
  CONVNET_CHECK(p.stride_h >= 1 && p.stride_w >= 1, "{}: stride {}x{} must be >= 1", op, p.stride_h, p.stride_w);
  CONVNET_CHECK(p.dilation_h >= 1 && p.dilation_w >= 1, "{}: dilation {}x{} must be >= 1", op, p.dilation_h,
                p.dilation_w);
  CONVNET_CHECK(p.pad_h >= 0 && p.pad_w >= 0, "{}: padding {}x{} must be >= 0", op, p.pad_h, p.pad_w);
  ConvGeometry g;
  g.n = x_shape[0];
  g.h = x_shape[1];
  g.w = x_shape[2];
  g.c = x_shape[3];
  g.k = w_shape[0];
  g.r = w_shape[1];
  g.s = w_shape[2];
  g.params = p;
  g.groups = p.groups;
  CONVNET_CHECK(p.groups >= 1, "{}: groups {} must be >= 1", op, p.groups);
  CONVNET_CHECK(g.c % p.groups == 0 && g.k % p.groups == 0,
                "{}: {} groups do not divide the {} input and {} output channels", op, p.groups, g.c, g.k);
  CONVNET_CHECK(w_shape[3] == g.group_c(), "{}: filters {} have {} input channels, the input {} has {}{}", op,
                shape_str(w_shape), w_shape[3], shape_str(x_shape), g.group_c(),
                p.groups == 1 ? std::string() : fmt::format(" per group in {} groups", p.groups));
  CONVNET_CHECK(g.k > 0 && g.r > 0 && g.s > 0 && g.c > 0, "{}: empty filters {}", op, shape_str(w_shape));
  g.p = conv_output_size(g.h, g.r, p.stride_h, p.pad_h, p.dilation_h);
  g.q = conv_output_size(g.w, g.s, p.stride_w, p.pad_w, p.dilation_w);
  CONVNET_CHECK(g.p > 0 && g.q > 0, "{}: input {}x{} (padding {}x{}) is smaller than the {}x{} kernel (dilation {}x{})",
                op, g.h, g.w, p.pad_h, p.pad_w, g.r, g.s, p.dilation_h, p.dilation_w);
  return g;
}

ConvGeometry OpChecks::conv2d_forward(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
                                      const Conv2dParams& p) const {
  operand(x, "x");
  operand(w, "w");
  const ConvGeometry g = conv2d(x.shape(), w.shape(), p);
  operand_shape(y, g.output_shape(), "y");  // bf16 too: a conv output stored bf16
  if (bias) shape(*bias, {g.k}, "bias");
  return g;
}

ConvGeometry OpChecks::conv2d_backward_data(const Tensor& dy, const Tensor& w, const Tensor& dx,
                                            const Conv2dParams& p) const {
  tensor(dx, "dx");
  operand(w, "w");
  const ConvGeometry g = conv2d(dx.shape(), w.shape(), p);
  operand_shape(dy, g.output_shape(), "dy");
  return g;
}

ConvGeometry OpChecks::conv2d_backward_filter(const Tensor& x, const Tensor& dy, const Tensor& dw, const Tensor* dbias,
                                              const Conv2dParams& p) const {
  tensor(dw, "dw");
  operand(x, "x");
  const ConvGeometry g = conv2d(x.shape(), dw.shape(), p);
  operand_shape(dy, g.output_shape(), "dy");
  if (dbias) shape(*dbias, {g.k}, "dbias");
  return g;
}

// --- pooling ---

PoolGeometry OpChecks::pool2d(const Shape& x_shape, const Pool2dParams& pr) const {
  const char* op = op_;
  CONVNET_CHECK(x_shape.size() == 4, "{}: input has shape {}, expected rank 4 [N, H, W, C]", op, shape_str(x_shape));
  CONVNET_CHECK(pr.kernel_h >= 1 && pr.kernel_w >= 1, "{}: kernel {}x{} must be >= 1", op, pr.kernel_h, pr.kernel_w);
  CONVNET_CHECK(pr.stride_h >= 1 && pr.stride_w >= 1, "{}: stride {}x{} must be >= 1", op, pr.stride_h, pr.stride_w);
  // pad < kernel guarantees every window holds at least one real input element.
  CONVNET_CHECK(pr.pad_h >= 0 && pr.pad_w >= 0 && pr.pad_h < pr.kernel_h && pr.pad_w < pr.kernel_w,
                "{}: padding {}x{} must be >= 0 and smaller than the {}x{} kernel", op, pr.pad_h, pr.pad_w, pr.kernel_h,
                pr.kernel_w);
  PoolGeometry g;
  g.n = x_shape[0];
  g.h = x_shape[1];
  g.w = x_shape[2];
  g.c = x_shape[3];
  g.params = pr;
  g.p = conv_output_size(g.h, pr.kernel_h, pr.stride_h, pr.pad_h);
  g.q = conv_output_size(g.w, pr.kernel_w, pr.stride_w, pr.pad_w);
  CONVNET_CHECK(g.p > 0 && g.q > 0, "{}: input {}x{} (padding {}x{}) is smaller than the {}x{} window", op, g.h, g.w,
                pr.pad_h, pr.pad_w, pr.kernel_h, pr.kernel_w);
  return g;
}

// `image` (x or dx) is f32, `pooled` (y or dy) is [N, P, Q, C] and, when given, `argmax` is i32 of
// the same shape.
PoolGeometry OpChecks::pool2d(const Tensor& image, const char* image_name, const Tensor& pooled,
                              const char* pooled_name, const Tensor* argmax, const Pool2dParams& p) const {
  tensor(image, image_name);
  const PoolGeometry g = pool2d(image.shape(), p);
  shape(pooled, g.pooled_shape(), pooled_name);
  if (argmax) shape(*argmax, g.pooled_shape(), "argmax", DType::i32);
  return g;
}

PoolGeometry OpChecks::max_pool2d_forward(const Tensor& x, const Tensor& y, const Tensor& argmax,
                                          const Pool2dParams& p) const {
  return pool2d(x, "x", y, "y", &argmax, p);
}

PoolGeometry OpChecks::max_pool2d_backward(const Tensor& dy, const Tensor& argmax, const Tensor& dx,
                                           const Pool2dParams& p) const {
  return pool2d(dx, "dx", dy, "dy", &argmax, p);
}

PoolGeometry OpChecks::avg_pool2d_forward(const Tensor& x, const Tensor& y, const Pool2dParams& p) const {
  return pool2d(x, "x", y, "y", nullptr, p);
}

PoolGeometry OpChecks::avg_pool2d_backward(const Tensor& dy, const Tensor& dx, const Pool2dParams& p) const {
  return pool2d(dx, "dx", dy, "dy", nullptr, p);
}

// --- activations ---

void OpChecks::activation_forward(const Tensor& x, const Tensor& y) const {
  tensor(x, "x");
  shape(y, x.shape(), "y");
}

void OpChecks::activation_backward(const Tensor& saved, const char* saved_name, const Tensor& dy,
                                   const Tensor& dx) const {
  tensor(saved, saved_name);
  shape(dy, saved.shape(), "dy");
  shape(dx, saved.shape(), "dx");
}

void OpChecks::relu_forward(const Tensor& x, const Tensor& y) const {
  tensor(x, "x");
  operand_shape(y, x.shape(), "y");
}

void OpChecks::relu_backward(const Tensor& y, const Tensor& dy, const Tensor& dx) const {
  operand(y, "y");
  shape(dy, y.shape(), "dy");
  shape(dx, y.shape(), "dx");
}

// --- batch normalization ---

int64_t OpChecks::channels(const Tensor& x) const {
  operand(x, "x");  // bf16 too: a conv output stored bf16
  CONVNET_CHECK(x.rank() >= 1 && x.dim(-1) > 0, "{}: x has shape {}, expected [..., C] with C > 0", op_,
                shape_str(x.shape()));
  return x.dim(-1);
}

int64_t OpChecks::batch_norm_saved(const Tensor& x, const Tensor& dy, const Tensor& saved_mean,
                                   const Tensor& saved_invstd) const {
  const int64_t c = channels(x);
  shape(dy, x.shape(), "dy");
  shape(saved_mean, {c}, "saved_mean");
  shape(saved_invstd, {c}, "saved_invstd");
  return c;
}

int64_t OpChecks::batch_norm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& y,
                                           const Tensor& saved_mean, const Tensor& saved_invstd,
                                           const Tensor& running_mean, const Tensor& running_var, float momentum,
                                           float eps) const {
  const int64_t c = channels(x);
  const Shape cshape{c};
  shape(gamma, cshape, "gamma");
  shape(beta, cshape, "beta");
  shape(y, x.shape(), "y");
  shape(saved_mean, cshape, "saved_mean");
  shape(saved_invstd, cshape, "saved_invstd");
  shape(running_mean, cshape, "running_mean");
  shape(running_var, cshape, "running_var");
  CONVNET_CHECK(eps >= 0.0f, "{}: eps {} must be >= 0", op_, eps);
  CONVNET_CHECK(momentum >= 0.0f && momentum <= 1.0f, "{}: momentum {} must lie in [0, 1]", op_, momentum);
  // The unbiased variance of the running statistics divides by rows - 1.
  if (x.numel() / c < 2)
    throw Error(
        fmt::format("batch_norm: training needs more than one value per channel, got input {}", shape_str(x.shape())));
  return c;
}

int64_t OpChecks::batch_norm_forward_train_from_moments(const Tensor& x, const Tensor& mean, const Tensor& m2,
                                                        const Tensor& gamma, const Tensor& beta, const Tensor& y,
                                                        const Tensor& saved_mean, const Tensor& saved_invstd,
                                                        const Tensor& running_mean, const Tensor& running_var,
                                                        float momentum, float eps) const {
  const int64_t c =
      batch_norm_forward_train(x, gamma, beta, y, saved_mean, saved_invstd, running_mean, running_var, momentum, eps);
  shape(mean, {c}, "mean");
  shape(m2, {c}, "m2");
  return c;
}

int64_t OpChecks::batch_norm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                          const Tensor& running_mean, const Tensor& running_var, float eps,
                                          const Tensor& y) const {
  const int64_t c = channels(x);
  const Shape cshape{c};
  shape(gamma, cshape, "gamma");
  shape(beta, cshape, "beta");
  shape(running_mean, cshape, "running_mean");
  shape(running_var, cshape, "running_var");
  shape(y, x.shape(), "y");
  CONVNET_CHECK(eps >= 0.0f, "{}: eps {} must be >= 0", op_, eps);
  return c;
}

int64_t OpChecks::batch_norm_backward(const Tensor& x, const Tensor& dy, const Tensor& gamma, const Tensor& saved_mean,
                                      const Tensor& saved_invstd, const Tensor& dx, const Tensor& dgamma,
                                      const Tensor& dbeta) const {
  const int64_t c = batch_norm_saved(x, dy, saved_mean, saved_invstd);
  const Shape cshape{c};
  shape(gamma, cshape, "gamma");
  shape(dx, x.shape(), "dx");
  shape(dgamma, cshape, "dgamma");
  shape(dbeta, cshape, "dbeta");
  return c;
}

int64_t OpChecks::batch_norm_local_stats(const Tensor& x, const Tensor& mean, const Tensor& m2) const {
  const int64_t c = channels(x);
  shape(mean, {c}, "mean");
  shape(m2, {c}, "m2");
  return c;
}

int64_t OpChecks::batch_norm_backward_reduce(const Tensor& x, const Tensor& dy, const Tensor& saved_mean,
                                             const Tensor& saved_invstd, const Tensor& sum_dy,
                                             const Tensor& sum_dy_xhat) const {
  const int64_t c = batch_norm_saved(x, dy, saved_mean, saved_invstd);
  const Shape cshape{c};
  shape(sum_dy, cshape, "sum_dy");
  shape(sum_dy_xhat, cshape, "sum_dy_xhat");
  return c;
}

int64_t OpChecks::batch_norm_backward_apply(const Tensor& x, const Tensor& dy, const Tensor& gamma,
                                            const Tensor& saved_mean, const Tensor& saved_invstd, const Tensor& mean_dy,
                                            const Tensor& mean_dy_xhat, const Tensor& dx) const {
  const int64_t c = batch_norm_saved(x, dy, saved_mean, saved_invstd);
  const Shape cshape{c};
  shape(gamma, cshape, "gamma");
  shape(mean_dy, cshape, "mean_dy");
  shape(mean_dy_xhat, cshape, "mean_dy_xhat");
  shape(dx, x.shape(), "dx");
  return c;
}

// --- linear ---

LinearGeometry OpChecks::linear(const Tensor& x, const Tensor& w) const {
  operand(x, "x");
  operand(w, "w");
  has_rank(x, 2, "x");
  has_rank(w, 2, "w");
  const LinearGeometry g{x.dim(0), x.dim(1), w.dim(0)};
  operand_shape(w, {g.out, g.in}, "w");
  return g;
}

LinearGeometry OpChecks::linear_forward(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) const {
  const LinearGeometry g = linear(x, w);
  shape(y, {g.n, g.out}, "y");
  if (bias) shape(*bias, {g.out}, "bias");
  return g;
}

LinearGeometry OpChecks::linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, const Tensor* dx,
                                         const Tensor& dw, const Tensor* dbias) const {
  const LinearGeometry g = linear(x, w);
  operand_shape(dy, {g.n, g.out}, "dy");
  shape(dw, {g.out, g.in}, "dw");
  if (dx) shape(*dx, {g.n, g.in}, "dx");
  if (dbias) shape(*dbias, {g.out}, "dbias");
  return g;
}

// --- dropout ---

void OpChecks::dropout_forward(const Tensor& x, const Tensor& y, const Tensor& mask, float p) const {
  CONVNET_CHECK(p >= 0.0f && p <= 1.0f, "{}: drop probability {} must lie in [0, 1]", op_, p);
  tensor(x, "x");
  shape(y, x.shape(), "y");
  shape(mask, x.shape(), "mask", DType::u8);
}

void OpChecks::dropout_backward(const Tensor& dy, const Tensor& mask, float p, const Tensor& dx) const {
  CONVNET_CHECK(p >= 0.0f && p <= 1.0f, "{}: drop probability {} must lie in [0, 1]", op_, p);
  tensor(dy, "dy");
  shape(mask, dy.shape(), "mask", DType::u8);
  shape(dx, dy.shape(), "dx");
}

// --- softmax cross-entropy ---

LossGeometry OpChecks::cross_entropy(const Tensor& scores, const char* scores_name, const Tensor& labels,
                                     float smoothing) const {
  rank(scores, 2, scores_name);
  const LossGeometry g{scores.dim(0), scores.dim(1)};
  CONVNET_CHECK(g.k > 0, "{}: {} has shape {}, expected at least one class", op_, scores_name,
                shape_str(scores.shape()));
  shape(labels, {g.n}, "labels", DType::i32);
  CONVNET_CHECK(smoothing >= 0.0f && smoothing <= 1.0f, "{}: label smoothing {} must lie in [0, 1]", op_, smoothing);
  return g;
}

LossGeometry OpChecks::softmax_cross_entropy_forward(const Tensor& logits, const Tensor& labels, float smoothing,
                                                     const Tensor& loss, const Tensor& probs) const {
  const LossGeometry g = cross_entropy(logits, "logits", labels, smoothing);
  shape(loss, {1}, "loss");
  shape(probs, {g.n, g.k}, "probs");
  return g;
}

LossGeometry OpChecks::softmax_cross_entropy_backward(const Tensor& probs, const Tensor& labels, float smoothing,
                                                      const Tensor& dlogits) const {
  const LossGeometry g = cross_entropy(probs, "probs", labels, smoothing);
  shape(dlogits, {g.n, g.k}, "dlogits");
  return g;
}

LossGeometry OpChecks::accumulate_train_stats(const Tensor& loss, const Tensor& logits, const Tensor& labels,
                                              const Tensor& stats) const {
  const LossGeometry g = cross_entropy(logits, "logits", labels, 0.0f);
  shape(loss, {1}, "loss");
  shape(stats, {4}, "stats", DType::f64);
  return g;
}

// --- SGD ---

void OpChecks::sgd_update(const Tensor& param, const Tensor& grad, const Tensor& momentum_buf, const SgdStep& step,
                          const Tensor* bf16_copy) const {
  tensor(param, "param");
  shape(grad, param.shape(), "grad");
  if (step.momentum != 0.0f) shape(momentum_buf, param.shape(), "momentum_buf");
  if (bf16_copy) shape(*bf16_copy, param.shape(), "bf16_copy", DType::bf16);
}

// --- elementwise and data ---

void OpChecks::to_bf16(const Tensor& src, const Tensor& dst) const {
  tensor(src, "src");
  tensor(dst, "dst", DType::bf16);
  CONVNET_CHECK(src.numel() == dst.numel(), "{}: src {} and dst {} differ in element count", op_,
                shape_str(src.shape()), shape_str(dst.shape()));
}

void OpChecks::axpby(float alpha, const Tensor& x, float beta, const Tensor& y) const {
  tensor(x, "x");
  tensor(y, "y");
  CONVNET_CHECK(x.numel() == y.numel(), "{}: x {} and y {} differ in element count", op_, shape_str(x.shape()),
                shape_str(y.shape()));
  CONVNET_CHECK(std::isfinite(alpha) && std::isfinite(beta), "{}: alpha {} and beta {} must be finite", op_, alpha,
                beta);
}

int64_t OpChecks::copy_channels(const Tensor& src, int64_t src_offset, const Tensor& dst, int64_t dst_offset,
                                int64_t channels) const {
  tensor(src, "src");
  tensor(dst, "dst");
  CONVNET_CHECK(src.rank() >= 1 && src.rank() == dst.rank(), "{}: src {} and dst {} differ in rank", op_,
                shape_str(src.shape()), shape_str(dst.shape()));
  int64_t rows = 1;
  for (int d = 0; d + 1 < src.rank(); ++d) {
    CONVNET_CHECK(src.dim(d) == dst.dim(d), "{}: src {} and dst {} differ outside the channel axis", op_,
                  shape_str(src.shape()), shape_str(dst.shape()));
    rows *= src.dim(d);
  }
  const int64_t cs = src.dim(src.rank() - 1), cd = dst.dim(dst.rank() - 1);
  CONVNET_CHECK(
      channels >= 0 && src_offset >= 0 && dst_offset >= 0 && src_offset + channels <= cs && dst_offset + channels <= cd,
      "{}: channels [{}, {}) of src {} to [{}, {}) of dst {} are out of range", op_, src_offset, src_offset + channels,
      shape_str(src.shape()), dst_offset, dst_offset + channels, shape_str(dst.shape()));
  CONVNET_CHECK(src.raw() != dst.raw(), "{}: src and dst are the same tensor", op_);
  return rows;
}

AugmentGeometry OpChecks::augment_batch(const Tensor& images, const Tensor& order, int64_t first, const Tensor& out,
                                        const AugmentBatchSpec& spec) const {
  rank(images, 4, "images", DType::u8);
  rank(order, 1, "order", DType::i32);
  AugmentGeometry g;
  g.m = images.dim(0);
  g.h = images.dim(1);
  g.w = images.dim(2);
  g.c = images.dim(3);
  g.order_len = order.dim(0);
  g.first = first;
  CONVNET_CHECK(g.c >= 1 && g.c <= kMaxImageChannels, "{}: images {} have {} channels, expected 1 to {}", op_,
                shape_str(images.shape()), g.c, kMaxImageChannels);
  rank(out, 4, "out");
  g.n = out.dim(0);
  shape(out, {g.n, g.h, g.w, g.c}, "out");
  CONVNET_CHECK(first >= 0 && first + g.n <= g.order_len, "{}: examples [{}, {}) outside order of length {}", op_,
                first, first + g.n, g.order_len);
  const AugmentSpec& a = spec.augment;
  CONVNET_CHECK(a.pad >= 0 && a.cutout >= 0, "{}: pad {} and cutout {} must be >= 0", op_, a.pad, a.cutout);
  CONVNET_CHECK(a.pad_mode != PadMode::reflect || (a.pad < g.h && a.pad < g.w),
                "{}: reflect padding of {} needs images larger than {}x{}", op_, a.pad, g.w, g.h);
  for (int64_t c = 0; c < g.c; ++c)
    CONVNET_CHECK(spec.std[c] > 0 && std::isfinite(spec.mean[c]), "{}: channel {}: mean {} std {} (std must be > 0)",
                  op_, c, spec.mean[c], spec.std[c]);
  return g;
}

void OpChecks::image_view(const Tensor& x, const Tensor& y, const ImageView& view) const {
  rank(x, 4, "x");
  shape(y, x.shape(), "y");
  CONVNET_CHECK(x.raw() != y.raw() || x.numel() == 0, "{}: y must not alias x", op_);
  CONVNET_CHECK(std::abs(view.shift_y) < x.dim(1) && std::abs(view.shift_x) < x.dim(2),
                "{}: shift {},{} must be smaller than the {}x{} image", op_, view.shift_y, view.shift_x, x.dim(1),
                x.dim(2));
}

}  // namespace convnet
