// Graph: the host-side sequential net of layer objects, built from the config.
//
// build() runs shape inference layer by layer (errors name the layer), gives each layer its
// backend (the graph-wide one unless overridden per layer), allocates parameters, activations and
// gradient buffers once, and initializes parameters in layer order from one Rng. forward() and
// backward() then run without allocating as long as the batch size stays the same; a different
// batch size (the last test batch) reallocates the activations. Tensors crossing from one
// device to another are copied by the receiving layer's backend.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/base/backend.h"
#include "core/base/rng.h"
#include "core/layers/layer.h"

namespace convnet {

class Graph {
 public:
  // `module` is the PyTorch-style prefix of the layer's parameters, e.g. "features.0".
  void add(std::unique_ptr<Layer> layer, std::string module);

  // `layer_backends` maps layer names to backends that override `backend` for that layer.
  void build(const Shape& example_shape, Backend& backend, Rng& rng,
             const std::map<std::string, Backend*>& layer_backends = {});

  // input: [N, example_shape...] on any device. Returns the last layer's output (on its device).
  const Tensor& forward(const Tensor& input, Mode mode);
  // dout: gradient of the loss w.r.t. forward()'s result, on the last layer's device.
  // Writes every parameter gradient; the input gradient is not computed.
  void backward(const Tensor& dout);
  void set_step_seed(uint64_t seed);

  // Data-dependent initialisation (Layer::wants_data_init, e.g. conv init: whitening), after build().
  bool needs_data_init() const;
  // host_images: host f32 [N, example_shape...], N > 0 (else Error). Runs them through the net in
  // eval mode, in chunks, up to the last layer that wants data init, and calls each such layer's
  // initialize_from_data() with a host tensor of its input for all N images, so a later layer
  // sees its input as computed with the earlier layers already initialised. Works in its own
  // temporaries: the graph's activations are untouched, but layers that keep per-batch scratch
  // (pooling argmax, dropout masks) resize it to the chunk size and back at the next forward(),
  // as on any batch-size change. Logs (info) which layers were initialised from how many images.
  // A no-op when no layer wants data init.
  void initialize_from_data(const Tensor& host_images);

  size_t size() const { return nodes_.size(); }
  Layer& layer(size_t i) { return *nodes_[i].layer; }
  const Layer& layer(size_t i) const { return *nodes_[i].layer; }
  const std::string& module(size_t i) const { return nodes_[i].module; }
  Backend& layer_backend(size_t i) const { return *nodes_[i].backend; }
  Backend& output_backend() const { return *nodes_.back().backend; }
  const Shape& example_shape() const { return example_shape_; }
  const Shape& output_shape() const;

  // Parameters and buffers with full names ("features.0.weight"), in layer order.
  std::vector<std::pair<std::string, Parameter*>> named_parameters();
  std::vector<std::pair<std::string, Buffer*>> named_buffers();
  std::vector<Backend*> parameter_backends();  // parallel to named_parameters()
  int64_t num_parameters();
  int64_t forward_flops() const;  // per example

  // One row per layer: name, type/description, backend, output shape, parameters, FLOPs.
  struct LayerSummary {
    std::string name, module, description, backend;
    Shape output_shape;
    int64_t parameters = 0, flops = 0;
  };
  std::vector<LayerSummary> summary();
  std::string summary_table();

 private:
  struct Node {
    std::unique_ptr<Layer> layer;
    std::string module;
    Backend* backend = nullptr;
    Tensor output;       // [N, output_shape...] on the layer's device
    Tensor grad_output;  // same shape
  };
  void allocate_activations(int64_t batch);
  void log_backends() const;
  // The layer's input: the previous output, or a copy of it on this layer's device.
  const Tensor& input_for(size_t i, const Tensor& graph_input);
  // Host f32 [N, input_shape(end)...]: `input` (host f32 [N, input_shape(begin)...]) through layers
  // [begin, end) in eval mode, in chunks.
  Tensor forward_to_host(const Tensor& input, size_t begin, size_t end);

  std::vector<Node> nodes_;
  std::vector<Tensor> staged_inputs_;  // per layer: copy of its input when devices differ
  std::vector<Tensor> staged_grads_;   // per layer: copy of its dx when devices differ
  Shape example_shape_;
  int64_t batch_ = -1;
  // What each layer read in the last forward() (the caller's input must outlive backward()).
  std::vector<const Tensor*> layer_inputs_;
  bool built_ = false;
};

}  // namespace convnet
