#include "core/cpu/checks.h"

#include "core/base/error.h"

namespace convnet::cpu {

void check_tensor(const Tensor& t, const char* op, const char* name, DType dtype) {
  CONVNET_CHECK(t.defined(), "{}: {} is undefined", op, name);
  CONVNET_CHECK(t.is_cpu(), "{}: {} lives on {}, the cpu backend needs host tensors", op, name, t.device().str());
  CONVNET_CHECK(t.dtype() == dtype, "{}: {} has dtype {}, expected {}", op, name, dtype_name(t.dtype()),
                dtype_name(dtype));
}

void check_shape(const Tensor& t, const Shape& expected, const char* op, const char* name, DType dtype) {
  check_tensor(t, op, name, dtype);
  CONVNET_CHECK(t.shape() == expected, "{}: {} has shape {}, expected {}", op, name, shape_str(t.shape()),
                shape_str(expected));
}

void check_rank(const Tensor& t, int rank, const char* op, const char* name, DType dtype) {
  check_tensor(t, op, name, dtype);
  CONVNET_CHECK(t.rank() == rank, "{}: {} has shape {}, expected rank {}", op, name, shape_str(t.shape()), rank);
}

}  // namespace convnet::cpu
