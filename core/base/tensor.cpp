#include "core/base/tensor.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include "core/base/error.h"

namespace convnet {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return 4;
    case DType::bf16:
      return 2;
    case DType::f16:
      return 2;
    case DType::i32:
      return 4;
    case DType::u8:
      return 1;
    case DType::f64:
      return 8;
  }
  return 0;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return "F32";
    case DType::bf16:
      return "BF16";
    case DType::f16:
      return "F16";
    case DType::i32:
      return "I32";
    case DType::u8:
      return "U8";
    case DType::f64:
      return "F64";
  }
  return "?";
}

std::string Device::str() const {
  return kind == DeviceKind::cpu ? std::string("cpu") : fmt::format("cuda:{}", index);
}

namespace {
class CpuAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override {
    if (bytes == 0) bytes = 1;
    const size_t rounded = (bytes + 63) / 64 * 64;
    void* ptr = std::aligned_alloc(64, rounded);
    if (!ptr) throw Error(fmt::format("out of host memory allocating {} bytes", bytes));
    return ptr;
  }
  void deallocate(void* ptr, size_t) noexcept override { std::free(ptr); }
  Device device() const override { return {}; }
};
}  // namespace

Allocator& cpu_allocator() {
  static CpuAllocator allocator;
  return allocator;
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_str(const Shape& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

Tensor::Tensor(Shape shape, DType dtype, Allocator& allocator)
    : allocator_(&allocator), shape_(std::move(shape)), numel_(shape_numel(shape_)), dtype_(dtype) {
  for (int64_t d : shape_) CONVNET_CHECK(d >= 0, "negative dimension in shape {}", shape_str(shape_));
  const size_t n = bytes();
  Allocator* alloc = allocator_;
  ptr_ = alloc->allocate(n);
  storage_ = std::shared_ptr<void>(ptr_, [alloc, n](void* p) { alloc->deallocate(p, n); });
}

Tensor Tensor::zeros(Shape shape, DType dtype) {
  Tensor t(std::move(shape), dtype);
  std::memset(t.raw(), 0, t.bytes());
  return t;
}

Tensor Tensor::full(Shape shape, float value) {
  Tensor t(std::move(shape));
  t.fill(value);
  return t;
}

Tensor Tensor::from_vector(Shape shape, const std::vector<float>& values) {
  Tensor t(std::move(shape));
  CONVNET_CHECK(static_cast<int64_t>(values.size()) == t.numel(), "{} values for shape {}", values.size(),
                shape_str(t.shape()));
  std::memcpy(t.raw(), values.data(), t.bytes());
  return t;
}

int64_t Tensor::dim(int i) const {
  const int r = rank();
  const int j = i < 0 ? i + r : i;
  CONVNET_CHECK(j >= 0 && j < r, "dimension {} of a rank-{} tensor", i, r);
  return shape_[static_cast<size_t>(j)];
}

Device Tensor::device() const {
  return allocator_ ? allocator_->device() : Device{};
}

void Tensor::check_access(size_t element_size) const {
  CONVNET_CHECK(defined(), "access to an undefined tensor");
  CONVNET_CHECK(is_cpu(), "host access to a {} tensor", device().str());
  CONVNET_CHECK(element_size == dtype_size(dtype_), "accessing a {} tensor with {}-byte elements", dtype_name(dtype_),
                element_size);
}

Tensor Tensor::reshaped(Shape shape) const {
  CONVNET_CHECK(shape_numel(shape) == numel_, "cannot reshape {} to {}", shape_str(shape_), shape_str(shape));
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::leading(Shape shape) const {
  CONVNET_CHECK(shape_numel(shape) <= numel_, "cannot view {} elements of {} as {}", shape_numel(shape),
                shape_str(shape_), shape_str(shape));
  Tensor t = *this;
  t.numel_ = shape_numel(shape);
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::clone() const {
  CONVNET_CHECK(is_cpu(), "clone() of a {} tensor", device().str());
  Tensor t(shape_, dtype_);
  std::memcpy(t.raw(), ptr_, bytes());
  return t;
}

void Tensor::fill(float value) {
  for (float& x : span()) x = value;
}

std::vector<float> Tensor::to_vector() const {
  auto s = span();
  return {s.begin(), s.end()};
}

}  // namespace convnet
