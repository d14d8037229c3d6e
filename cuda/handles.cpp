#include "cuda/handles.h"

#include "cuda/check.h"

namespace convnet::cuda {

const char* math_mode_name(MathMode mode) {
  return mode == MathMode::tf32 ? "tf32" : "fp32";
}

cublasMath_t cublas_math_mode(MathMode mode) {
  return mode == MathMode::tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH;
}

cudnnMathType_t cudnn_math_type(MathMode mode) {
  return mode == MathMode::tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
}

CublasHandle::CublasHandle(cudaStream_t stream, MathMode mode) {
  CONVNET_CUBLAS_CHECK(cublasCreate(&handle_));
  try {
    set_stream(stream);
    set_math_mode(mode);
  } catch (...) {
    cublasDestroy(handle_);
    throw;
  }
}

CublasHandle::~CublasHandle() {
  if (handle_ != nullptr) cublasDestroy(handle_);  // fails only while the runtime unloads
}

CublasHandle& CublasHandle::operator=(CublasHandle&& other) noexcept {
  if (this != &other) {
    CublasHandle old(std::move(*this));
    handle_ = std::exchange(other.handle_, nullptr);
  }
  return *this;
}

void CublasHandle::set_stream(cudaStream_t stream) {
  CONVNET_CUBLAS_CHECK(cublasSetStream(handle_, stream));
}

void CublasHandle::set_math_mode(MathMode mode) {
  CONVNET_CUBLAS_CHECK(cublasSetMathMode(handle_, cublas_math_mode(mode)));
}

cudaStream_t CublasHandle::stream() const {
  cudaStream_t stream = nullptr;
  CONVNET_CUBLAS_CHECK(cublasGetStream(handle_, &stream));
  return stream;
}

CudnnHandle::CudnnHandle(cudaStream_t stream) {
  CONVNET_CUDNN_CHECK(cudnnCreate(&handle_));
  try {
    set_stream(stream);
  } catch (...) {
    cudnnDestroy(handle_);
    throw;
  }
}

CudnnHandle::~CudnnHandle() {
  if (handle_ != nullptr) cudnnDestroy(handle_);
}

CudnnHandle& CudnnHandle::operator=(CudnnHandle&& other) noexcept {
  if (this != &other) {
    CudnnHandle old(std::move(*this));
    handle_ = std::exchange(other.handle_, nullptr);
  }
  return *this;
}

void CudnnHandle::set_stream(cudaStream_t stream) {
  CONVNET_CUDNN_CHECK(cudnnSetStream(handle_, stream));
}

cudaStream_t CudnnHandle::stream() const {
  cudaStream_t stream = nullptr;
  CONVNET_CUDNN_CHECK(cudnnGetStream(handle_, &stream));
  return stream;
}

}  // namespace convnet::cuda
