#include "cuda/check.h"

#include <fmt/format.h>

#include "core/base/env_flag.h"
#include "core/base/error.h"
#include "cuda/activity.h"
#include "cuda/op_scope.h"

namespace convnet::cuda {

std::string cublas_status_name(cublasStatus_t status) {
#if CUBLAS_VER_MAJOR >= 12
  return cublasGetStatusName(status);
#else  // cublasGetStatusName appeared during cuBLAS 11; older headers get the stable names here
  switch (status) {
    case CUBLAS_STATUS_SUCCESS:
      return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR:
      return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR:
      return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR:
      return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return fmt::format("CUBLAS_STATUS_{}", static_cast<int>(status));
#endif
}

std::string cublas_status_string(cublasStatus_t status) {
#if CUBLAS_VER_MAJOR >= 12
  return cublasGetStatusString(status);
#else
  return cublas_status_name(status);
#endif
}

std::string cuda_error_message(const char* file, int line, const char* call, cudaError_t code) {
  return fmt::format("{}:{}: {} failed: {}: {}", file, line, call, cudaGetErrorName(code), cudaGetErrorString(code));
}

std::string cublas_error_message(const char* file, int line, const char* call, cublasStatus_t code) {
  return fmt::format("{}:{}: {} failed: {}: {}", file, line, call, cublas_status_name(code),
                     cublas_status_string(code));
}

namespace {
// cuDNN 9 status codes are category * 1000 + detail.
const char* cudnn_status_category(cudnnStatus_t code) {
  switch (static_cast<int>(code) / 1000) {
    case 0:
      return "success";
    case 1:
      return "uncategorized error";
    case 2:
      return "bad parameter";
    case 3:
      return "not supported";
    case 4:
      return "internal error";
    case 5:
      return "execution failed";
    default:
      return "unknown status";
  }
}
}  // namespace

std::string cudnn_error_message(const char* file, int line, const char* call, cudnnStatus_t code,
                                const std::string& detail) {
  std::string message = fmt::format("{}:{}: {} failed: {}: {} (cuDNN status {})", file, line, call,
                                    cudnnGetErrorString(code), cudnn_status_category(code), static_cast<int>(code));
  if (!detail.empty()) message += fmt::format("; {}", detail);
  return message;
}

namespace {

// The message, with the running op when there is one.
std::string in_context(std::string message) {
  const std::string op = current_op_description();
  if (!op.empty()) message += fmt::format(" (during {})", op);
  return message;
}

// The error to throw. Reads (and so clears) the runtime's last error first: a failed runtime call
// also records its error there, and a non-sticky one left behind would be reported again, against
// the wrong call, by the next launch check. A sticky error (a fault) stays and is reported anyway.
Error clearing_last_error(std::string message) {
  cudaGetLastError();
  return Error(in_context(std::move(message)));
}

}  // namespace

void throw_cuda_error(const char* file, int line, const char* call, cudaError_t code) {
  throw clearing_last_error(cuda_error_message(file, line, call, code));
}

void throw_cublas_error(const char* file, int line, const char* call, cublasStatus_t code) {
  throw clearing_last_error(cublas_error_message(file, line, call, code));
}

void throw_cudnn_error(const char* file, int line, const char* call, cudnnStatus_t code) {
  // cuDNN keeps a per-thread log of why the last call failed; empty when logging found nothing.
  char detail[1024] = {};
#if CUDNN_MAJOR >= 9
  cudnnGetLastErrorString(detail, sizeof(detail));
#endif
  throw clearing_last_error(cudnn_error_message(file, line, call, code, detail));
}

bool sync_check_enabled() {
  static const bool enabled = env_flag("CONVNET_SYNC_CHECK", false);
  return enabled;
}

namespace {
// Waits for everything queued and throws when it faulted, naming `what` ("kernel conv_gemm_forward").
void sync_check(const char* file, int line, const std::string& what) {
  const cudaError_t code = cudaDeviceSynchronize();
  if (code != cudaSuccess)
    throw clearing_last_error(cuda_error_message(
        file, line, fmt::format("{} (found by CONVNET_SYNC_CHECK=1: it failed while running)", what).c_str(), code));
}
}  // namespace

void check_kernel_launch(const char* file, int line, const char* kernel) {
  count(Activity::kernel_launch);
  const cudaError_t code = cudaGetLastError();  // formats nothing on the hot path unless it failed
  if (code != cudaSuccess)
    throw Error(in_context(cuda_error_message(file, line, fmt::format("launch of {}", kernel).c_str(), code)));
  if (sync_check_enabled()) sync_check(file, line, fmt::format("kernel {}", kernel));
}

void check_queued_work(const char* file, int line, const char* what, bool library) {
  if (library) count(Activity::library_call);
  if (sync_check_enabled()) sync_check(file, line, what);
}

}  // namespace convnet::cuda
