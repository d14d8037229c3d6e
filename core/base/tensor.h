// Tensor: a shape, a dtype and a device-resident block of storage obtained from an Allocator.
//
// Contract:
// - Activations are NHWC ([N, H, W, C]), convolution filters KRSC ([K, R, S, C]), linear weights
//   [out, in]. PyTorch layouts (NCHW / OIHW) appear only at the checkpoint boundary.
// - Storage is shared: copies of a Tensor alias the same memory (like torch.Tensor); use clone()
//   for a deep copy. reshaped() returns a view with the same storage.
// - Host code may read data<T>() only on CPU tensors; device tensors move through Backend::copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace convnet {

// f64 holds small device-side accumulators (training statistics); parameters and activations are
// never f64, and checkpoints hold none.
enum class DType : uint8_t { f32, bf16, f16, i32, u8, f64 };
size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);  // "F32", "BF16", "F16", "I32", "U8", "F64" (safetensors spelling)

enum class DeviceKind : uint8_t { cpu, cuda };
struct Device {
  DeviceKind kind = DeviceKind::cpu;
  int index = 0;
  bool operator==(const Device&) const = default;
  std::string str() const;  // "cpu", "cuda:0"
};

// Where tensor memory comes from. GPU backends supply caching device allocators.
class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* ptr, size_t bytes) noexcept = 0;
  virtual Device device() const = 0;
};
Allocator& cpu_allocator();  // 64-byte aligned host memory

using Shape = std::vector<int64_t>;
int64_t shape_numel(const Shape& shape);
std::string shape_str(const Shape& shape);  // "[64, 32, 32, 3]"

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(Shape shape, DType dtype = DType::f32, Allocator& allocator = cpu_allocator());

  // Host-only convenience constructors.
  static Tensor zeros(Shape shape, DType dtype = DType::f32);
  static Tensor full(Shape shape, float value);
  static Tensor from_vector(Shape shape, const std::vector<float>& values);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const;  // negative i counts from the end
  int64_t numel() const { return numel_; }
  size_t bytes() const { return static_cast<size_t>(numel_) * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const;
  bool is_cpu() const { return device().kind == DeviceKind::cpu; }

  void* raw() { return ptr_; }
  const void* raw() const { return ptr_; }
  template <class T>
  T* data() {
    check_access(sizeof(T));
    return static_cast<T*>(ptr_);
  }
  template <class T>
  const T* data() const {
    check_access(sizeof(T));
    return static_cast<const T*>(ptr_);
  }
  float* f32() { return data<float>(); }
  const float* f32() const { return data<float>(); }
  std::span<float> span() { return {f32(), static_cast<size_t>(numel_)}; }
  std::span<const float> span() const { return {f32(), static_cast<size_t>(numel_)}; }

  Tensor reshaped(Shape shape) const;    // same storage, same numel
  Tensor leading(Shape shape) const;     // the first numel(shape) elements as `shape`, same storage
  Tensor clone() const;                  // deep copy, host tensors only
  void fill(float value);                // host f32 tensors only (device: Backend::fill)
  std::vector<float> to_vector() const;  // host f32 tensors only

 private:
  void check_access(size_t element_size) const;

  std::shared_ptr<void> storage_;
  void* ptr_ = nullptr;
  Allocator* allocator_ = nullptr;
  Shape shape_;
  int64_t numel_ = 0;
  DType dtype_ = DType::f32;
};

}  // namespace convnet
