// safetensors files: 8-byte little-endian header length, a JSON header mapping each tensor name to
// {dtype, shape, data_offsets} (plus an optional "__metadata__" object of string -> string), then
// the raw little-endian tensor bytes. Readable by PyTorch, JAX and numpy users directly.
//
// convnet adds one metadata key, "convnet.file_checksum": the FNV-1a 64-bit hash, as 16 lowercase
// hex digits, of the canonical header (canonical_header below: every metadata entry except the
// checksum itself and every tensor entry, keys sorted, compact JSON) followed by the whole data
// section, so a changed metadata value, name, shape or offset fails the check as much as a flipped
// data byte. Files of convnet before checkpoint format 2 hold "convnet.checksum" instead: the hash
// of the data section alone. read_safetensors verifies whichever is present and reports which.
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

// What the verified checksum of a file covered.
enum class ChecksumCoverage {
  none,             // no checksum (a foreign writer)
  data,             // "convnet.checksum": the data section only (convnet's format before 2)
  header_and_data,  // "convnet.file_checksum": the canonical header and the data
};

struct SafetensorsFile {
  std::vector<NamedTensor> tensors;  // in file order (sorted by data offset)
  std::map<std::string, std::string> metadata;
  ChecksumCoverage checksum = ChecksumCoverage::none;
  const Tensor* find(const std::string& name) const;  // nullptr when absent
};

// Writes atomically: a temporary file beside `path`, fsync, rename over `path`, fsync of the
// directory. A failure at any point leaves any previous file at `path` intact. Throws Error.
void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata);

// Reads and validates everything (a regular file, header length against file size, JSON syntax,
// dtypes, shapes, offsets contiguous, in bounds and non-overlapping, byte counts matching shape x
// dtype, checksum). Nothing is allocated beyond the file's own size. Throws Error naming the file
// and the offending tensor or field.
SafetensorsFile read_safetensors(const std::string& path);

// One tensor entry of a header, as written in the file.
struct HeaderEntry {
  std::string name;
  std::string dtype;  // as in the file: "F32", "I64", ...
  Shape shape;
  uint64_t begin = 0, end = 0;
};
// The text "convnet.file_checksum" hashes before the data: the compact JSON dump, keys sorted, of
// {"__metadata__": metadata without the checksum keys, name: {"data_offsets", "dtype", "shape"}...}.
std::string canonical_header(const std::map<std::string, std::string>& metadata,
                             const std::vector<HeaderEntry>& entries);

// Writes `text` to `path` atomically (same steps as write_safetensors).
void write_file_atomic(const std::string& path, const std::string& text);

}  // namespace convnet
