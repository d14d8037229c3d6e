// Elementary device-memory operations: a fill kernel and checked host<->device copies.
// Pointers passed as device pointers must come from cudaMalloc (e.g. CudaCachingAllocator) on
// the calling thread's current device.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

namespace convnet::cuda {

// Sets n floats at device pointer `ptr` to `value`, queued on `stream` (returns before the kernel
// runs). n == 0 does nothing. Throws convnet::Error when the launch fails.
void fill_device(float* ptr, size_t n, float value, cudaStream_t stream);

// Copies `bytes` from host memory to device memory after the work already queued on `stream`,
// and waits for the copy to finish, so `src` may be reused on return.
void copy_to_device(void* dst, const void* src, size_t bytes, cudaStream_t stream);
// Copies `bytes` from device memory to host memory after the work already queued on `stream`,
// and waits for the copy to finish, so `dst` may be read on return.
void copy_to_host(void* dst, const void* src, size_t bytes, cudaStream_t stream);
// Copies `bytes` between device buffers, queued on `stream` (returns before the copy runs).
void copy_device_to_device(void* dst, const void* src, size_t bytes, cudaStream_t stream);

}  // namespace convnet::cuda
