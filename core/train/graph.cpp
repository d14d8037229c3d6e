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

void Graph::add(std::unique_ptr<Layer> layer, std::string module) {
  CONVNET_CHECK(!built_, "cannot add layer {} to a built graph", layer->name());
  for (const Node& n : nodes_)
    if (n.layer->name() == layer->name()) throw ConfigError(fmt::format("two layers are named '{}'", layer->name()));
  Node node;
  node.layer = std::move(layer);
  node.module = std::move(module);
  nodes_.push_back(std::move(node));
}

void Graph::build(const Shape& example_shape, Backend& backend, Rng& rng,
                  const std::map<std::string, Backend*>& layer_backends) {
  CONVNET_CHECK(!built_, "graph built twice");
  if (nodes_.empty()) throw ConfigError("the model has no layers");
  for (const auto& [name, b] : layer_backends) {
    bool found = false;
    for (const Node& n : nodes_) found = found || n.layer->name() == name;
    if (!found) throw ConfigError(fmt::format("backend override for unknown layer '{}'", name));
  }
  example_shape_ = example_shape;
  Shape shape = example_shape;
  for (Node& n : nodes_) {
    shape = n.layer->configure(shape);
    auto it = layer_backends.find(n.layer->name());
    n.backend = it != layer_backends.end() ? it->second : &backend;
    n.layer->set_backend(*n.backend);
    n.layer->allocate_parameters();
    spdlog::debug("{:<12} {:<40} -> {:<16} on {}{}", n.layer->name(), n.layer->description(), shape_str(shape),
                  n.backend->name(), it != layer_backends.end() ? " (per-layer override)" : "");
  }
  log_backends();
  for (Node& n : nodes_) n.layer->initialize(rng);
  staged_inputs_.resize(nodes_.size());
  staged_grads_.resize(nodes_.size());
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
  for (size_t i = 0; i < nodes_.size(); ++i) {
    Node& n = nodes_[i];
    const Shape s = batched(batch, n.layer->output_shape());
    n.output = n.backend->empty(s);
    n.grad_output = n.backend->empty(s);
    Backend& prev = i == 0 ? *n.backend : *nodes_[i - 1].backend;
    const bool cross = prev.device() != n.backend->device();
    const Shape in = batched(batch, n.layer->input_shape());
    staged_inputs_[i] = cross ? n.backend->empty(in) : Tensor();  // layer 0: on demand, in input_for
    staged_grads_[i] = cross && i > 0 ? n.backend->empty(in) : Tensor();
  }
  batch_ = batch;
}

const Tensor& Graph::input_for(size_t i, const Tensor& graph_input) {
  if (i == 0) {
    if (graph_input.device() == nodes_[0].backend->device()) return graph_input;
    if (staged_inputs_[0].shape() != graph_input.shape())
      staged_inputs_[0] = nodes_[0].backend->empty(graph_input.shape());
    nodes_[0].backend->copy(staged_inputs_[0], graph_input);
    return staged_inputs_[0];
  }
  const Tensor& prev = nodes_[i - 1].output;
  if (!staged_inputs_[i].defined()) return prev;
  bridge(*nodes_[i - 1].backend, *nodes_[i].backend).copy(staged_inputs_[i], prev);
  return staged_inputs_[i];
}

const Tensor& Graph::forward(const Tensor& input, Mode mode) {
  CONVNET_CHECK(built_, "graph not built");
  const Shape expected = batched(input.rank() > 0 ? input.dim(0) : 0, example_shape_);
  if (input.shape() != expected)
    throw Error(fmt::format("model input has shape {}, expected {}", shape_str(input.shape()), shape_str(expected)));
  allocate_activations(input.dim(0));
  layer_inputs_.resize(nodes_.size());
  for (size_t i = 0; i < nodes_.size(); ++i) {
    layer_inputs_[i] = &input_for(i, input);
    nodes_[i].layer->forward(*layer_inputs_[i], nodes_[i].output, mode);
  }
  return nodes_.back().output;
}

void Graph::backward(const Tensor& dout) {
  CONVNET_CHECK(layer_inputs_.size() == nodes_.size(), "backward() before forward()");
  Node& last = nodes_.back();
  CONVNET_CHECK(dout.shape() == last.output.shape(), "output gradient {} for output {}", shape_str(dout.shape()),
                shape_str(last.output.shape()));
  const Tensor* dy = &dout;
  for (size_t i = nodes_.size(); i-- > 0;) {
    Node& n = nodes_[i];
    const Tensor& x = *layer_inputs_[i];
    Tensor* dx = nullptr;
    if (i > 0) dx = staged_grads_[i].defined() ? &staged_grads_[i] : &nodes_[i - 1].grad_output;
    n.layer->backward(x, n.output, *dy, dx);
    if (i > 0 && staged_grads_[i].defined())
      bridge(*nodes_[i - 1].backend, *n.backend).copy(nodes_[i - 1].grad_output, staged_grads_[i]);
    if (i > 0) dy = &nodes_[i - 1].grad_output;
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
  Tensor input = host_images;  // the input of layer `at`, on the host
  size_t at = 0;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    Layer& layer = *nodes_[i].layer;
    if (!layer.wants_data_init()) continue;
    if (i > at) {
      input = forward_to_host(input, at, i);
      at = i;
    }
    layer.initialize_from_data(input);
    nodes_[i].backend->synchronize();
    spdlog::info("data-dependent init: {} ({}) from {} images", layer.name(), layer.description(), n);
  }
}

Tensor Graph::forward_to_host(const Tensor& input, size_t begin, size_t end) {
  constexpr int64_t kChunk = 256;  // images per pass: bounds the temporaries, not the result
  const int64_t n = input.dim(0);
  const int64_t in_numel = shape_numel(nodes_[begin].layer->input_shape());
  const int64_t out_numel = shape_numel(nodes_[end - 1].layer->output_shape());
  Tensor result(batched(n, nodes_[end - 1].layer->output_shape()));
  for (int64_t first = 0; first < n; first += kChunk) {
    const int64_t m = std::min(kChunk, n - first);
    Tensor x(batched(m, nodes_[begin].layer->input_shape()));
    std::copy_n(input.f32() + first * in_numel, m * in_numel, x.f32());
    Backend* prev = nullptr;  // the backend x lives on (null: the host)
    for (size_t i = begin; i < end; ++i) {
      Backend& b = *nodes_[i].backend;
      if (x.device() != b.device()) {
        Tensor moved = b.empty(x.shape());
        (prev ? bridge(*prev, b) : b).copy(moved, x);
        x = moved;
      }
      Tensor y = b.empty(batched(m, nodes_[i].layer->output_shape()));
      nodes_[i].layer->forward(x, y, Mode::eval);
      x = y;
      prev = &b;
    }
    Tensor chunk(x.shape());
    prev->copy(chunk, x);  // begin < end, so some layer ran
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

std::vector<Graph::LayerSummary> Graph::summary() {
  std::vector<LayerSummary> rows;
  for (Node& n : nodes_) {
    int64_t params = 0;
    for (Parameter* p : n.layer->parameters()) params += p->value.numel();
    rows.push_back({n.layer->name(), n.module, n.layer->description(), n.backend ? n.backend->name() : "-",
                    n.layer->output_shape(), params, n.layer->forward_flops()});
  }
  return rows;
}

std::string Graph::summary_table() {
  std::string out = fmt::format("{:<14} {:<36} {:<8} {:<16} {:>12} {:>14}\n", "layer", "op", "backend", "output (HWC)",
                                "params", "MFLOPs/ex");
  for (const LayerSummary& r : summary())
    out += fmt::format("{:<14} {:<36} {:<8} {:<16} {:>12} {:>14.3f}\n", r.name, r.description, r.backend,
                       shape_str(r.output_shape), r.parameters, static_cast<double>(r.flops) / 1e6);
  out += fmt::format("total: {} parameters, {:.3f} GFLOPs forward per example", num_parameters(),
                     static_cast<double>(forward_flops()) / 1e9);
  return out;
}

}  // namespace convnet
