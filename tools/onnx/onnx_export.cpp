// ONNX export: see tools/onnx/onnx_export.h. One NodeProto list built layer by layer, each layer's
// output named after the layer; the weights are initializers named as in the checkpoint.
#include "tools/onnx/onnx_export.h"

#include <fmt/format.h>
#include <onnx/checker.h>
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numbers>
#include <optional>
#include <set>
#include <vector>

#include "core/base/error.h"
#include "core/layers/batch_norm.h"
#include "core/layers/conv2d.h"
#include "core/layers/dropout.h"
#include "core/layers/linear.h"
#include "core/layers/pad_channels.h"
#include "core/layers/pool2d.h"
#include "core/layers/scale.h"

namespace convnet::cli {

namespace {

constexpr int kOpset = 17;
constexpr int kIrVersion = 8;  // the IR version of opset 17

class OnnxBuilder {
 public:
  OnnxBuilder(const Graph& graph, const std::map<std::string, Tensor>& tensors, const OnnxExportOptions& options)
      : graph_(graph), tensors_(tensors), options_(options), consumers_(graph.size(), 0) {
    for (size_t i = 0; i < graph.size(); ++i)
      for (int j : graph.layer_inputs(i))
        if (j != Graph::kGraphInput) ++consumers_[static_cast<size_t>(j)];
  }

  std::string build() {
    model_.set_ir_version(kIrVersion);
    model_.set_producer_name("convnet");
    model_.set_producer_version(options_.producer_version);
    for (const auto& [key, value] : options_.metadata) {
      onnx::StringStringEntryProto* entry = model_.add_metadata_props();
      entry->set_key(key);
      entry->set_value(value);
    }
    onnx::OperatorSetIdProto* opset = model_.add_opset_import();
    opset->set_domain("");
    opset->set_version(kOpset);
    g_ = model_.mutable_graph();
    g_->set_name("convnet");
    add_io(g_->add_input(), "input", graph_.example_shape());
    output_names_.resize(graph_.size());
    for (size_t i = 0; i < graph_.size(); ++i) add_layer(i);
    // The net's output under a stable name.
    node("Identity", {output_names_.back()}, "logits");
    add_io(g_->add_output(), "logits", graph_.output_shape());
    std::string bytes;
    // (No CONVNET_CHECK in this file: onnx/checker.h defines a fail_check macro of its own.)
    if (!model_.SerializeToString(&bytes)) throw Error("ONNX: serializing the model failed");
    return bytes;
  }

 private:
  // A graph input or output: [N, C, H, W] from our {H, W, C}, or [N, F].
  static void add_io(onnx::ValueInfoProto* v, const std::string& name, const Shape& example) {
    v->set_name(name);
    onnx::TypeProto_Tensor* t = v->mutable_type()->mutable_tensor_type();
    t->set_elem_type(onnx::TensorProto::FLOAT);
    onnx::TensorShapeProto* shape = t->mutable_shape();
    shape->add_dim()->set_dim_param("N");
    if (example.size() == 3) {
      for (int64_t d : {example[2], example[0], example[1]}) shape->add_dim()->set_dim_value(d);
    } else {
      for (int64_t d : example) shape->add_dim()->set_dim_value(d);
    }
  }

  onnx::NodeProto* node(const std::string& op, const std::vector<std::string>& inputs, const std::string& output) {
    onnx::NodeProto* n = g_->add_node();
    n->set_op_type(op);
    n->set_name(output);
    for (const std::string& in : inputs) n->add_input(in);
    n->add_output(output);
    return n;
  }
  static void ints(onnx::NodeProto* n, const std::string& name, const std::vector<int64_t>& values) {
    onnx::AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INTS);
    for (int64_t v : values) a->add_ints(v);
  }
  static void integer(onnx::NodeProto* n, const std::string& name, int64_t value) {
    onnx::AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(value);
  }
  static void real(onnx::NodeProto* n, const std::string& name, float value) {
    onnx::AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(value);
  }

  std::string initializer(const std::string& name, const Shape& shape, const std::vector<float>& values) {
    onnx::TensorProto* t = g_->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int64_t d : shape) t->add_dims(d);
    t->set_raw_data(std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float)));
    return name;
  }
  std::string int64_initializer(const std::string& name, const std::vector<int64_t>& values) {
    onnx::TensorProto* t = g_->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::INT64);
    t->add_dims(static_cast<int64_t>(values.size()));
    t->set_raw_data(std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(int64_t)));
    return name;
  }
  std::string scalar(const std::string& name, float value) { return initializer(name, {}, {value}); }

  // The checkpoint tensor `<module>.<suffix>`, f32, of `numel` elements.
  const Tensor& weight(size_t i, const std::string& suffix, int64_t numel) const {
    const std::string name = graph_.module(i) + "." + suffix;
    const auto it = tensors_.find(name);
    if (it == tensors_.end()) throw Error(fmt::format("ONNX export: the checkpoint has no tensor {}", name));
    if (it->second.dtype() != DType::f32 || it->second.numel() != numel)
      throw Error(fmt::format("ONNX export: {} is {} {}, expected F32 of {} elements", name,
                              dtype_name(it->second.dtype()), shape_str(it->second.shape()), numel));
    return it->second;
  }
  std::string tensor_initializer(size_t i, const std::string& suffix, const Shape& shape) {
    const Tensor& t = weight(i, suffix, shape_numel(shape));
    return initializer(graph_.module(i) + "." + suffix, shape, std::vector<float>(t.f32(), t.f32() + t.numel()));
  }

  std::string input_of(size_t i, size_t k = 0) const {
    const int j = graph_.layer_inputs(i)[k];
    return j == Graph::kGraphInput ? "input" : output_names_[static_cast<size_t>(j)];
  }
  std::vector<std::string> inputs_of(size_t i) const {
    std::vector<std::string> out;
    for (size_t k = 0; k < graph_.layer_inputs(i).size(); ++k) out.push_back(input_of(i, k));
    return out;
  }

  void add_layer(size_t i) {
    const Layer& layer = graph_.layer(i);
    const std::string& type = layer.type();
    const std::string out = layer.name();
    if (!folded_.contains(i)) output_names_[i] = out;  // else its conv's output (add_conv)
    if (type == "conv2d") return add_conv(i, dynamic_cast<const Conv2d&>(layer));
    if (type == "batch_norm") return add_batch_norm(i, dynamic_cast<const BatchNorm2d&>(layer));
    if (type == "relu") return (void)node("Relu", {input_of(i)}, out);
    if (type == "gelu") return add_gelu(i);
    if (type == "max_pool2d" || type == "avg_pool2d") return add_pool(i, dynamic_cast<const Pool2d&>(layer));
    if (type == "global_avg_pool") {
      node("GlobalAveragePool", {input_of(i)}, out + ".pooled");
      integer(node("Flatten", {out + ".pooled"}, out), "axis", 1);
      return;
    }
    if (type == "flatten") return integer(node("Flatten", {input_of(i)}, out), "axis", 1);
    if (type == "linear") return add_linear(i, dynamic_cast<const Linear&>(layer));
    if (type == "dropout" || type == "identity") return (void)node("Identity", {input_of(i)}, out);
    if (type == "scale")
      return (void)node("Mul", {input_of(i), scalar(out + ".factor", dynamic_cast<const Scale&>(layer).factor())}, out);
    if (type == "add") return (void)node("Sum", inputs_of(i), out);
    if (type == "concat") return integer(node("Concat", inputs_of(i), out), "axis", 1);
    if (type == "pad_channels") return add_pad_channels(i, dynamic_cast<const PadChannels&>(layer));
    throw Error(fmt::format("ONNX export: layer {} ({}) has no ONNX form yet", layer.name(), layer.description()));
  }

  // The batchnorm layer that alone reads conv layer i's output, when folding is asked for; it is
  // recorded as folded, so add_batch_norm leaves it out.
  std::optional<size_t> fold_target(size_t i) {
    if (!options_.fold_batch_norm || consumers_[i] != 1) return std::nullopt;
    for (size_t k = i + 1; k < graph_.size(); ++k) {
      const std::vector<int>& in = graph_.layer_inputs(k);
      if (std::find(in.begin(), in.end(), static_cast<int>(i)) == in.end()) continue;
      if (graph_.layer(k).type() != "batch_norm" || in.size() != 1) return std::nullopt;
      folded_.insert(k);
      return k;
    }
    return std::nullopt;
  }

  void add_conv(size_t i, const Conv2d& conv) {
    const Conv2dParams p = conv.conv_params();
    const int64_t k = conv.out_channels(), c = conv.in_channels() / conv.groups(), r = conv.kernel();
    const Shape w_shape = {k, c, r, r};
    std::vector<std::string> inputs = {input_of(i)};
    if (const std::optional<size_t> target = fold_target(i)) {
      // W' = W * s, b' = (b - mean) * s + beta with s = gamma / sqrt(var + eps), per output channel.
      const size_t b = *target;
      const auto* bn = &dynamic_cast<const BatchNorm2d&>(graph_.layer(b));
      const Tensor& w = weight(i, "weight", shape_numel(w_shape));
      const Tensor& gamma = weight(b, "weight", k);
      const Tensor& beta = weight(b, "bias", k);
      const Tensor& mean = weight(b, "running_mean", k);
      const Tensor& var = weight(b, "running_var", k);
      std::vector<float> folded_w(w.f32(), w.f32() + w.numel()), folded_b(static_cast<size_t>(k));
      const int64_t per_channel = w.numel() / k;
      for (int64_t o = 0; o < k; ++o) {
        const double s = gamma.f32()[o] / std::sqrt(static_cast<double>(var.f32()[o]) + bn->eps());
        for (int64_t e = 0; e < per_channel; ++e)
          folded_w[static_cast<size_t>(o * per_channel + e)] =
              static_cast<float>(folded_w[static_cast<size_t>(o * per_channel + e)] * s);
        const double bias = conv.has_bias() ? weight(i, "bias", k).f32()[o] : 0.0;
        folded_b[static_cast<size_t>(o)] = static_cast<float>((bias - mean.f32()[o]) * s + beta.f32()[o]);
      }
      inputs.push_back(initializer(graph_.module(i) + ".weight", w_shape, folded_w));
      inputs.push_back(initializer(graph_.module(i) + ".bias", {k}, folded_b));
      output_names_[b] = conv.name();
    } else {
      inputs.push_back(tensor_initializer(i, "weight", w_shape));
      if (conv.has_bias()) inputs.push_back(tensor_initializer(i, "bias", {k}));
    }
    onnx::NodeProto* n = node("Conv", inputs, conv.name());
    ints(n, "kernel_shape", {r, r});
    ints(n, "strides", {p.stride_h, p.stride_w});
    ints(n, "pads", {p.pad_h, p.pad_w, p.pad_h, p.pad_w});
    ints(n, "dilations", {p.dilation_h, p.dilation_w});
    integer(n, "group", p.groups);
  }

  void add_batch_norm(size_t i, const BatchNorm2d& bn) {
    if (folded_.contains(i)) return;  // its conv computes it (output_names_[i] set there)
    const int64_t c = bn.channels();
    onnx::NodeProto* n = node("BatchNormalization",
                              {input_of(i), tensor_initializer(i, "weight", {c}), tensor_initializer(i, "bias", {c}),
                               tensor_initializer(i, "running_mean", {c}), tensor_initializer(i, "running_var", {c})},
                              bn.name());
    real(n, "epsilon", bn.eps());
  }

  void add_gelu(size_t i) {
    const std::string x = input_of(i), out = graph_.layer(i).name();
    node("Div", {x, scalar(out + ".sqrt2", static_cast<float>(std::numbers::sqrt2))}, out + ".scaled");
    node("Erf", {out + ".scaled"}, out + ".erf");
    node("Add", {out + ".erf", scalar(out + ".one", 1.0f)}, out + ".cdf2");
    node("Mul", {x, out + ".cdf2"}, out + ".x_cdf2");
    node("Mul", {out + ".x_cdf2", scalar(out + ".half", 0.5f)}, out);
  }

  void add_pool(size_t i, const Pool2d& pool) {
    const Pool2dParams p = pool.pool_params();
    const bool max = pool.type() == "max_pool2d";
    onnx::NodeProto* n = node(max ? "MaxPool" : "AveragePool", {input_of(i)}, pool.name());
    ints(n, "kernel_shape", {p.kernel_h, p.kernel_w});
    ints(n, "strides", {p.stride_h, p.stride_w});
    ints(n, "pads", {p.pad_h, p.pad_w, p.pad_h, p.pad_w});
    if (!max) integer(n, "count_include_pad", 1);  // ours divides by the whole window
  }

  void add_linear(size_t i, const Linear& linear) {
    const int64_t out = linear.out_features(), in = linear.in_features();
    std::vector<std::string> inputs = {input_of(i), tensor_initializer(i, "weight", {out, in})};
    if (linear.has_bias()) inputs.push_back(tensor_initializer(i, "bias", {out}));
    integer(node("Gemm", inputs, linear.name()), "transB", 1);
  }

  void add_pad_channels(size_t i, const PadChannels& pad) {
    const std::string out = pad.name();
    std::string x = input_of(i);
    if (pad.stride() > 1) {
      const int64_t s = pad.stride(), end = std::numeric_limits<int64_t>::max();
      node("Slice",
           {x, int64_initializer(out + ".starts", {0, 0}), int64_initializer(out + ".ends", {end, end}),
            int64_initializer(out + ".axes", {2, 3}), int64_initializer(out + ".steps", {s, s})},
           out + ".subsampled");
      x = out + ".subsampled";
    }
    node("Pad", {x, int64_initializer(out + ".pads", {0, pad.before(), 0, 0, 0, pad.after(), 0, 0})}, out);
  }

  const Graph& graph_;
  const std::map<std::string, Tensor>& tensors_;
  const OnnxExportOptions& options_;
  std::vector<int> consumers_;
  std::set<size_t> folded_;  // batchnorm layers computed by the conv before them
  std::vector<std::string> output_names_;
  onnx::ModelProto model_;
  onnx::GraphProto* g_ = nullptr;
};

}  // namespace

bool onnx_export_available() {
  return true;
}

std::string export_onnx(const Graph& graph, const std::map<std::string, Tensor>& tensors,
                        const OnnxExportOptions& options) {
  return OnnxBuilder(graph, tensors, options).build();
}

void check_onnx_model(const std::string& serialized) {
  onnx::ModelProto model;
  if (!model.ParseFromString(serialized)) throw Error("ONNX check: the bytes are not an ONNX ModelProto");
  try {
    onnx::checker::check_model(model);
  } catch (const std::exception& e) {
    throw Error(fmt::format("ONNX check: {}", e.what()));
  }
}

}  // namespace convnet::cli
