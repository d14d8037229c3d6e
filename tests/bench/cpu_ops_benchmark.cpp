// Throughput of the cpu backend's ops through the Backend interface, on the shapes VGG-11 meets
// training on CIFAR-10 at batch 64.
//
// Convolutions report GFLOP/s (2*N*P*Q*K*R*S*C per call) next to a plain sgemm of the forward
// pass's GEMM size (M = N*P*Q, N = K, K = R*S*C) through linear_forward, so the im2col overhead of
// each pass is visible. Memory-bound ops report GB/s of compulsory traffic: every tensor the op
// must read or write counted once, whatever extra passes the implementation makes.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "core/base/backend.h"
#include "core/base/rng.h"
#include "core/base/tensor.h"
#include "core/cpu/cpu_backend.h"

namespace convnet {
namespace {

constexpr int64_t kBatch = 64;

Backend& backend() {
  static const std::unique_ptr<Backend> instance = make_cpu_backend();
  return *instance;
}

// Host f32 tensor, uniform in [low, high): never zeros, so no op can take a shortcut.
Tensor random_tensor(const Shape& shape, uint64_t seed, float low = -1.0f, float high = 1.0f) {
  Tensor t = backend().empty(shape);
  float* p = t.f32();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = low + (high - low) * hash_uniform(seed, static_cast<uint64_t>(i));
  return t;
}

void set_rate(benchmark::State& state, const char* name, double units_per_call) {
  state.counters[name] = benchmark::Counter(units_per_call * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
void set_gbps(benchmark::State& state, double bytes_per_call) {
  set_rate(state, "GB/s", bytes_per_call);
}

// --- convolution: VGG-11's seven 3x3, pad 1, stride 1 layers ---

struct ConvLayer {
  const char* name;
  int64_t c, k, hw;  // input channels, output channels, spatial extent (H = W = P = Q)
};
constexpr ConvLayer kVgg11Layers[] = {
    {"conv1", 3, 64, 32},   {"conv2", 64, 128, 16}, {"conv3", 128, 256, 8}, {"conv4", 256, 256, 8},
    {"conv5", 256, 512, 4}, {"conv6", 512, 512, 4}, {"conv7", 512, 512, 2},
};
constexpr int64_t kKernel = 3;
constexpr Conv2dParams kConvParams{.stride_h = 1, .stride_w = 1, .pad_h = 1, .pad_w = 1};

double conv_flops(const ConvLayer& l) {
  return 2.0 * static_cast<double>(kBatch * l.hw * l.hw * l.k * kKernel * kKernel * l.c);
}

enum class ConvPass { forward, backward_data, backward_filter };

void bm_conv(benchmark::State& state, ConvLayer l, ConvPass pass) {
  Backend& be = backend();
  const Shape x_shape{kBatch, l.hw, l.hw, l.c}, y_shape{kBatch, l.hw, l.hw, l.k};
  Tensor w = random_tensor({l.k, kKernel, kKernel, l.c}, 1, -0.1f, 0.1f);
  Tensor x = random_tensor(x_shape, 2);
  Tensor dy = random_tensor(y_shape, 3);
  Tensor y = be.empty(y_shape), dx = be.empty(x_shape), dw = be.empty(w.shape());
  for (auto _ : state) {
    switch (pass) {
      case ConvPass::forward:
        be.conv2d_forward(x, w, nullptr, y, kConvParams);
        benchmark::DoNotOptimize(y.raw());
        break;
      case ConvPass::backward_data:
        be.conv2d_backward_data(dy, w, dx, kConvParams);
        benchmark::DoNotOptimize(dx.raw());
        break;
      case ConvPass::backward_filter:
        be.conv2d_backward_filter(x, dy, dw, nullptr, kConvParams);
        benchmark::DoNotOptimize(dw.raw());
        break;
    }
    benchmark::ClobberMemory();
  }
  set_rate(state, "GFLOP/s", conv_flops(l));
}

// The forward pass's GEMM alone: [N*P*Q, R*S*C] x [K, R*S*C]^T.
void bm_conv_gemm(benchmark::State& state, ConvLayer l) {
  Backend& be = backend();
  const int64_t m = kBatch * l.hw * l.hw, n = l.k, k = kKernel * kKernel * l.c;
  Tensor a = random_tensor({m, k}, 4);
  Tensor b = random_tensor({n, k}, 5, -0.1f, 0.1f);
  Tensor c = be.empty({m, n});
  for (auto _ : state) {
    be.linear_forward(a, b, nullptr, c);
    benchmark::DoNotOptimize(c.raw());
    benchmark::ClobberMemory();
  }
  set_rate(state, "GFLOP/s", conv_flops(l));
}

// --- memory-bound ops on conv1's output activation [64, 32, 32, 64] ---

const Shape kActivation{kBatch, 32, 32, 64};
const double kActivationBytes = static_cast<double>(shape_numel(kActivation)) * sizeof(float);
constexpr Pool2dParams kPool{};  // 2x2, stride 2

void bm_max_pool_forward(benchmark::State& state) {
  Backend& be = backend();
  Tensor x = random_tensor(kActivation, 6);
  const Shape out{kBatch, 16, 16, 64};
  Tensor y = be.empty(out), argmax = be.empty(out, DType::i32);
  for (auto _ : state) {
    be.max_pool2d_forward(x, y, argmax, kPool);
    benchmark::DoNotOptimize(y.raw());
    benchmark::ClobberMemory();
  }
  set_gbps(state, kActivationBytes * 1.5);  // x read; y and argmax (a quarter each) written
}

void bm_max_pool_backward(benchmark::State& state) {
  Backend& be = backend();
  const Shape out{kBatch, 16, 16, 64};
  Tensor x = random_tensor(kActivation, 6);
  Tensor y = be.empty(out), argmax = be.empty(out, DType::i32);
  be.max_pool2d_forward(x, y, argmax, kPool);  // a realistic argmax
  Tensor dy = random_tensor(out, 7);
  Tensor dx = be.empty(kActivation);
  for (auto _ : state) {
    be.max_pool2d_backward(dy, argmax, dx, kPool);
    benchmark::DoNotOptimize(dx.raw());
    benchmark::ClobberMemory();
  }
  set_gbps(state, kActivationBytes * 1.5);  // dy and argmax (a quarter each) read; dx written
}

void bm_relu_forward(benchmark::State& state) {
  Backend& be = backend();
  Tensor x = random_tensor(kActivation, 8);
  Tensor y = be.empty(kActivation);
  for (auto _ : state) {
    be.relu_forward(x, y);
    benchmark::DoNotOptimize(y.raw());
    benchmark::ClobberMemory();
  }
  set_gbps(state, kActivationBytes * 2);  // x read, y written
}

void bm_relu_backward(benchmark::State& state) {
  Backend& be = backend();
  Tensor y = random_tensor(kActivation, 9);  // signed, so about half the mask is zero
  Tensor dy = random_tensor(kActivation, 10);
  Tensor dx = be.empty(kActivation);
  for (auto _ : state) {
    be.relu_backward(y, dy, dx);
    benchmark::DoNotOptimize(dx.raw());
    benchmark::ClobberMemory();
  }
  set_gbps(state, kActivationBytes * 3);  // y and dy read, dx written
}

struct BatchNormTensors {
  Tensor x, gamma, beta, y, mean, invstd, running_mean, running_var;
  BatchNormTensors() {
    const int64_t c = kActivation.back();
    x = random_tensor(kActivation, 11, -2.0f, 3.0f);
    gamma = random_tensor({c}, 12, 0.5f, 1.5f);
    beta = random_tensor({c}, 13);
    running_mean = random_tensor({c}, 14);
    running_var = random_tensor({c}, 15, 0.5f, 1.5f);
    y = backend().empty(kActivation);
    mean = backend().empty({c});
    invstd = backend().empty({c});
  }
  void forward() {
    backend().batch_norm_forward_train(x, gamma, beta, y, mean, invstd, running_mean, running_var, 0.1f, 1e-5f);
  }
};

void bm_batch_norm_forward_train(benchmark::State& state) {
  BatchNormTensors t;
  for (auto _ : state) {
    t.forward();
    benchmark::DoNotOptimize(t.y.raw());
    benchmark::ClobberMemory();
  }
  set_gbps(state, kActivationBytes * 2);  // x read, y written (the [C] vectors are negligible)
}

void bm_batch_norm_backward(benchmark::State& state) {
  Backend& be = backend();
  BatchNormTensors t;
  t.forward();  // saved mean and invstd of this batch
  Tensor dy = random_tensor(kActivation, 16);
  Tensor dx = be.empty(kActivation), dgamma = be.empty(t.gamma.shape()), dbeta = be.empty(t.beta.shape());
  for (auto _ : state) {
    be.batch_norm_backward(t.x, dy, t.gamma, t.mean, t.invstd, dx, dgamma, dbeta);
    benchmark::DoNotOptimize(dx.raw());
    benchmark::ClobberMemory();
  }
  set_gbps(state, kActivationBytes * 3);  // x and dy read, dx written
}

// --- loss and optimizer ---

void bm_softmax_cross_entropy(benchmark::State& state) {
  Backend& be = backend();
  constexpr int64_t kClasses = 10;
  Tensor logits = random_tensor({kBatch, kClasses}, 17, -5.0f, 5.0f);
  Tensor labels = be.empty({kBatch}, DType::i32);
  for (int64_t i = 0; i < kBatch; ++i)
    labels.data<int32_t>()[i] = static_cast<int32_t>(hash64(18, static_cast<uint64_t>(i)) % kClasses);
  Tensor loss = be.empty({1}), probs = be.empty({kBatch, kClasses}), dlogits = be.empty({kBatch, kClasses});
  for (auto _ : state) {
    be.softmax_cross_entropy_forward(logits, labels, 0.1f, loss, probs);
    be.softmax_cross_entropy_backward(probs, labels, 0.1f, dlogits);
    benchmark::DoNotOptimize(dlogits.raw());
    benchmark::ClobberMemory();
  }
}

void bm_sgd_update(benchmark::State& state) {
  Backend& be = backend();
  constexpr int64_t kParams = 2'400'000;
  Tensor param = random_tensor({kParams}, 19);
  Tensor grad = random_tensor({kParams}, 20, -0.01f, 0.01f);
  Tensor buf = random_tensor({kParams}, 21, -0.01f, 0.01f);
  const SgdStep step{.lr = 1e-3f, .momentum = 0.9f, .weight_decay = 5e-4f};
  for (auto _ : state) {
    be.sgd_update(param, grad, buf, step, nullptr);
    benchmark::DoNotOptimize(param.raw());
    benchmark::ClobberMemory();
  }
  set_gbps(state, static_cast<double>(kParams) * sizeof(float) * 5);  // param, grad, buf read; param, buf written
}

// Minimum wall time per benchmark: long enough for several iterations of the largest conv, short
// enough that the whole binary stays well under a minute on two cores.
constexpr double kConvMinTime = 0.5;
constexpr double kMinTime = 0.2;

bool register_all() {
  const std::pair<const char*, ConvPass> passes[] = {{"conv2d_forward", ConvPass::forward},
                                                     {"conv2d_backward_data", ConvPass::backward_data},
                                                     {"conv2d_backward_filter", ConvPass::backward_filter}};
  for (const ConvLayer& l : kVgg11Layers) {
    const std::string shape =
        std::string(l.name) + "/" + std::to_string(l.c) + "x" + std::to_string(l.k) + "@" + std::to_string(l.hw);
    for (const auto& [name, pass] : passes)
      benchmark::RegisterBenchmark((std::string(name) + "/" + shape).c_str(), bm_conv, l, pass)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime()
          ->MinTime(kConvMinTime);
    benchmark::RegisterBenchmark(("gemm_equivalent/" + shape).c_str(), bm_conv_gemm, l)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime()
        ->MinTime(kConvMinTime);
  }
  const std::pair<const char*, void (*)(benchmark::State&)> others[] = {
      {"max_pool2d_forward/64x32x32x64", bm_max_pool_forward},
      {"max_pool2d_backward/64x32x32x64", bm_max_pool_backward},
      {"relu_forward/64x32x32x64", bm_relu_forward},
      {"relu_backward/64x32x32x64", bm_relu_backward},
      {"batch_norm_forward_train/64x32x32x64", bm_batch_norm_forward_train},
      {"batch_norm_backward/64x32x32x64", bm_batch_norm_backward},
      {"softmax_cross_entropy_fwd_bwd/64x10", bm_softmax_cross_entropy},
      {"sgd_update/2.4M", bm_sgd_update},
  };
  for (const auto& [name, fn] : others)
    benchmark::RegisterBenchmark(name, fn)->Unit(benchmark::kMicrosecond)->UseRealTime()->MinTime(kMinTime);
  return true;
}

[[maybe_unused]] const bool registered = register_all();

}  // namespace
}  // namespace convnet
