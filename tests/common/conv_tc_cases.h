// The cases and checks of v4, the tensor-core convolutions (cuda/conv_tc_kernels.h), shared by the
// emulation test (tests/emu/conv_tc_emulation_test.cpp) and the GPU test
// (tests/gpu/gpu_conv_tc_test.cpp): the fixed problem list, a case's inputs as each precision's
// kernels receive them, the float64 reference with its magnitudes, and the per-element bound of
// conv_tc_bound.h as gtest checks. Header-only: the emulation build has its own CUDA headers.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "core/base/backend.h"
#include "core/base/rng.h"
#include "core/base/tensor.h"
#include "cuda/conv_tc_kernels.h"
#include "tests/common/conv_tc_bound.h"
#include "tests/common/naive_ops.h"
#include "tests/common/test_util.h"

namespace convnet::testing {

inline constexpr uint64_t kTcSeed = 0x7c0dec0deULL;

struct TcCase {
  std::string label;
  int n = 1, h = 1, w = 1, c = 1, k = 1, r = 1, s = 1;
  Conv2dParams p;  // p.groups: w is [k, r, s, c / groups]
  bool bias = true;
  cuda::ConvActivation act = cuda::ConvActivation::none;
  cuda::ConvTcOverrides force;  // tile and splits, 0 = the plan's
  bool misaligned = false;      // every buffer off a 16-byte boundary: the gather path
  uint64_t seed = 0;            // of the inputs

  cuda::ConvShape shape() const { return cuda::ConvShape::make(n, h, w, c, k, r, s, p); }
  std::string name() const {
    std::ostringstream o;
    o << "n" << n << "_" << h << "x" << w << "x" << c << "_k" << k << "_" << r << "x" << s << "_st" << p.stride_h << "x"
      << p.stride_w << "_pad" << p.pad_h << "x" << p.pad_w << "_dil" << p.dilation_h << "x" << p.dilation_w;
    if (p.groups != 1) o << "_g" << p.groups;
    if (!bias) o << "_nobias";
    if (act == cuda::ConvActivation::relu) o << "_relu";
    if (act == cuda::ConvActivation::gelu) o << "_gelu";
    if (force.tile) o << "_tile" << force.tile;
    if (force.splits) o << "_splits" << force.splits;
    if (misaligned) o << "_misaligned";
    return o.str();
  }
};

inline TcCase tc_case(std::string label, int n, int h, int w, int c, int k, int r, int s, Conv2dParams p,
                      int groups = 1) {
  p.groups = groups;
  TcCase cs;
  cs.label = std::move(label);
  cs.n = n;
  cs.h = h;
  cs.w = w;
  cs.c = c;
  cs.k = k;
  cs.r = r;
  cs.s = s;
  cs.p = p;
  return cs;
}

// One case per load path, phase oddity, epilogue and forced plan, each small enough for the emulator.
inline std::vector<TcCase> tc_fixed_cases() {
  std::vector<TcCase> v;
  v.push_back(tc_case("RGB input layer, C=3: the gather path", 2, 8, 8, 3, 16, 3, 3, conv_params(1, 1, 1, 1, 1, 1)));
  v.push_back(tc_case("C, K multiples of 8: the cp.async path", 2, 8, 8, 16, 16, 3, 3, conv_params(1, 1, 1, 1, 1, 1)));
  v.push_back(tc_case("C multiple of 4 not 8: vector in TF32, gather in BF16", 1, 6, 6, 12, 20, 3, 3,
                      conv_params(1, 1, 1, 1, 1, 1)));
  v.push_back(tc_case("odd C and K, stride 2", 1, 9, 7, 5, 6, 3, 3, conv_params(2, 2, 1, 1, 1, 1)));
  v.push_back(tc_case("stride 3, no padding: 9 phases", 2, 13, 13, 8, 8, 3, 3, conv_params(3, 3, 0, 0, 1, 1)));
  v.push_back(tc_case("5x5 kernel, dilation 2", 1, 11, 10, 8, 8, 5, 5, conv_params(1, 1, 2, 2, 2, 2)));
  v.push_back(tc_case("one element everywhere", 1, 1, 1, 1, 1, 1, 1, conv_params(1, 1, 0, 0, 1, 1)));
  v.push_back(
      tc_case("stride 2 with dilation 2: phases no tap reaches", 2, 9, 9, 8, 8, 3, 3, conv_params(2, 2, 2, 2, 2, 2)));
  v.push_back(
      tc_case("1x1 kernel, stride 3: pixels no output reads", 2, 7, 8, 8, 16, 1, 1, conv_params(3, 3, 0, 0, 1, 1)));
  v.push_back(tc_case("rows and columns past one block tile", 3, 9, 9, 8, 72, 1, 1, conv_params(1, 1, 0, 0, 1, 1)));
  {
    TcCase c = tc_case("ReLU epilogue, forced 3 slices", 2, 6, 6, 16, 8, 3, 3, conv_params(1, 1, 1, 1, 1, 1));
    c.act = cuda::ConvActivation::relu;
    c.force.splits = 3;
    v.push_back(c);
  }
  {
    TcCase c = tc_case("GELU epilogue, large tile", 1, 6, 6, 8, 8, 3, 3, conv_params(1, 1, 1, 1, 1, 1));
    c.act = cuda::ConvActivation::gelu;
    c.force.tile = 128;
    v.push_back(c);
  }
  {
    TcCase c = tc_case("every buffer misaligned: the gather path", 2, 6, 6, 8, 8, 3, 3, conv_params(1, 1, 1, 1, 1, 1));
    c.misaligned = true;
    c.bias = false;
    v.push_back(c);
  }
  {
    TcCase c = tc_case("a long reduction in 5 slices, small tile", 2, 8, 8, 32, 8, 3, 3, conv_params(1, 1, 1, 1, 1, 1));
    c.force = {64, 5};
    v.push_back(c);
  }
  // Grouped and depthwise (Conv2dParams::groups): one GEMM per group.
  v.push_back(tc_case("groups 2 of C/g=K/g=8: cp.async inside each group", 1, 5, 5, 16, 16, 3, 3,
                      conv_params(1, 1, 1, 1, 1, 1), 2));
  v.push_back(tc_case("groups 4 of C/g=3, K/g=2: the gather path; stride 2, padding 2, dilation 2, batch 1", 1, 9, 7,
                      12, 8, 3, 3, conv_params(2, 2, 2, 2, 2, 2), 4));
  v.push_back(
      tc_case("depthwise C=K=6 (C/g=1), stride 2, padding 1", 1, 7, 7, 6, 6, 3, 3, conv_params(2, 2, 1, 1, 1, 1), 6));
  {
    TcCase c = tc_case("depthwise K=2C (C=4): ReLU epilogue, forced 3 slices", 2, 6, 6, 4, 8, 3, 3,
                       conv_params(1, 1, 1, 1, 1, 1), 4);
    c.act = cuda::ConvActivation::relu;
    c.force.splits = 3;
    v.push_back(c);
  }
  {
    TcCase c = tc_case("groups 2 of C/g=8, K/g=16: large tile, GELU epilogue", 1, 3, 3, 16, 32, 1, 1,
                       conv_params(1, 1, 0, 0, 1, 1), 2);
    c.act = cuda::ConvActivation::gelu;
    c.force.tile = 128;
    v.push_back(c);
  }
  {
    // The group's tiles in grid y (cuda/conv_gemm_common.cuh group_tile) are the same code for both tiles.
    TcCase c = tc_case("groups 2 of C/g=K/g=72: two small tiles per group in every pass, 2 slices", 1, 3, 3, 144, 144,
                       1, 1, conv_params(1, 1, 0, 0, 1, 1), 2);
    c.force = {64, 2};
    v.push_back(c);
  }
  {
    TcCase c = tc_case("groups 2 of C/g=K/g=8, every buffer misaligned: the gather path", 1, 5, 5, 16, 16, 3, 3,
                       conv_params(1, 1, 1, 1, 1, 1), 2);
    c.misaligned = true;
    v.push_back(c);
  }
  for (size_t i = 0; i < v.size(); ++i) v[i].seed = hash64(kTcSeed, i);
  return v;
}

// A host f32 copy of t with f applied to every element.
template <class F>
Tensor map_values(const Tensor& t, F&& f) {
  Tensor out = t.clone();
  for (float& v : out.span()) v = f(v);
  return out;
}
inline Tensor tc_received(const Tensor& t, cuda::ConvPrecision precision) {
  return map_values(t, [&](float v) { return tc_received(v, precision); });
}
inline Tensor tc_multiplied(const Tensor& t, cuda::ConvPrecision precision) {
  return map_values(t, [&](float v) { return tc_multiplied(v, precision); });
}
inline Tensor absolute(const Tensor& t) {
  return map_values(t, [](float v) { return std::fabs(v); });
}

inline double tc_activate(double v, cuda::ConvActivation act) {
  if (act == cuda::ConvActivation::relu) return v < 0 ? 0 : v;  // NaN propagates
  if (act == cuda::ConvActivation::gelu) return naive::gelu(v);
  return v;
}

// A case's inputs as the precision's kernels receive them (BF16 rounded once, for good); bias is
// fp32 in both precisions.
struct TcInputs {
  cuda::ConvShape shape;
  Tensor x, w, bias, dy;
  TcInputs(const TcCase& cs, cuda::ConvPrecision precision) : shape(cs.shape()) {
    Rng rng(cs.seed);
    x = tc_received(random_tensor({cs.n, cs.h, cs.w, cs.c}, rng), precision);
    w = tc_received(random_tensor({cs.k, cs.r, cs.s, cs.c / cs.p.groups}, rng), precision);
    bias = random_tensor({cs.k}, rng);
    dy = tc_received(random_tensor({cs.n, shape.p, shape.q, cs.k}, rng), precision);
  }
};

// What the three passes wrote, as floats (dbias empty without a bias).
struct TcOutputs {
  std::vector<float> y, dx, dw, dbias;
};

// An output's reference and its magnitude: the same sums over |a*b|.
struct TcReference {
  std::vector<double> value, magnitude;
};
struct TcExpected {
  TcReference y, dx, dw, dbias;  // y after the epilogue; dbias empty without a bias
};

// The float64 reference on the host (tests/common/naive_ops.h), on the values the tensor cores
// multiply. dbias sums dy as received: no tensor core touches it.
inline TcExpected tc_host_reference(const TcCase& cs, const TcInputs& in, cuda::ConvPrecision precision) {
  const Tensor xm = tc_multiplied(in.x, precision), wm = tc_multiplied(in.w, precision);
  const Tensor dym = tc_multiplied(in.dy, precision);
  const Tensor xa = absolute(xm), wa = absolute(wm), dya = absolute(dym), bias_abs = absolute(in.bias);
  TcExpected e;
  e.y.value = naive::conv2d_forward(xm, wm, cs.bias ? &in.bias : nullptr, cs.p);
  for (double& v : e.y.value) v = tc_activate(v, cs.act);
  e.y.magnitude = naive::conv2d_forward(xa, wa, cs.bias ? &bias_abs : nullptr, cs.p);
  e.dx = {naive::conv2d_backward_data(dym, wm, in.x.shape(), cs.p),
          naive::conv2d_backward_data(dya, wa, in.x.shape(), cs.p)};
  e.dw = {naive::conv2d_backward_filter(xm, dym, in.w.shape(), cs.p),
          naive::conv2d_backward_filter(xa, dya, in.w.shape(), cs.p)};
  if (cs.bias) e.dbias = {naive::sum_over_last_dim(in.dy), naive::sum_over_last_dim(absolute(in.dy))};
  return e;
}

// got within `bound` of want element by element; names the first few elements outside. With
// `worst_ratio`, the largest error / bound is folded into it.
inline ::testing::AssertionResult within_tc_bound(const char* what, const std::vector<float>& got,
                                                  const TcReference& want, const TcBound& bound,
                                                  double* worst_ratio = nullptr) {
  if (got.size() != want.value.size() || want.magnitude.size() != want.value.size())
    return ::testing::AssertionFailure() << what << ": " << got.size() << " elements, expected " << want.value.size();
  const TcBoundCheck c = check_tc_bound(got, want.value, want.magnitude, bound);
  if (worst_ratio) *worst_ratio = std::fmax(*worst_ratio, c.worst_ratio);
  if (c.outside == 0) return ::testing::AssertionSuccess();
  ::testing::AssertionResult r = ::testing::AssertionFailure();
  r << what << ": " << c.outside << " of " << got.size() << " elements out of bounds";
  for (size_t j = 0; j < c.outside && j < std::size(c.first); ++j) {
    const size_t i = c.first[j];
    const double ref = want.value[i];
    r << "\n  [" << i << "] = " << got[i] << ", expected " << ref << " (error " << std::fabs(got[i] - ref) << ", bound "
      << bound(ref, want.magnitude[i]) << ")";
  }
  return r;
}

// Every output within its pass's bound; `plans` in ConvPass order (forward, backward-data,
// backward-filter). With `worst_ratios`, each output's largest error / bound is folded into
// worst_ratios[0..3] (y, dx, dw, dbias).
inline ::testing::AssertionResult within_tc_bounds(const TcOutputs& got, const TcExpected& want,
                                                   const cuda::ConvShape& s, std::span<const cuda::ConvTcPlan> plans,
                                                   cuda::ConvActivation act, double* worst_ratios = nullptr) {
  if (plans.size() != 3) return ::testing::AssertionFailure() << plans.size() << " plans, expected 3";
  using cuda::ConvPass;
  const struct {
    const char* what;
    const std::vector<float>& got;
    const TcReference& want;
    ConvPass pass;
  } outputs[] = {{"forward y", got.y, want.y, ConvPass::forward},
                 {"backward-data dx", got.dx, want.dx, ConvPass::backward_data},
                 {"backward-filter dw", got.dw, want.dw, ConvPass::backward_filter},
                 {"backward-filter dbias", got.dbias, want.dbias, ConvPass::backward_filter}};
  std::string failures;
  for (size_t o = 0; o < std::size(outputs); ++o) {
    const auto& out = outputs[o];
    const ::testing::AssertionResult r =
        within_tc_bound(out.what, out.got, out.want, tc_bound(s, out.pass, plans[static_cast<int>(out.pass)], act),
                        worst_ratios ? &worst_ratios[o] : nullptr);
    if (!r) failures += std::string(failures.empty() ? "" : "\n") + r.message();
  }
  if (failures.empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << failures;
}

// The same bits in every output (reruns of deterministic kernels).
inline ::testing::AssertionResult same_bits(const TcOutputs& a, const TcOutputs& b) {
  std::string differ;
  const auto compare = [&](const char* name, const std::vector<float>& u, const std::vector<float>& v) {
    // An empty output (no bias, no dx) has no data pointer to give memcmp.
    if (u.size() != v.size() || (!u.empty() && std::memcmp(u.data(), v.data(), u.size() * sizeof(float)) != 0))
      differ += (differ.empty() ? "" : ", ") + std::string(name);
  };
  compare("y", a.y, b.y);
  compare("dx", a.dx, b.dx);
  compare("dw", a.dw, b.dw);
  compare("dbias", a.dbias, b.dbias);
  if (differ.empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << differ << " differ between runs";
}

// ConvOutputStats: sum[k], sum_sq[k] against float64 sums over the rows of y [rows, k]: within
// (rows + 8) * 2^-23 of the sums of |y| and y^2 (fp32 accumulation in any fixed order).
inline void expect_output_sums(const std::vector<float>& y, int k, const std::vector<float>& sum,
                               const std::vector<float>& sum_sq) {
  ASSERT_EQ(sum.size(), static_cast<size_t>(k));
  const size_t rows = y.size() / static_cast<size_t>(k);
  const double slack = static_cast<double>(rows + 8) * std::ldexp(1.0, -23);
  for (int c = 0; c < k; ++c) {
    double s = 0, abs_s = 0, q = 0;
    for (size_t r = 0; r < rows; ++r) {
      const double v = y[r * static_cast<size_t>(k) + static_cast<size_t>(c)];
      s += v;
      abs_s += std::fabs(v);
      q += v * v;
    }
    EXPECT_LE(std::fabs(sum[c] - s), slack * abs_s + 1e-30) << "sum of channel " << c;  // NaN fails
    EXPECT_LE(std::fabs(sum_sq[c] - q), slack * q + 1e-30) << "sum of squares of channel " << c;
  }
}

}  // namespace convnet::testing
