// The one translation unit that calls cuDNN's deprecated legacy API (FIELD-GUIDE §4): its
// deprecation warnings, which cuDNN 9 emits when CUDNN_WARN_DEPRECATED is defined, are silenced
// here and nowhere else.
#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif

#include "cuda/cudnn_legacy.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "core/base/error.h"
#include "cuda/check.h"
#include "cuda/device.h"

namespace convnet::cuda {

namespace {

// A cuDNN descriptor created on construction and destroyed with the object.
template <class T, cudnnStatus_t (*Create)(T*), cudnnStatus_t (*Destroy)(T)>
class Descriptor {
 public:
  Descriptor() { CONVNET_CUDNN_CHECK(Create(&desc_)); }
  ~Descriptor() {
    if (desc_ != nullptr) Destroy(desc_);  // fails only while the library unloads
  }
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;
  T get() const { return desc_; }

 private:
  T desc_ = nullptr;
};

using TensorDesc = Descriptor<cudnnTensorDescriptor_t, cudnnCreateTensorDescriptor, cudnnDestroyTensorDescriptor>;
using FilterDesc = Descriptor<cudnnFilterDescriptor_t, cudnnCreateFilterDescriptor, cudnnDestroyFilterDescriptor>;
using ConvDesc =
    Descriptor<cudnnConvolutionDescriptor_t, cudnnCreateConvolutionDescriptor, cudnnDestroyConvolutionDescriptor>;
using PoolDesc = Descriptor<cudnnPoolingDescriptor_t, cudnnCreatePoolingDescriptor, cudnnDestroyPoolingDescriptor>;
using ActivationDesc =
    Descriptor<cudnnActivationDescriptor_t, cudnnCreateActivationDescriptor, cudnnDestroyActivationDescriptor>;

// Host scaling factors: out = 1 * op(...) + 0 * out, so outputs are never read.
constexpr float kOne = 1.0f;
constexpr float kZero = 0.0f;

// cuDNN's type for the convolution data types the backend uses: f32, or bf16 (train.precision bf16).
cudnnDataType_t cudnn_data_type(DType dtype) {
  CONVNET_CHECK(dtype == DType::f32 || dtype == DType::bf16, "cudnn: no convolutions on {} data", dtype_name(dtype));
  return dtype == DType::bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
}

void set_nhwc(const TensorDesc& desc, const Nhwc& v, cudnnDataType_t type = CUDNN_DATA_FLOAT) {
  CONVNET_CUDNN_CHECK(cudnnSetTensor4dDescriptor(desc.get(), CUDNN_TENSOR_NHWC, type, v.n, v.c, v.h, v.w));
}

// A [1, C, 1, 1] tensor: per-channel bias or batchnorm parameters.
void set_channels(const TensorDesc& desc, int channels) {
  set_nhwc(desc, Nhwc{1, 1, 1, channels});
}

template <class Perf>
AlgoCandidate to_candidate(ConvPass pass, const Perf& perf) {
  AlgoCandidate c;
  c.algo = static_cast<int>(perf.algo);
  c.status = perf.status;
  c.time_ms = perf.time;
  c.workspace_bytes = perf.memory;
  c.deterministic = perf.determinism == CUDNN_DETERMINISTIC && !documented_nondeterministic(pass, c.algo);
  c.math_type = perf.mathType;
  return c;
}

template <class Perf>
std::vector<AlgoCandidate> to_candidates(ConvPass pass, const std::vector<Perf>& perf, int returned) {
  std::vector<AlgoCandidate> out;
  const auto count = static_cast<size_t>(std::clamp(returned, 0, static_cast<int>(perf.size())));
  out.reserve(count);
  for (size_t i = 0; i < count; ++i) out.push_back(to_candidate(pass, perf[i]));
  return out;
}

std::string nhwc_str(const Nhwc& v) {
  return fmt::format("[{}, {}, {}, {}]", v.n, v.h, v.w, v.c);
}

}  // namespace

struct CudnnLegacy::Descriptors {
  TensorDesc x, y, bias, params;
  FilterDesc filter;
  ConvDesc conv;
  PoolDesc pool;
  ActivationDesc relu;
};

CudnnLegacy::CudnnLegacy(cudnnHandle_t handle, MathMode mode, AlgoPolicy policy, WorkspaceFn workspace)
    : handle_(handle),
      mode_(mode),
      policy_(policy),
      workspace_(std::move(workspace)),
      d_(std::make_unique<Descriptors>()) {
  CONVNET_CHECK(handle_ != nullptr, "cudnn: no cuDNN handle");
  CONVNET_CHECK(static_cast<bool>(workspace_), "cudnn: no workspace provider");
  // ReLU like the cpu backend (core/base/activation_math.h): NaN propagates, as in PyTorch.
  CONVNET_CUDNN_CHECK(cudnnSetActivationDescriptor(d_->relu.get(), CUDNN_ACTIVATION_RELU, CUDNN_PROPAGATE_NAN, 0.0));
}

CudnnLegacy::~CudnnLegacy() = default;

// --- convolution ---

cudnnMathType_t CudnnLegacy::conv_math_type(DType dtype) const {
  // BF16 data: tensor cores on the bf16 values (no conversion); f32 data: as the mode says.
  return dtype == DType::bf16 ? CUDNN_TENSOR_OP_MATH : cudnn_math_type(mode_);
}

void CudnnLegacy::set_conv(const ConvShape& s, DType dtype) {
  const Conv2dParams& p = s.params;
  const cudnnDataType_t type = cudnn_data_type(dtype);
  set_nhwc(d_->x, Nhwc{s.n, s.h, s.w, s.c}, type);
  set_nhwc(d_->y, Nhwc{s.n, s.p, s.q, s.k}, type);
  // NHWC filter format = our KRSC layout; a grouped filter holds C / groups channels, and cuDNN's
  // group count splits C and K as Conv2dParams::groups does (group g: channels and filters g-th).
  CONVNET_CUDNN_CHECK(
      cudnnSetFilter4dDescriptor(d_->filter.get(), type, CUDNN_TENSOR_NHWC, s.k, s.c / p.groups, s.r, s.s));
  // The compute type is FP32 for both data types (bf16: PSEUDO_BFLOAT16_CONFIG, FP32 accumulation).
  CONVNET_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(d_->conv.get(), p.pad_h, p.pad_w, p.stride_h, p.stride_w,
                                                      p.dilation_h, p.dilation_w, CUDNN_CROSS_CORRELATION,
                                                      CUDNN_DATA_FLOAT));
  CONVNET_CUDNN_CHECK(cudnnSetConvolutionGroupCount(d_->conv.get(), p.groups));
  CONVNET_CUDNN_CHECK(cudnnSetConvolutionMathType(d_->conv.get(), conv_math_type(dtype)));
  int n = 0, k = 0, p_out = 0, q_out = 0;
  CONVNET_CUDNN_CHECK(
      cudnnGetConvolution2dForwardOutputDim(d_->conv.get(), d_->x.get(), d_->filter.get(), &n, &k, &p_out, &q_out));
  CONVNET_CHECK(n == s.n && k == s.k && p_out == s.p && q_out == s.q,
                "cudnn: cuDNN computes convolution output [{}, {}, {}, {}], expected [{}, {}, {}, {}]", n, p_out, q_out,
                k, s.n, s.p, s.q, s.k);
}

std::vector<AlgoCandidate> CudnnLegacy::ranked_candidates(ConvPass pass, const void* input, const void* filter,
                                                          void* output) {
  const cudnnTensorDescriptor_t x = d_->x.get(), y = d_->y.get();
  const cudnnFilterDescriptor_t w = d_->filter.get();
  const cudnnConvolutionDescriptor_t conv = d_->conv.get();
  int count = 0, returned = 0;

  // Heuristics first: they rank every algorithm and report each one's workspace, which also
  // sizes the buffer the timed search may use.
  std::vector<AlgoCandidate> heuristic;
  switch (pass) {
    case ConvPass::forward: {
      CONVNET_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(handle_, &count));
      std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(static_cast<size_t>(std::max(count, 1)));
      CONVNET_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(handle_, x, w, conv, y, static_cast<int>(perf.size()),
                                                                 &returned, perf.data()));
      heuristic = to_candidates(pass, perf, returned);
      break;
    }
    case ConvPass::backward_data: {
      CONVNET_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(handle_, &count));
      std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(static_cast<size_t>(std::max(count, 1)));
      CONVNET_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(
          handle_, w, y, conv, x, static_cast<int>(perf.size()), &returned, perf.data()));
      heuristic = to_candidates(pass, perf, returned);
      break;
    }
    case ConvPass::backward_filter: {
      CONVNET_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(handle_, &count));
      std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(static_cast<size_t>(std::max(count, 1)));
      CONVNET_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
          handle_, x, y, conv, w, static_cast<int>(perf.size()), &returned, perf.data()));
      heuristic = to_candidates(pass, perf, returned);
      break;
    }
  }
  if (!policy_.find) return heuristic;

  // Timed search: cuDNN runs every algorithm whose workspace fits (writing the pass's output).
  size_t bytes = 0;
  for (const AlgoCandidate& c : heuristic)
    if (c.status == CUDNN_STATUS_SUCCESS && c.workspace_bytes <= policy_.workspace_limit)
      bytes = std::max(bytes, c.workspace_bytes);
  void* ws = bytes > 0 ? workspace_(bytes) : nullptr;
  switch (pass) {
    case ConvPass::forward: {
      std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(static_cast<size_t>(std::max(count, 1)));
      CONVNET_CUDNN_LAUNCH(cudnnFindConvolutionForwardAlgorithmEx(handle_, x, input, w, filter, conv, y, output,
                                                                  static_cast<int>(perf.size()), &returned, perf.data(),
                                                                  ws, bytes));
      return to_candidates(pass, perf, returned);
    }
    case ConvPass::backward_data: {
      std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(static_cast<size_t>(std::max(count, 1)));
      CONVNET_CUDNN_LAUNCH(cudnnFindConvolutionBackwardDataAlgorithmEx(handle_, w, filter, y, input, conv, x, output,
                                                                       static_cast<int>(perf.size()), &returned,
                                                                       perf.data(), ws, bytes));
      return to_candidates(pass, perf, returned);
    }
    case ConvPass::backward_filter: {
      std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(static_cast<size_t>(std::max(count, 1)));
      CONVNET_CUDNN_LAUNCH(cudnnFindConvolutionBackwardFilterAlgorithmEx(handle_, x, input, y, filter, conv, w, output,
                                                                         static_cast<int>(perf.size()), &returned,
                                                                         perf.data(), ws, bytes));
      return to_candidates(pass, perf, returned);
    }
  }
  return heuristic;
}

size_t CudnnLegacy::workspace_size(ConvPass pass, int algo) {
  size_t bytes = 0;
  switch (pass) {
    case ConvPass::forward:
      CONVNET_CUDNN_CHECK(
          cudnnGetConvolutionForwardWorkspaceSize(handle_, d_->x.get(), d_->filter.get(), d_->conv.get(), d_->y.get(),
                                                  static_cast<cudnnConvolutionFwdAlgo_t>(algo), &bytes));
      break;
    case ConvPass::backward_data:
      CONVNET_CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(
          handle_, d_->filter.get(), d_->y.get(), d_->conv.get(), d_->x.get(),
          static_cast<cudnnConvolutionBwdDataAlgo_t>(algo), &bytes));
      break;
    case ConvPass::backward_filter:
      CONVNET_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(
          handle_, d_->x.get(), d_->y.get(), d_->conv.get(), d_->filter.get(),
          static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo), &bytes));
      break;
  }
  return bytes;
}

AlgoChoice CudnnLegacy::conv_algorithm(ConvPass pass, const ConvShape& shape, const void* input, const void* filter,
                                       void* output, DType dtype) {
  const ConvAlgoKey key = ConvAlgoKey::make(pass, shape, mode_, dtype);
  if (const std::optional<AlgoChoice> cached = cache_.find(key)) return *cached;

  set_conv(shape, dtype);
  const std::vector<AlgoCandidate> ranked = ranked_candidates(pass, input, filter, output);
  std::optional<AlgoChoice> choice = choose_algorithm(ranked, policy_, mode_, dtype);
  if (!choice) {
    const std::string problem = to_string(key), rejections = describe_rejections(pass, ranked, policy_, mode_, dtype);
    throw NoCudnnAlgorithm(
        problem, rejections, policy_.deterministic,
        fmt::format("the cudnn backend found no usable convolution algorithm for {} ({}, {}): {}{}", problem,
                    policy_.find ? "timed" : "heuristics",
                    policy_.deterministic ? "deterministic only" : "any determinism", rejections,
                    policy_.deterministic ? "; CONVNET_DETERMINISTIC=0 allows the non-deterministic ones" : ""));
  }
  // The workspace of the algorithm under the math type it runs with.
  CONVNET_CUDNN_CHECK(cudnnSetConvolutionMathType(d_->conv.get(), choice->math_type));
  choice->workspace_bytes = workspace_size(pass, choice->algo);
  CONVNET_CHECK(choice->workspace_bytes <= policy_.workspace_limit, "cudnn: {} needs a {} workspace, over the {} limit",
                conv_algo_name(pass, choice->algo), format_bytes(choice->workspace_bytes),
                format_bytes(policy_.workspace_limit));
  cache_.insert(key, *choice);
  spdlog::debug("cudnn: {} -> {} ({} math, {} workspace{})", to_string(key), conv_algo_name(pass, choice->algo),
                cudnn_math_type_name(choice->math_type), format_bytes(choice->workspace_bytes),
                choice->time_ms >= 0.0f ? fmt::format(", {:.3f} ms", choice->time_ms) : std::string());
  return *choice;
}

void CudnnLegacy::conv_forward(const ConvShape& shape, const void* x, const void* w, const float* bias, void* y,
                               DType dtype) {
  CONVNET_CHECK(bias == nullptr || dtype == DType::f32, "cudnn: the bias of a {} convolution is added by the caller",
                dtype_name(dtype));
  const AlgoChoice choice = conv_algorithm(ConvPass::forward, shape, x, w, y, dtype);
  set_conv(shape, dtype);
  CONVNET_CUDNN_CHECK(cudnnSetConvolutionMathType(d_->conv.get(), choice.math_type));
  void* ws = choice.workspace_bytes > 0 ? workspace_(choice.workspace_bytes) : nullptr;
  CONVNET_CUDNN_LAUNCH(cudnnConvolutionForward(handle_, &kOne, d_->x.get(), x, d_->filter.get(), w, d_->conv.get(),
                                               static_cast<cudnnConvolutionFwdAlgo_t>(choice.algo), ws,
                                               choice.workspace_bytes, &kZero, d_->y.get(), y));
  if (bias != nullptr) {
    set_channels(d_->bias, shape.k);
    CONVNET_CUDNN_LAUNCH(cudnnAddTensor(handle_, &kOne, d_->bias.get(), bias, &kOne, d_->y.get(), y));
  }
}

void CudnnLegacy::conv_backward_data(const ConvShape& shape, const void* dy, const void* w, void* dx, DType dtype) {
  const AlgoChoice choice = conv_algorithm(ConvPass::backward_data, shape, dy, w, dx, dtype);
  set_conv(shape, dtype);
  CONVNET_CUDNN_CHECK(cudnnSetConvolutionMathType(d_->conv.get(), choice.math_type));
  void* ws = choice.workspace_bytes > 0 ? workspace_(choice.workspace_bytes) : nullptr;
  CONVNET_CUDNN_LAUNCH(cudnnConvolutionBackwardData(
      handle_, &kOne, d_->filter.get(), w, d_->y.get(), dy, d_->conv.get(),
      static_cast<cudnnConvolutionBwdDataAlgo_t>(choice.algo), ws, choice.workspace_bytes, &kZero, d_->x.get(), dx));
}

void CudnnLegacy::conv_backward_filter(const ConvShape& shape, const void* x, const void* dy, void* dw, float* dbias,
                                       DType dtype) {
  CONVNET_CHECK(dbias == nullptr || dtype == DType::f32,
                "cudnn: the bias gradient of a {} convolution is computed by the caller", dtype_name(dtype));
  const AlgoChoice choice = conv_algorithm(ConvPass::backward_filter, shape, x, dy, dw, dtype);
  set_conv(shape, dtype);
  CONVNET_CUDNN_CHECK(cudnnSetConvolutionMathType(d_->conv.get(), choice.math_type));
  void* ws = choice.workspace_bytes > 0 ? workspace_(choice.workspace_bytes) : nullptr;
  CONVNET_CUDNN_LAUNCH(cudnnConvolutionBackwardFilter(handle_, &kOne, d_->x.get(), x, d_->y.get(), dy, d_->conv.get(),
                                                      static_cast<cudnnConvolutionBwdFilterAlgo_t>(choice.algo), ws,
                                                      choice.workspace_bytes, &kZero, d_->filter.get(), dw));
  if (dbias != nullptr) {
    set_channels(d_->bias, shape.k);
    CONVNET_CUDNN_LAUNCH(cudnnConvolutionBackwardBias(handle_, &kOne, d_->y.get(), dy, &kZero, d_->bias.get(), dbias));
  }
}

// --- bias ---

void CudnnLegacy::add_bias(const Nhwc& view, const float* bias, float* y) {
  set_nhwc(d_->y, view);
  set_channels(d_->bias, view.c);
  CONVNET_CUDNN_LAUNCH(cudnnAddTensor(handle_, &kOne, d_->bias.get(), bias, &kOne, d_->y.get(), y));
}

void CudnnLegacy::bias_gradient(const Nhwc& view, const float* dy, float* dbias) {
  set_nhwc(d_->y, view);
  set_channels(d_->bias, view.c);
  CONVNET_CUDNN_LAUNCH(cudnnConvolutionBackwardBias(handle_, &kOne, d_->y.get(), dy, &kZero, d_->bias.get(), dbias));
}

// --- pooling ---

namespace {
void set_pooling(const PoolDesc& desc, CudnnPoolMode mode, const Pool2dParams& p) {
  const cudnnPoolingMode_t cudnn_mode =
      mode == CudnnPoolMode::max ? CUDNN_POOLING_MAX : CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING;
  // NaN propagates through max pooling, as on the cpu backend (a NaN wins over numbers).
  CONVNET_CUDNN_CHECK(cudnnSetPooling2dDescriptor(desc.get(), cudnn_mode, CUDNN_PROPAGATE_NAN, p.kernel_h, p.kernel_w,
                                                  p.pad_h, p.pad_w, p.stride_h, p.stride_w));
}
}  // namespace

void CudnnLegacy::pool_forward(CudnnPoolMode mode, const Nhwc& x, const Nhwc& y, const Pool2dParams& params,
                               const float* xp, float* yp) {
  set_pooling(d_->pool, mode, params);
  set_nhwc(d_->x, x);
  set_nhwc(d_->y, y);
  int n = 0, c = 0, p = 0, q = 0;
  CONVNET_CUDNN_CHECK(cudnnGetPooling2dForwardOutputDim(d_->pool.get(), d_->x.get(), &n, &c, &p, &q));
  CONVNET_CHECK(n == y.n && c == y.c && p == y.h && q == y.w, "cudnn: cuDNN pools {} to [{}, {}, {}, {}], expected {}",
                nhwc_str(x), n, p, q, c, nhwc_str(y));
  CONVNET_CUDNN_LAUNCH(cudnnPoolingForward(handle_, d_->pool.get(), &kOne, d_->x.get(), xp, &kZero, d_->y.get(), yp));
}

void CudnnLegacy::avg_pool_backward(const Nhwc& x, const Nhwc& y, const Pool2dParams& params, const float* dy,
                                    float* dx) {
  set_pooling(d_->pool, CudnnPoolMode::average, params);
  set_nhwc(d_->x, x);
  set_nhwc(d_->y, y);
  // The API takes the forward's y and x too, which average pooling's gradient does not depend
  // on: dy stands in for y and dx for x (same shapes), so no copy of the forward tensors is kept.
  CONVNET_CUDNN_LAUNCH(cudnnPoolingBackward(handle_, d_->pool.get(), &kOne, d_->y.get(), dy, d_->y.get(), dy,
                                            d_->x.get(), dx, &kZero, d_->x.get(), dx));
}

// --- ReLU ---

void CudnnLegacy::relu_forward(const Nhwc& view, const float* x, float* y) {
  set_nhwc(d_->x, view);
  CONVNET_CUDNN_LAUNCH(cudnnActivationForward(handle_, d_->relu.get(), &kOne, d_->x.get(), x, &kZero, d_->x.get(), y));
}

void CudnnLegacy::relu_backward(const Nhwc& view, const float* y, const float* dy, float* dx) {
  set_nhwc(d_->x, view);
  // The forward input is not kept; ReLU's gradient mask x > 0 equals y > 0, so y stands in for x.
  // cuDNN allows dx == dy with identical descriptors.
  CONVNET_CUDNN_LAUNCH(cudnnActivationBackward(handle_, d_->relu.get(), &kOne, d_->x.get(), y, d_->x.get(), dy,
                                               d_->x.get(), y, &kZero, d_->x.get(), dx));
}

// --- batch normalization ---

namespace {
constexpr cudnnBatchNormMode_t kBatchNormMode = CUDNN_BATCHNORM_SPATIAL;  // per channel over N, H, W
}

void CudnnLegacy::batch_norm_forward_train(const Nhwc& view, const float* x, const float* gamma, const float* beta,
                                           float* y, float* saved_mean, float* saved_invstd, float* running_mean,
                                           float* running_var, double momentum, double eps) {
  set_nhwc(d_->x, view);
  CONVNET_CUDNN_CHECK(cudnnDeriveBNTensorDescriptor(d_->params.get(), d_->x.get(), kBatchNormMode));
  // cuDNN: running = factor * batch + (1 - factor) * running, the variance unbiased; it saves the
  // batch mean and 1 / sqrt(var + eps), the meaning of saved_mean / saved_invstd.
  CONVNET_CUDNN_LAUNCH(cudnnBatchNormalizationForwardTraining(
      handle_, kBatchNormMode, &kOne, &kZero, d_->x.get(), x, d_->x.get(), y, d_->params.get(), gamma, beta, momentum,
      running_mean, running_var, eps, saved_mean, saved_invstd));
}

void CudnnLegacy::batch_norm_forward_eval(const Nhwc& view, const float* x, const float* gamma, const float* beta,
                                          const float* running_mean, const float* running_var, double eps, float* y) {
  set_nhwc(d_->x, view);
  CONVNET_CUDNN_CHECK(cudnnDeriveBNTensorDescriptor(d_->params.get(), d_->x.get(), kBatchNormMode));
  CONVNET_CUDNN_LAUNCH(cudnnBatchNormalizationForwardInference(handle_, kBatchNormMode, &kOne, &kZero, d_->x.get(), x,
                                                               d_->x.get(), y, d_->params.get(), gamma, beta,
                                                               running_mean, running_var, eps));
}

void CudnnLegacy::batch_norm_backward(const Nhwc& view, const float* x, const float* dy, const float* gamma,
                                      const float* saved_mean, const float* saved_invstd, float* dx, float* dgamma,
                                      float* dbeta) {
  set_nhwc(d_->x, view);
  CONVNET_CUDNN_CHECK(cudnnDeriveBNTensorDescriptor(d_->params.get(), d_->x.get(), kBatchNormMode));
  // With the saved statistics given, cuDNN does not recompute 1 / sqrt(var + eps), so epsilon
  // (which Backend::batch_norm_backward does not receive) is unused: pass the minimum.
  CONVNET_CUDNN_LAUNCH(cudnnBatchNormalizationBackward(
      handle_, kBatchNormMode, &kOne, &kZero, &kOne, &kZero, d_->x.get(), x, d_->x.get(), dy, d_->x.get(), dx,
      d_->params.get(), gamma, dgamma, dbeta, CUDNN_BN_MIN_EPSILON, saved_mean, saved_invstd));
}

}  // namespace convnet::cuda
