#include "core/cpu/linear.h"

#include "core/cpu/bias.h"
#include "core/cpu/checks.h"
#include "core/cpu/gemm.h"

namespace convnet::cpu {

namespace {
struct LinearDims {
  int64_t n, in, out;
};

// The extents of x [N, in] and w [out, in], after checking both.
LinearDims linear_dims(const Tensor& x, const Tensor& w, const char* op) {
  check_rank(x, 2, op, "x");
  check_rank(w, 2, op, "w");
  const LinearDims d{x.dim(0), x.dim(1), w.dim(0)};
  check_shape(w, {d.out, d.in}, op, "w");
  return d;
}
}  // namespace

void linear_forward(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  const char* op = "linear_forward";
  const auto [n, in, out] = linear_dims(x, w, op);
  check_shape(y, {n, out}, op, "y");
  if (bias) check_shape(*bias, {out}, op, "bias");
  sgemm(false, true, n, out, in, 1.0f, x.f32(), in, w.f32(), in, 0.0f, y.f32(), out);
  if (bias) add_bias(y.f32(), n, out, bias->f32());
}

void linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor& dw, Tensor* dbias) {
  const char* op = "linear_backward";
  const auto [n, in, out] = linear_dims(x, w, op);
  check_shape(dy, {n, out}, op, "dy");
  check_shape(dw, {out, in}, op, "dw");
  if (dx) check_shape(*dx, {n, in}, op, "dx");
  if (dbias) check_shape(*dbias, {out}, op, "dbias");
  const float* dyp = dy.f32();
  if (dx) sgemm(false, false, n, in, out, 1.0f, dyp, out, w.f32(), in, 0.0f, dx->f32(), in);
  sgemm(true, false, out, in, n, 1.0f, dyp, out, x.f32(), in, 0.0f, dw.f32(), in);
  if (dbias) bias_gradient(dyp, n, out, dbias->f32());
}

}  // namespace convnet::cpu
