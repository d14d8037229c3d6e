#include "core/layers/pool2d.h"

#include "core/layers/layer_util.h"

namespace convnet {

Pool2d::Pool2d(std::string name, int kernel, int stride, int padding)
    : Layer(std::move(name)), kernel_(kernel), stride_(stride == 0 ? kernel : stride), padding_(padding) {
  layer_util::check_window(*this, kernel, stride_, padding);  // stride 0 became the kernel
  if (padding > kernel / 2)
    config_error("padding {} is more than half the {}x{} kernel (PyTorch requires padding <= kernel / 2 = {})", padding,
                 kernel, kernel, kernel / 2);
}

std::string Pool2d::description() const {
  std::string d = fmt::format("{} {}x{} s{}", type(), kernel_, kernel_, stride_);
  if (padding_ != 0) d += fmt::format(" p{}", padding_);
  return d;
}

Pool2dParams Pool2d::pool_params() const {
  Pool2dParams p;
  p.kernel_h = p.kernel_w = kernel_;
  p.stride_h = p.stride_w = stride_;
  p.pad_h = p.pad_w = padding_;
  return p;
}

Shape Pool2d::configure(const Shape& in) {
  layer_util::check_image_input(*this, in);
  const int64_t h = in[0], w = in[1], c = in[2];
  if (h + 2 * padding_ < kernel_ || w + 2 * padding_ < kernel_)
    config_error("input {}x{} is smaller than the {}x{} pooling window", h, w, kernel_, kernel_);
  const int64_t p = conv_output_size(h, kernel_, stride_, padding_);
  const int64_t q = conv_output_size(w, kernel_, stride_, padding_);
  return record_shapes(in, {p, q, c});
}

MaxPool2d::MaxPool2d(std::string name, int kernel, int stride, int padding)
    : Pool2d(std::move(name), kernel, stride, padding) {}

int64_t MaxPool2d::state_bytes(int64_t batch) const {
  return batch * shape_numel(output_shape()) * static_cast<int64_t>(dtype_size(DType::i32));
}

void MaxPool2d::forward(const Tensor& x, Tensor& y, Mode /*mode*/) {
  layer_util::check_io(*this, x, y);
  layer_util::ensure_tensor(backend(), argmax_, y.shape(), DType::i32);
  backend().max_pool2d_forward(x, y, argmax_, pool_params());
}

void MaxPool2d::backward(const Tensor& /*x*/, const Tensor& /*y*/, const Tensor& dy, Tensor* dx) {
  if (!dx) return;
  CONVNET_CHECK(argmax_.defined() && argmax_.shape() == dy.shape(), "{}: backward without a matching forward", name());
  backend().max_pool2d_backward(dy, argmax_, *dx, pool_params());
}

AvgPool2d::AvgPool2d(std::string name, int kernel, int stride, int padding)
    : Pool2d(std::move(name), kernel, stride, padding) {}

void AvgPool2d::forward(const Tensor& x, Tensor& y, Mode /*mode*/) {
  layer_util::check_io(*this, x, y);
  backend().avg_pool2d_forward(x, y, pool_params());
}

void AvgPool2d::backward(const Tensor& /*x*/, const Tensor& /*y*/, const Tensor& dy, Tensor* dx) {
  if (dx) backend().avg_pool2d_backward(dy, *dx, pool_params());
}

Shape GlobalAvgPool::configure(const Shape& in) {
  layer_util::check_image_input(*this, in);
  if (in[0] > INT32_MAX || in[1] > INT32_MAX) config_error("input {} is too large", shape_str(in));
  return record_shapes(in, {in[2]});
}

Pool2dParams GlobalAvgPool::whole_image() const {
  Pool2dParams p;
  p.kernel_h = p.stride_h = static_cast<int>(input_shape()[0]);
  p.kernel_w = p.stride_w = static_cast<int>(input_shape()[1]);
  p.pad_h = p.pad_w = 0;
  return p;
}

void GlobalAvgPool::forward(const Tensor& x, Tensor& y, Mode /*mode*/) {
  const int64_t n = layer_util::check_io(*this, x, y);
  Tensor y4 = y.reshaped({n, 1, 1, output_shape()[0]});
  backend().avg_pool2d_forward(x, y4, whole_image());
}

void GlobalAvgPool::backward(const Tensor& /*x*/, const Tensor& /*y*/, const Tensor& dy, Tensor* dx) {
  if (!dx) return;
  const Tensor dy4 = dy.reshaped({dy.dim(0), 1, 1, output_shape()[0]});
  backend().avg_pool2d_backward(dy4, *dx, whole_image());
}

}  // namespace convnet
