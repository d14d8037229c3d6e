// Helpers shared by the layer implementations in core/layers (not part of the Layer contract).
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <string_view>
#include <utility>

#include "core/base/error.h"
#include "core/layers/layer.h"

namespace convnet::layer_util {

// Throws ConfigError "<layer name>: <message>" (Layer::config_error, for checks made outside the layer).
template <class... Args>
[[noreturn]] void config_error(const Layer& layer, fmt::format_string<Args...> f, Args&&... args) {
  throw ConfigError(fmt::format("{}: {}", layer.name(), fmt::format(f, std::forward<Args>(args)...)));
}

// ConfigError unless `in` has at least one dimension and no empty one:
// "relu4: expects a non-empty input, got []".
void check_nonempty_input(const Layer& layer, const Shape& in);
// ConfigError unless `in` is an image [H, W, C] with no empty dimension:
// "conv1: expects an image input [H, W, C], got [32, 3]", "conv1: empty input [0, 4, 3]".
void check_image_input(const Layer& layer, const Shape& in);
// ConfigError unless a square sliding window (convolution or pooling) has kernel >= 1, stride >= 1
// and padding >= 0, checked in that order: "conv1: kernel must be positive, got 0".
void check_window(const Layer& layer, int kernel, int stride, int padding);

// {n, example...}: the batch shape of a per-example shape.
Shape with_batch(int64_t n, const Shape& example);

// Allocates param.value and param.grad with `shape` on `backend`; the gradient starts at zero so
// it is never uninitialised memory, the value is left for initialize().
void allocate_parameter(Backend& backend, Parameter& param, const Shape& shape);
// A conv or linear weight's bf16 copy (Parameter::bf16_copy): allocated when the backend computes
// in bf16 and the weight trains; none otherwise.
void keep_bf16_copy(Backend& backend, Parameter& weight);
// t (f32) rounded to bf16 in a new tensor on the backend's device (Backend::to_bf16).
Tensor bf16_values(Backend& backend, const Tensor& t);
// What the conv and linear ops read of a weight: its bf16 copy, written first when not current,
// or its value when it keeps none.
const Tensor& weight_operand(Backend& backend, Parameter& weight);

// Makes `t` a `shape` x `dtype` tensor on `backend`, reusing its storage when it already has that
// shape and dtype (per-forward scratch: no allocation per step while the batch size is unchanged).
void ensure_tensor(Backend& backend, Tensor& t, const Shape& shape, DType dtype = DType::f32);

// Checks (CONVNET_CHECK) that x is [N, layer.input_shape()...] and y is [N, layer.output_shape()...]
// with the same N; returns N.
int64_t check_io(const Layer& layer, const Tensor& x, const Tensor& y);

// Copies a host tensor into a (possibly device) tensor of the same numel through the backend.
void upload(Backend& backend, Tensor& dst, const Tensor& host);
// upload() into a parameter's value, which then has no current bf16 copy.
void upload_value(Backend& backend, Parameter& param, const Tensor& host);

}  // namespace convnet::layer_util
