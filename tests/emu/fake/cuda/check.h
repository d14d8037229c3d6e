// Emulation stand-in for cuda/check.h (found first on the emulation test's include path). The
// emulator validates each launch itself and throws emu::Error, so there is nothing to check after
// one. Only what the kernels use is defined: code calling any other CUDA runtime function fails to
// compile here, which is the signal to extend the emulation.
#pragma once

#include <string>

#include "cuda_runtime_api.h"
#include "tests/emu/emu_runtime.h"

#define CONVNET_CUDA_CHECK_LAUNCH(kernel) ((void)(kernel))

// Throws emu::Error "FILE:LINE: CALL failed: <error string>" when the call does not return
// cudaSuccess, as the real macro throws convnet::Error.
#define CONVNET_CUDA_CHECK(call)                                                             \
  do {                                                                                       \
    const cudaError_t convnet_cuda_status_ = (call);                                         \
    if (convnet_cuda_status_ != cudaSuccess)                                                 \
      throw ::emu::Error(std::string(__FILE__) + ":" + std::to_string(__LINE__) +            \
                         ": " #call " failed: " + cudaGetErrorString(convnet_cuda_status_)); \
  } while (0)
