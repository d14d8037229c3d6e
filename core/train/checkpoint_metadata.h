// The metadata of a convnet checkpoint (checkpoint.h lists the keys): written from a
// TrainingState, and read back with every field validated, so a damaged or hand-edited value is an
// Error naming the file, the key and the allowed range instead of a failure deep inside a resumed
// run.
#pragma once

#include <map>
#include <string>

#include "core/base/tensor.h"
#include "core/io/safetensors.h"
#include "core/train/checkpoint.h"

namespace convnet {

// "2": the one this build writes. "1" (before the header checksum) is still read.
inline constexpr const char* kCheckpointFormatVersion = "2";

// The largest step, epoch and batch count a checkpoint may hold (2^53: exact as a double).
inline constexpr int64_t kMaxCheckpointCount = int64_t{1} << 53;

// The metadata of a checkpoint of `state`, for a model whose input is `input_shape` ({H, W, C}),
// with averaging mode `ema_mode` ("" when none).
std::map<std::string, std::string> checkpoint_metadata(const TrainingState& state, const Shape& input_shape,
                                                       const std::string& ema_mode);

// Whether `metadata` holds any convnet key besides the checksums every write_safetensors adds: a
// file without is a foreign file of weights (PyTorch's safetensors.torch.save_file).
bool has_convnet_metadata(const std::map<std::string, std::string>& metadata);

// The validated state of a convnet checkpoint, `path` naming it in errors: the format version
// and its checksum (format 2: over header and data; 1: over the data), every key known, every
// value in its range. Throws Error otherwise, and for a file without convnet metadata.
TrainingState parse_checkpoint_metadata(const SafetensorsFile& file, const std::string& path);

// The model's input {H, W, C}: convnet.input_shape, else (format 1) the H, W and C of the data
// fingerprint; empty when neither says.
Shape checkpoint_input_shape(const std::map<std::string, std::string>& metadata, const std::string& path);

}  // namespace convnet
