// conv_harness: validates every convolution kernel version (cuda/conv_kernels.h, and v4 of
// cuda/conv_tc_kernels.h in TF32 and BF16), then times it.
//
// For each problem (the VGG-16 CIFAR-10 layers at batch 128, a depthwise and a grouped layer, plus
// odd shapes: 3 channels, stride 2 and 3, dilation 2, channel counts that are not multiples of 4)
// and each pass and version: fill the outputs with NaN, run, compare with a reference and print
// the first mismatches; run v2 and v4 a second time and require bit-identical results; then time with CUDA
// events (warm-up, L2 flushed before every repetition, median) and print TFLOP/s.
//   v0, v2  relative L2 error within 1e-5 of the `cpu` backend for small problems, of v0 (fp64
//           accumulation) on the GPU for large ones, where the CPU would take minutes.
//   v4      every element within the bound of tests/common/conv_tc_bound.h (fp32 accumulation:
//           (reduction + slices + 8) * 2^-23 * sum |a*b|, + 2^-8 |ref| for BF16 y and dx) of v0 run
//           on the values the tensor cores multiply (TF32-rounded; BF16 inputs are rounded to
//           nearest even on the host and y, dx come back as bf16), sum |a*b| from v0 on their
//           absolute values. rel.err is the relative L2 error against that reference; the plan
//           column ends with the largest error as a share of the bound. Plans are made for this
//           device's SM count.
// cuDNN is not run here; `convnet benchmark --backend cuda_tf32` times v4 TF32 against cuDNN TF32
// and `convnet benchmark --backend cuda --precision bf16` v4 BF16 against cuDNN BF16 (cudnn@bf16).
//
// Usage: conv_harness [--quick] [--reps N] [--cpu-reference]
//   --quick          small problems only, 3 repetitions
//   --reps N         timed repetitions for v2 and v4 (default 20; v0 uses at most 3)
//   --cpu-reference  compare every problem against the CPU backend
// Exit status: 0 when every check passes (or there is no GPU, unless CONVNET_REQUIRE_GPU=1), 1 otherwise.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "core/base/backend.h"
#include "core/base/env_flag.h"
#include "core/base/precision.h"
#include "core/base/rng.h"
#include "core/base/tensor.h"
#include "core/cpu/cpu_backend.h"
#include "cuda/check.h"
#include "cuda/conv_kernels.h"
#include "cuda/conv_tc_kernels.h"
#include "cuda/device.h"
#include "cuda/stream.h"
#include "tests/common/conv_tc_bound.h"
#include "tests/common/device_array.h"

namespace convnet::cuda {
namespace {

using testing::DeviceArray;
using Outputs = std::vector<std::vector<float>>;  // a pass's outputs: y; dx; or dw and dbias

constexpr double kTolerance = 1e-5;
// Problems up to this many forward FLOPs are checked against the CPU backend.
constexpr int64_t kCpuReferenceFlops = int64_t{1} << 30;
constexpr ConvPass kPasses[] = {ConvPass::forward, ConvPass::backward_data, ConvPass::backward_filter};

struct Problem {
  std::string name;
  int n, h, w, c, k, r, s;
  Conv2dParams params;
  bool small;  // part of --quick
};

Conv2dParams conv_params(int stride, int pad, int dilation) {
  Conv2dParams p;
  p.stride_h = p.stride_w = stride;
  p.pad_h = p.pad_w = pad;
  p.dilation_h = p.dilation_w = dilation;
  return p;
}

std::vector<Problem> problems() {
  std::vector<Problem> list;
  // VGG-16 on CIFAR-10: 3x3, padding 1, stride 1 (one entry per distinct shape).
  const int vgg[][3] = {{32, 3, 64},   {32, 64, 64},  {16, 64, 128}, {16, 128, 128}, {8, 128, 256},
                        {8, 256, 256}, {4, 256, 512}, {4, 512, 512}, {2, 512, 512}};
  for (const auto& [hw, c, k] : vgg)
    list.push_back({"vgg " + std::to_string(hw) + "x" + std::to_string(hw) + " " + std::to_string(c) + "->" +
                        std::to_string(k) + " n128",
                    128, hw, hw, c, k, 3, 3, conv_params(1, 1, 1), false});
  // Grouped layers at batch 128 (Conv2dParams::groups; large, so v0 is their reference): MobileNet's
  // depthwise 3x3 and a ResNeXt 32x4d bottleneck's grouped 3x3.
  Conv2dParams depthwise = conv_params(1, 1, 1);
  depthwise.groups = 64;
  list.push_back({"depthwise 112x112 c64 n128", 128, 112, 112, 64, 64, 3, 3, depthwise, false});
  Conv2dParams grouped = conv_params(1, 1, 1);
  grouped.groups = 32;
  list.push_back({"grouped 56x56 c128 g32 n128", 128, 56, 56, 128, 128, 3, 3, grouped, false});
  // Odd shapes, small enough for the CPU reference.
  list.push_back({"vgg 32x32 64->64 n2", 2, 32, 32, 64, 64, 3, 3, conv_params(1, 1, 1), true});
  list.push_back({"c3 stride2 7x9", 2, 7, 9, 3, 5, 3, 3, conv_params(2, 1, 1), true});
  list.push_back({"c6 5x5 dilation2", 3, 11, 10, 6, 7, 5, 5, conv_params(1, 2, 2), true});
  list.push_back({"c12 stride3 no pad", 4, 13, 13, 12, 20, 3, 3, conv_params(3, 0, 1), true});
  list.push_back({"c8 2x2 stride2", 2, 9, 9, 8, 16, 2, 2, conv_params(2, 0, 1), true});
  list.push_back({"c1 1x1", 1, 5, 5, 1, 1, 1, 1, conv_params(1, 0, 1), true});
  list.push_back({"c64 stride2 dil2 k130", 4, 17, 15, 64, 130, 3, 3, conv_params(2, 2, 2), true});
  list.push_back({"c130 k36 4x4 pad2", 8, 12, 12, 130, 36, 4, 4, conv_params(1, 2, 1), true});
  list.push_back({"c256 k256 1x1 stride2", 8, 16, 16, 256, 256, 1, 1, conv_params(2, 0, 1), true});
  return list;
}

std::vector<float> random_floats(size_t count, Rng& rng) {
  std::vector<float> v(count);
  for (float& e : v) e = rng.uniform(-1.0f, 1.0f);
  return v;
}

// f applied to every element of v.
template <class F>
std::vector<float> mapped(const std::vector<float>& v, F&& f) {
  std::vector<float> out(v.size());
  std::transform(v.begin(), v.end(), out.begin(), f);
  return out;
}

// ||a - b|| / ||b||, +inf when a holds a NaN or infinity.
double relative_l2(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < b.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    num += d * d;
    den += static_cast<double>(b[i]) * static_cast<double>(b[i]);
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

void print_mismatches(const std::vector<float>& got, const std::vector<float>& want) {
  double rms = 0.0;
  for (const float v : want) rms += static_cast<double>(v) * v;
  rms = std::sqrt(rms / static_cast<double>(std::max<size_t>(want.size(), 1)));
  int shown = 0;
  for (size_t i = 0; i < want.size() && shown < 5; ++i) {
    const double diff = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (!(diff <= 10 * kTolerance * (std::fabs(want[i]) + rms))) {
      std::printf("      [%zu] got %.8g, expected %.8g\n", i, static_cast<double>(got[i]),
                  static_cast<double>(want[i]));
      ++shown;
    }
  }
}

// The inputs of the three passes, on the host.
struct Inputs {
  std::vector<float> x, w, bias, dy;
};

struct Buffers {
  DeviceArray<float> x, w, bias, dy, y, dx, dw, dbias, workspace;
  Buffers(const ConvShape& s, size_t workspace_floats)
      : x(size_t(s.n) * s.h * s.w * s.c),
        w(size_t(s.k) * s.r * s.s * s.group_c()),
        bias(size_t(s.k)),
        dy(size_t(s.n) * s.p * s.q * s.k),
        y(size_t(s.n) * s.p * s.q * s.k),
        dx(size_t(s.n) * s.h * s.w * s.c),
        dw(size_t(s.k) * s.r * s.s * s.group_c()),
        dbias(size_t(s.k)),
        workspace(workspace_floats) {}
  void upload(const Inputs& in, cudaStream_t stream) {
    x.upload(in.x, stream);
    w.upload(in.w, stream);
    bias.upload(in.bias, stream);
    dy.upload(in.dy, stream);
    CONVNET_CUDA_CHECK(cudaStreamSynchronize(stream));  // the host vectors may go
  }
};

Outputs reference_on_cpu(const ConvShape& s, const Inputs& in) {
  std::unique_ptr<Backend> cpu = make_cpu_backend();
  const Tensor tx = Tensor::from_vector({s.n, s.h, s.w, s.c}, in.x);
  const Tensor tw = Tensor::from_vector({s.k, s.r, s.s, s.group_c()}, in.w);
  const Tensor tb = Tensor::from_vector({s.k}, in.bias);
  const Tensor tdy = Tensor::from_vector({s.n, s.p, s.q, s.k}, in.dy);
  Tensor ty({s.n, s.p, s.q, s.k}), tdx({s.n, s.h, s.w, s.c}), tdw({s.k, s.r, s.s, s.group_c()}), tdb({s.k});
  cpu->conv2d_forward(tx, tw, &tb, ty, s.params);
  cpu->conv2d_backward_data(tdy, tw, tdx, s.params);
  cpu->conv2d_backward_filter(tx, tdy, tdw, &tdb, s.params);
  return {ty.to_vector(), tdx.to_vector(), tdw.to_vector(), tdb.to_vector()};
}

// Queues one pass of v0 or v2.
void run_pass(ConvPass pass, ConvVersion v, const ConvShape& s, Buffers& b, cudaStream_t stream) {
  switch (pass) {
    case ConvPass::forward:
      conv2d_forward(b.x.get(), b.w.get(), b.bias.get(), b.y.get(), s, stream, v);
      return;
    case ConvPass::backward_data:
      conv2d_backward_data(b.dy.get(), b.w.get(), b.dx.get(), s, stream, v);
      return;
    case ConvPass::backward_filter:
      conv2d_backward_filter(b.x.get(), b.dy.get(), b.dw.get(), b.dbias.get(), s, b.workspace.get(), stream, v);
      return;
  }
}

template <class E>
std::vector<float> as_floats(const std::vector<E>& v) {
  if constexpr (sizeof(E) == sizeof(float)) {
    return v;
  } else {
    std::vector<float> out(v.size());
    std::transform(v.begin(), v.end(), out.begin(), from_bf16_bits);
    return out;
  }
}

// Poisons the outputs (and `workspace`), runs `queue`, downloads the outputs as floats.
template <class E, class Queue>
Outputs poison_run_fetch(DeviceArray<E>* main, DeviceArray<float>* dbias, DeviceArray<float>& workspace,
                         cudaStream_t stream, Queue&& queue) {
  main->poison(stream);
  if (dbias) dbias->poison(stream);
  workspace.poison(stream);
  queue();
  Outputs out{as_floats(main->download(stream))};
  if (dbias) out.push_back(dbias->download(stream));
  return out;
}

// Poisons the pass's outputs, runs it and downloads them (dw and dbias for backward-filter).
Outputs run_and_fetch(ConvPass pass, ConvVersion v, const ConvShape& s, Buffers& b, cudaStream_t stream) {
  const bool filter = pass == ConvPass::backward_filter;
  DeviceArray<float>* main = pass == ConvPass::forward ? &b.y : filter ? &b.dw : &b.dx;
  return poison_run_fetch(main, filter ? &b.dbias : nullptr, b.workspace, stream,
                          [&] { run_pass(pass, v, s, b, stream); });
}

// Median milliseconds of `reps` runs of `queue`, each after an L2 flush.
template <class Queue>
double time_pass(DeviceArray<float>& flush, int reps, cudaStream_t stream, Queue&& queue) {
  queue();  // warm-up
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    flush.fill_bytes(i & 0xFF, stream);
    ms.push_back(time_on_stream_ms(stream, queue));
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

std::string plan_text(const ConvShape& s, ConvPass pass, ConvVersion v) {
  if (v == ConvVersion::v0_direct) return "1 thread/output, fp64 sum";
  const ConvGemmPlan p = conv_gemm_plan(s, pass);
  std::string text = std::to_string(p.block_m) + "x" + std::to_string(p.block_n) + "x" + std::to_string(p.block_k) +
                     (p.vectorized ? " float4" : " scalar");
  if (p.groups > 1) text += " groups " + std::to_string(p.groups);
  if (p.phases > 1) text += " phases " + std::to_string(p.phases);
  if (p.splits > 1) text += " split-K " + std::to_string(p.splits);
  return text;
}

std::string plan_text(const ConvTcPlan& p) {
  std::string text = std::to_string(p.block_m) + "x" + std::to_string(p.block_n) + "x" + std::to_string(p.block_k) +
                     (p.vectorized ? " cp.async" : " gather") + " " + std::to_string(p.shared_bytes / 1024) +
                     " KiB smem";
  if (p.groups > 1) text += " groups " + std::to_string(p.groups);
  if (p.phases > 1) text += " phases " + std::to_string(p.phases);
  if (p.splits > 1) text += " split-K " + std::to_string(p.splits);
  return text;
}

// v4 on one problem in one precision: the plans for this device, the inputs and y, dx in the
// precision's element type (TF32 uses the float Buffers; BF16 has its own bf16 copies, rounded
// to nearest even), dw and dbias in the Buffers, one workspace for the largest plan, and the
// references the outputs are held to.
class TcKernel {
 public:
  TcKernel(ConvPrecision precision, const ConvShape& s, const Inputs& in, Buffers& b, int sm_count, cudaStream_t stream)
      : precision_(precision),
        bf16_(precision == ConvPrecision::bf16),
        s_(s),
        b_(b),
        x_(bf16_ ? b.x.count() : 0),
        w_(bf16_ ? b.w.count() : 0),
        dy_(bf16_ ? b.dy.count() : 0),
        y_(bf16_ ? b.y.count() : 0),
        dx_(bf16_ ? b.dx.count() : 0),
        plans_(make_plans(precision, s, sm_count)),
        workspace_(largest_workspace(plans_) / sizeof(float)) {
    if (bf16_) {
      const auto bits = [](const std::vector<float>& v) {
        std::vector<uint16_t> out(v.size());
        std::transform(v.begin(), v.end(), out.begin(), to_bf16_bits);
        return out;
      };
      x_.upload(bits(in.x), stream);
      w_.upload(bits(in.w), stream);
      dy_.upload(bits(in.dy), stream);
      CONVNET_CUDA_CHECK(cudaStreamSynchronize(stream));
    }
    compute_references(in, stream);
  }

  std::string name() const { return bf16_ ? "v4 BF16" : "v4 TF32"; }
  const ConvTcPlan& plan(ConvPass pass) const { return plans_[static_cast<int>(pass)]; }

  void queue(ConvPass pass, cudaStream_t stream) {
    if (bf16_)
      queue_as(pass, x_, w_, dy_, y_, dx_, stream);
    else
      queue_as(pass, b_.x, b_.w, b_.dy, b_.y, b_.dx, stream);
  }

  Outputs run_and_fetch(ConvPass pass, cudaStream_t stream) {
    return bf16_ ? fetch_as(pass, y_, dx_, stream) : fetch_as(pass, b_.y, b_.dx, stream);
  }

  // The outputs of `pass` against the bound: how many of them have elements outside it (printing
  // the first few), and the largest error as a share of it.
  struct Verdict {
    int failed_outputs = 0;
    double worst_ratio = 0;
  };
  Verdict check(ConvPass pass, const Outputs& got, const char* problem) const {
    const testing::TcBound bound = testing::tc_bound(s_, pass, plan(pass));
    const int p = static_cast<int>(pass);
    Verdict verdict;
    for (size_t o = 0; o < got.size(); ++o) {
      const std::vector<float>& ref = value_[p][o];
      const std::vector<float>& mag = magnitude_[p][o];
      const testing::TcBoundCheck c = testing::check_tc_bound(got[o], ref, mag, bound);
      verdict.worst_ratio = std::fmax(verdict.worst_ratio, c.worst_ratio);
      if (c.outside == 0) continue;
      ++verdict.failed_outputs;
      std::printf("    %s %s %s output %zu: %zu of %zu elements outside the bound, first:\n", problem,
                  conv_pass_name(pass), name().c_str(), o, c.outside, ref.size());
      for (size_t j = 0; j < c.outside && j < std::size(c.first); ++j) {
        const size_t i = c.first[j];
        std::printf("      [%zu] got %.8g, expected %.8g (bound %.3g)\n", i, static_cast<double>(got[o][i]),
                    static_cast<double>(ref[i]), bound(ref[i], mag[i]));
      }
    }
    return verdict;
  }
  const Outputs& reference(ConvPass pass) const { return value_[static_cast<int>(pass)]; }

 private:
  // The pass on inputs and y, dx of element type E (float: TF32, bf16 bits: BF16).
  template <class E>
  void queue_as(ConvPass pass, const DeviceArray<E>& x, const DeviceArray<E>& w, const DeviceArray<E>& dy,
                DeviceArray<E>& y, DeviceArray<E>& dx, cudaStream_t stream) {
    void* ws = workspace_.get();
    switch (pass) {
      case ConvPass::forward:
        conv2d_forward_tc(x.get(), w.get(), b_.bias.get(), y.get(), ConvActivation::none, s_, plan(pass), ws, stream);
        return;
      case ConvPass::backward_data:
        conv2d_backward_data_tc(dy.get(), w.get(), dx.get(), s_, plan(pass), ws, stream);
        return;
      case ConvPass::backward_filter:
        conv2d_backward_filter_tc(x.get(), dy.get(), b_.dw.get(), b_.dbias.get(), s_, plan(pass), ws, stream);
        return;
    }
  }
  template <class E>
  Outputs fetch_as(ConvPass pass, DeviceArray<E>& y, DeviceArray<E>& dx, cudaStream_t stream) {
    const auto queued = [&] { queue(pass, stream); };
    if (pass == ConvPass::forward) return poison_run_fetch(&y, nullptr, workspace_, stream, queued);
    if (pass == ConvPass::backward_data) return poison_run_fetch(&dx, nullptr, workspace_, stream, queued);
    return poison_run_fetch(&b_.dw, &b_.dbias, workspace_, stream, queued);
  }

  static std::array<ConvTcPlan, 3> make_plans(ConvPrecision precision, const ConvShape& s, int sm_count) {
    std::array<ConvTcPlan, 3> plans;
    for (const ConvPass pass : kPasses) plans[static_cast<int>(pass)] = conv_tc_plan(s, pass, precision, sm_count);
    return plans;
  }
  static size_t largest_workspace(const std::array<ConvTcPlan, 3>& plans) {
    size_t bytes = 0;
    for (const ConvTcPlan& p : plans) bytes = std::max(bytes, p.workspace_bytes);
    return bytes;
  }

  // v0 (fp64 sums) on the values the tensor cores multiply, and on their absolute values for the
  // bound's sum |a*b|. dbias is no tensor-core sum: dy as received, summed on the host in double.
  void compute_references(const Inputs& in, cudaStream_t stream) {
    const auto received = [&](float v) { return testing::tc_received(v, precision_); };
    const auto multiplied = [&](float v) { return testing::tc_multiplied(v, precision_); };
    const auto magnitude = [&](float v) { return std::fabs(testing::tc_multiplied(v, precision_)); };
    const auto abs_value = [](float v) { return std::fabs(v); };
    Buffers ref(s_, 0);
    const auto v0_passes = [&](const Inputs& inputs, Outputs* out) {
      ref.upload(inputs, stream);
      for (const ConvPass pass : kPasses)
        out[static_cast<int>(pass)] = cuda::run_and_fetch(pass, ConvVersion::v0_direct, s_, ref, stream);
    };
    v0_passes({mapped(in.x, multiplied), mapped(in.w, multiplied), in.bias, mapped(in.dy, multiplied)}, value_);
    v0_passes({mapped(in.x, magnitude), mapped(in.w, magnitude), mapped(in.bias, abs_value), mapped(in.dy, magnitude)},
              magnitude_);
    std::vector<double> sum(size_t(s_.k), 0.0), sum_abs(size_t(s_.k), 0.0);
    for (size_t i = 0; i < in.dy.size(); ++i) {
      const double v = received(in.dy[i]);
      sum[i % sum.size()] += v;
      sum_abs[i % sum.size()] += std::fabs(v);
    }
    const int filter = static_cast<int>(ConvPass::backward_filter);
    value_[filter][1].assign(sum.begin(), sum.end());
    magnitude_[filter][1].assign(sum_abs.begin(), sum_abs.end());
  }

  ConvPrecision precision_;
  bool bf16_;
  ConvShape s_;
  Buffers& b_;
  DeviceArray<uint16_t> x_, w_, dy_, y_, dx_;
  std::array<ConvTcPlan, 3> plans_;
  DeviceArray<float> workspace_;
  Outputs value_[3], magnitude_[3];  // per pass, per output
};

struct Options {
  bool quick = false;
  bool cpu_reference = false;
  int reps = 20;
};

// A result row: "problem pass version rel.err ms TFLOP/s plan [<-- status]".
void print_row(const std::string& problem, ConvPass pass, const std::string& version, const char* err_text, double ms,
               double gflop, const std::string& plan, const std::string& status) {
  std::printf("%-26s %-16s %-17s %-10s %-10.4f %-9.2f %s%s%s\n", problem.c_str(), conv_pass_name(pass), version.c_str(),
              err_text, ms, gflop / ms, plan.c_str(), status == "ok" ? "" : "  <-- ",
              status == "ok" ? "" : status.c_str());
  std::fflush(stdout);
}

bool same_bits(const Outputs& a, const Outputs& b) {
  for (size_t o = 0; o < a.size(); ++o)
    if (std::memcmp(a[o].data(), b[o].data(), a[o].size() * sizeof(float)) != 0) return false;
  return true;
}

int run(const Options& opt) {
  const std::vector<GpuInfo> gpus = query_gpus();
  int device = 0, sm_count = 0, l2_bytes = 0;
  CONVNET_CUDA_CHECK(cudaGetDevice(&device));
  CONVNET_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device));
  CONVNET_CUDA_CHECK(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, device));
  // TF32 and BF16 mma need compute capability 8.0.
  const bool tensor_cores = gpus[0].sm_major >= 8;
  std::printf("conv_harness on %s (sm_%d%d, %d SMs); v0, v2: tolerance %.0e relative L2; v4: %s\n",
              gpus[0].name.c_str(), gpus[0].sm_major, gpus[0].sm_minor, sm_count, kTolerance,
              tensor_cores ? "per-element bound on the rounded inputs" : "not run (no TF32/BF16 tensor cores)");
  CudaStream stream_owner;
  const cudaStream_t stream = stream_owner.get();
  DeviceArray<float> flush(2 * static_cast<size_t>(l2_bytes) / sizeof(float));

  const ConvVersion versions[] = {ConvVersion::v0_direct, ConvVersion::v2_implicit_gemm};
  int failures = 0, checks = 0;
  std::printf("%-26s %-16s %-17s %-10s %-10s %-9s %s\n", "problem", "pass", "version", "rel.err", "ms", "TFLOP/s",
              "plan");
  for (const Problem& pr : problems()) {
    if (opt.quick && !pr.small) continue;
    const ConvShape s = ConvShape::make(pr.n, pr.h, pr.w, pr.c, pr.k, pr.r, pr.s, pr.params);
    Rng rng(0xC0DE + static_cast<uint64_t>(pr.n * 131 + pr.c * 17 + pr.k));
    Inputs in;
    in.x = random_floats(size_t(s.n) * s.h * s.w * s.c, rng);
    in.w = random_floats(size_t(s.k) * s.r * s.s * s.group_c(), rng);
    in.bias = random_floats(size_t(s.k), rng);
    in.dy = random_floats(size_t(s.n) * s.p * s.q * s.k, rng);
    Buffers b(s, conv2d_backward_filter_workspace(s) / sizeof(float));
    b.upload(in, stream);

    const bool cpu_ref = opt.cpu_reference || s.forward_flops() <= kCpuReferenceFlops;
    Outputs want[3];  // per pass
    if (cpu_ref) {
      const Outputs r = reference_on_cpu(s, in);
      want[0] = {r[0]};
      want[1] = {r[1]};
      want[2] = {r[2], r[3]};
    } else {
      for (int i = 0; i < 3; ++i) want[i] = run_and_fetch(kPasses[i], ConvVersion::v0_direct, s, b, stream);
    }
    std::vector<std::unique_ptr<TcKernel>> tc;
    if (tensor_cores)
      for (const ConvPrecision p : {ConvPrecision::tf32, ConvPrecision::bf16})
        tc.push_back(std::make_unique<TcKernel>(p, s, in, b, sm_count, stream));

    const double gflop = static_cast<double>(s.forward_flops()) * 1e-9;
    for (int pi = 0; pi < 3; ++pi) {
      const ConvPass pass = kPasses[pi];
      for (const ConvVersion v : versions) {
        const bool is_reference = !cpu_ref && v == ConvVersion::v0_direct;
        std::string status = "ok";
        double err = 0.0;
        if (!is_reference) {
          const Outputs got = run_and_fetch(pass, v, s, b, stream);
          for (size_t o = 0; o < got.size(); ++o) {
            const double e = relative_l2(got[o], want[pi][o]);
            err = std::max(err, e);
            ++checks;
            if (!(e <= kTolerance)) {
              ++failures;
              status = "FAILED";
              std::printf("    %s %s %s output %zu: relative L2 error %.3g, first mismatches:\n", pr.name.c_str(),
                          conv_pass_name(pass), conv_version_name(v), o, e);
              print_mismatches(got[o], want[pi][o]);
            }
          }
          if (v == ConvVersion::v2_implicit_gemm) {  // deterministic: a second run gives the same bits
            ++checks;
            if (!same_bits(got, run_and_fetch(pass, v, s, b, stream))) {
              ++failures;
              status = "NOT REPRODUCIBLE";
            }
          }
        }
        const int reps = v == ConvVersion::v0_direct ? std::min(opt.reps, 3) : opt.reps;
        const double ms = time_pass(flush, reps, stream, [&] { run_pass(pass, v, s, b, stream); });
        char err_text[32];
        if (is_reference)
          std::snprintf(err_text, sizeof err_text, "reference");
        else
          std::snprintf(err_text, sizeof err_text, "%.2e", err);
        print_row(pr.name, pass, conv_version_name(v), err_text, ms, gflop, plan_text(s, pass, v), status);
      }
      for (const std::unique_ptr<TcKernel>& k : tc) {
        std::string status = "ok";
        const Outputs got = k->run_and_fetch(pass, stream);
        const TcKernel::Verdict verdict = k->check(pass, got, pr.name.c_str());
        checks += static_cast<int>(got.size()) + 1;  // each output, and the rerun
        if (verdict.failed_outputs > 0) {
          failures += verdict.failed_outputs;
          status = "FAILED";
        }
        if (!same_bits(got, k->run_and_fetch(pass, stream))) {
          ++failures;
          status = "NOT REPRODUCIBLE";
        }
        double err = 0.0;
        for (size_t o = 0; o < got.size(); ++o) err = std::max(err, relative_l2(got[o], k->reference(pass)[o]));
        const double ms = time_pass(flush, opt.reps, stream, [&] { k->queue(pass, stream); });
        char err_text[32];
        std::snprintf(err_text, sizeof err_text, "%.2e", err);
        char share[48];
        std::snprintf(share, sizeof share, ", error <= %.2g%% of bound", 100 * verdict.worst_ratio);
        print_row(pr.name, pass, k->name(), err_text, ms, gflop, plan_text(k->plan(pass)) + share, status);
      }
    }
  }
  std::printf("%d checks, %d failed\n", checks, failures);
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace convnet::cuda

int main(int argc, char** argv) {
  convnet::cuda::Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--quick") {
      opt.quick = true;
      opt.reps = 3;
    } else if (arg == "--cpu-reference") {
      opt.cpu_reference = true;
    } else if (arg == "--reps" && i + 1 < argc) {
      opt.reps = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: conv_harness [--quick] [--reps N] [--cpu-reference]\n");
      return 2;
    }
  }
  try {
    if (convnet::cuda::gpu_count() == 0) {
      // Nothing to validate or time: not a failure, unless the caller (tools/gpu_check.sh) needs
      // the GPU and must not pass without one.
      const bool required = convnet::env_flag("CONVNET_REQUIRE_GPU", false);
      std::printf("no CUDA device: %s%s\n", convnet::cuda::gpu_unavailable_reason().c_str(),
                  required ? " (CONVNET_REQUIRE_GPU=1: failing)" : "");
      return required ? 1 : 0;
    }
    return convnet::cuda::run(opt);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "conv_harness: %s\n", e.what());
    return 1;
  }
}
