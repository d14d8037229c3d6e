// Randomized convolution problems on the GPU backends against the cpu reference: forward with and
// without bias, backward data, backward filter with and without dbias, over batch, channel,
// spatial, kernel, stride, padding and dilation choices that no hand-written list covers (odd
// channel counts, rectangular kernels, padding larger than the kernel, outputs of one pixel).
// Every output is poisoned with NaN first, so an element a kernel forgets to write fails.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "core/base/backend.h"
#include "core/base/rng.h"
#include "core/cpu/cpu_backend.h"
#include "cuda/device.h"
#include "tests/common/gpu_test_util.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::poisoned_device;
using testing::random_tensor;
using testing::to_device;
using testing::to_host;

constexpr uint64_t kProblemSeed = 20240603;
constexpr int kProblems = 400;

struct ConvProblem {
  int index = 0;
  int64_t n = 1, h = 1, w = 1, c = 1, k = 1, r = 1, s = 1;
  Conv2dParams p;
  bool bias = true;

  int64_t out_h() const { return conv_output_size(h, r, p.stride_h, p.pad_h, p.dilation_h); }
  int64_t out_w() const { return conv_output_size(w, s, p.stride_w, p.pad_w, p.dilation_w); }
  Shape x_shape() const { return {n, h, w, c}; }
  Shape w_shape() const { return {k, r, s, c}; }
  Shape y_shape() const { return {n, out_h(), out_w(), k}; }
  std::string str() const {
    std::ostringstream o;
    o << "problem #" << index << ": N=" << n << " H=" << h << " W=" << w << " C=" << c << " K=" << k << " kernel " << r
      << "x" << s << " stride " << p.stride_h << "x" << p.stride_w << " pad " << p.pad_h << "x" << p.pad_w
      << " dilation " << p.dilation_h << "x" << p.dilation_w << (bias ? " bias" : " no bias") << " -> P=" << out_h()
      << " Q=" << out_w();
    return o.str();
  }
};

int pick(Rng& rng, int low, int high) {  // uniform in [low, high]
  return low + static_cast<int>(rng.below(static_cast<uint64_t>(high - low + 1)));
}

// Channel counts: a quarter are 3 (the RGB input layer), the rest uniform in [1, 64], so most are
// not multiples of the 4-wide vector loads a kernel may use.
int64_t pick_channels(Rng& rng) {
  return rng.below(4) == 0 ? 3 : pick(rng, 1, 64);
}

// The fixed problem list: each problem's parameters come from one sequential Rng, so the list is
// the same on every run and every machine; problems whose output would be empty are redrawn.
std::vector<ConvProblem> make_problems() {
  Rng rng(kProblemSeed);
  std::vector<ConvProblem> out;
  while (static_cast<int>(out.size()) < kProblems) {
    ConvProblem q;
    q.index = static_cast<int>(out.size());
    q.n = pick(rng, 1, 8);
    q.c = pick_channels(rng);
    q.k = pick_channels(rng);
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
    if (q.out_h() < 1 || q.out_w() < 1) continue;
    out.push_back(q);
  }
  return out;
}

// The three passes of one problem, as host tensors.
struct ConvResult {
  Tensor y, dx, dw, dbias;
};

// Inputs depend only on the problem index, so any subset of problems sees the same data.
struct ConvInputs {
  Tensor x, w, bias, dy;
  explicit ConvInputs(const ConvProblem& q) {
    Rng rng(hash64(kProblemSeed, static_cast<uint64_t>(q.index)));
    x = random_tensor(q.x_shape(), rng);
    w = random_tensor(q.w_shape(), rng);
    bias = random_tensor({q.k}, rng);
    dy = random_tensor(q.y_shape(), rng);
  }
};

ConvResult run_cpu(Backend& cpu, const ConvProblem& q, const ConvInputs& in) {
  ConvResult r{testing::poisoned(q.y_shape()), testing::poisoned(q.x_shape()), testing::poisoned(q.w_shape()),
               testing::poisoned({q.k})};
  cpu.conv2d_forward(in.x, in.w, q.bias ? &in.bias : nullptr, r.y, q.p);
  cpu.conv2d_backward_data(in.dy, in.w, r.dx, q.p);
  cpu.conv2d_backward_filter(in.x, in.dy, r.dw, q.bias ? &r.dbias : nullptr, q.p);
  return r;
}

ConvResult run_gpu(Backend& gpu, const ConvProblem& q, const ConvInputs& in) {
  const Tensor x = to_device(gpu, in.x), w = to_device(gpu, in.w), bias = to_device(gpu, in.bias);
  const Tensor dy = to_device(gpu, in.dy);
  Tensor y = poisoned_device(gpu, q.y_shape()), dx = poisoned_device(gpu, q.x_shape());
  Tensor dw = poisoned_device(gpu, q.w_shape()), dbias = poisoned_device(gpu, {q.k});
  gpu.conv2d_forward(x, w, q.bias ? &bias : nullptr, y, q.p);
  gpu.conv2d_backward_data(dy, w, dx, q.p);
  gpu.conv2d_backward_filter(x, dy, dw, q.bias ? &dbias : nullptr, q.p);
  return {to_host(gpu, y), to_host(gpu, dx), to_host(gpu, dw), to_host(gpu, dbias)};
}

// Runs every `stride`-th problem on the named backend and compares each pass with the cpu backend.
void check_backend(const std::string& name, int stride, double tolerance) {
  std::unique_ptr<Backend> gpu = testing::make_gpu_backend(name);
  std::unique_ptr<Backend> cpu = make_cpu_backend();
  const std::vector<ConvProblem> problems = make_problems();
  ASSERT_EQ(static_cast<int>(problems.size()), kProblems);
  double worst[4] = {0, 0, 0, 0};
  const char* pass_names[4] = {"forward y", "backward data dx", "backward filter dw", "backward filter dbias"};
  int failed = 0, checked = 0;
  for (const ConvProblem& q : problems) {
    if (q.index % stride != 0) continue;
    const ConvInputs in(q);
    const ConvResult want = run_cpu(*cpu, q, in);
    const ConvResult got = run_gpu(*gpu, q, in);
    const Tensor* pairs[4][2] = {
        {&got.y, &want.y}, {&got.dx, &want.dx}, {&got.dw, &want.dw}, {&got.dbias, &want.dbias}};
    bool ok = true;
    for (int pass = 0; pass < 4; ++pass) {
      if (pass == 3 && !q.bias) continue;
      const double err = testing::relative_l2_error(*pairs[pass][0], *pairs[pass][1]);
      worst[pass] = std::max(worst[pass], err);
      const ::testing::AssertionResult close = testing::close_l2(*pairs[pass][0], *pairs[pass][1], tolerance);
      EXPECT_TRUE(close) << name << " " << pass_names[pass] << " differs from cpu on " << q.str();
      ok = ok && static_cast<bool>(close);
    }
    ++checked;
    if (!ok && ++failed >= 10) {
      ADD_FAILURE() << "stopping after 10 failing problems";
      break;
    }
  }
  std::cout << name << ": " << checked << " problems, worst relative L2 error: y " << worst[0] << ", dx " << worst[1]
            << ", dw " << worst[2] << ", dbias " << worst[3] << " (tolerance " << tolerance << ")\n";
}

class GpuConvRandom : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda::gpu_count() == 0) GTEST_SKIP() << "no CUDA device: " << cuda::gpu_unavailable_reason();
  }
};

TEST_F(GpuConvRandom, ProblemsCoverTheRequestedRanges) {
  // The generator itself: every range end is reached and no output is empty.
  const std::vector<ConvProblem> problems = make_problems();
  ASSERT_EQ(static_cast<int>(problems.size()), kProblems);
  int c3 = 0, c_odd = 0, rectangular = 0, dilated = 0, stride3 = 0, pad2 = 0, no_bias = 0, one_pixel = 0;
  int64_t max_c = 0, max_k = 0, max_h = 0, max_n = 0, max_r = 0;
  for (const ConvProblem& q : problems) {
    EXPECT_GE(q.out_h(), 1) << q.str();
    EXPECT_GE(q.out_w(), 1) << q.str();
    c3 += q.c == 3;
    c_odd += q.c % 4 != 0;
    rectangular += q.r != q.s || q.h != q.w;
    dilated += q.p.dilation_h == 2 || q.p.dilation_w == 2;
    stride3 += q.p.stride_h == 3 || q.p.stride_w == 3;
    pad2 += q.p.pad_h == 2 || q.p.pad_w == 2;
    no_bias += !q.bias;
    one_pixel += q.out_h() == 1 && q.out_w() == 1;
    max_c = std::max(max_c, q.c);
    max_k = std::max(max_k, q.k);
    max_h = std::max({max_h, q.h, q.w});
    max_n = std::max(max_n, q.n);
    max_r = std::max({max_r, q.r, q.s});
  }
  EXPECT_GT(c3, 40);
  EXPECT_GT(c_odd, 200);
  EXPECT_GT(rectangular, 100);
  EXPECT_GT(dilated, 100);
  EXPECT_GT(stride3, 50);
  EXPECT_GT(pad2, 50);
  EXPECT_GT(no_bias, 20);
  EXPECT_GT(one_pixel, 0);
  EXPECT_GE(max_c, 60);
  EXPECT_GE(max_k, 60);
  EXPECT_EQ(max_h, 33);
  EXPECT_EQ(max_n, 8);
  EXPECT_EQ(max_r, 5);
}

TEST_F(GpuConvRandom, CudaMatchesCpu) {
  check_backend("cuda", 1, 1e-5);
}

TEST_F(GpuConvRandom, CudnnMatchesCpu) {
  check_backend("cudnn", 1, 1e-5);
}

// TF32 rounds the inputs to 10 mantissa bits, so it gets a looser tolerance on every 4th problem.
TEST_F(GpuConvRandom, CudnnTf32MatchesCpuOnASubset) {
  check_backend("cudnn_tf32", 4, 1e-3);
}

}  // namespace
}  // namespace convnet
