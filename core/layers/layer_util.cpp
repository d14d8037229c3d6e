#include "core/layers/layer_util.h"

namespace convnet::layer_util {

void check_nonempty_input(const Layer& layer, const Shape& in) {
  if (in.empty() || shape_numel(in) <= 0) config_error(layer, "expects a non-empty input, got {}", shape_str(in));
}

void check_image_input(const Layer& layer, const Shape& in) {
  if (in.size() != 3) config_error(layer, "expects an image input [H, W, C], got {}", shape_str(in));
  if (in[0] <= 0 || in[1] <= 0 || in[2] <= 0) config_error(layer, "empty input {}", shape_str(in));
}

void check_window(const Layer& layer, int kernel, int stride, int padding) {
  if (kernel <= 0) config_error(layer, "kernel must be positive, got {}", kernel);
  if (stride <= 0) config_error(layer, "stride must be positive, got {}", stride);
  if (padding < 0) config_error(layer, "padding must be non-negative, got {}", padding);
}

Shape with_batch(int64_t n, const Shape& example) {
  Shape shape;
  shape.reserve(example.size() + 1);
  shape.push_back(n);
  shape.insert(shape.end(), example.begin(), example.end());
  return shape;
}

void allocate_parameter(Backend& backend, Parameter& param, const Shape& shape) {
  param.value = backend.empty(shape);
  param.grad = backend.empty(shape);
  backend.fill(param.grad, 0.0f);
}

void keep_bf16_copy(Backend& backend, Parameter& weight) {
  const bool keep = backend.precision() == Precision::bf16 && !weight.frozen;
  weight.bf16_copy = keep ? backend.empty(weight.value.shape(), DType::bf16) : Tensor();
  weight.bf16_copy_current = false;
}

Tensor bf16_values(Backend& backend, const Tensor& t) {
  Tensor out = backend.empty(t.shape(), DType::bf16);
  backend.to_bf16(t, out);
  return out;
}

const Tensor& weight_operand(Backend& backend, Parameter& weight) {
  if (!weight.bf16_copy.defined()) return weight.value;
  if (!weight.bf16_copy_current) backend.to_bf16(weight.value, weight.bf16_copy);
  weight.bf16_copy_current = true;
  return weight.bf16_copy;
}

void ensure_tensor(Backend& backend, Tensor& t, const Shape& shape, DType dtype) {
  if (t.defined() && t.shape() == shape && t.dtype() == dtype && t.device() == backend.device()) return;
  t = backend.empty(shape, dtype);
}

int64_t check_io(const Layer& layer, const Tensor& x, const Tensor& y) {
  CONVNET_CHECK(x.rank() >= 1, "{}: input of rank 0", layer.name());
  const int64_t n = x.dim(0);
  CONVNET_CHECK(x.shape() == with_batch(n, layer.input_shape()), "{}: input {} does not match [N] + {}", layer.name(),
                shape_str(x.shape()), shape_str(layer.input_shape()));
  CONVNET_CHECK(y.shape() == with_batch(n, layer.output_shape()), "{}: output {} does not match [{}] + {}",
                layer.name(), shape_str(y.shape()), n, shape_str(layer.output_shape()));
  return n;
}

void upload(Backend& backend, Tensor& dst, const Tensor& host) {
  CONVNET_CHECK(host.is_cpu() && host.numel() == dst.numel(), "upload of {} into {}", shape_str(host.shape()),
                shape_str(dst.shape()));
  backend.copy(dst, host);
}

void upload_value(Backend& backend, Parameter& param, const Tensor& host) {
  upload(backend, param.value, host);
  param.value_written();
}

}  // namespace convnet::layer_util
