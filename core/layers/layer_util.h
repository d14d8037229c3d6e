// Helpers shared by the layer implementations in core/layers (not part of the Layer contract).
#pragma once

#include <cstdint>
#include <string_view>

#include "core/layers/layer.h"

namespace convnet::layer_util {

// {n, example...}: the batch shape of a per-example shape.
Shape with_batch(int64_t n, const Shape& example);

// Allocates param.value and param.grad with `shape` on `backend`; the gradient starts at zero so
// it is never uninitialised memory, the value is left for initialize().
void allocate_parameter(Backend& backend, Parameter& param, const Shape& shape);

// Makes `t` a `shape` x `dtype` tensor on `backend`, reusing its storage when it already has that
// shape and dtype (per-forward scratch: no allocation per step while the batch size is unchanged).
void ensure_tensor(Backend& backend, Tensor& t, const Shape& shape, DType dtype = DType::f32);

// Checks (CONVNET_CHECK) that x is [N, layer.input_shape()...] and y is [N, layer.output_shape()...]
// with the same N; returns N.
int64_t check_io(const Layer& layer, const Tensor& x, const Tensor& y);

// Copies a host tensor into a (possibly device) tensor of the same numel through the backend.
void upload(Backend& backend, Tensor& dst, const Tensor& host);


}  // namespace convnet::layer_util
