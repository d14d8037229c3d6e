// Process-wide counts of what the GPU backends asked of the device (core's DeviceActivity):
// incremented where the work is queued (a kernel launch check, a cuDNN/cuBLAS call, a copy) or
// waited for (stream and event synchronizations). Relaxed atomics: the counts are for reports,
// not for ordering. No CUDA header needed.
#pragma once

#include "core/base/backend.h"

namespace convnet::cuda {

void count_kernel_launch() noexcept;
void count_library_call() noexcept;
void count_upload() noexcept;       // host -> device copy
void count_download() noexcept;     // device -> host copy
void count_device_copy() noexcept;  // device -> device copy or memset
void count_host_wait() noexcept;

// Everything counted so far in this process.
DeviceActivity device_activity() noexcept;

}  // namespace convnet::cuda
