#include "core/train/checkpoint.h"

#include <charconv>
#include <cstring>
#include <set>

#include "core/base/error.h"
#include "core/io/safetensors.h"

namespace convnet {

namespace {

constexpr const char* kFormatVersion = "1";

// How one of our tensors maps to its PyTorch layout.
struct Layout {
  enum Kind { same, krsc_to_oihw, hwc_features_to_chw } kind = same;
  Shape hwc;  // for hwc_features_to_chw: the {H, W, C} shape that was flattened
};

Shape exported_shape(const Shape& ours, const Layout& layout) {
  if (layout.kind == Layout::krsc_to_oihw) return {ours[0], ours[3], ours[1], ours[2]};
  return ours;
}

// Index of element `i` of the exported tensor in our layout.
int64_t source_index(int64_t i, const Shape& ours, const Layout& layout) {
  if (layout.kind == Layout::krsc_to_oihw) {  // exported [K, C, R, S]
    const int64_t R = ours[1], S = ours[2], C = ours[3];
    const int64_t s = i % S, r = i / S % R, c = i / (S * R) % C, k = i / (S * R * C);
    return ((k * R + r) * S + s) * C + c;
  }
  if (layout.kind == Layout::hwc_features_to_chw) {  // [out, C*H*W] from [out, H*W*C]
    const int64_t H = layout.hwc[0], W = layout.hwc[1], C = layout.hwc[2], F = H * W * C;
    const int64_t f = i % F, row = i / F;
    const int64_t w = f % W, h = f / W % H, c = f / (W * H);
    return row * F + (h * W + w) * C + c;
  }
  return i;
}

// Host copy of a tensor that may live on a device.
Tensor to_host(const Tensor& t, Backend& backend) {
  if (t.is_cpu()) return t.clone();
  Tensor host(t.shape(), t.dtype());
  backend.copy(host, t);
  backend.synchronize();
  return host;
}

Tensor export_tensor(const Tensor& t, Backend& backend, const Layout& layout) {
  Tensor host = to_host(t, backend);
  if (layout.kind == Layout::same) return host;
  Tensor out(exported_shape(t.shape(), layout), t.dtype());
  const float* src = host.f32();
  float* dst = out.f32();
  for (int64_t i = 0; i < out.numel(); ++i) dst[i] = src[source_index(i, t.shape(), layout)];
  return out;
}

void import_tensor(const Tensor& file_tensor, Tensor& dst, Backend& backend, const Layout& layout) {
  Tensor host(dst.shape(), dst.dtype());
  if (layout.kind == Layout::same) {
    std::memcpy(host.raw(), file_tensor.raw(), host.bytes());
  } else {
    const float* src = file_tensor.f32();
    float* out = host.f32();
    for (int64_t i = 0; i < file_tensor.numel(); ++i) out[source_index(i, dst.shape(), layout)] = src[i];
  }
  if (dst.is_cpu()) {
    std::memcpy(dst.raw(), host.raw(), host.bytes());
  } else {
    backend.copy(dst, host);
    backend.synchronize();
  }
}

// Every tensor of the model with its layout and backend.
struct ModelTensor {
  std::string name;
  Tensor* value;
  Backend* backend;
  Layout layout;
  bool as_i64 = false;
};

const char* average_prefix(const WeightAverage& average) {
  return average.mode() == WeightAverage::Mode::ema ? "raw." : "ema.";
}

std::vector<ModelTensor> model_tensors(Graph& graph, Sgd* optimizer, WeightAverage* average) {
  std::vector<ModelTensor> out;
  for (size_t i = 0; i < graph.size(); ++i) {
    Layer& layer = graph.layer(i);
    Layout linear_layout;
    if (layer.type() == "linear") {
      // Find the flatten feeding this layer through single-input, shape-preserving flat layers
      // (following the graph's edges: the feeding layer need not be the previous one).
      for (int j = graph.layer_inputs(i).size() == 1 ? graph.layer_inputs(i)[0] : Graph::kGraphInput;
           j != Graph::kGraphInput;) {
        const Layer& feeder = graph.layer(static_cast<size_t>(j));
        if (feeder.type() == "flatten") {
          const Shape& hwc = feeder.input_shape();
          if (hwc.size() == 3 && hwc[0] * hwc[1] > 1 && hwc[2] > 1) linear_layout = {Layout::hwc_features_to_chw, hwc};
          break;
        }
        const std::vector<int>& inputs = graph.layer_inputs(static_cast<size_t>(j));
        if (feeder.output_shape().size() != 1 || inputs.size() != 1) break;
        j = inputs[0];
      }
    }
    Backend& backend = graph.layer_backend(i);
    for (Parameter* p : layer.parameters()) {
      Layout layout;
      if (p->layout == ExportLayout::krsc_to_oihw)
        layout.kind = Layout::krsc_to_oihw;
      else if (p->name == "weight" && layer.type() == "linear")
        layout = linear_layout;
      out.push_back({graph.module(i) + "." + p->name, &p->value, &backend, layout});
    }
    for (Buffer* b : layer.buffers())
      out.push_back({graph.module(i) + "." + b->name, &b->value, &backend, Layout{}, b->value.dtype() == DType::i32});
  }
  if (optimizer) {
    const size_t n_params = out.size();
    for (OptimizedParameter& op : optimizer->parameters()) {
      if (!op.momentum.defined()) continue;
      Layout layout;
      for (size_t k = 0; k < n_params; ++k)
        if (out[k].value == &op.param->value) layout = out[k].layout;
      out.push_back({"optimizer." + op.full_name + ".momentum_buffer", &op.momentum, op.backend, layout});
    }
  }
  if (average) {
    // ema: the model entries read and write the average, the prefixed ones the live (raw) tensors;
    // lookahead: the prefixed entries are the average. See checkpoint.h.
    const size_t n_model = out.size();
    const bool ema = average->mode() == WeightAverage::Mode::ema;
    for (AveragedTensor& t : average->tensors()) {
      size_t k = 0;
      while (k < n_model && out[k].value != t.current) ++k;
      CONVNET_CHECK(k < n_model, "averaged tensor {} is not a tensor of the model", t.name);
      ModelTensor extra = out[k];
      extra.name = average_prefix(*average) + out[k].name;
      if (ema) {
        out[k].value = &t.average;
      } else {
        extra.value = &t.average;
      }
      out.push_back(std::move(extra));
    }
  }
  return out;
}

std::string rng_to_string(const Rng::State& s) {
  return fmt::format("{:016x}{:016x}{:016x}{:016x}", s[0], s[1], s[2], s[3]);
}

template <class T>
T parse_number(const std::map<std::string, std::string>& meta, const std::string& key, const std::string& path) {
  auto it = meta.find(key);
  if (it == meta.end()) throw Error(fmt::format("checkpoint '{}': metadata has no '{}'", path, key));
  T value{};
  const char* b = it->second.data();
  const char* e = b + it->second.size();
  auto [ptr, ec] = std::from_chars(b, e, value);
  if (ec != std::errc() || ptr != e)
    throw Error(fmt::format("checkpoint '{}': metadata '{}' = '{}' is not a number", path, key, it->second));
  return value;
}

TrainingState state_from_metadata(const std::map<std::string, std::string>& meta, const std::string& path) {
  auto version = meta.find("convnet.format_version");
  if (version == meta.end())
    throw Error(fmt::format("checkpoint '{}': not a convnet checkpoint (no convnet.format_version metadata)", path));
  if (version->second != kFormatVersion)
    throw Error(fmt::format("checkpoint '{}': format version {} is not supported (this build reads {})", path,
                            version->second, kFormatVersion));
  TrainingState s;
  s.step = parse_number<int64_t>(meta, "convnet.step", path);
  s.epoch = parse_number<int64_t>(meta, "convnet.epoch", path);
  s.batch_in_epoch = parse_number<int64_t>(meta, "convnet.batch_in_epoch", path);
  s.best_accuracy = parse_number<double>(meta, "convnet.best_accuracy", path);
  s.lr = parse_number<double>(meta, "convnet.lr", path);
  const std::string& rng = meta.count("convnet.rng") ? meta.at("convnet.rng") : std::string();
  if (rng.size() != 64) throw Error(fmt::format("checkpoint '{}': metadata convnet.rng is malformed", path));
  for (size_t i = 0; i < 4; ++i) {
    auto [ptr, ec] = std::from_chars(rng.data() + 16 * i, rng.data() + 16 * (i + 1), s.rng[i], 16);
    if (ec != std::errc() || ptr != rng.data() + 16 * (i + 1))
      throw Error(fmt::format("checkpoint '{}': metadata convnet.rng is malformed", path));
  }
  s.config_yaml = meta.count("convnet.config") ? meta.at("convnet.config") : "";
  s.data_fingerprint = meta.count("convnet.data") ? meta.at("convnet.data") : "";
  return s;
}

}  // namespace

void save_checkpoint(const std::string& path, Graph& graph, Sgd* optimizer, const TrainingState& state,
                     WeightAverage* average) {
  std::vector<NamedTensor> tensors;
  for (const ModelTensor& t : model_tensors(graph, optimizer, average)) {
    NamedTensor nt{t.name, export_tensor(*t.value, *t.backend, t.layout)};
    nt.as_i64 = t.as_i64;
    tensors.push_back(std::move(nt));
  }
  std::map<std::string, std::string> meta = {
      {"format", "pt"},
      {"convnet.format_version", kFormatVersion},
      {"convnet.step", std::to_string(state.step)},
      {"convnet.epoch", std::to_string(state.epoch)},
      {"convnet.batch_in_epoch", std::to_string(state.batch_in_epoch)},
      {"convnet.rng", rng_to_string(state.rng)},
      {"convnet.best_accuracy", fmt::format("{}", state.best_accuracy)},
      {"convnet.lr", fmt::format("{}", state.lr)},
      {"convnet.config", state.config_yaml},
      {"convnet.data", state.data_fingerprint},
  };
  if (average) meta["convnet.ema"] = average->mode_name();
  write_safetensors(path, tensors, meta);
}

TrainingState load_checkpoint(const std::string& path, Graph& graph, Sgd* optimizer, WeightAverage* average) {
  const SafetensorsFile file = read_safetensors(path);
  TrainingState state = state_from_metadata(file.metadata, path);
  const auto ema_meta = file.metadata.find("convnet.ema");
  const std::string file_mode = ema_meta == file.metadata.end() ? "none" : ema_meta->second;
  const std::string want_mode = average ? average->mode_name() : "none";
  if ((optimizer || average) && file_mode != want_mode) {
    if (file_mode == "none")
      throw Error(
          fmt::format("checkpoint '{}' has no weight-average state (it was written with ema.mode none), so it "
                      "cannot resume a run with ema.mode {}; resume with ema.mode=none or start a new run",
                      path, want_mode));
    throw Error(
        fmt::format("checkpoint '{}' holds ema.mode {} state, so it cannot resume a run with ema.mode {}; "
                    "resume with ema.mode={} or start a new run",
                    path, file_mode, want_mode, file_mode));
  }
  std::set<std::string> expected;
  for (const ModelTensor& t : model_tensors(graph, optimizer, average)) {
    expected.insert(t.name);
    const Tensor* found = file.find(t.name);
    if (!found)
      throw Error(fmt::format("checkpoint '{}': tensor '{}' is missing (does the model match?)", path, t.name));
    const Shape want = exported_shape(t.value->shape(), t.layout);
    if (found->shape() != want)
      throw Error(fmt::format("checkpoint '{}': tensor '{}' has shape {}, the model expects {}", path, t.name,
                              shape_str(found->shape()), shape_str(want)));
    if (found->dtype() != t.value->dtype())
      throw Error(fmt::format("checkpoint '{}': tensor '{}' has dtype {}, the model expects {}", path, t.name,
                              dtype_name(found->dtype()), dtype_name(t.value->dtype())));
    import_tensor(*found, *t.value, *t.backend, t.layout);
  }
  for (const NamedTensor& nt : file.tensors) {
    const bool optimizer_state = nt.name.rfind("optimizer.", 0) == 0;
    const bool average_state = nt.name.rfind("raw.", 0) == 0 || nt.name.rfind("ema.", 0) == 0;
    const bool ignored = (optimizer_state && optimizer == nullptr) || (average_state && average == nullptr);
    if (!expected.count(nt.name) && !ignored)
      throw Error(fmt::format("checkpoint '{}': tensor '{}' does not belong to this model", path, nt.name));
  }
  return state;
}

CheckpointSummary read_checkpoint_summary(const std::string& path) {
  const SafetensorsFile file = read_safetensors(path);
  CheckpointSummary s;
  s.state = state_from_metadata(file.metadata, path);
  s.metadata = file.metadata;
  for (const NamedTensor& nt : file.tensors)  // I64 in the file is held as I32 in memory
    s.tensors.push_back({nt.name, nt.as_i64 ? "I64" : dtype_name(nt.tensor.dtype()), nt.tensor.shape()});
  return s;
}

}  // namespace convnet
