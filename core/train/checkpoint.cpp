#include "core/train/checkpoint.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

#include "core/base/error.h"
#include "core/io/safetensors.h"
#include "core/train/checkpoint_metadata.h"

namespace convnet {

namespace {

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

// The first NaN or Inf element of a host f32 tensor, or -1.
int64_t first_non_finite(const Tensor& host) {
  if (host.dtype() != DType::f32) return -1;
  const float* v = host.f32();
  for (int64_t i = 0; i < host.numel(); ++i)
    if (!std::isfinite(v[i])) return i;
  return -1;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Throws Error "{what}: tensor '{name}' ..." when a value of `host` is NaN or Inf, or a statistic
// is impossible: a negative batchnorm running variance or num_batches_tracked.
void check_values(const std::string& name, const Tensor& host, const std::string& what) {
  if (const int64_t i = first_non_finite(host); i >= 0)
    throw Error(
        fmt::format("{}: tensor '{}' holds {} at index {} (values must be finite)", what, name, host.f32()[i], i));
  if (ends_with(name, ".running_var") && host.dtype() == DType::f32) {
    const float* v = host.f32();
    for (int64_t i = 0; i < host.numel(); ++i)
      if (v[i] < 0)
        throw Error(
            fmt::format("{}: tensor '{}' holds the variance {} at index {} (a variance is >= 0)", what, name, v[i], i));
  }
  if (ends_with(name, ".num_batches_tracked") && host.dtype() == DType::i32) {
    const int32_t* v = host.data<int32_t>();
    for (int64_t i = 0; i < host.numel(); ++i)
      if (v[i] < 0)
        throw Error(
            fmt::format("{}: tensor '{}' holds the count {} at index {} (a count is >= 0)", what, name, v[i], i));
  }
}

std::string dtype_in_file(const NamedTensor& t) {
  return t.as_i64 ? "I64" : dtype_name(t.tensor.dtype());
}
std::string dtype_in_file(const ModelTensor& t) {
  return t.as_i64 ? "I64" : dtype_name(t.value->dtype());
}

// "a, b, c and 4 more": at most `shown` names.
std::string name_list(const std::vector<std::string>& names, size_t shown = 6) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < shown; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > shown) out += fmt::format(" and {} more", names.size() - shown);
  return out;
}

// The file entries that a load may leave unused: a convnet file's optimizer state when no
// optimizer loads it, its averaging state when no average does.
struct UnusedAllowed {
  bool optimizer = false;
  bool average = false;
  bool allows(const std::string& name) const {
    if (name.rfind("optimizer.", 0) == 0) return optimizer;
    if (name.rfind("raw.", 0) == 0 || name.rfind("ema.", 0) == 0) return average;
    return false;
  }
};

// Every model tensor in the file, no other (but the allowed unused ones): else an Error listing
// what is missing and what is extra.
void check_names(const std::map<std::string, const NamedTensor*>& in_file, const std::vector<ModelTensor>& tensors,
                 UnusedAllowed unused, const std::string& path) {
  std::set<std::string> expected;
  std::vector<std::string> missing, extra;
  for (const ModelTensor& t : tensors) {
    expected.insert(t.name);
    if (!in_file.count(t.name)) missing.push_back(t.name);
  }
  for (const auto& [name, t] : in_file)
    if (!expected.count(name) && !unused.allows(name)) extra.push_back(name);
  if (missing.empty() && extra.empty()) return;
  std::string what;
  if (!missing.empty())
    what = fmt::format("{} tensor{} of the model {} missing ({})", missing.size(), missing.size() == 1 ? "" : "s",
                       missing.size() == 1 ? "is" : "are", name_list(missing));
  if (!extra.empty())
    what += fmt::format("{}{} tensor{} of the file {} not in the model ({})", what.empty() ? "" : "; ", extra.size(),
                        extra.size() == 1 ? "" : "s", extra.size() == 1 ? "is" : "are", name_list(extra));
  const bool data_parallel_names =
      !extra.empty() && std::all_of(extra.begin(), extra.end(), [&](const std::string& name) {
        return name.rfind("module.", 0) == 0 && expected.count(name.substr(7));
      });
  throw Error(fmt::format("checkpoint '{}' does not fit the model: {} ({})", path, what,
                          data_parallel_names ? "its names carry PyTorch DataParallel's 'module.' prefix: save "
                                                "model.module.state_dict() instead"
                                              : "a checkpoint of another model?"));
}

// Checks names, shapes, dtypes and values of every tensor first, then copies them into the model.
void load_tensors(const SafetensorsFile& file, const std::string& path, const std::vector<ModelTensor>& tensors,
                  UnusedAllowed unused) {
  std::map<std::string, const NamedTensor*> in_file;
  for (const NamedTensor& nt : file.tensors) in_file[nt.name] = &nt;
  check_names(in_file, tensors, unused, path);
  for (const ModelTensor& t : tensors) {
    const NamedTensor& found = *in_file.at(t.name);
    const Shape want = exported_shape(t.value->shape(), t.layout);
    if (found.tensor.shape() != want)
      throw Error(fmt::format("checkpoint '{}': tensor '{}' has shape {}, the model expects {}", path, t.name,
                              shape_str(found.tensor.shape()), shape_str(want)));
    if (dtype_in_file(found) != dtype_in_file(t))
      throw Error(fmt::format("checkpoint '{}': tensor '{}' has dtype {}, the model expects {}", path, t.name,
                              dtype_in_file(found), dtype_in_file(t)));
    check_values(t.name, found.tensor, fmt::format("checkpoint '{}'", path));
  }
  for (const ModelTensor& t : tensors) import_tensor(in_file.at(t.name)->tensor, *t.value, *t.backend, t.layout);
}

// The model's classes must be as many as the checkpoint's class names (when it has them).
void check_class_count(const TrainingState& state, const Graph& graph, const std::string& path) {
  const Shape& out = graph.output_shape();
  if (state.class_names.empty() || out.size() != 1 || out[0] == static_cast<int64_t>(state.class_names.size())) return;
  throw Error(fmt::format("checkpoint '{}' was trained on {} classes ({}) but the model outputs {}", path,
                          state.class_names.size(), name_list(state.class_names), out[0]));
}

void check_average_mode(const SafetensorsFile& file, const std::string& path, Sgd* optimizer, WeightAverage* average) {
  const auto ema_meta = file.metadata.find("convnet.ema");
  const std::string file_mode = ema_meta == file.metadata.end() ? "none" : ema_meta->second;
  const std::string want_mode = average ? average->mode_name() : "none";
  if (!(optimizer || average) || file_mode == want_mode) return;
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

}  // namespace

void check_finite_state(Graph& graph, Sgd* optimizer, WeightAverage* average, const std::string& what) {
  for (const ModelTensor& t : model_tensors(graph, optimizer, average))
    check_values(t.name, to_host(*t.value, *t.backend), what);
}

void save_checkpoint(const std::string& path, Graph& graph, Sgd* optimizer, const TrainingState& state,
                     WeightAverage* average) {
  std::vector<NamedTensor> tensors;
  const std::string refusal = fmt::format("refusing to write checkpoint '{}' (did training diverge?)", path);
  for (const ModelTensor& t : model_tensors(graph, optimizer, average)) {
    NamedTensor nt{t.name, export_tensor(*t.value, *t.backend, t.layout)};
    nt.as_i64 = t.as_i64;
    check_values(nt.name, nt.tensor, refusal);
    tensors.push_back(std::move(nt));
  }
  write_safetensors(path, tensors,
                    checkpoint_metadata(state, graph.example_shape(), average ? average->mode_name() : ""));
}

void check_resume_position(const TrainingState& state, int64_t steps_per_epoch, const std::string& path) {
  if (state.batch_in_epoch > steps_per_epoch)
    throw Error(
        fmt::format("checkpoint '{}': metadata 'convnet.batch_in_epoch' = {} is past the end of an epoch of "
                    "{} batches (expected 0 to {}): a damaged checkpoint, or other data",
                    path, state.batch_in_epoch, steps_per_epoch, steps_per_epoch));
  if (state.step > state.epoch * steps_per_epoch + state.batch_in_epoch)
    throw Error(
        fmt::format("checkpoint '{}': metadata 'convnet.step' = {} is more than epoch {} x {} batches + "
                    "batch {} allow: a damaged checkpoint, or other data",
                    path, state.step, state.epoch, steps_per_epoch, state.batch_in_epoch));
}

namespace {

// Loading writes every parameter value: no bf16 copy stays current (Parameter::value_written),
// even when the load fails part way.
void values_written(Graph& graph) {
  for (auto& [name, param] : graph.named_parameters()) param->value_written();
}

}  // namespace

TrainingState load_checkpoint(const std::string& path, Graph& graph, Sgd* optimizer, WeightAverage* average) {
  const SafetensorsFile file = read_safetensors(path);
  TrainingState state = parse_checkpoint_metadata(file, path);
  check_average_mode(file, path, optimizer, average);
  check_class_count(state, graph, path);
  values_written(graph);
  load_tensors(file, path, model_tensors(graph, optimizer, average), {optimizer == nullptr, average == nullptr});
  return state;
}

void load_model_weights(const std::string& path, Graph& graph) {
  const SafetensorsFile file = read_safetensors(path);
  const bool ours = has_convnet_metadata(file.metadata);
  if (ours) check_class_count(parse_checkpoint_metadata(file, path), graph, path);
  values_written(graph);
  load_tensors(file, path, model_tensors(graph, nullptr, nullptr), {ours, ours});
}

CheckpointSummary read_checkpoint_summary(const std::string& path, bool allow_foreign) {
  const SafetensorsFile file = read_safetensors(path);
  CheckpointSummary s;
  s.has_training_state = has_convnet_metadata(file.metadata) || !allow_foreign;
  if (s.has_training_state) {
    s.state = parse_checkpoint_metadata(file, path);  // throws for a foreign file
    s.input_shape = checkpoint_input_shape(file.metadata, path);
  }
  s.metadata = file.metadata;
  for (const NamedTensor& nt : file.tensors) {
    check_values(nt.name, nt.tensor, fmt::format("checkpoint '{}'", path));
    s.tensors.push_back({nt.name, dtype_in_file(nt), nt.tensor.shape()});
  }
  return s;
}

}  // namespace convnet
