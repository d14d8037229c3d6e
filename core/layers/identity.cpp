#include "core/layers/identity.h"

#include "core/layers/layer_util.h"

namespace convnet {

Shape Identity::configure(const Shape& in) {
  layer_util::check_nonempty_input(*this, in);
  return record_shapes(in, in);
}

void Identity::forward(const Tensor& x, Tensor& y, Mode /*mode*/) {
  layer_util::check_io(*this, x, y);
  backend().copy(y, x);
}

void Identity::backward(const Tensor& /*x*/, const Tensor& /*y*/, const Tensor& dy, Tensor* dx) {
  if (dx) backend().copy(*dx, dy);
}

}  // namespace convnet
