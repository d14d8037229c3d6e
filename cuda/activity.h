// Process-wide counts of what the GPU backends asked of the device (core's DeviceActivity):
// incremented where the work is queued (a kernel launch check, a cuDNN/cuBLAS call, a copy) or
// waited for (stream and event synchronizations). Relaxed atomics: the counts are for reports,
// not for ordering. No CUDA header needed.
#pragma once

#include "core/base/backend.h"

namespace convnet::cuda {

enum class Activity {
  kernel_launch,
  library_call,
  upload,       // host -> device copy
  download,     // device -> host copy
  device_copy,  // device -> device copy or memset
  host_wait,
};

void count(Activity what) noexcept;

// Everything counted so far in this process.
DeviceActivity device_activity() noexcept;

}  // namespace convnet::cuda
