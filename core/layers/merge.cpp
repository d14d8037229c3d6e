#include "core/layers/merge.h"

#include "core/layers/layer_util.h"

namespace convnet {

void MergeLayer::forward(const Tensor& x, Tensor& y, Mode mode) {
  const Tensor* xs[] = {&x};
  forward_inputs(xs, y, mode);
}

void MergeLayer::backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) {
  const Tensor* xs[] = {&x};
  Tensor* dxs[] = {dx};
  backward_inputs(xs, y, dy, dxs);
}

void MergeLayer::check_input_count(const std::vector<Shape>& input_shapes) const {
  if (input_shapes.size() < 2)
    config_error("a {} layer merges two or more inputs, got {} (list them in from: [a, b])", type(),
                 input_shapes.size());
  for (const Shape& s : input_shapes) layer_util::check_nonempty_input(*this, s);
}

void MergeLayer::check_inputs(std::span<const Tensor* const> xs, const Tensor& y) const {
  CONVNET_CHECK(xs.size() == input_shapes_.size(), "{}: {} inputs, configured for {}", name(), xs.size(),
                input_shapes_.size());
  const int64_t n = y.rank() > 0 ? y.dim(0) : 0;
  CONVNET_CHECK(y.shape() == layer_util::with_batch(n, output_shape()), "{}: output {} for {}", name(),
                shape_str(y.shape()), shape_str(output_shape()));
  for (size_t i = 0; i < xs.size(); ++i)
    CONVNET_CHECK(xs[i]->shape() == layer_util::with_batch(n, input_shapes_[i]), "{}: input {} is {}, expected {}",
                  name(), i, shape_str(xs[i]->shape()), shape_str(layer_util::with_batch(n, input_shapes_[i])));
}

// --- add ---

std::string Add::description() const {
  return fmt::format("add {} inputs", input_shapes_.size());
}

Shape Add::configure_inputs(const std::vector<Shape>& input_shapes) {
  check_input_count(input_shapes);
  for (size_t i = 1; i < input_shapes.size(); ++i)
    if (input_shapes[i] != input_shapes[0])
      config_error("cannot add inputs of shapes {} and {} (input {} differs from input 1)", shape_str(input_shapes[0]),
                   shape_str(input_shapes[i]), i + 1);
  input_shapes_ = input_shapes;
  return record_shapes(input_shapes[0], input_shapes[0]);
}

void Add::forward_inputs(std::span<const Tensor* const> xs, Tensor& y, Mode /*mode*/) {
  check_inputs(xs, y);
  backend().copy(y, *xs[0]);
  for (size_t i = 1; i < xs.size(); ++i) backend().axpby(1.0f, *xs[i], 1.0f, y);
}

void Add::backward_inputs(std::span<const Tensor* const> /*xs*/, const Tensor& /*y*/, const Tensor& dy,
                          std::span<Tensor* const> dxs) {
  for (Tensor* dx : dxs)
    if (dx) backend().copy(*dx, dy);
}

// --- concat ---

std::string Concat::description() const {
  std::vector<int64_t> channels;
  for (const Shape& s : input_shapes_) channels.push_back(s.back());
  return fmt::format("concat {} channels", fmt::join(channels, "+"));
}

Shape Concat::configure_inputs(const std::vector<Shape>& input_shapes) {
  check_input_count(input_shapes);
  Shape out = input_shapes[0];
  for (size_t i = 1; i < input_shapes.size(); ++i) {
    const Shape& s = input_shapes[i];
    if (s.size() != out.size() || !std::equal(s.begin(), s.end() - 1, out.begin()))
      config_error(
          "cannot concatenate inputs of shapes {} and {} along the channel axis (input {} differs from "
          "input 1 outside the last axis)",
          shape_str(input_shapes[0]), shape_str(s), i + 1);
    out.back() += s.back();
  }
  input_shapes_ = input_shapes;
  return record_shapes(input_shapes[0], out);
}

void Concat::forward_inputs(std::span<const Tensor* const> xs, Tensor& y, Mode /*mode*/) {
  check_inputs(xs, y);
  int64_t offset = 0;
  for (const Tensor* x : xs) {
    backend().copy_channels(*x, 0, y, offset, x->dim(-1));
    offset += x->dim(-1);
  }
}

void Concat::backward_inputs(std::span<const Tensor* const> /*xs*/, const Tensor& /*y*/, const Tensor& dy,
                             std::span<Tensor* const> dxs) {
  int64_t offset = 0;
  for (size_t i = 0; i < dxs.size(); ++i) {
    const int64_t channels = input_shapes_[i].back();
    if (dxs[i]) backend().copy_channels(dy, offset, *dxs[i], 0, channels);
    offset += channels;
  }
}

}  // namespace convnet
