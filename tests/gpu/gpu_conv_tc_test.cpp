// v4, our tensor-core convolutions (cuda/conv_tc_kernels.h), on the GPU through their own entry
// points, in TF32 and BF16, all three passes: the emulation test's fixed cases
// (tests/common/conv_tc_cases.h), the 400 random problems of gpu_conv_random_test
// (tests/common/conv_problems.h), each with a tile, slice count, epilogue and alignment drawn from
// its index, and VGG layers at the device's own plan. Every element must lie within the emulation
// test's bound (tests/common/conv_tc_bound.h) of a float64 reference on the values the tensor
// cores multiply: the host's loops (naive_ops) for small problems, v0 on the GPU (one thread per
// output, fp64 sums) for the rest. Outputs and workspaces start as NaN (0xff bytes); every case
// runs twice and must give the same bits. (v4 TF32 against cuDNN TF32 is gpu_conv_random_test's
// CudaTf32MatchesCudnnTf32, through the backends.)
//
// Also what the emulator can only model: the large tile's dynamic shared memory, above the 48 KiB a
// launch gets by default, does launch on the device.
//
// CONVNET_CONV_PROBLEMS=N runs only the first N random problems (tools/gpu_check.sh's sanitize stage).
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <iostream>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/base/backend.h"
#include "core/base/precision.h"
#include "core/base/rng.h"
#include "core/base/tensor.h"
#include "cuda/check.h"
#include "cuda/conv_kernels.h"
#include "cuda/conv_tc_kernels.h"
#include "cuda/stream.h"
#include "tests/common/conv_problems.h"
#include "tests/common/conv_tc_cases.h"
#include "tests/common/device_array.h"
#include "tests/common/gpu_skip.h"
#include "tests/common/naive_ops.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using cuda::ConvActivation;
using cuda::ConvPass;
using cuda::ConvPrecision;
using cuda::ConvShape;
using cuda::ConvTcPlan;
using testing::DeviceArray;
using testing::TcCase;
using testing::TcExpected;
using testing::TcInputs;
using testing::TcOutputs;

constexpr ConvPass kPasses[] = {ConvPass::forward, ConvPass::backward_data, ConvPass::backward_filter};
constexpr ConvPrecision kPrecisions[] = {ConvPrecision::tf32, ConvPrecision::bf16};
// Up to this many multiply-adds per pass the host computes the reference (milliseconds); above, v0.
constexpr int64_t kHostReferenceMacs = int64_t{1} << 18;
constexpr size_t kMisalignBytes = 4;  // as the emulation test's buffers: off every 16-byte boundary

// The element types in device memory: float for TF32, bf16 bits for BF16.
template <class E>
constexpr ConvPrecision kPrecisionOf = sizeof(E) == 4 ? ConvPrecision::tf32 : ConvPrecision::bf16;
template <class E>
E element_of(float v) {
  if constexpr (kPrecisionOf<E> == ConvPrecision::bf16)
    return to_bf16_bits(v);
  else
    return v;
}
float float_of(float v) {
  return v;
}
float float_of(uint16_t b) {
  return from_bf16_bits(b);
}

template <class E>
std::vector<float> floats(const std::vector<E>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = float_of(v[i]);
  return out;
}
std::vector<double> doubles(const std::vector<float>& v) {
  return {v.begin(), v.end()};
}

// A host tensor in device memory as E, `offset` elements into its allocation.
template <class E>
DeviceArray<E> on_device(const Tensor& t, size_t offset, cudaStream_t stream) {
  std::vector<E> host(static_cast<size_t>(t.numel()));
  for (size_t i = 0; i < host.size(); ++i) host[i] = element_of<E>(t.f32()[i]);
  DeviceArray<E> d(host.size(), offset);
  d.upload(host, stream);
  CONVNET_CUDA_CHECK(cudaStreamSynchronize(stream));  // `host` goes out of scope
  return d;
}

int64_t macs_per_pass(const ConvShape& s) {
  return s.forward_flops() / 2;
}

// The float64 reference from v0 on the device, for problems too large for the host's loops: fp64
// sums rounded once to float, 2^-24 relative, a sixteenth of the bound's smallest term. dbias
// sums dy as received, on the host (no tensor core touches it).
TcExpected v0_reference(const TcCase& cs, const TcInputs& in, ConvPrecision precision, cudaStream_t stream) {
  const ConvShape& s = in.shape;
  // y, dx and dw of v0 on these inputs.
  const auto passes = [&](const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& dy) {
    const DeviceArray<float> x_dev = on_device<float>(x, 0, stream), w_dev = on_device<float>(w, 0, stream);
    const DeviceArray<float> bias_dev = on_device<float>(bias, 0, stream), dy_dev = on_device<float>(dy, 0, stream);
    DeviceArray<float> y(dy_dev.count()), dx(x_dev.count()), dw(w_dev.count());
    cuda::conv2d_forward(x_dev.get(), w_dev.get(), cs.bias ? bias_dev.get() : nullptr, y.get(), s, stream,
                         cuda::ConvVersion::v0_direct);
    cuda::conv2d_backward_data(dy_dev.get(), w_dev.get(), dx.get(), s, stream, cuda::ConvVersion::v0_direct);
    cuda::conv2d_backward_filter(x_dev.get(), dy_dev.get(), dw.get(), nullptr, s, nullptr, stream,
                                 cuda::ConvVersion::v0_direct);
    return std::array<std::vector<double>, 3>{doubles(y.download(stream)), doubles(dx.download(stream)),
                                              doubles(dw.download(stream))};
  };
  const Tensor xm = testing::tc_multiplied(in.x, precision), wm = testing::tc_multiplied(in.w, precision);
  const Tensor dym = testing::tc_multiplied(in.dy, precision);
  const auto value = passes(xm, wm, in.bias, dym);
  const auto magnitude =
      passes(testing::absolute(xm), testing::absolute(wm), testing::absolute(in.bias), testing::absolute(dym));
  TcExpected e;
  e.y = {value[0], magnitude[0]};
  for (double& v : e.y.value) v = testing::tc_activate(v, cs.act);
  e.dx = {value[1], magnitude[1]};
  e.dw = {value[2], magnitude[2]};
  if (cs.bias)
    e.dbias = {testing::naive::sum_over_last_dim(in.dy), testing::naive::sum_over_last_dim(testing::absolute(in.dy))};
  return e;
}

// One case in one precision on the device: inputs, outputs, the three plans and their workspaces.
template <class E>
class TcDeviceRun {
 public:
  TcDeviceRun(const TcCase& cs, const TcInputs& in, int sm_count, cudaStream_t stream)
      : cs_(cs),
        shape_(in.shape),
        stream_(stream),
        x_(on_device<E>(in.x, offset<E>(), stream)),
        w_(on_device<E>(in.w, offset<E>(), stream)),
        dy_(on_device<E>(in.dy, offset<E>(), stream)),
        bias_(on_device<float>(in.bias, offset<float>(), stream)),
        y_(dy_.count(), offset<E>()),
        dx_(x_.count(), offset<E>()),
        dw_(w_.count(), offset<float>()),
        dbias_(bias_.count(), offset<float>()) {
    for (const ConvPass pass : kPasses) {
      const ConvTcPlan plan = cuda::conv_tc_plan(shape_, pass, kPrecisionOf<E>, sm_count, cs.force);
      plans_[static_cast<int>(pass)] = plan;
      workspaces_.emplace_back(plan.workspace_bytes / sizeof(float), offset<float>());
    }
  }

  std::span<const ConvTcPlan> plans() const { return plans_; }

  // The three passes on poisoned outputs and workspaces; what they wrote.
  TcOutputs run() {
    y_.poison(stream_);
    dx_.poison(stream_);
    dw_.poison(stream_);
    dbias_.poison(stream_);
    for (DeviceArray<float>& ws : workspaces_) ws.poison(stream_);
    const float* bias = cs_.bias ? bias_.get() : nullptr;
    float* dbias = cs_.bias ? dbias_.get() : nullptr;
    cuda::conv2d_forward_tc(x_.get(), w_.get(), bias, y_.get(), cs_.act, shape_, plan(ConvPass::forward),
                            workspace(ConvPass::forward), stream_);
    cuda::conv2d_backward_data_tc(dy_.get(), w_.get(), dx_.get(), shape_, plan(ConvPass::backward_data),
                                  workspace(ConvPass::backward_data), stream_);
    cuda::conv2d_backward_filter_tc(x_.get(), dy_.get(), dw_.get(), dbias, shape_, plan(ConvPass::backward_filter),
                                    workspace(ConvPass::backward_filter), stream_);
    CONVNET_CUDA_CHECK(cudaStreamSynchronize(stream_));  // a fault in any pass surfaces here
    TcOutputs out;
    out.y = floats(y_.download(stream_));
    out.dx = floats(dx_.download(stream_));
    out.dw = dw_.download(stream_);
    if (cs_.bias) out.dbias = dbias_.download(stream_);
    return out;
  }

 private:
  template <class T>
  size_t offset() const {
    return cs_.misaligned ? kMisalignBytes / sizeof(T) : 0;
  }
  const ConvTcPlan& plan(ConvPass pass) const { return plans_[static_cast<int>(pass)]; }
  void* workspace(ConvPass pass) const { return workspaces_[static_cast<int>(pass)].get(); }

  const TcCase& cs_;
  ConvShape shape_;
  cudaStream_t stream_;
  DeviceArray<E> x_, w_, dy_;
  DeviceArray<float> bias_;
  DeviceArray<E> y_, dx_;
  DeviceArray<float> dw_, dbias_;
  std::array<ConvTcPlan, 3> plans_;
  std::vector<DeviceArray<float>> workspaces_;
};

// The worst error / bound seen over a suite, per output (y, dx, dw, dbias), for the log.
struct Worst {
  double ratio[4] = {0, 0, 0, 0};
  void print(const std::string& suite, int cases) const {
    std::cout << suite << ": " << cases << " cases, largest error as a share of the bound: y " << 100 * ratio[0]
              << "%, dx " << 100 * ratio[1] << "%, dw " << 100 * ratio[2] << "%, dbias " << 100 * ratio[3] << "%\n";
  }
};

template <class E>
::testing::AssertionResult check_case_as(const TcCase& cs, int sm_count, cudaStream_t stream, Worst& worst) {
  constexpr ConvPrecision precision = kPrecisionOf<E>;
  const TcInputs in(cs, precision);
  TcDeviceRun<E> device(cs, in, sm_count, stream);
  const TcOutputs first = device.run();
  const TcExpected want = macs_per_pass(in.shape) <= kHostReferenceMacs ? testing::tc_host_reference(cs, in, precision)
                                                                        : v0_reference(cs, in, precision, stream);
  const ::testing::AssertionResult close =
      testing::within_tc_bounds(first, want, in.shape, device.plans(), cs.act, worst.ratio);
  if (!close) return close;
  return testing::same_bits(first, device.run());
}

// One case in one precision: within the bound, and a rerun gives the same bits.
::testing::AssertionResult check_case(const TcCase& cs, ConvPrecision precision, int sm_count, cudaStream_t stream,
                                      Worst& worst) {
  ::testing::AssertionResult r = precision == ConvPrecision::tf32
                                     ? check_case_as<float>(cs, sm_count, stream, worst)
                                     : check_case_as<uint16_t>(cs, sm_count, stream, worst);
  if (!r) r << "\n  " << cuda::conv_precision_name(precision) << " " << cs.label << " (" << cs.name() << ")";
  return r;
}

// A random problem of gpu_conv_random_test as a v4 case: its shape, bias and inputs, plus a tile,
// a slice count, an epilogue and an alignment of its own, drawn from its index.
TcCase tc_case_of(const testing::ConvProblem& q) {
  TcCase cs =
      testing::tc_case(q.str(), static_cast<int>(q.n), static_cast<int>(q.h), static_cast<int>(q.w),
                       static_cast<int>(q.c), static_cast<int>(q.k), static_cast<int>(q.r), static_cast<int>(q.s), q.p);
  cs.bias = q.bias;
  cs.seed = q.input_seed();
  Rng rng(hash64(testing::kTcSeed + 3, static_cast<uint64_t>(q.index)));
  const int tile = testing::pick(rng, 0, 2);
  cs.force.tile = tile == 0 ? 0 : tile == 1 ? 64 : 128;
  cs.force.splits = testing::pick(rng, 0, 2) == 0 ? testing::pick(rng, 2, 8) : 0;
  cs.act = static_cast<ConvActivation>(testing::pick(rng, 0, 2));
  cs.misaligned = testing::pick(rng, 0, 7) == 0;
  return cs;
}

class GpuConvTc : public ::testing::Test {
 protected:
  void SetUp() override {
    CONVNET_SKIP_WITHOUT_GPU();
    int device = 0, major = 0;
    CONVNET_CUDA_CHECK(cudaGetDevice(&device));
    CONVNET_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    CONVNET_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count_, cudaDevAttrMultiProcessorCount, device));
    if (major < 8) GTEST_SKIP() << "v4 needs TF32 and BF16 tensor cores (compute capability 8.0); this is " << major;
    stream_ = std::make_unique<cuda::CudaStream>();
  }

  // Every case in `precision`; stops after 10 failing cases.
  void check_all(const std::string& suite, const std::vector<TcCase>& cases, ConvPrecision precision) {
    Worst worst;
    int failed = 0;
    for (const TcCase& cs : cases) {
      const ::testing::AssertionResult r = check_case(cs, precision, sm_count_, stream(), worst);
      EXPECT_TRUE(r);
      if (!r && ++failed >= 10) {
        ADD_FAILURE() << "stopping after 10 failing cases";
        break;
      }
    }
    worst.print(suite + " " + cuda::conv_precision_name(precision), static_cast<int>(cases.size()));
  }
  std::vector<TcCase> random_cases() const {
    std::vector<TcCase> cases;
    const int count = testing::problems_to_run();
    for (const testing::ConvProblem& q : testing::make_problems())
      if (q.index < count) cases.push_back(tc_case_of(q));
    return cases;
  }

  cudaStream_t stream() const { return stream_->get(); }
  int sm_count_ = 0;

 private:
  std::unique_ptr<cuda::CudaStream> stream_;
};

TEST_F(GpuConvTc, FixedCasesWithinTheBoundAndRerunsBitIdentical) {
  for (const ConvPrecision precision : kPrecisions) check_all("fixed cases", testing::tc_fixed_cases(), precision);
}

TEST_F(GpuConvTc, RandomProblemsTf32WithinTheBound) {
  check_all("random problems", random_cases(), ConvPrecision::tf32);
}

TEST_F(GpuConvTc, RandomProblemsBf16WithinTheBound) {
  check_all("random problems", random_cases(), ConvPrecision::bf16);
}

// VGG-16's CIFAR layers at batch 32 with the plan for this device's SM count: the RGB layer's
// gather path, full large tiles, and the small-spatial layers' split reductions.
TEST_F(GpuConvTc, VggLayersAtTheDevicesPlan) {
  const int layers[][3] = {{32, 3, 64}, {32, 64, 64}, {16, 128, 128}, {8, 256, 256}, {4, 512, 512}, {2, 512, 512}};
  for (const ConvPrecision precision : kPrecisions) {
    Worst worst;
    for (size_t i = 0; i < std::size(layers); ++i) {
      const auto [hw, c, k] = layers[i];
      TcCase cs = testing::tc_case(
          "vgg " + std::to_string(hw) + "x" + std::to_string(hw) + " " + std::to_string(c) + "->" + std::to_string(k),
          32, hw, hw, c, k, 3, 3, testing::conv_params(1, 1, 1, 1, 1, 1));
      cs.act = ConvActivation::relu;
      cs.seed = hash64(testing::kTcSeed + 4, i);
      EXPECT_TRUE(check_case(cs, precision, sm_count_, stream(), worst));
    }
    worst.print(std::string("vgg layers ") + cuda::conv_precision_name(precision), static_cast<int>(std::size(layers)));
  }
}

// The large tile's four stages take 64-68 KiB of dynamic shared memory in every pass: more than the
// 48 KiB a launch gets unless the launcher raises the kernel's attribute, within the device's opt-in
// maximum. The emulator checks its own model of that limit; this is the device's.
TEST_F(GpuConvTc, LargeTileSharedMemoryAboveTheDefaultLaunches) {
  int device = 0, optin = 0;
  CONVNET_CUDA_CHECK(cudaGetDevice(&device));
  CONVNET_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  TcCase cs = testing::tc_case("large tile", 2, 16, 16, 64, 64, 3, 3, testing::conv_params(1, 1, 1, 1, 1, 1));
  cs.force.tile = 128;
  cs.seed = hash64(testing::kTcSeed + 5, 0);
  for (const ConvPrecision precision : kPrecisions) {
    Worst worst;
    EXPECT_TRUE(check_case(cs, precision, sm_count_, stream(), worst));
    for (const ConvPass pass : kPasses) {  // the plans the case ran with
      const ConvTcPlan plan = cuda::conv_tc_plan(cs.shape(), pass, precision, sm_count_, cs.force);
      SCOPED_TRACE(std::string(cuda::conv_precision_name(precision)) + " " + cuda::conv_pass_name(pass));
      EXPECT_EQ(plan.tile, cuda::ConvTcTile::large);
      EXPECT_GT(plan.shared_bytes, size_t{48} * 1024);
      EXPECT_LE(plan.shared_bytes, static_cast<size_t>(optin));
    }
  }
}

// ConvOutputStats on the device: the per-channel sums of the stored y, from the forward kernel's
// epilogue (one slice) and from the pass over y after split-K, in both precisions, bit-identical
// on a rerun.
template <class E>
void check_output_stats(const TcCase& cs, int sm_count, cudaStream_t stream) {
  constexpr ConvPrecision precision = kPrecisionOf<E>;
  const TcInputs in(cs, precision);
  const ConvTcPlan plan = cuda::conv_tc_plan(in.shape, ConvPass::forward, precision, sm_count, cs.force);
  const DeviceArray<E> x = on_device<E>(in.x, 0, stream), w = on_device<E>(in.w, 0, stream);
  DeviceArray<E> y(static_cast<size_t>(in.dy.numel()));
  DeviceArray<unsigned char> ws(plan.workspace_with_stats_bytes());
  DeviceArray<float> sum(static_cast<size_t>(cs.k)), sum_sq(static_cast<size_t>(cs.k));
  std::vector<float> first_sum;
  for (int run = 0; run < 2; ++run) {
    CONVNET_CUDA_CHECK(cudaMemsetAsync(sum.get(), 0xff, sum.count() * sizeof(float), stream));  // NaN
    CONVNET_CUDA_CHECK(cudaMemsetAsync(sum_sq.get(), 0xff, sum_sq.count() * sizeof(float), stream));
    cuda::conv2d_forward_tc(x.get(), w.get(), nullptr, y.get(), cs.act, in.shape, plan, ws.get(), stream,
                            cuda::ConvOutputStats{sum.get(), sum_sq.get()});
    const std::vector<float> sums = sum.download(stream);
    testing::expect_output_sums(floats(y.download(stream)), cs.k, sums, sum_sq.download(stream));
    if (run == 0)
      first_sum = sums;
    else
      EXPECT_EQ(sums, first_sum) << "ConvOutputStats differ between runs";
  }
}

TEST_F(GpuConvTc, OutputStatsAreTheChannelSumsOfTheStoredOutput) {
  for (const int splits : {1, 4}) {
    TcCase cs = testing::tc_case("VGG-like layer", 8, 16, 16, 64, 96, 3, 3, testing::conv_params(1, 1, 1, 1, 1, 1));
    cs.act = ConvActivation::relu;
    cs.force.splits = splits;
    cs.seed = hash64(testing::kTcSeed + 6, static_cast<uint64_t>(splits));
    SCOPED_TRACE("splits " + std::to_string(splits));
    check_output_stats<float>(cs, sm_count_, stream());
    check_output_stats<uint16_t>(cs, sm_count_, stream());
  }
}

}  // namespace
}  // namespace convnet
