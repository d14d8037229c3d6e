// Backend: the device-specific implementation of every op a layer, loss or optimizer needs.
//
// Layers own parameters and activations and call their backend for the arithmetic; the `cpu`
// backend (core/cpu) is the reference, `cuda` and `cudnn` (cuda/) implement the same contract on
// the GPU. All tensors passed to one call live on the backend's device and are f32 unless noted;
// outputs are preallocated by the caller with the documented shapes and are fully overwritten
// (never accumulated into). Calls are asynchronous on GPU backends: they are ordered on the
// backend's compute stream and synchronize() waits for them. GPU backends on one device share that
// device's compute stream, so a tensor one of them writes can be read by another without any
// hand-over, and a block freed to either's memory pool is reused in stream order.
//
// Layouts: activations NHWC, conv filters KRSC, linear weights [out, in]. Per-channel ops
// (bias, batchnorm) treat the last dimension as the channel.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/base/augment_math.h"
#include "core/base/precision.h"
#include "core/base/tensor.h"

namespace convnet {

struct Conv2dParams {
  int stride_h = 1, stride_w = 1;
  int pad_h = 0, pad_w = 0;
  int dilation_h = 1, dilation_w = 1;
  // Grouped convolution (PyTorch `groups`): C and K are multiples of groups; w is [K, R, S, C / groups] and
  // output channel k reads input channels [g * C / groups, (g + 1) * C / groups) with g = k / (K / groups).
  // groups == C is depthwise.
  int groups = 1;
};
// Output extent of a convolution or pooling window along one axis; <= 0 means "too small".
constexpr int64_t conv_output_size(int64_t input, int64_t kernel, int stride, int pad, int dilation = 1) {
  const int64_t span = dilation * (kernel - 1) + 1;
  // Checked first: C++ division truncates toward zero, so (-1) / 3 + 1 would claim one output.
  if (input + 2 * pad < span) return 0;
  return (input + 2 * pad - span) / stride + 1;
}

struct Pool2dParams {
  int kernel_h = 2, kernel_w = 2;
  int stride_h = 2, stride_w = 2;
  int pad_h = 0, pad_w = 0;
};

// One SGD step for one parameter tensor (PyTorch semantics, dampening 0):
//   g = grad (+ weight_decay * param when !decoupled_decay)
//   buf = momentum * buf + g                      (buf starts at zero, so the first step gives g)
//   step = nesterov ? g + momentum * buf : buf     (momentum == 0: step = g, buf untouched)
//   param -= lr * step (+ lr * weight_decay * param when decoupled_decay, applied first)
struct SgdStep {
  float lr = 0.1f;
  float momentum = 0.0f;
  float weight_decay = 0.0f;
  bool nesterov = false;
  bool decoupled_decay = false;
};

// Building a training batch on the device from a resident uint8 data set (Backend::augment_batch).
constexpr int kMaxImageChannels = 4;
struct AugmentBatchSpec {
  AugmentSpec augment;  // the random choices (all off: the images unchanged, only normalised)
  int64_t epoch = 0;
  float mean[kMaxImageChannels] = {};  // per channel, on [0, 1] pixels (normalize_pixel)
  float std[kMaxImageChannels] = {1, 1, 1, 1};
};

// A fixed shift and flip applied to every image of a batch (test-time augmentation views), with
// the conventions of augment_math.h: output (y, x) reads crop_source(y, shift_y) and
// crop_source(flip_source(x), shift_x); with zero padding an outside pixel reads 0.
struct ImageView {
  int shift_y = 0, shift_x = 0;
  bool flip = false;
  PadMode pad_mode = PadMode::reflect;
};

// What a backend has asked of its device so far: kernels and library calls queued, copies by
// direction, and host waits (blocking synchronizations). `convnet benchmark` prints the difference
// over one training step, which shows where the host-side cost of a step goes. GPU backends count
// every GPU backend of the process (the kernels do not know which backend launched them); the cpu
// backend queues nothing and reports zeros.
struct DeviceActivity {
  int64_t kernel_launches = 0;  // our kernels
  int64_t library_calls = 0;    // cuDNN / cuBLAS calls that queue device work (each one or more kernels)
  int64_t host_to_device = 0, device_to_host = 0, device_to_device = 0;  // copies (memset included in d2d)
  int64_t host_waits = 0;  // stream and event synchronizations the host blocked on
  DeviceActivity operator-(const DeviceActivity& before) const;
  bool operator==(const DeviceActivity&) const = default;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;  // "cpu", "cuda", "cudnn"
  virtual Device device() const = 0;
  virtual Allocator& allocator() = 0;
  virtual void synchronize() {}

  // --- measurement (convnet benchmark) ---
  // Milliseconds `work` takes on this backend's device: host steady_clock around work() +
  // synchronize() by default; GPU backends time with CUDA events on their stream.
  virtual double elapsed_ms(const std::function<void()>& work);
  // Evicts caches between timed repetitions (GPU: overwrite an L2-sized buffer); no-op on CPU.
  virtual void flush_caches() {}
  // Peak rates for "% of peak" columns; 0 when unknown.
  virtual double peak_gflops() const { return 0; }
  virtual double peak_gbytes_per_sec() const { return 0; }

  Tensor empty(Shape shape, DType dtype = DType::f32) { return Tensor(std::move(shape), dtype, allocator()); }

  // --- precision (core/base/precision.h): the arithmetic of the conv and linear ops below ---
  // Throws ConfigError naming this backend when it cannot compute in `p`.
  void set_precision(Precision p);
  Precision precision() const { return precision_; }

  // --- memory ---
  // dst = src; same dtype and numel; either may be on the host or on this backend's device.
  virtual void copy(Tensor& dst, const Tensor& src) = 0;
  virtual void fill(Tensor& t, float value) = 0;  // f32 tensors
  // dst (bf16) = src (f32) rounded to nearest even (NaN stays NaN); the same element count.
  virtual void to_bf16(const Tensor& src, Tensor& dst) = 0;
  // Like copy(), for a host `src` and a `dst` on this device, but the transfer may run on a
  // separate copy stream: it starts after the work queued so far (which may still read dst) and
  // overlaps with the work queued after it, which is therefore NOT ordered with it. Call
  // await_uploads() right before the first op that reads dst. `src` may be reused on return, and
  // dst may be released before the wait (its memory is held until then). Default: copy().
  virtual void copy_async(Tensor& dst, const Tensor& src) { copy(dst, src); }
  // Work queued after this call sees every copy_async transfer queued before it. Does not block
  // the host. Default: nothing (copy_async already finished).
  virtual void await_uploads() {}

  // --- convolution: x [N,H,W,C], w [K,R,S,C], bias [K] or null, y [N,P,Q,K] ---
  // In bf16 precision the operands of the conv and linear ops (x, w, dy) may also be bf16 tensors:
  // they hold exactly the values the op would round f32 operands to, so either dtype gives the
  // same result, and a bf16 operand saves the conversion. Outputs (dx, dw, dbias) are f32; y may be
  // bf16 too (bf16 activation storage), holding the values an f32 y would hold.
  virtual void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y,
                              const Conv2dParams& p) = 0;
  // dx [N,H,W,C] from dy [N,P,Q,K] and w.
  virtual void conv2d_backward_data(const Tensor& dy, const Tensor& w, Tensor& dx, const Conv2dParams& p) = 0;
  // dw [K,R,S,C] (and dbias [K] = sum of dy over N,P,Q when non-null) from x and dy.
  virtual void conv2d_backward_filter(const Tensor& x, const Tensor& dy, Tensor& dw, Tensor* dbias,
                                      const Conv2dParams& p) = 0;

  // --- pooling: x [N,H,W,C], y [N,P,Q,C] ---
  // argmax (i32, same shape as y) holds the window-local index r * kernel_w + s of the maximum
  // (first maximum in scan order on ties; padding never wins).
  virtual void max_pool2d_forward(const Tensor& x, Tensor& y, Tensor& argmax, const Pool2dParams& p) = 0;
  virtual void max_pool2d_backward(const Tensor& dy, const Tensor& argmax, Tensor& dx, const Pool2dParams& p) = 0;
  // Average over the window, padding counted as zeros (PyTorch count_include_pad=True).
  virtual void avg_pool2d_forward(const Tensor& x, Tensor& y, const Pool2dParams& p) = 0;
  virtual void avg_pool2d_backward(const Tensor& dy, Tensor& dx, const Pool2dParams& p) = 0;

  // --- activations (any shape; dx may alias dy) ---
  // In bf16 precision y may be a bf16 tensor: relu(x) rounded to nearest even, the storage of a
  // relu output that only conv and linear layers read (they take bf16 operands). Backward then
  // reads that y (its mask is that of the stored value).
  virtual void relu_forward(const Tensor& x, Tensor& y) = 0;
  virtual void relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx) = 0;  // uses the output: y > 0
  virtual void gelu_forward(const Tensor& x, Tensor& y) = 0;                      // exact: x * Phi(x) (erf form)
  virtual void gelu_backward(const Tensor& x, const Tensor& dy, Tensor& dx) = 0;

  // --- batch normalization over all but the last dimension (C) ---
  // In bf16 precision x may be a bf16 tensor (a conv output stored bf16): every op reads it
  // widened, exactly, so it gives the result of the f32 x of the same values. Outputs stay f32.
  // Training: normalizes with the batch mean and biased variance, saves mean and 1/sqrt(var + eps)
  // ([C] each) for backward, and updates running_mean / running_var ([C]) in place as
  // running = (1 - momentum) * running + momentum * batch_stat, using the unbiased variance (PyTorch).
  virtual void batch_norm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& y,
                                        Tensor& saved_mean, Tensor& saved_invstd, Tensor& running_mean,
                                        Tensor& running_var, float momentum, float eps) = 0;
  virtual void batch_norm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                       const Tensor& running_mean, const Tensor& running_var, float eps, Tensor& y) = 0;
  virtual void batch_norm_backward(const Tensor& x, const Tensor& dy, const Tensor& gamma, const Tensor& saved_mean,
                                   const Tensor& saved_invstd, Tensor& dx, Tensor& dgamma, Tensor& dbeta) = 0;
  // The pieces of training-mode batchnorm that synchronized batchnorm (BatchNorm2d::set_replica_group)
  // combines across data-parallel ranks between calls; x and dy are [rows, C], the rest [C]:
  //   local_stats:     mean and M2 = sum (x - mean)^2 of these rows (both 0 when rows == 0);
  //   backward_reduce: sum_dy = sum dy and sum_dy_xhat = sum dy * xhat, xhat = (x - mean) * invstd;
  //   backward_apply:  dx = gamma * invstd * (dy - mean_dy - xhat * mean_dy_xhat), with mean_dy and
  //                    mean_dy_xhat the means over every rank's rows. dx may alias dy.
  // Reductions are deterministic (a fixed order, in double). batch_norm_backward is reduce, then
  // apply with the sums divided by rows.
  virtual void batch_norm_local_stats(const Tensor& x, Tensor& mean, Tensor& m2) = 0;
  virtual void batch_norm_backward_reduce(const Tensor& x, const Tensor& dy, const Tensor& saved_mean,
                                          const Tensor& saved_invstd, Tensor& sum_dy, Tensor& sum_dy_xhat) = 0;
  virtual void batch_norm_backward_apply(const Tensor& x, const Tensor& dy, const Tensor& gamma,
                                         const Tensor& saved_mean, const Tensor& saved_invstd, const Tensor& mean_dy,
                                         const Tensor& mean_dy_xhat, Tensor& dx) = 0;

  // --- a convolution feeding a training-mode batchnorm (Graph fuses the pair; see
  // fuses_conv_batch_norm): the batchnorm takes its batch statistics from the convolution instead
  // of a pass of its own over the activations. ---
  // conv2d_forward, plus the per-channel mean and M2 = sum (y - mean)^2 over N, P, Q of y as stored
  // (f32 [K]), as batch_norm_local_stats(y) gives them. Default: exactly those two calls; a backend
  // whose kernel computes the sums in its epilogue overrides it.
  virtual void conv2d_forward_with_moments(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y,
                                           const Conv2dParams& p, Tensor& mean, Tensor& m2);
  // batch_norm_forward_train with the batch statistics given: mean and m2 ([C], f32) are those of
  // x's rows (conv2d_forward_with_moments), the biased variance is m2 / rows. Everything else,
  // the outputs and the running-statistics update included, is batch_norm_forward_train's contract.
  virtual void batch_norm_forward_train_from_moments(const Tensor& x, const Tensor& mean, const Tensor& m2,
                                                     const Tensor& gamma, const Tensor& beta, Tensor& y,
                                                     Tensor& saved_mean, Tensor& saved_invstd, Tensor& running_mean,
                                                     Tensor& running_var, float momentum, float eps) = 0;
  // Whether the pair above is faster on this backend than conv2d_forward + batch_norm_forward_train
  // (ConvBnFusion::automatic fuses only then). The cpu and cudnn backends: no.
  virtual bool fuses_conv_batch_norm() const { return false; }

  // --- dropout: keep element i iff hash_uniform(seed, i) >= p; y = x * keep / (1 - p) ---
  // mask (u8, same shape as x) records keep for backward.
  virtual void dropout_forward(const Tensor& x, Tensor& y, Tensor& mask, float p, uint64_t seed) = 0;
  virtual void dropout_backward(const Tensor& dy, const Tensor& mask, float p, Tensor& dx) = 0;

  // --- linear: x [N, in], w [out, in], bias [out] or null, y [N, out] ---
  virtual void linear_forward(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) = 0;
  // dx [N, in] (skipped when null), dw [out, in], dbias [out] (skipped when null).
  virtual void linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor& dw,
                               Tensor* dbias) = 0;

  // --- softmax cross-entropy with label smoothing, mean over the batch ---
  // logits [N, K], labels i32 [N] in [0, K). Target distribution: (1 - s) one-hot + s / K.
  // Writes loss [1] (mean over N) and probs [N, K] (softmax) for backward.
  virtual void softmax_cross_entropy_forward(const Tensor& logits, const Tensor& labels, float smoothing, Tensor& loss,
                                             Tensor& probs) = 0;
  // dlogits = (probs - target) / N
  virtual void softmax_cross_entropy_backward(const Tensor& probs, const Tensor& labels, float smoothing,
                                              Tensor& dlogits) = 0;

  // --- optimizer: one fused SGD update (see SgdStep); momentum_buf may be undefined if momentum == 0 ---
  // bf16_copy (bf16 of param's shape, or null): also written with the updated param rounded to
  // nearest even, in the same pass, for the bf16 operands of the conv and linear ops above.
  virtual void sgd_update(Tensor& param, const Tensor& grad, Tensor& momentum_buf, const SgdStep& step,
                          Tensor* bf16_copy) = 0;

  // --- training statistics, accumulated on the device so the trainer reads them every few steps ---
  // loss f32 [1] (from softmax_cross_entropy_forward), logits f32 [N, K], labels i32 [N], stats f64 [4]:
  //   stats[0] += loss[0];
  //   stats[1] += the number of rows i with top1(logits[i]) == labels[i] (core/base/top1.h);
  //   the first time loss[0] is not finite (stats[2] < 0): stats[2] = step, stats[3] = loss[0].
  // The caller starts stats at {0, 0, -1, 0}. Sums in f64, one step after another, so reading them
  // every few steps gives exactly the running sums a per-step read on the host gave.
  virtual void accumulate_train_stats(const Tensor& loss, const Tensor& logits, const Tensor& labels, int64_t step,
                                      Tensor& stats) = 0;

  // --- measurement of the host side of a step (see DeviceActivity) ---
  virtual DeviceActivity activity() const { return {}; }

  // --- elementwise: y = alpha * x + beta * y (any shape, same numel). beta == 0 overwrites y
  // without reading it (BLAS convention), so y may hold garbage; x may alias y. ---
  virtual void axpby(float alpha, const Tensor& x, float beta, Tensor& y) = 0;

  // --- channel slices (concat and its backward): src [..., Cs] and dst [..., Cd], f32, with the same
  // leading dimensions; for every leading index and c < channels:
  //   dst[..., dst_offset + c] = src[..., src_offset + c]
  // and dst's other channels are untouched. The two ranges lie inside their tensors; src != dst. ---
  virtual void copy_channels(const Tensor& src, int64_t src_offset, Tensor& dst, int64_t dst_offset,
                             int64_t channels) = 0;

  // --- data ---
  // images: u8 [M, H, W, C] (C <= kMaxImageChannels), order: i32 [L] of indices into images,
  // out: f32 [N, H, W, C] with first + N <= L. For i < N, with e = order[first + i]:
  //   out[i] = normalize(images[e] through augment_params_for(spec.augment, spec.epoch, e, H, W)),
  // exactly the pixels ImageTransform::apply (datasets/augment.h) gives on the CPU: zero padding
  // reads a black pixel, cutout sets the normalised values to 0.
  virtual void augment_batch(const Tensor& images, const Tensor& order, int64_t first, Tensor& out,
                             const AugmentBatchSpec& spec) = 0;
  // x, y: f32 [N, H, W, C]; y = x seen through `view` (see ImageView). y must not alias x.
  virtual void image_view(const Tensor& x, Tensor& y, const ImageView& view) = 0;

 protected:
  // The precisions this backend computes; fp32 only unless a backend says more.
  virtual bool supports_precision(Precision p) const { return p == Precision::fp32; }

 private:
  Precision precision_ = Precision::fp32;
};

}  // namespace convnet
