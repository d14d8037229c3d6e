// cuDNN's deprecation warnings are switched on here (an error under -Werror): calls into the
// legacy API belong in cudnn_legacy.cpp only.
#define CUDNN_WARN_DEPRECATED 1

#include "cuda/cudnn_algorithms.h"

#include <fmt/format.h>

#include <array>
#include <cstdlib>

#include "core/base/env_flag.h"
#include "core/base/error.h"
#include "core/base/hash.h"
#include "cuda/device.h"

namespace convnet::cuda {

namespace {

// Indexed by the algorithm enum values of cudnn_ops.h.
constexpr std::array<const char*, 8> kForwardNames = {
    "IMPLICIT_GEMM", "IMPLICIT_PRECOMP_GEMM", "GEMM", "DIRECT", "FFT", "FFT_TILING", "WINOGRAD", "WINOGRAD_NONFUSED"};
constexpr std::array<const char*, 6> kBackwardDataNames = {"ALGO_0",     "ALGO_1",   "FFT",
                                                           "FFT_TILING", "WINOGRAD", "WINOGRAD_NONFUSED"};
constexpr std::array<const char*, 7> kBackwardFilterNames = {
    "ALGO_0", "ALGO_1", "FFT", "ALGO_3", "WINOGRAD", "WINOGRAD_NONFUSED", "FFT_TILING"};
static_assert(kForwardNames.size() == CUDNN_CONVOLUTION_FWD_ALGO_COUNT);
static_assert(kBackwardDataNames.size() == CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT);
static_assert(kBackwardFilterNames.size() == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT);

template <size_t N>
std::string name_in(const std::array<const char*, N>& names, int algo) {
  if (algo >= 0 && static_cast<size_t>(algo) < N) return names[static_cast<size_t>(algo)];
  return fmt::format("algorithm {}", algo);
}

}  // namespace

bool cudnn_supports_precision(MathMode mode, Precision p) {
  return mode == MathMode::tf32 ? p == Precision::tf32 : (p == Precision::fp32 || p == Precision::bf16);
}

std::string conv_algo_name(ConvPass pass, int algo) {
  switch (pass) {
    case ConvPass::forward:
      return name_in(kForwardNames, algo);
    case ConvPass::backward_data:
      return name_in(kBackwardDataNames, algo);
    case ConvPass::backward_filter:
      return name_in(kBackwardFilterNames, algo);
  }
  return fmt::format("algorithm {}", algo);
}

std::string cudnn_math_type_name(cudnnMathType_t math_type) {
  switch (math_type) {
    case CUDNN_DEFAULT_MATH:
      return "DEFAULT";
    case CUDNN_TENSOR_OP_MATH:
      return "TENSOR_OP";
    case CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION:
      return "TENSOR_OP_ALLOW_CONVERSION";
    case CUDNN_FMA_MATH:
      return "FMA";
  }
  return fmt::format("math type {}", static_cast<int>(math_type));
}

AlgoPolicy parse_algo_policy(const char* find, const char* deterministic) {
  AlgoPolicy policy;
  policy.find = parse_env_flag("CONVNET_CUDNN_FIND", find, false);
  policy.deterministic = parse_env_flag("CONVNET_DETERMINISTIC", deterministic, true);
  return policy;
}

AlgoPolicy algo_policy_from_env() {
  return parse_algo_policy(std::getenv("CONVNET_CUDNN_FIND"), std::getenv("CONVNET_DETERMINISTIC"));
}

bool documented_nondeterministic(ConvPass pass, int algo) {
  switch (pass) {
    case ConvPass::forward:
      return false;
    case ConvPass::backward_data:
      return algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_0;
    case ConvPass::backward_filter:
      return algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 || algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3;
  }
  return true;
}

bool math_type_allowed(cudnnMathType_t math_type, MathMode mode, DType dtype) {
  if (math_type == CUDNN_FMA_MATH) return true;
  // DEFAULT lets cuDNN use TF32 tensor cores for float data; ALLOW_CONVERSION may go down to fp16.
  // On bf16 data the tensor cores multiply the bf16 values themselves (FP32 accumulation).
  const bool tensor_cores = math_type == CUDNN_DEFAULT_MATH || math_type == CUDNN_TENSOR_OP_MATH;
  return tensor_cores && (mode == MathMode::tf32 || dtype == DType::bf16);
}

std::string rejection_reason(const AlgoCandidate& candidate, const AlgoPolicy& policy, MathMode mode, DType dtype) {
  if (candidate.status != CUDNN_STATUS_SUCCESS) return fmt::format("status {}", cudnnGetErrorString(candidate.status));
  if (policy.deterministic && !candidate.deterministic) return "non-deterministic";
  if (candidate.workspace_bytes > policy.workspace_limit)
    return fmt::format("workspace {} over the {} limit", format_bytes(candidate.workspace_bytes),
                       format_bytes(policy.workspace_limit));
  if (!math_type_allowed(candidate.math_type, mode, dtype))
    return dtype == DType::f32 ? fmt::format("math type {} not allowed in {} mode",
                                             cudnn_math_type_name(candidate.math_type), math_mode_name(mode))
                               : fmt::format("math type {} not allowed on {} data",
                                             cudnn_math_type_name(candidate.math_type), dtype_name(dtype));
  return {};
}

std::optional<AlgoChoice> choose_algorithm(std::span<const AlgoCandidate> ranked, const AlgoPolicy& policy,
                                           MathMode mode, DType dtype) {
  for (const AlgoCandidate& candidate : ranked) {
    if (!rejection_reason(candidate, policy, mode, dtype).empty()) continue;
    return AlgoChoice{candidate.algo, candidate.math_type, candidate.workspace_bytes, candidate.time_ms};
  }
  return std::nullopt;
}

std::string describe_rejections(ConvPass pass, std::span<const AlgoCandidate> ranked, const AlgoPolicy& policy,
                                MathMode mode, DType dtype) {
  if (ranked.empty()) return "no candidates";
  std::string text;
  for (const AlgoCandidate& candidate : ranked) {
    const std::string reason = rejection_reason(candidate, policy, mode, dtype);
    if (reason.empty()) continue;
    if (!text.empty()) text += "; ";
    text += fmt::format("{} ({}): {}", conv_algo_name(pass, candidate.algo), cudnn_math_type_name(candidate.math_type),
                        reason);
  }
  return text.empty() ? "every candidate is acceptable" : text;
}

ConvAlgoKey ConvAlgoKey::make(ConvPass pass, const ConvShape& shape, MathMode math, DType dtype) {
  ConvAlgoKey key;
  key.pass = pass;
  key.dtype = dtype;
  key.math = math;
  key.n = shape.n;
  key.h = shape.h;
  key.w = shape.w;
  key.c = shape.c;
  key.k = shape.k;
  key.r = shape.r;
  key.s = shape.s;
  key.stride_h = shape.params.stride_h;
  key.stride_w = shape.params.stride_w;
  key.pad_h = shape.params.pad_h;
  key.pad_w = shape.params.pad_w;
  key.dilation_h = shape.params.dilation_h;
  key.dilation_w = shape.params.dilation_w;
  key.groups = shape.params.groups;
  return key;
}

std::string to_string(const ConvAlgoKey& key) {
  const int group_c = key.groups > 0 ? key.c / key.groups : key.c;
  return fmt::format("{} x[{}, {}, {}, {}] w[{}, {}, {}, {}] stride {}x{} pad {}x{} dilation {}x{}{} {} {}",
                     conv_pass_name(key.pass), key.n, key.h, key.w, key.c, key.k, key.r, key.s, group_c, key.stride_h,
                     key.stride_w, key.pad_h, key.pad_w, key.dilation_h, key.dilation_w,
                     key.groups != 1 ? fmt::format(" groups {}", key.groups) : std::string(), dtype_name(key.dtype),
                     math_mode_name(key.math));
}

size_t ConvAlgoKeyHash::operator()(const ConvAlgoKey& key) const noexcept {
  // Field by field, so padding bytes never enter the hash.
  const std::array<int64_t, 17> fields = {static_cast<int64_t>(key.pass),
                                          static_cast<int64_t>(key.dtype),
                                          static_cast<int64_t>(key.math),
                                          key.n,
                                          key.h,
                                          key.w,
                                          key.c,
                                          key.k,
                                          key.r,
                                          key.s,
                                          key.stride_h,
                                          key.stride_w,
                                          key.pad_h,
                                          key.pad_w,
                                          key.dilation_h,
                                          key.dilation_w,
                                          key.groups};
  return static_cast<size_t>(fnv1a64(fields.data(), sizeof(fields)));
}

std::optional<AlgoChoice> ConvAlgoCache::find(const ConvAlgoKey& key) const {
  std::lock_guard lock(mutex_);
  const auto it = map_.find(key);
  if (it == map_.end()) return std::nullopt;
  return it->second;
}

void ConvAlgoCache::insert(const ConvAlgoKey& key, const AlgoChoice& choice) {
  std::lock_guard lock(mutex_);
  map_.insert_or_assign(key, choice);
}

size_t ConvAlgoCache::size() const {
  std::lock_guard lock(mutex_);
  return map_.size();
}

void ConvAlgoCache::clear() {
  std::lock_guard lock(mutex_);
  map_.clear();
}

}  // namespace convnet::cuda
