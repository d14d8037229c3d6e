// Graph: the host-side net of layer objects, a feed-forward DAG built from the config.
//
// Each layer reads the outputs of earlier layers (`from`: names, relative indices "-2", or
// "input"; by default the previous layer) and the last layer's output is the net's output.
// build() resolves the inputs (a reference to an unknown or later layer, a layer listed twice, or
// an output nobody reads is a ConfigError naming the layer and its config line), runs shape
// inference in config order (errors name the layer), gives each layer its backend (the graph-wide
// one unless overridden per layer), allocates parameters, activations and gradient buffers once,
// and initializes parameters in layer order from one Rng. forward() runs the layers in config
// order; backward() runs them in reverse and sums the gradients of an output read by several
// layers in a fixed order (the last reader's first), so results do not depend on timing. Both
// run without allocating as long as the batch size stays the same; a different batch size (the
// last test batch) reallocates the activations. Gradient buffers are shared between layers whose
// gradients are never live at once, so a chain holds two of them, not one per layer. Outputs that
// no backward reads (Layer::backward_reads_input / backward_reads_output: an add's inputs, a
// relu's input, a pooling layer's output...) share buffers too, once their last reader has run;
// the others live until backward. In bf16 precision an output is stored bf16 when its layer
// can write it and all its readers take it (Layer::writes_bf16_output / reads_bf16_input: a conv
// output read by batchnorms, a relu output read by convs and linear layers). Tensors
// crossing from one device to another are copied by the receiving layer's backend.
#pragma once

#include <functional>
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
  // `module` is the PyTorch-style prefix of the layer's parameters, e.g. "features.0". `from`: the
  // layers whose outputs it reads (see above; empty: the previous layer); `line`: where the layer
  // is written in the config (0: not from a file), for error messages.
  void add(std::unique_ptr<Layer> layer, std::string module, std::vector<std::string> from = {}, int line = 0);

  // `layer_backends` maps layer names to backends that override `backend` for that layer.
  void build(const Shape& example_shape, Backend& backend, Rng& rng,
             const std::map<std::string, Backend*>& layer_backends = {});
  // build() in two steps, so that a caller can check what the net needs (core/train/
  // memory_estimate.h) before any of it is allocated: plan() resolves the inputs, infers every
  // shape and assigns the backends and gradient slots (activation_memory() and each layer's
  // parameter_numel() are then known); allocate_parameters() allocates and initializes the
  // parameters, after which the graph is built.
  void plan(const Shape& example_shape, Backend& backend, const std::map<std::string, Backend*>& layer_backends = {});
  // Before plan(): false gives every output its own buffer (to check a layer's backward_reads_*
  // against; the results must not change, only the memory).
  void set_output_reuse(bool reuse) { output_reuse_ = reuse; }
  // Before plan(): false stores every output f32 (to check bf16 storage against; in bf16 precision
  // the results must not change, since the readers round their operands to bf16 anyway).
  void set_bf16_storage(bool store) { bf16_storage_ = store; }
  // After plan(): the dtype layer `i`'s output is stored in.
  DType output_dtype(size_t i) const { return nodes_.at(i).output_dtype; }
  void allocate_parameters(Rng& rng);

  // input: [N, example_shape...] on any device. Returns the last layer's output (on its device).
  const Tensor& forward(const Tensor& input, Mode mode);
  // dout: gradient of the loss w.r.t. forward()'s result, on the last layer's device.
  // Writes every parameter gradient; the input gradient is not computed.
  void backward(const Tensor& dout);
  // Called by backward() after layer i's backward has written its parameter gradients (in reverse
  // layer order), e.g. to start all-reducing them while earlier layers still run. Empty: none.
  void set_backward_hook(std::function<void(size_t layer)> hook) { backward_hook_ = std::move(hook); }
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

  // The layers a layer reads, as node indices (kGraphInput: the net's input), after build().
  static constexpr int kGraphInput = -1;
  const std::vector<int>& layer_inputs(size_t i) const { return nodes_[i].inputs; }

  // Receptive field of one output pixel of a layer, in input pixels: its extent (size) and the
  // distance between neighbouring output pixels' fields (jump). `whole` once it sees all of the
  // input (global pooling, linear, or size >= the input's extent).
  struct ReceptiveField {
    int64_t size_h = 1, size_w = 1, jump_h = 1, jump_w = 1;
    bool whole = false;
  };

  // Memory the graph holds for activations at a batch size: layer outputs and gradient buffers
  // (after sharing), in bytes. Layers' own per-batch scratch (saved statistics, masks) is not
  // counted.
  struct ActivationMemory {
    int64_t outputs = 0, gradients = 0;
    int64_t layer_state = 0;  // what layers keep themselves (Layer::state_bytes)
    int64_t total() const { return outputs + gradients + layer_state; }
  };
  ActivationMemory activation_memory(int64_t batch) const;

  // One row per layer: name, inputs (when not just the previous layer), type/description,
  // backend, output shape (and storage, when bf16), parameters, FLOPs, receptive field.
  struct LayerSummary {
    std::string name, module, description, backend;
    std::vector<std::string> inputs;  // names ("input" for the net's input); empty: the previous layer
    Shape output_shape;
    int64_t parameters = 0, flops = 0;
    ReceptiveField field;
    bool first_whole = false;  // the first layer whose field covers the whole input
    bool bf16_output = false;  // its output is stored bf16 (bf16 activation storage)
  };
  std::vector<LayerSummary> summary();
  // The summary as a table, with the activation memory for `batch` (0: not shown).
  std::string summary_table(int64_t batch = 0);

 private:
  struct Node {
    std::unique_ptr<Layer> layer;
    std::string module;
    std::vector<std::string> from;  // as written
    int line = 0;
    std::vector<int> inputs;          // resolved `from`: node indices or kGraphInput
    int grad_slot = -1;               // index into grad_slots_ of this layer's output gradient (-1: the last layer)
    int output_slot = -1;             // index into output_slots_ when no backward reads this output (-1: its own)
    int readers = 0;                  // layers reading this output
    DType output_dtype = DType::f32;  // bf16: see assign_output_dtypes()
    Backend* backend = nullptr;
    Tensor output;                      // [N, output_shape...] on the layer's device
    Tensor grad_output;                 // same shape: a view of its gradient slot
    Tensor grad_scratch;                // same shape, when several layers read this output: one reader's part
    std::vector<Tensor> staged_inputs;  // per input: a copy on this layer's device when devices differ
    std::vector<Tensor> staged_grads;   // per input: its dx on this layer's device when devices differ
    std::vector<const Tensor*> read;    // what it read in the last forward()
  };
  void resolve_inputs();
  void configure_layers(Backend& backend, const std::map<std::string, Backend*>& layer_backends);
  void assign_gradient_slots();
  void assign_output_slots();
  void assign_output_dtypes();
  void allocate_activations(int64_t batch);
  void log_backends() const;
  std::string where(const Node& n) const;  // "layer 'x' (config line 12)"
  // The e-th input of node i: the producing output, or a copy of it on this layer's device.
  const Tensor& input_for(size_t i, size_t e, const Tensor& graph_input);
  // Moves node i's input gradients (written by its backward) into the producers' gradients: a
  // copy across devices, then a sum when an earlier reader already wrote one.
  void deliver_gradients(size_t i, std::vector<bool>& written);
  // Host f32 [N, input_shape(end)...]: `input` (host f32 [N, example_shape...]) through layers
  // [0, end) in eval mode, in chunks. Layer `end` reads one input.
  Tensor forward_to_host(const Tensor& input, size_t end);
  std::vector<ReceptiveField> receptive_fields() const;

  std::vector<Node> nodes_;
  // Buffers shared by tensors that are never live at once (same device): gradients, and the
  // outputs that no backward reads (live from their forward to their last reader's).
  struct BufferSlot {
    Backend* backend = nullptr;
    int64_t example_numel = 0;  // the largest tensor it holds, per example
    Tensor buffer;              // [batch * example_numel]
    int64_t mark = 0;           // the planner's note of when it is free (see assign_*_slots)
  };
  // The first slot on `backend`'s device that `is_free`, else a new one; grown to hold `numel`.
  static int claim_slot(std::vector<BufferSlot>& slots, Backend* backend, int64_t numel,
                        const std::function<bool(const BufferSlot&)>& is_free);
  std::vector<BufferSlot> grad_slots_, output_slots_;
  Shape example_shape_;
  std::function<void(size_t)> backward_hook_;
  int64_t batch_ = -1;
  bool planned_ = false, built_ = false;
  bool output_reuse_ = true;
  bool bf16_storage_ = true;
};

}  // namespace convnet
