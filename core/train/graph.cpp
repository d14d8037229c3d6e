#include "core/train/graph.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "core/base/error.h"

namespace convnet {

namespace {
Shape batched(int64_t batch, const Shape& example) {
  Shape s{batch};
  s.insert(s.end(), example.begin(), example.end());
  return s;
}
// The backend that can reach both devices: a GPU backend copies to and from the host.
Backend& bridge(Backend& a, Backend& b) {
  return a.device().kind != DeviceKind::cpu ? a : b;
}
}  // namespace

void Graph::add(std::unique_ptr<Layer> layer, std::string module, std::vector<std::string> from, int line) {
  CONVNET_CHECK(!planned_, "cannot add layer {} to a built graph", layer->name());
  for (const Node& n : nodes_)
    if (n.layer->name() == layer->name()) throw ConfigError(fmt::format("two layers are named '{}'", layer->name()));
  if (layer->name() == "input") throw ConfigError("a layer cannot be named 'input' (it names the net's input)");
  Node node;
  node.layer = std::move(layer);
  node.module = std::move(module);
  node.from = std::move(from);
  node.line = line;
  nodes_.push_back(std::move(node));
}

std::string Graph::where(const Node& n) const {
  return n.line > 0 ? fmt::format("layer '{}' (config line {})", n.layer->name(), n.line)
                    : fmt::format("layer '{}'", n.layer->name());
}

namespace {
// "-2" -> 2; anything else -> 0.
int relative_offset(const std::string& ref) {
  if (ref.size() < 2 || ref[0] != '-') return 0;
  int k = 0;
  for (size_t i = 1; i < ref.size(); ++i) {
    if (ref[i] < '0' || ref[i] > '9' || k > 1'000'000) return 0;
    k = k * 10 + (ref[i] - '0');
  }
  return k;
}
}  // namespace

void Graph::resolve_inputs() {
  for (size_t i = 0; i < nodes_.size(); ++i) {
    Node& n = nodes_[i];
    n.inputs.clear();
    if (n.from.empty()) n.inputs.push_back(static_cast<int>(i) - 1);  // node -1 is the graph input
    for (const std::string& ref : n.from) {
      int input = kGraphInput - 1;
      if (ref == "input") {
        input = kGraphInput;
      } else if (const int k = relative_offset(ref); k > 0) {
        if (k > static_cast<int>(i))
          throw ConfigError(fmt::format("{}: from '{}' reaches before the first layer (it is layer {} of {})", where(n),
                                        ref, i + 1, nodes_.size()));
        input = static_cast<int>(i) - k;
      } else {
        for (size_t j = 0; j < nodes_.size(); ++j)
          if (nodes_[j].layer->name() == ref) input = static_cast<int>(j);
        if (input == kGraphInput - 1)
          throw ConfigError(
              fmt::format("{}: from '{}': no layer has that name (expected a layer name, a "
                          "relative index such as -2, or 'input')",
                          where(n), ref));
        if (input >= static_cast<int>(i))
          throw ConfigError(fmt::format("{}: from '{}': a layer can only read layers before it", where(n), ref));
      }
      if (auto dup = std::find(n.inputs.begin(), n.inputs.end(), input); dup != n.inputs.end()) {
        const std::string& first = n.from[static_cast<size_t>(dup - n.inputs.begin())];
        const std::string target = input == kGraphInput ? "input" : nodes_[static_cast<size_t>(input)].layer->name();
        throw ConfigError(
            first == ref ? fmt::format("{}: from lists '{}' twice", where(n), ref)
                         : fmt::format("{}: from lists '{}' twice (as '{}' and '{}')", where(n), target, first, ref));
      }
      n.inputs.push_back(input);
    }
    for (int input : n.inputs)
      if (input != kGraphInput) ++nodes_[static_cast<size_t>(input)].readers;
  }
  for (size_t i = 0; i + 1 < nodes_.size(); ++i)
    if (nodes_[i].readers == 0)
      throw ConfigError(
          fmt::format("{}: its output is never read (only the last layer's output may be left "
                      "unread; name it in a later layer's from)",
                      where(nodes_[i])));
}

void Graph::configure_layers(Backend& backend, const std::map<std::string, Backend*>& layer_backends) {
  for (Node& n : nodes_) {
    std::vector<Shape> shapes;
    for (int input : n.inputs)
      shapes.push_back(input == kGraphInput ? example_shape_
                                            : nodes_[static_cast<size_t>(input)].layer->output_shape());
    Shape shape;
    try {
      shape = n.layer->configure_inputs(shapes);
    } catch (const ConfigError& e) {
      if (n.line <= 0) throw;
      throw ConfigError(fmt::format("{} (config line {})", e.what(), n.line));
    }
    auto it = layer_backends.find(n.layer->name());
    n.backend = it != layer_backends.end() ? it->second : &backend;
    n.layer->set_backend(*n.backend);
    spdlog::debug("{:<12} {:<40} -> {:<16} on {}{}", n.layer->name(), n.layer->description(), shape_str(shape),
                  n.backend->name(), it != layer_backends.end() ? " (per-layer override)" : "");
  }
}

int Graph::claim_slot(std::vector<BufferSlot>& slots, Backend* backend, int64_t numel,
                      const std::function<bool(const BufferSlot&)>& is_free) {
  size_t s = 0;
  while (s < slots.size() && !(slots[s].backend->device() == backend->device() && is_free(slots[s]))) ++s;
  if (s == slots.size()) slots.push_back({backend, 0, Tensor()});
  slots[s].example_numel = std::max(slots[s].example_numel, numel);
  return static_cast<int>(s);
}

void Graph::assign_gradient_slots() {
  // Backward visits node L-1 first. Node j's gradient is written first by its last reader (the
  // largest index reading it) and read last by j's own backward: live while backward is at
  // nodes [j, last reader]. Gradients whose ranges do not overlap share a slot (same device).
  const size_t last = nodes_.size() - 1;
  std::vector<int64_t> last_reader(nodes_.size(), -1);
  for (size_t i = 0; i < nodes_.size(); ++i)
    for (int input : nodes_[i].inputs)
      if (input != kGraphInput) last_reader[static_cast<size_t>(input)] = static_cast<int64_t>(i);
  grad_slots_.clear();
  // Visit in the order gradients come alive: by last reader, descending (ties: any order, the
  // ranges share the reader's step and so conflict anyway).
  std::vector<size_t> order;
  for (size_t j = 0; j < last; ++j) order.push_back(j);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return last_reader[a] > last_reader[b]; });
  for (size_t j : order) {
    Node& n = nodes_[j];
    // A slot's mark: the producer index of the gradient it holds now; free for ranges below it.
    n.grad_slot = claim_slot(grad_slots_, n.backend, shape_numel(n.layer->output_shape()),
                             [&](const BufferSlot& s) { return s.mark > last_reader[j]; });
    grad_slots_[static_cast<size_t>(n.grad_slot)].mark = static_cast<int64_t>(j);
  }
  nodes_[last].grad_slot = -1;  // its gradient is backward()'s argument
}

void Graph::assign_output_slots() {
  // An output no backward reads is needed from its forward (node j) to its last reader's forward;
  // two such outputs share a buffer when one's last reader runs before the other is produced
  // (strictly: a layer reads its input while it writes its output). The net's output stays its own.
  const size_t last = nodes_.size() - 1;
  std::vector<int64_t> last_reader(nodes_.size(), 0);
  std::vector<bool> read_in_backward(nodes_.size(), false);
  for (size_t i = 0; i < nodes_.size(); ++i) {
    read_in_backward[i] = read_in_backward[i] || nodes_[i].layer->backward_reads_output();
    for (int input : nodes_[i].inputs) {
      if (input == kGraphInput) continue;
      const auto j = static_cast<size_t>(input);
      last_reader[j] = static_cast<int64_t>(i);
      read_in_backward[j] = read_in_backward[j] || nodes_[i].layer->backward_reads_input();
    }
  }
  output_slots_.clear();
  for (size_t j = 0; j < last; ++j) {
    Node& n = nodes_[j];
    n.output_slot = -1;
    if (!output_reuse_ || read_in_backward[j] || n.output_dtype != DType::f32) continue;
    // A slot's mark: the last reader of the output it holds now; free for outputs made after it.
    n.output_slot = claim_slot(output_slots_, n.backend, shape_numel(n.layer->output_shape()),
                               [&](const BufferSlot& s) { return s.mark < static_cast<int64_t>(j); });
    output_slots_[static_cast<size_t>(n.output_slot)].mark = last_reader[j];
  }
}

void Graph::assign_output_dtypes() {
  // bf16 when the producer can write it and every reader takes it on the producer's device (a
  // copy to another device would need a dtype of its own). The net's output stays f32 for the loss.
  std::vector<bool> all_take_bf16(nodes_.size(), true);
  for (const Node& reader : nodes_)
    for (int input : reader.inputs) {
      if (input == kGraphInput) continue;
      const Node& producer = nodes_[static_cast<size_t>(input)];
      all_take_bf16[static_cast<size_t>(input)] = all_take_bf16[static_cast<size_t>(input)] &&
                                                  reader.layer->reads_bf16_input() &&
                                                  reader.backend->device() == producer.backend->device();
    }
  for (size_t j = 0; j < nodes_.size(); ++j) {
    Node& n = nodes_[j];
    const bool bf16 =
        bf16_storage_ && j + 1 < nodes_.size() && n.readers > 0 && all_take_bf16[j] && n.layer->writes_bf16_output();
    n.output_dtype = bf16 ? DType::bf16 : DType::f32;
  }
}

void Graph::build(const Shape& example_shape, Backend& backend, Rng& rng,
                  const std::map<std::string, Backend*>& layer_backends) {
  plan(example_shape, backend, layer_backends);
  allocate_parameters(rng);
}

void Graph::plan(const Shape& example_shape, Backend& backend, const std::map<std::string, Backend*>& layer_backends) {
  CONVNET_CHECK(!planned_, "graph built twice");
  if (nodes_.empty()) throw ConfigError("the model has no layers");
  for (const auto& [name, b] : layer_backends) {
    bool found = false;
    for (const Node& n : nodes_) found = found || n.layer->name() == name;
    if (!found) throw ConfigError(fmt::format("backend override for unknown layer '{}'", name));
  }
  example_shape_ = example_shape;
  resolve_inputs();
  configure_layers(backend, layer_backends);
  assign_output_dtypes();
  assign_gradient_slots();
  assign_output_slots();
  log_backends();
  planned_ = true;
}

void Graph::allocate_parameters(Rng& rng) {
  CONVNET_CHECK(planned_ && !built_, "allocate_parameters() needs a planned graph, once");
  for (Node& n : nodes_) n.layer->allocate_parameters();
  for (Node& n : nodes_) n.layer->initialize(rng);
  built_ = true;
}

void Graph::log_backends() const {
  // One line per run of consecutive layers on the same backend: "conv1 .. fc (38 layers): cpu".
  for (size_t begin = 0; begin < nodes_.size();) {
    size_t end = begin + 1;
    while (end < nodes_.size() && nodes_[end].backend == nodes_[begin].backend) ++end;
    const std::string span = end - begin == 1 ? nodes_[begin].layer->name()
                                              : fmt::format("{} .. {} ({} layers)", nodes_[begin].layer->name(),
                                                            nodes_[end - 1].layer->name(), end - begin);
    spdlog::info("backend {} ({}): {}", nodes_[begin].backend->name(), nodes_[begin].backend->device().str(), span);
    begin = end;
  }
}

const Shape& Graph::output_shape() const {
  CONVNET_CHECK(built_, "graph not built");
  return nodes_.back().layer->output_shape();
}

void Graph::allocate_activations(int64_t batch) {
  if (batch == batch_) return;
  for (BufferSlot& slot : grad_slots_) slot.buffer = slot.backend->empty({batch * slot.example_numel});
  for (BufferSlot& slot : output_slots_) slot.buffer = slot.backend->empty({batch * slot.example_numel});
  for (Node& n : nodes_) {
    const Shape s = batched(batch, n.layer->output_shape());
    n.output = n.output_slot >= 0 ? output_slots_[static_cast<size_t>(n.output_slot)].buffer.leading(s)
                                  : n.backend->empty(s, n.output_dtype);
    n.grad_output = n.grad_slot >= 0 ? grad_slots_[static_cast<size_t>(n.grad_slot)].buffer.leading(s) : Tensor();
    n.grad_scratch = n.readers > 1 ? n.backend->empty(s) : Tensor();
    n.staged_inputs.assign(n.inputs.size(), Tensor());
    n.staged_grads.assign(n.inputs.size(), Tensor());
    for (size_t e = 0; e < n.inputs.size(); ++e) {
      if (n.inputs[e] == kGraphInput) continue;  // staged on demand: the caller's input may live anywhere
      const Node& producer = nodes_[static_cast<size_t>(n.inputs[e])];
      if (producer.backend->device() == n.backend->device()) continue;
      n.staged_inputs[e] = n.backend->empty(producer.output.shape());
      n.staged_grads[e] = n.backend->empty(producer.output.shape());
    }
  }
  batch_ = batch;
}

const Tensor& Graph::input_for(size_t i, size_t e, const Tensor& graph_input) {
  Node& n = nodes_[i];
  const int input = n.inputs[e];
  if (input == kGraphInput) {
    if (graph_input.device() == n.backend->device()) return graph_input;
    if (n.staged_inputs[e].shape() != graph_input.shape()) n.staged_inputs[e] = n.backend->empty(graph_input.shape());
    n.backend->copy(n.staged_inputs[e], graph_input);
    return n.staged_inputs[e];
  }
  const Node& producer = nodes_[static_cast<size_t>(input)];
  if (!n.staged_inputs[e].defined()) return producer.output;
  bridge(*producer.backend, *n.backend).copy(n.staged_inputs[e], producer.output);
  return n.staged_inputs[e];
}

const Tensor& Graph::forward(const Tensor& input, Mode mode) {
  CONVNET_CHECK(built_, "graph not built");
  const Shape expected = batched(input.rank() > 0 ? input.dim(0) : 0, example_shape_);
  if (input.shape() != expected)
    throw Error(fmt::format("model input has shape {}, expected {}", shape_str(input.shape()), shape_str(expected)));
  allocate_activations(input.dim(0));
  for (size_t i = 0; i < nodes_.size(); ++i) {
    Node& n = nodes_[i];
    n.read.resize(n.inputs.size());
    for (size_t e = 0; e < n.inputs.size(); ++e) n.read[e] = &input_for(i, e, input);
    n.layer->forward_inputs(n.read, n.output, mode);
  }
  return nodes_.back().output;
}

void Graph::backward(const Tensor& dout) {
  CONVNET_CHECK(built_ && batch_ >= 0 && nodes_.back().read.size() == nodes_.back().inputs.size(),
                "backward() before forward()");
  Node& last = nodes_.back();
  CONVNET_CHECK(dout.shape() == last.output.shape(), "output gradient {} for output {}", shape_str(dout.shape()),
                shape_str(last.output.shape()));
  std::vector<bool> written(nodes_.size(), false);  // gradient received from some reader this pass
  std::vector<Tensor*> dxs;
  for (size_t i = nodes_.size(); i-- > 0;) {
    Node& n = nodes_[i];
    // Where each input's gradient goes: straight into the producer's gradient for its first
    // (highest-index) reader, else into scratch that deliver_gradients() adds to it.
    dxs.assign(n.inputs.size(), nullptr);
    for (size_t e = 0; e < n.inputs.size(); ++e) {
      const int input = n.inputs[e];
      if (input == kGraphInput) continue;
      Node& producer = nodes_[static_cast<size_t>(input)];
      dxs[e] = n.staged_grads[e].defined()           ? &n.staged_grads[e]
               : written[static_cast<size_t>(input)] ? &producer.grad_scratch
                                                     : &producer.grad_output;
    }
    n.layer->backward_inputs(n.read, n.output, i + 1 == nodes_.size() ? dout : n.grad_output, dxs);
    deliver_gradients(i, written);
    if (backward_hook_) backward_hook_(i);
  }
}

void Graph::deliver_gradients(size_t i, std::vector<bool>& written) {
  Node& n = nodes_[i];
  for (size_t e = 0; e < n.inputs.size(); ++e) {
    if (n.inputs[e] == kGraphInput) continue;
    const auto j = static_cast<size_t>(n.inputs[e]);
    Node& producer = nodes_[j];
    if (n.staged_grads[e].defined())
      bridge(*producer.backend, *n.backend)
          .copy(written[j] ? producer.grad_scratch : producer.grad_output, n.staged_grads[e]);
    if (written[j]) producer.backend->axpby(1.0f, producer.grad_scratch, 1.0f, producer.grad_output);
    written[j] = true;
  }
}

bool Graph::needs_data_init() const {
  return std::any_of(nodes_.begin(), nodes_.end(), [](const Node& n) { return n.layer->wants_data_init(); });
}

void Graph::initialize_from_data(const Tensor& host_images) {
  CONVNET_CHECK(built_, "graph not built");
  if (!needs_data_init()) return;
  const int64_t n = host_images.rank() > 0 ? host_images.dim(0) : 0;
  if (!host_images.is_cpu() || host_images.dtype() != DType::f32 || n <= 0 ||
      host_images.shape() != batched(n, example_shape_))
    throw Error(fmt::format("data-dependent init: images {} ({}, {}), expected host F32 [N > 0] + {}",
                            shape_str(host_images.shape()), dtype_name(host_images.dtype()), host_images.device().str(),
                            shape_str(example_shape_)));
  for (size_t i = 0; i < nodes_.size(); ++i) {
    Layer& layer = *nodes_[i].layer;
    if (!layer.wants_data_init()) continue;
    CONVNET_CHECK(nodes_[i].inputs.size() == 1, "data-dependent init of {}: it reads {} inputs", layer.name(),
                  nodes_[i].inputs.size());
    layer.initialize_from_data(nodes_[i].inputs[0] == kGraphInput ? host_images : forward_to_host(host_images, i));
    nodes_[i].backend->synchronize();
    spdlog::info("data-dependent init: {} ({}) from {} images", layer.name(), layer.description(), n);
  }
}

Tensor Graph::forward_to_host(const Tensor& input, size_t end) {
  constexpr int64_t kChunk = 256;  // images per pass: bounds the temporaries, not the result
  const int64_t n = input.dim(0);
  const int wanted = nodes_[end].inputs[0];  // a node before `end`
  const Shape& wanted_shape = nodes_[static_cast<size_t>(wanted)].layer->output_shape();
  const int64_t in_numel = shape_numel(example_shape_), out_numel = shape_numel(wanted_shape);
  Tensor result(batched(n, wanted_shape));
  for (int64_t first = 0; first < n; first += kChunk) {
    const int64_t m = std::min(kChunk, n - first);
    Tensor x(batched(m, example_shape_));
    std::copy_n(input.f32() + first * in_numel, m * in_numel, x.f32());
    std::vector<Tensor> outputs(static_cast<size_t>(wanted) + 1);
    for (size_t i = 0; i <= static_cast<size_t>(wanted); ++i) {
      Backend& b = *nodes_[i].backend;
      const std::vector<int>& inputs = nodes_[i].inputs;
      std::vector<Tensor> moved(inputs.size());  // inputs copied to b's device
      std::vector<const Tensor*> xs(inputs.size());
      for (size_t e = 0; e < inputs.size(); ++e) {
        const Tensor& t = inputs[e] == kGraphInput ? x : outputs[static_cast<size_t>(inputs[e])];
        xs[e] = &t;
        if (t.device() == b.device()) continue;
        moved[e] = b.empty(t.shape());
        (inputs[e] == kGraphInput ? b : bridge(*nodes_[static_cast<size_t>(inputs[e])].backend, b)).copy(moved[e], t);
        xs[e] = &moved[e];
      }
      outputs[i] = b.empty(batched(m, nodes_[i].layer->output_shape()));
      nodes_[i].layer->forward_inputs(xs, outputs[i], Mode::eval);
    }
    Tensor chunk(outputs.back().shape());
    nodes_[static_cast<size_t>(wanted)].backend->copy(chunk, outputs.back());
    std::copy_n(chunk.f32(), m * out_numel, result.f32() + first * out_numel);
  }
  return result;
}

void Graph::set_step_seed(uint64_t seed) {
  for (Node& n : nodes_) n.layer->set_step_seed(seed);
}

std::vector<std::pair<std::string, Parameter*>> Graph::named_parameters() {
  std::vector<std::pair<std::string, Parameter*>> out;
  for (Node& n : nodes_)
    for (Parameter* p : n.layer->parameters()) out.emplace_back(n.module + "." + p->name, p);
  return out;
}

std::vector<std::pair<std::string, Buffer*>> Graph::named_buffers() {
  std::vector<std::pair<std::string, Buffer*>> out;
  for (Node& n : nodes_)
    for (Buffer* b : n.layer->buffers()) out.emplace_back(n.module + "." + b->name, b);
  return out;
}

std::vector<Backend*> Graph::parameter_backends() {
  std::vector<Backend*> out;
  for (Node& n : nodes_)
    for (size_t k = 0; k < n.layer->parameters().size(); ++k) out.push_back(n.backend);
  return out;
}

int64_t Graph::num_parameters() {
  int64_t total = 0;
  for (auto& [name, p] : named_parameters()) total += p->value.numel();
  return total;
}

int64_t Graph::forward_flops() const {
  int64_t total = 0;
  for (const Node& n : nodes_) total += n.layer->forward_flops();
  return total;
}

Graph::ActivationMemory Graph::activation_memory(int64_t batch) const {
  CONVNET_CHECK(planned_, "graph not planned");
  ActivationMemory m;
  const auto bytes = [&](int64_t example_numel) { return batch * example_numel * int64_t{sizeof(float)}; };
  for (const Node& n : nodes_) {
    const int64_t numel = shape_numel(n.layer->output_shape());
    if (n.output_slot < 0) m.outputs += n.output_dtype == DType::bf16 ? bytes(numel) / 2 : bytes(numel);
    if (n.readers > 1) m.gradients += bytes(numel);  // grad_scratch
    m.layer_state += n.layer->state_bytes(batch);
    for (int input : n.inputs) {  // cross-device copies of inputs and their gradients: the producer's size
      if (input == kGraphInput) continue;
      const Node& producer = nodes_[static_cast<size_t>(input)];
      if (producer.backend->device() == n.backend->device()) continue;
      const int64_t producer_numel = shape_numel(producer.layer->output_shape());
      m.outputs += bytes(producer_numel);
      m.gradients += bytes(producer_numel);
    }
  }
  for (const BufferSlot& slot : grad_slots_) m.gradients += bytes(slot.example_numel);
  for (const BufferSlot& slot : output_slots_) m.outputs += bytes(slot.example_numel);
  return m;
}

std::vector<Graph::ReceptiveField> Graph::receptive_fields() const {
  const int64_t height = example_shape_.size() >= 2 ? example_shape_[0] : 1;
  const int64_t width = example_shape_.size() >= 2 ? example_shape_[1] : 1;
  std::vector<ReceptiveField> fields(nodes_.size());
  for (size_t i = 0; i < nodes_.size(); ++i) {
    // A merge sees the union of its inputs' fields: the widest of them, aligned on one grid.
    ReceptiveField in;
    bool first = true;
    for (int input : nodes_[i].inputs) {
      const ReceptiveField f = input == kGraphInput ? ReceptiveField{} : fields[static_cast<size_t>(input)];
      in = first ? f
                 : ReceptiveField{std::max(in.size_h, f.size_h), std::max(in.size_w, f.size_w),
                                  std::max(in.jump_h, f.jump_h), std::max(in.jump_w, f.jump_w), in.whole || f.whole};
      first = false;
    }
    const Layer::Window w = nodes_[i].layer->window();
    ReceptiveField out{in.size_h + (w.span_h - 1) * in.jump_h, in.size_w + (w.span_w - 1) * in.jump_w,
                       in.jump_h * w.stride_h, in.jump_w * w.stride_w, in.whole || w.whole_input};
    if (w.whole_input) {  // sees every input pixel: at least the input's extent
      out.size_h = std::max(out.size_h, height);
      out.size_w = std::max(out.size_w, width);
    }
    out.whole = out.whole || (out.size_h >= height && out.size_w >= width);
    fields[i] = out;
  }
  return fields;
}

std::vector<Graph::LayerSummary> Graph::summary() {
  const std::vector<ReceptiveField> fields = receptive_fields();
  std::vector<LayerSummary> rows;
  bool whole_seen = false;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    Node& n = nodes_[i];
    int64_t params = 0;
    for (Parameter* p : n.layer->parameters()) params += p->value.numel();
    LayerSummary row{n.layer->name(),
                     n.module,
                     n.layer->description(),
                     n.backend ? n.backend->name() : "-",
                     {},
                     n.layer->output_shape(),
                     params,
                     n.layer->forward_flops(),
                     fields[i],
                     false,
                     n.output_dtype == DType::bf16};
    if (n.inputs != std::vector<int>{static_cast<int>(i) - 1})
      for (int input : n.inputs)
        row.inputs.push_back(input == kGraphInput ? "input" : nodes_[static_cast<size_t>(input)].layer->name());
    row.first_whole = fields[i].whole && !whole_seen;
    whole_seen = whole_seen || fields[i].whole;
    rows.push_back(std::move(row));
  }
  return rows;
}

std::string Graph::summary_table(int64_t batch) {
  const std::vector<LayerSummary> rows = summary();
  std::vector<std::string> ops, fields;
  size_t name_width = 5, op_width = 2;  // columns as wide as their longest entry
  for (const LayerSummary& r : rows) {
    std::string op = r.description;
    if (!r.inputs.empty()) op += fmt::format(" <- {}", fmt::join(r.inputs, " + "));
    const ReceptiveField& f = r.field;
    std::string field = f.size_h == f.size_w && f.jump_h == f.jump_w
                            ? fmt::format("{}/{}", f.size_h, f.jump_h)
                            : fmt::format("{}x{}/{}x{}", f.size_h, f.size_w, f.jump_h, f.jump_w);
    if (r.first_whole) field += " *";
    name_width = std::max(name_width, r.name.size());
    op_width = std::max(op_width, op.size());
    ops.push_back(std::move(op));
    fields.push_back(std::move(field));
  }
  std::string out = fmt::format("{:<{}} {:<{}} {:<8} {:<16} {:>12} {:>14} {:>11}\n", "layer", name_width, "op",
                                op_width, "backend", "output (HWC)", "params", "MFLOPs/ex", "field/jump");
  bool any_bf16 = false;
  for (size_t i = 0; i < rows.size(); ++i) {
    const LayerSummary& r = rows[i];
    const std::string output = shape_str(r.output_shape) + (r.bf16_output ? " bf16" : "");
    any_bf16 = any_bf16 || r.bf16_output;
    out += fmt::format("{:<{}} {:<{}} {:<8} {:<16} {:>12} {:>14.3f} {:>11}\n", r.name, name_width, ops[i], op_width,
                       r.backend, output, r.parameters, static_cast<double>(r.flops) / 1e6, fields[i]);
  }
  out += fmt::format("total: {} parameters, {:.3f} GFLOPs forward per example", num_parameters(),
                     static_cast<double>(forward_flops()) / 1e9);
  out +=
      "\nfield/jump: receptive field and its step, in input pixels; * marks the first layer that sees the whole "
      "input";
  if (any_bf16) out += "\nbf16: an output stored in bf16 (train.precision bf16: read only by layers that take it)";
  if (batch > 0) {
    const ActivationMemory m = activation_memory(batch);
    const auto mib = [](int64_t bytes) { return static_cast<double>(bytes) / (1 << 20); };
    out += fmt::format(
        "\nactivations at batch {}: {:.1f} MiB (outputs {:.1f} MiB, gradients {:.1f} MiB, layer state {:.1f} MiB)",
        batch, mib(m.total()), mib(m.outputs), mib(m.gradients), mib(m.layer_state));
  }
  return out;
}

}  // namespace convnet
