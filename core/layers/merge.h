// Merge layers: a layer that reads the outputs of several earlier layers (`from: [a, b]`).
//
// Contract (in addition to Layer's): configure_inputs() gets the inputs' per-example shapes in
// `from` order and throws ConfigError naming the layer when they cannot be merged;
// forward_inputs() and backward_inputs() take the inputs in the same order, and backward writes
// every requested dx (dxs[i] null: not wanted) without accumulating into it: the graph sums the
// gradients of a tensor read by several layers.
//
//   add:    y = x0 + x1 + ... (left to right), every input of one shape; dx_i = dy.
//   concat: y = the inputs side by side along the channel axis (the last: NHWC), in `from` order;
//           every input has the same shape but for the channel count; dx_i = dy's channel range.
#pragma once

#include <vector>

#include "core/layers/layer.h"

namespace convnet {

class MergeLayer : public Layer {
 public:
  using Layer::Layer;
  // The single-input forms: a merge of one input (a ConfigError in configure_inputs).
  Shape configure(const Shape& input_shape) override { return configure_inputs({input_shape}); }
  void forward(const Tensor& x, Tensor& y, Mode mode) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;
  bool backward_reads_input() const override { return false; }
  bool backward_reads_output() const override { return false; }

 protected:
  // ConfigError unless there are at least two inputs.
  void check_input_count(const std::vector<Shape>& input_shapes) const;
  // Checks (CONVNET_CHECK) that xs match the configured shapes with one batch size and y the output.
  void check_inputs(std::span<const Tensor* const> xs, const Tensor& y) const;

  std::vector<Shape> input_shapes_;
};

class Add final : public MergeLayer {
 public:
  using MergeLayer::MergeLayer;
  std::string type() const override { return "add"; }
  std::string description() const override;  // "add 2 inputs"
  Shape configure_inputs(const std::vector<Shape>& input_shapes) override;
  void forward_inputs(std::span<const Tensor* const> xs, Tensor& y, Mode mode) override;
  void backward_inputs(std::span<const Tensor* const> xs, const Tensor& y, const Tensor& dy,
                       std::span<Tensor* const> dxs) override;
};

class Concat final : public MergeLayer {
 public:
  using MergeLayer::MergeLayer;
  std::string type() const override { return "concat"; }
  std::string description() const override;  // "concat 64+32 channels"
  Shape configure_inputs(const std::vector<Shape>& input_shapes) override;
  void forward_inputs(std::span<const Tensor* const> xs, Tensor& y, Mode mode) override;
  void backward_inputs(std::span<const Tensor* const> xs, const Tensor& y, const Tensor& dy,
                       std::span<Tensor* const> dxs) override;
};

}  // namespace convnet
