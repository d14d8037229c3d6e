// conv_harness: validates every convolution kernel version (cuda/conv_kernels.h), then times it.
//
// For each problem (the VGG-16 CIFAR-10 layers at batch 128, plus odd shapes: 3 channels,
// stride 2 and 3, dilation 2, channel counts that are not multiples of 4) and each pass and
// version: fill the outputs with NaN, run, compare with a reference by relative L2 error
// (tolerance 1e-5) and print the first mismatches; run v2 a second time and require bit-identical
// results; then time with CUDA events (warm-up, L2 flushed before every repetition, median) and
// print TFLOP/s. The reference is the `cpu` backend for small problems and v0 (fp64 accumulation)
// on the GPU for large ones, where the CPU would take minutes.
//
// Usage: conv_harness [--quick] [--reps N] [--cpu-reference]
//   --quick          small problems only, 3 repetitions
//   --reps N         timed repetitions for v2 (default 20; v0 uses at most 3)
//   --cpu-reference  compare every problem against the CPU backend
// Exit status: 0 when every check passes (or there is no GPU, unless CONVNET_REQUIRE_GPU=1), 1 otherwise.
#include <cuda_runtime_api.h>

#include <algorithm>
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
#include "core/base/rng.h"
#include "core/base/tensor.h"
#include "core/cpu/cpu_backend.h"
#include "cuda/check.h"
#include "cuda/conv_kernels.h"
#include "cuda/device.h"
#include "cuda/stream.h"

namespace convnet::cuda {
namespace {

constexpr double kTolerance = 1e-5;
// Problems up to this many forward FLOPs are checked against the CPU backend.
constexpr int64_t kCpuReferenceFlops = int64_t{1} << 30;

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

// Device memory for one buffer of floats.
class DeviceFloats {
 public:
  explicit DeviceFloats(size_t count) : count_(std::max<size_t>(count, 1)) {
    CONVNET_CUDA_CHECK(cudaMalloc(&ptr_, count_ * sizeof(float)));
  }
  ~DeviceFloats() { cudaFree(ptr_); }
  DeviceFloats(const DeviceFloats&) = delete;
  DeviceFloats& operator=(const DeviceFloats&) = delete;
  float* get() const { return static_cast<float*>(ptr_); }
  size_t count() const { return count_; }
  void upload(const std::vector<float>& v, cudaStream_t stream) {
    CONVNET_CUDA_CHECK(cudaMemcpyAsync(ptr_, v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice, stream));
  }
  std::vector<float> download(size_t count, cudaStream_t stream) const {
    std::vector<float> v(count);
    CONVNET_CUDA_CHECK(cudaMemcpyAsync(v.data(), ptr_, count * sizeof(float), cudaMemcpyDeviceToHost, stream));
    CONVNET_CUDA_CHECK(cudaStreamSynchronize(stream));
    return v;
  }
  void poison(cudaStream_t stream) {  // all bits set: NaN
    CONVNET_CUDA_CHECK(cudaMemsetAsync(ptr_, 0xFF, count_ * sizeof(float), stream));
  }

 private:
  void* ptr_ = nullptr;
  size_t count_;
};

std::vector<float> random_floats(size_t count, Rng& rng) {
  std::vector<float> v(count);
  for (float& e : v) e = rng.uniform(-1.0f, 1.0f);
  return v;
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

// The outputs of the three passes.
struct Results {
  std::vector<float> y, dx, dw, dbias;
};

struct Buffers {
  DeviceFloats x, w, bias, dy, y, dx, dw, dbias, workspace;
  Buffers(const ConvShape& s, size_t workspace_floats)
      : x(size_t(s.n) * s.h * s.w * s.c),
        w(size_t(s.k) * s.r * s.s * s.c),
        bias(size_t(s.k)),
        dy(size_t(s.n) * s.p * s.q * s.k),
        y(size_t(s.n) * s.p * s.q * s.k),
        dx(size_t(s.n) * s.h * s.w * s.c),
        dw(size_t(s.k) * s.r * s.s * s.c),
        dbias(size_t(s.k)),
        workspace(workspace_floats) {}
};

Results reference_on_cpu(const ConvShape& s, const std::vector<float>& x, const std::vector<float>& w,
                         const std::vector<float>& bias, const std::vector<float>& dy) {
  std::unique_ptr<Backend> cpu = make_cpu_backend();
  const Tensor tx = Tensor::from_vector({s.n, s.h, s.w, s.c}, x);
  const Tensor tw = Tensor::from_vector({s.k, s.r, s.s, s.c}, w);
  const Tensor tb = Tensor::from_vector({s.k}, bias);
  const Tensor tdy = Tensor::from_vector({s.n, s.p, s.q, s.k}, dy);
  Tensor ty({s.n, s.p, s.q, s.k}), tdx({s.n, s.h, s.w, s.c}), tdw({s.k, s.r, s.s, s.c}), tdb({s.k});
  cpu->conv2d_forward(tx, tw, &tb, ty, s.params);
  cpu->conv2d_backward_data(tdy, tw, tdx, s.params);
  cpu->conv2d_backward_filter(tx, tdy, tdw, &tdb, s.params);
  return {ty.to_vector(), tdx.to_vector(), tdw.to_vector(), tdb.to_vector()};
}

// Queues one pass of one version.
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

// Poisons the pass's outputs, runs it and downloads them (dw and dbias for backward-filter).
std::vector<std::vector<float>> run_and_fetch(ConvPass pass, ConvVersion v, const ConvShape& s, Buffers& b,
                                              cudaStream_t stream) {
  const size_t ny = size_t(s.n) * s.p * s.q * s.k, nx = size_t(s.n) * s.h * s.w * s.c,
               nw = size_t(s.k) * s.r * s.s * s.c;
  switch (pass) {
    case ConvPass::forward:
      b.y.poison(stream);
      run_pass(pass, v, s, b, stream);
      return {b.y.download(ny, stream)};
    case ConvPass::backward_data:
      b.dx.poison(stream);
      run_pass(pass, v, s, b, stream);
      return {b.dx.download(nx, stream)};
    case ConvPass::backward_filter:
      b.dw.poison(stream);
      b.dbias.poison(stream);
      b.workspace.poison(stream);
      run_pass(pass, v, s, b, stream);
      return {b.dw.download(nw, stream), b.dbias.download(size_t(s.k), stream)};
  }
  return {};
}

// Median milliseconds of `reps` runs, each after an L2 flush.
double time_pass(ConvPass pass, ConvVersion v, const ConvShape& s, Buffers& b, DeviceFloats& flush, int reps,
                 cudaStream_t stream) {
  run_pass(pass, v, s, b, stream);  // warm-up
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    CONVNET_CUDA_CHECK(cudaMemsetAsync(flush.get(), i & 0xFF, flush.count() * sizeof(float), stream));
    ms.push_back(time_on_stream_ms(stream, [&] { run_pass(pass, v, s, b, stream); }));
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

std::string plan_text(const ConvShape& s, ConvPass pass, ConvVersion v) {
  if (v == ConvVersion::v0_direct) return "1 thread/output, fp64 sum";
  const ConvGemmPlan p = conv_gemm_plan(s, pass);
  std::string text = std::to_string(p.block_m) + "x" + std::to_string(p.block_n) + "x" + std::to_string(p.block_k) +
                     (p.vectorized ? " float4" : " scalar");
  if (p.phases > 1) text += " phases " + std::to_string(p.phases);
  if (p.splits > 1) text += " split-K " + std::to_string(p.splits);
  return text;
}

struct Options {
  bool quick = false;
  bool cpu_reference = false;
  int reps = 20;
};

int run(const Options& opt) {
  const std::vector<GpuInfo> gpus = query_gpus();
  std::printf("conv_harness on %s (sm_%d%d, %d SMs); tolerance %.0e relative L2\n", gpus[0].name.c_str(),
              gpus[0].sm_major, gpus[0].sm_minor, gpus[0].sm_count, kTolerance);
  CudaStream stream_owner;
  const cudaStream_t stream = stream_owner.get();
  int l2_bytes = 0;
  CONVNET_CUDA_CHECK(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, 0));
  DeviceFloats flush(2 * static_cast<size_t>(l2_bytes) / sizeof(float));

  const ConvPass passes[] = {ConvPass::forward, ConvPass::backward_data, ConvPass::backward_filter};
  const ConvVersion versions[] = {ConvVersion::v0_direct, ConvVersion::v2_implicit_gemm};
  int failures = 0, checks = 0;
  std::printf("%-26s %-16s %-17s %-10s %-10s %-9s %s\n", "problem", "pass", "version", "rel.err", "ms", "TFLOP/s",
              "plan");
  for (const Problem& pr : problems()) {
    if (opt.quick && !pr.small) continue;
    const ConvShape s = ConvShape::make(pr.n, pr.h, pr.w, pr.c, pr.k, pr.r, pr.s, pr.params);
    Rng rng(0xC0DE + static_cast<uint64_t>(pr.n * 131 + pr.c * 17 + pr.k));
    const std::vector<float> x = random_floats(size_t(s.n) * s.h * s.w * s.c, rng);
    const std::vector<float> w = random_floats(size_t(s.k) * s.r * s.s * s.c, rng);
    const std::vector<float> bias = random_floats(size_t(s.k), rng);
    const std::vector<float> dy = random_floats(size_t(s.n) * s.p * s.q * s.k, rng);
    Buffers b(s, conv2d_backward_filter_workspace(s) / sizeof(float));
    b.x.upload(x, stream);
    b.w.upload(w, stream);
    b.bias.upload(bias, stream);
    b.dy.upload(dy, stream);

    const bool cpu_ref = opt.cpu_reference || s.forward_flops() <= kCpuReferenceFlops;
    std::vector<std::vector<float>> want[3];  // per pass
    if (cpu_ref) {
      Results r = reference_on_cpu(s, x, w, bias, dy);
      want[0] = {r.y};
      want[1] = {r.dx};
      want[2] = {r.dw, r.dbias};
    } else {
      for (int i = 0; i < 3; ++i) want[i] = run_and_fetch(passes[i], ConvVersion::v0_direct, s, b, stream);
    }

    const double gflop = static_cast<double>(s.forward_flops()) * 1e-9;
    for (int pi = 0; pi < 3; ++pi) {
      const ConvPass pass = passes[pi];
      for (const ConvVersion v : versions) {
        const bool is_reference = !cpu_ref && v == ConvVersion::v0_direct;
        std::string status = "ok";
        double err = 0.0;
        if (!is_reference) {
          const std::vector<std::vector<float>> got = run_and_fetch(pass, v, s, b, stream);
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
            const std::vector<std::vector<float>> again = run_and_fetch(pass, v, s, b, stream);
            ++checks;
            for (size_t o = 0; o < got.size(); ++o)
              if (std::memcmp(got[o].data(), again[o].data(), got[o].size() * sizeof(float)) != 0) {
                ++failures;
                status = "NOT REPRODUCIBLE";
              }
          }
        }
        const int reps = v == ConvVersion::v0_direct ? std::min(opt.reps, 3) : opt.reps;
        const double ms = time_pass(pass, v, s, b, flush, reps, stream);
        char err_text[32];
        if (is_reference)
          std::snprintf(err_text, sizeof err_text, "reference");
        else
          std::snprintf(err_text, sizeof err_text, "%.2e", err);
        std::printf("%-26s %-16s %-17s %-10s %-10.4f %-9.2f %s%s%s\n", pr.name.c_str(), conv_pass_name(pass),
                    conv_version_name(v), err_text, ms, gflop / ms, plan_text(s, pass, v).c_str(),
                    status == "ok" ? "" : "  <-- ", status == "ok" ? "" : status.c_str());
        std::fflush(stdout);
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
