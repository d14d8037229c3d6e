// safetensors files: 8-byte little-endian header length, a JSON header mapping each tensor name to
// {dtype, shape, data_offsets} (plus an optional "__metadata__" object of string -> string), then
// the raw little-endian tensor bytes. Readable by PyTorch, JAX and numpy users directly.
//
// convnet adds one metadata key, "convnet.checksum": the FNV-1a 64-bit hash of the whole data
// section as 16 lowercase hex digits; read_safetensors verifies it when present.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/base/hash.h"
#include "core/base/tensor.h"

namespace convnet {

struct NamedTensor {
  std::string name;
  Tensor tensor;  // host tensor
  // Stored as I64 in the file (PyTorch's num_batches_tracked): written from an I32 tensor and
  // widened; set by the reader for I64 entries, which it narrows to I32 (an error if a value does
  // not fit).
  bool as_i64 = false;
};

struct SafetensorsFile {
  std::vector<NamedTensor> tensors;  // in file order (sorted by data offset)
  std::map<std::string, std::string> metadata;
  const Tensor* find(const std::string& name) const;  // nullptr when absent
};

// Writes atomically: a temporary file beside `path`, fsync, rename over `path`, fsync of the
// directory. A failure at any point leaves any previous file at `path` intact. Throws Error.
void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata);

// Reads and validates everything (header length against file size, JSON syntax, dtypes, shapes,
// offsets contiguous, in bounds and non-overlapping, byte counts matching shape x dtype,
// checksum). Throws Error naming the file and the offending tensor or field.
SafetensorsFile read_safetensors(const std::string& path);

// Writes `text` to `path` atomically (same steps as write_safetensors).
void write_file_atomic(const std::string& path, const std::string& text);

}  // namespace convnet
