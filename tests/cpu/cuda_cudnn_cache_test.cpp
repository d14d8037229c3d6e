// The cudnn backend's convolution algorithm policy, selection rule and cache
// (cuda/cudnn_algorithms.h). Pure host logic: needs no GPU.
#include <gtest/gtest.h>

#ifdef CONVNET_WITH_CUDA

#include <cstddef>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "core/base/error.h"
#include "cuda/cudnn_algorithms.h"

namespace convnet::cuda {
namespace {

ConvShape vgg_shape() {
  ConvShape s;
  s.n = 128;
  s.h = 32;
  s.w = 32;
  s.c = 64;
  s.k = 128;
  s.r = 3;
  s.s = 3;
  s.p = 32;
  s.q = 32;
  s.params.pad_h = 1;
  s.params.pad_w = 1;
  return s;
}

AlgoCandidate candidate(int algo, cudnnMathType_t math = CUDNN_FMA_MATH, size_t workspace = 0,
                        bool deterministic = true, cudnnStatus_t status = CUDNN_STATUS_SUCCESS, float time = -1.0f) {
  AlgoCandidate c;
  c.algo = algo;
  c.status = status;
  c.time_ms = time;
  c.workspace_bytes = workspace;
  c.deterministic = deterministic;
  c.math_type = math;
  return c;
}

::testing::AssertionResult contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

TEST(CudnnAlgoKey, MakeCopiesEveryField) {
  ConvShape s = vgg_shape();
  s.params = Conv2dParams{2, 3, 4, 5, 6, 7, 8};
  const ConvAlgoKey key = ConvAlgoKey::make(ConvPass::backward_filter, s, MathMode::tf32);
  EXPECT_EQ(key.pass, ConvPass::backward_filter);
  EXPECT_EQ(key.math, MathMode::tf32);
  EXPECT_EQ(key.dtype, DType::f32);
  EXPECT_EQ(key.n, 128);
  EXPECT_EQ(key.h, 32);
  EXPECT_EQ(key.w, 32);
  EXPECT_EQ(key.c, 64);
  EXPECT_EQ(key.k, 128);
  EXPECT_EQ(key.r, 3);
  EXPECT_EQ(key.s, 3);
  EXPECT_EQ(key.stride_h, 2);
  EXPECT_EQ(key.stride_w, 3);
  EXPECT_EQ(key.pad_h, 4);
  EXPECT_EQ(key.pad_w, 5);
  EXPECT_EQ(key.dilation_h, 6);
  EXPECT_EQ(key.dilation_w, 7);
  EXPECT_EQ(key.groups, 8);
}

// Every field on its own must change both equality and (here, for these keys) the hash.
TEST(CudnnAlgoKey, EachFieldDistinguishesKeys) {
  const ConvAlgoKey base = ConvAlgoKey::make(ConvPass::forward, vgg_shape(), MathMode::fp32);
  std::vector<ConvAlgoKey> variants;
  auto vary = [&](auto&& change) {
    ConvAlgoKey k = base;
    change(k);
    variants.push_back(k);
  };
  vary([](ConvAlgoKey& k) { k.pass = ConvPass::backward_data; });
  vary([](ConvAlgoKey& k) { k.pass = ConvPass::backward_filter; });
  vary([](ConvAlgoKey& k) { k.dtype = DType::bf16; });
  vary([](ConvAlgoKey& k) { k.math = MathMode::tf32; });
  vary([](ConvAlgoKey& k) { k.n = 64; });
  vary([](ConvAlgoKey& k) { k.h = 16; });
  vary([](ConvAlgoKey& k) { k.w = 16; });
  vary([](ConvAlgoKey& k) { k.c = 3; });
  vary([](ConvAlgoKey& k) { k.k = 256; });
  vary([](ConvAlgoKey& k) { k.r = 1; });
  vary([](ConvAlgoKey& k) { k.s = 1; });
  vary([](ConvAlgoKey& k) { k.stride_h = 2; });
  vary([](ConvAlgoKey& k) { k.stride_w = 2; });
  vary([](ConvAlgoKey& k) { k.pad_h = 0; });
  vary([](ConvAlgoKey& k) { k.pad_w = 0; });
  vary([](ConvAlgoKey& k) { k.dilation_h = 2; });
  vary([](ConvAlgoKey& k) { k.dilation_w = 2; });
  vary([](ConvAlgoKey& k) { k.groups = 4; });
  // Swapping two extents keeps the multiset of values: the hash must still see the order.
  vary([](ConvAlgoKey& k) { std::swap(k.c, k.k); });

  const ConvAlgoKeyHash hash;
  std::unordered_set<size_t> hashes{hash(base)};
  for (size_t i = 0; i < variants.size(); ++i) {
    EXPECT_FALSE(variants[i] == base) << "variant " << i;
    EXPECT_TRUE(hashes.insert(hash(variants[i])).second) << "variant " << i << " collides";
  }
}

TEST(CudnnAlgoKey, EqualKeysHashEqual) {
  const ConvAlgoKey a = ConvAlgoKey::make(ConvPass::backward_data, vgg_shape(), MathMode::tf32);
  const ConvAlgoKey b = ConvAlgoKey::make(ConvPass::backward_data, vgg_shape(), MathMode::tf32);
  EXPECT_TRUE(a == b);
  EXPECT_EQ(ConvAlgoKeyHash{}(a), ConvAlgoKeyHash{}(b));
}

TEST(CudnnAlgoKey, ToStringNamesTheProblem) {
  ConvShape s = vgg_shape();
  s.params.stride_h = 2;
  const std::string text = to_string(ConvAlgoKey::make(ConvPass::backward_filter, s, MathMode::tf32));
  EXPECT_TRUE(contains(text, "backward-filter"));
  EXPECT_TRUE(contains(text, "x[128, 32, 32, 64]"));
  EXPECT_TRUE(contains(text, "w[128, 3, 3, 64]"));
  EXPECT_TRUE(contains(text, "stride 2x1"));
  EXPECT_TRUE(contains(text, "tf32"));
  EXPECT_FALSE(contains(text, "groups"));
  s.params.groups = 16;  // the filters hold C / groups channels
  const std::string grouped = to_string(ConvAlgoKey::make(ConvPass::forward, s, MathMode::fp32));
  EXPECT_TRUE(contains(grouped, "w[128, 3, 3, 4]"));
  EXPECT_TRUE(contains(grouped, "dilation 1x1 groups 16"));
}

TEST(CudnnAlgoCache, FindInsertReplace) {
  ConvAlgoCache cache;
  const ConvAlgoKey fwd = ConvAlgoKey::make(ConvPass::forward, vgg_shape(), MathMode::fp32);
  const ConvAlgoKey bwd = ConvAlgoKey::make(ConvPass::backward_data, vgg_shape(), MathMode::fp32);
  const ConvAlgoKey tf32 = ConvAlgoKey::make(ConvPass::forward, vgg_shape(), MathMode::tf32);
  EXPECT_FALSE(cache.find(fwd).has_value());
  EXPECT_EQ(cache.size(), 0u);

  const AlgoChoice first{1, CUDNN_FMA_MATH, 4096, 0.5f};
  cache.insert(fwd, first);
  ASSERT_TRUE(cache.find(fwd).has_value());
  EXPECT_EQ(*cache.find(fwd), first);
  EXPECT_FALSE(cache.find(bwd).has_value()) << "another pass of the same shape";
  EXPECT_FALSE(cache.find(tf32).has_value()) << "another math mode of the same shape";

  const AlgoChoice second{6, CUDNN_DEFAULT_MATH, 1 << 20, -1.0f};
  cache.insert(tf32, second);
  cache.insert(fwd, second);  // replaces
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(*cache.find(fwd), second);
  EXPECT_EQ(*cache.find(tf32), second);

  cache.clear();
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_FALSE(cache.find(fwd).has_value());
}

TEST(CudnnAlgoChoice, TakesTheFirstAcceptableInCudnnOrder) {
  const AlgoPolicy policy;
  const std::vector<AlgoCandidate> ranked = {
      candidate(5, CUDNN_FMA_MATH, 0, true, CUDNN_STATUS_NOT_SUPPORTED),
      candidate(2, CUDNN_FMA_MATH, 12345, true, CUDNN_STATUS_SUCCESS, 0.25f),
      candidate(1, CUDNN_FMA_MATH, 0, true, CUDNN_STATUS_SUCCESS, 0.125f),
  };
  const std::optional<AlgoChoice> choice = choose_algorithm(ranked, policy, MathMode::fp32);
  ASSERT_TRUE(choice.has_value());
  EXPECT_EQ(choice->algo, 2) << "cuDNN's order wins, not the smallest time or workspace";
  EXPECT_EQ(choice->workspace_bytes, 12345u);
  EXPECT_EQ(choice->math_type, CUDNN_FMA_MATH);
  EXPECT_FLOAT_EQ(choice->time_ms, 0.25f);
}

TEST(CudnnAlgoChoice, DeterminismPolicy) {
  const std::vector<AlgoCandidate> ranked = {
      candidate(0, CUDNN_FMA_MATH, 0, false),
      candidate(1, CUDNN_FMA_MATH, 0, true),
  };
  AlgoPolicy deterministic;
  ASSERT_TRUE(deterministic.deterministic);
  EXPECT_EQ(choose_algorithm(ranked, deterministic, MathMode::fp32)->algo, 1);
  AlgoPolicy any;
  any.deterministic = false;
  EXPECT_EQ(choose_algorithm(ranked, any, MathMode::fp32)->algo, 0);
}

TEST(CudnnAlgoChoice, DocumentedNondeterministicAlgorithms) {
  EXPECT_TRUE(documented_nondeterministic(ConvPass::backward_data, CUDNN_CONVOLUTION_BWD_DATA_ALGO_0));
  EXPECT_FALSE(documented_nondeterministic(ConvPass::backward_data, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1));
  EXPECT_TRUE(documented_nondeterministic(ConvPass::backward_filter, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0));
  EXPECT_TRUE(documented_nondeterministic(ConvPass::backward_filter, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3));
  EXPECT_FALSE(documented_nondeterministic(ConvPass::backward_filter, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1));
  for (int algo = 0; algo < CUDNN_CONVOLUTION_FWD_ALGO_COUNT; ++algo)
    EXPECT_FALSE(documented_nondeterministic(ConvPass::forward, algo)) << algo;
}

TEST(CudnnAlgoChoice, MathTypeFollowsTheMode) {
  EXPECT_TRUE(math_type_allowed(CUDNN_FMA_MATH, MathMode::fp32));
  EXPECT_FALSE(math_type_allowed(CUDNN_DEFAULT_MATH, MathMode::fp32));
  EXPECT_FALSE(math_type_allowed(CUDNN_TENSOR_OP_MATH, MathMode::fp32));
  EXPECT_FALSE(math_type_allowed(CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION, MathMode::fp32));
  EXPECT_TRUE(math_type_allowed(CUDNN_FMA_MATH, MathMode::tf32));
  EXPECT_TRUE(math_type_allowed(CUDNN_DEFAULT_MATH, MathMode::tf32));
  EXPECT_TRUE(math_type_allowed(CUDNN_TENSOR_OP_MATH, MathMode::tf32));
  EXPECT_FALSE(math_type_allowed(CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION, MathMode::tf32));

  const std::vector<AlgoCandidate> ranked = {
      candidate(6, CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION),
      candidate(1, CUDNN_TENSOR_OP_MATH),
      candidate(0, CUDNN_FMA_MATH),
  };
  const AlgoPolicy policy;
  EXPECT_EQ(choose_algorithm(ranked, policy, MathMode::fp32)->algo, 0);
  const std::optional<AlgoChoice> tf32 = choose_algorithm(ranked, policy, MathMode::tf32);
  ASSERT_TRUE(tf32.has_value());
  EXPECT_EQ(tf32->algo, 1);
  EXPECT_EQ(tf32->math_type, CUDNN_TENSOR_OP_MATH) << "the candidate's math type goes back on the descriptor";
}

// BF16 data (the cudnn backend in train.precision bf16): tensor cores whatever the mode, never
// ALLOW_CONVERSION; the rejection names the data type.
TEST(CudnnAlgoChoice, Bf16DataAllowsTensorCoresInEitherMode) {
  for (const MathMode mode : {MathMode::fp32, MathMode::tf32}) {
    EXPECT_TRUE(math_type_allowed(CUDNN_FMA_MATH, mode, DType::bf16));
    EXPECT_TRUE(math_type_allowed(CUDNN_DEFAULT_MATH, mode, DType::bf16));
    EXPECT_TRUE(math_type_allowed(CUDNN_TENSOR_OP_MATH, mode, DType::bf16));
    EXPECT_FALSE(math_type_allowed(CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION, mode, DType::bf16));
  }
  const std::vector<AlgoCandidate> ranked = {
      candidate(6, CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION),
      candidate(1, CUDNN_TENSOR_OP_MATH),
      candidate(0, CUDNN_FMA_MATH),
  };
  const AlgoPolicy policy;
  const std::optional<AlgoChoice> bf16 = choose_algorithm(ranked, policy, MathMode::fp32, DType::bf16);
  ASSERT_TRUE(bf16.has_value());
  EXPECT_EQ(bf16->algo, 1);
  EXPECT_EQ(bf16->math_type, CUDNN_TENSOR_OP_MATH);
  EXPECT_EQ(choose_algorithm(ranked, policy, MathMode::fp32)->algo, 0) << "f32 data stays strict";
  const std::string why = describe_rejections(ConvPass::forward, ranked, policy, MathMode::fp32, DType::bf16);
  EXPECT_TRUE(contains(why, "math type TENSOR_OP_ALLOW_CONVERSION not allowed on BF16 data")) << why;
  // The cache keeps bf16 and f32 choices for one problem apart.
  const ConvAlgoKey f32 = ConvAlgoKey::make(ConvPass::forward, vgg_shape(), MathMode::fp32);
  const ConvAlgoKey b16 = ConvAlgoKey::make(ConvPass::forward, vgg_shape(), MathMode::fp32, DType::bf16);
  EXPECT_NE(f32, b16);
  ConvAlgoCache cache;
  cache.insert(f32, AlgoChoice{0, CUDNN_FMA_MATH, 0, -1.0f});
  cache.insert(b16, AlgoChoice{1, CUDNN_TENSOR_OP_MATH, 0, -1.0f});
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(cache.find(b16)->algo, 1);
  EXPECT_TRUE(contains(to_string(b16), "BF16 fp32")) << to_string(b16);
}

// train.precision bf16 runs on `cudnn` (issue 11); `cudnn_tf32` stays tf32 only.
TEST(CudnnPrecision, CudnnComputesFp32AndBf16AndCudnnTf32OnlyTf32) {
  EXPECT_TRUE(cudnn_supports_precision(MathMode::fp32, Precision::fp32));
  EXPECT_TRUE(cudnn_supports_precision(MathMode::fp32, Precision::bf16));
  EXPECT_FALSE(cudnn_supports_precision(MathMode::fp32, Precision::tf32));
  EXPECT_TRUE(cudnn_supports_precision(MathMode::tf32, Precision::tf32));
  EXPECT_FALSE(cudnn_supports_precision(MathMode::tf32, Precision::fp32));
  EXPECT_FALSE(cudnn_supports_precision(MathMode::tf32, Precision::bf16));
}

TEST(CudnnAlgoChoice, WorkspaceLimit) {
  AlgoPolicy policy;
  policy.workspace_limit = 1000;
  const std::vector<AlgoCandidate> ranked = {candidate(4, CUDNN_FMA_MATH, 1001), candidate(0, CUDNN_FMA_MATH, 1000)};
  EXPECT_EQ(choose_algorithm(ranked, policy, MathMode::fp32)->algo, 0);
  EXPECT_EQ(AlgoPolicy{}.workspace_limit, kDefaultCudnnWorkspaceLimit);
}

TEST(CudnnAlgoChoice, NothingAcceptableExplainsWhy) {
  AlgoPolicy policy;
  policy.workspace_limit = 100;
  const std::vector<AlgoCandidate> ranked = {
      candidate(4, CUDNN_FMA_MATH, 0, true, CUDNN_STATUS_NOT_SUPPORTED),
      candidate(0, CUDNN_FMA_MATH, 0, false),
      candidate(2, CUDNN_FMA_MATH, 200),
      candidate(1, CUDNN_TENSOR_OP_MATH),
  };
  EXPECT_FALSE(choose_algorithm(ranked, policy, MathMode::fp32).has_value());
  EXPECT_FALSE(choose_algorithm({}, policy, MathMode::fp32).has_value());

  const std::string why = describe_rejections(ConvPass::backward_filter, ranked, policy, MathMode::fp32);
  EXPECT_TRUE(contains(why, "WINOGRAD (FMA): status CUDNN_STATUS_NOT_SUPPORTED"));
  EXPECT_TRUE(contains(why, "ALGO_0 (FMA): non-deterministic"));
  EXPECT_TRUE(contains(why, "FFT (FMA): workspace 200 B over the 100 B limit"));
  EXPECT_TRUE(contains(why, "ALGO_1 (TENSOR_OP): math type TENSOR_OP not allowed in fp32 mode"));
  EXPECT_EQ(describe_rejections(ConvPass::forward, {}, policy, MathMode::fp32), "no candidates");
  EXPECT_TRUE(rejection_reason(candidate(1), policy, MathMode::fp32).empty());
}

TEST(CudnnAlgoNames, AlgorithmsAndMathTypes) {
  EXPECT_EQ(conv_algo_name(ConvPass::forward, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM),
            "IMPLICIT_PRECOMP_GEMM");
  EXPECT_EQ(conv_algo_name(ConvPass::forward, CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED), "WINOGRAD_NONFUSED");
  EXPECT_EQ(conv_algo_name(ConvPass::backward_data, CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING), "FFT_TILING");
  EXPECT_EQ(conv_algo_name(ConvPass::backward_filter, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3), "ALGO_3");
  EXPECT_EQ(conv_algo_name(ConvPass::backward_filter, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING), "FFT_TILING");
  EXPECT_EQ(conv_algo_name(ConvPass::forward, 99), "algorithm 99");
  EXPECT_EQ(conv_algo_name(ConvPass::backward_data, -1), "algorithm -1");
  EXPECT_EQ(cudnn_math_type_name(CUDNN_FMA_MATH), "FMA");
  EXPECT_EQ(cudnn_math_type_name(CUDNN_DEFAULT_MATH), "DEFAULT");
}

TEST(CudnnAlgoPolicy, ParsesTheEnvironmentValues) {
  const AlgoPolicy defaults = parse_algo_policy(nullptr, nullptr);
  EXPECT_FALSE(defaults.find);
  EXPECT_TRUE(defaults.deterministic);
  const AlgoPolicy timed = parse_algo_policy("1", "0");
  EXPECT_TRUE(timed.find);
  EXPECT_FALSE(timed.deterministic);
  const AlgoPolicy explicit_defaults = parse_algo_policy("0", "1");
  EXPECT_EQ(explicit_defaults, defaults);
}

TEST(CudnnAlgoPolicy, RejectsOtherValuesNamingTheVariable) {
  try {
    parse_algo_policy("yes", nullptr);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_TRUE(contains(e.what(), "CONVNET_CUDNN_FIND=\"yes\""));
    EXPECT_TRUE(contains(e.what(), "expected 0 or 1"));
  }
  try {
    parse_algo_policy(nullptr, "");
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_TRUE(contains(e.what(), "CONVNET_DETERMINISTIC"));
  }
}

}  // namespace
}  // namespace convnet::cuda

#else

TEST(CudnnAlgorithms, NotBuilt) {
  GTEST_SKIP() << "convnet was built without CUDA";
}

#endif
