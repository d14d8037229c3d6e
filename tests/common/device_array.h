// Raw device memory for the checks that call kernels directly (gpu_conv_tc_test,
// cuda/harness/conv_harness.cu): `count` elements of T from cudaMalloc, optionally starting
// `offset` elements in (a pointer that is not 16-byte aligned, for the kernels' gather paths).
// Every CUDA call is checked (convnet::Error). Header-only, so CPU-only builds never compile it;
// free of fmt (core/base/error.h), which nvcc cannot compile, so the harness can include it.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "cuda/check.h"

namespace convnet::testing {

template <class T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t count, size_t offset = 0) : count_(count), offset_(offset) {
    CONVNET_CUDA_CHECK(cudaMalloc(&base_, std::max<size_t>(count + offset, 1) * sizeof(T)));
  }
  ~DeviceArray() { cudaFree(base_); }
  DeviceArray(DeviceArray&& other) noexcept
      : base_(std::exchange(other.base_, nullptr)), count_(other.count_), offset_(other.offset_) {}
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  // Null for an empty array, as the kernels' optional buffers (workspace, bias) expect.
  T* get() const { return count_ == 0 ? nullptr : static_cast<T*>(base_) + offset_; }
  size_t count() const { return count_; }
  size_t bytes() const { return count_ * sizeof(T); }

  // Queued on `stream`; the host vector must outlive the copy (the next synchronize).
  void upload(const std::vector<T>& v, cudaStream_t stream) {
    if (v.size() != count_)
      throw std::invalid_argument("DeviceArray::upload: " + std::to_string(v.size()) + " elements into " +
                                  std::to_string(count_));
    CONVNET_CUDA_CHECK(cudaMemcpyAsync(get(), v.data(), bytes(), cudaMemcpyHostToDevice, stream));
  }
  // Waits for the work queued on `stream`, then copies the first `count` elements.
  std::vector<T> download(cudaStream_t stream, size_t count) const {
    std::vector<T> v(count);
    if (count > 0)
      CONVNET_CUDA_CHECK(cudaMemcpyAsync(v.data(), get(), count * sizeof(T), cudaMemcpyDeviceToHost, stream));
    CONVNET_CUDA_CHECK(cudaStreamSynchronize(stream));
    return v;
  }
  std::vector<T> download(cudaStream_t stream) const { return download(stream, count_); }
  // Every byte 0xff: NaN as float and as bf16, so an element a kernel forgets to write fails.
  void poison(cudaStream_t stream) { fill_bytes(0xff, stream); }
  void fill_bytes(int byte, cudaStream_t stream) {
    if (count_ > 0) CONVNET_CUDA_CHECK(cudaMemsetAsync(get(), byte, bytes(), stream));
  }

 private:
  void* base_ = nullptr;
  size_t count_, offset_;
};

}  // namespace convnet::testing
