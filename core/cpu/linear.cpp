#include "core/cpu/linear.h"

#include <vector>

#include "core/cpu/checks.h"
#include "core/cpu/gemm.h"
#include "core/cpu/parallel.h"
#include "core/cpu/reduce.h"

namespace convnet::cpu {

void linear_forward(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  const char* op = "linear_forward";
  check_rank(x, 2, op, "x");
  check_rank(w, 2, op, "w");
  const int64_t n = x.dim(0), in = x.dim(1), out = w.dim(0);
  check_shape(w, {out, in}, op, "w");
  check_shape(y, {n, out}, op, "y");
  if (bias) check_shape(*bias, {out}, op, "bias");
  float* yp = y.f32();
  sgemm(false, true, n, out, in, 1.0f, x.f32(), in, w.f32(), in, 0.0f, yp, out);
  if (bias) {
    const float* bp = bias->f32();
    parallel_for(0, n, 64, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t j = 0; j < out; ++j) yp[r * out + j] += bp[j];
    });
  }
}

void linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor& dw, Tensor* dbias) {
  const char* op = "linear_backward";
  check_rank(x, 2, op, "x");
  check_rank(w, 2, op, "w");
  const int64_t n = x.dim(0), in = x.dim(1), out = w.dim(0);
  check_shape(w, {out, in}, op, "w");
  check_shape(dy, {n, out}, op, "dy");
  check_shape(dw, {out, in}, op, "dw");
  if (dx) check_shape(*dx, {n, in}, op, "dx");
  if (dbias) check_shape(*dbias, {out}, op, "dbias");
  const float* dyp = dy.f32();
  if (dx) sgemm(false, false, n, in, out, 1.0f, dyp, out, w.f32(), in, 0.0f, dx->f32(), in);
  sgemm(true, false, out, in, n, 1.0f, dyp, out, x.f32(), in, 0.0f, dw.f32(), in);
  if (dbias) {
    std::vector<double> sums(static_cast<size_t>(out));
    column_sums(dyp, n, out, sums.data());
    float* dbp = dbias->f32();
    for (int64_t j = 0; j < out; ++j) dbp[j] = static_cast<float>(sums[static_cast<size_t>(j)]);
  }
}

}  // namespace convnet::cpu
