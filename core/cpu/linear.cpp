#include "core/cpu/linear.h"

#include "core/base/op_checks.h"
#include "core/cpu/bias.h"
#include "core/cpu/gemm.h"

namespace convnet::cpu {

void linear_forward(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  const auto [n, in, out] = OpChecks::cpu("linear_forward").linear_forward(x, w, bias, y);
  sgemm(false, true, n, out, in, 1.0f, x.f32(), in, w.f32(), in, 0.0f, y.f32(), out);
  if (bias) add_bias(y.f32(), n, out, bias->f32());
}

void linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor& dw, Tensor* dbias) {
  const auto [n, in, out] = OpChecks::cpu("linear_backward").linear_backward(x, w, dy, dx, dw, dbias);
  const float* dyp = dy.f32();
  if (dx) sgemm(false, false, n, in, out, 1.0f, dyp, out, w.f32(), in, 0.0f, dx->f32(), in);
  sgemm(true, false, out, in, n, 1.0f, dyp, out, x.f32(), in, 0.0f, dw.f32(), in);
  if (dbias) bias_gradient(dyp, n, out, dbias->f32());
}

}  // namespace convnet::cpu
