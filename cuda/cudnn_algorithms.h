// How the cudnn backend picks cuDNN convolution algorithms (FIELD-GUIDE §4), as pure logic that
// needs no GPU: the policy (heuristics or timing, determinism, workspace limit), the rule that
// picks one of cuDNN's ranked candidates, and a cache of the choice per problem. The cuDNN calls
// that produce the candidates live in cudnn_legacy.cpp.
//
// Policy:
// - By default the candidates are cuDNN's heuristics (cudnnGetConvolution*Algorithm_v7), ranked
//   by expected speed; with CONVNET_CUDNN_FIND=1 they are timed once per problem
//   (cudnnFind*AlgorithmEx) and ranked by measured time.
// - The first candidate in that order is taken that ran or would run (status success), is
//   deterministic (unless CONVNET_DETERMINISTIC=0), needs at most the workspace limit, and whose
//   math type the math mode allows: strict fp32 accepts only CUDNN_FMA_MATH; tf32 accepts FMA,
//   DEFAULT and TENSOR_OP (TF32 tensor cores) but never TENSOR_OP_MATH_ALLOW_CONVERSION, which may
//   round inputs to half precision. BF16 data (train.precision bf16, whatever the mode) accepts
//   FMA, DEFAULT and TENSOR_OP (BF16 tensor cores, FP32 accumulation), never ALLOW_CONVERSION.
// - The choice is cached per (pass, batch and all extents, stride, padding, dilation, groups,
//   dtype, math mode); layouts are always NHWC activations and KRSC filters.
#pragma once

#include <cudnn.h>

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>

#include "core/base/error.h"
#include "core/base/precision.h"
#include "core/base/tensor.h"
#include "cuda/conv_kernels.h"
#include "cuda/handles.h"

namespace convnet::cuda {

// ConvPass and conv_pass_name come from conv_kernels.h.

// The train.precision values a cudnn backend in `mode` computes: fp32 and bf16 for `cudnn`
// (MathMode::fp32; bf16 on bf16 copies of the operands), tf32 only for `cudnn_tf32`.
bool cudnn_supports_precision(MathMode mode, Precision p);

// cuDNN's name of algorithm `algo` for `pass` without the enum prefix ("IMPLICIT_PRECOMP_GEMM",
// "ALGO_1", "FFT_TILING"); "algorithm <n>" for values this build does not know.
std::string conv_algo_name(ConvPass pass, int algo);
// "FMA", "DEFAULT", "TENSOR_OP", "TENSOR_OP_ALLOW_CONVERSION"; "math type <n>" when unknown.
std::string cudnn_math_type_name(cudnnMathType_t math_type);

inline constexpr size_t kDefaultCudnnWorkspaceLimit = size_t{1} << 30;  // 1 GiB

struct AlgoPolicy {
  bool find = false;          // time the algorithms (cudnnFind*AlgorithmEx) instead of heuristics
  bool deterministic = true;  // reject algorithms cuDNN reports as non-deterministic
  size_t workspace_limit = kDefaultCudnnWorkspaceLimit;
  bool operator==(const AlgoPolicy&) const = default;
};

// The policy from the values of CONVNET_CUDNN_FIND and CONVNET_DETERMINISTIC (null = unset, giving
// find = false and deterministic = true). Each must be "0" or "1"; anything else throws
// ConfigError naming the variable, its value and the accepted values.
AlgoPolicy parse_algo_policy(const char* find, const char* deterministic);
// parse_algo_policy on this process's environment.
AlgoPolicy algo_policy_from_env();

// One algorithm as cuDNN ranked it (a cudnnConvolution*AlgoPerf_t without the pass-specific type).
struct AlgoCandidate {
  int algo = 0;  // cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t
  cudnnStatus_t status = CUDNN_STATUS_SUCCESS;
  float time_ms = -1.0f;  // measured time; negative for heuristics
  size_t workspace_bytes = 0;
  bool deterministic = true;
  cudnnMathType_t math_type = CUDNN_FMA_MATH;
};

// What runs: the algorithm, the math type to set back on the convolution descriptor, and its
// workspace size.
struct AlgoChoice {
  int algo = 0;
  cudnnMathType_t math_type = CUDNN_FMA_MATH;
  size_t workspace_bytes = 0;
  float time_ms = -1.0f;
  bool operator==(const AlgoChoice&) const = default;
};

// The algorithms cuDNN's documentation (Reproducibility) lists as using atomics: backward-data
// ALGO_0, backward-filter ALGO_0 and ALGO_3. Candidates for them count as non-deterministic
// whatever their perf result says.
bool documented_nondeterministic(ConvPass pass, int algo);
// Whether a candidate with `math_type` may run in `mode` on `dtype` data (see the policy above).
bool math_type_allowed(cudnnMathType_t math_type, MathMode mode, DType dtype = DType::f32);
// Why `candidate` is rejected under the policy and mode ("status CUDNN_STATUS_NOT_SUPPORTED",
// "non-deterministic", "workspace 2.00 GiB over the 1.00 GiB limit", "math type TENSOR_OP not
// allowed in fp32 mode"); empty when it is acceptable.
std::string rejection_reason(const AlgoCandidate& candidate, const AlgoPolicy& policy, MathMode mode,
                             DType dtype = DType::f32);
// The first acceptable candidate in `ranked` order (best first, as cuDNN returns them);
// std::nullopt when there is none.
std::optional<AlgoChoice> choose_algorithm(std::span<const AlgoCandidate> ranked, const AlgoPolicy& policy,
                                           MathMode mode, DType dtype = DType::f32);
// "IMPLICIT_GEMM: non-deterministic; FFT: status CUDNN_STATUS_NOT_SUPPORTED; ...", one entry per
// rejected candidate, for the error raised when nothing is acceptable ("no candidates" if empty).
std::string describe_rejections(ConvPass pass, std::span<const AlgoCandidate> ranked, const AlgoPolicy& policy,
                                MathMode mode, DType dtype = DType::f32);

// Thrown when the policy leaves no algorithm for a problem (e.g. some dilated or strided NHWC fp32
// problems have only non-deterministic backward algorithms): the message names the problem, how
// the candidates were ranked and why each was rejected; problem() and rejections() give the parts,
// so a test can report the problem and go on rather than stop its whole suite.
class NoCudnnAlgorithm : public Error {
 public:
  NoCudnnAlgorithm(std::string problem, std::string rejections, bool deterministic_only, std::string message)
      : Error(std::move(message)),
        problem_(std::move(problem)),
        rejections_(std::move(rejections)),
        deterministic_only_(deterministic_only) {}
  const std::string& problem() const { return problem_; }        // to_string(ConvAlgoKey)
  const std::string& rejections() const { return rejections_; }  // describe_rejections()
  bool deterministic_only() const { return deterministic_only_; }

 private:
  std::string problem_, rejections_;
  bool deterministic_only_;
};

// One convolution problem as far as the algorithm choice is concerned.
struct ConvAlgoKey {
  ConvPass pass = ConvPass::forward;
  DType dtype = DType::f32;
  MathMode math = MathMode::fp32;
  int n = 0, h = 0, w = 0, c = 0, k = 0, r = 0, s = 0;
  int stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dilation_h = 1, dilation_w = 1;
  int groups = 1;  // filters w[k, r, s, c / groups]

  static ConvAlgoKey make(ConvPass pass, const ConvShape& shape, MathMode math, DType dtype = DType::f32);
  bool operator==(const ConvAlgoKey&) const = default;
};
// "forward x[128, 32, 32, 64] w[128, 3, 3, 64] stride 1x1 pad 1x1 dilation 1x1 F32 fp32", with
// " groups 4" after the dilation for a grouped convolution.
std::string to_string(const ConvAlgoKey& key);

struct ConvAlgoKeyHash {
  size_t operator()(const ConvAlgoKey& key) const noexcept;  // FNV-1a over every field
};

// Chosen algorithms by problem. Thread-safe.
class ConvAlgoCache {
 public:
  std::optional<AlgoChoice> find(const ConvAlgoKey& key) const;
  void insert(const ConvAlgoKey& key, const AlgoChoice& choice);  // replaces an existing entry
  size_t size() const;
  void clear();

 private:
  mutable std::mutex mutex_;
  std::unordered_map<ConvAlgoKey, AlgoChoice, ConvAlgoKeyHash> map_;
};

}  // namespace convnet::cuda
