// GpuBackend: what the `cuda` and `cudnn` backends share. One CUDA device, the device's compute
// stream on which every op is queued (shared with every other GPU backend on the device, see
// device_compute_stream in cuda/stream.h, so ops are ordered across backends and tensors can be
// reused without device syncs), a caching allocator, pinned staging buffers for host<->device
// copies, a copy stream for uploads that overlap with compute, and CUDA-event timing for
// `convnet benchmark`. Each op validates its arguments, then opens an OpScope (cuda/op_scope.h)
// so that a CUDA error while it runs names the op and its tensors' shapes.
//
// The ops both backends implement with our own kernels (cuDNN has no equivalent with the same
// semantics) live here too: dropout with the counter-based mask of core/base/rng.h, softmax
// cross-entropy with label smoothing, the fused SGD update, axpby, and the data ops augment_batch
// and image_view (cuda/data_kernels.cu). Derived classes implement the rest.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/base/backend.h"
#include "core/base/op_checks.h"
#include "cuda/batch_norm_kernels.h"
#include "cuda/device_allocator.h"
#include "cuda/op_scope.h"
#include "cuda/stream.h"

namespace convnet::cuda {

class GpuBackend : public Backend {
 public:
  // Throws convnet::Error "the <name> backend needs a CUDA device: <reason>" when there is none.
  GpuBackend(std::string name, int device_index);
  ~GpuBackend() override;

  std::string name() const override { return name_; }
  Device device() const override { return {DeviceKind::cuda, device_index_}; }
  Allocator& allocator() override { return *allocator_; }
  void synchronize() override;
  cudaStream_t stream() const { return stream_->get(); }

  double elapsed_ms(const std::function<void()>& work) override;  // CUDA events on stream()
  void flush_caches() override;                                   // overwrites an L2-sized buffer
  double peak_gflops() const override;                            // fp32 FMA peak: SMs x cores/SM x 2 x clock
  double peak_gbytes_per_sec() const override;                    // from memory clock and bus width

  // Host<->device through pinned staging buffers (grown on demand, reused), device<->device on
  // the stream. A copy to the host waits for the stream, so the result can be read on return.
  void copy(Tensor& dst, const Tensor& src) override;
  void to_bf16(const Tensor& src, Tensor& dst) override;
  // Host -> device on a second (copy) stream: it starts after the compute work queued so far (which
  // may still read dst) and overlaps with the compute work queued after it until await_uploads(),
  // so the upload of the next batch runs during the backward pass of the current one. dst is held
  // (its memory is not reused) until await_uploads() has ordered the compute stream after it.
  void copy_async(Tensor& dst, const Tensor& src) override;
  void await_uploads() override;  // the compute stream waits on the last upload's event
  void fill(Tensor& t, float value) override;

  void dropout_forward(const Tensor& x, Tensor& y, Tensor& mask, float p, uint64_t seed) override;
  void dropout_backward(const Tensor& dy, const Tensor& mask, float p, Tensor& dx) override;
  void softmax_cross_entropy_forward(const Tensor& logits, const Tensor& labels, float smoothing, Tensor& loss,
                                     Tensor& probs) override;
  void softmax_cross_entropy_backward(const Tensor& probs, const Tensor& labels, float smoothing,
                                      Tensor& dlogits) override;
  void sgd_update(Tensor& param, const Tensor& grad, Tensor& momentum_buf, const SgdStep& step,
                  Tensor* bf16_copy) override;
  void axpby(float alpha, const Tensor& x, float beta, Tensor& y) override;
  void copy_channels(const Tensor& src, int64_t src_offset, Tensor& dst, int64_t dst_offset, int64_t channels) override;
  void accumulate_train_stats(const Tensor& loss, const Tensor& logits, const Tensor& labels, int64_t step,
                              Tensor& stats) override;
  // Process-wide: every GPU backend's launches, copies and waits (cuda/activity.h).
  DeviceActivity activity() const override;
  // Index values stay on the device: an index outside [0, M) turns that image's output into NaN
  // (the cpu backend throws instead).
  void augment_batch(const Tensor& images, const Tensor& order, int64_t first, Tensor& out,
                     const AugmentBatchSpec& spec) override;
  void image_view(const Tensor& x, Tensor& y, const ImageView& view) override;
  // Synchronized batchnorm's pieces, on our kernels (cuda/batch_norm_kernels.h) for both backends:
  // cuDNN has no op that stops between the statistics and the normalization.
  void batch_norm_local_stats(const Tensor& x, Tensor& mean, Tensor& m2) override;
  // The batchnorm half of a fused conv -> batchnorm (its statistics given), on our kernels too.
  void batch_norm_forward_train_from_moments(const Tensor& x, const Tensor& mean, const Tensor& m2, const Tensor& gamma,
                                             const Tensor& beta, Tensor& y, Tensor& saved_mean, Tensor& saved_invstd,
                                             Tensor& running_mean, Tensor& running_var, float momentum,
                                             float eps) override;
  void batch_norm_backward_reduce(const Tensor& x, const Tensor& dy, const Tensor& saved_mean,
                                  const Tensor& saved_invstd, Tensor& sum_dy, Tensor& sum_dy_xhat) override;
  void batch_norm_backward_apply(const Tensor& x, const Tensor& dy, const Tensor& gamma, const Tensor& saved_mean,
                                 const Tensor& saved_invstd, const Tensor& mean_dy, const Tensor& mean_dy_xhat,
                                 Tensor& dx) override;

 protected:
  // Device scratch of at least `bytes`, reused across calls on this backend (grow-only).
  void* scratch(size_t bytes);
  // scratch() for the batch-norm kernels on [rows, channels] (batch_norm_scratch_bytes), inside
  // `check`'s OpScope; throws convnet::Error when channels exceed what their reductions take.
  void* batch_norm_scratch(const OpChecks& check, int64_t rows, int64_t channels);
  // A conv or linear operand's values as a bf16 tensor, for the bf16 operands of cuDNN and cuBLAS:
  // t itself when it is bf16, else a new device tensor of t's shape holding the f32 t rounded to
  // nearest even (launch_to_bf16). New tensors come from the caching allocator, so a temporary
  // costs no cudaMalloc after the first step and never competes with scratch().
  Tensor as_bf16(const Tensor& t);
  // The same as f32: t itself when it is f32, else its bf16 values widened (exact).
  Tensor as_f32(const Tensor& t);
  // A batchnorm's x for our kernels, f32 or bf16 (read as it is stored).
  static ActivationIn activation_in(const Tensor& x) {
    if (x.dtype() == DType::bf16) return static_cast<const uint16_t*>(x.raw());
    return static_cast<const float*>(x.raw());
  }
  // The shared argument checks (core/base/op_checks.h) for `op`, against this backend's device.
  // Conv and linear operands may be bf16 in bf16 precision.
  OpChecks checks(const char* op) const {
    return OpChecks(op, device(), name_).allow_bf16_operands(precision() == Precision::bf16);
  }
  // What an op opens once its arguments are checked: this device made current, and `check`'s op
  // named in any CUDA error raised meanwhile.
  OpScope scope(const OpChecks& check) const { return OpScope(device_index_, check); }
  int device_index() const { return device_index_; }

 private:
  // Makes staging_ hold at least `bytes` and safe to overwrite (no queued copy still reads it).
  void* reserve_staging(size_t bytes);
  void upload(void* dst, const void* src, size_t bytes);    // host -> device
  void download(void* dst, const void* src, size_t bytes);  // device -> host, waits
  void check_copy(const Tensor& dst, const Tensor& src) const;

  std::string name_;
  int device_index_;
  std::unique_ptr<CudaCachingAllocator> allocator_;
  std::shared_ptr<CudaStream> stream_;  // the device's compute stream (device_compute_stream)
  PinnedHostAllocator pinned_;          // declared before staging_, which it must outlive
  Tensor scratch_;                      // device bytes for reductions and workspaces
  Tensor staging_;                      // pinned host bytes for copies
  CudaEvent staging_done_;              // recorded after the last queued copy that reads staging_
  bool staging_in_flight_ = false;
  CudaStream copy_stream_;   // copy_async transfers
  Tensor async_staging_;     // pinned host bytes read by the copy stream
  CudaEvent compute_point_;  // where the copy stream waits for the compute stream
  CudaEvent async_done_;     // recorded after the last copy_async transfer
  bool async_in_flight_ = false;
  std::vector<Tensor> unawaited_uploads_;  // copy_async targets the compute stream has not waited for
  Tensor flush_buffer_;                    // device bytes, L2-sized
  double peak_gflops_ = 0;
  double peak_gbytes_per_sec_ = 0;
};

// Registers "cuda", "cuda_tf32", "cudnn" (strict fp32) and "cudnn_tf32" in core's backend registry. Creating
// one without a CUDA device throws convnet::Error naming the reason (exit code 1).
void register_backends(int device_index = 0);

}  // namespace convnet::cuda
