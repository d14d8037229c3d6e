// ONNX export of a built graph (convnet export --format onnx). Built with Debian's libonnx-dev (the
// generated onnx-ml.pb.h, protobuf) when CMake finds it; otherwise onnx_export_available() is false
// and export_onnx throws, naming the package.
//
// The model: opset 17, one input "input" [N, C, H, W] (N dynamic) in float, normalised as the
// checkpoint's data config normalises (the caller's job, as for convnet evaluate), one output
// "logits" [N, classes]. Weights are the checkpoint's tensors, already in PyTorch layouts (OIHW
// convolutions, linear inputs in CHW flatten order, so NCHW Flatten matches). Layers map to:
//   conv2d -> Conv (strides, pads, dilations, group)   batch_norm -> BatchNormalization (inference),
//   or folded into the conv that alone feeds it (fold_batch_norm)
//   relu -> Relu; gelu -> 0.5 x (1 + Erf(x / sqrt 2)) (Gelu is opset 20)
//   max_pool2d -> MaxPool; avg_pool2d -> AveragePool (count_include_pad, as ours)
//   global_avg_pool -> GlobalAveragePool + Flatten    flatten -> Flatten    linear -> Gemm (transB)
//   dropout, identity -> Identity    scale -> Mul     add -> Sum    concat -> Concat (channels)
//   pad_channels -> Slice (stride) + Pad (channels)
// A layer type not in this list is an Error naming the layer.
#pragma once

#include <map>
#include <string>

#include "core/base/tensor.h"
#include "core/train/graph.h"

namespace convnet::cli {

struct OnnxExportOptions {
  bool fold_batch_norm = false;
  std::string producer_version;                 // convnet's version, recorded in the model
  std::map<std::string, std::string> metadata;  // the model's metadata_props
};

bool onnx_export_available();

// The serialized ModelProto of `graph` with the weights `tensors` (name -> host f32 tensor, as in
// a checkpoint: "<module>.weight", "<module>.running_mean", ...).
std::string export_onnx(const Graph& graph, const std::map<std::string, Tensor>& tensors,
                        const OnnxExportOptions& options);

// Runs ONNX's own checker (onnx::checker::check_model, full shape inference) on a serialized
// model; throws Error with its message when the model is invalid.
void check_onnx_model(const std::string& serialized);

}  // namespace convnet::cli
