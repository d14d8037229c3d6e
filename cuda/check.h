// Error checking for CUDA runtime, cuBLAS and cuDNN calls.
//
// CONVNET_CUDA_CHECK(call), CONVNET_CUBLAS_CHECK(call) and CONVNET_CUDNN_CHECK(call) evaluate the
// call once and throw convnet::Error "FILE:LINE: CALL failed: <error name>: <error string>" when it
// does not return success; inside a backend op (cuda/op_scope.h) the message ends with
// "(during <backend> <op>(<tensor shapes>))". Throwing clears the runtime's last error, so a
// non-sticky error (an invalid device ordinal, say) is reported once, here, and not again by the
// next unrelated launch check. CONVNET_CUDA_CHECK_LAUNCH("kernel") checks a kernel launch (launch
// errors are only visible through cudaGetLastError); CONVNET_CUDNN_LAUNCH and
// CONVNET_CUBLAS_LAUNCH check a library call that queues device work. The message builders are
// plain functions so they can be tested without a GPU by passing error codes directly.
//
// Faults inside a kernel (an illegal address) surface asynchronously, at some later synchronize.
// With CONVNET_SYNC_CHECK=1 in the environment every launch check (our kernels, the library calls
// above, the backends' copies) also synchronizes the device and throws there, naming the kernel or
// call and the op: slow, for finding where a fault happens.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <string>

namespace convnet::cuda {

// "CUBLAS_STATUS_ALLOC_FAILED" etc.; "CUBLAS_STATUS_<code>" for codes this build does not know.
std::string cublas_status_name(cublasStatus_t status);
// Human description of a cuBLAS status ("the resource allocation failed").
std::string cublas_status_string(cublasStatus_t status);

// "FILE:LINE: CALL failed: <name>: <description>" for each library's status type.
std::string cuda_error_message(const char* file, int line, const char* call, cudaError_t code);
std::string cublas_error_message(const char* file, int line, const char* call, cublasStatus_t code);
// cuDNN has one string per status (the enumerator name); the description is the status category
// ("bad parameter", "not supported", ...) and number, plus `detail` (cuDNN's last error log) when
// not empty.
std::string cudnn_error_message(const char* file, int line, const char* call, cudnnStatus_t code,
                                const std::string& detail = {});

// Throw convnet::Error with the message above. Not inline so the macros stay small.
[[noreturn]] void throw_cuda_error(const char* file, int line, const char* call, cudaError_t code);
[[noreturn]] void throw_cublas_error(const char* file, int line, const char* call, cublasStatus_t code);
[[noreturn]] void throw_cudnn_error(const char* file, int line, const char* call, cudnnStatus_t code);

// Throws "FILE:LINE: launch of KERNEL failed: ..." when cudaGetLastError reports an error (which
// also clears a non-sticky launch error such as an invalid configuration). Counts the launch
// (cuda/activity.h) and, under CONVNET_SYNC_CHECK=1, waits for the kernel and reports its fault.
void check_kernel_launch(const char* file, int line, const char* kernel);
// After a successful library call or copy that queued device work (`what` names it): counts a
// library call when `library` is set and, under CONVNET_SYNC_CHECK=1, waits for the device and
// throws "FILE:LINE: WHAT failed while running: ..." on a fault.
void check_queued_work(const char* file, int line, const char* what, bool library);

// Whether CONVNET_SYNC_CHECK=1 (read once; any value but 0 or 1 throws ConfigError).
bool sync_check_enabled();

}  // namespace convnet::cuda

#define CONVNET_CUDA_CHECK(call)                                                          \
  do {                                                                                    \
    const cudaError_t convnet_cuda_status_ = (call);                                      \
    if (convnet_cuda_status_ != cudaSuccess)                                              \
      ::convnet::cuda::throw_cuda_error(__FILE__, __LINE__, #call, convnet_cuda_status_); \
  } while (0)

#define CONVNET_CUBLAS_CHECK(call)                                                            \
  do {                                                                                        \
    const cublasStatus_t convnet_cublas_status_ = (call);                                     \
    if (convnet_cublas_status_ != CUBLAS_STATUS_SUCCESS)                                      \
      ::convnet::cuda::throw_cublas_error(__FILE__, __LINE__, #call, convnet_cublas_status_); \
  } while (0)

#define CONVNET_CUDNN_CHECK(call)                                                           \
  do {                                                                                      \
    const cudnnStatus_t convnet_cudnn_status_ = (call);                                     \
    if (convnet_cudnn_status_ != CUDNN_STATUS_SUCCESS)                                      \
      ::convnet::cuda::throw_cudnn_error(__FILE__, __LINE__, #call, convnet_cudnn_status_); \
  } while (0)

// Place right after a <<<...>>> launch; the argument names the kernel in the message.
#define CONVNET_CUDA_CHECK_LAUNCH(kernel) ::convnet::cuda::check_kernel_launch(__FILE__, __LINE__, kernel)

// A cuDNN or cuBLAS call that queues device work (a convolution, a GEMM, ...): checked, counted,
// and synchronized under CONVNET_SYNC_CHECK=1.
#define CONVNET_CUDNN_LAUNCH(call)                                       \
  do {                                                                   \
    CONVNET_CUDNN_CHECK(call);                                           \
    ::convnet::cuda::check_queued_work(__FILE__, __LINE__, #call, true); \
  } while (0)
#define CONVNET_CUBLAS_LAUNCH(call)                                      \
  do {                                                                   \
    CONVNET_CUBLAS_CHECK(call);                                          \
    ::convnet::cuda::check_queued_work(__FILE__, __LINE__, #call, true); \
  } while (0)
// A copy or memset queued with the CUDA runtime: checked, and synchronized under CONVNET_SYNC_CHECK=1.
#define CONVNET_CUDA_QUEUE(call)                                          \
  do {                                                                    \
    CONVNET_CUDA_CHECK(call);                                             \
    ::convnet::cuda::check_queued_work(__FILE__, __LINE__, #call, false); \
  } while (0)
