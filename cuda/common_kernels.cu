// Kernels both GPU backends share: fill, dropout, softmax cross-entropy, the training statistics
// and the fused SGD update.
// Each reproduces the arithmetic of the cpu reference (core/cpu) in the same operation order;
// where nvcc would contract a multiply and an add into one FMA (which the cpu build never does),
// the *_rn intrinsics keep the two roundings, so SGD and dropout match the cpu backend bit for bit.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "core/base/fail_check.h"
#include "core/base/rng.h"
#include "core/base/top1.h"
#include "cuda/check.h"
#include "cuda/common_kernels.h"
#include "cuda/grid_stride.h"
#include "cuda/ptx.cuh"

namespace convnet::cuda {

namespace {

// 1 / (1 - p), or 0 when every element is dropped (p == 1): the cpu backend's scale.
float dropout_scale(float p, const char* op) {
  CONVNET_CHECK_MSG(p >= 0.0f && p <= 1.0f,
                    std::string(op) + ": drop probability " + std::to_string(p) + " must lie in [0, 1]");
  return p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
}

void check_cross_entropy(int64_t n, int64_t k, float smoothing, const char* op) {
  CONVNET_CHECK_MSG(n >= 0 && k > 0,
                    std::string(op) + ": bad problem size n=" + std::to_string(n) + " k=" + std::to_string(k));
  CONVNET_CHECK_MSG(smoothing >= 0.0f && smoothing <= 1.0f,
                    std::string(op) + ": label smoothing " + std::to_string(smoothing) + " must lie in [0, 1]");
}

__global__ void fill_kernel(float* p, int64_t n, float value) {
  for (int64_t i = thread_index(); i < n; i += grid_stride()) p[i] = value;
}

__global__ void dropout_forward_kernel(const float* x, float* y, uint8_t* mask, int64_t n, float p, float scale,
                                       uint64_t seed) {
  for (int64_t i = thread_index(); i < n; i += grid_stride()) {
    const bool keep = hash_uniform(seed, static_cast<uint64_t>(i)) >= p;
    mask[i] = keep ? 1 : 0;
    y[i] = keep ? __fmul_rn(x[i], scale) : 0.0f;
  }
}

__global__ void dropout_backward_kernel(const float* dy, const uint8_t* mask, float* dx, int64_t n, float scale) {
  for (int64_t i = thread_index(); i < n; i += grid_stride()) dx[i] = mask[i] ? __fmul_rn(dy[i], scale) : 0.0f;
}

// Softmax cross-entropy forward: one warp per row, kRowsPerBlock rows per block. Sums run in
// double like the cpu reference; the butterfly (xor) reductions leave the same, order-fixed
// result in every lane, so the output does not depend on scheduling.
constexpr int kWarp = 32;
constexpr int kRowsPerBlock = 4;

__device__ __forceinline__ float warp_max(float v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}
__device__ __forceinline__ double warp_sum(double v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__global__ void softmax_cross_entropy_forward_kernel(const float* logits, const int32_t* labels, int64_t n, int64_t k,
                                                     double smoothing, float* probs, float* row_loss) {
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + static_cast<int64_t>(threadIdx.x) / kWarp;
  if (row >= n) return;  // whole warps leave together, so the shuffles below stay full-warp
  const float* z = logits + row * k;
  float* prob = probs + row * k;

  float zmax = -INFINITY;
  for (int64_t j = lane; j < k; j += kWarp) zmax = fmaxf(zmax, z[j]);
  zmax = warp_max(zmax);

  double sum = 0.0, zsum = 0.0;
  for (int64_t j = lane; j < k; j += kWarp) {
    sum += exp(static_cast<double>(__fsub_rn(z[j], zmax)));
    zsum += static_cast<double>(z[j]);
  }
  sum = warp_sum(sum);
  zsum = warp_sum(zsum);
  const double lse = static_cast<double>(zmax) + log(sum);
  for (int64_t j = lane; j < k; j += kWarp) prob[j] = static_cast<float>(exp(static_cast<double>(z[j]) - lse));

  if (lane == 0) {
    const int32_t label = labels[row];
    if (label < 0 || label >= k) {
      row_loss[row] = NAN;  // an invalid label poisons the loss instead of reading out of bounds
    } else {
      // -sum_j t_j log p_j with sum_j t_j = 1: lse - (1 - s) z_label - s * mean(z).
      const double target_dot = __dadd_rn(__dmul_rn(1.0 - smoothing, static_cast<double>(z[label])),
                                          __dmul_rn(smoothing, zsum) / static_cast<double>(k));
      row_loss[row] = static_cast<float>(lse - target_dot);
    }
  }
}

// loss[0] = mean of row_loss. One block: thread t sums rows t, t + kReduceThreads, ... in order,
// then a fixed-shape tree in shared memory combines the partial sums.
constexpr int kReduceThreads = 256;

__global__ void mean_kernel(const float* row_loss, int64_t n, float* loss) {
  __shared__ double partial[kReduceThreads];
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += kReduceThreads) acc += static_cast<double>(row_loss[i]);
  partial[threadIdx.x] = acc;
  __syncthreads();
  for (int half = kReduceThreads / 2; half > 0; half /= 2) {
    if (static_cast<int>(threadIdx.x) < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) loss[0] = static_cast<float>(n > 0 ? partial[0] / static_cast<double>(n) : 0.0);
}

__global__ void softmax_cross_entropy_backward_kernel(const float* probs, const int32_t* labels, int64_t n, int64_t k,
                                                      float on, float off, float inv_n, float* dlogits) {
  const int64_t total = n * k;
  for (int64_t i = thread_index(); i < total; i += grid_stride()) {
    const int64_t row = i / k;
    const int64_t j = i - row * k;
    const int32_t label = labels[row];
    if (label < 0 || label >= k) {
      dlogits[i] = NAN;
    } else {
      const float target = j == label ? on : off;
      dlogits[i] = __fmul_rn(__fsub_rn(probs[i], target), inv_n);
    }
  }
}

// Backend::accumulate_train_stats in one block: thread t counts the correct rows t, t + kReduceThreads,
// ...; the integer counts combine exactly whatever the order; thread 0 adds the step to the sums
// in f64, as the cpu reference does.
__global__ void accumulate_train_stats_kernel(const float* loss, const float* logits, const int32_t* labels, int64_t n,
                                              int64_t k, int64_t step, double* stats) {
  __shared__ int64_t partial[kReduceThreads];
  int64_t correct = 0;
  for (int64_t i = threadIdx.x; i < n; i += kReduceThreads) correct += top1(logits + i * k, k) == labels[i];
  partial[threadIdx.x] = correct;
  __syncthreads();
  for (int half = kReduceThreads / 2; half > 0; half /= 2) {
    if (static_cast<int>(threadIdx.x) < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const float value = loss[0];
    stats[0] += static_cast<double>(value);
    stats[1] += static_cast<double>(partial[0]);
    if (stats[2] < 0 && !isfinite(value)) {
      stats[2] = static_cast<double>(step);
      stats[3] = static_cast<double>(value);
    }
  }
}

// The cpu reference's sgd_update loop, one rounding per operation; bf16_copy (or null) gets the
// new param rounded to nearest even, from the register the update left it in.
__global__ void sgd_update_kernel(float* param, const float* grad, float* momentum, uint16_t* bf16_copy, int64_t n,
                                  float lr, float mom, float coupled_wd, float decoupled_wd, bool use_momentum,
                                  bool nesterov) {
  for (int64_t i = thread_index(); i < n; i += grid_stride()) {
    float p = param[i];
    const float g = __fadd_rn(grad[i], __fmul_rn(coupled_wd, p));
    p = __fsub_rn(p, __fmul_rn(decoupled_wd, p));
    float update = g;
    if (use_momentum) {
      const float buf = __fadd_rn(__fmul_rn(mom, momentum[i]), g);
      momentum[i] = buf;
      update = nesterov ? __fadd_rn(g, __fmul_rn(mom, buf)) : buf;
    }
    p = __fsub_rn(p, __fmul_rn(lr, update));
    param[i] = p;
    if (bf16_copy != nullptr) bf16_copy[i] = ptx::to_bf16(p);
  }
}

}  // namespace

void launch_fill(float* p, int64_t n, float value, cudaStream_t stream) {
  CONVNET_CHECK_MSG(n >= 0, "launch_fill: negative element count " + std::to_string(n));
  if (n == 0) return;
  fill_kernel<<<grid_blocks(n), kThreads, 0, stream>>>(p, n, value);
  CONVNET_CUDA_CHECK_LAUNCH("fill_kernel");
}

void launch_dropout_forward(const float* x, float* y, uint8_t* mask, int64_t n, float p, uint64_t seed,
                            cudaStream_t stream) {
  const float scale = dropout_scale(p, "dropout_forward");
  CONVNET_CHECK_MSG(n >= 0, "dropout_forward: negative element count " + std::to_string(n));
  if (n == 0) return;
  dropout_forward_kernel<<<grid_blocks(n), kThreads, 0, stream>>>(x, y, mask, n, p, scale, seed);
  CONVNET_CUDA_CHECK_LAUNCH("dropout_forward_kernel");
}

void launch_dropout_backward(const float* dy, const uint8_t* mask, float* dx, int64_t n, float p, cudaStream_t stream) {
  const float scale = dropout_scale(p, "dropout_backward");
  CONVNET_CHECK_MSG(n >= 0, "dropout_backward: negative element count " + std::to_string(n));
  if (n == 0) return;
  dropout_backward_kernel<<<grid_blocks(n), kThreads, 0, stream>>>(dy, mask, dx, n, scale);
  CONVNET_CUDA_CHECK_LAUNCH("dropout_backward_kernel");
}

void launch_softmax_cross_entropy_forward(const float* logits, const int32_t* labels, int64_t n, int64_t k,
                                          float smoothing, float* probs, float* row_loss, float* loss,
                                          cudaStream_t stream) {
  check_cross_entropy(n, k, smoothing, "softmax_cross_entropy_forward");
  if (n > 0) {
    const int64_t blocks = (n + kRowsPerBlock - 1) / kRowsPerBlock;
    CONVNET_CHECK_MSG(blocks <= INT32_MAX,
                      "softmax_cross_entropy_forward: " + std::to_string(n) + " rows exceed the grid limit");
    softmax_cross_entropy_forward_kernel<<<static_cast<unsigned>(blocks), kRowsPerBlock * kWarp, 0, stream>>>(
        logits, labels, n, k, static_cast<double>(smoothing), probs, row_loss);
    CONVNET_CUDA_CHECK_LAUNCH("softmax_cross_entropy_forward_kernel");
  }
  mean_kernel<<<1, kReduceThreads, 0, stream>>>(row_loss, n, loss);  // n == 0 writes 0 like the cpu
  CONVNET_CUDA_CHECK_LAUNCH("mean_kernel");
}

void launch_softmax_cross_entropy_backward(const float* probs, const int32_t* labels, int64_t n, int64_t k,
                                           float smoothing, float* dlogits, cudaStream_t stream) {
  check_cross_entropy(n, k, smoothing, "softmax_cross_entropy_backward");
  if (n == 0) return;
  // The cpu reference's constants, computed the same way on the host.
  const float off = smoothing / static_cast<float>(k);
  const float on = 1.0f - smoothing + off;
  const float inv_n = 1.0f / static_cast<float>(n);
  softmax_cross_entropy_backward_kernel<<<grid_blocks(n * k), kThreads, 0, stream>>>(probs, labels, n, k, on, off,
                                                                                     inv_n, dlogits);
  CONVNET_CUDA_CHECK_LAUNCH("softmax_cross_entropy_backward_kernel");
}

void launch_accumulate_train_stats(const float* loss, const float* logits, const int32_t* labels, int64_t n, int64_t k,
                                   int64_t step, double* stats, cudaStream_t stream) {
  CONVNET_CHECK_MSG(n >= 0 && k > 0,
                    "accumulate_train_stats: bad problem size n=" + std::to_string(n) + " k=" + std::to_string(k));
  accumulate_train_stats_kernel<<<1, kReduceThreads, 0, stream>>>(loss, logits, labels, n, k, step, stats);
  CONVNET_CUDA_CHECK_LAUNCH("accumulate_train_stats_kernel");
}

void launch_sgd_update(float* param, const float* grad, float* momentum, uint16_t* bf16_copy, int64_t n,
                       const SgdStep& step, cudaStream_t stream) {
  CONVNET_CHECK_MSG(n >= 0, "sgd_update: negative element count " + std::to_string(n));
  const bool use_momentum = step.momentum != 0.0f;
  CONVNET_CHECK_MSG(!use_momentum || momentum != nullptr || n == 0,
                    "sgd_update: momentum " + std::to_string(step.momentum) + " needs a momentum buffer");
  if (n == 0) return;
  const float coupled_wd = step.decoupled_decay ? 0.0f : step.weight_decay;
  const float decoupled_wd = step.decoupled_decay ? step.lr * step.weight_decay : 0.0f;
  sgd_update_kernel<<<grid_blocks(n), kThreads, 0, stream>>>(param, grad, momentum, bf16_copy, n, step.lr,
                                                             step.momentum, coupled_wd, decoupled_wd, use_momentum,
                                                             step.nesterov);
  CONVNET_CUDA_CHECK_LAUNCH("sgd_update_kernel");
}

}  // namespace convnet::cuda
