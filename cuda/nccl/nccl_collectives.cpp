// NCCL as the device transport of a data-parallel group: see cuda/nccl_collectives.h.
//
// Every communicator is non-blocking (ncclConfig_t::blocking = 0), so that no NCCL call can hang
// the process: a call may return ncclInProgress, and settle() then polls ncclCommGetAsyncError
// until it is done, failing after the group's timeout. Waiting for an all-reduce polls its event
// the same way. A timeout or an error aborts the communicator (ncclCommAbort) and throws; the
// caller's error path then ends the job (ReplicaGroup::abort_job).
#include "cuda/nccl_collectives.h"

#include <fmt/format.h>
#include <nccl.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/base/error.h"
#include "cuda/check.h"
#include "cuda/device.h"
#include "cuda/stream.h"

namespace convnet::cuda {

namespace {

using Clock = std::chrono::steady_clock;

std::string nccl_result_text(ncclResult_t result, ncclComm_t comm) {
  std::string text = ncclGetErrorString(result);
  const char* last = comm != nullptr ? ncclGetLastError(comm) : nullptr;
  if (last != nullptr && *last != '\0') text += fmt::format(" ({})", last);
  return text;
}

// Sleeps briefly between polls after the first millisecond, so a long wait does not spin a core.
void pause(Clock::time_point since) {
  if (Clock::now() - since < std::chrono::milliseconds(1))
    std::this_thread::yield();
  else
    std::this_thread::sleep_for(std::chrono::microseconds(200));
}

class NcclCollectives;

// One bucket: its gradients gathered into a flat device buffer, averaged in place over the ranks.
class NcclBucket final : public DeviceBucket {
 public:
  NcclBucket(NcclCollectives& owner, std::vector<Tensor*> gradients, size_t index);
  ~NcclBucket() override;
  NcclBucket(const NcclBucket&) = delete;
  NcclBucket& operator=(const NcclBucket&) = delete;
  void start() override;
  void finish() override;

 private:
  NcclCollectives& owner_;
  std::vector<Tensor*> gradients_;
  std::string what_;  // "the all-reduce of gradient bucket 3 (24.0 MiB)"
  size_t floats_ = 0;
  float* buffer_ = nullptr;
  CudaEvent gathered_{false};  // on the compute stream, after the gradients were copied in
  CudaEvent reduced_{false};   // on NCCL's stream, after the all-reduce
};

class NcclCollectives final : public DeviceCollectives {
 public:
  NcclCollectives(ReplicaGroup& host, int device_index, double timeout_s)
      : device_index_(device_index),
        timeout_(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s))) {
    DeviceGuard on(device_index_);
    compute_ = device_compute_stream(device_index_);
    nccl_stream_ = std::make_unique<CudaStream>();
    ncclUniqueId id{};
    if (host.rank() == 0) check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    std::string bytes(reinterpret_cast<const char*>(&id), sizeof id);
    host.broadcast(bytes);
    CONVNET_CHECK(bytes.size() == sizeof id, "the NCCL id broadcast gave {} bytes, expected {}", bytes.size(),
                  sizeof id);
    std::memcpy(&id, bytes.data(), sizeof id);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    const ncclResult_t result = ncclCommInitRankConfig(&comm_, host.size(), id, host.rank(), &config);
    if (result != ncclInProgress) check(result, "ncclCommInitRankConfig");
    settle(fmt::format("creating the NCCL communicator of {} ranks (rank {}, GPU {})", host.size(), host.rank(),
                       device_index_));
  }

  ~NcclCollectives() override {
    if (comm_ == nullptr) return;
    // A clean shutdown when the communicator is healthy; abort otherwise, which never waits for
    // peers that are gone. Errors here can no longer be reported.
    ncclResult_t state = ncclSuccess;
    const ncclResult_t finalize = ncclCommFinalize(comm_);
    if (finalize == ncclSuccess || finalize == ncclInProgress) {
      const Clock::time_point start = Clock::now();
      while (ncclCommGetAsyncError(comm_, &state) == ncclSuccess && state == ncclInProgress &&
             Clock::now() - start < timeout_)
        pause(start);
      if (state == ncclSuccess && ncclCommDestroy(comm_) == ncclSuccess) return;
    }
    ncclCommAbort(comm_);
  }

  std::string name() const override { return "nccl " + nccl_version(); }
  bool serves(const Tensor& t) const override {
    return t.defined() && t.device() == Device{DeviceKind::cuda, device_index_};
  }
  std::unique_ptr<DeviceBucket> make_bucket(std::vector<Tensor*> gradients) override {
    return std::make_unique<NcclBucket>(*this, std::move(gradients), buckets_++);
  }

  int device_index() const { return device_index_; }
  cudaStream_t compute_stream() const { return compute_->get(); }
  cudaStream_t nccl_stream() const { return nccl_stream_->get(); }

  // ncclAllReduce in place, averaging over the ranks, on NCCL's stream.
  void all_reduce_average(float* buffer, size_t count, const std::string& what) {
    const ncclResult_t result = ncclAllReduce(buffer, buffer, count, ncclFloat32, ncclAvg, comm_, nccl_stream_->get());
    if (result != ncclInProgress) check(result, what);
    settle(what);
  }

  // Waits until `event` has happened, polling NCCL for errors; throws after the timeout.
  void await(const CudaEvent& event, const std::string& what) {
    const Clock::time_point start = Clock::now();
    while (!event.ready()) {
      ncclResult_t state = ncclSuccess;
      check(ncclCommGetAsyncError(comm_, &state), "ncclCommGetAsyncError");
      if (state != ncclSuccess && state != ncclInProgress) fail(what, nccl_result_text(state, comm_));
      if (Clock::now() - start > timeout_) fail(what, timeout_text());
      pause(start);
    }
  }

 private:
  // After a non-blocking call: polls until the communicator is no longer in progress.
  void settle(const std::string& what) {
    const Clock::time_point start = Clock::now();
    for (;;) {
      ncclResult_t state = ncclSuccess;
      check(ncclCommGetAsyncError(comm_, &state), "ncclCommGetAsyncError");
      if (state == ncclSuccess) return;
      if (state != ncclInProgress) fail(what, nccl_result_text(state, comm_));
      if (Clock::now() - start > timeout_) fail(what, timeout_text());
      pause(start);
    }
  }

  void check(ncclResult_t result, const std::string& what) {
    if (result != ncclSuccess) fail(what, nccl_result_text(result, comm_));
  }

  std::string timeout_text() const {
    return fmt::format("not done after {:.0f} s (train.distributed_timeout): a rank died or hangs",
                       std::chrono::duration<double>(timeout_).count());
  }

  [[noreturn]] void fail(const std::string& what, const std::string& why) {
    if (comm_ != nullptr) {
      ncclCommAbort(comm_);  // no further call may wait on the peers
      comm_ = nullptr;
    }
    throw Error(fmt::format("NCCL: {} failed: {}", what, why));
  }

  int device_index_;
  Clock::duration timeout_;
  std::shared_ptr<CudaStream> compute_;
  std::unique_ptr<CudaStream> nccl_stream_;
  ncclComm_t comm_ = nullptr;
  size_t buckets_ = 0;
};

NcclBucket::NcclBucket(NcclCollectives& owner, std::vector<Tensor*> gradients, size_t index)
    : owner_(owner), gradients_(std::move(gradients)) {
  for (const Tensor* g : gradients_) {
    CONVNET_CHECK(owner_.serves(*g) && g->dtype() == DType::f32, "NCCL bucket {}: an f32 tensor on cuda:{} expected",
                  index, owner_.device_index());
    floats_ += static_cast<size_t>(g->numel());
  }
  what_ = fmt::format("the all-reduce of gradient bucket {} ({})", index, format_bytes(floats_ * sizeof(float)));
  DeviceGuard on(owner_.device_index());
  CONVNET_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&buffer_), floats_ * sizeof(float)));
}

NcclBucket::~NcclBucket() {
  if (buffer_ == nullptr) return;
  DeviceGuard on(owner_.device_index());
  // The buffer may still be read by a queued all-reduce or copy: wait for both streams first.
  (void)cudaStreamSynchronize(owner_.nccl_stream());
  (void)cudaStreamSynchronize(owner_.compute_stream());
  (void)cudaFree(buffer_);
}

void NcclBucket::start() {
  DeviceGuard on(owner_.device_index());
  const cudaStream_t compute = owner_.compute_stream();
  size_t offset = 0;
  for (const Tensor* g : gradients_) {
    CONVNET_CUDA_QUEUE(cudaMemcpyAsync(buffer_ + offset, g->raw(), g->bytes(), cudaMemcpyDeviceToDevice, compute));
    offset += static_cast<size_t>(g->numel());
  }
  gathered_.record(compute);
  CONVNET_CUDA_CHECK(cudaStreamWaitEvent(owner_.nccl_stream(), gathered_.get(), 0));
  owner_.all_reduce_average(buffer_, floats_, what_);
  reduced_.record(owner_.nccl_stream());
}

void NcclBucket::finish() {
  DeviceGuard on(owner_.device_index());
  owner_.await(reduced_, what_);
  const cudaStream_t compute = owner_.compute_stream();
  CONVNET_CUDA_CHECK(cudaStreamWaitEvent(compute, reduced_.get(), 0));
  size_t offset = 0;
  for (Tensor* g : gradients_) {
    CONVNET_CUDA_QUEUE(cudaMemcpyAsync(g->raw(), buffer_ + offset, g->bytes(), cudaMemcpyDeviceToDevice, compute));
    offset += static_cast<size_t>(g->numel());
  }
}

}  // namespace

std::string nccl_version() {
  int code = 0;
  if (ncclGetVersion(&code) != ncclSuccess) return "unknown";
  return fmt::format("{}.{}.{}", code / 10000, code % 10000 / 100, code % 100);
}

std::unique_ptr<DeviceCollectives> open_nccl(ReplicaGroup& host, int device_index, double timeout_s) {
  return std::make_unique<NcclCollectives>(host, device_index, timeout_s);
}

}  // namespace convnet::cuda
