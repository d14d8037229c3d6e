// A stand-in GPU backend for tests of what the host queues: it claims device cuda:0, keeps its
// "device" tensors in host memory, computes nothing and records the name of every call in order
// ("conv2d_forward", "copy h2d I32 [8]", "copy_async", "await_uploads", "synchronize", ...). Copies
// do copy (so parameters initialise and statistics read back as written); every other op leaves
// its outputs untouched, and accumulate_train_stats leaves the sums as they were, so a training
// run on it sees finite losses. Header-only.
#pragma once

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/base/backend.h"

namespace convnet::testing {

class RecordingBackend final : public Backend {
 public:
  std::vector<std::string> calls;

  std::string name() const override { return "recording"; }
  Device device() const override { return {DeviceKind::cuda, 0}; }
  Allocator& allocator() override { return allocator_; }
  void synchronize() override { record("synchronize"); }

  void to_bf16(const Tensor&, Tensor&) override { record("to_bf16"); }
  void copy(Tensor& dst, const Tensor& src) override {
    std::memcpy(dst.raw(), src.raw(), src.bytes());
    const char* direction = src.is_cpu() ? (dst.is_cpu() ? "h2h" : "h2d") : (dst.is_cpu() ? "d2h" : "d2d");
    record(std::string("copy ") + direction + " " + dtype_name(src.dtype()) + " " + shape_str(src.shape()));
  }
  void copy_async(Tensor& dst, const Tensor& src) override {
    std::memcpy(dst.raw(), src.raw(), src.bytes());
    record("copy_async");
  }
  void await_uploads() override { record("await_uploads"); }
  void fill(Tensor&, float) override { record("fill"); }

  void conv2d_forward(const Tensor&, const Tensor&, const Tensor*, Tensor&, const Conv2dParams&) override {
    record("conv2d_forward");
  }
  void conv2d_backward_data(const Tensor&, const Tensor&, Tensor&, const Conv2dParams&) override {
    record("conv2d_backward_data");
  }
  void conv2d_backward_filter(const Tensor&, const Tensor&, Tensor&, Tensor*, const Conv2dParams&) override {
    record("conv2d_backward_filter");
  }
  void max_pool2d_forward(const Tensor&, Tensor&, Tensor&, const Pool2dParams&) override {
    record("max_pool2d_forward");
  }
  void max_pool2d_backward(const Tensor&, const Tensor&, Tensor&, const Pool2dParams&) override {
    record("max_pool2d_backward");
  }
  void avg_pool2d_forward(const Tensor&, Tensor&, const Pool2dParams&) override { record("avg_pool2d_forward"); }
  void avg_pool2d_backward(const Tensor&, Tensor&, const Pool2dParams&) override { record("avg_pool2d_backward"); }
  void relu_forward(const Tensor&, Tensor&) override { record("relu_forward"); }
  void relu_backward(const Tensor&, const Tensor&, Tensor&) override { record("relu_backward"); }
  void gelu_forward(const Tensor&, Tensor&) override { record("gelu_forward"); }
  void gelu_backward(const Tensor&, const Tensor&, Tensor&) override { record("gelu_backward"); }
  void batch_norm_forward_train(const Tensor&, const Tensor&, const Tensor&, Tensor&, Tensor&, Tensor&, Tensor&,
                                Tensor&, float, float) override {
    record("batch_norm_forward_train");
  }
  void batch_norm_forward_eval(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, float,
                               Tensor&) override {
    record("batch_norm_forward_eval");
  }
  void batch_norm_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, Tensor&, Tensor&,
                           Tensor&) override {
    record("batch_norm_backward");
  }
  void batch_norm_forward_train_from_moments(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                             Tensor&, Tensor&, Tensor&, Tensor&, Tensor&, float, float) override {
    record("batch_norm_forward_train_from_moments");
  }
  void batch_norm_local_stats(const Tensor&, Tensor&, Tensor&) override { record("batch_norm_local_stats"); }
  void batch_norm_backward_reduce(const Tensor&, const Tensor&, const Tensor&, const Tensor&, Tensor&,
                                  Tensor&) override {
    record("batch_norm_backward_reduce");
  }
  void batch_norm_backward_apply(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                 const Tensor&, const Tensor&, Tensor&) override {
    record("batch_norm_backward_apply");
  }
  void dropout_forward(const Tensor&, Tensor&, Tensor&, float, uint64_t) override { record("dropout_forward"); }
  void dropout_backward(const Tensor&, const Tensor&, float, Tensor&) override { record("dropout_backward"); }
  void linear_forward(const Tensor&, const Tensor&, const Tensor*, Tensor&) override { record("linear_forward"); }
  void linear_backward(const Tensor&, const Tensor&, const Tensor&, Tensor*, Tensor&, Tensor*) override {
    record("linear_backward");
  }
  void softmax_cross_entropy_forward(const Tensor&, const Tensor&, float, Tensor&, Tensor&) override {
    record("softmax_cross_entropy_forward");
  }
  void softmax_cross_entropy_backward(const Tensor&, const Tensor&, float, Tensor&) override {
    record("softmax_cross_entropy_backward");
  }
  void sgd_update(Tensor&, const Tensor&, Tensor&, const SgdStep&, Tensor*) override { record("sgd_update"); }
  void accumulate_train_stats(const Tensor&, const Tensor&, const Tensor&, int64_t, Tensor&) override {
    record("accumulate_train_stats");
  }
  void axpby(float, const Tensor&, float, Tensor&) override { record("axpby"); }
  void copy_channels(const Tensor&, int64_t, Tensor&, int64_t, int64_t) override { record("copy_channels"); }
  void augment_batch(const Tensor&, const Tensor&, int64_t, Tensor&, const AugmentBatchSpec&) override {
    record("augment_batch");
  }
  void image_view(const Tensor&, Tensor&, const ImageView&) override { record("image_view"); }

 private:
  // Host memory labelled as cuda:0, so tensors from it count as device tensors.
  class HostAsDevice final : public Allocator {
   public:
    void* allocate(size_t bytes) override { return std::calloc(bytes == 0 ? 1 : bytes, 1); }
    void deallocate(void* ptr, size_t) noexcept override { std::free(ptr); }
    Device device() const override { return {DeviceKind::cuda, 0}; }
  };
  void record(std::string call) { calls.push_back(std::move(call)); }
  HostAsDevice allocator_;
};

}  // namespace convnet::testing
