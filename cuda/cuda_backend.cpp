#include "cuda/cuda_backend.h"

#include <algorithm>
#include <cstdint>
#include <limits>

#include "core/base/error.h"
#include "cuda/activation_kernels.h"
#include "cuda/batch_norm_kernels.h"
#include "cuda/bf16_kernels.h"
#include "cuda/conv_kernels.h"
#include "cuda/conv_tc_kernels.h"
#include "cuda/device.h"
#include "cuda/pool_kernels.h"

namespace convnet::cuda {

namespace {

// Device pointers (Tensor::data refuses host access to device memory, by design).
const float* fp(const Tensor& t) {
  return static_cast<const float*>(t.raw());
}
float* fp(Tensor& t) {
  return static_cast<float*>(t.raw());
}
const uint16_t* bf(const Tensor& t) {
  return static_cast<const uint16_t*>(t.raw());
}
uint16_t* bf(Tensor& t) {
  return static_cast<uint16_t*>(t.raw());
}
const float* fp_or_null(const Tensor* t) {
  return t ? fp(*t) : nullptr;
}
float* fp_or_null(Tensor* t) {
  return t ? fp(*t) : nullptr;
}

// The kernels' shape structs hold extents as int.
int to_int(const OpChecks& check, int64_t extent, const char* what) {
  CONVNET_CHECK(extent >= 0 && extent <= std::numeric_limits<int>::max(),
                "{}: {} {} exceeds the cuda kernels' 32-bit extent limit", check.op(), what, extent);
  return static_cast<int>(extent);
}

// The kernels' problem for a validated convolution. Only for a non-empty batch: ConvShape requires
// n >= 1, and an empty batch queues no kernel.
ConvShape conv_shape(const OpChecks& check, const ConvGeometry& g) {
  return ConvShape::make(to_int(check, g.n, "batch size"), to_int(check, g.h, "input height"),
                         to_int(check, g.w, "input width"), to_int(check, g.c, "input channels"),
                         to_int(check, g.k, "output channels"), to_int(check, g.r, "kernel height"),
                         to_int(check, g.s, "kernel width"), g.params);
}

// A linear layer as a 1x1 convolution: x [N, in] is the NHWC image [N, 1, 1, in], w [out, in] the
// KRSC filter bank [out, 1, 1, in] and y [N, out] the output [N, 1, 1, out]. The memory layouts
// are identical, so nothing is copied; linear layers get the conv kernels' tiled, deterministic
// GEMMs (forward = y = x w^T, backward-data = dy w, backward-filter = dy^T x with dbias = the
// column sums of dy) without a second GEMM implementation to write, tune and validate.
// Requires n >= 1 (an empty batch queues no kernel).
ConvShape linear_as_conv(const OpChecks& check, const LinearGeometry& g) {
  return ConvShape::make(to_int(check, g.n, "batch size"), 1, 1, to_int(check, g.in, "input features"),
                         to_int(check, g.out, "output features"), 1, 1, Conv2dParams{});
}

// The conv kernels need a non-empty filter bank.
void check_nonempty_weights(const OpChecks& check, const LinearGeometry& g, const Tensor& w) {
  CONVNET_CHECK(g.in > 0 && g.out > 0, "{}: empty weights {}", check.op(), shape_str(w.shape()));
}

// Whether a convolution runs on the fp32 kernels (conv_kernels.h) rather than v4: in fp32, and in
// every precision for narrow groups (conv_narrow_groups: depthwise and its kin, under 8 channels
// per group). Their per-group GEMMs are 1-7 wide, most of every v2 or v4 tile wasted: forward and
// backward-data take v0, which does just the work needed, and backward-filter v2 (fp32_version).
// Both read fp32 tensors (no bf16 copies; bf16 operands are widened) and are more exact than tf32
// or bf16, which a reduced precision allows.
bool fp32_kernels(Precision precision, const ConvShape& s) {
  return precision == Precision::fp32 || conv_narrow_groups(s);
}

// The fp32 version for a pass. Narrow groups run forward and backward-data on v0, the direct
// kernel: one thread per output element summing just the r*s*C/g (or taps*K/g) terms it needs,
// reads coalesced along the channels, where v2's tiles would be mostly empty. Backward-filter stays
// on v2: its reduction is the long n*p*q, which v0 sums serially in one thread per weight while v2
// splits it across blocks. groups == 1 is never narrow: today's v2 everywhere.
ConvVersion fp32_version(const ConvShape& s, ConvPass pass) {
  return conv_narrow_groups(s) && pass != ConvPass::backward_filter ? ConvVersion::v0_direct
                                                                    : ConvVersion::v2_implicit_gemm;
}

// The elements of t to convert to bf16 for v4 BF16: none when t already is bf16.
int64_t to_convert(const Tensor& t) {
  return t.dtype() == DType::bf16 ? 0 : t.numel();
}

}  // namespace

CudaBackend::CudaBackend(int device_index, Precision precision)
    : GpuBackend(precision == Precision::tf32 ? "cuda_tf32" : "cuda", device_index) {
  for (const GpuInfo& gpu : query_gpus()) {
    if (gpu.index != device_index) continue;
    sm_count_ = std::max(1, gpu.sm_count);
    tensor_cores_ = gpu.sm_major >= 8;
    CONVNET_CHECK(precision == Precision::fp32 || tensor_cores_,
                  "the {} backend in {} needs tensor cores (compute capability 8.0 or newer); cuda:{} ({}) is sm_{}{}",
                  name(), precision_name(precision), device_index, gpu.name, gpu.sm_major, gpu.sm_minor);
  }
  set_precision(precision);
}

ConvTcPlan CudaBackend::tc_plan(const ConvShape& s, ConvPass pass) const {
  return conv_tc_plan(s, pass, precision() == Precision::bf16 ? ConvPrecision::bf16 : ConvPrecision::tf32, sm_count_);
}

CudaBackend::Bf16Scratch CudaBackend::bf16_scratch(const int64_t (&counts)[3], size_t workspace_bytes) {
  constexpr size_t kAlign = 256;
  const auto round_up = [](size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; };
  size_t offsets[4] = {};
  for (int i = 0; i < 3; ++i) offsets[i + 1] = offsets[i] + round_up(static_cast<size_t>(counts[i]) * sizeof(uint16_t));
  auto* base = static_cast<unsigned char*>(scratch(offsets[3] + workspace_bytes));
  Bf16Scratch out;
  for (int i = 0; i < 3; ++i) out.part[i] = reinterpret_cast<uint16_t*>(base + offsets[i]);
  out.workspace = base + offsets[3];
  return out;
}

const uint16_t* CudaBackend::bf16_operand(const Tensor& t, uint16_t* part) {
  if (t.dtype() == DType::bf16) return bf(t);
  launch_to_bf16(fp(t), part, t.numel(), stream());
  return part;
}

void CudaBackend::run_forward(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y, const ConvShape& s,
                              const ConvOutputStats& stats) {
  if (fp32_kernels(precision(), s)) {
    CONVNET_CHECK(stats.sum == nullptr, "conv2d_forward: the fp32 kernels have no output statistics");
    const Tensor xf = as_f32(x), wf = as_f32(w);
    Tensor y32 = y.dtype() == DType::f32 ? y : empty(y.shape());
    cuda::conv2d_forward(fp(xf), fp(wf), fp_or_null(bias), fp(y32), s, stream(), fp32_version(s, ConvPass::forward));
    store_result(y32, y);
    return;
  }
  const ConvTcPlan plan = tc_plan(s, ConvPass::forward);
  const size_t workspace = stats.sum ? plan.workspace_with_stats_bytes() : plan.workspace_bytes;
  if (precision() == Precision::tf32) {
    conv2d_forward_tc(fp(x), fp(w), fp_or_null(bias), fp(y), ConvActivation::none, s, plan, scratch(workspace),
                      stream(), stats);
    return;
  }
  // v4 BF16 stores y in bf16: straight into a bf16 y (bf16 activation storage), else widened.
  const bool bf16_y = y.dtype() == DType::bf16;
  const Bf16Scratch b = bf16_scratch({to_convert(x), to_convert(w), bf16_y ? 0 : y.numel()}, workspace);
  uint16_t* out = bf16_y ? bf(y) : b.part[2];
  conv2d_forward_tc(bf16_operand(x, b.part[0]), bf16_operand(w, b.part[1]), fp_or_null(bias), out, ConvActivation::none,
                    s, plan, b.workspace, stream(), stats);
  if (!bf16_y) launch_from_bf16(out, fp(y), y.numel(), stream());
}

void CudaBackend::store_result(const Tensor& y32, Tensor& y) {
  if (precision() != Precision::bf16) return;
  if (y.dtype() == DType::bf16) return launch_to_bf16(fp(y32), bf(y), y.numel(), stream());
  launch_round_to_bf16(fp(y), nullptr, 1, fp(y), y.numel(), stream());
}

void CudaBackend::run_backward_data(const Tensor& dy, const Tensor& w, Tensor& dx, const ConvShape& s) {
  if (fp32_kernels(precision(), s)) {
    const Tensor dyf = as_f32(dy), wf = as_f32(w);
    cuda::conv2d_backward_data(fp(dyf), fp(wf), fp(dx), s, stream(), fp32_version(s, ConvPass::backward_data));
    store_result(dx, dx);
    return;
  }
  const ConvTcPlan plan = tc_plan(s, ConvPass::backward_data);
  if (precision() == Precision::tf32) {
    conv2d_backward_data_tc(fp(dy), fp(w), fp(dx), s, plan, scratch(plan.workspace_bytes), stream());
    return;
  }
  const Bf16Scratch b = bf16_scratch({to_convert(dy), to_convert(w), dx.numel()}, plan.workspace_bytes);
  conv2d_backward_data_tc(bf16_operand(dy, b.part[0]), bf16_operand(w, b.part[1]), b.part[2], s, plan, b.workspace,
                          stream());
  launch_from_bf16(b.part[2], fp(dx), dx.numel(), stream());
}

void CudaBackend::run_backward_filter(const Tensor& x, const Tensor& dy, Tensor& dw, Tensor* dbias,
                                      const ConvShape& s) {
  if (fp32_kernels(precision(), s)) {
    const ConvVersion v = fp32_version(s, ConvPass::backward_filter);
    const Tensor xf = as_f32(x), dyf = as_f32(dy);
    void* workspace = scratch(conv2d_backward_filter_workspace(s, v));
    cuda::conv2d_backward_filter(fp(xf), fp(dyf), fp(dw), fp_or_null(dbias), s, workspace, stream(), v);
    return;
  }
  const ConvTcPlan plan = tc_plan(s, ConvPass::backward_filter);
  if (precision() == Precision::tf32) {
    conv2d_backward_filter_tc(fp(x), fp(dy), fp(dw), fp_or_null(dbias), s, plan, scratch(plan.workspace_bytes),
                              stream());
    return;
  }
  const Bf16Scratch b = bf16_scratch({to_convert(x), to_convert(dy), 0}, plan.workspace_bytes);
  conv2d_backward_filter_tc(bf16_operand(x, b.part[0]), bf16_operand(dy, b.part[1]), fp(dw), fp_or_null(dbias), s, plan,
                            b.workspace, stream());
}

// --- convolution ---

void CudaBackend::conv2d_forward(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y,
                                 const Conv2dParams& p) {
  const OpChecks check = checks("conv2d_forward");
  const ConvGeometry g = check.conv2d_forward(x, w, bias, y, p);
  if (g.n == 0) return;
  const ConvShape s = conv_shape(check, g);
  const OpScope in_op = scope(check);
  run_forward(x, w, bias, y, s);
}

void CudaBackend::conv2d_forward_with_moments(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y,
                                              const Conv2dParams& p, Tensor& mean, Tensor& m2) {
  const OpChecks check = checks("conv2d_forward_with_moments");
  const ConvGeometry g = check.conv2d_forward(x, w, bias, y, p);
  check.batch_norm_local_stats(y, mean, m2);
  const auto without_epilogue = [&] { Backend::conv2d_forward_with_moments(x, w, bias, y, p, mean, m2); };
  if (g.n == 0) return without_epilogue();
  const ConvShape s = conv_shape(check, g);
  if (fp32_kernels(precision(), s)) return without_epilogue();  // v0/v2 have no statistics: a pass over y
  const OpScope in_op = scope(check);
  run_forward(x, w, bias, y, s, ConvOutputStats{fp(mean), fp(m2)});
  launch_moments_from_sums(fp(mean), fp(m2), y.numel() / g.k, g.k, stream());
}

void CudaBackend::conv2d_backward_data(const Tensor& dy, const Tensor& w, Tensor& dx, const Conv2dParams& p) {
  const OpChecks check = checks("conv2d_backward_data");
  const ConvGeometry g = check.conv2d_backward_data(dy, w, dx, p);
  if (g.n == 0) return;
  const ConvShape s = conv_shape(check, g);
  const OpScope in_op = scope(check);
  run_backward_data(dy, w, dx, s);
}

void CudaBackend::conv2d_backward_filter(const Tensor& x, const Tensor& dy, Tensor& dw, Tensor* dbias,
                                         const Conv2dParams& p) {
  const OpChecks check = checks("conv2d_backward_filter");
  const ConvGeometry g = check.conv2d_backward_filter(x, dy, dw, dbias, p);
  if (g.n == 0) {  // an empty batch contributes nothing: the gradients are zero
    fill(dw, 0.0f);
    if (dbias) fill(*dbias, 0.0f);
    return;
  }
  const ConvShape s = conv_shape(check, g);
  const OpScope in_op = scope(check);
  run_backward_filter(x, dy, dw, dbias, s);  // the only scratch user in this call
}

// --- pooling ---

void CudaBackend::max_pool2d_forward(const Tensor& x, Tensor& y, Tensor& argmax, const Pool2dParams& p) {
  const OpChecks check = checks("max_pool2d_forward");
  const PoolGeometry g = check.max_pool2d_forward(x, y, argmax, p);
  const OpScope in_op = scope(check);
  launch_max_pool2d_forward(fp(x), fp(y), static_cast<int32_t*>(argmax.raw()), g, stream());
}

void CudaBackend::max_pool2d_backward(const Tensor& dy, const Tensor& argmax, Tensor& dx, const Pool2dParams& p) {
  const OpChecks check = checks("max_pool2d_backward");
  const PoolGeometry g = check.max_pool2d_backward(dy, argmax, dx, p);
  const OpScope in_op = scope(check);
  launch_max_pool2d_backward(fp(dy), static_cast<const int32_t*>(argmax.raw()), fp(dx), g, stream());
}

void CudaBackend::avg_pool2d_forward(const Tensor& x, Tensor& y, const Pool2dParams& p) {
  const OpChecks check = checks("avg_pool2d_forward");
  const PoolGeometry g = check.avg_pool2d_forward(x, y, p);
  const OpScope in_op = scope(check);
  launch_avg_pool2d_forward(fp(x), fp(y), g, stream());
}

void CudaBackend::avg_pool2d_backward(const Tensor& dy, Tensor& dx, const Pool2dParams& p) {
  const OpChecks check = checks("avg_pool2d_backward");
  const PoolGeometry g = check.avg_pool2d_backward(dy, dx, p);
  const OpScope in_op = scope(check);
  launch_avg_pool2d_backward(fp(dy), fp(dx), g, stream());
}

// --- activations ---

void CudaBackend::relu_forward(const Tensor& x, Tensor& y) {
  const OpChecks check = checks("relu_forward");
  check.relu_forward(x, y);
  const OpScope in_op = scope(check);
  if (y.dtype() == DType::bf16) return launch_relu_forward_bf16(fp(x), bf(y), x.numel(), stream());
  launch_relu_forward(fp(x), fp(y), x.numel(), stream());
}

void CudaBackend::relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx) {
  const OpChecks check = checks("relu_backward");
  check.relu_backward(y, dy, dx);
  const OpScope in_op = scope(check);
  if (y.dtype() == DType::bf16) return launch_relu_backward_bf16(bf(y), fp(dy), fp(dx), y.numel(), stream());
  launch_relu_backward(fp(y), fp(dy), fp(dx), y.numel(), stream());
}

void CudaBackend::gelu_forward(const Tensor& x, Tensor& y) {
  const OpChecks check = checks("gelu_forward");
  check.activation_forward(x, y);
  const OpScope in_op = scope(check);
  launch_gelu_forward(fp(x), fp(y), x.numel(), stream());
}

void CudaBackend::gelu_backward(const Tensor& x, const Tensor& dy, Tensor& dx) {
  const OpChecks check = checks("gelu_backward");
  check.activation_backward(x, "x", dy, dx);
  const OpScope in_op = scope(check);
  launch_gelu_backward(fp(x), fp(dy), fp(dx), x.numel(), stream());
}

// --- batch normalization ---

void CudaBackend::batch_norm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& y,
                                           Tensor& saved_mean, Tensor& saved_invstd, Tensor& running_mean,
                                           Tensor& running_var, float momentum, float eps) {
  const OpChecks check = checks("batch_norm_forward_train");
  const int64_t channels = check.batch_norm_forward_train(x, gamma, beta, y, saved_mean, saved_invstd, running_mean,
                                                          running_var, momentum, eps);
  const int64_t rows = x.numel() / channels;
  const OpScope in_op = scope(check);
  // The only scratch user in this call (partial sums, per-channel sums and coefficients).
  void* ws = batch_norm_scratch(check, rows, channels);
  launch_batch_norm_forward_train(activation_in(x), fp(gamma), fp(beta), fp(y), fp(saved_mean), fp(saved_invstd),
                                  fp(running_mean), fp(running_var), rows, channels, momentum, eps, ws, stream());
}

void CudaBackend::batch_norm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                          const Tensor& running_mean, const Tensor& running_var, float eps, Tensor& y) {
  const OpChecks check = checks("batch_norm_forward_eval");
  const int64_t channels = check.batch_norm_forward_eval(x, gamma, beta, running_mean, running_var, eps, y);
  const int64_t rows = x.numel() / channels;
  const OpScope in_op = scope(check);
  void* ws = batch_norm_scratch(check, rows, channels);
  launch_batch_norm_forward_eval(activation_in(x), fp(gamma), fp(beta), fp(running_mean), fp(running_var), rows,
                                 channels, eps, fp(y), ws, stream());
}

void CudaBackend::batch_norm_backward(const Tensor& x, const Tensor& dy, const Tensor& gamma, const Tensor& saved_mean,
                                      const Tensor& saved_invstd, Tensor& dx, Tensor& dgamma, Tensor& dbeta) {
  const OpChecks check = checks("batch_norm_backward");
  const int64_t channels = check.batch_norm_backward(x, dy, gamma, saved_mean, saved_invstd, dx, dgamma, dbeta);
  const int64_t rows = x.numel() / channels;
  const OpScope in_op = scope(check);
  void* ws = batch_norm_scratch(check, rows, channels);
  launch_batch_norm_backward(activation_in(x), fp(dy), fp(gamma), fp(saved_mean), fp(saved_invstd), rows, channels,
                             fp(dx), fp(dgamma), fp(dbeta), ws, stream());
}

// --- linear (1x1 convolutions, see linear_as_conv) ---

void CudaBackend::linear_forward(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  const OpChecks check = checks("linear_forward");
  const LinearGeometry g = check.linear_forward(x, w, bias, y);
  check_nonempty_weights(check, g, w);
  if (g.n == 0) return;
  const ConvShape s = linear_as_conv(check, g);
  const OpScope in_op = scope(check);
  run_forward(x, w, bias, y, s);
}

void CudaBackend::linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor& dw,
                                  Tensor* dbias) {
  const OpChecks check = checks("linear_backward");
  const LinearGeometry g = check.linear_backward(x, w, dy, dx, dw, dbias);
  check_nonempty_weights(check, g, w);
  if (g.n == 0) {  // an empty batch contributes nothing: the gradients are zero
    fill(dw, 0.0f);
    if (dbias) fill(*dbias, 0.0f);
    return;
  }
  const ConvShape s = linear_as_conv(check, g);
  const OpScope in_op = scope(check);
  // Both passes may use scratch(): they queue in order on one stream, so the second's workspace
  // is reused only after the first's last kernel. Both read dy: in bf16 it is converted once.
  const Tensor dy_operand = dx && precision() == Precision::bf16 ? as_bf16(dy) : dy;
  if (dx) run_backward_data(dy_operand, w, *dx, s);
  run_backward_filter(x, dy_operand, dw, dbias, s);
}

std::unique_ptr<Backend> make_cuda_backend(int device_index, Precision precision) {
  return std::make_unique<CudaBackend>(device_index, precision);
}

}  // namespace convnet::cuda
