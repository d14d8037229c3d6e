// The 400 randomized convolution problems of the GPU tests (gpu_conv_random_test checks the
// backends on them, gpu_conv_tc_test the v4 kernels): batch, channel, spatial, kernel, stride,
// padding and dilation choices that no hand-written list covers (odd channel counts, rectangular
// kernels, padding larger than the kernel, outputs of one pixel), and a second list of grouped and
// depthwise problems drawn the same way. The lists are the same on every run and machine;
// CONVNET_CONV_PROBLEMS=N keeps the first N of each (tools/gpu_check.sh's sanitize stage).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "core/base/backend.h"
#include "core/base/error.h"
#include "core/base/rng.h"
#include "tests/common/test_util.h"

namespace convnet::testing {

inline constexpr uint64_t kProblemSeed = 20240603;
inline constexpr int kProblems = 400;
inline constexpr uint64_t kGroupedProblemSeed = 20261202;
inline constexpr int kGroupedProblems = 120;

// How many problems to run: CONVNET_CONV_PROBLEMS (1..kProblems), else all.
inline int problems_to_run() {
  const char* value = std::getenv("CONVNET_CONV_PROBLEMS");
  if (value == nullptr) return kProblems;
  const int n = std::atoi(value);
  if (n < 1 || n > kProblems)
    throw ConfigError("CONVNET_CONV_PROBLEMS=\"" + std::string(value) + "\": expected 1.." + std::to_string(kProblems));
  return n;
}

struct ConvProblem {
  int index = 0;
  int64_t n = 1, h = 1, w = 1, c = 1, k = 1, r = 1, s = 1;
  Conv2dParams p;
  bool bias = true;

  int64_t out_h() const { return conv_output_size(h, r, p.stride_h, p.pad_h, p.dilation_h); }
  int64_t out_w() const { return conv_output_size(w, s, p.stride_w, p.pad_w, p.dilation_w); }
  // Terms summed into one output element of each pass (an upper bound for backward-data, whose
  // taps depend on the position): forward r*s*c/groups, backward-data r*s*k/groups,
  // backward-filter and dbias n*p*q.
  int64_t reduction_length(int pass) const {
    if (pass == 0) return r * s * (c / p.groups);
    if (pass == 1) return r * s * (k / p.groups);
    return n * out_h() * out_w();
  }
  Shape x_shape() const { return {n, h, w, c}; }
  Shape w_shape() const { return {k, r, s, c / p.groups}; }
  Shape y_shape() const { return {n, out_h(), out_w(), k}; }
  // The seed of the problem's inputs: they depend only on the index, so any subset of problems
  // sees the same data.
  uint64_t input_seed() const { return hash64(kProblemSeed, static_cast<uint64_t>(index)); }
  std::string str() const {
    std::ostringstream o;
    o << "problem #" << index << ": N=" << n << " H=" << h << " W=" << w << " C=" << c << " K=" << k << " kernel " << r
      << "x" << s << " stride " << p.stride_h << "x" << p.stride_w << " pad " << p.pad_h << "x" << p.pad_w
      << " dilation " << p.dilation_h << "x" << p.dilation_w;
    if (p.groups != 1) o << " groups " << p.groups << (p.groups == c ? " (depthwise)" : "");
    o << (bias ? " bias" : " no bias") << " -> P=" << out_h() << " Q=" << out_w();
    return o.str();
  }
};

// Channel counts: a quarter are 3 (the RGB input layer), the rest uniform in [1, 64], so most are
// not multiples of the 4-wide vector loads a kernel may use.
inline int64_t pick_channels(Rng& rng) {
  return rng.below(4) == 0 ? 3 : pick(rng, 1, 64);
}

// Problem `index` from `rng`: the batch, then draw_channels(rng, q) sets c, k (and groups), then
// the spatial extents, kernel, stride, padding, dilation and bias; drawn again, from where the Rng
// stands, while the output would be empty.
template <class DrawChannels>
ConvProblem draw_problem(Rng& rng, int index, DrawChannels&& draw_channels) {
  while (true) {
    ConvProblem q;
    q.index = index;
    q.n = pick(rng, 1, 8);
    draw_channels(rng, q);
    q.h = pick(rng, 1, 33);
    q.w = rng.below(2) == 0 ? q.h : pick(rng, 1, 33);
    q.r = pick(rng, 1, 5);
    // Half the problems are symmetric (square kernel, same stride/pad/dilation on both axes);
    // the other half draw each axis separately, which catches swapped H/W arguments.
    const bool square = rng.below(2) == 0;
    q.s = square ? q.r : pick(rng, 1, 5);
    q.p.stride_h = pick(rng, 1, 3);
    q.p.stride_w = square ? q.p.stride_h : pick(rng, 1, 3);
    q.p.pad_h = pick(rng, 0, 2);
    q.p.pad_w = square ? q.p.pad_h : pick(rng, 0, 2);
    q.p.dilation_h = pick(rng, 1, 2);
    q.p.dilation_w = square ? q.p.dilation_h : pick(rng, 1, 2);
    q.bias = rng.below(4) != 0;
    if (q.out_h() >= 1 && q.out_w() >= 1) return q;
  }
}

// Each problem's parameters come from one sequential Rng.
inline std::vector<ConvProblem> make_problems() {
  Rng rng(kProblemSeed);
  std::vector<ConvProblem> out;
  while (static_cast<int>(out.size()) < kProblems)
    out.push_back(draw_problem(rng, static_cast<int>(out.size()), [](Rng& r, ConvProblem& q) {
      q.c = pick_channels(r);
      q.k = pick_channels(r);
    }));
  return out;
}

// Grouped problems: a third depthwise (groups = C in 2..64, one or two filters per channel), the
// rest 2, 3, 4 or 8 groups with group widths of 1, 1..12 or 8..24 input and output channels each,
// so both narrow groups (under 8 channels, cuda/conv_kernels.h conv_narrow_groups) and wide ones
// occur.
inline std::vector<ConvProblem> make_grouped_problems() {
  Rng rng(kGroupedProblemSeed);
  std::vector<ConvProblem> out;
  while (static_cast<int>(out.size()) < kGroupedProblems)
    out.push_back(draw_problem(rng, static_cast<int>(out.size()), [](Rng& r, ConvProblem& q) {
      if (r.below(3) == 0) {
        q.c = pick(r, 2, 64);
        q.k = q.c * pick(r, 1, 2);
        q.p.groups = static_cast<int>(q.c);
      } else {
        const int groups[] = {2, 3, 4, 8};
        q.p.groups = groups[r.below(4)];
        const auto width = [&r] {
          const int kind = pick(r, 0, 2);
          return kind == 0 ? 1 : kind == 1 ? pick(r, 1, 12) : 8 * pick(r, 1, 3);
        };
        q.c = q.p.groups * width();
        q.k = q.p.groups * width();
      }
    }));
  return out;
}

}  // namespace convnet::testing
