// Layer: one node of the graph, with forward and backward on a chosen backend.
//
// Contract (every layer in core/layers follows it; tests/cpu/layer_gradient_test.cpp checks it):
// - configure(input_shape) runs at graph build time: it validates the per-example input shape
//   (without the batch dimension, e.g. {H, W, C}), stores what it needs, and returns the
//   per-example output shape. Problems throw ConfigError naming the layer, e.g.
//   "conv5: input 1x1 is smaller than the 3x3 kernel".
// - set_backend() then allocate_parameters() create parameters and buffers on the backend's
//   device; initialize(rng) fills them (host init, then copied), in a fixed order.
// - forward(x, y, mode): x is [N, input_shape...], y is preallocated [N, output_shape...].
//   Layers may keep state for backward (saved statistics, masks) from the last train forward.
// - backward(x, y, dy, dx): given the forward input and output and dL/dy, writes dL/dx into *dx
//   (skipped when dx is null, e.g. for the first layer) and OVERWRITES every parameter gradient.
// - Parameter and buffer names follow PyTorch ("weight", "bias", "running_mean"); the graph adds
//   the module prefix ("features.0.weight").
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/base/backend.h"
#include "core/base/error.h"
#include "core/base/rng.h"
#include "core/base/tensor.h"

namespace convnet {

enum class Mode { train, eval };

// How a tensor is stored in checkpoints relative to our internal layout.
enum class ExportLayout {
  same,          // identical
  krsc_to_oihw,  // conv filter: ours [K,R,S,C], PyTorch [O,I,H,W]
};

struct Parameter {
  std::string name;  // PyTorch-style local name: "weight", "bias"
  Tensor value;
  Tensor grad;
  bool weight_decay = true;  // false for biases and batchnorm by default (optimizer groups)
  float lr_mult = 1.0f;
  bool frozen = false;     // excluded from updates
  float train_epochs = 0;  // > 0: updated only in epochs e < train_epochs (0-based), frozen after
  ExportLayout layout = ExportLayout::same;

  // In bf16 precision, conv and linear weights keep a bf16 copy of value (rounded to nearest
  // even), which the layer passes to the conv and linear ops instead of value, which they would
  // otherwise convert at every pass (layer_util::weight_operand). The optimizer's fused update
  // writes it (Backend::sgd_update); the layer writes it when it is not current. It is current
  // from either write until anything else writes value: a checkpoint load, weight averaging, a
  // swap, an initialization. Those call value_written().
  Tensor bf16_copy;  // undefined: none kept
  bool bf16_copy_current = false;
  void value_written() { bf16_copy_current = false; }
};

struct Buffer {  // state that is saved but not trained: running statistics
  std::string name;
  Tensor value;
};

class Layer {
 public:
  explicit Layer(std::string name) : name_(std::move(name)) {}
  virtual ~Layer() = default;
  Layer(const Layer&) = delete;
  Layer& operator=(const Layer&) = delete;

  const std::string& name() const { return name_; }
  virtual std::string type() const = 0;         // "conv2d", "max_pool2d", ...
  virtual std::string description() const = 0;  // "conv2d 3x3 64->128 stride 1 pad 1"

  virtual Shape configure(const Shape& input_shape) = 0;
  const Shape& input_shape() const { return input_shape_; }  // the first input's
  const Shape& output_shape() const { return output_shape_; }

  // --- several inputs (merge layers: add, concat) ---
  // The graph calls these forms. The defaults take exactly one input (else ConfigError "takes one
  // input") and call configure(), forward() and backward(); merge layers override them instead.
  // input_shapes arrive in the order the config's `from` names them; dxs[i] null: no gradient
  // wanted for input i (the graph input).
  virtual Shape configure_inputs(const std::vector<Shape>& input_shapes);
  virtual void forward_inputs(std::span<const Tensor* const> xs, Tensor& y, Mode mode);
  virtual void backward_inputs(std::span<const Tensor* const> xs, const Tensor& y, const Tensor& dy,
                               std::span<Tensor* const> dxs);

  // --- what backward reads (besides dy and the layer's own saved state) ---
  // The graph keeps a layer output alive until backward only when its producer's backward reads
  // it (backward_reads_output) or a reader's backward reads it (backward_reads_input); any other
  // output may share memory with outputs whose forward lifetimes do not overlap, and then holds
  // garbage by the time backward passes it. The defaults, both true, are right for any layer.
  virtual bool backward_reads_input() const { return true; }
  virtual bool backward_reads_output() const { return true; }

  // --- bf16 activation storage (train.precision bf16; valid once the backend is set) ---
  // The graph stores an output as bf16 when its layer writes_bf16_output and every layer reading
  // it reads_bf16_input (on the same device): half the bytes and no conversion pass, with results
  // unchanged, because the value stored is the one the computation would see anyway (a conv's y is
  // rounded to bf16 in bf16 precision; a conv or linear layer rounds its input to bf16). A layer
  // saying true must take a bf16 output
  // tensor (forward, and backward when it reads its output) or a bf16 input (forward and
  // backward) on its backend. Defaults: f32 only.
  virtual bool writes_bf16_output() const { return false; }
  virtual bool reads_bf16_input() const { return false; }

  // --- memory the layer holds itself (the dry-run summary, Graph::activation_memory) ---
  // Bytes of batch-sized device memory the layer keeps at `batch`, beyond its parameters and the
  // graph's outputs and gradients: what its backward needs from the forward (max pooling's
  // argmax, dropout's mask) and its own scratch. Per-channel state is small and not counted.
  virtual int64_t state_bytes(int64_t /*batch*/) const { return 0; }

  // --- receptive field (the dry-run summary) ---
  // How one output pixel sees the layer's input: a window spanning `span` input pixels (the
  // dilated kernel extent) per axis, moved by `stride`; whole_input: it sees all of it (global
  // pooling, linear). Elementwise layers keep the default: one pixel, stride 1.
  struct Window {
    int64_t span_h = 1, span_w = 1;
    int64_t stride_h = 1, stride_w = 1;
    bool whole_input = false;
  };
  virtual Window window() const { return {}; }

  void set_backend(Backend& backend) { backend_ = &backend; }
  Backend& backend() const {
    CONVNET_CHECK(backend_ != nullptr, "layer {} has no backend", name_);
    return *backend_;
  }
  virtual void allocate_parameters() {}
  // Elements of the parameters allocate_parameters() will create, known once configure() has run,
  // so that the memory a net needs can be checked before any of it is allocated.
  virtual int64_t parameter_numel() const { return 0; }
  virtual void initialize(Rng& /*rng*/) {}
  // Data-dependent initialisation (conv init: whitening): when wants_data_init(), the graph calls
  // initialize_from_data() after initialize() with the layer's input for the first
  // train.init_images training images (host f32 [N, input_shape...], unaugmented). Not called
  // when resuming from a checkpoint.
  virtual bool wants_data_init() const { return false; }
  virtual void initialize_from_data(const Tensor& /*inputs*/) {}

  virtual void forward(const Tensor& x, Tensor& y, Mode mode) = 0;
  virtual void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) = 0;

  virtual std::vector<Parameter*> parameters() { return {}; }
  virtual std::vector<Buffer*> buffers() { return {}; }
  // Forward FLOPs per example (2 x multiply-adds for conv/linear; elementwise ops count 0).
  virtual int64_t forward_flops() const { return 0; }
  // Seed for stochastic layers (dropout); the graph sets it each step.
  virtual void set_step_seed(uint64_t /*seed*/) {}

 protected:
  // Helper for configure(): records shapes and returns the output shape.
  Shape record_shapes(const Shape& in, Shape out) {
    input_shape_ = in;
    output_shape_ = std::move(out);
    return output_shape_;
  }
  // Throws ConfigError "name: message".
  template <class... Args>
  [[noreturn]] void config_error(fmt::format_string<Args...> f, Args&&... args) const {
    throw ConfigError(fmt::format("{}: {}", name_, fmt::format(f, std::forward<Args>(args)...)));
  }

 private:
  std::string name_;
  Backend* backend_ = nullptr;
  Shape input_shape_, output_shape_;
};

}  // namespace convnet
