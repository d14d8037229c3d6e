// RAII cuBLAS and cuDNN handles bound to a stream, and the FP32 math-mode switch they share.
// Create them on the device the stream belongs to (the calling thread's current device).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <utility>

namespace convnet::cuda {

// How FP32 matrix multiplies and convolutions may run: strict IEEE FP32 (FMA) arithmetic, or TF32
// tensor cores (10-bit mantissa inputs, FP32 accumulation; several times faster on sm_80+).
enum class MathMode { fp32, tf32 };
const char* math_mode_name(MathMode mode);  // "fp32", "tf32"
// CUBLAS_DEFAULT_MATH for fp32, CUBLAS_TF32_TENSOR_OP_MATH for tf32.
cublasMath_t cublas_math_mode(MathMode mode);
// For cudnnSetConvolutionMathType: CUDNN_FMA_MATH (no tensor cores) for fp32, CUDNN_DEFAULT_MATH
// (which lets cuDNN use TF32 tensor cores) for tf32.
cudnnMathType_t cudnn_math_type(MathMode mode);

// A cuBLAS handle whose calls are queued on `stream`. Move-only; throws convnet::Error on failure.
class CublasHandle {
 public:
  explicit CublasHandle(cudaStream_t stream, MathMode mode = MathMode::fp32);
  ~CublasHandle();
  CublasHandle(CublasHandle&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
  CublasHandle& operator=(CublasHandle&& other) noexcept;
  CublasHandle(const CublasHandle&) = delete;
  CublasHandle& operator=(const CublasHandle&) = delete;

  cublasHandle_t get() const { return handle_; }
  void set_stream(cudaStream_t stream);
  void set_math_mode(MathMode mode);
  cudaStream_t stream() const;

 private:
  cublasHandle_t handle_ = nullptr;
};

// A cuDNN handle whose calls are queued on `stream`. Move-only; throws convnet::Error on failure.
// The math mode of cuDNN convolutions is set per convolution descriptor (cudnn_math_type).
class CudnnHandle {
 public:
  explicit CudnnHandle(cudaStream_t stream);
  ~CudnnHandle();
  CudnnHandle(CudnnHandle&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
  CudnnHandle& operator=(CudnnHandle&& other) noexcept;
  CudnnHandle(const CudnnHandle&) = delete;
  CudnnHandle& operator=(const CudnnHandle&) = delete;

  cudnnHandle_t get() const { return handle_; }
  void set_stream(cudaStream_t stream);
  cudaStream_t stream() const;

 private:
  cudnnHandle_t handle_ = nullptr;
};

}  // namespace convnet::cuda
