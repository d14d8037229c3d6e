// Which Backend op the calling thread is running, so that a CUDA, cuDNN or cuBLAS error raised
// inside it (cuda/check.h) names the op and its tensors' shapes, not only the failing call:
//   "cuda/conv_gemm_forward.cu:160: launch of conv_gemm_forward failed: ... (during cuda
//    conv2d_forward(x [128, 32, 32, 64], w [64, 3, 3, 64], y [128, 32, 32, 64]))".
// Each GPU backend op opens an OpScope after its argument checks; scopes nest (an op calling
// another op's code names the innermost). Thread-local, so backends on other threads do not mix.
#pragma once

#include <string>

#include "core/base/op_checks.h"
#include "cuda/device.h"

namespace convnet::cuda {

// Marks `checks`' op as the one running on this thread until destruction. Needs no GPU.
class OpContext {
 public:
  explicit OpContext(const OpChecks& checks) noexcept;
  ~OpContext();
  OpContext(const OpContext&) = delete;
  OpContext& operator=(const OpContext&) = delete;

 private:
  const OpChecks* previous_;
};

// "cuda conv2d_forward(x [...], ...)" for the innermost running op; empty outside any op.
std::string current_op_description();

// What a GPU backend op opens: the op's device made current (DeviceGuard) and its OpContext.
class OpScope {
 public:
  OpScope(int device, const OpChecks& checks) : guard_(device), context_(checks) {}

 private:
  DeviceGuard guard_;
  OpContext context_;
};

}  // namespace convnet::cuda
