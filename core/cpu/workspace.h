// Workspace: a grow-only scratch buffer a backend keeps between calls, so steady-state ops
// (im2col columns) allocate nothing.
#pragma once

#include <cstddef>
#include <memory>
#include <new>

namespace convnet {

class Workspace {
 public:
  // A buffer of at least `count` floats, valid until the next call; contents are unspecified.
  // 64-byte aligned like tensors, so BLAS sees the same alignment for columns and inputs.
  float* floats(size_t count) {
    if (count > capacity_) {
      buffer_.reset();
      buffer_.reset(static_cast<float*>(::operator new (count * sizeof(float), std::align_val_t{64})));
      capacity_ = count;
    }
    return buffer_.get();
  }
  size_t capacity() const { return capacity_; }

 private:
  struct Free {
    void operator()(float* p) const noexcept { ::operator delete (p, std::align_val_t{64}); }
  };
  std::unique_ptr<float, Free> buffer_;
  size_t capacity_ = 0;
};

}  // namespace convnet
