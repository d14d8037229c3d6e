// Emulation stand-in for the CUDA runtime API header: the types and calls the kernels in cuda/ use.
// Streams are opaque and ignored: every emulated launch finishes before it returns, which is a
// valid schedule of any single stream.
#pragma once

#include "tests/emu/emu_runtime.h"  // dim3, which the real header declares too (cuda/reduce_kernels.h)

struct CUstream_st;
typedef CUstream_st* cudaStream_t;

// The error codes the emulated calls return (the real values).
enum cudaError { cudaSuccess = 0, cudaErrorInvalidValue = 1 };
typedef enum cudaError cudaError_t;

inline const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      return "invalid argument";
  }
  return "unrecognized error code";
}

enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
  cudaFuncAttributePreferredSharedMemoryCarveout = 9,
};

// Per kernel, as on the device: the dynamic shared memory limit is checked by emu::launch; the
// carveout is a performance hint, only range-checked.
template <class T>
cudaError_t cudaFuncSetAttribute(T* entry, cudaFuncAttribute attr, int value) {
  switch (attr) {
    case cudaFuncAttributeMaxDynamicSharedMemorySize:
      return emu::set_max_dynamic_shared_bytes(emu::kernel_id(entry), value) ? cudaSuccess : cudaErrorInvalidValue;
    case cudaFuncAttributePreferredSharedMemoryCarveout:
      return value >= -1 && value <= 100 ? cudaSuccess : cudaErrorInvalidValue;
  }
  return cudaErrorInvalidValue;
}
