#include "cuda/gpu_backend.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>

#include "core/base/error.h"
#include "cuda/activity.h"
#include "cuda/batch_norm_kernels.h"
#include "cuda/bf16_kernels.h"
#include "cuda/check.h"
#include "cuda/common_kernels.h"
#include "cuda/data_kernels.h"
#include "cuda/device.h"
#include "cuda/reduce_kernels.h"

namespace convnet::cuda {

namespace {

constexpr size_t kStagingGranularity = size_t{1} << 20;  // grow pinned staging in whole MiB

// Validates `index` for the backend called `name`; throws the user-facing "needs a CUDA device".
int checked_device(const std::string& name, int index) {
  const std::string what = fmt::format("the {} backend", name);
  require_gpu(what);
  const int count = gpu_count();
  if (index < 0 || index >= count)
    throw Error(fmt::format("{} needs a CUDA device: cuda:{} does not exist ({} device{} present)", what, index, count,
                            count == 1 ? "" : "s"));
  return index;
}

// Constructs a T (a stream or event, which bind to the current device) on device `index`.
template <class T, class... Args>
T make_on_device(int index, Args&&... args) {
  DeviceGuard guard(index);
  return T(std::forward<Args>(args)...);
}

int device_attribute(cudaDeviceAttr attribute, int index) {
  int value = 0;
  CONVNET_CUDA_CHECK(cudaDeviceGetAttribute(&value, attribute, index));
  return value;
}

// FP32 FMA lanes per SM (CUDA C++ Programming Guide, arithmetic instruction throughput); 0 for
// architectures not listed, so "% of peak" is left out rather than guessed.
int fp32_lanes_per_sm(int major, int minor) {
  switch (major * 10 + minor) {
    case 70:  // V100
    case 75:  // Turing
    case 80:  // A100
      return 64;
    case 86:  // GA10x
    case 89:  // Ada
    case 90:  // H100, H200
      return 128;
    default:
      return 0;
  }
}

bool is_pinned_host(const void* ptr) {
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, ptr) != cudaSuccess) {
    cudaGetLastError();  // not sticky; plain host memory may report an error on old runtimes
    return false;
  }
  return attributes.type == cudaMemoryTypeHost;
}

template <class T>
T* device_ptr(Tensor& t) {
  return static_cast<T*>(t.raw());
}
template <class T>
const T* device_ptr(const Tensor& t) {
  return static_cast<const T*>(t.raw());
}

}  // namespace

GpuBackend::GpuBackend(std::string name, int device_index)
    : name_(std::move(name)),
      device_index_(checked_device(name_, device_index)),
      allocator_(std::make_unique<CudaCachingAllocator>(device_index_)),
      stream_(device_compute_stream(device_index_)),
      staging_done_(make_on_device<CudaEvent>(device_index_, false)),
      copy_stream_(make_on_device<CudaStream>(device_index_)),
      compute_point_(make_on_device<CudaEvent>(device_index_, false)),
      async_done_(make_on_device<CudaEvent>(device_index_, false)) {
  const int major = device_attribute(cudaDevAttrComputeCapabilityMajor, device_index_);
  const int minor = device_attribute(cudaDevAttrComputeCapabilityMinor, device_index_);
  const double sms = device_attribute(cudaDevAttrMultiProcessorCount, device_index_);
  const double clock_khz = device_attribute(cudaDevAttrClockRate, device_index_);
  peak_gflops_ = sms * fp32_lanes_per_sm(major, minor) * 2.0 * clock_khz * 1e-6;
  // Double data rate: two transfers per memory clock over a bus of bus_bits / 8 bytes.
  const double memory_khz = device_attribute(cudaDevAttrMemoryClockRate, device_index_);
  const double bus_bits = device_attribute(cudaDevAttrGlobalMemoryBusWidth, device_index_);
  peak_gbytes_per_sec_ = 2.0 * memory_khz * 1e3 * (bus_bits / 8.0) * 1e-9;
}

GpuBackend::~GpuBackend() {
  // Queued kernels and copies may still use scratch_, staging_, flush_buffer_ and the targets of
  // unawaited uploads: let them finish before those are freed. Errors here are sticky ones already
  // reported by the failing call.
  if (cudaStreamSynchronize(copy_stream_.get()) != cudaSuccess) cudaGetLastError();
  if (cudaStreamSynchronize(stream()) != cudaSuccess) cudaGetLastError();
}

void GpuBackend::synchronize() {
  stream_->synchronize();
}

double GpuBackend::elapsed_ms(const std::function<void()>& work) {
  DeviceGuard guard(device_index_);
  return time_on_stream_ms(stream(), work);
}

void GpuBackend::flush_caches() {
  DeviceGuard guard(device_index_);
  if (!flush_buffer_.defined()) {
    const int l2_bytes = device_attribute(cudaDevAttrL2CacheSize, device_index_);
    if (l2_bytes <= 0) return;
    flush_buffer_ = Tensor({l2_bytes}, DType::u8, *allocator_);
  }
  count(Activity::device_copy);
  CONVNET_CUDA_QUEUE(cudaMemsetAsync(flush_buffer_.raw(), 0, flush_buffer_.bytes(), stream()));
}

double GpuBackend::peak_gflops() const {
  return peak_gflops_;
}

double GpuBackend::peak_gbytes_per_sec() const {
  return peak_gbytes_per_sec_;
}

void* GpuBackend::scratch(size_t bytes) {
  bytes = std::max<size_t>(bytes, 1);
  if (!scratch_.defined() || scratch_.bytes() < bytes) {
    // Work queued on stream() may still use the old block; the caching allocator hands it out
    // again only to work queued later on the same (the device's) stream, so releasing it now is safe.
    scratch_ = Tensor();
    scratch_ = Tensor({static_cast<int64_t>(bytes)}, DType::u8, *allocator_);
  }
  return scratch_.raw();
}

Tensor GpuBackend::as_bf16(const Tensor& t) {
  if (t.dtype() == DType::bf16) return t;
  Tensor out = empty(t.shape(), DType::bf16);
  launch_to_bf16(static_cast<const float*>(t.raw()), static_cast<uint16_t*>(out.raw()), t.numel(), stream());
  return out;
}

Tensor GpuBackend::as_f32(const Tensor& t) {
  if (t.dtype() == DType::f32) return t;
  Tensor out = empty(t.shape());
  launch_from_bf16(static_cast<const uint16_t*>(t.raw()), static_cast<float*>(out.raw()), t.numel(), stream());
  return out;
}

void* GpuBackend::batch_norm_scratch(const OpChecks& check, int64_t rows, int64_t channels) {
  CONVNET_CHECK(channels <= kReduceMaxCols, "{}: x has {} channels, the cuda kernels reduce at most {}", check.op(),
                channels, kReduceMaxCols);
  void* ws = scratch(batch_norm_scratch_bytes(rows, channels));
  // The kernels read it as doubles.
  CONVNET_CHECK(reinterpret_cast<uintptr_t>(ws) % alignof(double) == 0, "batch norm scratch {} is misaligned", ws);
  return ws;
}

void* GpuBackend::reserve_staging(size_t bytes) {
  if (staging_in_flight_) {  // a queued host->device copy may still read the buffer
    staging_done_.synchronize();
    staging_in_flight_ = false;
  }
  if (!staging_.defined() || staging_.bytes() < bytes) {
    const size_t rounded = (bytes + kStagingGranularity - 1) / kStagingGranularity * kStagingGranularity;
    staging_ = Tensor();  // free the old buffer before pinning a larger one
    staging_ = Tensor({static_cast<int64_t>(rounded)}, DType::u8, pinned_);
  }
  return staging_.raw();
}

void GpuBackend::upload(void* dst, const void* src, size_t bytes) {
  // Always through staging, even from pinned memory: the caller may overwrite `src` as soon as
  // copy() returns, while the device copy is still queued.
  void* staging = reserve_staging(bytes);
  std::memcpy(staging, src, bytes);
  count(Activity::upload);
  CONVNET_CUDA_QUEUE(cudaMemcpyAsync(dst, staging, bytes, cudaMemcpyHostToDevice, stream()));
  staging_in_flight_ = true;
  staging_done_.record(stream());
}

void GpuBackend::download(void* dst, const void* src, size_t bytes) {
  count(Activity::download);
  if (is_pinned_host(dst)) {
    CONVNET_CUDA_QUEUE(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream()));
    stream_->synchronize();
    return;
  }
  void* staging = reserve_staging(bytes);
  CONVNET_CUDA_QUEUE(cudaMemcpyAsync(staging, src, bytes, cudaMemcpyDeviceToHost, stream()));
  stream_->synchronize();
  std::memcpy(dst, staging, bytes);
}

void GpuBackend::check_copy(const Tensor& dst, const Tensor& src) const {
  CONVNET_CHECK(src.defined(), "copy: src is undefined");
  CONVNET_CHECK(dst.defined(), "copy: dst is undefined");
  CONVNET_CHECK(dst.dtype() == src.dtype(), "copy: dst has dtype {}, src has dtype {}", dtype_name(dst.dtype()),
                dtype_name(src.dtype()));
  CONVNET_CHECK(dst.numel() == src.numel(), "copy: dst has shape {} ({} elements), src has shape {} ({} elements)",
                shape_str(dst.shape()), dst.numel(), shape_str(src.shape()), src.numel());
  const Device here = device();
  for (const auto& [t, what] : {std::pair<const Tensor*, const char*>{&dst, "dst"}, {&src, "src"}})
    CONVNET_CHECK(t->is_cpu() || t->device() == here, "copy: {} lives on {}, the {} backend copies between {} and cpu",
                  what, t->device().str(), name_, here.str());
}

void GpuBackend::copy(Tensor& dst, const Tensor& src) {
  check_copy(dst, src);
  const size_t bytes = src.bytes();
  if (bytes == 0 || dst.raw() == src.raw()) return;
  if (src.is_cpu() && dst.is_cpu()) {
    std::memmove(dst.raw(), src.raw(), bytes);  // host tensors are never targets of queued copies
    return;
  }
  DeviceGuard guard(device_index_);
  if (!src.is_cpu() && !dst.is_cpu()) {
    count(Activity::device_copy);
    CONVNET_CUDA_QUEUE(cudaMemcpyAsync(dst.raw(), src.raw(), bytes, cudaMemcpyDeviceToDevice, stream()));
  } else if (src.is_cpu()) {
    upload(dst.raw(), src.raw(), bytes);
  } else {
    download(dst.raw(), src.raw(), bytes);
  }
}

void GpuBackend::to_bf16(const Tensor& src, Tensor& dst) {
  const OpChecks check = checks("to_bf16");
  check.to_bf16(src, dst);
  const OpScope in_op = scope(check);
  launch_to_bf16(device_ptr<float>(src), device_ptr<uint16_t>(dst), src.numel(), stream());
}

void GpuBackend::copy_async(Tensor& dst, const Tensor& src) {
  if (!src.is_cpu() || dst.is_cpu()) {  // only uploads take the copy stream
    copy(dst, src);
    return;
  }
  check_copy(dst, src);
  const size_t bytes = src.bytes();
  if (bytes == 0) return;
  DeviceGuard guard(device_index_);
  if (async_in_flight_) {  // the previous transfer may still read async_staging_
    async_done_.synchronize();
    async_in_flight_ = false;
  }
  if (!async_staging_.defined() || async_staging_.bytes() < bytes) {
    const size_t rounded = (bytes + kStagingGranularity - 1) / kStagingGranularity * kStagingGranularity;
    async_staging_ = Tensor();
    async_staging_ = Tensor({static_cast<int64_t>(rounded)}, DType::u8, pinned_);
  }
  std::memcpy(async_staging_.raw(), src.raw(), bytes);
  compute_point_.record(stream());
  CONVNET_CUDA_CHECK(cudaStreamWaitEvent(copy_stream_.get(), compute_point_.get(), 0));
  count(Activity::upload);
  CONVNET_CUDA_QUEUE(
      cudaMemcpyAsync(dst.raw(), async_staging_.raw(), bytes, cudaMemcpyHostToDevice, copy_stream_.get()));
  async_done_.record(copy_stream_.get());
  async_in_flight_ = true;
  // Not reused before await_uploads: a release of dst now must not hand its memory to work queued
  // on the compute stream while the transfer may still write it.
  unawaited_uploads_.push_back(dst);
}

void GpuBackend::await_uploads() {
  if (unawaited_uploads_.empty()) return;
  DeviceGuard guard(device_index_);
  // The copy stream runs its transfers in order, so the last one's event covers them all.
  CONVNET_CUDA_CHECK(cudaStreamWaitEvent(stream(), async_done_.get(), 0));
  unawaited_uploads_.clear();  // the compute stream now comes after every transfer into them
}

void GpuBackend::fill(Tensor& t, float value) {
  const OpChecks check = checks("fill");
  check.tensor(t, "t");
  const OpScope in_op = scope(check);
  launch_fill(device_ptr<float>(t), t.numel(), value, stream());
}

void GpuBackend::dropout_forward(const Tensor& x, Tensor& y, Tensor& mask, float p, uint64_t seed) {
  const OpChecks check = checks("dropout_forward");
  check.dropout_forward(x, y, mask, p);
  const OpScope in_op = scope(check);
  launch_dropout_forward(device_ptr<float>(x), device_ptr<float>(y), device_ptr<uint8_t>(mask), x.numel(), p, seed,
                         stream());
}

void GpuBackend::dropout_backward(const Tensor& dy, const Tensor& mask, float p, Tensor& dx) {
  const OpChecks check = checks("dropout_backward");
  check.dropout_backward(dy, mask, p, dx);
  const OpScope in_op = scope(check);
  launch_dropout_backward(device_ptr<float>(dy), device_ptr<uint8_t>(mask), device_ptr<float>(dx), dy.numel(), p,
                          stream());
}

void GpuBackend::softmax_cross_entropy_forward(const Tensor& logits, const Tensor& labels, float smoothing,
                                               Tensor& loss, Tensor& probs) {
  // Label values stay on the device: the kernels turn an out-of-range label into a NaN loss row.
  const OpChecks check = checks("softmax_cross_entropy_forward");
  const auto [n, k] = check.softmax_cross_entropy_forward(logits, labels, smoothing, loss, probs);
  const OpScope in_op = scope(check);
  auto* row_loss = static_cast<float*>(scratch(static_cast<size_t>(n) * sizeof(float)));
  launch_softmax_cross_entropy_forward(device_ptr<float>(logits), device_ptr<int32_t>(labels), n, k, smoothing,
                                       device_ptr<float>(probs), row_loss, device_ptr<float>(loss), stream());
}

void GpuBackend::softmax_cross_entropy_backward(const Tensor& probs, const Tensor& labels, float smoothing,
                                                Tensor& dlogits) {
  // Label values stay on the device: the kernels turn an out-of-range label into a NaN gradient row.
  const OpChecks check = checks("softmax_cross_entropy_backward");
  const auto [n, k] = check.softmax_cross_entropy_backward(probs, labels, smoothing, dlogits);
  const OpScope in_op = scope(check);
  launch_softmax_cross_entropy_backward(device_ptr<float>(probs), device_ptr<int32_t>(labels), n, k, smoothing,
                                        device_ptr<float>(dlogits), stream());
}

void GpuBackend::sgd_update(Tensor& param, const Tensor& grad, Tensor& momentum_buf, const SgdStep& step,
                            Tensor* bf16_copy) {
  const OpChecks check = checks("sgd_update");
  check.sgd_update(param, grad, momentum_buf, step, bf16_copy);
  const bool use_momentum = step.momentum != 0.0f;
  const OpScope in_op = scope(check);
  launch_sgd_update(device_ptr<float>(param), device_ptr<float>(grad),
                    use_momentum ? device_ptr<float>(momentum_buf) : nullptr,
                    bf16_copy ? device_ptr<uint16_t>(*bf16_copy) : nullptr, param.numel(), step, stream());
}

void GpuBackend::axpby(float alpha, const Tensor& x, float beta, Tensor& y) {
  const OpChecks check = checks("axpby");
  check.axpby(alpha, x, beta, y);
  const OpScope in_op = scope(check);
  launch_axpby(alpha, device_ptr<float>(x), beta, device_ptr<float>(y), y.numel(), stream());
}

void GpuBackend::copy_channels(const Tensor& src, int64_t src_offset, Tensor& dst, int64_t dst_offset,
                               int64_t channels) {
  const OpChecks check = checks("copy_channels");
  const int64_t rows = check.copy_channels(src, src_offset, dst, dst_offset, channels);
  const OpScope in_op = scope(check);
  launch_copy_channels(device_ptr<float>(src), src.dim(-1), src_offset, device_ptr<float>(dst), dst.dim(-1), dst_offset,
                       rows, channels, stream());
}

void GpuBackend::accumulate_train_stats(const Tensor& loss, const Tensor& logits, const Tensor& labels, int64_t step,
                                        Tensor& stats) {
  const OpChecks check = checks("accumulate_train_stats");
  const auto [n, k] = check.accumulate_train_stats(loss, logits, labels, stats);
  const OpScope in_op = scope(check);
  launch_accumulate_train_stats(device_ptr<float>(loss), device_ptr<float>(logits), device_ptr<int32_t>(labels), n, k,
                                step, device_ptr<double>(stats), stream());
}

DeviceActivity GpuBackend::activity() const {
  return device_activity();
}

void GpuBackend::augment_batch(const Tensor& images, const Tensor& order, int64_t first, Tensor& out,
                               const AugmentBatchSpec& spec) {
  const OpChecks check = checks("augment_batch");
  const AugmentGeometry g = check.augment_batch(images, order, first, out, spec);
  const OpScope in_op = scope(check);
  launch_augment_batch(device_ptr<uint8_t>(images), device_ptr<int32_t>(order), g, device_ptr<float>(out), spec,
                       stream());
}

void GpuBackend::image_view(const Tensor& x, Tensor& y, const ImageView& view) {
  const OpChecks check = checks("image_view");
  check.image_view(x, y, view);
  const OpScope in_op = scope(check);
  launch_image_view(device_ptr<float>(x), device_ptr<float>(y), x.dim(0), x.dim(1), x.dim(2), x.dim(3), view, stream());
}

// --- synchronized batchnorm's pieces (cuda/batch_norm_kernels.h) ---

void GpuBackend::batch_norm_local_stats(const Tensor& x, Tensor& mean, Tensor& m2) {
  const OpChecks check = checks("batch_norm_local_stats");
  const int64_t channels = check.batch_norm_local_stats(x, mean, m2);
  const int64_t rows = x.numel() / channels;
  const OpScope in_op = scope(check);
  launch_batch_norm_local_stats(activation_in(x), rows, channels, device_ptr<float>(mean), device_ptr<float>(m2),
                                batch_norm_scratch(check, rows, channels), stream());
}

void GpuBackend::batch_norm_forward_train_from_moments(const Tensor& x, const Tensor& mean, const Tensor& m2,
                                                       const Tensor& gamma, const Tensor& beta, Tensor& y,
                                                       Tensor& saved_mean, Tensor& saved_invstd, Tensor& running_mean,
                                                       Tensor& running_var, float momentum, float eps) {
  const OpChecks check = checks("batch_norm_forward_train_from_moments");
  const int64_t channels = check.batch_norm_forward_train_from_moments(
      x, mean, m2, gamma, beta, y, saved_mean, saved_invstd, running_mean, running_var, momentum, eps);
  const int64_t rows = x.numel() / channels;
  const OpScope in_op = scope(check);
  launch_batch_norm_forward_train_from_moments(
      activation_in(x), device_ptr<float>(mean), device_ptr<float>(m2), device_ptr<float>(gamma),
      device_ptr<float>(beta), device_ptr<float>(y), device_ptr<float>(saved_mean), device_ptr<float>(saved_invstd),
      device_ptr<float>(running_mean), device_ptr<float>(running_var), rows, channels, momentum, eps,
      batch_norm_scratch(check, rows, channels), stream());
}

void GpuBackend::batch_norm_backward_reduce(const Tensor& x, const Tensor& dy, const Tensor& saved_mean,
                                            const Tensor& saved_invstd, Tensor& sum_dy, Tensor& sum_dy_xhat) {
  const OpChecks check = checks("batch_norm_backward_reduce");
  const int64_t channels = check.batch_norm_backward_reduce(x, dy, saved_mean, saved_invstd, sum_dy, sum_dy_xhat);
  const int64_t rows = x.numel() / channels;
  const OpScope in_op = scope(check);
  launch_batch_norm_backward_reduce(activation_in(x), device_ptr<float>(dy), device_ptr<float>(saved_mean),
                                    device_ptr<float>(saved_invstd), rows, channels, device_ptr<float>(sum_dy),
                                    device_ptr<float>(sum_dy_xhat), batch_norm_scratch(check, rows, channels),
                                    stream());
}

void GpuBackend::batch_norm_backward_apply(const Tensor& x, const Tensor& dy, const Tensor& gamma,
                                           const Tensor& saved_mean, const Tensor& saved_invstd, const Tensor& mean_dy,
                                           const Tensor& mean_dy_xhat, Tensor& dx) {
  const OpChecks check = checks("batch_norm_backward_apply");
  const int64_t channels =
      check.batch_norm_backward_apply(x, dy, gamma, saved_mean, saved_invstd, mean_dy, mean_dy_xhat, dx);
  const int64_t rows = x.numel() / channels;
  const OpScope in_op = scope(check);
  launch_batch_norm_backward_apply(activation_in(x), device_ptr<float>(dy), device_ptr<float>(gamma),
                                   device_ptr<float>(saved_mean), device_ptr<float>(saved_invstd),
                                   device_ptr<float>(mean_dy), device_ptr<float>(mean_dy_xhat), rows, channels,
                                   device_ptr<float>(dx), batch_norm_scratch(check, rows, channels), stream());
}

}  // namespace convnet::cuda
