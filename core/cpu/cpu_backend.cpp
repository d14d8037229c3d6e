#include "core/cpu/cpu_backend.h"

#include <cstring>

#include "core/base/backend_registry.h"
#include "core/base/error.h"
#include "core/base/op_checks.h"
#include "core/cpu/activation.h"
#include "core/cpu/axpby.h"
#include "core/cpu/batch_norm.h"
#include "core/cpu/bias.h"
#include "core/cpu/conv.h"
#include "core/cpu/copy_channels.h"
#include "core/cpu/dropout.h"
#include "core/cpu/image_ops.h"
#include "core/cpu/linear.h"
#include "core/cpu/parallel.h"
#include "core/cpu/pool.h"
#include "core/cpu/sgd_update.h"
#include "core/cpu/softmax_cross_entropy.h"
#include "core/cpu/train_stats.h"
#include "core/cpu/workspace.h"

namespace convnet {

namespace {

class CpuBackend final : public Backend {
 public:
  CpuBackend() { make_blas_single_threaded(); }

  std::string name() const override { return "cpu"; }
  Device device() const override { return {}; }
  Allocator& allocator() override { return cpu_allocator(); }

  void copy(Tensor& dst, const Tensor& src) override {
    const OpChecks check = OpChecks::cpu("copy");
    check.tensor(src, "src", src.dtype());
    check.tensor(dst, "dst", src.dtype());
    CONVNET_CHECK(dst.numel() == src.numel(), "copy: dst {} and src {} differ in element count", shape_str(dst.shape()),
                  shape_str(src.shape()));
    if (dst.raw() != src.raw()) std::memcpy(dst.raw(), src.raw(), src.bytes());
  }
  void fill(Tensor& t, float value) override {
    OpChecks::cpu("fill").tensor(t, "t");
    float* p = t.f32();
    parallel_for(0, t.numel(), 1 << 16, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) p[i] = value;
    });
  }

  void to_bf16(const Tensor& src, Tensor& dst) override {
    OpChecks::cpu("to_bf16").to_bf16(src, dst);
    const float* s = src.f32();
    auto* d = dst.data<uint16_t>();
    for (int64_t i = 0; i < src.numel(); ++i) d[i] = to_bf16_bits(s[i]);
  }

  // Conv and linear ops in precision(): operands rounded as the GPU kernels round them, then fp32.
  void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y, const Conv2dParams& p) override {
    checks("conv2d_forward").conv2d_forward(x, w, bias, y, p);
    Tensor y32 = result_target(y);
    cpu::conv2d_forward(operand(x, 0), operand(w, 1), bias, y32, p, workspace_);
    store_result(y32, y);
  }
  void conv2d_backward_data(const Tensor& dy, const Tensor& w, Tensor& dx, const Conv2dParams& p) override {
    checks("conv2d_backward_data").conv2d_backward_data(dy, w, dx, p);
    cpu::conv2d_backward_data(operand(dy, 0), operand(w, 1), dx, p, workspace_);
    round_result(dx);
  }
  void conv2d_backward_filter(const Tensor& x, const Tensor& dy, Tensor& dw, Tensor* dbias,
                              const Conv2dParams& p) override {
    const ConvGeometry g = checks("conv2d_backward_filter").conv2d_backward_filter(x, dy, dw, dbias, p);
    cpu::conv2d_backward_filter(operand(x, 0), operand(dy, 1), dw, bias_from_operand() ? dbias : nullptr, p,
                                workspace_);
    if (dbias && !bias_from_operand()) cpu::bias_gradient(dy.f32(), g.n * g.p * g.q, g.k, dbias->f32());
  }

  void max_pool2d_forward(const Tensor& x, Tensor& y, Tensor& argmax, const Pool2dParams& p) override {
    cpu::max_pool2d_forward(x, y, argmax, p);
  }
  void max_pool2d_backward(const Tensor& dy, const Tensor& argmax, Tensor& dx, const Pool2dParams& p) override {
    cpu::max_pool2d_backward(dy, argmax, dx, p);
  }
  void avg_pool2d_forward(const Tensor& x, Tensor& y, const Pool2dParams& p) override {
    cpu::avg_pool2d_forward(x, y, p);
  }
  void avg_pool2d_backward(const Tensor& dy, Tensor& dx, const Pool2dParams& p) override {
    cpu::avg_pool2d_backward(dy, dx, p);
  }

  // A bf16 y only in bf16 precision (checks()); cpu::relu_* take either.
  void relu_forward(const Tensor& x, Tensor& y) override {
    checks("relu_forward").relu_forward(x, y);
    cpu::relu_forward(x, y);
  }
  void relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx) override {
    checks("relu_backward").relu_backward(y, dy, dx);
    cpu::relu_backward(y, dy, dx);
  }
  void gelu_forward(const Tensor& x, Tensor& y) override { cpu::gelu_forward(x, y); }
  void gelu_backward(const Tensor& x, const Tensor& dy, Tensor& dx) override { cpu::gelu_backward(x, dy, dx); }

  void batch_norm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& y, Tensor& saved_mean,
                                Tensor& saved_invstd, Tensor& running_mean, Tensor& running_var, float momentum,
                                float eps) override {
    cpu::batch_norm_forward_train(f32_values(x, "batch_norm_forward_train"), gamma, beta, y, saved_mean, saved_invstd,
                                  running_mean, running_var, momentum, eps);
  }
  void batch_norm_forward_train_from_moments(const Tensor& x, const Tensor& mean, const Tensor& m2, const Tensor& gamma,
                                             const Tensor& beta, Tensor& y, Tensor& saved_mean, Tensor& saved_invstd,
                                             Tensor& running_mean, Tensor& running_var, float momentum,
                                             float eps) override {
    cpu::batch_norm_forward_train_from_moments(f32_values(x, "batch_norm_forward_train_from_moments"), mean, m2, gamma,
                                               beta, y, saved_mean, saved_invstd, running_mean, running_var, momentum,
                                               eps);
  }
  void batch_norm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                               const Tensor& running_var, float eps, Tensor& y) override {
    cpu::batch_norm_forward_eval(f32_values(x, "batch_norm_forward_eval"), gamma, beta, running_mean, running_var, eps,
                                 y);
  }
  void batch_norm_backward(const Tensor& x, const Tensor& dy, const Tensor& gamma, const Tensor& saved_mean,
                           const Tensor& saved_invstd, Tensor& dx, Tensor& dgamma, Tensor& dbeta) override {
    cpu::batch_norm_backward(f32_values(x, "batch_norm_backward"), dy, gamma, saved_mean, saved_invstd, dx, dgamma,
                             dbeta);
  }
  void batch_norm_local_stats(const Tensor& x, Tensor& mean, Tensor& m2) override {
    cpu::batch_norm_local_stats(f32_values(x, "batch_norm_local_stats"), mean, m2);
  }
  void batch_norm_backward_reduce(const Tensor& x, const Tensor& dy, const Tensor& saved_mean,
                                  const Tensor& saved_invstd, Tensor& sum_dy, Tensor& sum_dy_xhat) override {
    cpu::batch_norm_backward_reduce(f32_values(x, "batch_norm_backward_reduce"), dy, saved_mean, saved_invstd, sum_dy,
                                    sum_dy_xhat);
  }
  void batch_norm_backward_apply(const Tensor& x, const Tensor& dy, const Tensor& gamma, const Tensor& saved_mean,
                                 const Tensor& saved_invstd, const Tensor& mean_dy, const Tensor& mean_dy_xhat,
                                 Tensor& dx) override {
    cpu::batch_norm_backward_apply(f32_values(x, "batch_norm_backward_apply"), dy, gamma, saved_mean, saved_invstd,
                                   mean_dy, mean_dy_xhat, dx);
  }

  void dropout_forward(const Tensor& x, Tensor& y, Tensor& mask, float p, uint64_t seed) override {
    cpu::dropout_forward(x, y, mask, p, seed);
  }
  void dropout_backward(const Tensor& dy, const Tensor& mask, float p, Tensor& dx) override {
    cpu::dropout_backward(dy, mask, p, dx);
  }

  void linear_forward(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) override {
    checks("linear_forward").linear_forward(x, w, bias, y);
    cpu::linear_forward(operand(x, 0), operand(w, 1), bias, y);
    round_result(y);
  }
  void linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor& dw,
                       Tensor* dbias) override {
    const LinearGeometry g = checks("linear_backward").linear_backward(x, w, dy, dx, dw, dbias);
    cpu::linear_backward(operand(x, 0), operand(w, 1), operand(dy, 2), dx, dw, bias_from_operand() ? dbias : nullptr);
    if (dx) round_result(*dx);
    if (dbias && !bias_from_operand()) cpu::bias_gradient(dy.f32(), g.n, g.out, dbias->f32());
  }

  void softmax_cross_entropy_forward(const Tensor& logits, const Tensor& labels, float smoothing, Tensor& loss,
                                     Tensor& probs) override {
    cpu::softmax_cross_entropy_forward(logits, labels, smoothing, loss, probs);
  }
  void softmax_cross_entropy_backward(const Tensor& probs, const Tensor& labels, float smoothing,
                                      Tensor& dlogits) override {
    cpu::softmax_cross_entropy_backward(probs, labels, smoothing, dlogits);
  }

  void sgd_update(Tensor& param, const Tensor& grad, Tensor& momentum_buf, const SgdStep& step,
                  Tensor* bf16_copy) override {
    cpu::sgd_update(param, grad, momentum_buf, step, bf16_copy);
  }

  void axpby(float alpha, const Tensor& x, float beta, Tensor& y) override { cpu::axpby(alpha, x, beta, y); }
  void copy_channels(const Tensor& src, int64_t src_offset, Tensor& dst, int64_t dst_offset,
                     int64_t channels) override {
    cpu::copy_channels(src, src_offset, dst, dst_offset, channels);
  }
  void accumulate_train_stats(const Tensor& loss, const Tensor& logits, const Tensor& labels, int64_t step,
                              Tensor& stats) override {
    cpu::accumulate_train_stats(loss, logits, labels, step, stats);
  }

  void augment_batch(const Tensor& images, const Tensor& order, int64_t first, Tensor& out,
                     const AugmentBatchSpec& spec) override {
    cpu::augment_batch(images, order, first, out, spec);
  }
  void image_view(const Tensor& x, Tensor& y, const ImageView& view) override { cpu::image_view(x, y, view); }

 protected:
  bool supports_precision(Precision) const override { return true; }

 private:
  // The conv and linear ops' checks: bf16 operands in bf16 precision.
  OpChecks checks(const char* op) const {
    return OpChecks::cpu(op).allow_bf16_operands(precision() == Precision::bf16);
  }
  // t as precision() rounds an operand: t itself in fp32, else a rounded copy (a bf16 t: widened,
  // exactly) in operand buffer `slot` (one per operand of an op, grow-only, so a training step
  // allocates nothing after the first). The copy is valid until the next op.
  Tensor operand(const Tensor& t, int slot) {
    if (precision() == Precision::fp32) return t;
    Tensor& buffer = operand_buffers_[slot];
    if (!buffer.defined() || buffer.numel() < t.numel()) buffer = Tensor({t.numel()});
    Tensor rounded = buffer.leading(t.shape());
    if (t.dtype() == DType::bf16)
      widen_bf16(t.data<uint16_t>(), rounded.f32(), t.numel());
    else
      round_operand(t.f32(), rounded.f32(), t.numel(), precision());
    return rounded;
  }
  // y and dx as stored: bf16 values in bf16, as computed otherwise.
  void round_result(Tensor& t) const {
    if (precision() == Precision::bf16) round_operand(t.f32(), t.f32(), t.numel(), Precision::bf16);
  }
  // Where an op computes a result that may be stored bf16 (a conv's y): y itself when f32, else a
  // scratch f32 tensor of its shape, which store_result() then rounds into y.
  Tensor result_target(Tensor& y) {
    if (y.dtype() == DType::f32) return y;
    if (!result_buffer_.defined() || result_buffer_.numel() < y.numel()) result_buffer_ = Tensor({y.numel()});
    return result_buffer_.leading(y.shape());
  }
  void store_result(const Tensor& y32, Tensor& y) {
    if (y.dtype() == DType::f32) return round_result(y);
    to_bf16(y32, y);
  }
  // A batchnorm's x as f32: x itself, or a bf16 x (bf16 storage, bf16 precision only) widened
  // exactly into a scratch tensor, valid until the next batchnorm op.
  Tensor f32_values(const Tensor& x, const char* op) {
    checks(op).operand(x, "x");
    if (x.dtype() == DType::f32) return x;
    if (!widened_.defined() || widened_.numel() < x.numel()) widened_ = Tensor({x.numel()});
    Tensor out = widened_.leading(x.shape());
    widen_bf16(x.data<uint16_t>(), out.f32(), x.numel());
    return out;
  }
  // dbias sums the dy the GPU kernels read: the bf16 operand in bf16; TF32 rounds only what enters
  // the tensor cores, so its dbias sums fp32 dy.
  bool bias_from_operand() const { return precision() != Precision::tf32; }

  Workspace workspace_;        // im2col columns, reused across calls
  Tensor operand_buffers_[3];  // rounded operands (tf32, bf16), see operand()
  Tensor result_buffer_;       // a bf16 result's fp32 values, see result_target()
  Tensor widened_;             // a batchnorm's bf16 x widened, see f32_values()
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(Precision precision) {
  auto backend = std::make_unique<CpuBackend>();
  backend->set_precision(precision);
  return backend;
}

void register_cpu_backend() {
  register_backend("cpu", [] { return make_cpu_backend(); });
}

}  // namespace convnet
