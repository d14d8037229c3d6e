// What every check of v4, the tensor-core convolutions (cuda/conv_tc_kernels.h), holds them to:
// the emulation test, the GPU test and cuda/harness/conv_harness.cu. Host arithmetic only (no
// gtest, no device code), so the harness can use it too.
//
// A reference sees the inputs the tensor cores see: TF32 inputs rounded as cvt.rna does, BF16
// inputs bf16 values to begin with (the roundings of core/base/precision.h). What is left is fp32 accumulation (and the
// final bf16 rounding of y and dx), so each element must lie within
//     (reduction length + slices + 8) * 2^-23 * sum |a*b|   (+ 2^-8 of |ref| plus that, for a bf16 output)
// of the reference, where sum |a*b| is the same convolution of the absolute values. A fragment in
// the wrong place, a stage read before it landed or a skipped tap is off by O(sum |a*b|).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "core/base/precision.h"
#include "cuda/conv_tc_kernels.h"

namespace convnet::testing {

// The value an input of the precision's kernels holds: BF16 tensors are rounded once, on the host.
inline float tc_received(float v, cuda::ConvPrecision precision) {
  return precision == cuda::ConvPrecision::bf16 ? round_to_bf16(v) : v;
}
// The value the tensor cores multiply: TF32 kernels round their float inputs as they load them.
inline float tc_multiplied(float v, cuda::ConvPrecision precision) {
  return precision == cuda::ConvPrecision::tf32 ? round_to_tf32(v) : tc_received(v, precision);
}

// Terms summed into one output element of a pass (at most, for backward-data): forward r*s*c,
// backward-data r*s*k, backward-filter (dw and dbias) n*p*q, with c and k a group's channels.
inline int64_t tc_reduction_length(const cuda::ConvShape& s, cuda::ConvPass pass) {
  switch (pass) {
    case cuda::ConvPass::forward:
      return int64_t{s.r} * s.s * s.group_c();
    case cuda::ConvPass::backward_data:
      return int64_t{s.r} * s.s * s.group_k();
    case cuda::ConvPass::backward_filter:
      break;
  }
  return int64_t{s.n} * s.p * s.q;
}

// The bound on |got - ref| for the outputs of one pass.
struct TcBound {
  double slack = 0;          // (reduction length + slices + 8) * 2^-23
  double gain = 1;           // the epilogue's largest slope
  bool bf16_output = false;  // y and dx of BF16: one more rounding
  double operator()(double ref, double magnitude) const {
    const double u = std::ldexp(1.0, -23);
    // A bf16 output is the fp32 sum rounded once more, by at most half an ulp (2^-8 relative) of
    // that sum, which itself lies within slack * magnitude of ref.
    const double output = bf16_output ? std::ldexp(std::fabs(ref) + slack * magnitude, -8) : 4 * u * std::fabs(ref);
    return gain * (slack * magnitude + output) + 1e-30;
  }
};

inline TcBound tc_bound(const cuda::ConvShape& s, cuda::ConvPass pass, const cuda::ConvTcPlan& plan,
                        cuda::ConvActivation act = cuda::ConvActivation::none) {
  TcBound b;
  b.slack = static_cast<double>(tc_reduction_length(s, pass) + plan.splits + 8) * std::ldexp(1.0, -23);
  // GELU's slope reaches 1.13 and erff adds its own few ulps.
  b.gain = pass == cuda::ConvPass::forward && act == cuda::ConvActivation::gelu ? 1.2 : 1.0;
  b.bf16_output = plan.precision == cuda::ConvPrecision::bf16 && pass != cuda::ConvPass::backward_filter;
  return b;
}

// got[i] against ref[i] and magnitude[i] (any indexable containers of the same size).
struct TcBoundCheck {
  size_t outside = 0;      // elements out of bounds; a NaN always is
  size_t first[3] = {};    // the first few of them
  double worst_ratio = 0;  // largest |got - ref| / bound (+inf for a NaN)
};
template <class Got, class Ref, class Mag>
TcBoundCheck check_tc_bound(const Got& got, const Ref& ref, const Mag& magnitude, const TcBound& bound) {
  TcBoundCheck c;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - static_cast<double>(ref[i]));
    const double ratio = err / bound(static_cast<double>(ref[i]), static_cast<double>(magnitude[i]));
    c.worst_ratio = std::isnan(ratio) ? INFINITY : std::fmax(c.worst_ratio, ratio);
    if (ratio <= 1.0) continue;  // NaN fails
    if (c.outside < std::size(c.first)) c.first[c.outside] = i;
    ++c.outside;
  }
  return c;
}

}  // namespace convnet::testing
