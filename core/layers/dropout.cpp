#include "core/layers/dropout.h"

#include "core/base/hash.h"
#include "core/layers/layer_util.h"

namespace convnet {

Dropout::Dropout(std::string name, float p) : Layer(std::move(name)), p_(p) {
  if (!(p >= 0.0f && p < 1.0f)) config_error("dropout probability p must be in [0, 1), got {}", p);
  salt_ = fnv1a64(this->name());
  seed_ = hash64(0, salt_);
}

std::string Dropout::description() const {
  return fmt::format("dropout p={}", p_);
}

Shape Dropout::configure(const Shape& in) {
  layer_util::check_nonempty_input(*this, in);
  return record_shapes(in, in);
}

void Dropout::set_step_seed(uint64_t seed) {
  seed_ = hash64(seed, salt_);
}

int64_t Dropout::state_bytes(int64_t batch) const {
  return batch * shape_numel(input_shape()) * static_cast<int64_t>(dtype_size(DType::u8));
}

void Dropout::forward(const Tensor& x, Tensor& y, Mode mode) {
  layer_util::check_io(*this, x, y);
  last_forward_train_ = mode == Mode::train;
  if (!last_forward_train_) {
    backend().copy(y, x);
    return;
  }
  layer_util::ensure_tensor(backend(), mask_, x.shape(), DType::u8);
  backend().dropout_forward(x, y, mask_, p_, seed_);
}

void Dropout::backward(const Tensor& /*x*/, const Tensor& /*y*/, const Tensor& dy, Tensor* dx) {
  if (!dx) return;
  if (!last_forward_train_) {
    backend().copy(*dx, dy);
    return;
  }
  CONVNET_CHECK(mask_.shape() == dy.shape(), "{}: backward without a matching forward", name());
  backend().dropout_backward(dy, mask_, p_, *dx);
}

}  // namespace convnet
