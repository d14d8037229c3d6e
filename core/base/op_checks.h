// Argument validation for Backend ops, shared by every backend (cpu, cuda, cudnn) so each rule and
// its message live once. A backend builds one OpChecks per call, naming the op and the device its
// tensors must live on, and calls the method named after the op (or the single-tensor checks for
// its own extra rules). Every failure throws convnet::Error naming the op and the argument, e.g.
// "conv2d_forward: y has shape [2, 4, 4, 8], expected [2, 4, 4, 16]". The checks read shapes,
// dtypes and devices only, never tensor data, so they run before anything is queued on a device.
//
// No fmt here: CUDA kernels take the geometry structs below, and nvcc cannot compile fmt.
#pragma once

#include <cstdint>
#include <string>

#include "core/base/backend.h"

namespace convnet {

// A validated 2-D convolution: x [n, h, w, c], w [k, r, s, c / groups], y [n, p, q, k]. Filters
// are non-empty (k, r, s, c >= 1), groups divides c and k, p, q >= 1; n may be 0.
struct ConvGeometry {
  int64_t n = 0, h = 0, w = 0, c = 0;  // input
  int64_t k = 0, r = 0, s = 0;         // filters
  int64_t p = 0, q = 0;                // output
  int64_t groups = 1;
  Conv2dParams params;
  int64_t group_c() const { return c / groups; }       // input channels of one group (the filters' last axis)
  int64_t group_k() const { return k / groups; }       // output channels of one group
  int64_t patch() const { return r * s * group_c(); }  // the input values one output pixel sees
  Shape output_shape() const { return {n, p, q, k}; }
};

// A validated 2-D pooling: x [n, h, w, c] pooled to [n, p, q, c]. Kernel and stride >= 1,
// 0 <= pad < kernel per axis (so every window holds a real input element), p, q >= 1; n and c
// may be 0.
struct PoolGeometry {
  int64_t n = 0, h = 0, w = 0, c = 0;
  int64_t p = 0, q = 0;
  Pool2dParams params;
  Shape pooled_shape() const { return {n, p, q, c}; }
};

// A validated linear layer: x [n, in], w [out, in], y [n, out].
struct LinearGeometry {
  int64_t n = 0, in = 0, out = 0;
};

// A validated softmax cross-entropy: scores [n, k] with k >= 1 classes, labels [n].
struct LossGeometry {
  int64_t n = 0, k = 0;
};

// A validated augment_batch: images [m, h, w, c] (u8), order [order_len] (i32), out [n, h, w, c].
struct AugmentGeometry {
  int64_t m = 0, n = 0, h = 0, w = 0, c = 0, order_len = 0, first = 0;
};

class OpChecks {
 public:
  // Checks for `op` run by the backend called `backend`, whose tensors live on `device` (any host
  // tensor when `device` is the cpu).
  OpChecks(const char* op, Device device, std::string backend);
  // The cpu backend's checks: host tensors.
  static OpChecks cpu(const char* op) { return {op, Device{}, "cpu"}; }

  const char* op() const { return op_; }
  // Whether the conv and linear operands (x, w, dy), a conv's and a relu's output, and a
  // batchnorm's input may be bf16 as well as f32: in bf16 precision (bf16 activation storage,
  // Backend::conv2d_forward, relu_forward, batch_norm_*). Off by default.
  OpChecks& allow_bf16_operands(bool allow) {
    bf16_operands_ = allow;
    return *this;
  }
  // "cuda conv2d_forward(x [2, 8, 8, 3], w [4, 3, 3, 3], y [2, 6, 6, 4])": the op and the tensors
  // checked so far (each once, in the order checked), for messages about a failure while it runs
  // (cuda/op_scope.h). The tensors must still be alive.
  std::string describe() const;

  // --- single tensors ---

  // t is defined, lives on the device and has the given dtype.
  void tensor(const Tensor& t, const char* name, DType dtype = DType::f32) const;
  // tensor() plus an exact shape.
  void shape(const Tensor& t, const Shape& expected, const char* name, DType dtype = DType::f32) const;
  // tensor() plus a rank.
  void rank(const Tensor& t, int expected, const char* name, DType dtype = DType::f32) const;

  // --- geometry from shapes alone (x [N, H, W, C], w [K, R, S, C]) ---

  // Validates the params and that x and w are rank 4 with matching C and non-empty filters, and
  // derives the output extent; throws when the output would be empty.
  ConvGeometry conv2d(const Shape& x_shape, const Shape& w_shape, const Conv2dParams& p) const;
  // Validates the params (pad < kernel) and that x is rank 4; throws when the output would be empty.
  PoolGeometry pool2d(const Shape& x_shape, const Pool2dParams& p) const;

  // --- whole ops: every argument of the Backend method of the same name (f32 unless noted) ---

  ConvGeometry conv2d_forward(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
                              const Conv2dParams& p) const;
  ConvGeometry conv2d_backward_data(const Tensor& dy, const Tensor& w, const Tensor& dx, const Conv2dParams& p) const;
  ConvGeometry conv2d_backward_filter(const Tensor& x, const Tensor& dy, const Tensor& dw, const Tensor* dbias,
                                      const Conv2dParams& p) const;

  // argmax is i32 of the pooled shape.
  PoolGeometry max_pool2d_forward(const Tensor& x, const Tensor& y, const Tensor& argmax, const Pool2dParams& p) const;
  PoolGeometry max_pool2d_backward(const Tensor& dy, const Tensor& argmax, const Tensor& dx,
                                   const Pool2dParams& p) const;
  PoolGeometry avg_pool2d_forward(const Tensor& x, const Tensor& y, const Pool2dParams& p) const;
  PoolGeometry avg_pool2d_backward(const Tensor& dy, const Tensor& dx, const Pool2dParams& p) const;

  // A tensor of dtype f32, or bf16 when allow_bf16_operands (a conv or linear operand, an
  // activation stored bf16).
  void operand(const Tensor& t, const char* name) const;

  // relu_forward / gelu_forward: y has x's shape.
  void activation_forward(const Tensor& x, const Tensor& y) const;
  // relu_backward (saved = y) / gelu_backward (saved = x): dy and dx have saved's shape.
  void activation_backward(const Tensor& saved, const char* saved_name, const Tensor& dy, const Tensor& dx) const;
  // The same for relu, whose output y may also be stored bf16 when allow_bf16_operands (a relu
  // output read only by conv and linear layers, Layer::writes_bf16_output).
  void relu_forward(const Tensor& x, const Tensor& y) const;
  void relu_backward(const Tensor& y, const Tensor& dy, const Tensor& dx) const;

  // x is [..., C] with C >= 1; per-channel tensors are [C]. Return C. Training also requires
  // more than one value per channel, eps >= 0 and momentum in [0, 1].
  int64_t batch_norm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& y,
                                   const Tensor& saved_mean, const Tensor& saved_invstd, const Tensor& running_mean,
                                   const Tensor& running_var, float momentum, float eps) const;
  // As training, and mean, m2 [C] (Backend::batch_norm_forward_train_from_moments).
  int64_t batch_norm_forward_train_from_moments(const Tensor& x, const Tensor& mean, const Tensor& m2,
                                                const Tensor& gamma, const Tensor& beta, const Tensor& y,
                                                const Tensor& saved_mean, const Tensor& saved_invstd,
                                                const Tensor& running_mean, const Tensor& running_var, float momentum,
                                                float eps) const;
  int64_t batch_norm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                                  const Tensor& running_var, float eps, const Tensor& y) const;
  int64_t batch_norm_backward(const Tensor& x, const Tensor& dy, const Tensor& gamma, const Tensor& saved_mean,
                              const Tensor& saved_invstd, const Tensor& dx, const Tensor& dgamma,
                              const Tensor& dbeta) const;
  // The synchronized pieces: x [..., C] with any number of rows (0 too), dy and dx of x's shape.
  int64_t batch_norm_local_stats(const Tensor& x, const Tensor& mean, const Tensor& m2) const;
  int64_t batch_norm_backward_reduce(const Tensor& x, const Tensor& dy, const Tensor& saved_mean,
                                     const Tensor& saved_invstd, const Tensor& sum_dy, const Tensor& sum_dy_xhat) const;
  int64_t batch_norm_backward_apply(const Tensor& x, const Tensor& dy, const Tensor& gamma, const Tensor& saved_mean,
                                    const Tensor& saved_invstd, const Tensor& mean_dy, const Tensor& mean_dy_xhat,
                                    const Tensor& dx) const;

  // x [N, in], w [out, in], y / dy [N, out], dx [N, in], dw [out, in], bias / dbias [out].
  LinearGeometry linear_forward(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) const;
  LinearGeometry linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, const Tensor* dx, const Tensor& dw,
                                 const Tensor* dbias) const;

  // p in [0, 1]; mask is u8 of x's (dy's) shape.
  void dropout_forward(const Tensor& x, const Tensor& y, const Tensor& mask, float p) const;
  void dropout_backward(const Tensor& dy, const Tensor& mask, float p, const Tensor& dx) const;

  // Shapes and smoothing in [0, 1]; labels are i32 [N]. Label values are not read (they may live
  // on a device): the backend checks them itself.
  LossGeometry softmax_cross_entropy_forward(const Tensor& logits, const Tensor& labels, float smoothing,
                                             const Tensor& loss, const Tensor& probs) const;
  LossGeometry softmax_cross_entropy_backward(const Tensor& probs, const Tensor& labels, float smoothing,
                                              const Tensor& dlogits) const;

  // loss [1], logits [N, K] with K >= 1, labels i32 [N], stats f64 [4] (Backend::accumulate_train_stats).
  LossGeometry accumulate_train_stats(const Tensor& loss, const Tensor& logits, const Tensor& labels,
                                      const Tensor& stats) const;

  // grad has param's shape; so does momentum_buf when step.momentum != 0 (it is unused otherwise),
  // and bf16_copy (bf16) when not null.
  void sgd_update(const Tensor& param, const Tensor& grad, const Tensor& momentum_buf, const SgdStep& step,
                  const Tensor* bf16_copy) const;

  // src f32, dst bf16, the same element count (any shapes).
  void to_bf16(const Tensor& src, const Tensor& dst) const;
  // x and y have the same element count (any shapes); alpha and beta are finite.
  void axpby(float alpha, const Tensor& x, float beta, const Tensor& y) const;
  // Returns the number of rows (the product of the leading dimensions).
  int64_t copy_channels(const Tensor& src, int64_t src_offset, const Tensor& dst, int64_t dst_offset,
                        int64_t channels) const;

  // images u8 rank 4 with 1 <= C <= kMaxImageChannels, order i32 rank 1, out f32 [N, H, W, C]
  // with 0 <= first and first + N <= order length; spec: positive std, pad >= 0 (reflect: < H
  // and < W), cutout >= 0. Index values are not read (they may live on a device).
  AugmentGeometry augment_batch(const Tensor& images, const Tensor& order, int64_t first, const Tensor& out,
                                const AugmentBatchSpec& spec) const;
  // x and y rank 4 of one shape and not the same memory; |shift| < H and W.
  void image_view(const Tensor& x, const Tensor& y, const ImageView& view) const;

 private:
  bool on_device(const Tensor& t) const;
  void operand_shape(const Tensor& t, const Shape& expected, const char* name) const;
  void has_rank(const Tensor& t, int expected, const char* name) const;
  // x is [..., C] with C >= 1; returns C.
  int64_t channels(const Tensor& x) const;
  // Backward's common arguments: channels(x), dy of x's shape, the saved statistics [C]; returns C.
  int64_t batch_norm_saved(const Tensor& x, const Tensor& dy, const Tensor& saved_mean,
                           const Tensor& saved_invstd) const;
  PoolGeometry pool2d(const Tensor& image, const char* image_name, const Tensor& pooled, const char* pooled_name,
                      const Tensor* argmax, const Pool2dParams& p) const;
  LinearGeometry linear(const Tensor& x, const Tensor& w) const;
  LossGeometry cross_entropy(const Tensor& scores, const char* scores_name, const Tensor& labels,
                             float smoothing) const;

  const char* op_;
  Device device_;
  std::string backend_;
  bool bf16_operands_ = false;
  // What describe() lists: recorded by tensor(), which every check goes through. Mutable because
  // recording is not part of the checks' meaning; a fixed array, so checking never allocates.
  struct Checked {
    const char* name;
    const Tensor* tensor;
  };
  static constexpr int kMaxRecorded = 12;
  mutable Checked checked_[kMaxRecorded] = {};
  mutable int checked_count_ = 0;
};

}  // namespace convnet
