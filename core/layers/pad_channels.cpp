#include "core/layers/pad_channels.h"

#include "core/layers/layer_util.h"

namespace convnet {

PadChannels::PadChannels(std::string name, int stride, int before, int after)
    : Layer(std::move(name)), stride_(stride), before_(before), after_(after) {
  if (stride < 1) config_error("stride must be positive, got {}", stride);
  if (before < 0 || after < 0)
    config_error("the zero channels added must not be negative, got {} and {}", before, after);
}

std::string PadChannels::description() const {
  return fmt::format("pad_channels s{} +{}+{}", stride_, before_, after_);
}

Pool2dParams PadChannels::subsample() const {
  Pool2dParams p;
  p.kernel_h = p.kernel_w = 1;
  p.stride_h = p.stride_w = stride_;
  p.pad_h = p.pad_w = 0;
  return p;
}

Shape PadChannels::configure(const Shape& in) {
  layer_util::check_image_input(*this, in);
  const int64_t p = conv_output_size(in[0], 1, stride_, 0), q = conv_output_size(in[1], 1, stride_, 0);
  return record_shapes(in, {p, q, before_ + in[2] + after_});
}

int64_t PadChannels::state_bytes(int64_t batch) const {
  if (stride_ == 1) return 0;
  return batch * output_shape()[0] * output_shape()[1] * input_shape()[2] * static_cast<int64_t>(sizeof(float));
}

void PadChannels::forward(const Tensor& x, Tensor& y, Mode /*mode*/) {
  const int64_t n = layer_util::check_io(*this, x, y);
  const int64_t c = input_shape()[2];
  const Tensor* kept = &x;
  if (stride_ > 1) {
    layer_util::ensure_tensor(backend(), subsampled_, {n, output_shape()[0], output_shape()[1], c});
    backend().avg_pool2d_forward(x, subsampled_, subsample());
    kept = &subsampled_;
  }
  if (before_ + after_ > 0) backend().fill(y, 0.0f);
  backend().copy_channels(*kept, 0, y, before_, c);
}

void PadChannels::backward(const Tensor& /*x*/, const Tensor& /*y*/, const Tensor& dy, Tensor* dx) {
  if (!dx) return;
  const int64_t n = dy.dim(0), c = input_shape()[2];
  if (stride_ == 1) {
    backend().copy_channels(dy, before_, *dx, 0, c);
    return;
  }
  layer_util::ensure_tensor(backend(), subsampled_, {n, output_shape()[0], output_shape()[1], c});
  backend().copy_channels(dy, before_, subsampled_, 0, c);
  backend().avg_pool2d_backward(subsampled_, *dx, subsample());  // zero at the pixels not kept
}

}  // namespace convnet
