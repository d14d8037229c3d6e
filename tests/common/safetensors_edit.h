// Hand edits of safetensors files for the tests of damaged and foreign checkpoints: the header as
// JSON, a file with another header (no checksum recomputed), the format-1 data checksum.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>

#include "core/base/hash.h"

namespace convnet::testing {

inline uint64_t header_length(const std::string& bytes) {
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  return n;
}

inline nlohmann::ordered_json header_of(const std::string& bytes) {
  return nlohmann::ordered_json::parse(bytes.substr(8, header_length(bytes)));
}

// The bytes of a file with its header replaced by `header`; the data section is kept.
inline std::string with_header(const std::string& bytes, const nlohmann::ordered_json& header) {
  const std::string text = header.dump();
  std::string out(8, '\0');
  for (size_t i = 0; i < 8; ++i) out[i] = static_cast<char>((text.size() >> (8 * i)) & 0xff);
  return out + text + bytes.substr(8 + header_length(bytes));
}

// "convnet.checksum" of format 1: the data section's FNV-1a 64 as 16 hex digits.
inline std::string data_checksum(const std::string& bytes) {
  const std::string data = bytes.substr(8 + header_length(bytes));
  return fmt::format("{:016x}", fnv1a64(data.data(), data.size()));
}

}  // namespace convnet::testing
