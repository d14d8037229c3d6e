// Test helpers for the emulation tests: "device" buffers that are plain host memory with guard
// zones, and a bitwise tensor comparison.
//
// Every byte of a DeviceBuf starts as 0xff (a NaN for floats and doubles, -1 for int32, 255 for
// bytes), so an output element a kernel skips, or scratch it reads before writing, shows up as NaN
// or a wrong index, and a write out of bounds changes a guard. Buffers are 16-byte aligned (the
// 128-bit paths) or 4 bytes past a boundary (the scalar paths).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/base/tensor.h"

namespace convnet::emu_test {

inline constexpr size_t kGuardBytes = 256;
inline constexpr auto kPoison = std::byte{0xff};

// A "device" buffer: `bytes` bytes at a 16-byte boundary (or 4 bytes past one), guard zones on
// both sides, every byte 0xff until written.
class DeviceBuf {
 public:
  explicit DeviceBuf(size_t bytes, bool misaligned = false)
      : storage_(bytes + 2 * kGuardBytes + 32, kPoison), bytes_(bytes) {
    const auto base = reinterpret_cast<uintptr_t>(storage_.data());
    const uintptr_t aligned = (base + kGuardBytes + 15) / 16 * 16;
    offset_ = static_cast<size_t>(aligned - base) + (misaligned ? 4 : 0);
  }
  static DeviceBuf of(const Tensor& t, bool misaligned = false) {
    DeviceBuf b(t.bytes(), misaligned);
    std::memcpy(b.raw(), t.raw(), t.bytes());
    return b;
  }
  void* raw() { return storage_.data() + offset_; }
  template <class T>
  T* as() {
    return reinterpret_cast<T*>(raw());
  }
  float* f() { return as<float>(); }
  // The buffer's contents as a host tensor of `shape` (bytes must match).
  Tensor download(const Shape& shape, DType dtype = DType::f32) const {
    Tensor t(shape, dtype);
    EXPECT_EQ(t.bytes(), bytes_);
    std::memcpy(t.raw(), storage_.data() + offset_, std::min(t.bytes(), bytes_));
    return t;
  }
  // True when no byte outside [offset, offset + bytes) changed.
  bool guards_intact() const {
    for (size_t i = 0; i < storage_.size(); ++i)
      if ((i < offset_ || i >= offset_ + bytes_) && storage_[i] != kPoison) return false;
    return true;
  }

 private:
  std::vector<std::byte> storage_;
  size_t bytes_;
  size_t offset_ = 0;
};

// Bitwise equality of two tensors of the same dtype (NaN equals NaN of the same bits).
inline ::testing::AssertionResult bits_equal(const Tensor& actual, const Tensor& expected) {
  if (actual.bytes() != expected.bytes()) return ::testing::AssertionFailure() << "sizes differ";
  const auto* a = static_cast<const unsigned char*>(actual.raw());
  const auto* e = static_cast<const unsigned char*>(expected.raw());
  const size_t elem = dtype_size(actual.dtype());
  for (size_t i = 0; i < actual.bytes(); i += elem) {
    if (std::memcmp(a + i, e + i, elem) != 0) {
      auto r = ::testing::AssertionFailure() << "element " << i / elem << " differs";
      if (actual.dtype() == DType::f32)
        r << ": " << actual.data<float>()[i / elem] << " vs expected " << expected.data<float>()[i / elem];
      else if (actual.dtype() == DType::i32)
        r << ": " << actual.data<int32_t>()[i / elem] << " vs expected " << expected.data<int32_t>()[i / elem];
      else if (actual.dtype() == DType::u8)
        r << ": " << int{actual.data<uint8_t>()[i / elem]} << " vs expected "
          << int{expected.data<uint8_t>()[i / elem]};
      return r;
    }
  }
  return ::testing::AssertionSuccess();
}

}  // namespace convnet::emu_test
