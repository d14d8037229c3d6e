// FNV-1a 64-bit: the one content hash convnet uses (checkpoint checksums, data fingerprints,
// per-layer RNG salts). Fast, byte-order independent, and the same on every platform.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace convnet {

constexpr uint64_t kFnv1a64Basis = 0xcbf29ce484222325ull;

// Hash of `size` bytes, continuing from `hash` (start with the offset basis).
constexpr uint64_t fnv1a64(const void* data, size_t size, uint64_t hash = kFnv1a64Basis) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < size; ++i) {
    hash ^= bytes[i];
    hash *= 0x100000001b3ull;
  }
  return hash;
}
inline uint64_t fnv1a64(std::string_view text, uint64_t hash = kFnv1a64Basis) {
  return fnv1a64(text.data(), text.size(), hash);
}

}  // namespace convnet
